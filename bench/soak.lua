-- Soak: pushes many lines (default 50 million) through Prosody's real util.logger into a
-- 1 MiB ring, dumping every few seconds; RSS must stay flat after warm-up and every dump must
-- be well-formed. Run from the repository root: `make soak` (SOAK_LINES to change the count).
local common = require "bench.common";
local logger = require "util.logger";
local st = require "util.stanza";

local total = tonumber(os.getenv("SOAK_LINES")) or 50e6;
local dump_every = 3; -- seconds
local dir = io.popen("mktemp -d /dev/shm/lrb-soak-XXXXXX"):read("l");

local handle, sink = common.new_sink({ size = 1024 * 1024, filename_template = dir .. "/dump-{count}.log" });
logger.add_level_sink("debug", sink);
local log = logger.make_logger(common.source, "debug");

local function rss_kib()
	for line in io.lines("/proc/self/status") do
		local kib = line:match("^VmRSS:%s+(%d+)");
		if kib then return tonumber(kib); end
	end
end

local stanza = st.message({ to = "romeo@example.net", type = "chat", id = "x1" }):tag("body"):text("hi");
local odd = setmetatable({}, { __tostring = function () error("boom"); end });
local function one_line(i)
	local kind = i % 8;
	if kind == 0 then
		log("Received[c2s]: %s", stanza);
	elseif kind == 1 then
		log("%s %d %s %s", "ütf-8\nnewline", i, true, nil);
	elseif kind == 2 then
		log("bad %s", odd);
	else
		log("Received[c2s]: %s from %s id=%d", "<iq type='get' id='x'/>", "juliet@example.com/balcony", i);
	end
end

local started = common.now();
local next_dump, dumps, samples = started + dump_every, 0, {};
local batch = 100000;
for done = 0, total - 1, batch do
	for i = done, math.min(done + batch, total) - 1 do
		one_line(i);
	end
	local now = common.now();
	if now >= next_dump then
		assert(handle:dump("soak"));
		dumps, next_dump = dumps + 1, now + dump_every;
		table.insert(samples, { lines = done + batch, rss = rss_kib() });
	end
end
assert(common.native.shut_down(30), "dumps still being written");
local elapsed = common.now() - started;

-- Every dump must be whole: header, whole lines (each starting with a timestamp), footer.
local checked_dumps, checked_lines = 0, 0;
for name in io.popen("ls " .. dir):lines() do
	local inside = false;
	for line in io.lines(dir .. "/" .. name) do
		if line:match("^%-%- Dumping log buffer at ") then
			assert(not inside, name .. ": dump inside a dump");
			inside = true;
		elseif line == "-- End of dump --" then
			assert(inside, name .. ": footer without header");
			inside, checked_dumps = false, checked_dumps + 1;
		elseif inside and line ~= "" then
			assert(line:match("^%a%a%a %d%d %d%d:%d%d:%d%d c2s55d0a1\t%a+\t") or line:match("^\t"), name .. ": torn line: " .. line);
			checked_lines = checked_lines + 1;
		end
	end
	assert(not inside, name .. ": unfinished dump");
end
os.execute("rm -rf " .. dir);

print(("soak: %d lines in %.1f s (%.0f ns/line), %d dumps, all %d whole (%d lines checked)"):format(
	total, elapsed, elapsed / total * 1e9, dumps, checked_dumps, checked_lines));
if #samples < 4 then
	print("soak: too short to judge RSS (fewer than four dumps)");
	return;
end
local series = {};
for _, sample in ipairs(samples) do table.insert(series, sample.rss); end
print("soak: RSS KiB at each dump: " .. table.concat(series, " "));
-- Warm-up: the ring fills and the writer thread sets up its buffers during the first two
-- dumps. After that RSS must stay flat.
local warm, high = samples[3].rss, 0;
for i = 3, #samples do high = math.max(high, samples[i].rss); end
print(("soak: RSS after warm-up %d KiB, highest later %d KiB over %d samples (growth %d KiB)"):format(
	warm, high, #samples - 2, high - warm));
assert(high - warm < 1024, "RSS grew by more than 1 MiB after warm-up");
