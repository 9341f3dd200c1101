-- Times the admin shell's reads of a full 64 MiB ring (in a process of its own): for a grep, a
-- filtered tail and a plain tail, how long the call holds the Lua thread (taking the snapshot
-- and starting the scan: what Prosody's main loop waits), how long until the answer is there,
-- and the longest single log call made while the scan runs (the main loop keeps logging).
-- Baseline, in the same run: the plain dump of the same ring to tmpfs, the other way to look.
-- Also the longest batch of an answer's lines (what the shell takes in one tick), and the
-- longest hold of a real Prosody's main loop under 10 concurrent shell reads (shell_holds.lua)
-- and under 10 followers (follow_holds.lua).
-- Median of 5 each. Prints a Lua table constructor.
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";

local now = common.now;
local size, path = 64 * 1024 * 1024, "/dev/shm/lrb-bench-inspect.log";

local handle, sink = common.new_sink({ size = size, filename = path });
logger.add_level_sink("debug", sink);
logger.add_level_sink("info", sink);
logger.add_level_sink("warn", sink);
logger.add_level_sink("error", sink);

-- Lines from 200 sessions and a few modules, mostly debug, like a busy server's.
local loggers = {};
for i = 1, 200 do
	loggers[i] = logger.make_logger(("c2s%x"):format(0x55d0a8c3e000 + i), "debug");
end
local s2s = logger.make_logger("mod_s2s", "debug");
local warn = logger.make_logger("mod_s2s", "warn");
local info = logger.make_logger("general", "info");
local function fill()
	local n = 0;
	-- Until the ring is full: its lines stop growing in number.
	local held = -1;
	while select(1, handle:usage()) > held do
		held = handle:usage();
		for _ = 1, 1000 do
			n = n + 1;
			if n % 97 == 0 then
				warn("Failed to connect to %s: %s", "example.net", "connection refused");
			elseif n % 13 == 0 then
				s2s("Outgoing s2s stream example.org->example.net id=%d", n);
			elseif n % 11 == 0 then
				info("Client connected id=%d", n);
			else
				loggers[n % 200 + 1]("Received[c2s]: <message to='romeo@example.net' type='chat' id='%d'><body>hi</body></message>", n);
			end
		end
	end
end
fill();
local lines, bytes = handle:usage();

local function median(list)
	table.sort(list);
	return list[(#list + 1) // 2];
end

-- One read: `start()` returns a query; meanwhile the main loop goes on logging, 10 lines a
-- millisecond (a busy server's rate; faster would replace the ring's contents during a read).
local socket = require "socket";
local function time_read(start)
	local t0 = now();
	local query = assert(start());
	local called = now() - t0;
	local longest, answer = 0;
	while true do
		local ok, value = query:result();
		if ok ~= nil then
			answer = assert(ok and value, value);
			break;
		end
		local t = now();
		for _ = 1, 10 do
			loggers[1]("Received[c2s]: <message to='romeo@example.net' type='chat' id='%d'><body>hi</body></message>", 1);
		end
		longest = math.max(longest, now() - t);
		socket.sleep(0.001);
	end
	local complete = now() - t0;
	-- The lines, in the batches the shell prints one a tick: the longest take holds the loop.
	local batch = 0;
	repeat
		local t = now();
		local taken = query:lines();
		batch = math.max(batch, now() - t);
	until not taken;
	return called, complete, longest, answer, batch;
end

local function grep(pattern, limit)
	return { name = ("grep(%q, { limit = %d })"):format(pattern, limit or 100), start = function ()
		return handle:scan(nil, pattern, limit or 100);
	end };
end

local reads = {
	grep("c2s55d0a8c3e0c8");
	grep("Failed to connect|timed out");
	grep("c2s55d0a8c3e0[0-9a-f]+.*id='\\d+42'");
	grep(".", 10000);
	grep("(?i)[\\p{L}\\p{N}]{300}");
	{ name = "tail(20, { source = \"mod_s2s\", level = \"warn\" })", start = function ()
		return handle:scan({ source = "mod_s2s", level = "warn" }, nil, 20);
	end };
	{ name = "tail(20, { source = \"c2s55d0a8c3e0c*\" })", start = function ()
		return handle:scan({ source = "c2s55d0a8c3e0c*" }, nil, 20);
	end };
	{ name = "tail(20)", start = function ()
		return handle:scan(nil, nil, 20);
	end };
};

local results = {};
for i, read in ipairs(reads) do
	local called, complete, longest, batch = {}, {}, {}, {};
	local matched;
	for r = 1, 5 do
		local c, t, l, answer, b = time_read(read.start);
		called[r], complete[r], longest[r], batch[r], matched = c, t, l, b, answer.matched;
	end
	results[i] = ("{ name = %q, called = %.6f, complete = %.6f, longest_log = %.6f, batch = %.6f, matched = %d }")
		:format(read.name, median(called), median(complete), median(longest), median(batch), matched);
end

-- The baseline: dumping the same ring to tmpfs (median of 5; the ring refilled between).
local dumps = {};
for r = 1, 5 do
	os.remove(path);
	local t = now();
	assert(handle:dump());
	while common.native.dumps_in_flight() > 0 do end
	dumps[r] = now() - t;
	fill();
end
os.remove(path);

-- The longest hold of a real Prosody's main loop while 10 shells read at once (its own process).
local holds = io.popen(arg[-1] .. " bench/shell_holds.lua"):read("a");
holds = holds:match("^return (.*)$") or "{}";
-- And while 10 shells follow every line (bench/follow_holds.lua, its own process too).
local follows = io.popen(arg[-1] .. " bench/follow_holds.lua"):read("a");
follows = follows:match("^return (.*)$") or "{}";

print(("return { lines = %d, bytes = %d, dump = %.6f, reads = { %s }, holds = %s, follows = %s }"):format(lines,
	bytes, median(dumps), table.concat(results, ", "), holds, follows));
