-- Times handle:dump() of a full 64 MiB native ring to tmpfs, in a process of its own, and the
-- cost of log calls made while the file is written if dump() returns before it is complete
-- (an asynchronous dump that says when it is done). Those calls refill a ring the dump has just
-- emptied, which takes fresh memory, so they are also compared with as many calls into an empty
-- ring of the same size with no dump running. Then times whole dumps of a full 64 MiB ring
-- without and with compression (`compress = "zstd"`, `"gzip"`): median of 3 each, nothing logged
-- meanwhile; the size of the file against the text it holds. Prints a Lua table constructor.
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
-- or, as the native module has it now, native.dumps_in_flight() (a count for all sinks;
-- native.pending_dumps() before it was renamed).
local pending;
if handle.dump_pending then
	pending = function () return handle:dump_pending(); end
elseif common.native.dumps_in_flight then
	pending = function () return common.native.dumps_in_flight() > 0; end
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

local function size_of(file)
	local f = io.open(file);
	local n = f and f:seek("end") or 0;
	if f then f:close(); end
	return n;
end
local file_bytes = size_of(path);
os.remove(path);

-- Lines less alike than common.fill's (which differ only in a counter and compress 100:1):
-- sessions, JIDs, stanza ids, words and levels drawn from a seeded generator, as in a busy log.
local words = { "presence", "message", "iq", "roster", "carbons", "smacks", "ack", "resumed", "bound", "session",
	"disco#info", "vcard", "ping", "pubsub", "mam", "query", "result", "error", "timeout", "closed" };
local function varied_fill(n)
	math.randomseed(42);
	local random = math.random;
	local sources = {};
	for i = 1, 64 do sources[i] = logger.init(("c2s%012x"):format(random(0, 2^40))); end
	for _ = 1, n do
		local source_log = sources[random(#sources)];
		local user, id = random(1000), ("%08x-%04x"):format(random(0, 2^32 - 1), random(0, 65535));
		if random(4) == 1 then
			source_log("info", "Authenticated as user%d@example.com (%s, %d ms)", user, words[random(#words)], random(999));
		else
			source_log("debug", "Received[c2s]: <iq type='get' id='%s' to='user%d@example.com/%s'><%s xmlns='urn:xmpp:%s:%d'/></iq>",
				id, user, words[random(#words)], words[random(#words)], words[random(#words)], random(5));
		end
	end
end

-- Whole dumps of a full ring, plain and compressed: { name, ok, err, text, file_bytes, complete }.
local codecs = {};
if pending then
	local socket = require "socket";
	for _, codec in ipairs({ "none", "zstd", "gzip" }) do
		local out = "/dev/shm/lrb-bench-dump-" .. codec .. ".log";
		local config = { size = size, filename = out, compress = codec ~= "none" and codec or nil };
		logger.reset();
		handle, sink = nil, nil; -- luacheck: ignore 311 (lets the first ring go)
		collectgarbage();
		local h, s = common.new_sink(config);
		logger.add_level_sink("debug", s);
		local times, result = {}, { name = codec, ok = true };
		for run = 1, 3 do
			varied_fill(size // 100);
			local _, text = h:usage();
			local written = out .. (codec == "zstd" and ".zst" or codec == "gzip" and ".gz" or "");
			os.remove(written);
			local t = now();
			local dumped, why = h:dump();
			while dumped and pending() do socket.sleep(0.0005); end
			times[run] = now() - t;
			-- The text of the dump: its lines plus header and footer (64 bytes).
			result.text, result.file_bytes = text + 64, size_of(written);
			if not dumped then result.ok, result.err = false, why; end
			os.remove(written);
		end
		table.sort(times);
		result.complete = times[2];
		codecs[#codecs + 1] = result;
		logger.reset();
	end
end
local codec_fields = {};
for i, c in ipairs(codecs) do
	codec_fields[i] = ("{ name = %q, ok = %s, err = %s, text = %d, file_bytes = %d, complete = %.6f }"):format(c.name,
		tostring(c.ok), c.err and ("%q"):format(c.err) or "nil", c.text, c.file_bytes, c.complete);
end

print(("return { ok = %s, err = %s, lines = %d, bytes = %d, file_bytes = %d, returned = %.6f, complete = %.6f,"
	.. " async = %s, idle_ns = %.1f, during_ns = %s, refill_ns = %s, calls = %d, codecs = { %s } }"):format(tostring(ok),
	err and ("%q"):format(err) or "nil", lines, bytes, file_bytes, returned, complete, tostring(pending ~= nil), idle_ns,
	during_ns or "nil", refill_ns or "nil", calls, table.concat(codec_fields, ", ")));
