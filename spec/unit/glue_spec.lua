-- The Lua glue (lua/mod_log_ringbuffer.lua) inside Prosody's real logging manager.
local env = require "spec.helpers.module_env";

local function count(text, plain)
	local n, from = 0, 1;
	while true do
		local at = text:find(plain, from, true);
		if not at then return n; end
		n, from = n + 1, at + #plain;
	end
end

local wait_for_dumps = env.wait_for_dumps;

-- The module stand-in, plus what this module needs of Prosody's module API beyond it.
local function new_module()
	local m = env.new_module();
	-- Fires a global event and waits for the dumps it started.
	function m:fire(event)
		for _, handler in ipairs(self.hooks[event] or {}) do handler({}); end
		wait_for_dumps();
	end
	function m:add_item(item_type, item)
		self.items[item_type] = self.items[item_type] or {};
		table.insert(self.items[item_type], item);
	end
	-- The main loop's next turn: runs the timers that are due (all of them, here).
	function m:tick()
		local timers = self.timers;
		self.timers = {};
		for _, handler in ipairs(timers) do
			if handler() then table.insert(self.timers, handler); end
		end
	end
	return m;
end

local function load(log_config, dir)
	local m = env.load(log_config, dir, new_module());
	m:tick();
	return m;
end

-- A logging reload as SIGHUP does it (reload_logging, then the logging-reloaded event).
local function reload_as_prosody(m, log_config)
	env.reload(log_config);
	m:fire("logging-reloaded");
end

-- Unloads the module as Prosody's module reload does and loads its file again.
local function reload_module(first, dir)
	local saved = first.env.module.save();
	first.env.module.reloading = true;
	first.env.module.unload();
	local second = new_module();
	local sandbox = setmetatable({ module = second, prosody = env.prosody(dir) }, { __index = _G });
	second.environment = sandbox;
	assert(loadfile("lua/mod_log_ringbuffer.lua", "t", sandbox))();
	second.env = sandbox;
	sandbox.module.restore(saved);
	return second;
end

local function shell(m, name)
	return m.shared_tables["/*/admin_shell/env"].ringbuffer[name]({});
end

