-- For the profiling behind `make bench-server` (GC_PROBE=1 in scripts/bench-server.sh): the
-- first SIGUSR1 stops Lua's garbage collector and notes the heap size, the second notes it
-- again, logs the bytes allocated in between and restarts the collector. The load generator
-- sends them around its timed part, so the log says how much Lua heap the messages allocated.
-- luacheck: globals module
module:set_global();

local before;
module:hook_global("signal/SIGUSR1", function ()
	if not before then
		collectgarbage("stop");
		before = collectgarbage("count");
	else
		local allocated = math.floor((collectgarbage("count") - before) * 1024);
		before = nil;
		collectgarbage("restart");
		module:log("info", "gcprobe: %d bytes of Lua heap allocated", allocated);
	end
end);
