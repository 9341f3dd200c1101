-- End to end: ringbuffer:follow in a real `prosodyctl shell` (Prosody 0.12 and 13; on 13 also
-- its command-line form `prosodyctl shell ringbuffer follow --level info ...`). A marker line
-- logged after the follow started reaches the shell within 0.5 s; the filter (level and
-- pattern) leaves the other lines out; Ctrl-C (a real SIGINT to prosodyctl) ends the follower:
-- its thread is gone and ringbuffer:status() counts none. A real admin-socket client that sends
-- follow and never reads (a stuck shell) keeps Prosody's memory bounded over 100,000 matching
-- lines, and once it reads it is told how many lines were skipped, after whole messages whose
-- lines came in the order logged (batches are written straight to the shell's socket while
-- Prosody has nothing waiting for it, and through Prosody once the socket is full).
local prosody = require "spec.helpers.prosody";
local socket = require "socket";

local loadgen = "bench/loadgen/target/release/bench-loadgen";

local started, shells = 0, {};
-- Runs prosodyctl shell with `args` in the background, its output line-buffered into a file;
-- its PID is recorded for scripts/run-e2e.sh's cleanup. (A background job ignores SIGINT: it is
-- set back to what a terminal's Ctrl-C meets.)
local function start_shell(server, args)
	started = started + 1;
	local out, pidfile = ("%s/follow-%d.out"):format(server.dir, started), ("%s/follow-%d.pid"):format(server.dir, started);
	local ctl = prosody.known_versions[server.version].ctl;
	local script = ("%s/follow-%d.sh"):format(server.dir, started);
	local f = assert(io.open(script, "w"));
	f:write(("echo $$ > %s; echo $$ >> %s/launched.pid; exec env --default-signal=INT stdbuf -oL %s --config %s shell %s\n")
		:format(pidfile, server.dir, ctl, server.config, args));
	f:close();
	assert(os.execute(("cd %s && sh %s > %s 2>&1 &"):format(server.dir, script, out)));
	local pid = prosody.wait_for(function () return (prosody.read(pidfile) or ""):match("%d+"); end, 10, "prosodyctl to start");
	local shell = { pid = pid, out = out };
	table.insert(shells, shell);
	function shell.output() return prosody.read(out) or ""; end
	-- (A zombie left for a non-reaping init counts as gone.)
	function shell.alive()
		local status = prosody.read("/proc/" .. pid .. "/status");
		return status ~= nil and not status:match("\nState:%s*Z");
	end
	-- Ctrl-C, as often as it takes (the Lua interpreter running prosodyctl takes the first one
	-- for a Lua error that the running command may never see; the second one ends it).
	function shell.interrupt()
		for presses = 1, 3 do
			assert(os.execute("kill -INT " .. pid));
			local deadline = socket.gettime() + 2;
			while shell.alive() and socket.gettime() < deadline do socket.sleep(0.02); end
			if not shell.alive() then return presses; end
		end
		error("prosodyctl did not end on Ctrl-C");
	end
	prosody.wait_for(function () return shell.output():find("Following ringbuffer sink main", 1, true); end, 20,
		"the follow to start (" .. out .. ")");
	return shell;
end

local function followers(server)
	local status = server:shell("ringbuffer:status()");
	assert(status:find("OK:", 1, true), status);
	return tonumber(status:match("(%d+) followers %(ringbuffer:follow%) running")) or 0;
end

-- Logs three markers one by one (see mod_e2e_follow); each must reach the shell within 0.5 s.
-- Returns the latencies seen, in seconds.
local function markers_reach(server, shell)
	local latencies = {};
	local _, before = shell.output():gsub("follow%-marker %d+ at", "");
	for i = 1, 3 do
		server:command("fire e2e_follow/marker");
		local logged, seen;
		local deadline = socket.gettime() + 20;
		repeat
			local n = 0;
			for at in shell.output():gmatch("follow%-marker %d+ at ([%d.]+)") do
				n = n + 1;
				if n == before + i then logged = tonumber(at); end
			end
			seen = socket.gettime();
			if not logged then socket.sleep(0.01); end
		until logged or seen > deadline;
		assert(logged, "marker " .. i .. " never reached the shell:\n" .. shell.output());
		table.insert(latencies, seen - logged);
	end
	return latencies;
end

