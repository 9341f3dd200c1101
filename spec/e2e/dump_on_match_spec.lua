-- End to end: `dump_on_match` in real Prosody 0.12 and 13. A line whose message matches the
-- pattern opens the same window as `dump_on` (dump_after, then one dump), whatever its level; a
-- line that does not match does not, even an error; a match within dump_cooldown only counts;
-- a bad pattern is a config error and its sink still captures and dumps on its signal.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

-- The notice line a dump carries after its header when triggers were suppressed.
local function suppressed_in(text)
	return tonumber(text:match("\n%-%- (%d+) more dump_on triggers were suppressed by dump_cooldown since the previous dump %-%-\n"));
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", dump_on_match", function ()
		local server;
		setup(function ()
			-- dump_on is unset: only the pattern triggers. The hour's cooldown never ends here.
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on_match = "Slow event|Traceback", dump_after = 0.5, dump_cooldown = "1h",
		timestamps = false, event = "e2e/match-dump", filename_template = "{paths.data}/match-{count}.log" };
	{ to = "ringbuffer", dump_on_match = "Slow (event", signal = "SIGUSR2", timestamps = false,
		filename = "$DATA/bad-pattern.log" };
	{ to = "ringbuffer", dump_on_match = "(?:\\w{40}){20}", event = "e2e/too-big", timestamps = false,
		filename = "$DATA/too-big.log" };
}]]);
		end);
		teardown(function () if server then server:cleanup(); end end);

		it("dumps on a matching warning, not on an error that does not match", function ()
			-- Had the error opened a window, its dump would come 0.5 s later: without the warning
			-- (a later round trip), or with it counted as suppressed.
			server:command("log debug before-match", "log error plain-error-no-match");
			server:command("log warn Slow event handler took 1.5 seconds", "log debug after-match");
			local name = prosody.wait_for(function () return server:files("^match%-")[1]; end, 10, "the dump");
			local list = dumps.wait_for(server, name);
			assert.equal(1, #list);
			for _, marker in ipairs({ "\tbefore%-match$", "\terror\tplain%-error%-no%-match$",
				"\twarn\tSlow event handler took 1%.5 seconds$", "\tafter%-match$" }) do
				assert.equal(1, dumps.count_matching(list[1], marker), marker);
			end
			assert.is_nil(suppressed_in(server:file(name)));
			server:wait_for_log('(dump_on_match = "Slow event|Traceback")');
			assert.equal(1, #server:files("^match%-"));
		end);

		it("only counts a match within dump_cooldown, and reports the count with the next dump", function ()
			prosody.wait_for(function () return server:files("^match%-")[1]; end, 10, "the first dump");
			-- Not plain ASCII: this line takes the general formatting path.
			server:command("log info Traceback in handler for jülia", "fire e2e/match-dump");
			local name = prosody.wait_for(function () return server:files("^match%-")[2]; end, 10, "the event dump");
			local list = dumps.wait_for(server, name);
			assert.equal(1, dumps.count_matching(list[1], "\tinfo\tTraceback in handler for j"));
			assert.equal(1, suppressed_in(server:file(name)), "counted, not a window of its own");
			assert.equal(2, #server:files("^match%-"));
		end);

		it("reports a bad pattern as a config error; its sink still captures and dumps on its signal", function ()
			server:wait_for_log("Invalid value for option 'dump_on_match': \"Slow (event\"; expected a regular expression"
				.. " (Rust regex syntax); regex parse error: unclosed group (at character 6); no message will dump this buffer");
			server:wait_for_log("Invalid value for option 'dump_on_match': \"(?:\\\\w{40}){20}\"; expected a regular"
				.. " expression (Rust regex syntax); Compiled regex exceeds size limit of 1048576 bytes; no message will dump");
			server:command("log debug bad-pattern-marker", "log warn Slow (event) text");
			server:signal("USR2");
			local list = dumps.wait_for(server, "bad-pattern.log");
			assert.equal(1, dumps.count_matching(list[1], "\tbad%-pattern%-marker$"));
			assert.equal(1, dumps.count_matching(list[1], "\tSlow %(event%) text$"));
			server:command("fire e2e/too-big");
			assert.equal(1, dumps.count_matching(dumps.wait_for(server, "too-big.log")[1], "\tbad%-pattern%-marker$"));
			assert.truthy(server:alive());
		end);
	end);
end