describe("mod_log_ringbuffer", function ()
	local dir, log;
	before_each(function ()
		dir = env.tempdir();
		log = env.logger.init("spec");
	end);
	after_each(function ()
		os.execute("rm -rf " .. dir);
	end);

	it("captures log lines and dumps them on its event", function ()
		local m = load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("debug", "hello %s", "world");
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.truthy(text:match("^%-%- Dumping log buffer at .-  %-%-\n%a%a%a %d%d %d%d:%d%d:%d%d spec\tdebug\thello world\n"));
		assert.truthy(text:find("-- End of dump --\n\n", 1, true));
		assert.same({}, m:messages("error"));
	end);

	it("keeps lines and hooks once across logging reloads, settled or not", function ()
		local m = load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("debug", "before reloads");
		env.reload(); -- two direct reloads in one turn of the main loop (as 0.12 daemonizing does)
		env.reload({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } });
		m:tick();
		reload_as_prosody(m);
		log("debug", "after reloads");
		assert.equal(1, m:handler_count("spec/dump"));
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.equal(1, count(text, "-- Dumping log buffer"));
		assert.equal(1, count(text, "before reloads"));
		assert.equal(1, count(text, "after reloads"));
	end);

	it("tells reloads apart without counting the entries, shorthands included", function ()
		local config = {
			info = "*ringbuffer";
			"*ringbuffer";
			{ to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" };
			"*ringbuffer";
		};
		local m = load(config, dir);
		log("info", "kept");
		for _ = 1, 3 do env.reload(); end
		m:tick();
		local ok, text = shell(m, "status");
		assert.is_true(ok);
		assert.equal("#1: 1 lines", text:match("^[^,]*"), text);
		assert.truthy(text:find("\n#4: 1 lines", 1, true), text);
		assert.falsy(text:find("#5", 1, true), text);
		m:fire("spec/dump");
		assert.equal(1, count(env.read(dir .. "/d.log"), "-- Dumping log buffer"));
	end);

	it("hands the lines to the new sink when a sink's options change, and drops the old trigger", function ()
		local m = load({ { to = "ringbuffer", event = "spec/old", filename = dir .. "/old.log" } }, dir);
		log("debug", "old line");
		env.reload({ { to = "ringbuffer", event = "spec/new", filename = dir .. "/new.log" } });
		m:tick();
		m:fire("spec/old");
		m:fire("spec/new");
		assert.is_nil(env.read(dir .. "/old.log"));
		assert.equal(1, count(env.read(dir .. "/new.log"), "\tdebug\told line\n"));
	end);

	it("settles a reload on Prosody's logging-reloaded event", function ()
		local m = load({ { to = "ringbuffer", event = "spec/old", filename = dir .. "/old.log" } }, dir);
		reload_as_prosody(m, { { to = "ringbuffer", event = "spec/new", filename = dir .. "/new.log" } });
		m:fire("spec/old");
		assert.is_nil(env.read(dir .. "/old.log"));
	end);

	it("dumps and drops every sink when a reload leaves none configured", function ()
		local m = load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("debug", "gone");
		reload_as_prosody(m, { { to = "file", filename = dir .. "/prosody.log" } });
		m:fire("spec/dump");
		-- The removed sink's lines are dumped once, to its own file; its trigger is gone.
		local text = env.read(dir .. "/d.log");
		assert.equal(1, count(text, "-- Dumping log buffer"), text);
		assert.equal(1, count(text, "\tdebug\tgone\n"), text);
		assert.same({ true, "No ringbuffer sinks are configured" }, { shell(m, "status") });
		-- and a direct reload without the event is noticed too
		env.reload({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } });
		m:tick();
		env.reload({ { to = "file", filename = dir .. "/prosody.log" } });
		m:tick();
		assert.same({ true, "No ringbuffer sinks are configured" }, { shell(m, "status") });
	end);

	it("keeps two identical sinks apart", function ()
		local entry = { to = "ringbuffer", lines = 10, event = "spec/dump", filename = dir .. "/d.log" };
		local m = load({ entry, { to = "ringbuffer", lines = 10, event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("debug", "twice");
		env.reload();
		m:tick();
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.equal(2, count(text, "-- Dumping log buffer"));
		assert.equal(2, count(text, "twice"));
	end);

	it("honours level as a minimum level", function ()
		local m = load({ { to = "ringbuffer", level = "warn", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("info", "not kept");
		log("warn", "kept");
		log("error", "kept too");
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.falsy(text:find("not kept", 1, true));
		assert.truthy(text:find("\twarn\tkept\n", 1, true) and text:find("\terror\tkept too\n", 1, true));
	end);

	it("warns about level only when the user's levels differ", function ()
		local m = load({
			{ to = "ringbuffer", level = "info", levels = { min = "info" }, event = "spec/a", filename = dir .. "/a.log" };
			{ to = "ringbuffer", level = "info", levels = { "error" }, event = "spec/b", filename = dir .. "/b.log" };
		}, dir);
		assert.same({ "Option 'level' is ignored for a ringbuffer sink that also sets 'levels'" }, m:messages("warn"));
	end);

	it("gives no false level warning after a module reload or an unload and load", function ()
		local config = { { to = "ringbuffer", level = "info", event = "spec/dump", filename = dir .. "/d.log" } };
		local first = load(config, dir);
		local second = reload_module(first, dir);
		env.reload();
		second:tick();
		assert.same({}, second:messages("warn"));
		second.env.module.unload(); -- really unloading: the sink type goes, logging is reloaded
		local third = new_module();
		env.load(config, dir, third); -- the same config tables, with the levels set above
		env.reload();
		third:tick();
		assert.same({}, third:messages("warn"));
		log("debug", "not kept");
		log("info", "kept");
		third:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.falsy(text:find("not kept", 1, true));
		assert.truthy(text:find("kept", 1, true));
	end);

	it("reports bad options in Prosody's log and keeps capturing", function ()
		local m = load({
			{ to = "ringbuffer", size = "big", signal = "SIGFOO", colour = true, event = "spec/dump", filename = dir .. "/d.log" },
		}, dir);
		local errors = table.concat(m:messages("error"), "\n");
		assert.truthy(errors:find("'size': \"big\"", 1, true), errors);
		assert.truthy(errors:find("'signal': \"SIGFOO\"", 1, true), errors);
		assert.truthy(table.concat(m:messages("warn"), "\n"):find("'colour'", 1, true));
		log("debug", "still captured");
		m:fire("spec/dump");
		assert.truthy(env.read(dir .. "/d.log"):find("still captured", 1, true));
	end);

	it("accepts the *ringbuffer shorthand and warns that nothing dumps it", function ()
		local m = load("*ringbuffer", dir);
		assert.truthy(table.concat(m:messages("warn"), "\n"):find("nothing will dump it", 1, true));
		log("debug", "shorthand line");
		local ok, text = shell(m, "status");
		assert.is_true(ok);
		assert.truthy(text:find("1 lines", 1, true), text);
	end);

	it("accepts debug = \"*ringbuffer\" too", function ()
		local m = load({ debug = "*ringbuffer" }, dir);
		assert.truthy(table.concat(m:messages("warn"), "\n"):find("nothing will dump it", 1, true));
		log("debug", "keyed shorthand line");
		local ok, text = shell(m, "status");
		assert.is_true(ok);
		assert.truthy(text:find("^#1: 1 lines"), text);
	end);

	it("logs why a dump failed and keeps the lines for the next one", function ()
		local m = load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/missing/d.log" } }, dir);
		log("debug", "precious");
		m:fire("spec/dump");
		assert.same({ "Unable to open output file: " .. dir .. "/missing/d.log: No such file or directory" }, m:messages("error"));
		os.execute("mkdir " .. dir .. "/missing");
		m:fire("spec/dump");
		assert.truthy(env.read(dir .. "/missing/d.log"):find("precious", 1, true));
	end);

	it("keeps buffers and triggers across a module reload, and across a logging reload after it", function ()
		local first = load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("debug", "survives reload");
		local second = reload_module(first, dir);
		assert.equal(1, second:handler_count("spec/dump"));
		local _, status = shell(second, "status");
		assert.truthy(status:find("^#1: 1 lines"), status);
		reload_as_prosody(second);
		log("debug", "and the logging reload");
		assert.equal(1, second:handler_count("spec/dump"));
		second:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.equal(1, count(text, "-- Dumping log buffer"));
		assert.equal(1, count(text, "survives reload"));
		assert.equal(1, count(text, "and the logging reload"));
	end);

	it("dumps every sink from the admin shell", function ()
		local m = load({ { to = "ringbuffer", filename = dir .. "/a.log" }, { to = "ringbuffer", lines = 5, filename = dir .. "/b.log" } }, dir);
		log("info", "shell line");
		local ok, text = shell(m, "dump");
		assert.is_true(ok, text);
		wait_for_dumps();
		assert.truthy(env.read(dir .. "/a.log"):find("shell line", 1, true));
		assert.truthy(env.read(dir .. "/b.log"):find("shell line", 1, true));
	end);

	it("offers the shell functions as Prosody 13 shell-command items, which never raise", function ()
		local m = load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		local section = m.shared_tables["/*/admin_shell/env"].ringbuffer;
		local names = {};
		for _, item in ipairs(m.items["shell-command"]) do
			assert.equal("ringbuffer", item.section);
			assert.equal("string", type(item.section_desc));
			assert.equal("string", type(item.desc));
			assert.equal("table", type(item.args));
			assert.equal(section[item.name], item.handler);
			table.insert(names, item.name);
		end
		table.sort(names);
		assert.same({ "clear", "dump", "follow", "grep", "pause", "resume", "status", "tail" }, names);
		-- A handle that raises: the shell gets false and a message, not an error.
		local broken = setmetatable({}, { __index = function () error("broken handle"); end });
		table.insert(m.env.module.save().live, { handle = broken });
		for _, name in ipairs({ "status", "dump", "tail", "clear" }) do
			local ok, success, text = pcall(section[name], {});
			assert.is_true(ok);
			assert.is_false(success);
			assert.truthy(text:find("ringbuffer:" .. name .. "() failed: ", 1, true) and text:find("broken handle", 1, true), text);
		end
	end);
end);
