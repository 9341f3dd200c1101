-- For `make bench-server` only, the control of the Lua module's figure: holds as many bytes of
-- Lua heap as that module's ring (a util.ringbuffer of bench_heap_bytes, filled once) and logs
-- nothing into it, so that the garbage collector sees the same heap as with that module.
-- luacheck: globals module
module:set_global();

local ringbuffer = require "util.ringbuffer";

local size = module:get_option_number("bench_heap_bytes", 100 * 1024);
local held = ringbuffer.new(size);
local filler = ("x"):rep(1023) .. "\n";
while held:write(filler) do end

module:log("info", "Holding %d bytes of Lua heap (%d used)", held:size(), held:length());
