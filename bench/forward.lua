-- Forwarding a dump (`forward = "tcp://..."`) against writing it to a file, driving the native
-- library directly as bench/dump.lua does: a full 64 MiB ring of typical lines, either
-- forwarded over loopback TCP (one connection; RFC 6587 octet counting, and again with
-- `forward_framing = "lf"`, which rsyslog's imtcp takes as well) to a real, throwaway
-- rsyslogd (spec/helpers/rsyslog.lua) that writes what it receives to a file on tmpfs with its
-- stock file format, or dumped to a file on the same tmpfs. For each, median of 3:
--   - throughput, with the calling thread idle (it polls every millisecond): buffered lines per
--     second and MB/s of log text, from handle:dump() until the dump is no longer in flight (for
--     the forward: rsyslogd has read every byte and closed the connection); for the forward
--     also until rsyslogd's file holds the dump's last message, and the CPU time rsyslogd and
--     this process (the sending thread) used meanwhile;
--   - Prosody's main loop, in separate runs in which log calls go on all along (refilling the
--     ring): how long handle:dump() held the calling thread, and the longest time one log call
--     took while the dump was being sent, next to the mean and the same calls with no dump.
-- tmpfs: /dev/shm, or $XDG_RUNTIME_DIR if /dev/shm is not a tmpfs. Prints plain text.
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";
local rsyslog = require "spec.helpers.rsyslog";
local st = require "util.stanza";
local format = require "util.format".format;

local now, native = common.now, common.native;
local size = 64 * 1024 * 1024;
local rounds = tonumber(os.getenv("BENCH_ROUNDS")) or 3;
-- The forwards measured, by their framing: { name, forward_framing }.
local framings = { { "forward", nil }, { "forward_lf", "lf" } };

local function tmpfs()
	for _, dir in ipairs({ "/dev/shm", os.getenv("XDG_RUNTIME_DIR") or "" }) do
		for line in io.lines("/proc/mounts") do
			local point, kind = line:match("^%S+ (%S+) (%S+) ");
			if dir ~= "" and point == dir and kind == "tmpfs" then return dir; end
		end
	end
end

local function skip(why)
	print("forward: skipped: " .. why);
	os.exit(0);
end

local shm = tmpfs() or skip("neither /dev/shm nor $XDG_RUNTIME_DIR is a tmpfs");
local available, why = rsyslog.available();
if not available then skip(why); end
if not native.dumps_in_flight then skip("this native library cannot tell when a dump is done (dumps_in_flight)"); end

local function new_sink(config)
	local handle, sink, problems = native.new_sink(config, { data = shm }, format, tostring, st.stanza_mt);
	for _, problem in ipairs(problems) do
		if problem.text:find("forward", 1, true) then skip("this native library does not forward: " .. problem.text); end
		error(problem.text);
	end
	return handle, sink;
end

local function size_of(path)
	local f = io.open(path);
	local n = f and f:seek("end") or 0;
	if f then f:close(); end
	return n;
end

local function lines_in(path)
	local p = io.popen("cat '" .. path .. "' 2>/dev/null | wc -l");
	local n = tonumber(p:read("a"));
	p:close();
	return n or 0;
end

-- CPU seconds (user + system) a process has used, all its threads.
local function cpu_seconds(pid)
	local text = io.open("/proc/" .. pid .. "/stat"):read("a"):gsub("^.*%) ", "");
	local fields = {};
	for field in text:gmatch("%S+") do table.insert(fields, field); end
	return (tonumber(fields[12]) + tonumber(fields[13])) / 100; -- utime, stime (fields 14, 15) in USER_HZ
end

