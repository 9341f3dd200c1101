-- Loads lua/mod_log_ringbuffer.lua the way Prosody does, with a stand-in for the module API,
-- on top of Prosody's real core.loggingmanager, core.configmanager and util.logger.
local helper = require "spec.helpers.native";
local format = helper.format;

local env = {};

-- A stand-in for Prosody's module API that records what the module does.
function env.new_module()
	local m = { logged = {}, hooks = {}, timers = {}, shared_tables = {}, items = {} };
	-- luacheck: ignore 212/self
	function m:set_global() end
	function m:set_status(status_type, message) self.status = { status_type, message }; end
	function m:get_option_number(_, default) return default; end
	function m:log(level, fmt, ...)
		table.insert(self.logged, { level = level, text = format(fmt, ...) });
	end
	function m:hook_global(event, handler)
		self.hooks[event] = self.hooks[event] or {};
		table.insert(self.hooks[event], handler);
	end
	function m:add_timer(_, handler)
		table.insert(self.timers, handler);
		return {};
	end
	function m:get_directory() return "./lua"; end
	-- As Prosody's: the module's library <name>.lib.lua, run in the module's environment.
	function m:require(name)
		return assert(loadfile("lua/mod_log_ringbuffer/" .. name .. ".lib.lua", "t", self.environment))();
	end
	-- module:metric: families whose values are kept in `metrics[name][label values]`.
	m.metrics = {};
	function m:metric(_, name)
		local values = {};
		self.metrics[name] = values;
		local family = {};
		function family.with_labels(_, ...)
			local key = table.concat({ ... }, ",");
			return {
				add = function (_, n) values[key] = (values[key] or 0) + n; end;
				set = function (_, n) values[key] = n; end;
			};
		end
		function family.clear() for key in pairs(values) do values[key] = nil; end end
		return family;
	end
	function m:shared(name)
		self.shared_tables[name] = self.shared_tables[name] or {};
		return self.shared_tables[name];
	end
	-- Test helpers, not part of Prosody's API.
	-- Fires a global event and waits for the dumps it started to be written.
	function m:fire(event)
		for _, handler in ipairs(self.hooks[event] or {}) do handler({}); end
		env.wait_for_dumps();
	end
	function m:handler_count(event) return #(self.hooks[event] or {}); end
	function m:messages(level)
		local out = {};
		for _, entry in ipairs(self.logged) do
			if not level or entry.level == level then table.insert(out, entry.text); end
		end
		return out;
	end
	return m;
end

local loggingmanager = require "core.loggingmanager";
local configmanager = require "core.configmanager";
env.logger = require "util.logger";

-- The module's `prosody` global: its data path and global events (ringbuffer/dumped fires there).
function env.prosody(data_dir)
	return { paths = { data = data_dir }, events = require "util.events".new() };
end

-- Sets the global `log` option and loads the module; returns the module stand-in.
function env.load(log_config, data_dir, module_object)
	configmanager.set("*", "log", log_config);
	loggingmanager.register_sink_type("ringbuffer", nil); -- forget any earlier test's maker
	loggingmanager.reload_logging();
	local m = module_object or env.new_module();
	local sandbox = setmetatable({ module = m, prosody = env.prosody(data_dir) }, { __index = _G });
	m.environment = sandbox;
	local chunk = assert(loadfile("lua/mod_log_ringbuffer.lua", "t", sandbox));
	chunk();
	m.env = sandbox;
	return m;
end

function env.reload(log_config)
	if log_config then configmanager.set("*", "log", log_config); end
	loggingmanager.reload_logging();
end

-- Temporary folders, removed when the spec run's Lua state closes.
local made = setmetatable({}, { __gc = function (dirs)
	for _, dir in ipairs(dirs) do os.execute("rm -rf '" .. dir .. "'"); end
end });
env.tempdirs = made; -- anchored for as long as this helper is loaded

function env.tempdir()
	local tmp = os.getenv("TMPDIR");
	local dir = io.popen(("mktemp -d '%s/lrb-spec-XXXXXX'"):format(tmp ~= nil and tmp ~= "" and tmp or "/tmp")):read("l");
	table.insert(made, dir);
	return dir;
end

env.read = require "spec.helpers.prosody".read;

-- Waits until every dump started so far has been written.
function env.wait_for_dumps()
	local deadline = os.time() + 5;
	while helper.native.dumps_in_flight() > 0 do
		assert(os.time() <= deadline, "dumps still pending");
		os.execute("sleep 0.01");
	end
end

return env;
