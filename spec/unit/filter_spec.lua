-- The `filter` option (lua/mod_log_ringbuffer.lua) inside Prosody's real logging manager, and
-- keep_dumps_for's timer.
local env = require "spec.helpers.module_env";

local wait_for_dumps = env.wait_for_dumps;

-- The module stand-in; its clock (util.time.monotonic as the module sees it) is `m.now`.
local function load(log_config, dir)
	local real_time = package.loaded["util.time"];
	local clock = { now = 1000 };
	package.loaded["util.time"] = setmetatable({ monotonic = function () return clock.now; end }, { __index = real_time });
	local m = env.new_module();
	function m:fire(event)
		for _, handler in ipairs(self.hooks[event] or {}) do handler({}); end
		wait_for_dumps();
	end
	function m:tick()
		local timers = self.timers;
		self.timers = {};
		for _, handler in ipairs(timers) do
			if handler() then table.insert(self.timers, handler); end
		end
	end
	m.add_item = function () end;
	local ok, err = pcall(env.load, log_config, dir, m);
	package.loaded["util.time"] = real_time;
	assert(ok, err);
	m.clock = clock;
	m:tick();
	return m;
end

-- The lines of the dumps in `path`, without headers.
local function dumped(path)
	local lines = {};
	for line in (env.read(path) or ""):gmatch("[^\n]+") do
		if not line:match("^%-%- ") then table.insert(lines, line); end
	end
	return lines;
end

-- Makes the module stand-in's module:log go to the sinks too, as Prosody's does.
local function logs_to_the_sinks(m)
	local module_log = env.logger.init("mod_log_ringbuffer");
	local record = m.log;
	function m:log(level, fmt, ...)
		record(self, level, fmt, ...);
		module_log(level, fmt, ...);
	end
end

