-- For persist_spec: when the global event e2e/burst fires, logs the numbered debug lines
-- "<tag> 1" .. "<tag> <count>" (tag and count read from <data>/burst-tag), 1000 at full speed
-- every 5 ms, and after each such tick writes how many it logged and the seconds since the
-- first to <data>/burst-progress.
module:set_global();
local socket = require "socket";
local data = prosody.paths.data;

module:hook_global("e2e/burst", function ()
	local f = assert(io.open(data .. "/burst-tag"));
	local tag, count = f:read("*l"):match("^(%S+) (%d+)$");
	f:close();
	count = tonumber(count);
	local i, started = 0, socket.gettime();
	module:add_timer(0, function ()
		for _ = 1, 1000 do
			i = i + 1;
			if i > count then return; end
			module:log("debug", "%s %d", tag, i);
		end
		local p = assert(io.open(data .. "/burst-progress.tmp", "w"));
		p:write(tag, " ", i, " ", socket.gettime() - started, "\n");
		p:close();
		os.rename(data .. "/burst-progress.tmp", data .. "/burst-progress");
		return 0.005;
	end);
end);
