-- End to end: sinks that dump by themselves, in real Prosody 0.12 and 13: on a line at or above
-- `dump_on` (with the aftermath window and the cooldown), and at shutdown (`dump_on_exit`).
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

-- The notice line a dump carries after its header when triggers were suppressed.
local function suppressed_in(text)
	return tonumber(text:match("\n%-%- (%d+) more dump_on triggers were suppressed by dump_cooldown since the previous dump %-%-\n"));
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version, function ()
		describe("dump_on", function ()
			it("dumps what led to the error and what followed within dump_after", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on = "error", dump_after = "1s", filename_template = "{paths.data}/window-{count}.log" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("log debug before-error", "log error the-error", "log debug after-error");
				local name = prosody.wait_for(function () return server:files("^window%-")[1]; end, 10, "the dump");
				local list = dumps.wait_for(server, name);
				assert.equal(1, #list);
				for _, marker in ipairs({ "before%-error", "the%-error", "after%-error" }) do
					assert.equal(1, dumps.count_matching(list[1], marker), marker);
				end
				server:wait_for_log('(dump_on = "error")');
				assert.is_nil(suppressed_in(server:file(name)));
			end);

			it("gives one dump for an error storm and counts the rest", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on = "error", dump_after = 0.5, dump_cooldown = "1h", timestamps = false,
		filename_template = "{paths.data}/storm-{count}.log" };
}]]);
				finally(function () server:cleanup(); end);
				local commands = {};
				for i = 1, 100 do table.insert(commands, "log error storm-error " .. i); end
				server:command(table.unpack(commands));
				local name = prosody.wait_for(function () return server:files("^storm%-")[1]; end, 10, "the dump");
				local list = dumps.wait_for(server, name);
				assert.equal(100, dumps.count_matching(list[1], "storm%-error %d+$"));
				assert.equal(99, suppressed_in(server:file(name)));
				-- Within the hour's cooldown: more errors are only counted, no new file.
				server:command("log error late-error", "log info marker-after-late");
				server:wait_for_log("marker-after-late");
				prosody.sleep(1);
				assert.equal(1, #server:files("^storm%-"));
			end);
		end);

		describe("loss accounting", function ()
			it("says after the header how many lines were dropped since the previous dump", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", lines = 10, event = "e2e/dump", filename = "$DATA/loss.log" };
}]]);
				finally(function () server:cleanup(); end);
				local commands = {};
				for i = 1, 25 do table.insert(commands, "log debug loss-line " .. i); end
				table.insert(commands, "fire e2e/dump");
				server:command(table.unpack(commands));
				local list = dumps.wait_for(server, "loss.log");
				assert.equal(10, #list[1]);
				-- Prosody's own lines since the start count too: at least the 15 logged here.
				local dropped = tonumber(list[1].notes[1]:match("^%-%- (%d+) older lines were dropped since the previous dump %-%-$"));
				assert.truthy(dropped and dropped >= 15, list[1].notes[1]);
				server:wait_for_log(("; %d older lines had been dropped since the previous dump"):format(dropped));
				server:command("log debug after-1", "log debug after-2", "fire e2e/dump");
				list = dumps.wait_for(server, "loss.log", 2);
				assert.same({}, list[2].notes, "nothing was dropped: the dump is the Lua module's");
			end);
		end);

		describe("max_age", function ()
			it("leaves older lines out of dumps", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", max_age = "2s", event = "e2e/dump", filename = "$DATA/aged.log" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("log debug old-line");
				-- Older than max_age by this clock: left out, whatever the fraction of the second.
				prosody.wait_until(prosody.clock() + 2, "old-line to be 2 s old");
				server:command("log debug new-line", "fire e2e/dump");
				local list = dumps.wait_for(server, "aged.log");
				assert.equal(0, dumps.count_matching(list[1], "old%-line"));
				assert.equal(1, dumps.count_matching(list[1], "new%-line"));
			end);
		end);

		describe("dump_on_exit", function ()
			it("dumps at shutdown", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on_exit = true, filename = "$DATA/exit.log" };
}]]);
				finally(function () server:cleanup(); end);
				assert.falsy(server:log():find("nothing will dump it", 1, true));
				server:command("log debug last-words");
				server:stop();
				local list = dumps.parse(server:file("exit.log"));
				assert.equal(1, #list);
				assert.equal(1, dumps.count_matching(list[1], "last%-words"));
			end);

			it("also writes a dump_on dump still waiting for its window at shutdown", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on = "error", dump_after = "10m", filename = "$DATA/pending.log" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("log error pending-error");
				server:stop();
				local list = dumps.parse(server:file("pending.log"));
				assert.equal(1, #list);
				assert.equal(1, dumps.count_matching(list[1], "pending%-error"));
			end);
		end);
	end);
end
