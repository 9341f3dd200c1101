-- End to end: bad config, hostile dump files, signal storms and the process lifecycle, in real
-- Prosody 0.12 and 13.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

local function mode_of(path)
	return io.popen("stat -c %a " .. path):read("l");
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version, function ()
		describe("a server with bad ringbuffer options", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 0 };
	{ to = "ringbuffer", size = -1 };
	{ to = "ringbuffer", size = "big" };
	{ to = "ringbuffer", size = 2^62 };
	{ to = "ringbuffer", lines = 0 };
	{ to = "ringbuffer", lines = 1.5 };
	{ to = "ringbuffer", filename = 42 };
	{ to = "ringbuffer", filename_template = {} };
	{ to = "ringbuffer", signal = "SIGFOO" };
	{ to = "ringbuffer", signal = "USR2" };
	{ to = "ringbuffer", signal = 9 };
	{ to = "ringbuffer", event = "" };
	{ to = "ringbuffer", timestamps = 5 };
	{ to = "ringbuffer", colour = "blue" };
	"*ringbuffer";
	{ to = "ringbuffer", lines = 10, event = "e2e/good", filename = "$DATA/good.log" };
}]]);
			end);
			teardown(function () if server then server:cleanup(); end end);

			it("names each bad option, its value and what is accepted, and keeps running", function ()
				for _, expected in ipairs({
					"Invalid value for option 'size': 0; expected a whole number of bytes",
					"Invalid value for option 'size': -1;",
					"Invalid value for option 'size': \"big\";",
					"Invalid value for option 'size': 4.6116860184274e+18;",
					"Invalid value for option 'lines': 0; expected a whole number from 1",
					"Invalid value for option 'lines': 1.5;",
					"Invalid value for option 'filename': 42; expected a file name",
					"Invalid value for option 'filename_template': a table; expected a file name",
					"Invalid value for option 'signal': \"SIGFOO\"; expected a signal name",
					"Invalid value for option 'signal': \"USR2\";",
					"Invalid value for option 'signal': 9;",
					"Invalid value for option 'event': \"\"; expected the name of a Prosody global event",
					"Invalid value for option 'timestamps': 5; expected true, false or an os.date format",
					"Unknown option 'colour' ignored",
					"nothing will dump it",
				}) do
					server:wait_for_log(expected);
				end
				assert.truthy(server:alive());
			end);

			it("keeps every other sink working", function ()
				server:command("log debug good-sink-line", "fire e2e/good");
				local list = dumps.wait_for(server, "good.log");
				assert.equal(1, dumps.count_matching(list[1], "good%-sink%-line"));
				assert.truthy(server:log():find("e2e started", 1, true));
			end);
		end);

		describe("dump files", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/new", filename = "$DATA/new.log" };
	{ to = "ringbuffer", event = "e2e/existing", filename = "$DATA/existing.log" };
	{ to = "ringbuffer", event = "e2e/link", filename = "$DATA/link.log" };
	{ to = "ringbuffer", event = "e2e/full", filename = "/dev/full" };
	{ to = "ringbuffer", event = "e2e/dir", filename = "$DATA" };
}]], nil, { umask = "000" });
			end);
			teardown(function () if server then server:cleanup(); end end);

			it("creates new files with mode 0600 whatever the umask, and keeps an existing file's mode", function ()
				os.execute(("echo kept > %s/existing.log && chmod 644 %s/existing.log"):format(server.data, server.data));
				server:command("log debug mode-line", "fire e2e/new", "fire e2e/existing");
				dumps.wait_for(server, "new.log");
				dumps.wait_for(server, "existing.log");
				assert.equal("600", mode_of(server.data .. "/new.log"));
				assert.equal("644", mode_of(server.data .. "/existing.log"));
				assert.equal("kept\n", server:file("existing.log"):sub(1, 5));
			end);

			it("gives an existing empty file (as prosodyctl leaves it) mode 0600", function ()
				os.execute(("rm -f %s/new.log && touch %s/new.log && chmod 644 %s/new.log"):format(server.data, server.data,
					server.data));
				server:command("log debug empty-line", "fire e2e/new");
				assert.equal(1, dumps.count_matching(dumps.wait_for(server, "new.log")[1], "empty%-line"));
				assert.equal("600", mode_of(server.data .. "/new.log"));
			end);

			it("refuses to follow a symlink and keeps the lines", function ()
				os.execute(("ln -s %s/target.log %s/link.log"):format(server.data, server.data));
				server:command("log debug link-line", "fire e2e/link");
				server:wait_for_log("Unable to open output file: " .. server.data .. "/link.log: Too many levels of symbolic links");
				assert.is_nil(server:file("target.log"));
				os.remove(server.data .. "/link.log");
				server:command("fire e2e/link");
				assert.equal(1, dumps.count_matching(dumps.wait_for(server, "link.log")[1], "link%-line"));
			end);

			it("reports a file it may not write, keeps the lines and recovers", function ()
				local path = server.data .. "/existing.log";
				if not os.execute("chattr +i " .. path .. " 2>/dev/null") then
					return pending("chattr +i is not supported here");
				end
				server:command("log debug denied-line", "fire e2e/existing");
				server:wait_for_log("Unable to open output file: " .. path .. ": Operation not permitted");
				os.execute("chattr -i " .. path);
				server:command("fire e2e/existing");
				local list = dumps.wait_for(server, "existing.log", 2);
				assert.equal(1, dumps.count_matching(list[2], "denied%-line"));
			end);

			it("reports a full disk with the path and reason, and keeps the lines", function ()
				server:command("log debug full-line", "fire e2e/full");
				server:wait_for_log("Unable to write dump: /dev/full: No space left on device");
				server:wait_for_log("the lines are kept for the next dump");
			end);

			it("reports a directory in the way", function ()
				server:command("fire e2e/dir");
				server:wait_for_log("Unable to open output file: " .. server.data .. ": Is a directory");
				assert.truthy(server:alive());
			end);
		end);

		describe("failing dumps", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/sub", filename_template = "{paths.data}/sub/x.log" };
	{ to = "ringbuffer", event = "e2e/full", filename = "/dev/full" };
}]]);
			end);
			teardown(function () if server then server:cleanup(); end end);

			local function module_status()
				return server:shell("module:info('log_ringbuffer')"):match("status: (%[%a+%] [^\n]*)");
			end

			it("show in Prosody's module status until dumps work again, and in ringbuffer:status()", function ()
				server:command("log debug sub-line", "fire e2e/sub");
				prosody.wait_for(function ()
					return (module_status() or ""):find("[error] Dumps of ringbuffer sink #1 are failing: Unable to open output file: "
						.. server.data .. "/sub/x.log: No such file or directory", 1, true);
				end, 10, "the error status");
				assert(os.execute("mkdir " .. server.data .. "/sub"));
				server:command("fire e2e/sub");
				prosody.wait_for(function () return module_status() == "[info] Dumps are working again"; end, 10, "the status to clear");
				server:command("fire e2e/full");
				prosody.wait_for(function ()
					return (module_status() or ""):find("[error] Dumps of ringbuffer sink #2 are failing: Unable to write dump: /dev/full", 1, true);
				end, 10, "the error status");
				local status = server:shell("ringbuffer:status()");
				assert.truthy(status:find("#1: %d+ lines, %d+ bytes buffered %(size = 102400%), 0 dropped since the last dump"), status);
				assert.truthy(status:find("dumps: 1 done, 1 failed; last to " .. server.data .. "/sub/x.log: ok", 1, true), status);
				assert.truthy(status:find("#2: %d+ lines, %d+ bytes buffered %(size = 102400%)"), status);
				assert.truthy(status:find("dumps: 0 done, 1 failed; last to /dev/full: Unable to write dump", 1, true), status);
				assert.truthy(status:find("triggers: event e2e/full, dump_on_crash", 1, true), status);
			end);
		end);

		describe("a signal storm while logging at full speed", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 256*1024, signal = "SIGUSR2", filename_template = "{paths.data}/storm.log" };
	{ to = "ringbuffer", lines = 2000, signal = "SIGWINCH", timestamps = false, filename_template = "{paths.data}/storm.log" };
}]]);
			end);
			teardown(function () if server then server:cleanup(); end end);

			it("gives whole, separate dumps, nothing twice, no crash", function ()
				server:command("spam 100000 storm");
				os.execute(("for i in $(seq 200); do kill -USR2 %s; kill -WINCH %s; done"):format(server.pid, server.pid));
				server:wait_for_log("storm done");
				-- Settled: the file holds whole dumps only, one for each outcome logged so far
				-- (the storm's last dumps may still be running).
				local function settled()
					local ok, list = pcall(dumps.parse, server:file("storm.log") or "");
					local _, logged = server:log():gsub("Dumped %d+ buffered lines to [^\n]*storm%.log", "");
					return ok and #list == logged and list;
				end
				local before = #prosody.wait_for(settled, 30, "the storm's dumps to be written");
				-- One last dump from each sink, each with a line in it.
				server:command("log debug last-line");
				server:signal("USR2");
				server:signal("WINCH");
				local list = prosody.wait_for(function ()
					local list = settled();
					return list and #list >= before + 2 and list;
				end, 30, "the last two dumps");
				assert.truthy(server:alive());
				assert.truthy(#list >= 4, #list);
				-- Each sink saw every line once, so no line repeats among one sink's dumps
				-- (the SIGWINCH sink is the one without timestamps).
				local seen = { stamped = {}, plain = {} };
				for _, dump in ipairs(list) do
					for _, line in ipairs(dump) do
						local stamped = line:match(dumps.stamp_pattern);
						local rest = stamped and line:sub(17) or line;
						assert.truthy(rest:match("^[^\t]+\t%a+\t"), line);
						local n = rest:match("\tstorm (%d+)$");
						if n then
							local set = stamped and seen.stamped or seen.plain;
							assert.is_nil(set[n], "line logged twice: " .. line);
							set[n] = true;
						end
					end
				end
			end);
		end);

		describe("module reload and unload", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", signal = "SIGWINCH", filename_template = "{paths.data}/reload-{count}.log" };
}]]);
			end);
			teardown(function () if server then server:cleanup(); end end);

			local function dump_files() return #server:files("^reload%-"); end

			it("keeps lines and single triggers across reloads, without new threads", function ()
				server:command("log debug warm-up", "fire e2e/dump");
				prosody.wait_for(function () return dump_files() == 1; end, 10, "first dump");
				local threads = server:thread_count();
				server:command("log debug before-reloads");
				for _ = 1, 3 do server:command("reload_module log_ringbuffer"); end
				server:command("fire e2e/dump");
				local list = prosody.wait_for(function ()
					return dump_files() == 2 and dumps.wait_for(server, server:files("^reload%-")[2]);
				end, 10, "dump after reloads");
				assert.equal(1, #list);
				assert.equal(1, dumps.count_matching(list[1], "before%-reloads"));
				server:signal("WINCH");
				prosody.wait_for(function () return dump_files() == 3; end, 10, "native dump after reloads");
				prosody.sleep(0.3);
				assert.equal(3, dump_files());
				assert.equal(threads, server:thread_count());
			end);

			it("stops dumping when unloaded and works again when loaded", function ()
				server:command("unload_module log_ringbuffer", "log debug while-unloaded", "fire e2e/dump");
				server:signal("WINCH");
				prosody.sleep(0.5);
				assert.equal(3, dump_files());
				server:command("load_module log_ringbuffer", "log debug after-load", "fire e2e/dump");
				prosody.wait_for(function () return dump_files() == 4; end, 10, "dump after load");
				prosody.sleep(0.3);
				assert.equal(4, dump_files());
				server:signal("WINCH");
				prosody.wait_for(function () return dump_files() == 5; end, 10, "native dump after load");
				assert.truthy(server:alive());
			end);
		end);
	end);
end

describe("Prosody 0.12 started with -D (daemonized after modules load)", function ()
	local server;
	setup(function ()
		server = prosody.start("0.12", [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", signal = "SIGWINCH", filename = "$DATA/daemon.log" };
}]], nil, { daemonize = true });
	end);
	teardown(function () if server then server:cleanup(); end end);

	it("still dumps on a native signal in the daemon", function ()
		server:wait_for_log("Successfully daemonized");
		server:command("log debug in-daemon");
		-- The native signal thread is started again in the daemon within a second of the fork;
		-- a signal before that is not seen. So: signal until a dump comes.
		local list = prosody.wait_for(function ()
			server:signal("WINCH");
			local ok, list = pcall(dumps.parse, server:file("daemon.log") or "");
			return ok and #list >= 1 and list;
		end, 15, "a dump on SIGWINCH in the daemon");
		assert.equal(1, dumps.count_matching(list[1], "in%-daemon"));
		server:stop();
	end);
end);
