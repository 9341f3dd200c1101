-- End to end: `dump_on_match` in real Prosody 0.12 and 13: a warning whose message matches
-- starts a dump (the dump_on machinery), an error that does not match starts none, and a bad
-- pattern is a config error while the sink goes on.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", dump_on_match", function ()
		it("dumps on a matching warning and not on a non-matching error", function ()
			local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on_match = "Slow event|Traceback", dump_cooldown = 0,
		filename_template = "$DATA/match-{count}.log" };
}]]);
			finally(function () server:cleanup(); end);
			server:command("log error an unrelated error");
			server:command("log debug between");
			server:command("log warn Slow event 'c2s-read' took 3.2s");
			local name = prosody.wait_for(function () return server:files("^match%-")[1]; end, 10, "the dump");
			local list = dumps.wait_for(server, name);
			assert.equal(1, #list);
			-- The error started no dump of its own: its line is still in the one the warning made.
			for _, marker in ipairs({ "an unrelated error", "between", "Slow event 'c2s%-read' took" }) do
				assert.equal(1, dumps.count_matching(list[1], marker), marker);
			end
			server:wait_for_log('(dump_on_match = "Slow event|Traceback")');
			assert.same({ name }, server:files("^match%-"));
		end);

		it("with a bad pattern, says so in Prosody's log and the sink goes on", function ()
			local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "bad", dump_on_match = "(unclosed", event = "e2e/dump", filename = "$DATA/bad.log" };
}]]);
			finally(function () server:cleanup(); end);
			server:wait_for_log("Invalid value for option 'dump_on_match': \"(unclosed\"; expected a regular expression");
			server:command("log debug still captured", "fire e2e/dump");
			local list = dumps.wait_for(server, "bad.log");
			assert.equal(1, dumps.count_matching(list[1], "still captured"));
		end);
	end);
end
