-- Differential test of the native formatter under any Lua the library can be built for (5.1,
-- 5.2, 5.3, 5.4, LuaJIT): a plain script, not a busted spec, so that it runs on every one of them.
--   lua5.1 spec/unit/format_versions.lua path/to/liblog_ringbuffer_native.so
-- (from the repository root; `make test-lua-versions` builds the library for each Lua and runs
-- this under it). Every call goes through the native sink and through util.format's rules as
-- that Lua runs them (spec/unit/format_reference.lua: that Lua's own tostring and string.format),
-- in the upstream module's line format, and the two lines must be byte for byte the same.
-- Where Prosody's own util.format loads (Lua 5.4, with PROSODY_SRC pointing at Prosody's
-- libraries) the reference is first checked against it on the same calls, and the sink is given
-- Prosody's util.format, as in Prosody.
-- Prints how many calls matched; on a mismatch prints the first ones and exits with status 1.

package.path = "./?.lua;" .. package.path;
-- luacheck: ignore 113/unpack
local unpack = table.unpack or unpack;
local reference = require "spec.unit.format_reference";

local library = assert(arg[1], "usage: lua spec/unit/format_versions.lua path/to/liblog_ringbuffer_native.so");
local native = assert(package.loadlib(library, "luaopen_log_ringbuffer_native"))();
local testing = assert(package.loadlib(library, "luaopen_log_ringbuffer_native_testing"))();
local jit = rawget(_G, "jit");
local lua_name = jit and jit.version or _VERSION;
if testing.built_for ~= (jit and "LuaJIT" or _VERSION) then
	io.stderr:write(("format_versions: %s is built for %s, not %s\n"):format(library, testing.built_for, lua_name));
	os.exit(1);
end

-- Prosody's own util.format, where it loads (its C helpers are built for Debian's Lua 5.4).
local prosody_format, prosody_valid, stanza_mt;
local src = os.getenv("PROSODY_SRC");
if src and _VERSION == "Lua 5.4" and not jit then
	package.path = src .. "/?.lua;" .. package.path;
	package.cpath = src .. "/?.so;" .. package.cpath;
	if not pcall(require, "prosody.loader") then pcall(require, "loader"); end -- 13 names them prosody.*
	prosody_format = require "util.format".format;
	prosody_valid = require "util.encodings".utf8.valid;
	stanza_mt = require "util.stanza".stanza_mt;
end

local dump = reference.dump;
if prosody_format then
	-- util.format's %q of any value is util.serialization's text of it, as util.format uses it.
	dump = function (v) return prosody_format("%q", v); end
end
local format = reference.new(prosody_valid or reference.valid_utf8, dump);

local handle, sink = native.new_sink({ lines = 1, timestamps = false }, { data = "/tmp" },
	prosody_format or format, tostring, stanza_mt);

-- Runtime values only: Lua 5.1 folds the constant -0.0 into 0.0 when it compiles a chunk.
local zero = tonumber("0.0");
local neg_zero = -zero;
local nan = zero / zero;
local inf = 1 / zero;

