-- RSS growth of one fresh native sink filled with typical lines, in a process of its own:
-- `lua5.4 bench/memory.lua size` (a 64 MiB ring) or `lua5.4 bench/memory.lua lines` (100000
-- lines). Prints the figures as a Lua table constructor for bench/bench.lua.
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";

local mode = arg[1];
local config, lines_to_log;
if mode == "size" then
	config = { size = 64 * 1024 * 1024 };
	lines_to_log = config.size // 100; -- typical lines are longer than 100 bytes: wraps
elseif mode == "lines" then
	config = { lines = 100000 };
	lines_to_log = config.lines * 5 // 4;
else
	error("usage: lua5.4 bench/memory.lua size|lines");
end

collectgarbage();
local hwm0, rss0 = common.status("VmHWM"), common.status("VmRSS");
local handle, sink = common.new_sink(config);
logger.add_level_sink("debug", sink);
common.fill(logger.make_logger(common.source, "debug"), lines_to_log);
collectgarbage();
local lines, bytes = handle:usage();

print(("return { mode = %q, size = %s, lines = %d, bytes = %d, hwm_growth = %d, rss_growth = %d }"):format(
	mode, config.size or "nil", lines, bytes, common.status("VmHWM") - hwm0, common.status("VmRSS") - rss0));
