-- Logs `n` typical lines through util.logger into one sink, for counting instructions under
-- valgrind's callgrind (bench/bench.lua runs it): `lua5.4 bench/instructions.lua floor|ours|persist N`
-- (persist: the same sink as ours with `persist`, its ring file in common.persist_dir(); match: the
-- same sink as ours with `dump_on_match`, which no line matches).
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";

local kind, n = arg[1], tonumber(arg[2]);
assert((kind == "floor" or kind == "ours" or kind == "persist" or kind == "match") and n,
	"usage: lua5.4 bench/instructions.lua floor|ours|persist|match N");
if kind == "floor" then
	logger.add_level_sink("debug", function () end);
elseif kind == "persist" then
	local _, sink = common.new_persisted_sink({ size = 100 * 1024 }, common.persist_dir());
	logger.add_level_sink("debug", sink);
elseif kind == "match" then
	local _, sink = common.new_sink({ size = 100 * 1024, dump_on_match = common.match_pattern });
	logger.add_level_sink("debug", sink);
else
	local _, sink = common.new_sink({ size = 100 * 1024 });
	logger.add_level_sink("debug", sink);
end
common.workloads[1].run(logger.make_logger(common.source, "debug"), n);
