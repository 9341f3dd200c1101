-- Loads Prosody's own util libraries and the freshly built native library, for specs and
-- benchmarks that run under plain lua5.4 from the repository root. The libraries come from
-- PROSODY_SRC, by default the Prosody 0.12 tree that scripts/setup-deps.sh unpacks into $DEPS.
local deps = os.getenv("DEPS") or ((os.getenv("PWD") or ".") .. "/.deps");
local src = os.getenv("PROSODY_SRC") or (deps .. "/prosody012/usr/lib/prosody");
package.path = src .. "/?.lua;" .. package.path;
package.cpath = "./target/release/lib?.so;" .. src .. "/?.so;" .. package.cpath;
if not pcall(require, "prosody.loader") then -- Prosody 13 names its libraries prosody.*
	pcall(require, "loader");
end

local native = require "log_ringbuffer_native";
local format = require "util.format".format;

-- The testing entry point of the same library: peek(handle), version, per_line(). It is not
-- part of the table Prosody gets from require.
local path = assert(package.searchpath("log_ringbuffer_native", package.cpath));
local testing = assert(package.loadlib(path, "luaopen_log_ringbuffer_native_testing"))();

local helper = { native = native, testing = testing, format = format, src = src, library = path };

-- A sink that keeps one line and no timestamps unless `config` says otherwise.
function helper.sink(config)
	config = config or {};
	if config.lines == nil and config.size == nil then config.lines = 1; end
	if config.timestamps == nil then config.timestamps = false; end
	local stanza_mt = require "util.stanza".stanza_mt;
	local handle, sink, problems = native.new_sink(config, { data = "/tmp" }, format, tostring, stanza_mt);
	return handle, sink, problems;
end

-- The text a sink holds, left in place.
function helper.peek(handle)
	return testing.peek(handle);
end

-- What the upstream Lua module stores for one call (its line format, util.format twice).
function helper.upstream_line(timestamp, source, level, message, ...)
	return format("%s%s\t%s\t%s\n", timestamp, source, level, format(message, ...));
end

return helper;
