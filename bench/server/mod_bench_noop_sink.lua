-- For `make bench-server` only: the sink type "bench_noop", a Lua function that does nothing.
-- Against A it shows what Prosody itself spends handing its debug lines to any sink, and how
-- far apart two runs that should be equal can land.
-- luacheck: globals module
module:set_global();

local loggingmanager = require "core.loggingmanager";

loggingmanager.register_sink_type("bench_noop", function ()
	return function () end;
end);

function module.unload()
	loggingmanager.register_sink_type("bench_noop", nil);
end