local function median(list)
	local sorted = { table.unpack(list) };
	table.sort(sorted);
	return sorted[(#sorted + 1) // 2];
end

local collector = rsyslog.start({ tmpdir = shm, store = "file" });
local received = collector.dir .. "/tcp.log";
local target = ("tcp://127.0.0.1:%d"):format(collector.tcp_port);
local dump_path = shm .. "/lrb-bench-forward-file.log";

-- Calls `log` in batches of 100 while `going()`, timing each call: the longest, the total, the
-- number of calls and of calls longer than 1 ms.
local function timed_calls(log, going)
	local longest, spent, calls, slow = 0, 0, 0, 0;
	while going() do
		for _ = 1, 100 do
			local t = now();
			log("Received[c2s]: %s from %s id=%d", "<iq type='get' id='x'/>", "juliet@example.com/balcony", calls);
			local d = now() - t;
			spent, calls = spent + d, calls + 1;
			if d > longest then longest = d; end
			if d > 0.001 then slow = slow + 1; end
		end
	end
	return longest, spent, calls, slow;
end

-- One dump of a full ring, with log calls meanwhile or the thread sleeping: { lines, bytes,
-- returned, complete, stored, longest_ns, mean_ns, slow, calls, ok, ... }.
local function run(config, is_forward, calls_meanwhile)
	logger.reset();
	collectgarbage();
	local handle, sink = new_sink(config);
	logger.add_level_sink("debug", sink);
	local log = logger.make_logger(common.source, "debug");
	common.fill(log, size // 100);
	local lines, bytes = handle:usage();
	native.take_reports();
	os.remove(dump_path);
	local before = is_forward and lines_in(received) or 0;

	local cpu_before, self_before = cpu_seconds(collector.pid), cpu_seconds("self");
	local start = now();
	local ok, err = handle:dump();
	local returned = now() - start;
	assert(ok, err);
	-- Log calls go on while the dump is sent: each timed on its own.
	local longest, spent, calls, slow = 0, 0, 0, 0;
	if calls_meanwhile then
		longest, spent, calls, slow = timed_calls(log, function () return native.dumps_in_flight() > 0; end);
	else
		while native.dumps_in_flight() > 0 do require "socket".sleep(0.001); end
	end
	local complete = now() - start;
	local collector_cpu, own_cpu = cpu_seconds(collector.pid) - cpu_before, cpu_seconds("self") - self_before;
	local outcome = {};
	for _, report in ipairs(native.take_reports()) do table.insert(outcome, report.text); end
	outcome = table.concat(outcome, "; ");
	local failed = outcome:find("Could not forward", 1, true) or outcome:find("Unable to", 1, true);
	local stored = complete;
	if is_forward and not failed then
		-- rsyslogd has read every byte; wait until it has written every message (its workers
		-- may store the end marker before other lines of the dump).
		while lines_in(received) - before < lines + 2 do
			if now() - start > 300 then
				error(("rsyslogd stored %d of the dump's %d messages"):format(lines_in(received) - before, lines + 2));
			end
			require "socket".sleep(0.05);
		end
		stored = now() - start;
		local got = lines_in(received) - before;
		-- The lines, begin and end, and a note on the lines the fill pushed out of the ring.
		assert(got == lines + 2 or got == lines + 3,
			("rsyslogd stored %d messages, expected %d lines + 2 or 3 markers"):format(got, lines));
	elseif not is_forward then
		assert(size_of(dump_path) >= bytes, "the dump file is short");
	end
	logger.reset();
	return { lines = lines, bytes = bytes, returned = returned, complete = complete, stored = stored,
		longest_ns = longest * 1e9, mean_ns = calls > 0 and spent / calls * 1e9 or 0, slow = slow, calls = calls,
		ok = not failed, outcome = outcome, collector_cpu = collector_cpu, own_cpu = own_cpu,
		wire = is_forward and (size_of(received)) or size_of(dump_path) };
end

-- The same log calls for 2 seconds into a fresh ring with no dump running, for comparison.
local function idle_calls()
	logger.reset();
	collectgarbage();
	local _, sink = new_sink({ size = size });
	logger.add_level_sink("debug", sink);
	local log = logger.make_logger(common.source, "debug");
	local stop = now() + 2;
	local longest, spent, calls, slow = timed_calls(log, function () return now() < stop; end);
	logger.reset();
	return { longest_ns = longest * 1e9, mean_ns = spent / calls * 1e9, slow = slow, calls = calls };
end

local results = { file = {}, file_calls = {} };
for _, framing in ipairs(framings) do
	results[framing[1]], results[framing[1] .. "_calls"] = {}, {};
end
local idle;
local ok, err = pcall(function ()
	for round = 1, rounds do
		-- Alternate which goes first, so that neither always meets a warmer machine.
		local order = { "file" };
		for _, framing in ipairs(framings) do
			table.insert(order, round % 2 == 1 and 1 or #order + 1, framing[1]);
		end
		for _, calls in ipairs({ false, true }) do
			for _, kind in ipairs(order) do
				local config = { size = size, filename = dump_path };
				for _, framing in ipairs(framings) do
					if kind == framing[1] then config.forward, config.forward_framing = target, framing[2]; end
				end
				local r = run(config, kind ~= "file", calls);
				if not r.ok then error(kind .. " dump failed: " .. r.outcome); end
				table.insert(results[kind .. (calls and "_calls" or "")], r);
			end
		end
		os.remove(dump_path);
	end
	idle = idle_calls();
end);
collector:cleanup();
os.remove(dump_path);
if not ok then error(err, 0); end

local function summary(list, field)
	local values = {};
	for i, r in ipairs(list) do values[i] = r[field]; end
	return median(values);
end

print(("Forwarding a full %d MiB ring (%d lines, %.1f MB of text; median of %d), tmpfs: %s"):format(size >> 20,
	results.file[1].lines, results.file[1].bytes / 1e6, rounds, shm));
print(("%-50s %9s %7s %12s %12s %10s %14s"):format("", "lines/s", "MB/s", "dump() held", "longest call", "mean call",
	"calls > 1 ms"));
local labels = { file = "file dump (tmpfs)", forward = "forward, tcp://, octet counting (rsyslogd read it)",
	forward_lf = "forward, tcp://, forward_framing = \"lf\" (same)" };
for _, kind in ipairs({ "file", "forward", "forward_lf" }) do
	local list, with_calls = results[kind], results[kind .. "_calls"];
	local lines, bytes = list[1].lines, list[1].bytes;
	local complete = summary(list, "complete");
	local label = labels[kind];
	print(("%-50s %9.0f %7.1f %9.3f ms %9.3f ms %7.0f ns %7d of %d"):format(label, lines / complete, bytes / complete / 1e6,
		summary(with_calls, "returned") * 1e3, summary(with_calls, "longest_ns") / 1e6, summary(with_calls, "mean_ns"),
		summary(with_calls, "slow"), summary(with_calls, "calls")));
	if kind ~= "file" then
		local stored = summary(list, "stored");
		print(("%-50s %9.0f %7.1f"):format("forward, until rsyslogd's file holds it", lines / stored, bytes / stored / 1e6));
		print(("%-50s rsyslogd %.2f s of CPU, this process (the Lua thread sleeps) %.2f s"):format(
			"  meanwhile, until rsyslogd read it:", summary(list, "collector_cpu"), summary(list, "own_cpu")));
		print(("%-50s %9.0f %7.1f"):format("  the same with the log calls going on", lines / summary(with_calls, "complete"),
			bytes / summary(with_calls, "complete") / 1e6));
	end
end
print(("%-50s %9s %7s %12s %9.3f ms %7.0f ns %7d of %d"):format("no dump running (2 s of the same calls)", "", "", "",
	idle.longest_ns / 1e6, idle.mean_ns, idle.slow, idle.calls));
