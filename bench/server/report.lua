-- `make bench-server`'s summary (run by scripts/bench-server.sh from the repository root):
-- reads the runs' results (lines "<version> <round> <config> key=value ..."), prints per
-- Prosody version and configuration the messages/s and the ratio to A taken within each round
-- (median, min, max), the server's and the generator's CPU share, debug lines per message and
-- the server-level cost of one debug line, and writes bench/server-results.md and
-- bench/server-results.svg. Runs under callgrind (CALLGRIND_DIR) or with the collector stopped
-- (GC_PROBE) have void timings: their summary gives the instructions per message and per debug
-- line instead, and leaves those files as they were.
-- Arguments: results file, ring size in bytes, clients, cores, seconds the whole run took.
local results_file, ring_size, clients, cores, elapsed = ...;
ring_size = tonumber(ring_size);

local configs = {
	{ key = "A", name = "A: info to a file (baseline)" };
	{ key = "B", name = "B: A + this module, debug ring" };
	{ key = "C", name = "C: A + upstream Lua algorithm, debug ring" };
	{ key = "H", name = "H: A + C's ring as idle Lua heap (control)" };
	{ key = "D", name = "D: A + debug to a file" };
	{ key = "N", name = "N: A + a Lua sink doing nothing, debug" };
	{ key = "P", name = "P: B with capture paused (the call alone)" };
	{ key = "F", name = "F: B + 10 shell followers of one user" };
};

-- runs[version][round][config] = { rate =, server_cpu =, ... }
local runs, versions, rounds = {}, {}, {};
for line in io.lines(results_file) do
	local version, round, config, rest = line:match("^(%S+) (%d+) (%u) (.*)$");
	if version then
		round = tonumber(round);
		if not runs[version] then
			runs[version] = {};
			table.insert(versions, version);
		end
		runs[version][round] = runs[version][round] or {};
		local run = {};
		for key, value in rest:gmatch("(%S+)=(%S+)") do run[key] = tonumber(value); end
		runs[version][round][config] = run;
		rounds[round] = true;
	end
end
-- Prosody 0.12 before 13.
table.sort(versions, function (a, b)
	local a1, a2 = a:match("^(%d+)%.(%d+)");
	local b1, b2 = b:match("^(%d+)%.(%d+)");
	a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2);
	return a1 < b1 or (a1 == b1 and a2 < b2);
end);

local function median(list)
	local sorted = {};
	for i, v in ipairs(list) do sorted[i] = v; end
	table.sort(sorted);
	local n = #sorted;
	if n == 0 then return nil; end
	if n % 2 == 1 then return sorted[(n + 1) / 2]; end
	return (sorted[n / 2] + sorted[n / 2 + 1]) / 2;
end

local function range(list)
	local lo, hi = math.huge, -math.huge;
	for _, v in ipairs(list) do lo, hi = math.min(lo, v), math.max(hi, v); end
	return lo, hi;
end

-- A confidence interval of at least 95% for the median, that assumes nothing about how the values
-- spread: the k-th smallest and the k-th largest value, for the largest k with
-- P(Binomial(n, 1/2) < k) <= 2.5%. Nil below 6 values, where no such k exists.
local function median_interval(list)
	local sorted = {};
	for i, v in ipairs(list) do sorted[i] = v; end
	table.sort(sorted);
	local n = #sorted;
	local k, below, choose = 0, 0, 1; -- below = P(X < k + 1) so far; choose = C(n, k)
	while true do
		below = below + choose / 2 ^ n;
		if below > 0.025 then break; end
		k = k + 1;
		choose = choose * (n - k + 1) / k;
	end
	if k == 0 then return nil; end
	return sorted[k], sorted[n - k + 1];
end

-- Values of `fn(round_runs)` over the rounds where it is not nil.
local function per_round(version, fn)
	local list = {};
	for _, round_runs in pairs(runs[version]) do
		local value = fn(round_runs);
		if value then table.insert(list, value); end
	end
	return list;
end

-- Server CPU seconds per message of a run.
local function cpu_per_message(run)
	return run.server_cpu * run.seconds / run.messages;
end

-- Runs under callgrind or with the collector stopped: their timings mean nothing.
local void = false;
for _, version in ipairs(versions) do
	for _, round_runs in pairs(runs[version]) do
		for _, run in pairs(round_runs) do void = void or run.instructions ~= nil or run.lua_bytes ~= nil; end
	end
