-- Lua code that the sink runs (a __tostring) attacks the sink's own call: for a C function,
-- Lua 5.4's debug.setlocal can set any slot of its frame ("(C temporary)"), so it replaces the
-- format string and the string arguments, collects them and fills the freed memory with other
-- strings. The sink must neither read that memory nor let the attack change the line: what it
-- stores is exactly what Prosody's util.format gives for the original arguments.
local helper = require "spec.helpers.native";

-- The attacks, as a chunk that also runs in a child process under valgrind. Called with the
-- spec helper, it returns a list of { name, expected, got }.
local attacks = [==[
local helper = ...;
local handle, sink = helper.sink();

-- A string with this content made now, from pieces, so that nothing but the call holds it
-- (short strings are interned: the whole must not exist anywhere else).
local function fresh(...) return table.concat({ ... }); end

local filler = {};
-- Fills memory freed by the collector with strings of these lengths.
local function fill(lengths)
	for _, len in ipairs(lengths) do
		for i = 1, 300 do
			filler[#filler + 1] = ("%s%0" .. math.max(len - 4, 1) .. "d"):format("ZZZZ", i):sub(1, len);
		end
	end
end

-- A value whose __tostring, when it runs inside `sink`, replaces the sink's argument slots
-- (slot = value, or a function that makes the value), collects and refills the memory.
-- Elsewhere (util.format computing the expected line) it is harmless.
local function victim(replace, lengths, before)
	return setmetatable({}, { __tostring = function ()
		local level = 2;
		while true do
			local info = debug.getinfo(level, "f");
			if not info then return "victim"; end
			if info.func == sink then break; end
			level = level + 1;
		end
		if before then before(); end
		for slot, value in pairs(replace) do
			if type(value) == "function" then value = value(); end
			assert(debug.setlocal(level, slot, value), "setlocal failed");
		end
		collectgarbage();
		collectgarbage();
		fill(lengths);
		return "victim";
	end });
end

local results = {};
local function check(name, expected, call)
	call();
	results[#results + 1] = { name, expected, helper.peek(handle) };
	filler = {};
	collectgarbage();
end

local LONG_FORMAT = { "Hostile format, long enough to be a long Lua string: ", "%s then %s and %s; the end" };
local LONG_ARG = { "a long string argument, more than forty bytes: ", ("0123456789"):rep(5) };
local SHORT_ARG = { "short", " arg" };
local lengths = { #table.concat(LONG_FORMAT), #table.concat(LONG_ARG), #table.concat(SHORT_ARG) };
local replacements = {
	[3] = function () return fresh("replaced format %s %s %s %s ", ("R"):rep(40)); end,
	[5] = function () return fresh("replaced long argument ", ("R"):rep(40)); end,
	[6] = function () return fresh("repl", "aced"); end,
};

do
	local v = victim(replacements, lengths);
	check("format and string arguments replaced after a conversion",
		helper.upstream_line("", "src", "debug", fresh(unpack(LONG_FORMAT)), v, fresh(unpack(LONG_ARG)), fresh(unpack(SHORT_ARG))),
		function () sink("src", "debug", fresh(unpack(LONG_FORMAT)), v, fresh(unpack(LONG_ARG)), fresh(unpack(SHORT_ARG))); end);
end

do
	local v = victim({ [3] = replacements[3], [4] = replacements[5], [6] = replacements[6] }, lengths);
	check("format and string arguments replaced from an extra argument",
		helper.upstream_line("", "src", "debug", fresh("extras follow, ", "format ", "%s"), fresh(unpack(LONG_ARG)), v, fresh(unpack(SHORT_ARG))),
		function ()
			sink("src", "debug", fresh("extras follow, ", "format ", "%s"), fresh(unpack(LONG_ARG)), v, fresh(unpack(SHORT_ARG)));
		end);
end

do
	local v = victim({ [2] = fresh("replaced ", "level"), [3] = replacements[3], [4] = replacements[5] }, lengths);
	check("level, format and argument replaced from the source",
		helper.upstream_line("", v, fresh("deb", "ug"), fresh(unpack(LONG_FORMAT)), fresh(unpack(LONG_ARG))),
		function () sink(v, fresh("deb", "ug"), fresh(unpack(LONG_FORMAT)), fresh(unpack(LONG_ARG))); end);
end

do
	-- The format is cached (and kept by the sink) after the first call; then attacked.
	local format = fresh("cached ", "%s and %s; ", ("c"):rep(40));
	sink("src", "debug", format, "x", "y");
	local v = victim({ [3] = replacements[3], [5] = replacements[6] }, lengths);
	check("a cached format replaced",
		helper.upstream_line("", "src", "debug", format, v, fresh(unpack(SHORT_ARG))),
		function () sink("src", "debug", format, v, fresh(unpack(SHORT_ARG))); end);
end

do
	-- The __tostring logs through the same sink (a line within a line) before attacking.
	local function nested() sink("nested", "debug", fresh("inner %s ", "line"), fresh(unpack(LONG_ARG))); end
	local v = victim(replacements, lengths, nested);
	check("a line within the attacked line",
		helper.upstream_line("", "src", "debug", fresh(unpack(LONG_FORMAT)), v, fresh(unpack(LONG_ARG)), fresh(unpack(SHORT_ARG))),
		function () sink("src", "debug", fresh(unpack(LONG_FORMAT)), v, fresh(unpack(LONG_ARG)), fresh(unpack(SHORT_ARG))); end);
end

return results;
]==];

local function run_attacks()
	return assert(load(attacks, "=attacks", "t", setmetatable({ unpack = table.unpack }, { __index = _G })))(helper);
end

describe("a sink under attack from Lua code it runs", function ()
	it("stores the line of the original arguments", function ()
		for _, result in ipairs(run_attacks()) do
			local name, expected, got = result[1], result[2], result[3];
			assert.equal(expected, got, name);
		end
	end);

	it("reads no freed memory (valgrind)", function ()
		if os.execute("command -v valgrind >/dev/null 2>&1") ~= true then
			pending("valgrind is not installed");
			return;
		end
		local script = os.tmpname();
		local f = assert(io.open(script, "w"));
		f:write("package.path = './?.lua;' .. package.path\n",
			"local helper = require 'spec.helpers.native'\n",
			"local results = assert(load(", ("%q"):format(attacks), ", '=attacks', 't', ",
			"setmetatable({ unpack = table.unpack }, { __index = _G })))(helper)\n",
			"for _, r in ipairs(results) do if r[2] ~= r[3] then io.stderr:write('MISMATCH ', r[1], '\\n') end end\n");
		f:close();
		local log = os.tmpname();
		local ok, _, code = os.execute(("valgrind --error-exitcode=99 lua5.4 %s >%s 2>&1"):format(script, log));
		local output = assert(io.open(log)):read("a");
		os.remove(script);
		os.remove(log);
		assert.falsy(output:find("Invalid read", 1, true), output);
		assert.falsy(output:find("MISMATCH", 1, true), output);
		assert.is_true(ok and code == 0, output);
	end);
end);
