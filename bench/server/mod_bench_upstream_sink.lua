-- For `make bench-server` only: the sink type "bench_upstream", the upstream Lua module's
-- per-line algorithm (bench/upstream_sink.lua, named by the global option
-- bench_upstream_sink_file) with its ring of `size` bytes in Lua's heap.
-- luacheck: globals module
module:set_global();

local loggingmanager = require "core.loggingmanager";
local make_sink = dofile(module:get_option_string("bench_upstream_sink_file"));

loggingmanager.register_sink_type("bench_upstream", function (sink_config)
	return (make_sink(sink_config.size or 100 * 1024));
end);

function module.unload()
	loggingmanager.register_sink_type("bench_upstream", nil);
end
