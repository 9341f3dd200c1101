-- Times handle:dump() of a full 64 MiB native ring to tmpfs, in a process of its own, and the
-- cost of log calls made while the file is written if dump() returns before it is complete
-- (an asynchronous dump that says when it is done). Those calls refill a ring the dump has just
-- emptied, which takes fresh memory, so they are also compared with as many calls into an empty
-- ring of the same size with no dump running. Prints a Lua table constructor.
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";

local now = common.now;
local size, path = 64 * 1024 * 1024, "/dev/shm/lrb-bench-dump.log";
os.remove(path);

local handle, sink = common.new_sink({ size = size, filename = path });
logger.add_level_sink("debug", sink);
local log = logger.make_logger(common.source, "debug");
common.fill(log, size // 100);

-- The cost of a typical log call with no dump running, for comparison: median of 7 batches.
local batch = 1000;
local idle = {};
for i = 1, 7 do
	local t = now();
	common.workloads[1].run(log, 20 * batch);
	idle[i] = (now() - t) / (20 * batch) * 1e9;
end
table.sort(idle);
local idle_ns = idle[4];

local lines, bytes = handle:usage();
-- True while a dump is still being written, if the module can tell: handle:dump_pending()
-- or, as the native module has it now, native.pending_dumps() (a count for all sinks).
local pending;
if handle.dump_pending then
	pending = function () return handle:dump_pending(); end
elseif common.native.pending_dumps then
	pending = function () return common.native.pending_dumps() > 0; end
end

local start = now();
local ok, err = handle:dump(); -- true, path, lines or nil, error
local returned = now() - start;
if ok then err = nil; end
local during_ns, calls = nil, 0;
if ok and pending then
	local spent = 0;
	while pending() do
		local t = now();
		common.workloads[1].run(log, batch);
		spent, calls = spent + (now() - t), calls + batch;
	end
	if calls > 0 then during_ns = spent / calls * 1e9; end
end
local complete = now() - start;

-- The same number of calls into an empty ring, no dump running.
local refill_ns;
if calls > 0 then
	local _, fresh_sink = common.new_sink({ size = size });
	logger.reset();
	logger.add_level_sink("debug", fresh_sink);
	local fresh_log = logger.make_logger(common.source, "debug");
	local t = now();
	common.workloads[1].run(fresh_log, calls);
	refill_ns = (now() - t) / calls * 1e9;
end

local f = io.open(path);
local file_bytes = f and f:seek("end") or 0;
if f then f:close(); end
os.remove(path);

print(("return { ok = %s, err = %s, lines = %d, bytes = %d, file_bytes = %d, returned = %.6f, complete = %.6f,"
	.. " async = %s, idle_ns = %.1f, during_ns = %s, refill_ns = %s, calls = %d }"):format(tostring(ok),
	err and ("%q"):format(err) or "nil", lines, bytes, file_bytes, returned, complete, tostring(pending ~= nil), idle_ns,
	during_ns or "nil", refill_ns or "nil", calls));
