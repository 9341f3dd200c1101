-- Differential corpus: thousands of generated log calls go through the native sink and through
-- Prosody's own util.format (the upstream module's line format); every line must be identical.
local helper = require "spec.helpers.native";
local st = require "util.stanza";

local pack = table.pack or function (...) return { n = select("#", ...), ... }; end
local unpack = table.unpack;

local rng_state = 20261121;
local function rand(n) -- deterministic LCG, so a failure can be replayed
	rng_state = (rng_state * 1103515245 + 12345) % 2147483648;
	return rng_state % n + 1;
end
local function pick(list) return list[rand(#list)]; end

local stringy = setmetatable({}, { __tostring = function () return "custom\tto\nstring\0!"; end });
local plain_table = {};
local stanza = st.message({ to = "juliet@example.com", type = "chat", id = "m1" }):tag("body"):text("Wherefore art thou? <&>'\"");

local literal_pieces = {
	"Received[c2s]: ", " from ", " id=", "plain ascii", "ütf-8 ✓", "tab\there", "new\nline", "\n\t", "ctl\1\27[31m",
	"nul\0byte", "del\127", "bad\255utf8", "%%", "100%% sure", "", " ", "\226\130", "\240\159\152\128",
};
local specs = {
	"%s", "%s", "%s", "%d", "%d", "%i", "%g", "%q", "%5s", "%-5s", "%.2s", "%5.2s", "%-8d", "%+d", "% d", "%05d",
	"%.3f", "%10.4f", "%e", "%E", "%G", "%x", "%X", "%#x", "%o", "%c", "%a", "%A", "%p", "%u", "%%",
};
local args = {
	nil, true, false, 0, -1, 42, math.maxinteger, math.mininteger, 0.5, -0.0, 3.0, 1e15, 1e100, 2^53, 1/0, -1/0,
	"", "plain", "ütf-8", "with\nnewline\tand tab", "\n\t\n", "ctl\1\2\3\27", "nul\0nul", "del\127", "\255\254 bad",
	"\237\160\128 surrogate", "\192\128 overlong", ("x"):rep(5000), "%s %d", stringy, plain_table, stanza, print,
	coroutine.create(function () end),
};
local nargs_max = #args + 1; -- index #args+1 stands for nil (holes cannot live in the table)
local function random_arg()
	local i = rand(nargs_max);
	if i == nargs_max then return nil; end
	return args[i];
end

local function random_call()
	local parts = {};
	for _ = 1, rand(5) - 1 do
		table.insert(parts, pick(literal_pieces));
		table.insert(parts, pick(specs));
	end
	table.insert(parts, pick(literal_pieces));
	local call_args = { n = rand(6) - 1 };
	for i = 1, call_args.n do call_args[i] = random_arg(); end
	return table.concat(parts), call_args;
end

describe("native formatting", function ()
	local handle, sink = helper.sink();

	-- Each call is made twice: the first parses the format, the second finds it cached and may
	-- take the one-pass path. Both must store the same line.
	local function native_line(source, level, message, ...)
		sink(source, level, message, ...);
		local first = helper.peek(handle);
		sink(source, level, message, ...);
		local second = helper.peek(handle);
		if first ~= second then
			error(("cached format %q stored a different line:\nfirst  %q\nsecond %q"):format(message, first, second), 3);
		end
		return first;
	end

	local function check(source, level, message, call_args)
		local ok, expected = pcall(helper.upstream_line, "", source, level, message, unpack(call_args, 1, call_args.n));
		local got = native_line(source, level, message, unpack(call_args, 1, call_args.n));
		if ok then
			if got ~= expected then
				error(("mismatch for format %q with %d args:\nexpected %q\n     got %q"):format(
					message, call_args.n, expected, got), 2);
			end
		else
			-- util.format raises here; the sink records what went wrong instead.
			assert.truthy(got:find("[format error: ", 1, true), got);
		end
		return ok;
	end

	it("runs the one-pass path the way it runs in Prosody here", function ()
		-- Debian's Lua 5.4 (5.4.4) is a release the stack reader knows and passes its probe, so
		-- the calls below exercise it, unless LOG_RINGBUFFER_STACK=api forces the C API (then
		-- they exercise that path).
		local per_line = helper.testing.per_line();
		local forced = os.getenv("LOG_RINGBUFFER_STACK") == "api";
		assert.equal(forced, per_line.forced);
		assert.equal(not forced, per_line.direct_stack, per_line.reason);
		assert.equal(forced and "api" or "direct", per_line.stack_path);
		assert.truthy(per_line.lua:match("^Lua 5%.4%.%d+$"), per_line.lua);
		assert.is_true(per_line.membarrier);
	end);

	it("keeps test-only functions out of the module Prosody gets", function ()
		for _, name in ipairs({ "peek", "version", "per_line" }) do
			assert.is_nil(helper.native[name], name);
			assert.is_not_nil(helper.testing[name], name);
		end
		assert.is_nil(handle.peek);
		assert.truthy(helper.testing.version:match("^%d+%.%d+%.%d+"));
	end);

	it("matches util.format on 20000 generated calls", function ()
		local accepted = 0;
		for _ = 1, 20000 do
			local message, call_args = random_call();
			if check("c2s55d0a1", "debug", message, call_args) then accepted = accepted + 1; end
		end
		-- Most generated calls are ones util.format accepts; the rest check the error path.
		assert.truthy(accepted > 15000, accepted);
	end);

	it("matches on every single spec with every single argument", function ()
		for _, spec in ipairs(specs) do
			for i = 1, nargs_max do
				check("src", "info", "<" .. spec .. ">", pack(args[i]));
			end
		end
	end);

	it("matches for sources and levels that need escaping", function ()
		for _, source in ipairs({ "plain", "tab\tsrc", "new\nsrc", "ctl\27", "bad\255", "ütf" }) do
			check(source, "warn", "msg %s", pack("x"));
		end
		check(42, "debug", "numeric source", pack());
	end);

	it("matches the typical Prosody lines", function ()
		check("c2s55d0a1", "debug", "Received[c2s]: %s from %s id=%d",
			pack(tostring(stanza), "juliet@example.com/balcony", 12345));
		check("c2s55d0a1", "debug", "Received[c2s]: %s", pack(stanza));
		check("mod_posix", "info", ("y"):rep(4096), pack());
		check("x", "debug", "%s %s %s %s %s %s", pack("a", 1, 2.5, true, nil, stanza));
	end);

	it("never raises, whatever the arguments", function ()
		local raising = setmetatable({}, { __tostring = function () error("boom"); end });
		local not_string = setmetatable({}, { __tostring = function () return 42; end });
		local recursive = setmetatable({}, {});
		getmetatable(recursive).__tostring = function (t) return "deeper " .. tostring(t); end
		for _, call in ipairs({
			pack(nil), pack(42), pack({}), pack("%s", raising), pack("%d", raising), pack("", raising),
			pack("%s", not_string), pack("100%"), pack("%y %s", 1), pack("%.999f", 1.5), pack("%5", 1),
			pack("%s", recursive), pack("%s %s", io.stdout, print), pack(io.stdout), pack("%s\0%s", "a\0b", "\0"),
		}) do
			assert.has_no.errors(function () sink("src", "debug", unpack(call, 1, call.n)); end);
			assert.truthy(helper.peek(handle):match("^src\tdebug\t.*\n$"), helper.peek(handle));
		end
		-- Endless __tostring recursion ends in a Lua error, recorded as such.
		sink("src", "debug", "%s", recursive);
		assert.truthy(helper.peek(handle):find("^src\tdebug\t%[format error: .*overflow"), helper.peek(handle));
	end);

	it("keeps the tail of a 100 MiB line in a small ring, and logs on", function ()
		local big_handle, big_sink = helper.sink({ size = 1024 * 1024 });
		local huge = ("0123456789abcdef"):rep(100 * 1024 * 1024 / 16);
		big_sink("src", "debug", "%s!", huge);
		local kept = helper.peek(big_handle);
		assert.equal(1024 * 1024 - 10, #kept); -- the line's 10 bytes of bookkeeping
		assert.equal("cdef!\n", kept:sub(-6));
		big_sink("src", "debug", "after");
		assert.equal("src\tdebug\tafter\n", helper.peek(big_handle));
	end);
end);
