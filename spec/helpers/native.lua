-- Loads Prosody's own util libraries (from PROSODY_SRC, default Debian's 0.12) and the
-- freshly built native library, for specs that run under plain lua5.4.
local src = os.getenv("PROSODY_SRC") or "/usr/lib/prosody";
package.path = src .. "/?.lua;" .. package.path;
package.cpath = "./target/release/lib?.so;" .. src .. "/?.so;" .. package.cpath;
if not pcall(require, "prosody.loader") then -- Prosody 13 names its libraries prosody.*
	pcall(require, "loader");
end

local native = require "log_ringbuffer_native";
local format = require "util.format".format;

local helper = { native = native, format = format, src = src };

-- A sink that keeps one line and no timestamps unless `config` says otherwise.
function helper.sink(config)
	config = config or {};
	if config.lines == nil and config.size == nil then config.lines = 1; end
	if config.timestamps == nil then config.timestamps = false; end
	local stanza_mt = require "util.stanza".stanza_mt;
	local handle, sink, problems = native.new_sink(config, { data = "/tmp" }, format, tostring, stanza_mt);
	return handle, sink, problems;
end

-- What the upstream Lua module stores for one call (its line format, util.format twice).
function helper.upstream_line(timestamp, source, level, message, ...)
	return format("%s%s\t%s\t%s\n", timestamp, source, level, format(message, ...));
end

return helper;
