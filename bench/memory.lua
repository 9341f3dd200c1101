-- RSS growth of one fresh native sink filled with typical lines, in a process of its own:
-- `lua5.4 bench/memory.lua size` (a 64 MiB ring) or `lua5.4 bench/memory.lua lines` (100000
-- lines), or `lua5.4 bench/memory.lua size persist` (the 64 MiB ring with `persist`, its ring file
-- in common.persist_dir()). Prints the figures as a Lua table constructor for bench/bench.lua:
-- growth of peak RSS (VmHWM), of RSS (VmRSS) and of its parts (RssAnon: heap; RssFile: mapped
-- file pages, the ring file's; RssShmem: mapped tmpfs/shared pages, the ring file's on a tmpfs).
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";

local mode, persist = arg[1], arg[2] == "persist";
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
local fields = { "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem" };
local before = {};
for _, field in ipairs(fields) do before[field] = common.status(field); end
local handle, sink;
if persist then
	handle, sink = common.new_persisted_sink(config, common.persist_dir());
else
	handle, sink = common.new_sink(config);
end
logger.add_level_sink("debug", sink);
common.fill(logger.make_logger(common.source, "debug"), lines_to_log);
collectgarbage();
local lines, bytes = handle:usage();

local growth = {};
for _, field in ipairs(fields) do growth[field] = common.status(field) - before[field]; end
local file_bytes = 0;
if persist then
	local p = io.popen("stat -c %s '" .. handle:journal_path() .. "'");
	file_bytes = tonumber(p:read("l")) or 0;
	p:close();
end
print(("return { mode = %q, size = %s, lines = %d, bytes = %d, hwm_growth = %d, rss_growth = %d, anon_growth = %d,"
	.. " file_growth = %d, shmem_growth = %d, file_bytes = %d }"):format(mode, config.size or "nil", lines, bytes,
	growth.VmHWM, growth.VmRSS, growth.RssAnon, growth.RssFile, growth.RssShmem, file_bytes));
