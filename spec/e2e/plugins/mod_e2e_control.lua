-- Test-only plugin: lets the end-to-end specs drive a running Prosody through a control file.
-- Every 50 ms it runs the lines written to <data>/control and removes the file:
--   log <level> <text>   log a line through Prosody's logger
--   log_async <level> <text>  the same from a util.async runner (a coroutine), then log
--                        "<text> continued" from it
--   fire <event>         fire a global event
--   traceback            what mod_debug_traceback (a community module, not packaged) does:
--                        fire debug_traceback/triggered, then append a traceback to
--                        {paths.data}/traceback-{pid}-{count}.log
--   reload_logging       call the logging manager's reload directly (as daemonizing does)
--   collect              run Lua's garbage collector through a full cycle, twice (objects
--                        with finalizers are freed only by the second)
--   spam <n> <tag> [<pad>]  log n debug lines "<tag> <i>" (after <pad> bytes of "x" and a
--                        space, if given), 500 every 10 ms, then "<tag> done"
--   reload_module <name>, unload_module <name>, load_module <name>   (global modules)
--   hang lua <seconds>   from a timer, spin in Lua (function spin_in_lua) for that long
--   hang c <seconds>     from a timer, block in C (a socket.select with nothing to wait for)
--                        for that long; both first create <data>/hanging
--   spin <tag> <n>       on a timer (so on the main thread): log n debug lines "<tag> <i>",
--                        write the time to <data>/stalled-at, then spin in Lua for ever, in
--                        the function spin_until_killed
--   block <seconds> <tag> <n>  the same, but then block in C for that long (os.execute of
--                        sleep), and log "<tag> recovered" after it
-- It also appends a line to <data>/logging-reloaded at each logging-reloaded event, so that
-- a spec can wait for a SIGHUP's logging reload to have finished.
module:set_global();

local pposix = require "util.pposix";
local socket = require "socket";
local modulemanager = require "core.modulemanager";
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

-- The main loop hangs from here on, in Lua or in C.
local function spin_in_lua(seconds)
	local deadline = socket.gettime() + seconds;
	while socket.gettime() < deadline do end
end

local function block_in_c(seconds)
	socket.select(nil, nil, seconds); -- LuaSocket retries after a signal with the time left
end

local function hang(how, seconds)
	module:add_timer(0, function ()
		assert(io.open(prosody.paths.data .. "/hanging", "w")):close();
		if how == "lua" then spin_in_lua(seconds); else block_in_c(seconds); end
	end);
end

-- Marks when the main loop stops turning, for the stall specs.
local function mark_stall(tag, n)
	for i = 1, n do
		module:log("debug", "%s %d", tag, i);
	end
	local f = assert(io.open(prosody.paths.data .. "/stalled-at", "w"));
	f:write(("%.3f"):format(require "socket".gettime()));
	f:close();
end

-- Never returns: the stall specs kill the server.
local function spin_until_killed()
	local turns = 0;
	while true do
		turns = turns + 1;
	end
end

local function run(line)
	local command, rest = line:match("^(%S+)%s*(.*)$");
	if command == "log" then
		local level, text = rest:match("^(%S+) (.*)$");
		module:log(level, "%s", text);
	elseif command == "log_async" then
		local level, text = rest:match("^(%S+) (.*)$");
		require "util.async".runner(function ()
			module:log(level, "%s", text);
			module:log(level, "%s continued", text);
		end):run(true);
	elseif command == "fire" then
		prosody.events.fire_event(rest, {});
	elseif command == "traceback" then
		traceback();
	elseif command == "collect" then
		collectgarbage("collect");
		collectgarbage("collect");
	elseif command == "reload_logging" then
		require "core.loggingmanager".reload_logging();
	elseif command == "spam" then
		local total, tag, pad = rest:match("^(%d+) (%S+)%s*(%d*)$");
		local prefix = pad ~= "" and ("x"):rep(tonumber(pad)) .. " " or "";
		local i = 0;
		module:add_timer(0, function ()
			for _ = 1, 500 do
				i = i + 1;
				if i > tonumber(total) then
					module:log("info", "%s done", tag);
					return;
				end
				module:log("debug", "%s%s %d", prefix, tag, i);
			end
			return 0.01;
		end);
	elseif command == "hang" then
		local how, seconds = rest:match("^(%a+) (%d+)$");
		hang(how, tonumber(seconds));
	elseif command == "spin" then
		local tag, n = rest:match("^(%S+) (%d+)$");
		module:add_timer(0, function ()
			mark_stall(tag, tonumber(n));
			spin_until_killed();
		end);
	elseif command == "block" then
		local seconds, tag, n = rest:match("^(%d+) (%S+) (%d+)$");
		module:add_timer(0, function ()
			mark_stall(tag, tonumber(n));
			os.execute("sleep " .. seconds);
			module:log("info", "%s recovered", tag);
		end);
	elseif command == "reload_module" then
		modulemanager.reload("*", rest);
	elseif command == "unload_module" then
		modulemanager.unload("*", rest);
	elseif command == "load_module" then
		modulemanager.load("*", rest);
	end
end

module:hook_global("logging-reloaded", function ()
	local f = io.open(prosody.paths.data .. "/logging-reloaded", "a");
	if f then
		f:write("reloaded\n");
		f:close();
	end
end);

module:add_timer(0.05, function ()
	local f = io.open(control);
	if f then
		local text = f:read("*a"); -- "*a": Lua 5.2 (Prosody 0.11) needs the star
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