end

local out, md = {}, {};
local function say(text) table.insert(out, text); end
local summary = {}; -- summary[version][config] = { rate =, ratio = }
local round_count = 0;
for _ in pairs(rounds) do round_count = round_count + 1; end

say(("bench-server: %d rounds, %s clients, ring size %d bytes, %s cores; ratios are medians of the"
	.. " ratios to A within each round (min-max over the rounds)"):format(round_count, clients, ring_size, cores));
for _, version in ipairs(versions) do
	summary[version] = {};
	say("");
	say(("Prosody %s"):format(version));
	say(("  %-44s %9s %20s %20s %12s %10s"):format("configuration", "msg/s", "ratio to A", "CPU ratio to A",
		"server CPU", "generator"));
	for _, config in ipairs(configs) do
		local rates = per_round(version, function (r) return r[config.key] and r[config.key].rate; end);
		if #rates > 0 then
			local ratios = per_round(version, function (r)
				return r[config.key] and r.A and r[config.key].rate / r.A.rate;
			end);
			-- The same from the server's CPU time per message (less disturbed by other processes).
			local cpu_ratios = per_round(version, function (r)
				return r[config.key] and r.A and cpu_per_message(r.A) / cpu_per_message(r[config.key]);
			end);
			local c_lo, c_hi = range(cpu_ratios);
			local server = per_round(version, function (r) return r[config.key] and r[config.key].server_cpu; end);
			local generator = per_round(version, function (r) return r[config.key] and r[config.key].generator_cpu; end);
			local lo, hi = range(ratios);
			local s_lo, s_hi = range(server);
			local g_lo, g_hi = range(generator);
			local sure_lo, sure_hi = median_interval(ratios);
			summary[version][config.key] = { rate = median(rates), ratio = median(ratios), lo = lo, hi = hi,
				cpu_ratio = median(cpu_ratios), sure_lo = sure_lo, sure_hi = sure_hi };
			say(("  %-44s %9.0f %8.3f (%.3f-%.3f) %8.3f (%.3f-%.3f) %5.0f-%3.0f%% %5.1f-%3.1f%%"):format(config.name,
				median(rates), median(ratios) or 0, lo, hi, median(cpu_ratios), c_lo, c_hi, s_lo * 100, s_hi * 100,
				g_lo * 100, g_hi * 100));
		end
	end

	-- Debug lines per message and bytes per line, from D's debug file.
	local lines = median(per_round(version, function (r)
		return r.D and r.D.count_lines and r.D.count_lines / r.D.messages;
	end));
	local bytes = median(per_round(version, function (r)
		return r.D and r.D.count_lines and r.D.count_bytes / r.D.count_lines;
	end));
	local before = median(per_round(version, function (r) return r.D and r.D.count_before_bytes; end));
	summary[version].lines, summary[version].bytes = lines, bytes;
	if lines then
		say(("  debug lines per message %.2f, %.0f bytes per line in the file (D)"):format(lines, bytes));
		say(("  debug text logged before the timed part: %.2f MiB, rings of %.2f MiB: B's and C's rings %s")
			:format(before / 1048576, ring_size / 1048576, before > ring_size and "are full and evicting during it"
			or "were NOT full when it began (raise WARMUP)"));
		-- Server time per debug line: the extra time per message over the baseline, per line.
		-- (wall: from messages/s; cpu: from the server's CPU time per message)
		local function cost(config, base, time)
			local list = per_round(version, function (r)
				if not (r[config] and r[base]) then return nil; end
				return (time(r[config]) - time(r[base])) / lines * 1e9;
			end);
			if #list == 0 then return nil; end
			local lo, hi = range(list);
			return ("%.0f ns (%.0f to %.0f)"):format(median(list), lo, hi), median(list);
		end
		for _, clock in ipairs({
			{ "wall", function (run) return 1 / run.rate; end };
			{ "cpu", cpu_per_message };
		}) do
			local parts = {};
			for _, pair in ipairs({ { "B", "A" }, { "C", "A" }, { "C", "H" }, { "D", "A" } }) do
				local text, value = cost(pair[1], pair[2], clock[2]);
				if text then
					table.insert(parts, ("%s vs %s %s"):format(pair[1], pair[2], text));
					summary[version][clock[1] .. "_" .. pair[1] .. pair[2]] = value;
				end
			end
			say(("  server %s time per debug line (median, min to max): %s"):format(clock[1] == "wall" and "wall"
				or "CPU", table.concat(parts, "; ")));
		end
	end

	-- Instructions (CALLGRIND_DIR), and with CALLGRIND_CACHE first-level cache misses: per message,
	-- and what each configuration adds per message and per debug line.
	local function per_message(r, key, field)
		local run = r[key];
		return run and run[field] and run[field] / run.messages;
	end
	local function added(config, field)
		return median(per_round(version, function (r)
			local here, there = per_message(r, config, field), per_message(r, "A", field);
			return here and there and here - there;
		end));
	end
	local base = median(per_round(version, function (r) return per_message(r, "A", "instructions"); end));
	if base then
		say(("  instructions per message during the timed part (callgrind, median): A %.0f"):format(base));
		for _, config in ipairs(configs) do
			local extra = added(config.key, "instructions");
			if config.key ~= "A" and extra then
				say(("    %s: %+.0f per message (%+.2f%%)%s"):format(config.key, extra, extra / base * 100,
					lines and (", %+.0f per debug line"):format(extra / lines) or ""));
			end
		end
	end
	local i1 = median(per_round(version, function (r) return per_message(r, "A", "i1_misses"); end));
	local d1 = median(per_round(version, function (r) return per_message(r, "A", "d1_read_misses"); end));
	if i1 and d1 then
		say(("  first-level cache misses per message (valgrind's cache model, median): A %.1f instruction,"
			.. " %.1f data read"):format(i1, d1));
		for _, config in ipairs(configs) do
			local extra_i1, extra_d1 = added(config.key, "i1_misses"), added(config.key, "d1_read_misses");
			if config.key ~= "A" and extra_i1 and extra_d1 then
				say(("    %s: %+.1f instruction, %+.1f data read per message"):format(config.key, extra_i1, extra_d1));
			end
		end
	end

	-- Which side is the bottleneck.
	local server = per_round(version, function (r)
		local lowest;
		for _, run in pairs(r) do lowest = math.min(lowest or 1, run.server_cpu); end
		return lowest;
	end);
	local generator = per_round(version, function (r)
		local highest = 0;
		for _, run in pairs(r) do highest = math.max(highest, run.generator_cpu); end
		return highest;
	end);
	local s_lo = range(server);
	local _, g_hi = range(generator);
	say(("  bottleneck: %s (server at least %.0f%% of a core in every run, generator at most %.1f%%)")
		:format((s_lo >= 0.8 and g_hi <= 0.1) and "the server"
			or g_hi <= 0.1 and "not the generator, but the server did not get a whole core (other processes?)"
			or "UNCLEAR, the generator is not cheap enough",
		s_lo * 100, g_hi * 100));
end

say("");
-- The verdict stands only where the run's spread allows it: met or not met when the median's 95%
-- interval lies on one side of 0.99, not decided otherwise.
for _, version in ipairs(versions) do
	local b = summary[version].B;
	if b and not void then
		local verdict;
		if not b.sure_lo then
			verdict = "not decided: too few rounds for a 95% interval of the median (6 at least)";
		elseif b.sure_lo >= 0.99 then
			verdict = ("met (95%% interval of the median %.3f-%.3f)"):format(b.sure_lo, b.sure_hi);
		elseif b.sure_hi < 0.99 then
			verdict = ("NOT met (95%% interval of the median %.3f-%.3f)"):format(b.sure_lo, b.sure_hi);
		else
			verdict = ("not decided by this run: the 95%% interval of the median, %.3f-%.3f, spans 0.99"
				.. " (more ROUNDS, or a quieter machine)"):format(b.sure_lo, b.sure_hi);
		end
		say(("Target, this module keeps >= 0.99 of A's messages/s on Prosody %s: %.3f, %s; by CPU time %.3f")
			:format(version, b.ratio, verdict, b.cpu_ratio));
	end
end
say(("Whole run: %s s"):format(elapsed));
print(table.concat(out, "\n"));

if void then
	print("timings of profiled runs are void: bench/server-results.md and .svg left as they were");
	return;
end

-- Markdown: one table of both versions.
table.insert(md, "# mod_log_ringbuffer: throughput of a real Prosody (`make bench-server`)\n");
table.insert(md, ("%d rounds, %s c2s clients, rings of %d bytes, %s cores. Ratio: median of the ratios to A within"
	.. " each round (min-max); CPU ratio: the same from the server's CPU time per message.\n"):format(round_count,
	clients, ring_size, cores));
local header = "| configuration |";
local rule = "| --- |";
for _, version in ipairs(versions) do
	header = header .. (" %s msg/s | ratio to A | CPU ratio |"):format(version);
	rule = rule .. " ---: | ---: | ---: |";
end
table.insert(md, header);
table.insert(md, rule);
for _, config in ipairs(configs) do
	local row = ("| %s |"):format(config.name);
	for _, version in ipairs(versions) do
		local s = summary[version][config.key];
		row = row .. (s and (" %.0f | %.3f (%.3f-%.3f) | %.3f |"):format(s.rate, s.ratio, s.lo, s.hi, s.cpu_ratio)
			or " | | |");
	end
	table.insert(md, row);
end
table.insert(md, "");
for _, version in ipairs(versions) do
	local s = summary[version];
	if s.lines then
		table.insert(md, ("- Prosody %s: %.2f debug lines per message, %.0f bytes each; server time per debug line"
			.. " (wall / CPU): B %.0f / %.0f ns, C %.0f / %.0f ns (against H: %.0f / %.0f ns), D %.0f / %.0f ns")
			:format(version, s.lines, s.bytes, s.wall_BA or 0, s.cpu_BA or 0, s.wall_CA or 0, s.cpu_CA or 0,
			s.wall_CH or 0, s.cpu_CH or 0, s.wall_DA or 0, s.cpu_DA or 0));
	end
end
table.insert(md, "\n![messages per second](server-results.svg)\n");
local file = assert(io.open("bench/server-results.md", "w"));
file:write(table.concat(md, "\n"));
file:close();

-- Two clustered bar charts side by side: messages/s and ratio to A, per configuration and version.
local plot = { "$data << EOD" };
for _, config in ipairs(configs) do
	local row = ("%q"):format(config.key);
	for _, version in ipairs(versions) do
		local s = summary[version][config.key];
		row = row .. (s and (" %.1f %.4f"):format(s.rate, s.ratio) or " NaN NaN");
	end
	table.insert(plot, row);
end
local rate_columns, ratio_columns = {}, {};
for i, version in ipairs(versions) do
	table.insert(rate_columns, ("$data using %d:xtic(1) title 'Prosody %s'"):format(2 * i, version));
	table.insert(ratio_columns, ("$data using %d:xtic(1) title 'Prosody %s'"):format(2 * i + 1, version));
end
for _, line in ipairs({
	"EOD";
	"set terminal svg size 1000,460 dynamic noenhanced font 'sans,12' background rgb 'white'";
	"set output 'bench/server-results.svg'";
	"set multiplot layout 1,2 title \"Prosody routing chat messages between "
		.. clients .. " c2s clients. A: info to a file; B: A + this module at debug;\\nC: A + the upstream Lua"
		.. " algorithm at debug; H: A + C's ring as idle Lua heap; D: A + debug to a file;\\n"
		.. "N: A + a Lua sink doing nothing at debug; P: B with capture paused\"";
	"set style data histogram";
	"set style histogram clustered gap 1";
	"set style fill solid 0.9 border -1";
	"set grid ytics";
	"set key below";
	"set ylabel 'messages/s'";
	"set yrange [0:*]";
	"set title 'messages per second (median)'";
	"plot " .. table.concat(rate_columns, ", ");
	"set ylabel 'ratio to A'";
	"set yrange [0:*]";
	"set title 'ratio to A within a round (median)'";
	"plot " .. table.concat(ratio_columns, ", ") .. ", 1 with lines dt 2 lc 'black' notitle";
	"unset multiplot";
}) do
	table.insert(plot, line);
end
local gnuplot = io.popen("gnuplot", "w");
if gnuplot then
	gnuplot:write(table.concat(plot, "\n"), "\n");
	if not gnuplot:close() then print("bench-server: gnuplot failed, no bench/server-results.svg"); end
end
print("wrote bench/server-results.md and bench/server-results.svg");
