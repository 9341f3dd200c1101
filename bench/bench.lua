-- Times log calls made through Prosody's util.logger into each sink below, runs
-- bench/memory.lua, bench/dump.lua and bench/inspect.lua in fresh processes, prints the results as plain text,
-- writes them as Markdown to bench/results.md and plots them to bench/results.svg.
-- Run from the repository root: bench/run.sh.
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";
local configmanager = require "core.configmanager";
local loggingmanager = require "core.loggingmanager";
local upstream_sink = require "upstream_sink";
-- The native library's testing entry point (version, per_line), beside what Prosody gets.
local testing = common.testing;

local now = common.now;
local RUNS = 15; -- timed rounds per (sink, workload); the median counts
local RUN_SECONDS = 0.075; -- N is chosen so that one run takes about this long
local HEAP_LINES = 10000; -- at most this many calls with the collector stopped
local FILE_LOG = "/dev/shm/lrb-bench.log";

local function native_sink(config)
	local _, sink = common.new_sink(config);
	return sink;
end

local function truncate(path)
	assert(io.open(path, "w")):close();
end

-- Each sink adds itself to util.logger; `before` runs ahead of every measured run.
local sinks = {
	{ name = "floor", install = function ()
		logger.add_level_sink("debug", function () end);
	end };
	{ name = "upstream", install = function ()
		logger.add_level_sink("debug", (upstream_sink(100 * 1024)));
	end };
	{ name = "file (tmpfs)", install = function ()
		configmanager.set("*", "log", { { to = "file", filename = FILE_LOG, levels = { "debug" } } });
		loggingmanager.reload_logging();
	end, before = function () truncate(FILE_LOG); end };
	{ name = "ours size=100K", install = function ()
		logger.add_level_sink("debug", native_sink({ size = 100 * 1024 }));
	end };
	-- The same with milliseconds in the line timestamps (the precise clock read per line).
	{ name = "ours size=100K %3N", install = function ()
		logger.add_level_sink("debug", native_sink({ size = 100 * 1024, timestamps = "%b %d %H:%M:%S.%3N" }));
	end };
	-- The same as "ours size=100K" with `persist`: every line also goes to the ring file.
	{ name = "ours size=100K persist", install = function ()
		logger.add_level_sink("debug", (select(2, common.new_persisted_sink({ size = 100 * 1024 }, common.persist_dir()))));
	end };
	-- The same as "ours size=100K" with `dump_on_match`: every line's message is matched.
	{ name = "ours size=100K dump_on_match", install = function ()
		logger.add_level_sink("debug", native_sink({ size = 100 * 1024, dump_on_match = common.match_pattern }));
	end };
	{ name = "ours lines=1000", install = function ()
		logger.add_level_sink("debug", native_sink({ lines = 1000 }));
	end };
};

local function timed(sink, run, log, n)
	if sink.before then sink.before(); end
	collectgarbage();
	local start = now();
	run(log, n);
	return now() - start;
end

-- Makes `sink` util.logger's only sink; returns a logger.
local function install(sink)
	logger.reset();
	sink.install();
	return logger.make_logger(common.source, "debug");
end

-- The number of calls for a run of about RUN_SECONDS (calibrating warms up too).
local function calibrate(sink, run, log)
	local n = 100;
	local t = timed(sink, run, log, n);
	while t < 0.02 do
		n = n * 4;
		t = timed(sink, run, log, n);
	end
	return math.max(1, math.floor(n * RUN_SECONDS / t));
end

-- Lua heap bytes allocated per line, with the collector stopped.
local function heap(sink, run, log, n)
	if sink.before then sink.before(); end
	collectgarbage();
	collectgarbage("stop");
	local before = collectgarbage("count");
	run(log, n);
	local bytes = (collectgarbage("count") - before) * 1024 / n;
	collectgarbage("restart");
	return bytes;
end

local function read(path)
	local f = io.open(path);
	if not f then return nil; end
	local text = f:read("a");
	f:close();
	return text;
end

local function shell(command)
	local p = assert(io.popen(command));
	local text = p:read("a");
	p:close();
	return (text:gsub("%s+$", ""));
end

-- Runs a bench script in a fresh interpreter; it prints a Lua table constructor.
local function subprocess(script, ...)
	local output = shell(table.concat({ arg[-1], script, ... }, " "));
	local result = load(output, script, "t", {});
	return assert(result and result(), script .. " failed: " .. output);
end

