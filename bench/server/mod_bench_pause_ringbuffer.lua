-- For `make bench-server` only (configuration P): pauses every ringbuffer sink once the server
-- has started, through the admin shell's own `ringbuffer:pause()`. Prosody still hands each
-- debug line to the module's native sink, which returns at once: P against A is what the call
-- alone costs, B against P what the module does with the line.
-- luacheck: globals module
module:set_global();
module:depends("log_ringbuffer");

module:hook_global("server-started", function ()
	local ringbuffer = module:shared("/*/admin_shell/env").ringbuffer;
	local ok, text = ringbuffer:pause();
	module:log(ok and "info" or "error", "%s", text);
end);
