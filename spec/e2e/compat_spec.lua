-- End to end, the smoke set every Prosody version gets (0.11 on Lua 5.2, 0.12, 13.0.1, the
-- newest 13.0.x): the module loads and says which files it runs, dumps on a signal, an event
-- and dump_on, survives a storm of reloads with its buffer and one dump per trigger, answers
-- the console's reads, writes a dump of real c2s traffic byte for byte as the upstream
-- algorithm does, and refuses a Lua file of another build. On 0.11, what it cannot offer is
-- said once each in Prosody's log.
local prosody = require "spec.helpers.prosody";
local dump_files = require "spec.helpers.dumps";
local parse_dumps, count_matching = dump_files.parse, dump_files.count_matching;

-- Every line of Prosody's log that contains `text` (plain).
local function log_lines(server, text)
	local found = {};
	for line in prosody.lines(server:log()) do
		if line:find(text, 1, true) then table.insert(found, line); end
	end
	return found;
end

-- Reads from `conn` until `text` arrives or the peer closes; returns what came.
local function read_until(conn, text)
	local got, deadline = "", os.time() + 15;
	while not got:find(text, 1, true) do
		assert(os.time() <= deadline, "no " .. text .. " from Prosody's c2s port; got: " .. got);
		local data, err, partial = conn:receive(4096);
		got = got .. (data or partial or "");
		if err == "closed" then break; end
	end
	return got;
end

-- Real c2s traffic: a client opens a stream, reads the features, sends a stanza before
-- authenticating (Prosody answers with an error), and closes the stream.
local function c2s_traffic(server)
	local socket = require "socket";
	local conn = assert(socket.connect("127.0.0.1", server.c2s_port));
	conn:settimeout(0.2);
	assert(conn:send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
		.. "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"));
	read_until(conn, "</stream:features>");
	assert(conn:send("<iq type='get' id='compat-1' to='localhost'><query xmlns='jabber:iq:version'/></iq>"));
	read_until(conn, "</iq>");
	assert(conn:send("</stream:stream>"));
	read_until(conn, "</stream:stream>");
	conn:close();
end

