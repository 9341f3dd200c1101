-- The cost of `dump_on_match` per typical line: the same typical lines logged through
-- util.logger into a sink without it and into one with `dump_on_match = "Slow event|Traceback"`
-- (no line matches, as most do not), whose trigger is checked every 500 lines, as the module's
-- 50 ms timer does at 10,000 lines a second (the check reads the new lines from a snapshot).
-- Median ns per line of 7 runs each. Prints a Lua table constructor.
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";

local n, every = 100000, 500;

-- One run: ns per line through `sink`, checking `trigger` (if any) every `every` lines.
local function run(sink, trigger)
	logger.reset();
	logger.add_level_sink("debug", sink);
	local log = logger.make_logger(common.source, "debug");
	local t = common.now();
	for _ = 1, n // every do
		common.workloads[1].run(log, every);
		if trigger then trigger:check(); end
	end
	return (common.now() - t) / n * 1e9;
end

local function median(list)
	table.sort(list);
	return list[(#list + 1) // 2];
end

-- Taking turns, so that a busy moment of the machine hits both alike.
local _, plain = common.new_sink({ size = 100 * 1024 });
local matching, matching_sink = common.new_sink({ size = 100 * 1024, dump_on_match = "Slow event|Traceback" });
local trigger = assert(matching:match_trigger());
local without, with = {}, {};
for r = 1, 9 do
	without[r] = run(plain);
	with[r] = run(matching_sink, trigger);
end
print(("return { without = %.1f, with = %.1f }"):format(median(without), median(with)));