local numbers = {
	0, 1, -1, 7, 42, -7, 255, 12345, 2147483647, -2147483648, 99999999999999, 100000000000000,
	tonumber("123456789012345678"), tonumber("9007199254740993"), tonumber("-9223372036854775807"),
	zero, neg_zero, 0.5, -0.5, 1.5, 3.0 + zero, -7.0 + zero, 0.1, 1 / 3, 123.456, 1e-5, 5e-324, 2.5e-310,
	1e14, 1e15, 1e16, 1e100, -1e100, 2^31, 2^52 + 0.5, 2^53, 2^53 + 2, -2^53, -(2^53 + 2), 2^63, -2^63, 2^64,
	99999999999999.5, 1e14 - 1, inf, -inf, nan, -nan,
};
if math.maxinteger then
	for _, n in ipairs({ math.maxinteger, math.mininteger, math.maxinteger - 1, math.mininteger + 1 }) do
		numbers[#numbers + 1] = n;
	end
end

local stringy = setmetatable({}, { __tostring = function () return "custom\tto\nstring\0!"; end });
local named = setmetatable({}, { __name = "my.type" });
local strings = {
	"", "plain", "ütf-8 ✓", "with\nnewline\tand tab", "\n\t\n", "ctl\1\2\3\27[31m", "nul\0nul", "del\127",
	"\255\254 bad", "\237\160\128 surrogate", "\192\128 overlong", "\244\144\128\128 too high", "\240\159\152\128",
	("x"):rep(300), "%s %d", "12", "-3.5", "0x10",
};
local others = { true, false, stringy, named, {}, print, coroutine.create(function () end) };

local args = {};
for _, list in ipairs({ numbers, strings, others }) do
	for _, v in ipairs(list) do args[#args + 1] = v; end
end
local nil_arg = #args + 1; -- stands for nil, which a table cannot hold

local specs = {
	"%s", "%d", "%i", "%g", "%q", "%5s", "%-5s", "%.2s", "%5.2s", "%-8d", "%+d", "% d", "%05d", "%5d", "%.3f",
	"%10.4f", "%.0f", "%e", "%E", "%G", "%.3g", "%x", "%X", "%#x", "%o", "%c", "%a", "%A", "%p", "%u", "%%",
};
local pieces = {
	"Received[c2s]: ", " from ", " id=", "plain ascii", "ütf-8 ✓", "tab\there", "new\nline", "ctl\1\27[31m",
	"nul\0byte", "del\127", "bad\255utf8", "100%% sure", "", " ",
};

-- Park-Miller: every product stays below 2^53, so it runs the same with floats only.
local seed = 20261122;
local function rand(n)
	seed = (seed * 16807) % 2147483647;
	return seed % n + 1;
end

local passed, failures, error_paths = 0, {}, 0;

-- The upstream module's line (no timestamp) with this util.format.
local function upstream_line(with, source, level, message, ...)
	return with("%s%s\t%s\t%s\n", "", source, level, with(message, ...));
end

-- Both sides of one call; `...` are the message's arguments.
local function check(source, level, message, ...)
	local ok, expected = pcall(upstream_line, format, source, level, message, ...);
	if ok and prosody_format then
		-- The reference itself, against Prosody's util.format.
		local p_ok, p_expected = pcall(upstream_line, prosody_format, source, level, message, ...);
		if p_ok ~= ok or p_expected ~= expected then
			failures[#failures + 1] = ("reference differs from util.format for %q:\nutil.format %q\n  reference %q")
				:format(message, tostring(p_expected), tostring(expected));
			return;
		end
	end
	sink(source, level, message, ...);
	local first = testing.peek(handle);
	sink(source, level, message, ...); -- the format is cached now: the one-pass path may take it
	local second = testing.peek(handle);
	local problem;
	if first ~= second then
		problem = ("first and cached calls differ:\n first %q\nsecond %q"):format(first, second);
	elseif ok and first ~= expected then
		problem = ("expected %q\n     got %q"):format(expected, first);
	elseif not ok and not first:find("[format error: ", 1, true) then
		problem = ("util.format raises (%s) but the sink stored %q"):format(tostring(expected), first);
	end
	if problem then
		local shown = {};
		for i = 1, select("#", ...) do shown[i] = tostring((select(i, ...))); end
		failures[#failures + 1] = ("format %q with (%s):\n%s"):format(message, table.concat(shown, ", "), problem);
	else
		passed = passed + 1;
		if not ok then error_paths = error_paths + 1; end
	end
end

local function arg_at(i)
	if i == nil_arg then return nil; end
	return args[i];
end

-- Every conversion with every single argument, alone and with text around it.
for _, spec in ipairs(specs) do
	for i = 1, nil_arg do
		check("src", "info", spec, arg_at(i));
		check("src", "info", "<" .. spec .. "> tail", arg_at(i));
	end
end
-- Every argument as an extra one, and numbers in the fast path's shapes.
for i = 1, nil_arg do
	check("src", "debug", "extra", arg_at(i));
	check("src", "debug", "a %s b %d c", arg_at(i), arg_at(i));
	check("src", "debug", "n=%d s=%s i=%i", arg_at(i), arg_at(i), arg_at(i));
end
-- Random calls: a few pieces, conversions and arguments, some extra, some missing.
for _ = 1, 4000 do
	local parts = {};
	for _ = 1, rand(4) - 1 do
		parts[#parts + 1] = pieces[rand(#pieces)];
		parts[#parts + 1] = specs[rand(#specs)];
	end
	parts[#parts + 1] = pieces[rand(#pieces)];
	local call_args = { n = rand(5) - 1 };
	for k = 1, call_args.n do
		if rand(4) == 1 then
			-- A number made up here: whole or not, small or huge, positive or negative.
			call_args[k] = (rand(2000001) - 1000001) / rand(8) * 10 ^ (rand(41) - 21);
		else
			call_args[k] = arg_at(rand(nil_arg));
		end
	end
	check("c2s55d0a1", "debug", table.concat(parts), unpack(call_args, 1, call_args.n));
end
-- Numbers on their own: random ones of every size, and ties (exactly halfway between two
-- roundings at 6 or 14 digits, where LuaJIT's formatter and C's printf round differently).
for _ = 1, 1500 do
	local whole = rand(2000000001) - 1000000001;
	local n;
	local kind = rand(4);
	if kind == 1 then
		n = whole / 2 ^ rand(12) * 10 ^ (rand(31) - 16);
	elseif kind == 2 then
		n = (whole + rand(8) / 8) * 10 ^ (rand(11) - 1); -- ties at several digit counts
	elseif kind == 3 then
		n = whole + 0.5;
	else
		n = (rand(2147483646) * 2147483647 + rand(2147483646)) * 2 ^ (rand(2098) - 1075);
	end
	check("num", "debug", "%s|%g|%d|%i", n, n, n, n);
	check("num", "debug", "x", n);
end
-- Formats util.format passes to string.format, which raises on them.
for _, message in ipairs({ "100%", "%y %s", "%.999f", "%5", "%-", "%099d", "%1$s" }) do
	check("src", "error", message, 1.5, "x");
end
-- Sources and levels that need escaping, and numbers where a string belongs.
for _, source in ipairs({ "plain", "tab\tsrc", "new\nsrc", "ctl\27", "bad\255", "ütf", 42, 1.5, zero }) do
	check(source, "warn", "msg %s", "x");
end
check("c2s55d0a1", "debug", "Received[c2s]: %s from %s id=%d", "<message/>", "juliet@example.com/balcony", 12345);
check("x", "debug", "%s %s %s %s %s %s", "a", 1, 2.5, true, nil, stringy);

local per_line = testing.per_line();
if per_line.direct_stack and (jit or _VERSION ~= "Lua 5.4") then
	failures[#failures + 1] = "the direct stack reader is in use on a Lua other than 5.4";
end
local how = ("%s (library built for %s), arguments read %s%s"):format(lua_name, testing.built_for, per_line.stack_path,
	per_line.reason ~= "" and (" (" .. per_line.reason .. ")") or "");
if #failures > 0 then
	for k = 1, math.min(#failures, 20) do io.stderr:write(failures[k], "\n\n"); end
	io.stderr:write(("format_versions: %s: %d of %d calls differ from util.format\n"):format(how, #failures,
		#failures + passed));
	os.exit(1);
end
print(("format_versions: %s: all %d calls byte-identical to %s (%d through util.format's error path)")
	:format(how, passed, prosody_format and "Prosody's util.format (and the reference)" or "the reference util.format",
	error_paths));
