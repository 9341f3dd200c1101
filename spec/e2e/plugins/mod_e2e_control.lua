-- Test-only plugin: lets the end-to-end specs drive a running Prosody through a control file.
-- Every 50 ms it runs the lines written to <data>/control and removes the file:
--   log <level> <text>   log a line through Prosody's logger
--   fire <event>         fire a global event
--   traceback            what mod_debug_traceback (a community module, not packaged) does:
--                        fire debug_traceback/triggered, then append a traceback to
--                        {paths.data}/traceback-{pid}-{count}.log
--   reload_logging       call the logging manager's reload directly (as daemonizing does)
module:set_global();

local pposix = require "util.pposix";
local control = prosody.paths.data .. "/control";
local traceback_count = 0;

local function traceback()
	local tb = debug.traceback("e2e traceback", 1);
	prosody.events.fire_event("debug_traceback/triggered", { traceback = tb });
	local name = ("%s/traceback-%d-%d.log"):format(prosody.paths.data, pposix.getpid(), traceback_count);
	local f = assert(io.open(name, "a+"));
	f:write("-- Traceback generated at ", os.date("%b %d %H:%M:%S"), " --\n", tb, "\n", "-- End of traceback --\n");
	f:close();
	traceback_count = traceback_count + 1;
end

local function run(line)
	local command, rest = line:match("^(%S+)%s*(.*)$");
	if command == "log" then
		local level, text = rest:match("^(%S+) (.*)$");
		module:log(level, "%s", text);
	elseif command == "fire" then
		prosody.events.fire_event(rest, {});
	elseif command == "traceback" then
		traceback();
	elseif command == "reload_logging" then
		require "core.loggingmanager".reload_logging();
	end
end

module:add_timer(0.05, function ()
	local f = io.open(control);
	if f then
		local text = f:read("a");
		f:close();
		os.remove(control);
		for line in text:gmatch("[^\n]+") do
			run(line);
		end
		local done = io.open(control .. ".done", "a");
		done:write(text);
		done:close();
	end
	return 0.05;
end);
