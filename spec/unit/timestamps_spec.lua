-- Line timestamps: the default format, other os.date formats, and fractions of a second
-- (GNU date's %3N, %6N, %9N and %N).
local helper = require "spec.helpers.native";

-- Logs one line; returns what the sink holds and os.time() before and after the call.
local function log_one(sink, handle, message)
	local before = os.time();
	sink("src", "info", message or "hello %s", "there");
	local after = os.time();
	return helper.peek(handle), before, after;
end

-- The seconds around a call a stamp may show: os.time() reads a clock that may trail the
-- precise one by up to a tick, so the second after `after` too.
local function window(before, after)
	local list = {};
	for t = before, after + 1 do list[#list + 1] = t; end
	return list;
end

-- Whether `text` is os.date(format, t) for a second of `times`.
local function one_of(format, times, text)
	for _, t in ipairs(times) do
		if os.date(format, t) == text then return true; end
	end
	return false;
end

local REST = "src\tinfo\thello there\n";

describe("line timestamps", function ()
	it("keep the default format unchanged", function ()
		local handle, sink = helper.sink({ timestamps = true });
		for _ = 1, 20 do
			local text, before, after = log_one(sink, handle);
			assert.truthy(text:match("^%a%a%a %d%d %d%d:%d%d:%d%d src\t"), text);
			assert.equal(16 + #REST, #text);
			assert.equal(REST, text:sub(17));
			assert.truthy(one_of("%b %d %H:%M:%S ", window(before, after), text:sub(1, 16)), text);
		end
	end);

	it("keep other formats without fractions unchanged", function ()
		local handle, sink = helper.sink({ timestamps = "!%Y-%m-%dT%H:%M:%S %%N" });
		local text, before, after = log_one(sink, handle);
		local stamp = text:sub(1, #text - #REST);
		assert.equal(REST, text:sub(#stamp + 1));
		assert.truthy(stamp:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d %%N $"), stamp);
		assert.truthy(one_of("!%Y-%m-%dT%H:%M:%S %%N ", window(before, after), stamp), stamp);
	end);

	it("show milliseconds with %3N, in the second os.time() gives", function ()
		local handle, sink = helper.sink({ timestamps = "%b %d %H:%M:%S.%3N" });
		for _ = 1, 50 do
			local text, before, after = log_one(sink, handle);
			assert.truthy(text:match("^%a%a%a %d%d %d%d:%d%d:%d%d%.%d%d%d src\t"), text);
			assert.equal(REST, text:sub(21));
			assert.truthy(one_of("%b %d %H:%M:%S", window(before, after), text:sub(1, 15)), text);
		end
	end);

	it("move the fraction on from line to line", function ()
		local handle, sink = helper.sink({ timestamps = "!%j %H:%M:%S.%3N" });
		-- The whole timestamp as milliseconds since the year began.
		local function ms(text)
			local j, h, m, s, millis = text:match("^(%d+) (%d%d):(%d%d):(%d%d)%.(%d%d%d) ");
			return (((tonumber(j) * 24 + tonumber(h)) * 60 + tonumber(m)) * 60 + tonumber(s)) * 1000 + tonumber(millis);
		end
		local first = ms((log_one(sink, handle)));
		os.execute("sleep 0.05");
		local second = ms((log_one(sink, handle)));
		assert.is_true(second - first >= 50, ("%d then %d"):format(first, second));
		assert.is_true(second - first < 5000, ("%d then %d"):format(first, second));
		-- Many lines within one second each get their own digits, never going backwards.
		local last = second;
		for _ = 1, 200 do
			local now = ms((log_one(sink, handle)));
			assert.is_true(now >= last, ("%d then %d"):format(last, now));
			last = now;
		end
	end);

	it("show microseconds with %6N and nanoseconds with %9N and %N", function ()
		for format, pattern in pairs({
			["!%H:%M:%S.%6N"] = "^%d%d:%d%d:%d%d%.%d%d%d%d%d%d src\t",
			["!%H:%M:%S.%9N"] = "^%d%d:%d%d:%d%d%.%d%d%d%d%d%d%d%d%d src\t",
			["!%H:%M:%S.%N"] = "^%d%d:%d%d:%d%d%.%d%d%d%d%d%d%d%d%d src\t",
			["!%S.%3N|%6N|%N %%N"] = "^%d%d%.(%d%d%d)|(%d%d%d)%d%d%d|(%d%d%d)%d%d%d%d%d%d %%N src\t",
		}) do
			local handle, sink = helper.sink({ timestamps = format });
			local text = log_one(sink, handle);
			assert.truthy(text:match(pattern), format .. ": " .. text);
			local a, b, c = text:match(pattern);
			if c then -- one reading of the clock for all fractions of the line
				assert.equal(a, b);
				assert.equal(a, c);
			end
		end
	end);

	it("pass control characters in the format through as pictures", function ()
		local handle, sink = helper.sink({ timestamps = "!%S\1%3N\n" });
		local text = log_one(sink, handle);
		assert.truthy(text:match("^%d%d\226\144\129%d%d%d\n\t src\t"), text);
	end);

	it("refuse other fraction widths with a clear message, keeping the default format", function ()
		for _, bad in ipairs({ "%H:%M:%S.%4N", "%1N", "%12N" }) do
			local handle, sink, problems = helper.sink({ timestamps = bad });
			assert.equal(1, #problems);
			assert.equal("error", problems[1].level);
			local shown = bad:match("%%%d*N");
			assert.truthy(problems[1].text:find(("invalid conversion specifier '%s'"):format(shown), 1, true),
				problems[1].text);
			assert.truthy(problems[1].text:find("'%3N' (milliseconds)", 1, true), problems[1].text);
			local text = log_one(sink, handle);
			assert.truthy(text:match("^%a%a%a %d%d %d%d:%d%d:%d%d src\t"), text);
		end
	end);
end);
