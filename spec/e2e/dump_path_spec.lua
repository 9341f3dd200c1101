-- End to end: the dump path's hard cases in real Prosody 0.12 and 13: FIFOs (no reader, a slow
-- reader), Prosody's own stdout and stderr, and shutdown while dumps are in flight.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

local function sh(command)
	assert(os.execute(command), command);
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version, function ()
		describe("a FIFO as the dump target", function ()
			local server, fifo, reader;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 1024*1024, event = "e2e/fifo", filename = "$DATA/fifo" };
	{ to = "ringbuffer", lines = 10, signal = "SIGWINCH", filename = "$DATA/other.log" };
}]]);
				fifo = server.data .. "/fifo";
				sh("mkfifo " .. fifo);
			end);
			teardown(function ()
				-- The reader may still wait for a writer if a test failed early.
				if reader then
					os.execute(("grep -qs %s /proc/%s/cmdline && kill %s"):format(fifo, reader, reader));
				end
				if server then server:cleanup(); end
			end);

			it("with no reader fails at once, naming the path, and keeps the lines", function ()
				server:command("log debug no-reader-line", "fire e2e/fifo");
				server:wait_for_log("Unable to open output file: " .. fifo .. ": no process has this FIFO open for reading");
				server:command("log info main loop still runs");
				server:wait_for_log("main loop still runs");
			end);

			it("with a slow reader is written off the main loop, without holding up other dumps", function ()
				-- The reader opens the FIFO at once but reads only once told to.
				local out, go = server.dir .. "/fifo.out", server.dir .. "/go";
				local pipe = io.popen(("sh -c 'exec 3<%s; while [ ! -e %s ]; do sleep 0.05; done; exec cat <&3 > %s' \z
					> /dev/null 2>&1 & echo $!"):format(fifo, go, out));
				reader = pipe:read("l");
				pipe:close();
				sh(("echo %s >> %s/launched.pid"):format(reader, server.dir)); -- for scripts/run-e2e.sh
				server:command("spam 5000 fifo-line");
				server:wait_for_log("fifo-line done");
				server:command("fire e2e/fifo"); -- ~500 KB: far more than a pipe holds
				server:command("log info still responsive", "log debug other-line");
				server:wait_for_log("still responsive");
				server:signal("WINCH");
				local other = dumps.wait_for(server, "other.log");
				assert.equal(1, dumps.count_matching(other[1], "other%-line"));
				assert.is_nil(prosody.read(out) and prosody.read(out):find("End of dump", 1, true));
				sh("touch " .. go);
				local list = prosody.wait_for(function ()
					local ok, parsed = pcall(dumps.parse, prosody.read(out));
					return ok and #parsed == 1 and parsed;
				end, 10, "the dump through the FIFO");
				-- The lines kept from the failed first attempt come first.
				assert.equal(1, dumps.count_matching(list[1], "no%-reader%-line"));
				assert.equal(5000, dumps.count_matching(list[1], "fifo%-line %d+$"));
			end);
		end);

		describe("Prosody's own stdout and stderr as dump targets", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/stdout", filename = "/dev/stdout" };
	{ to = "ringbuffer", event = "e2e/stderr", filename = "/dev/stderr" };
	{ to = "ringbuffer", event = "e2e/fd1", filename = "/proc/self/fd/1" };
}]]);
			end);
			teardown(function () if server then server:cleanup(); end end);

			it("work, as with the Lua module", function ()
				server:command("log debug std-line", "fire e2e/stdout");
				server:wait_for_log("to /dev/stdout");
				server:command("log debug err-line", "fire e2e/stderr");
				server:wait_for_log("to /dev/stderr");
				server:command("log debug fd-line", "fire e2e/fd1");
				server:wait_for_log("to /proc/self/fd/1");
				local list = dumps.parse(prosody.read(server.dir .. "/stdout"));
				assert.equal(3, #list);
				for i, marker in ipairs({ "std%-line", "err%-line", "fd%-line" }) do
					assert.equal(1, dumps.count_matching(list[i], marker));
				end
			end);
		end);

		describe("shutdown", function ()
			it("finishes a native-signal dump of a 512 MiB ring started just before SIGTERM", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 512*1024*1024, signal = "SIGWINCH", filename = "$DATA/big.log" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("spam 120000 bulk 4000"); -- about 480 MB
				prosody.wait_for(function () return server:log():find("bulk done", 1, true); end, 60, "the ring to fill");
				sh(("kill -WINCH %s; sleep 0.05; kill -TERM %s"):format(server.pid, server.pid));
				prosody.wait_for(function () return not server:alive(); end, 30, "Prosody to stop");
				local output = server:stop();
				assert.falsy(output:find("Segmentation") or output:find("panicked"), output);
				local text = server:file("big.log");
				assert.falsy(text:find("\0", 1, true), "NUL bytes in the dump file");
				local list = dumps.parse(text);
				assert.equal(1, #list);
				assert.equal(120000, dumps.count_matching(list[1], "bulk %d+$"));
				assert.truthy(server:log():find("Dumped %d+ buffered lines to .*big%.log %(SIGWINCH%)"));
			end);

			it("honours a SIGUSR2 sent right before SIGTERM", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 4*1024*1024, signal = "SIGUSR2", filename = "$DATA/last.log" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("spam 20000 last");
				server:wait_for_log("last done");
				sh(("kill -USR2 %s; kill -TERM %s"):format(server.pid, server.pid));
				prosody.wait_for(function () return not server:alive(); end, 30, "Prosody to stop");
				local text = server:file("last.log");
				assert.falsy(text and text:find("\0", 1, true), "NUL bytes in the dump file");
				local list = dumps.parse(text);
				assert.equal(1, #list);
				assert.equal(20000, dumps.count_matching(list[1], "last %d+$"));
			end);
		end);
	end);
end
