-- `dump_on_match` on the per-line path: a line whose message matches opens the sink's window
-- (handle:window_open(), at once, on the thread that logs), whichever way the line is stored:
-- straight into the ring, through the buffer used when the ring has no room open for it (its
-- first line, or a chunk too full), or formatted in full (a message that is not plain ASCII,
-- a format seen for the first time). The window's dump is an hour away
-- (dump_after): it never comes while the spec runs.
local helper = require "spec.helpers.native";

local function sink(config)
	config.dump_after = 3600;
	config.size = 100 * 1024;
	local handle, log, problems = helper.sink(config);
	assert.same({}, problems);
	return handle, log;
end

describe("dump_on_match", function ()
	it("opens the window on a matching message, whatever its level, and not on others", function ()
		local handle, log = sink({ dump_on_match = "Slow event|Traceback" });
		-- The format seen once before: the line is formatted straight into the ring.
		log("general", "error", "handler %s: %s", "x", "an error that does not match");
		log("Slow event", "Traceback", "handler %s: %s", "x", "neither source nor level is the message");
		assert.is_false(handle:window_open());
		log("general", "debug", "handler %s: %s", "x", "Slow event (2 s)");
		assert.is_true(handle:window_open());
	end);

	it("checks a message that takes the general formatting path", function ()
		local handle, log = sink({ dump_on_match = "Traceback" });
		log("general", "info", "for jülia: %s", "none");
		assert.is_false(handle:window_open());
		log("general", "info", "Traceback for jülia: %s", "stack");
		assert.is_true(handle:window_open());
	end);

	it("checks a line stored through the buffer when the ring's chunk is too full for it", function ()
		-- Lines of about 1 KiB: one of the first 20 ends the ring's first 16 KiB chunk.
		local filler = ("x"):rep(1000);
		for before = 0, 20 do
			local handle, log = sink({ dump_on_match = "^MATCH" });
			for _ = 1, before do log("src", "info", "%s", filler); end
			assert.is_false(handle:window_open());
			log("src", "info", "%s", "MATCH" .. filler);
			assert.is_true(handle:window_open(), "after " .. before .. " lines");
		end
	end);

	it("never matches the module's own lines (its dump reports quote the pattern)", function ()
		local handle, log = sink({ dump_on_match = "Slow event" });
		log("mod_log_ringbuffer", "info", "Dumped 5 buffered lines to x.log (dump_on_match = \"Slow event\")");
		assert.is_false(handle:window_open());
	end);

	it("with dump_on: either one opens the window", function ()
		local by_level, log = sink({ dump_on = "error", dump_on_match = "Slow event" });
		log("general", "error", "no match");
		assert.is_true(by_level:window_open());
		local by_match, log2 = sink({ dump_on = "error", dump_on_match = "Slow event" });
		log2("general", "info", "Slow event");
		assert.is_true(by_match:window_open());
	end);

	it("leaves a bad pattern out and says why", function ()
		local handle, log, problems = helper.sink({ dump_on_match = "Slow (event", size = 100 * 1024 });
		assert.equal(1, #problems);
		assert.truthy(problems[1].text:find("Invalid value for option 'dump_on_match': \"Slow (event\"", 1, true));
		log("general", "warn", "Slow (event");
		assert.is_false(handle:window_open());
		assert.truthy(helper.peek(handle):find("Slow (event", 1, true), "the line is still captured");
	end);
end);