-- Renders rows (the first is the header) as aligned text or as a Markdown table.
local function render(rows, markdown)
	local widths = {};
	for _, row in ipairs(rows) do
		for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, utf8.len(cell)); end
	end
	local out = {};
	for r, row in ipairs(rows) do
		local cells = {};
		for i, cell in ipairs(row) do
			local pad = (" "):rep(widths[i] - utf8.len(cell));
			cells[i] = i <= 2 and cell .. pad or pad .. cell;
		end
		if markdown then
			out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |";
			if r == 1 then
				local rule = {};
				for i = 1, #row do rule[i] = i <= 2 and "---" or "---:"; end
				out[#out + 1] = "| " .. table.concat(rule, " | ") .. " |";
			end
		else
			out[#out + 1] = table.concat(cells, "  ");
		end
	end
	return table.concat(out, "\n");
end

local function ns(x)
	return (x < 100 and "%.1f" or "%.0f"):format(x);
end

local MiB = 1024 * 1024;

-- The header.
local cpuinfo = read("/proc/cpuinfo") or "";
local _, cores = ("\n" .. cpuinfo):gsub("\nprocessor%s*:", "");
local prosody_version = read(common.prosody_src .. "/prosody.version")
	or shell("dpkg-query -W -f='${Version}' prosody 2>/dev/null");
-- Where Prosody's libraries came from, without this machine's paths (results.md is committed):
-- relative to the checkout, a system path as it is, anything else only said to be elsewhere.
local function shown_path(path)
	local relative = shell("realpath -m --relative-base=. '" .. path:gsub("'", "'\\''") .. "'");
	if relative:sub(1, 1) ~= "/" or relative:match("^/usr/") then return relative; end
	return "PROSODY_SRC outside the checkout";
end
local header = {
	("Machine: %s, %d cores"):format(cpuinfo:match("model name%s*:%s*([^\n]+)") or "unknown CPU", cores);
	("Prosody %s (%s), %s"):format(prosody_version:gsub("%s+$", ""), shown_path(common.prosody_src),
		shell(arg[-1] .. " -v"):match("Lua [%d.]+") or _VERSION);
	("log_ringbuffer_native %s (git %s), %s"):format(testing.version,
		shell("git describe --always --dirty 2>/dev/null"), os.date("!%Y-%m-%d %H:%M UTC"));
};
common.new_sink({}); -- the first sink settles how the per-line path runs here
local per_line = testing.per_line();
header[#header + 1] = ("Per-line path: arguments read %s; ring lock %s"):format(
	per_line.direct_stack and ("straight off the Lua stack (%s)"):format(per_line.lua)
		or ("through the Lua C API (%s)"):format(per_line.reason),
	per_line.membarrier and "asymmetric (membarrier)" or "with fences");

-- The log call timings: N and heap per (workload, sink) first, then RUNS rounds in which every
-- sink runs each workload in turn, so that other load on the machine hits all sinks alike.
local results = {};
for w in ipairs(common.workloads) do results[w] = {}; end
for s, sink in ipairs(sinks) do
	local log = install(sink);
	for w, workload in ipairs(common.workloads) do
		local n = calibrate(sink, workload.run, log);
		results[w][s] = { n = n, heap = heap(sink, workload.run, log, math.min(n, HEAP_LINES)), samples = {} };
	end
end
for round = 1, RUNS do
	for w, workload in ipairs(common.workloads) do
		-- Each round starts with the next sink, so none always follows the same one.
		for i = 0, #sinks - 1 do
			local s = (round + i - 1) % #sinks + 1;
			local r = results[w][s];
			r.samples[round] = timed(sinks[s], workload.run, install(sinks[s]), r.n) / r.n * 1e9;
		end
	end
end
-- Ratios are taken within each round (the sinks ran within a second of each other there), then
-- the median: on a shared machine whose speed drifts, that compares like with like.
local function median(list)
	local sorted = table.move(list, 1, #list, 1, {});
	table.sort(sorted);
	return sorted[(#sorted + 1) // 2];
end
local function ratio(w, s, base)
	local ratios = {};
	for round = 1, RUNS do ratios[round] = results[w][s].samples[round] / results[w][base].samples[round]; end
	return median(ratios);
end
for w in ipairs(common.workloads) do
	for _, r in ipairs(results[w]) do
		r.ns = median(r.samples);
	end
end
logger.reset();
os.remove(FILE_LOG);

local rows = { { "workload", "sink", "ns/line", "× floor", "speedup vs upstream", "heap B/line", "N" } };
for w, workload in ipairs(common.workloads) do
	for s, sink in ipairs(sinks) do
		local r = results[w][s];
		rows[#rows + 1] = { s == 1 and workload.name or "", sink.name, ns(r.ns), ("%.2f"):format(ratio(w, s, 1)),
			("%.1f"):format(1 / ratio(w, s, 2)), ("%.0f"):format(r.heap), tostring(r.n) };
	end
end
-- `persist`: the persisted sink against the same sink without it, within each round.
local persist_rows = {};
do
	local plain, persisted;
	for s, sink in ipairs(sinks) do
		if sink.name == "ours size=100K" then plain = s; end
		if sink.name == "ours size=100K persist" then persisted = s; end
	end
	for w, workload in ipairs(common.workloads) do
		table.insert(persist_rows, ("%s: %s ns/line persisted vs %s ns/line not: %.3f× (median of the ratios within"
			.. " each round; target ≤ 1.10×)"):format(workload.name, ns(results[w][persisted].ns), ns(results[w][plain].ns),
			ratio(w, persisted, plain)));
	end
end
-- `dump_on_match`: the matching sink against the same sink without it, within each round.
local match_rows = {};
do
	local plain, matching;
	for s, sink in ipairs(sinks) do
		if sink.name == "ours size=100K" then plain = s; end
		if sink.name == "ours size=100K dump_on_match" then matching = s; end
	end
	for w, workload in ipairs(common.workloads) do
		table.insert(match_rows, ("%s: %s ns/line with dump_on_match vs %s ns/line without: %.3f× (median of the ratios"
			.. " within each round; target ≤ 1.3×)"):format(workload.name, ns(results[w][matching].ns),
			ns(results[w][plain].ns), ratio(w, matching, plain)));
	end
	table.insert(match_rows, 1, ("pattern %q, which no line of the workloads matches"):format(common.match_pattern));
end
local table_note = ("ns/line: median of %d rounds of N log calls through util.logger (~%d ms each, after warm-up,"
	.. " sinks taking turns within a round); × floor and speedup: medians of the ratios within each round;"
	.. " heap: Lua heap allocated per line with the collector stopped."):format(RUNS, RUN_SECONDS * 1000);

-- Memory, in fresh processes.
local size, lines = subprocess("bench/memory.lua", "size"), subprocess("bench/memory.lua", "lines");
local line_bytes = lines.bytes / lines.lines;
local growth_per_line = lines.hwm_growth / lines.lines;
local memory = {
	("size = 64 MiB ring (fresh process): holds %d lines, %.2f MiB; peak RSS growth %.2f MiB = S %+.2f MiB"
		.. " (target ≤ S + 1 MiB: %s)"):format(size.lines, size.bytes / MiB, size.hwm_growth / MiB,
		(size.hwm_growth - size.size) / MiB, size.hwm_growth <= size.size + MiB and "met" or "MISSED");
	("lines = 100000 ring (fresh process): holds %d lines of %.1f B on average; peak RSS growth %.1f B/line"
		.. " = line %+.1f B (target ≤ line + 32 B: %s)"):format(lines.lines, line_bytes, growth_per_line,
		growth_per_line - line_bytes, growth_per_line <= line_bytes + 32 and "met" or "MISSED");
	("this bench process: peak RSS (VmHWM) %.1f MiB"):format(common.status("VmHWM") / MiB);
};
-- `persist`: the same 64 MiB ring with its ring file, in a fresh process.
local persisted = subprocess("bench/memory.lua", "size", "persist");
local function parts(m)
	return ("VmRSS %+.2f MiB (RssAnon %+.2f, RssFile %+.2f, RssShmem %+.2f), peak %+.2f MiB"):format(m.rss_growth / MiB,
		m.anon_growth / MiB, m.file_growth / MiB, m.shmem_growth / MiB, m.hwm_growth / MiB);
end
table.insert(memory, ("size = 64 MiB ring, growth without persist: %s"):format(parts(size)));
table.insert(memory, ("size = 64 MiB ring with persist (ring file in %s, %.1f MiB): %s; VmRSS persisted − not"
	.. " = %+.2f MiB (target ≤ +1 MiB: %s). The ring file's pages stay in the page cache (RssFile/RssShmem count"
	.. " only the pages the process has mapped in; on a tmpfs the whole file is shared memory)"):format(
	os.getenv("PERSIST_DIR") or "TMPDIR", persisted.file_bytes / MiB, parts(persisted),
	(persisted.rss_growth - size.rss_growth) / MiB,
	persisted.rss_growth <= size.rss_growth + MiB and "met" or "MISSED"));

-- Instructions per typical line, counted by callgrind (the same on a busy or a quiet machine):
-- the difference between runs of two lengths leaves out start-up.
local function instructions(kind)
	local function count(n)
		local out = shell(("valgrind --tool=callgrind --callgrind-out-file=/dev/null %s bench/instructions.lua %s %d 2>&1")
			:format(arg[-1], kind, n));
		return tonumber((out:match("Collected : (%d+)")));
	end
	local short, long = count(20000), count(60000);
	return short and long and (long - short) / 40000;
end
local instructions_line;
if shell("command -v valgrind") ~= "" then
	local floor, ours, persist = instructions("floor"), instructions("ours"), instructions("persist");
	local filtered, redact, matching = instructions("filtered"), instructions("redact"), instructions("match");
	instructions_line = floor and ours and persist and filtered and redact and matching and ("callgrind, typical line: floor"
		.. " %.0f instructions, ours size=100K %.0f instructions = %.2f× the floor; with persist %.0f instructions = %.3f×"
		.. " ours (target ≤ 1.10×); with a filter that returns its message %.0f instructions = %.2f× ours (a sink without"
		.. " filter pays nothing); with redact = true %.0f instructions = %.2f× ours (target ≤ 1.5×); with dump_on_match"
		.. " %.0f instructions = %.3f× ours (target ≤ 1.3×)")
		:format(floor, ours, ours / floor, persist, persist / ours, filtered, filtered / ours, redact, redact / ours,
			matching, matching / ours);
end
instructions_line = instructions_line or "callgrind: not available (install valgrind for instruction counts)";

-- Dumping, in a fresh process.
local d = subprocess("bench/dump.lua");
local dump;
if not d.ok then
	dump = { "handle:dump() of a 64 MiB ring failed: " .. tostring(d.err) };
else
	local during;
	if not d.async then
		during = ("n/a (dump is synchronous: log calls wait until it returns, %.1f ms)"):format(d.complete * 1000);
	elseif d.during_ns then
		during = ("%s ns/line over %d calls (the same calls into an emptied ring, no dump running: %s ns/line, %.2f×)")
			:format(ns(d.during_ns), d.calls, ns(d.refill_ns), d.during_ns / d.refill_ns);
	else
		during = "n/a (the dump was complete when dump() returned)";
	end
	dump = {
		("64 MiB ring holding %d lines (%.1f MB) to tmpfs: handle:dump() returned after %.1f ms, file of %d bytes"
			.. " complete after %.1f ms: %.0f MB/s"):format(d.lines, d.bytes / 1e6, d.returned * 1000, d.file_bytes,
			d.complete * 1000, d.file_bytes / 1e6 / d.complete);
		("typical log call while the dump is written: %s; into a full ring with no dump running: %s ns/line")
			:format(during, ns(d.idle_ns));
	};
	-- Whole dumps of a full ring of varied lines, without and with compression (bench/dump.lua).
	for _, c in ipairs(d.codecs or {}) do
		local what = c.name == "none" and "uncompressed" or ("compress = %q"):format(c.name);
		if not c.ok then
			table.insert(dump, ("%s: the dump failed: %s"):format(what, tostring(c.err)));
		else
			table.insert(dump, ("%s, 64 MiB ring of varied lines (%.1f MB of text) to tmpfs: complete after %.1f ms"
				.. " (median of 3): %.0f MB/s of text; file of %d bytes = %.1f%% of the text"):format(what, c.text / 1e6,
				c.complete * 1000, c.text / 1e6 / c.complete, c.file_bytes, c.file_bytes / c.text * 100));
		end
	end
end

-- The admin shell's reads of a full 64 MiB ring, in a fresh process (bench/inspect.lua).
local r = subprocess("bench/inspect.lua");
local inspect = {
	("64 MiB ring holding %d lines (%.1f MB of text); baseline, the plain dump of it to tmpfs: %.1f ms."
		.. " Targets: the answer within 100 ms, Prosody's main loop held at most 5 ms (median of 5 each):")
		:format(r.lines, r.bytes / 1e6, r.dump * 1000);
};
for _, scan in ipairs(r.reads) do
	table.insert(inspect, ("%s: answer after %.1f ms (%.2f× the dump), main loop held %.2f ms by the call, longest 10"
		.. " log calls meanwhile %.3f ms; %d matching lines"):format(scan.name, scan.complete * 1000,
		scan.complete / r.dump, scan.called * 1000, scan.longest_log * 1000, scan.matched));
	table.insert(inspect, ("  longest batch of the answer's lines (one per tick): %.2f ms"):format(scan.batch * 1000));
end
for _, h in ipairs(r.holds) do
	table.insert(inspect, ("Prosody %s, 10 concurrent shells reading the full ring (8 grep(\".\", { limit = 10000 }), 2 costly"
		.. " patterns; asked again while busy): longest main-loop hold %.1f ms (idle: %.1f ms; the same shells asking"
		.. " for status(): %.1f ms), %d answered OK, %d busy answers, %.1f s in all%s"):format(h.version,
		h.longest * 1000, h.idle * 1000, h.control * 1000, h.answered, h.busy, h.wall,
		h.other ~= "" and ("; other answers: " .. h.other) or ""));
end
for _, f in ipairs(r.follows) do
	local none, reading, stuck = f[1], f[2], f[3];
	table.insert(inspect, ("Prosody %s, 10 shells following every line while 100,000 more are logged: longest main-loop"
		.. " hold %.1f ms (no follower: %.1f ms; 10 shells that never read: %.1f ms), longest follow turn %.1f ms,"
		.. " %.2f MB/s delivered to all followers together (%.1f MB); the 100,000 lines took %.2f s (%.2f s with no"
		.. " follower)"):format(f.version, reading.longest * 1000, none.longest * 1000, stuck.longest * 1000,
		reading.longest_turn * 1000, reading.mb_per_s, reading.received / 1e6, reading.wall, none.wall));
end

-- Plain text to stdout, Markdown to bench/results.md.
local function section(list, bullet)
	local out = {};
	for i, line in ipairs(list) do out[i] = bullet .. line; end
	return table.concat(out, "\n");
end
print(section(header, "") .. "\n\n" .. render(rows) .. "\n" .. table_note .. "\n" .. instructions_line
	.. "\n\nPersist (wall clock):\n" .. section(persist_rows, "  ")
	.. "\n\ndump_on_match (wall clock):\n" .. section(match_rows, "  ")
	.. "\n\nMemory:\n" .. section(memory, "  ")
	.. "\n\nDump:\n" .. section(dump, "  ")
	.. "\n\nAdmin shell reads:\n" .. section(inspect, "  "));
local md = assert(io.open("bench/results.md", "w"));
md:write("# mod_log_ringbuffer benchmark\n\n", section(header, "- "), "\n\n", render(rows, true), "\n\n", table_note,
	"\n\n", instructions_line, "\n\n## Persist (wall clock)\n\n", section(persist_rows, "- "),
	"\n\n## dump_on_match (wall clock)\n\n", section(match_rows, "- "),
	"\n\n## Memory\n\n", section(memory, "- "), "\n\n## Dump\n\n", section(dump, "- "),
	"\n\n## Admin shell reads\n\n", section(inspect, "- "), "\n\n![ns/line](results.svg)\n");
md:close();

-- A clustered bar chart of ns/line, log scale, to bench/results.svg.
local plot = { "$data << EOD", "workload" };
for _, sink in ipairs(sinks) do plot[2] = plot[2] .. (" %q"):format(sink.name); end
for w, workload in ipairs(common.workloads) do
	local row = ("%q"):format(workload.name);
	for s in ipairs(sinks) do row = row .. (" %.2f"):format(results[w][s].ns); end
	plot[#plot + 1] = row;
end
local lowest = math.huge;
for w in ipairs(common.workloads) do lowest = math.min(lowest, results[w][1].ns); end
for _, line in ipairs({
	"EOD";
	"set terminal svg size 900,500 dynamic noenhanced font 'sans,12' background rgb 'white'";
	"set output 'bench/results.svg'";
	('set title "ns per log line through util.logger, log scale\\n%s; %s"'):format(header[1], header[3]);
	"set format y '%.0f'";
	"set style data histogram";
	"set style histogram clustered gap 1";
	"set style fill solid 0.9 border -1";
	"set logscale y";
	("set yrange [%g:*]"):format(10 ^ math.floor(math.log(lowest, 10)));
	"set ylabel 'ns/line'";
	"set grid ytics";
	"set key top left";
	"plot for [i=2:" .. (#sinks + 1) .. "] $data using i:xtic(1) title columnheader(i)";
}) do
	plot[#plot + 1] = line;
end
local gnuplot = assert(io.popen("gnuplot", "w"));
gnuplot:write(table.concat(plot, "\n"), "\n");
assert(gnuplot:close(), "gnuplot failed");
