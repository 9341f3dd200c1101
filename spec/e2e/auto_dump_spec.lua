-- End to end: sinks that dump by themselves, in real Prosody 0.12 and 13: on a line at or above
-- `dump_on` (with the aftermath window and the cooldown, also across a config reload that
-- changes the sink), and at shutdown (`dump_on_exit`); lines carried across such a reload.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

-- The notice line a dump carries after its header when triggers were suppressed.
local function suppressed_in(text)
	return tonumber(text:match("\n%-%- (%d+) more dump_on triggers were suppressed by dump_cooldown since the previous dump %-%-\n"));
end

-- Logs `n` debug lines "<tag> 1" .. "<tag> n" (one control round trip).
local function log_numbered(server, tag, n)
	local commands = {};
	for i = 1, n do table.insert(commands, ("log debug %s %d"):format(tag, i)); end
	server:command(table.unpack(commands));
end

-- Where the first line matching `pattern` is in `lines` (nil: none).
local function index_of(lines, pattern)
	for i, line in ipairs(lines) do
		if line:find(pattern) then return i; end
	end
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

		describe("a config reload that changes the sink's options", function ()
			it("keeps an open dump_on window: one dump with what came before and after the reload", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on = "error", dump_after = 8, size = 200000, timestamps = false,
		filename_template = "{paths.data}/reload-window-{count}.log" };
}]]);
				finally(function () server:cleanup(); end);
				log_numbered(server, "window-line", 500);
				server:command("log error window-error", "log debug aftermath-before-reload");
				server:rewrite_config("size = 200000", "size = 300000");
				server:sighup();
				-- Lua collects the replaced sink's handle (Prosody 13 does it by itself).
				server:command("log debug aftermath-after-reload", "collect", "log debug aftermath-after-collect");
				assert.same({}, server:files("^reload%-window%-"), "the window (8 s) was still open at the reload");
				local name = prosody.wait_for(function () return server:files("^reload%-window%-")[1]; end, 20, "the dump");
				local list = dumps.wait_for(server, name);
				assert.equal(1, #list);
				local numbers = dumps.numbers_in(list[1], "window%-line");
				assert.equal(500, #numbers);
				for i, n in ipairs(numbers) do assert.equal(i, n); end
				local previous = index_of(list[1], "\twindow%-line 500$");
				for _, marker in ipairs({ "\twindow%-error$", "\taftermath%-before%-reload$",
					"\taftermath%-after%-reload$", "\taftermath%-after%-collect$" }) do
					assert.equal(1, dumps.count_matching(list[1], marker), marker);
					local at = index_of(list[1], marker);
					assert.truthy(at > previous, marker .. " in order");
					previous = at;
				end
				server:wait_for_log('(dump_on = "error")');
				assert.equal(1, #server:files("^reload%-window%-"));
			end);

			it("carries the lines over, the newest the new limit allows, and counts the rest as dropped", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", lines = 2000, timestamps = false, filename = "$DATA/carried.log" };
}]]);
				finally(function () server:cleanup(); end);
				log_numbered(server, "carried-line", 500);
				server:rewrite_config("lines = 2000", "lines = 400");
				server:sighup();
				server:command("collect", "log debug after-the-reload", "fire e2e/dump");
				local list = dumps.wait_for(server, "carried.log");
				assert.equal(1, #list);
				local numbers = dumps.numbers_in(list[1], "carried%-line");
				-- The newest lines: the last numbered ones, in order, then what came after.
				assert.truthy(#numbers >= 200, "at least 200 of the numbered lines: " .. #numbers);
				for i, n in ipairs(numbers) do assert.equal(500 - #numbers + i, n); end
				assert.truthy(index_of(list[1], "\tafter%-the%-reload$") > index_of(list[1], "\tcarried%-line 500$"));
				local dropped = tonumber((list[1].notes[1] or ""):match("^%-%- (%d+) older lines were dropped"));
				assert.truthy(dropped and dropped >= 100, "the cut is reported: " .. tostring(list[1].notes[1]));
				assert.equal(400, #list[1]);
			end);

			it("dumps the lines of a sink the reload removes, and pairs the others by their file", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", levels = { "warn" }, timestamps = false, filename = "$DATA/removed.log" }; -- REMOVED
	{ to = "ringbuffer", event = "e2e/dump", size = 100000, timestamps = false, filename = "$DATA/stays.log" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("log warn warn-line", "log debug debug-line");
				-- The second sink is now the first one, with another size: its file says which it is.
				server:rewrite_config("\n[^\n]*%-%- REMOVED\n", "\n");
				server:rewrite_config("size = 100000", "size = 120000");
				server:sighup();
				server:command("collect");
				local list = dumps.wait_for(server, "removed.log");
				assert.equal(1, #list);
				assert.equal(1, dumps.count_matching(list[1], "\twarn%-line$"));
				assert.equal(0, dumps.count_matching(list[1], "\tdebug%-line$"));
				server:wait_for_log("(its sink was removed by a config reload)");
				server:command("log debug after-the-reload", "fire e2e/dump");
				list = dumps.wait_for(server, "stays.log");
				assert.equal(1, #list);
				for _, marker in ipairs({ "\twarn%-line$", "\tdebug%-line$", "\tafter%-the%-reload$" }) do
					assert.equal(1, dumps.count_matching(list[1], marker), marker);
				end
			end);

			it("pairs sinks by name, then the rest in config order, when their files change too", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "alpha", levels = { "warn" }, event = "e2e/dump", timestamps = false, filename = "$DATA/alpha-1.log" };
	{ to = "ringbuffer", event = "e2e/dump", timestamps = false, filename = "$DATA/beta-1.log" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("log warn paired-warn", "log debug paired-debug");
				local alpha = '\n[^\n]*name = "alpha"[^\n]*\n';
				local alpha_line = prosody.read(server.config):match(alpha);
				server:rewrite_config(alpha, "\n");
				server:rewrite_config("beta%-1", "beta-2");
				server:rewrite_config("\n}\n", alpha_line:gsub("alpha%-1", "alpha-2") .. "}\n");
				server:sighup();
				server:command("collect", "fire e2e/dump");
				local alpha_dumps = dumps.wait_for(server, "alpha-2.log");
				local beta_dumps = dumps.wait_for(server, "beta-2.log");
				assert.equal(1, dumps.count_matching(alpha_dumps[1], "\tpaired%-warn$"));
				assert.equal(0, dumps.count_matching(alpha_dumps[1], "\tpaired%-debug$"));
				assert.equal(1, dumps.count_matching(beta_dumps[1], "\tpaired%-warn$"));
				assert.equal(1, dumps.count_matching(beta_dumps[1], "\tpaired%-debug$"));
				assert.same({}, server:files("%-1%.log$"), "nothing was removed");
			end);
		end);

		describe("a config reload that removes the sink", function ()
			it("still dumps its open dump_on window, at the window's end", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on = "error", dump_after = 4, timestamps = false, filename = "$DATA/gone.log" }; -- GONE
}]]);
				finally(function () server:cleanup(); end);
				server:command("log debug gone-before", "log error gone-error");
				server:rewrite_config("\n[^\n]*%-%- GONE\n", "\n");
				server:sighup();
				server:command("collect");
				assert.is_nil(server:file("gone.log"), "the window (4 s) was still open at the reload");
				local list = dumps.wait_for(server, "gone.log");
				assert.equal(1, #list);
				for _, marker in ipairs({ "\tgone%-before$", "\tgone%-error$" }) do
					assert.equal(1, dumps.count_matching(list[1], marker), marker);
				end
				server:wait_for_log('(dump_on = "error")');
				assert.falsy(server:log():find("(its sink was removed by a config reload)", 1, true));
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
