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
		local m = env.load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("debug", "hello %s", "world");
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.truthy(text:match("^%-%- Dumping log buffer at .-  %-%-\n%a%a%a %d%d %d%d:%d%d:%d%d spec\tdebug\thello world\n"));
		assert.truthy(text:find("-- End of dump --\n\n", 1, true));
		assert.same({}, m:messages("error"));
	end);

	it("keeps lines and hooks once across logging reloads", function ()
		local config = { { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } };
		local m = env.load(config, dir);
		log("debug", "before reloads");
		env.reload();
		env.reload({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } });
		log("debug", "after reloads");
		assert.equal(1, m:handler_count("spec/dump"));
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.equal(1, count(text, "-- Dumping log buffer"));
		assert.equal(1, count(text, "before reloads"));
		assert.equal(1, count(text, "after reloads"));
	end);

	it("starts afresh when a sink's options change, and drops the old trigger", function ()
		local m = env.load({ { to = "ringbuffer", event = "spec/old", filename = dir .. "/old.log" } }, dir);
		log("debug", "old line");
		env.reload({ { to = "ringbuffer", event = "spec/new", filename = dir .. "/new.log" } });
		m:fire("spec/old");
		m:fire("spec/new");
		assert.is_nil(env.read(dir .. "/old.log"));
		assert.falsy(env.read(dir .. "/new.log"):find("old line", 1, true));
	end);

	it("keeps two identical sinks apart", function ()
		local entry = { to = "ringbuffer", lines = 10, event = "spec/dump", filename = dir .. "/d.log" };
		local m = env.load({ entry, { to = "ringbuffer", lines = 10, event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("debug", "twice");
		env.reload();
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.equal(2, count(text, "-- Dumping log buffer"));
		assert.equal(2, count(text, "twice"));
	end);

	it("honours level as a minimum level", function ()
		local m = env.load({ { to = "ringbuffer", level = "warn", event = "spec/dump", filename = dir .. "/d.log" } }, dir);
		log("info", "not kept");
		log("warn", "kept");
		log("error", "kept too");
		m:fire("spec/dump");
		local text = env.read(dir .. "/d.log");
		assert.falsy(text:find("not kept", 1, true));
		assert.truthy(text:find("\twarn\tkept\n", 1, true) and text:find("\terror\tkept too\n", 1, true));
	end);

	it("reports bad options in Prosody's log and keeps capturing", function ()
		local m = env.load({
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
		local m = env.load("*ringbuffer", dir);
		assert.truthy(table.concat(m:messages("warn"), "\n"):find("nothing will dump it", 1, true));
		log("debug", "shorthand line");
		local ok, text = m.env.module.shared_tables["/*/admin_shell/env"].ringbuffer:status();
		assert.is_true(ok);
		assert.truthy(text:find("1 lines", 1, true), text);
	end);

	it("accepts debug = \"*ringbuffer\" too", function ()
		local m = env.load({ debug = "*ringbuffer" }, dir);
		assert.truthy(table.concat(m:messages("warn"), "\n"):find("nothing will dump it", 1, true));
		log("debug", "keyed shorthand line");
		local ok, text = m.shared_tables["/*/admin_shell/env"].ringbuffer:status();
		assert.is_true(ok);
		assert.truthy(text:find("^#1: 1 lines"), text);
	end);

	it("logs why a dump failed and keeps the lines for the next one", function ()
		local m = env.load({ { to = "ringbuffer", event = "spec/dump", filename = dir .. "/missing/d.log" } }, dir);
		log("debug", "precious");
		m:fire("spec/dump");
		assert.same({ "Unable to open output file: " .. dir .. "/missing/d.log: No such file or directory" }, m:messages("error"));
		os.execute("mkdir " .. dir .. "/missing");
		m:fire("spec/dump");
		assert.truthy(env.read(dir .. "/missing/d.log"):find("precious", 1, true));
	end);

	it("keeps buffers and triggers across a module reload", function ()
		local config = { { to = "ringbuffer", event = "spec/dump", filename = dir .. "/d.log" } };
		local first = env.load(config, dir);
		log("debug", "survives reload");
		local saved = first.env.module.save();
		first.env.module.unload();
		-- Prosody reloads by running the file again; the sink type is already registered.
		local second = env.new_module();
		local sandbox = setmetatable({ module = second, prosody = { paths = { data = dir } } }, { __index = _G });
		assert(loadfile("lua/mod_log_ringbuffer.lua", "t", sandbox))();
		sandbox.module.restore(saved);
		assert.equal(1, second:handler_count("spec/dump"));
		second:fire("spec/dump");
		assert.truthy(env.read(dir .. "/d.log"):find("survives reload", 1, true));
	end);

	it("dumps every sink from the admin shell", function ()
		local m = env.load({ { to = "ringbuffer", filename = dir .. "/a.log" }, { to = "ringbuffer", lines = 5, filename = dir .. "/b.log" } }, dir);
		log("info", "shell line");
		local ok, text = m.shared_tables["/*/admin_shell/env"].ringbuffer:dump();
		assert.is_true(ok, text);
		assert.is_true(require "spec.helpers.native".native.wait_for_dumps(5));
		assert.truthy(env.read(dir .. "/a.log"):find("shell line", 1, true));
		assert.truthy(env.read(dir .. "/b.log"):find("shell line", 1, true));
	end);
end);
