-- REFERENCE ONLY, for measurement: restates the per-line algorithm of the upstream Lua
-- module (prosody-modules' mod_log_ringbuffer, `size` mode, default timestamps) so that
-- bench/bench.lua can time it next to the native sink. Nothing else uses this file.
local format = require "util.format".format;
local ringbuffer = require "util.ringbuffer";
local os_date = os.date;

local timestamps = "%b %d %H:%M:%S ";

-- A sink keeping `size` bytes of lines, evicting the way upstream does.
return function (size)
	local buffer = ringbuffer.new(size);
	local function write(line)
		if not buffer:write(line) then
			if #line > size then
				buffer:discard(size);
				buffer:write(line:sub(-size));
			else
				buffer:discard(#line);
				buffer:write(line);
			end
		end
	end
	return function (name, level, message, ...)
		write(format("%s%s\t%s\t%s\n", os_date(timestamps), name, level, format(message, ...)));
	end, buffer;
end
