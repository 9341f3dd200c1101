-- End to end: the installed module inside real Prosody 0.12 and 13.
local prosody = require "spec.helpers.prosody";

local dump_files = require "spec.helpers.dumps";
local stamp_pattern, parse_dumps, count_matching = dump_files.stamp_pattern, dump_files.parse, dump_files.count_matching;

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version, function ()
		describe("a server with several sinks", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 4096, signal = "SIGUSR2", filename_template = "{paths.data}/usr2-{pid}-{count}.log" };
	{ to = "ringbuffer", lines = 3, event = "e2e/dump", timestamps = false, filename = "$DATA/lines.log" };
	{ to = "ringbuffer", level = "info", signal = "SIGWINCH", timestamps = "!%Y-%m-%dT%H:%M:%S",
		filename_template = "{paths.data}/winch.log" };
}]]);
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			-- Sends SIGUSR2 and returns the new dump file's name and its dumps.
			local seen = {};
			local function usr2_dump()
				server:signal("USR2");
				local pattern = ("^usr2%%-%s%%-%%d+%%.log$"):format(server.pid);
				local file = prosody.wait_for(function ()
					for _, f in ipairs(server:files(pattern)) do
						local ok, dumps = pcall(parse_dumps, server:file(f));
						if not seen[f] and ok and #dumps > 0 then return f; end
					end
				end, 10, "SIGUSR2 dump");
				seen[file] = true;
				return file, parse_dumps(server:file(file));
			end

			it("dumps whole lines, oldest first, on SIGUSR2", function ()
				local commands = {};
				for i = 1, 200 do
					table.insert(commands, ("log debug marker %03d %s"):format(i, ("x"):rep(30)));
				end
				server:command(table.unpack(commands));
				local file, dumps = usr2_dump();
				assert.equal(("usr2-%s-0.log"):format(server.pid), file);
				assert.equal(1, #dumps);
				local lines, bytes, last = dumps[1], 0, 0;
				for _, line in ipairs(lines) do
					assert.truthy(line:match(stamp_pattern .. "[^\t]+\t%a+\t"), "torn or malformed line: " .. line);
					bytes = bytes + #line + 1;
					local n = tonumber(line:match("marker (%d+)"));
					if n then
						assert.truthy(n > last, "out of order");
						last = n;
					end
				end
				assert.equal(200, last);
				assert.truthy(bytes <= 4096, bytes);
				assert.truthy(count_matching(lines, "marker") < 200, "4096 bytes cannot hold 200 markers");
			end);

			it("keeps exactly the newest lines, without timestamps, on a custom event", function ()
				server:command("log debug one", "log debug two", "log debug three", "log debug four", "fire e2e/dump");
				local dumps = dump_files.wait_for(server, "lines.log");
				assert.same({
					"mod_e2e_control\tdebug\ttwo", "mod_e2e_control\tdebug\tthree", "mod_e2e_control\tdebug\tfour",
				}, { table.unpack(dumps[1]) });
				-- Everything logged before "two" (the start-up lines and "one") was pushed out.
				assert.truthy(dumps[1].notes[1]:match("^%-%- %d+ older lines were dropped since the previous dump %-%-$"));
			end);

			it("honours level and dumps natively on SIGWINCH", function ()
				server:command("log debug hidden-debug", "log info shown-info");
				server:signal("WINCH");
				local dumps = dump_files.wait_for(server, "winch.log");
				assert.equal(0, count_matching(dumps[1], "hidden%-debug"));
				assert.equal(1, count_matching(dumps[1], "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d mod_e2e_control\tinfo\tshown%-info$"));
				server:wait_for_log("(SIGWINCH)");
			end);

			it("keeps lines and single triggers across a config reload", function ()
				server:command("log debug before-reload");
				server:signal("HUP");
				server:wait_for_log("Received SIGHUP");
				server:command("log debug after-reload");
				local _, dumps = usr2_dump();
				assert.equal(1, #dumps);
				assert.equal(1, count_matching(dumps[1], "before%-reload"));
				assert.equal(1, count_matching(dumps[1], "after%-reload"));
				server:command("fire e2e/dump");
				assert.equal(2, #dump_files.wait_for(server, "lines.log", 2));
				prosody.sleep(0.3);
				assert.equal(2, #parse_dumps(server:file("lines.log")));
			end);

			it("keeps lines and single triggers when logging is reloaded directly", function ()
				server:command("log debug before-direct", "reload_logging", "log debug after-direct");
				local _, dumps = usr2_dump();
				assert.equal(1, #dumps);
				assert.equal(1, count_matching(dumps[1], "before%-direct"));
				assert.equal(1, count_matching(dumps[1], "after%-direct"));
			end);

			it("shows and dumps every sink from the admin shell", function ()
				server:command("log debug shell-marker");
				local status = server:shell("ringbuffer:status()");
				assert.truthy(status:find("OK: #1: %d+ lines, %d+ bytes buffered"), status);
				assert.truthy(status:find("#3: %d+ lines"), status);
				local usr2_files = ("^usr2%%-%s%%-%%d+%%.log$"):format(server.pid);
				local before = {};
				for _, f in ipairs(server:files(usr2_files)) do before[f] = true; end
				local output = server:shell("ringbuffer:dump()");
				assert.truthy(output:find("OK: Dumping ", 1, true), output);
				assert.equal(3, #dump_files.wait_for(server, "lines.log", 3));
				local name = prosody.wait_for(function ()
					for _, f in ipairs(server:files(usr2_files)) do
						if not before[f] then return f; end
					end
				end, 10, "shell dump");
				assert.equal(1, count_matching(dump_files.wait_for(server, name)[1], "shell%-marker"));
			end);

			it("stops cleanly", function ()
				local output = server:stop();
				assert.falsy(output:find("Segmentation") or output:find("panicked") or output:find("Aborted"), output);
			end);
		end);

		describe("a server with mod_debug_traceback's event and a failing dump", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "debug_traceback/triggered", filename_template = "{paths.data}/traceback-{pid}-{count}.log" };
	{ to = "ringbuffer", event = "e2e/fail", filename_template = "{paths.data}/missing/fail.log" };
}]]);
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			it("writes the dump into the traceback file, before the traceback", function ()
				server:command("log debug before-traceback", "traceback");
				local name = ("traceback-%s-0.log"):format(server.pid);
				local text = prosody.wait_for(function ()
					local t = server:file(name);
					return t and t:find("-- End of traceback --", 1, true) and t;
				end, 10, name);
				local dump_end = text:find("-- End of dump --", 1, true);
				local traceback_start = text:find("-- Traceback generated at", 1, true);
				assert.truthy(dump_end and traceback_start and dump_end < traceback_start, text);
				assert.equal(1, count_matching(parse_dumps(text)[1], "before%-traceback"));
			end);

			it("keeps every line when a dump fails, and says why", function ()
				server:command("log debug keep-me", "fire e2e/fail");
				local expected = ("Unable to open output file: %s/missing/fail.log: No such file or directory"):format(server.data);
				server:wait_for_log(expected);
				os.execute("mkdir " .. server.data .. "/missing");
				server:command("fire e2e/fail");
				local dumps = dump_files.wait_for(server, "missing/fail.log");
				assert.equal(1, count_matching(dumps[1], "keep%-me"));
				assert.equal(1, count_matching(dumps[1], "Unable to open output file"));
			end);
		end);
	end);
end
