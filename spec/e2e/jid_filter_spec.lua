-- End to end: the `jid` filter of tail, grep and dump copies, in real Prosody 0.12 and 13, with
-- real c2s clients: the project's load generator (bench/loadgen) logs u0 ("Alice") and u1
-- ("Bob") in for real (SASL PLAIN, resource binding, presence), they exchange messages and
-- disconnect. Then `jid = "u0@localhost"` holds every line of u0's session, from its first
-- line (before authentication) to its last, and none of u1's. A bare domain selects the s2s
-- sessions with it: a real outgoing s2s session the shell's xmpp:ping starts, and a real
-- incoming one, authenticated with SASL EXTERNAL and a client certificate of a CA the server
-- trusts (spec/helpers/s2s_peer.py: no DNS, no fixed port).
local prosody = require "spec.helpers.prosody";

local loadgen = "bench/loadgen/target/release/bench-loadgen";

-- The printed log lines of a shell answer, as { source =, message = }.
local function lines_of(output)
	local found = {};
	for line in output:gmatch("[^\n]+") do
		local source, message = line:match("^%S+ %S+ %S+ ([^\t]+)\t[^\t]*\t(.*)$");
		if source then table.insert(found, { source = source, message = message }); end
	end
	return found;
end

-- The c2s session source whose lines say it authenticated as `user` (from the debug log file:
-- what the test checks against, not how the module knows).
local function session_of(server, user)
	local log = prosody.read(server.dir .. "/debug.log") or "";
	return log:match("%S+ %S+ %S+ (c2s%x+)\t[^\t]*\tAuthenticated as " .. user .. "@localhost");
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", the jid filter", function ()
		local server, alice, bob;
		setup(function ()
			assert(os.execute("cargo build --release --quiet --offline --manifest-path bench/loadgen/Cargo.toml"));
			server = prosody.start(version, [[{
	{ levels = { min = "debug" }, to = "file", filename = "$DIR/debug.log" };
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", lines = 20000, filename = "$DATA/main.log" };
}]], ([[
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
modules_enabled = { %s"log_ringbuffer", "e2e_control", "admin_shell", "roster", "saslauth", "ping" }
]]):format(version == "0.12" and '"posix", ' or ""));
			for _, user in ipairs({ "u0", "u1" }) do
				local output, code = server:ctl("register", user, "localhost", "bench");
				assert(code == 0, output);
			end
			local pipe = io.popen(("%s --port %d --clients 2 --messages 20 --warmup 2 --server-pid %s --timeout 60 2>&1")
				:format(loadgen, server.c2s_port, server.pid));
			local result = pipe:read("a");
			pipe:close();
			assert(result:find("result ", 1, true), result);
			alice = prosody.wait_for(function () return session_of(server, "u0"); end, 10, "u0's session in the log");
			bob = prosody.wait_for(function () return session_of(server, "u1"); end, 10, "u1's session in the log");
			-- Both disconnected: their sessions' last lines are logged.
			prosody.wait_for(function ()
				local log = prosody.read(server.dir .. "/debug.log") or "";
				return log:find(alice .. "\tinfo\tClient disconnected") and log:find(bob .. "\tinfo\tClient disconnected");
			end, 10, "both sessions to end");
		end);
		teardown(function ()
			if server then server:cleanup(); end
		end);

		it("holds every line of Alice's session, from before authentication, and none of Bob's", function ()
			local output = server:shell([[ringbuffer:tail(10000, { sink = "main", jid = "u0@localhost" })]]);
			local found = lines_of(output);
			assert.is_true(#found > 0, output);
			local sources, alice_lines = {}, 0;
			for _, line in ipairs(found) do
				sources[line.source] = true;
				assert.are_not.equal(bob, line.source);
				if line.source == alice then alice_lines = alice_lines + 1; end
			end
			-- All of Alice's session's lines in the buffer, the first one (before authentication) and
			-- the last (after she disconnected) among them.
			local all = lines_of(server:shell(([[ringbuffer:tail(10000, { sink = "main", source = %q })]]):format(alice)));
			assert.equal(#all, alice_lines);
			assert.equal(all[1].message, found[1].source == alice and found[1].message or all[1].message);
			local first_seen;
			for _, line in ipairs(found) do
				if line.source == alice then first_seen = first_seen or line.message; end
			end
			assert.equal(all[1].message, first_seen);
			assert.truthy(all[#all].message:find("Client disconnected", 1, true), all[#all].message);
			assert.equal("Client connected", all[1].message); -- before authentication
			-- Lines of no other c2s session.
			for source in pairs(sources) do
				assert.truthy(source == alice or source:match("^conn"), source);
			end
			-- A full JID selects that resource's session; an unknown one nothing.
			local full = lines_of(server:shell([[ringbuffer:tail(10000, { sink = "main", jid = "u0@localhost/bench" })]]));
			assert.equal(#found, #full);
			local none = server:shell([[ringbuffer:tail(10, { sink = "main", jid = "nobody@localhost" })]]);
			assert.truthy(none:find("OK: 0 of 0 matching lines shown", 1, true), none);
		end);

		it("selects the same lines in grep and in a dump copy", function ()
			local grep = lines_of(server:shell([[ringbuffer:grep(".", { sink = "main", jid = "u1@localhost", limit = 10000 })]]));
			for _, line in ipairs(grep) do
				assert.truthy(line.source == bob or line.source:match("^conn"), line.source);
			end
			local to = server.data .. "/bob.log";
			local output = server:shell(([[ringbuffer:dump({ sink = "main", jid = "u1@localhost", to = %q })]]):format(to));
			assert.truthy(output:find("OK: Dumped a copy of " .. #grep .. " lines", 1, true), output);
			local text = assert(io.open(to)):read("a");
			assert.falsy(text:find(alice, 1, true));
			assert.truthy(text:find(bob, 1, true));
		end);

		it("selects the s2s sessions to a remote domain, also after they ended", function ()
			-- A remote domain that is an IP address, where nothing listens: Prosody connects
			-- without DNS, is refused, and the outgoing session ends at once.
			local remote = ("127.%d.%d.%d"):format(math.random(1, 254), math.random(1, 254), math.random(2, 254));
			server:shell(("xmpp:ping(\"localhost\", %q, 5)"):format(remote));
			local s2s = prosody.wait_for(function ()
				local log = prosody.read(server.dir .. "/debug.log") or "";
				return log:find(remote, 1, true) and log:match("%S+ %S+ %S+ (s2sout%x+)\t[^\t]*\t[^\n]*" .. remote:gsub("%.", "%%."));
			end, 20, "an s2s session to " .. remote);
			prosody.wait_for(function ()
				return (prosody.read(server.dir .. "/debug.log") or ""):find("Destroying outgoing session localhost->" .. remote, 1, true);
			end, 20, "the s2s session to end");
			local found = lines_of(server:shell(([[ringbuffer:tail(10000, { sink = "main", jid = %q })]]):format(remote)));
			local all = lines_of(server:shell(([[ringbuffer:tail(10000, { sink = "main", source = %q })]]):format(s2s)));
			assert.is_true(#all > 0);
			local of_session = 0;
			for _, line in ipairs(found) do
				assert.truthy(line.source == s2s or line.source:match("^conn"), line.source);
				if line.source == s2s then of_session = of_session + 1; end
			end
			assert.equal(#all, of_session);
		end);
	end);
end

-- Certificates for the incoming s2s session, made in `dir`: a test CA, the server's own
-- (self-signed, for localhost) and the remote domain's, of that CA.
local function make_certificates(dir, remote)
	local script = ([[set -e
cd '%s'
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=lrb test CA' -keyout ca.key -out ca.pem
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=localhost' -addext subjectAltName=DNS:localhost \
	-keyout localhost.key -out localhost.crt
openssl req -newkey rsa:2048 -nodes -subj '/CN=%s' -keyout remote.key -out remote.csr
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' > remote.ext
openssl x509 -req -days 2 -in remote.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile remote.ext -out remote.pem
]]):format(dir, remote, remote);
	local f = assert(io.open(dir .. "/make.sh", "w"));
	f:write(script);
	f:close();
	assert(os.execute(("sh '%s/make.sh' > '%s/openssl.log' 2>&1"):format(dir, dir)), prosody.read(dir .. "/openssl.log"));
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", the jid filter of a remote domain", function ()
		local server, certs;
		local remote = "remote.test";
		setup(function ()
			certs = io.popen(("mktemp -d '%s/lrb-certs-XXXXXX'"):format(os.getenv("TMPDIR") or "/tmp")):read("l");
			make_certificates(certs, remote);
			server = prosody.start(version, [[{
	{ levels = { min = "debug" }, to = "file", filename = "$DIR/debug.log" };
	{ to = "ringbuffer", name = "main", lines = 20000, filename = "$DATA/main.log" };
}]], ([[
ssl = { certificate = "%s/localhost.crt", key = "%s/localhost.key", cafile = "%s/ca.pem" }
modules_enabled = { %s"log_ringbuffer", "e2e_control", "admin_shell", "tls", "saslauth", "dialback" }
]]):format(certs, certs, certs, version == "0.12" and '"posix", ' or ""));
		end);
		teardown(function ()
			if server then server:cleanup(); end
			if certs then os.execute(("rm -rf '%s'"):format(certs)); end
		end);

		it("selects an incoming s2s session from it, from its first line, also after it ended", function ()
			local peer = io.popen(("python3 spec/helpers/s2s_peer.py %d %s localhost %s/remote.pem %s/remote.key 2>&1")
				:format(server.s2s_port, remote, certs, certs));
			local said = peer:read("a");
			peer:close();
			assert.truthy(said:find("established", 1, true), said);
			local s2s = prosody.wait_for(function ()
				local log = prosody.read(server.dir .. "/debug.log") or "";
				return log:match("%S+ %S+ %S+ (s2sin%x+)\t[^\t]*\tIncoming s2s connection " .. remote:gsub("%.", "%%.") .. "%->localhost complete");
			end, 20, "the incoming s2s session from " .. remote);
			prosody.wait_for(function ()
				return (prosody.read(server.dir .. "/debug.log") or ""):find("Destroying incoming session " .. remote, 1, true);
			end, 20, "the s2s session to end");
			local found = lines_of(server:shell(([[ringbuffer:tail(10000, { sink = "main", jid = %q })]]):format(remote)));
			local all = lines_of(server:shell(([[ringbuffer:tail(10000, { sink = "main", source = %q })]]):format(s2s)));
			assert.is_true(#all > 2);
			local of_session = 0;
			for _, line in ipairs(found) do
				assert.truthy(line.source == s2s or line.source:match("^conn"), line.source);
				if line.source == s2s then of_session = of_session + 1; end
			end
			-- Every line of the session, those before it authenticated (its remote domain unknown
			-- then) among them.
			assert.equal(#all, of_session);
		end);
	end);
end
