-- Prosody's util.format, restated for any Lua Prosody 0.12 runs on (5.1, 5.2, 5.3, 5.4, LuaJIT),
-- for the Luas where Prosody's own copy cannot load (its C helpers are built for Lua 5.4 only).
-- This is 0.12's util/format.lua step for step; 13's differs only where 13 needs Lua 5.3 or later
-- (math.type, no %a check) and in how %q serialises, which is passed in (`dump`). It uses the
-- running Lua's own tostring and string.format, which is what makes its output that Lua's.
-- spec/unit/format_versions.lua checks it against Prosody's util.format where that loads.

-- luacheck: ignore 113/unpack
local unpack = table.unpack or unpack;
local tostring, type, select = tostring, type, select;
local sbyte = string.byte;

local reference = {};

-- util.encodings.utf8.valid: well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
-- nothing past U+10FFFF).
function reference.valid_utf8(s)
	local i, n = 1, #s;
	while i <= n do
		local c = sbyte(s, i);
		local len, low, high;
		low, high = 0x80, 0xBF;
		if c < 0x80 then
			len = 1;
		elseif c >= 0xC2 and c <= 0xDF then
			len = 2;
		elseif c >= 0xE0 and c <= 0xEF then
			len = 3;
			if c == 0xE0 then low = 0xA0; elseif c == 0xED then high = 0x9F; end
		elseif c >= 0xF0 and c <= 0xF4 then
			len = 4;
			if c == 0xF0 then low = 0x90; elseif c == 0xF4 then high = 0x8F; end
		else
			return false;
		end
		for k = 1, len - 1 do
			local b = sbyte(s, i + k);
			if not b then return false; end
			if k == 1 then
				if b < low or b > high then return false; end
			elseif b < 0x80 or b > 0xBF then
				return false;
			end
		end
		i = i + len;
	end
	return true;
end

local control_symbols = {};
for b = 0, 31 do
	control_symbols[string.char(b)] = "\226\144" .. string.char(128 + b);
end
control_symbols["\127"] = "\226\144\161";

local num_type = math.type or function (n)
	return n % 1 == 0 and n <= 9007199254740992 and n >= -9007199254740992 and "integer" or "float";
end
local expects_integer = { c = true, d = true, i = true, o = true, u = true, X = true, x = true, };
local expects_positive = { o = true; u = true; x = true; X = true };
local supports_p = pcall(string.format, "%p", "");
local supports_a = pcall(string.format, "%a", 0.0);

-- util.format.format with the given `valid_utf8` and `dump` (util.serialization's, for %q).
function reference.new(valid_utf8, dump)
	return function (formatstring, ...)
		local args = { n = select("#", ...), ... };
		local args_length = args.n;
		local i = 0;
		formatstring = formatstring:gsub("%%[^cdiouxXaAeEfgGpqs%%]*[cdiouxXaAeEfgGpqs%%]", function (spec)
			if spec == "%%" then return end
			i = i + 1;
			local arg = args[i];
			if arg == nil then
				args[i] = "nil";
				return "(%s)";
			end
			local option = spec:sub(-1);
			local t = type(arg);
			if option == "s" and t == "string" and not arg:find("[%z\1-\31\128-\255]") then
				return
			elseif t == "number" then
				if option == "g" or (option == "d" and num_type(arg) == "integer") then return end
			elseif option == "s" and t ~= "string" then
				arg = tostring(arg);
				t = "string";
			end
			if option ~= "s" and option ~= "q" and option ~= "p" then
				if t ~= "number" then
					arg = tostring(arg);
					option = "s";
					spec = "[%s]";
					t = "string";
				elseif expects_integer[option] and num_type(arg) ~= "integer" then
					args[i] = tostring(arg);
					return "[%s]";
				elseif expects_positive[option] and arg < 0 then
					args[i] = tostring(arg);
					return "[%s]";
				elseif (option == "a" or option == "A") and not supports_a then
					return "%x";
				else
					return
				end
			end
			if option == "p" and not supports_p then
				arg = tostring(arg);
				option = "s";
				spec = "[%s]";
				t = "string";
			end
			if t == "string" and option ~= "p" then
				if not valid_utf8(arg) then
					option = "q";
				elseif option ~= "q" then
					args[i] = arg:gsub("[%z\1-\8\11-\31\127]", control_symbols):gsub("\n\t?", "\n\t");
					return spec;
				end
			end
			if option == "q" then
				args[i] = dump(arg);
				return "%s";
			end
			if option == "p" and (t == "boolean" or t == "number") then
				args[i] = tostring(arg);
				return "[%s]";
			end
		end);
		while i < args_length do
			i = i + 1;
			local arg = args[i];
			if arg == nil then
				args[i] = "(nil)";
			else
				args[i] = tostring(arg):gsub("[%z\1-\8\11-\31\127]", control_symbols):gsub("\n\t?", "\n\t");
			end
			formatstring = formatstring .. " [%s]"
		end
		return formatstring:format(unpack(args));
	end;
end

-- A stand-in for util.serialization where Prosody's cannot load: whatever it prints, the sink
-- and the reference both get it from the same function, so it only has to be deterministic.
function reference.dump(v)
	if type(v) == "string" then
		return (("%q"):format(v):gsub("\n", "n"));
	end
	return "_[[" .. tostring(v) .. "]]";
end

return reference;