local function rss_kib(server)
	local status = assert(prosody.read("/proc/" .. server.pid .. "/status"));
	return tonumber(status:match("VmRSS:%s*(%d+)"));
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", ringbuffer:follow", function ()
		local server, threads;
		setup(function ()
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", size = 4194304, filename = "$DATA/main.log" };
}]], ([[
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
modules_enabled = { %s"log_ringbuffer", "e2e_control", "admin_shell", "roster", "saslauth", "ping" }
]]):format(version == "0.12" and '"posix", ' or ""));
			server:command("load_module e2e_follow", "spam 20000 fill 200");
			server:wait_for_log("fill done");
			threads = server:thread_count();
		end);
		teardown(function ()
			for _, shell in ipairs(shells) do
				if shell.alive() then os.execute("kill -KILL " .. shell.pid); end
			end
			if server then server:cleanup(); end
		end);

		local function shows_markers_obeys_the_filter_and_ends(args)
			local shell = start_shell(server, args);
			assert.equal(1, followers(server));
			local latencies = markers_reach(server, shell);
			print(("follow (%s): marker latencies %s s"):format(version, table.concat(latencies, ", ")));
			for _, latency in ipairs(latencies) do
				assert.is_true(latency < 0.5, ("a marker took %.3f s"):format(latency));
			end
			local output = shell.output();
			assert.falsy(output:find("left out", 1, true), output);
			assert.falsy(output:find("fill", 1, true), output);
			print(("follow (%s): prosodyctl ended after %d Ctrl-C"):format(version, shell.interrupt()));
			prosody.wait_for(function () return followers(server) == 0; end, 10, "the follower to end");
			prosody.wait_for(function () return server:thread_count() == threads; end, 10, "its thread to end");
		end

		it("shows new matching lines within 0.5 s, obeys its filter and ends on Ctrl-C", function ()
			shows_markers_obeys_the_filter_and_ends([['ringbuffer:follow({ level = "info", pattern = "follow-marker \\d+ at", backlog = 0 })']]);
		end);

		-- What util.stanza escapes (markup), and what it refuses or the shell's XML parser cannot
		-- take: a control character and invalid UTF-8, here in a sink's `timestamps` format (in a
		-- message, util.format makes them safe). The line shows as the ring holds it; the
		-- follower and the shell's connection go on.
		it("shows a line with markup, a control character and invalid UTF-8, and goes on", function ()
			local odd = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", size = 1048576, timestamps = "%H:%M:%S \1\255 " };
}]], ([[
modules_enabled = { %s"log_ringbuffer", "e2e_control", "admin_shell" }
]]):format(version == "0.12" and '"posix", ' or ""));
			local ok, err = pcall(function ()
				odd:command("load_module e2e_follow");
				local shell = start_shell(odd, [['ringbuffer:follow({ pattern = "odd-marker|follow-marker \\d+ at", backlog = 0 })']]);
				odd:command("fire e2e_follow/odd");
				markers_reach(odd, shell);
				local output = shell.output();
				local line = output:match("[^\n]*odd%-marker[^\n]*");
				print(("follow (%s): %q"):format(version, tostring(line)));
				-- (The sink's timestamps already show the control character as its picture, U+2401,
				-- and the invalid byte as U+FFFD.)
				assert.truthy(line and line:find(" \u{2401}\u{FFFD}  mod_e2e_follow\tinfo\todd%-marker <b> & 'q' \"dq\" end$"), output);
				shell.interrupt();
				prosody.wait_for(function () return followers(odd) == 0; end, 10, "the follower to end");
			end);
			odd:cleanup();
			assert(ok, err);
		end);

		if version ~= "0.12" then
			it("works in the command-line form", function ()
				shows_markers_obeys_the_filter_and_ends("ringbuffer follow --level info --pattern 'follow-marker \\d+ at' --backlog 0");
			end);
		end

		it("with jid, follows the sessions of that account that log in, and no other's", function ()
			assert(os.execute("cargo build --release --quiet --offline --manifest-path bench/loadgen/Cargo.toml"));
			for _, user in ipairs({ "u0", "u1" }) do
				local output, code = server:ctl("register", user, "localhost", "bench");
				assert(code == 0, output);
			end
			local shell = start_shell(server, [['ringbuffer:follow({ jid = "u0@localhost", backlog = 0 })']]);
			-- Two real c2s clients, u0 ("Alice") and u1 ("Bob"), log in, exchange messages and leave.
			local pipe = io.popen(("%s --port %d --clients 2 --messages 20 --warmup 2 --server-pid %s --timeout 60 2>&1")
				:format(loadgen, server.c2s_port, server.pid));
			local result = pipe:read("a");
			pipe:close();
			assert(result:find("result ", 1, true), result);
			local function session_of(user)
				local output = server:shell(([[ringbuffer:grep("Authenticated as %s@localhost", { sink = "main" })]]):format(user));
				return output:match("%S+ %S+ %S+ (c2s%x+)\t[^\t]*\tAuthenticated as");
			end
			local alice, bob = assert(session_of("u0")), assert(session_of("u1"));
			local function sources()
				local found = {};
				for source in shell.output():gmatch("\n%S+ %S+ %S+ ([^\t\n]+)\t") do found[source] = true; end
				return found;
			end
			prosody.wait_for(function ()
				return shell.output():find(alice .. "\tinfo\tClient disconnected", 1, true);
			end, 10, "Alice's last line in the follow");
			for source in pairs(sources()) do
				assert.truthy(source == alice or source:match("^conn"), source .. " in:\n" .. shell.output());
			end
			assert.is_nil(sources()[bob]);
			shell.interrupt();
			prosody.wait_for(function () return followers(server) == 0; end, 10, "the follower to end");
		end);

		it("says why it refuses bad arguments, and a bad pattern ends it", function ()
			local output = server:shell([[ringbuffer:follow({ backlog = -1 })]]);
			assert.truthy(output:find("backlog must be a whole number from 0 to 10000", 1, true), output);
			output = server:shell([[ringbuffer:follow({ colour = "red" })]]);
			assert.truthy(output:find('Unknown filter field "colour"', 1, true), output);
			output = server:shell([[ringbuffer:follow({ sink = "nope" })]]);
			assert.truthy(output:find('There is no ringbuffer sink "nope"', 1, true), output);
			output = server:shell([[ringbuffer:follow({ pattern = "(unclosed" })]]);
			assert.truthy(output:find("invalid regular expression: regex parse error:", 1, true), output);
			prosody.wait_for(function () return followers(server) == 0; end, 10, "the follower to end");
		end);

		it("keeps memory bounded for a shell that never reads, and tells it what was skipped", function ()
			local unix = require "socket.unix";
			local client = assert((unix.stream or unix)());
			assert(client:connect(server.data .. "/prosody.sock"));
			assert(client:send("<stream:stream xmlns='xmpp:prosody.im/admin' xmlns:stream='http://etherx.jabber.org/streams'>"
				.. "<repl-input>ringbuffer:follow({ pattern = \"stuck\" })</repl-input>"));
			prosody.wait_for(function () return followers(server) == 1; end, 10, "the follower to start");
			server:command("collect");
			local before = rss_kib(server);
			server:command("spam 100000 stuck 400");
			server:wait_for_log("stuck done");
			server:command("collect");
			local grown = rss_kib(server) - before;
			print(("follow (%s): RSS grew %d KiB over 100,000 lines (45 MB) a stuck shell never read"):format(version, grown));
			assert.is_true(grown < 16 * 1024, ("RSS grew %d KiB"):format(grown));
			-- It reads now: the lines it could not take are counted, and the lines kept follow.
			client:settimeout(10);
			local received = {};
			local deadline = socket.gettime() + 30;
			local text, skipped, lines;
			repeat
				local data, err, partial = client:receive(65536);
				table.insert(received, data or partial or "");
				assert(data or (partial and partial ~= ""), err);
				-- (Reading the whole text again is fine: it stays a few MB.)
				text = table.concat(received);
				skipped = text:match("… (%d+) lines skipped: the shell could not keep up");
				lines = select(2, text:gsub(" stuck %d+", ""));
			until (skipped and lines >= 200) or socket.gettime() > deadline;
			assert.is_true(tonumber(skipped) > 0);
			-- What it got is whole messages, their lines in the order logged: the batches written
			-- straight to the socket and those Prosody sent once the socket was full never mix.
			local whole = text:match("^(.*</repl%-output>)");
			local stream_head, messages = whole:gsub("<repl%-output>[^<]*</repl%-output>", "");
			assert.is_nil(stream_head:find("repl", 1, true) or stream_head:find("stuck", 1, true), stream_head);
			local last, seen = 0, 0;
			for i in whole:gmatch(" stuck (%d+)") do
				assert.is_true(tonumber(i) > last, ("line %d after line %d"):format(i, last));
				last, seen = tonumber(i), seen + 1;
			end
			assert.is_true(seen >= 200 and messages > 10, ("%d lines in %d messages"):format(seen, messages));
			-- Then it reads slowly (4 KiB every 5 ms) while more lines come (for 4 s): the socket
			-- and Prosody's buffer for it fill and drain in turn, and the lines still come in order.
			server:command("spam 200000 stuckslow 400");
			client:settimeout(0.05);
			received = {};
			deadline = socket.gettime() + 30;
			local slowly;
			repeat
				for _ = 1, 50 do
					local data, err, partial = client:receive(4096);
					table.insert(received, data or partial or "");
					assert(err ~= "closed", "the connection closed");
					socket.sleep(0.005);
				end
				slowly = table.concat(received);
			until select(2, slowly:gsub(" stuckslow %d+", "")) >= 300 or socket.gettime() > deadline;
			last, seen = 0, 0;
			for i in slowly:gmatch(" stuckslow (%d+)") do
				assert.is_true(tonumber(i) > last, ("line %d after line %d"):format(i, last));
				last, seen = tonumber(i), seen + 1;
			end
			assert.is_true(seen >= 300, seen .. " lines read slowly");
			server:wait_for_log("stuckslow done");
			client:close();
			prosody.wait_for(function () return followers(server) == 0; end, 10, "the follower to end");
			prosody.wait_for(function () return server:thread_count() == threads; end, 10, "its thread to end");
		end);
	end);
end