describe("filter", function ()
	local dir, log;
	before_each(function ()
		dir = env.tempdir();
		log = env.logger.init("spec");
	end);

	local function sink(options)
		local entry = { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log", timestamps = false };
		for k, v in pairs(options or {}) do entry[k] = v; end
		return entry;
	end

	it("drops and rewrites lines; is given the message as Prosody's file sink formats it", function ()
		local seen = {};
		local m = load({ sink({ filter = function (message)
			table.insert(seen, message);
			if message:find("secret", 1, true) then return nil; end
			if message:find("nothing", 1, true) then return false; end
			if message:find("number", 1, true) then return 42; end
			return (message:gsub("alice", "someone"));
		end }) }, dir);
		log("debug", "hello %s at %d%%", "alice", 5);
		log("info", "the secret is %s", "hunter2");
		log("warn", "nothing to see");
		log("error", "a number");
		log("debug", "extra", "arg");
		m:fire("spec/dump");
		assert.same({ "hello alice at 5%", "the secret is hunter2", "nothing to see", "a number", "extra [arg]" }, seen);
		assert.same({ "spec\tdebug\thello someone at 5%", "spec\terror\t42", "spec\tdebug\textra [arg]" }, dumped(dir .. "/d.log"));
		assert.same({}, m:messages("error"));
	end);

	it("with a filter that returns its message stores exactly what the sink stores without one", function ()
		local m = load({ sink(), sink({ filename = dir .. "/f.log", filter = function (message) return message; end }) }, dir);
		local stanza = require "util.stanza".message({ to = "a@b" }):tag("body"):text("hi <there>");
		log("debug", "control \1\27 and \n\tnewline, bad utf-8 \255, %s", "100%");
		log("debug", "a stanza: %s, %d, %s", stanza, 2.5, nil);
		log("debug", "missing %s %s", "one");
		log("debug", "%q, %5.2f, %x, %d, %s", "quoted\n", math.pi, 255, {}, setmetatable({}, { __tostring = function () return "T"; end }));
		log("debug", "raising %s", setmetatable({}, { __tostring = function () error("no text"); end }));
		log("debug", 42);
		log("debug", "%s", ("long "):rep(2000));
		m:fire("spec/dump");
		local plain, filtered = dumped(dir .. "/d.log"), dumped(dir .. "/f.log");
		assert.equal(7, #plain);
		assert.same(plain, filtered);
	end);

	it("keeps the line unfiltered when the filter fails, and says so once a minute", function ()
		local m = load({ sink({ filter = function (message)
			if message:find("table", 1, true) then return {}; end
			error("broken filter on " .. message);
		end }) }, dir);
		for i = 1, 50 do log("debug", "line %d", i); end
		log("debug", "a table");
		local errors = m:messages("error");
		assert.equal(1, #errors, table.concat(errors, "\n"));
		assert.truthy(errors[1]:find("^The filter of ringbuffer sink #1 failed: .*broken filter on line 1: the line was kept unfiltered$"), errors[1]);
		m.clock.now = m.clock.now + 59;
		log("debug", "line 51");
		assert.equal(1, #m:messages("error"));
		m.clock.now = m.clock.now + 1;
		log("debug", "a table");
		errors = m:messages("error");
		assert.equal(2, #errors);
		assert.equal("The filter of ringbuffer sink #1 returned a table (expected a string, or nil to leave the line out): "
			.. "the line was kept unfiltered; 51 more such lines since the last report", errors[2]);
		m:fire("spec/dump");
		local lines = dumped(dir .. "/d.log");
		assert.equal(53, #lines);
		assert.equal("spec\tdebug\tline 1", lines[1]);
		assert.equal("spec\tdebug\ta table", lines[53]);
	end);

	it("stores what the filter logs itself, and its error report, unfiltered and without recursion", function ()
		local calls = 0;
		local inner = env.logger.init("inner");
		local m = load({ sink({ name = "mine", filter = function (message)
			calls = calls + 1;
			inner("debug", "filtering <%s>", message);
			if message:find("fail", 1, true) then error("failing on purpose", 0); end
			return "filtered: " .. message;
		end }) }, dir);
		logs_to_the_sinks(m);
		log("info", "first");
		log("info", "please fail");
		m:fire("spec/dump");
		assert.equal(2, calls);
		assert.same({
			"inner\tdebug\tfiltering <first>",
			"spec\tinfo\tfiltered: first",
			"inner\tdebug\tfiltering <please fail>",
			"spec\tinfo\tplease fail",
			"mod_log_ringbuffer\terror\tThe filter of ringbuffer sink mine failed: failing on purpose: the line was kept unfiltered",
		}, dumped(dir .. "/d.log"));
	end);

	it("stays on when another sink raises on its error report", function ()
		-- Prosody's file sink raises on every line its filter leaves out (it writes the nil).
		local m = load({
			sink({ filter = function (message)
				if message == "bad" then error("bad line", 0); end
				return "f " .. message;
			end }),
			{ to = "file", levels = { "error" }, filename = dir .. "/err.log", filter = function () return nil; end },
		}, dir);
		logs_to_the_sinks(m);
		log("debug", "bad");
		log("debug", "good");
		m:fire("spec/dump");
		assert.same({ "The filter of ringbuffer sink #1 failed: bad line: the line was kept unfiltered" }, m:messages("error"));
		-- (The report reaches this sink too if it comes before the file sink, which raises.)
		local lines = dumped(dir .. "/d.log");
		assert.equal("spec\tdebug\tbad", lines[1]);
		assert.equal("spec\tdebug\tf good", lines[#lines]);
	end);

	it("never lets a filter that yields suspend the code that logged", function ()
		local m = load({ sink({ filter = function (message)
			if message:find("yield", 1, true) then coroutine.yield("from the filter"); end
			return "ok: " .. message;
		end }) }, dir);
		local logger_thread = coroutine.create(function ()
			log("debug", "in a coroutine, yield");
			log("debug", "in a coroutine, plain");
			return "done";
		end);
		assert.same({ true, "done" }, { coroutine.resume(logger_thread) });
		log("debug", "outside any coroutine, yield");
		log("debug", "after");
		m:fire("spec/dump");
		assert.same({
			"spec\tdebug\tin a coroutine, yield",
			"spec\tdebug\tok: in a coroutine, plain",
			"spec\tdebug\toutside any coroutine, yield",
			"spec\tdebug\tok: after",
		}, dumped(dir .. "/d.log"));
		assert.same({ "The filter of ringbuffer sink #1 yielded (a filter must return at once): the line was kept unfiltered" },
			m:messages("error"));
	end);

	it("is a config error if it is no function, and the sink captures every line", function ()
		local m = load({ sink({ filter = "drop secrets" }), sink({ filename = dir .. "/t.log", filter = { 1 } }) }, dir);
		log("debug", "kept");
		m:fire("spec/dump");
		assert.same({ "ringbuffer sink: Invalid value for option 'filter': \"drop secrets\"; expected a function "
			.. "(message) -> message or nil; capturing lines unfiltered",
			"ringbuffer sink: Invalid value for option 'filter': a table; expected a function "
			.. "(message) -> message or nil; capturing lines unfiltered" }, m:messages("error"));
		assert.same({ "spec\tdebug\tkept" }, dumped(dir .. "/d.log"));
		assert.same({ "spec\tdebug\tkept" }, dumped(dir .. "/t.log"));
		assert.same({}, m:messages("warn"));
	end);

	it("takes a logging reload's new filter and keeps the buffered lines", function ()
		local m = load({ sink({ filter = function (message) return "old " .. message; end }) }, dir);
		log("debug", "one");
		env.reload({ sink({ filter = function (message) return "new " .. message; end }) });
		m:tick();
		log("debug", "two");
		env.reload({ sink() });
		m:tick();
		log("debug", "three");
		m:fire("spec/dump");
		assert.same({ "spec\tdebug\told one", "spec\tdebug\tnew two", "spec\tdebug\tthree" }, dumped(dir .. "/d.log"));
	end);
end);

describe("keep_dumps_for", function ()
	local dir;
	before_each(function ()
		dir = env.tempdir();
	end);

	local function names()
		local list = {};
		for name in io.popen("ls -A " .. dir):lines() do table.insert(list, name); end
		table.sort(list);
		return list;
	end

	it("deletes the template's files older than the span on the turn after it starts, then hourly", function ()
		os.execute(("cd %s && touch -d '3 hours ago' k-1.log k-2.log.gz other-1.log && touch k-3.log"):format(dir));
		local m = load({ { to = "ringbuffer", keep_dumps_for = "2h", filename_template = dir .. "/k-{count}.log" } }, dir);
		-- load() ran the first turn: the pass is on its way.
		wait_for_dumps();
		assert.same({ "k-3.log", "other-1.log" }, names());
		m:tick(); -- polls the report (the reports of the native library, earlier specs' too)
		local expected = ("Deleted 2 dump file(s) older than keep_dumps_for = 2h: %s/k-1.log, %s/k-2.log.gz"):format(dir, dir);
		local reported = false;
		for _, text in ipairs(m:messages("info")) do reported = reported or text == expected; end
		assert.is_true(reported, table.concat(m:messages("info"), "\n"));
		-- The timer goes on, hourly.
		local hourly = false;
		os.execute(("touch -d '3 hours ago' %s/k-3.log"):format(dir));
		for _, timer in ipairs(m.timers) do
			if timer() == 3600 then hourly = true; end
		end
		wait_for_dumps();
		assert.is_true(hourly);
		assert.same({ "other-1.log" }, names());
	end);

	it("bad values are config errors, and the sink runs without it", function ()
		local m = load({ { to = "ringbuffer", keep_dumps_for = "two weeks", filename_template = dir .. "/k-{count}.log" } }, dir);
		assert.equal(1, #m:messages("error"));
		assert.truthy(m:messages("error")[1]:find("Invalid value for option 'keep_dumps_for': \"two weeks\"", 1, true));
		assert.same({}, m.timers);
	end);
end);