for _, version in ipairs(prosody.versions()) do
	local release = prosody.release(version);
	local old = version == "0.11";
	describe("in Prosody " .. release, function ()
		local server;
		setup(function ()
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "usr2", signal = "SIGUSR2", filename_template = "{paths.data}/usr2-{pid}-{count}.log" };
	{ to = "ringbuffer", name = "event", size = 1024*1024, event = "e2e/dump", timestamps = false, filename = "$DATA/event.log" };
	{ to = "upstream_reference", event = "e2e/dump", filename = "$DATA/upstream.log" };
	{ to = "ringbuffer", name = "errors", dump_on = "error", dump_cooldown = "0s", timestamps = false,
		filename = "$DATA/dump_on.log" };
}]], "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true",
				{ modules = '"e2e_upstream", "saslauth", ' });
		end);
		teardown(function ()
			if server then server:cleanup(); end
		end);

		it("loads, says once which Lua file and library it runs, and what this Prosody lacks", function ()
			local plugin = prosody.known_versions[version].plugins .. "/mod_log_ringbuffer/";
			local using = log_lines(server, "mod_log_ringbuffer\tinfo\tUsing ");
			assert.equal(1, #using, server:log());
			assert.truthy(using[1]:find(("Using %smod_log_ringbuffer.lua with the native library %slog_ringbuffer_native.so (build ")
				:format(plugin, plugin), 1, true), using[1]);
			assert.truthy(using[1]:match("%(build [%w.]+%+%x+%)$"), using[1]);
			assert.equal(0, #log_lines(server, "mod_log_ringbuffer\terror"));
			local metrics = log_lines(server, "Statistics are unavailable: this Prosody has no module:metric");
			local shell = log_lines(server, "The admin shell (prosodyctl shell) is unavailable: Prosody 0.11.9 has none;");
			assert.equal(old and 1 or 0, #metrics, server:log());
			assert.equal(old and 1 or 0, #shell, server:log());
		end);

		it("dumps on SIGUSR2 and goes on running", function ()
			server:command("log debug before-usr2");
			server:signal("USR2");
			local pattern = ("^usr2%%-%s%%-%%d+%%.log$"):format(server.pid);
			local dumps = prosody.wait_for(function ()
				local files = server:files(pattern);
				local ok, list = pcall(parse_dumps, files[1] and server:file(files[1]));
				return ok and #list > 0 and list;
			end, 10, "the SIGUSR2 dump");
			assert.equal(1, count_matching(dumps[1], "\tdebug\tbefore%-usr2$"));
			server:command("log info still-running");
			assert.truthy(server:alive());
		end);

		it("dumps real c2s traffic on an event, byte for byte as the upstream algorithm", function ()
			server:command("fire e2e/dump"); -- both buffers start empty from here
			dump_files.wait_for(server, "event.log", 1);
			dump_files.wait_for(server, "upstream.log", 1);
			c2s_traffic(server);
			server:command("log debug traffic-done", "fire e2e/dump");
			local ours = dump_files.wait_for(server, "event.log", 2)[2];
			local upstream = dump_files.wait_for(server, "upstream.log", 2)[2];
			assert.truthy(count_matching(ours, "c2s") >= 3, table.concat(ours, "\n"));
			assert.truthy(count_matching(ours, "compat%-1") >= 1, table.concat(ours, "\n"));
			assert.equal(1, count_matching(ours, "\tdebug\ttraffic%-done$"));
			assert.same({}, ours.notes);
			assert.same({ table.unpack(upstream) }, { table.unpack(ours) });
		end);

		it("dumps on dump_on = \"error\"", function ()
			server:command("log debug before-error", "log error compat-error");
			local dumps = dump_files.wait_for(server, "dump_on.log", 1);
			assert.equal(1, count_matching(dumps[1], "\tdebug\tbefore%-error$"));
			assert.equal(1, count_matching(dumps[1], "\terror\tcompat%-error$"));
		end);

		it("answers the console's status, tail, grep and dump", function ()
			server:command("log debug console-one", "log debug console-two");
			local status = server:shell("ringbuffer:status()");
			assert.truthy(status:find("#2 event: %d+ lines"), status);
			local tail = server:shell("ringbuffer:tail(2, { sink = \"event\", source = \"mod_e2e_control\" })");
			assert.truthy(tail:find("console-one", 1, true) and tail:find("console-two", 1, true), tail);
			assert.truthy(tail:find("2 of %d+ matching lines shown"), tail);
			local grep = server:shell("ringbuffer:grep(\"console-t\", { sink = \"event\" })");
			assert.truthy(grep:find("console-two", 1, true) and not grep:find("console-one", 1, true), grep);
			assert.truthy(grep:find("1 of 1 matching lines shown", 1, true), grep);
			-- A copy: written on a native thread, answered when done (0.11's console waits in place).
			local copy = server:shell(("ringbuffer:dump({ sink = \"event\", keep = true, to = %q })"):format(server.data .. "/copy.log"));
			assert.truthy(copy:find("Dumped a copy of %d+ lines to "), copy);
			assert.equal(1, count_matching(dump_files.wait_for(server, "copy.log", 1)[1], "\tdebug\tconsole%-two$"));
		end);

		it("keeps its buffer and one dump per event through a storm of reloads", function ()
			local before = #parse_dumps(server:file("event.log") or "");
			server:command("log debug before-storm");
			local function sighups() return #log_lines(server, "Received SIGHUP"); end
			for round = 1, 4 do
				local seen = sighups();
				server:signal("HUP");
				prosody.wait_for(function () return sighups() > seen; end, 10, "SIGHUP " .. round);
				server:command("reload_logging", "reload_logging");
				if round % 2 == 0 then server:command("reload_module log_ringbuffer"); end
			end
			server:command("log debug after-storm", "fire e2e/dump", "log debug next-dump", "fire e2e/dump");
			local dumps = prosody.wait_for(function ()
				local ok, list = pcall(parse_dumps, server:file("event.log"));
				return ok and #list >= before + 2 and list;
			end, 10, "two dumps after the storm");
			assert.equal(1, count_matching(dumps[before + 1], "\tdebug\tbefore%-storm$"));
			assert.equal(1, count_matching(dumps[before + 1], "\tdebug\tafter%-storm$"));
			assert.equal(1, count_matching(dumps[before + 2], "\tdebug\tnext%-dump$"));
			assert.equal(0, count_matching(dumps[before + 2], "storm"));
			assert.equal(0, #log_lines(server, "mod_log_ringbuffer\terror"));
			assert.equal(0, #log_lines(server, "Error in timer"));
			local status = server:shell("ringbuffer:status()");
			assert.truthy(status:find("#2 event: %d+ lines"), status);
		end);
	end);

	describe("in Prosody " .. release .. " with a Lua file of another build", function ()
		local server, folder;
		setup(function ()
			local tmpdir = os.getenv("TMPDIR");
			folder = io.popen(("mktemp -d '%s/lrb-e2e-plugin-XXXXXX'"):format(tmpdir ~= nil and tmpdir ~= "" and tmpdir or "/tmp"))
				:read("l");
			local installed = prosody.known_versions[version].plugins .. "/mod_log_ringbuffer";
			assert(os.execute(("cp -r '%s' '%s/'"):format(installed, folder)));
			local lua_file = assert(io.open(folder .. "/mod_log_ringbuffer/mod_log_ringbuffer.lua", "a"));
			lua_file:write("-- edited after the build\n");
			lua_file:close();
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", signal = "SIGWINCH", filename = "$DATA/never.log" };
}]], nil, { plugins = folder });
		end);
		teardown(function ()
			if server then server:cleanup(); end
			if folder then os.execute("rm -rf '" .. folder .. "'"); end
		end);

		it("does not load, and names both files in Prosody's log", function ()
			local plugin = folder .. "/mod_log_ringbuffer/";
			server:wait_for_log("come from different builds");
			local refused = log_lines(server, "come from different builds")[1];
			assert.truthy(refused:find(("The Lua file %smod_log_ringbuffer.lua (build "):format(plugin), 1, true), refused);
			assert.truthy(refused:find(("and the native library %slog_ringbuffer_native.so (build "):format(plugin), 1, true), refused);
			local lua_build, library_build = refused:match("%(build ([^)]+)%) and the native library .-%(build ([^)]+)%)");
			assert.truthy(lua_build and library_build and lua_build ~= library_build, refused);
			assert.equal(0, #log_lines(server, "mod_log_ringbuffer\tinfo\tUsing "));
			-- Not half-loaded: no sink of it runs (its native SIGWINCH trigger would dump).
			server:signal("WINCH");
			server:command("log info after-winch");
			assert.is_nil(server:file("never.log"));
			assert.truthy(server:alive());
		end);
	end);
end
