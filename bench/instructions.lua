-- Logs `n` typical lines through util.logger into one sink, for counting instructions under
-- valgrind's callgrind (bench/bench.lua runs it):
-- `lua5.4 bench/instructions.lua floor|ours|persist|filtered|redact|match N` (persist: the same sink
-- as ours with `persist`, its ring file in common.persist_dir(); filtered: the same sink made by
-- the module itself, lua/mod_log_ringbuffer.lua, with a `filter` that returns its message;
-- redact: with `redact = true`; match: with `dump_on_match`, which no line matches).
package.path = "bench/?.lua;" .. package.path;
local common = require "common";
local logger = require "util.logger";

local kind, n = arg[1], tonumber(arg[2]);
assert((kind == "floor" or kind == "ours" or kind == "persist" or kind == "filtered" or kind == "redact"
	or kind == "match") and n, "usage: lua5.4 bench/instructions.lua floor|ours|persist|filtered|redact|match N");
if kind == "floor" then
	logger.add_level_sink("debug", function () end);
elseif kind == "filtered" then
	local env = require "spec.helpers.module_env";
	local module_object = env.new_module();
	module_object.add_item = function () end;
	env.load({ { to = "ringbuffer", size = 100 * 1024, filter = function (message) return message; end } }, env.tempdir(),
		module_object);
elseif kind == "persist" then
	local _, sink = common.new_persisted_sink({ size = 100 * 1024 }, common.persist_dir());
	logger.add_level_sink("debug", sink);
elseif kind == "redact" then
	local _, sink = common.new_sink({ size = 100 * 1024, redact = true });
	logger.add_level_sink("debug", sink);
elseif kind == "match" then
	local _, sink = common.new_sink({ size = 100 * 1024, dump_on_match = common.match_pattern });
	logger.add_level_sink("debug", sink);
else
	local _, sink = common.new_sink({ size = 100 * 1024 });
	logger.add_level_sink("debug", sink);
end
common.workloads[1].run(logger.make_logger(common.source, "debug"), n);
