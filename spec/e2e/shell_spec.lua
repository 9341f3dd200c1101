-- End to end: looking inside the buffers from the real admin shell (prosodyctl shell against a
-- running Prosody 0.12 and 13): status, tail, grep, dump with a filter, keep and to, clear,
-- pause and resume, every filter, bad arguments; and 13's command-line form.
local prosody = require "spec.helpers.prosody";
local dump_files = require "spec.helpers.dumps";

-- The lines a shell answer printed before its final "OK:" line.
local function printed(output)
	local lines = {};
	for line in output:gmatch("[^\n]+") do
		if line:match("^OK: ") or line:match("^Error: ") then break; end
		table.insert(lines, line);
	end
	return lines;
end

-- The messages (after the second tab) of printed log lines.
local function messages(lines)
	local out = {};
	for _, line in ipairs(lines) do
		local text = line:match("^[^\t]*\t[^\t]*\t(.*)$");
		if text then table.insert(out, text); end
	end
	return out;
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", the admin shell", function ()
		local server, markers_logged_by;
		setup(function ()
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", lines = 1000, filename = "$DATA/main.log" };
	{ to = "ringbuffer", size = 65536, timestamps = "!%Y-%m-%dT%H:%M:%S", filename = "$DATA/second.log" };
}]]);
			local commands = {};
			for i = 1, 30 do
				table.insert(commands, ("log debug marker-%02d"):format(i));
			end
			table.insert(commands, "log warn a warning marker-w");
			table.insert(commands, "log error an error marker-e");
			server:command(table.unpack(commands));
			markers_logged_by = prosody.clock();
		end);
		teardown(function ()
			if server then server:cleanup(); end
		end);

		it("tail shows the newest lines in order without removing them", function ()
			-- (Prosody logs debug lines of its own meanwhile, the shell's among them: the specs
			-- look at this plugin's lines.)
			local mine = [[{ sink = "main", source = "mod_e2e_control" }]];
			local output = server:shell("ringbuffer:tail(3, " .. mine .. ")");
			assert.same({ "marker-30", "a warning marker-w", "an error marker-e" }, messages(printed(output)));
			assert.truthy(output:find("… 30 more lines (limit = 3; up to 10000)", 1, true), output);
			assert.truthy(output:find("OK: 3 of 33 matching lines shown", 1, true), output);
			-- The same again: nothing was taken out.
			assert.same(printed(output), printed(server:shell("ringbuffer:tail(3, " .. mine .. ")")));
			local default = server:shell("ringbuffer:tail(nil, " .. mine .. ")");
			assert.truthy(default:find("OK: 20 of 33 matching lines shown", 1, true), default);
			assert.equal("marker-13", messages(printed(default))[1]);
		end);

		it("shows each sink's lines under its name, the unnamed one by position", function ()
			local output = server:shell([[ringbuffer:tail(1, { source = "mod_e2e_control" })]]);
			local lines = printed(output);
			assert.equal("== sink main ==", lines[1]);
			assert.equal("== sink 2 ==", lines[4]);
			-- The second sink's own timestamp format; the source is still found after it.
			assert.truthy(output:find("\n%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d mod_e2e_control\terror\tan error marker%-e"), output);
			local second = server:shell([[ringbuffer:tail(2, { sink = 2, source = "mod_e2e_*" })]]);
			assert.same({ "a warning marker-w", "an error marker-e" }, messages(printed(second)));
		end);

		it("filters by level, source, since and limit", function ()
			local warn = server:shell([[ringbuffer:tail(50, { sink = "main", level = "warn", source = "mod_e2e*" })]]);
			assert.same({ "a warning marker-w", "an error marker-e" }, messages(printed(warn)));
			local exact = server:shell([[ringbuffer:tail(50, { sink = "main", source = "mod_e2e_control", level = "error" })]]);
			assert.same({ "an error marker-e" }, messages(printed(exact)));
			local none = server:shell([[ringbuffer:tail(50, { sink = "main", source = "mod_e2e" })]]);
			assert.truthy(none:find("OK: 0 of 0 matching lines shown"), none);
			local limited = server:shell([[ringbuffer:grep("marker-", { sink = "main", limit = 2, source = "mod_e2e_control" })]]);
			assert.same({ "a warning marker-w", "an error marker-e" }, messages(printed(limited)));
			assert.truthy(limited:find("… 30 more lines (limit = 2; up to 10000)", 1, true), limited);
			-- since = "2s" shows no line logged more than 2 s before the command, whatever the
			-- fraction of the second: the markers, once this clock says they are that old.
			prosody.wait_until(markers_logged_by + 2, "the markers to be 2 s old");
			-- Lines keep whole seconds, so only lines logged at most 1 s before the command are
			-- sure to be shown (less the clock tick by which time() may lag): a fresh line is
			-- asked for by a command that answered within 0.9 s of logging it (a busy machine
			-- may need several tries).
			for form, since in pairs({ text = [["2s"]], number = "2" }) do
				local query = ([[ringbuffer:tail(50, { sink = "main", since = %s, source = "mod_e2e_control" })]]):format(since);
				local fresh;
				for try = 1, 10 do
					local started = prosody.clock();
					server:command(("log debug fresh-marker-%s-%d"):format(form, try));
					local recent = messages(printed(server:shell(query)));
					for _, text in ipairs(recent) do
						assert.truthy(text:match("^fresh%-marker%-"), "since = " .. since .. " showed an older line: " .. text);
					end
					if prosody.clock() - started <= 0.9 then
						fresh = recent[#recent];
						assert.equal(("fresh-marker-%s-%d"):format(form, try), fresh);
						break;
					end
				end
				assert.truthy(fresh, "no shell command with since = " .. since .. " answered within 0.9 s of logging");
			end
		end);

		it("greps with a regular expression", function ()
			local output = server:shell([[ringbuffer:grep("marker-(0[2-4]|w)$", { sink = "main" })]]);
			assert.same({ "marker-02", "marker-03", "marker-04", "a warning marker-w" }, messages(printed(output)));
			assert.truthy(output:find("OK: 4 of 4 matching lines shown", 1, true), output);
			local bad = server:shell([[ringbuffer:grep("marker-(", { sink = "main" })]]);
			assert.truthy(bad:find("Error: invalid regular expression: ", 1, true), bad);
		end);

		it("answers bad arguments with a clear message", function ()
			local cases = {
				{ [[ringbuffer:tail("many")]], "the number of lines must be a whole number from 1 to 10000, not 'many'" };
				{ [[ringbuffer:tail(0)]], "from 1 to 10000, not 0" };
				{ [[ringbuffer:tail(5, { colour = "red" })]], "Unknown filter field \"colour\"; the fields are: jid, level, limit, shell, since, sink, source" };
				{ [[ringbuffer:tail(5, "warn")]], "The filter must be a table" };
				{ [[ringbuffer:tail(5, { level = "loud" })]], "level must be one of debug, info, warn, error (not 'loud')" };
				{ [[ringbuffer:tail(5, { since = "yesterday" })]], "since must be seconds or a span like" };
				{ [[ringbuffer:tail(5, { sink = "other" })]], "There is no ringbuffer sink \"other\"; the sinks are: main, 2" };
				{ [[ringbuffer:grep()]], "grep needs a regular expression" };
				{ [[ringbuffer:dump({ keep = "yes" })]], "keep must be true or false" };
				{ [[ringbuffer:pause("nope")]], "There is no ringbuffer sink \"nope\"" };
			};
			for _, case in ipairs(cases) do
				local output = server:shell(case[1]);
				assert.truthy(output:find("Error: ", 1, true) and output:find(case[2], 1, true), case[1] .. " gave: " .. output);
			end
			assert.truthy(server:shell("ringbuffer:status()"):find("OK: #1 main: "), "still answering");
		end);

		it("dumps a filtered copy elsewhere, a kept copy, and then the whole buffer", function ()
			local function markers(lines)
				local n = 0;
				for _, line in ipairs(lines) do
					if line:match("\tmarker%-%d%d$") then n = n + 1; end
				end
				return n;
			end
			local to = server.data .. "/errors.log";
			local output = server:shell(([[ringbuffer:dump({ sink = "main", level = "warn", source = "mod_e2e_control", to = %q })]]):format(to));
			assert.truthy(output:find("OK: Dumped a copy of 2 lines to " .. to, 1, true), output);
			local dumps = dump_files.parse(server:file("errors.log"));
			assert.same({ "-- Only the lines with level >= warn, source mod_e2e_control --" }, dumps[1].notes);
			assert.same({ "a warning marker-w", "an error marker-e" }, messages(dumps[1]));
			-- (Prosody keeps logging debug lines of its own, so line counts only grow in between.)
			local kept = server:shell([[ringbuffer:dump({ sink = "main", keep = true })]]);
			local copied = tonumber(kept:match("OK: Dumped a copy of (%d+) lines to [^\n]*; the buffer keeps its lines"));
			assert.truthy(copied, kept);
			local copy = dump_files.wait_for(server, "main.log")[1];
			assert.equal(copied, #copy);
			assert.equal(30, markers(copy));
			local whole = server:shell([[ringbuffer:dump({ sink = "main" })]]);
			assert.truthy(tonumber(whole:match("OK: Dumping (%d+) lines to ")) >= copied, whole);
			local both = dump_files.wait_for(server, "main.log", 2);
			assert.equal(30, markers(both[2]), "the kept copy left every line");
			assert.same({}, messages(printed(server:shell([[ringbuffer:grep("marker", { sink = "main", source = "mod_e2e_control" })]]))));
		end);

		it("pauses, resumes and clears a sink", function ()
			assert.truthy(server:shell([[ringbuffer:pause("main")]]):find("OK: Paused ringbuffer sink main", 1, true));
			server:command("log debug while-paused");
			local status = server:shell("ringbuffer:status()");
			assert.truthy(status:find("capture is paused", 1, true), status);
			assert.same({}, messages(printed(server:shell([[ringbuffer:grep("while-paused", { sink = "main" })]]))));
			assert.same({ "while-paused" }, messages(printed(server:shell([[ringbuffer:grep("while-paused", { sink = 2 })]]))));
			assert.truthy(server:shell([[ringbuffer:resume({ sink = "main" })]]):find("OK: Resumed ringbuffer sink main", 1, true));
			server:command("log debug after-resume");
			assert.same({ "after-resume" }, messages(printed(server:shell([[ringbuffer:grep("after-resume", { sink = "main" })]]))));
			assert.truthy(server:shell("ringbuffer:clear()"):find("OK: Cleared ringbuffer sinks main, 2", 1, true));
			local after = server:shell("ringbuffer:status()");
			assert.falsy(after:find("capture is paused", 1, true), after);
			assert.truthy(after:find("#2: %d+ lines"), after);
			assert.same({}, messages(printed(server:shell([[ringbuffer:grep("marker", { source = "mod_e2e_control" })]]))));
		end);

		if version:match("^13") then -- 13.0.1 and the newest 13.0.x
			it("offers every command on prosodyctl's command line, with help", function ()
				server:command("log warn cli-warning", "log debug cli-debug");
				local output, code = server:ctl("shell", "ringbuffer", "tail", "5", "--sink", "main", "--level", "warn");
				assert.equal(0, code, output);
				assert.same({ "cli-warning" }, messages(printed(output)));
				output = server:ctl("shell", "ringbuffer", "grep", "cli-", "--sink", "main", "--limit", "1");
				assert.same({ "cli-debug" }, messages(printed(output)));
				assert.truthy(output:find("… 1 more lines", 1, true), output);
				output = server:ctl("shell", "ringbuffer", "dump", "--keep", "--sink", "main", "--source", "mod_e2e_control");
				assert.truthy(output:find("OK: Dumped a copy of 2 lines to ", 1, true), output);
				output = server:ctl("shell", "ringbuffer", "tail", "--colour", "red");
				assert.truthy(output:find("Unknown parameter: --colour", 1, true), output);
				output = server:ctl("shell", "ringbuffer", "grep", "x", "--keep");
				assert.truthy(output:find("Unknown parameter: --keep", 1, true), output);
				output = server:ctl("shell", "help", "ringbuffer");
				for _, command in ipairs({ "status", "tail", "grep", "dump", "clear", "pause", "resume" }) do
					assert.truthy(output:find("ringbuffer " .. command, 1, true), output);
				end
			end);
		end
	end);
end
