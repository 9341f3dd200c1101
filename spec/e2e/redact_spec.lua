-- End to end: `redact` in real Prosody 0.12 and 13. A real client logs in over c2s with SASL
-- PLAIN and a known password, sends that password again in a jabber:iq:register query and a
-- message with a known body to itself. mod_stanza_debug logs every stanza (the SASL exchange
-- included) and mod_e2e_redact logs the message as a stanza object. A sink without `redact`
-- holds the body, the password (plain and base64) and the client's address: the test can see
-- them. Sinks with `redact = true` hold none of them in a file dump, a forward to a real rsyslog
-- (RFC 5424), the shell's tail and grep, and a crash dump (kill -SEGV); their markers and
-- pseudonyms are there, one address one pseudonym. A sink with `redact = { "jids" }` keeps the
-- shell's `jid` filter working.
local prosody = require "spec.helpers.prosody";
local rsyslog = require "spec.helpers.rsyslog";
local socket = require "socket";

local USER, PASSWORD, BODY = "juliet", "Pa55-w0rd-e2e-41d7", "the-secret-body-e2e-7319";
local STREAM = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
	.. "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

local function base64(s)
	local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	return ((s:gsub(".", function (c)
		local bits, byte = "", c:byte();
		for i = 8, 1, -1 do bits = bits .. ((byte % 2 ^ i - byte % 2 ^ (i - 1) > 0) and "1" or "0"); end
		return bits;
	end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function (bits)
		if #bits < 6 then return ""; end
		local n = 0;
		for i = 1, 6 do n = n + (bits:sub(i, i) == "1" and 2 ^ (6 - i) or 0); end
		return alphabet:sub(n + 1, n + 1);
	end) .. ({ "", "==", "=" })[#s % 3 + 1]);
end
local PLAIN_BLOB = base64("\0" .. USER .. "\0" .. PASSWORD);

-- One client session: log in with SASL PLAIN, send the password in a register query and the
-- body to itself, wait for the message to come back, close the stream.
local function run_client(port)
	local conn = assert(socket.connect("127.0.0.1", port));
	conn:settimeout(30);
	local buffer = "";
	local function expect(pattern)
		while true do
			local from, to, capture = buffer:find(pattern);
			if from then
				buffer = buffer:sub(to + 1);
				return capture or true;
			end
			local data, err, partial = conn:receive(1);
			data = data or partial;
			assert(data and data ~= "", "the server closed the stream: " .. tostring(err) .. "; had: " .. buffer);
			buffer = buffer .. data;
		end
	end
	local function send(text) assert(conn:send(text)); end
	send(STREAM);
	expect("</stream:features>");
	send(("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>"):format(PLAIN_BLOB));
	expect("<success");
	send(STREAM);
	expect("</stream:features>");
	send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>");
	local jid = expect("<jid>([^<]+)</jid>");
	send(("<iq type='set' id='pw'><query xmlns='jabber:iq:register'><username>%s</username><password>%s</password>"
		.. "</query></iq>"):format(USER, PASSWORD));
	expect("id=['\"]pw['\"]");
	send(("<message to='%s' type='chat' id='m1'><body>%s</body></message>"):format(jid, BODY));
	expect((BODY:gsub("%p", "%%%0")));
	send("</stream:stream>");
	conn:close();
end

local SECRETS = { BODY, PASSWORD, PLAIN_BLOB, "127.0.0.1" };

-- Asserts that `text` holds none of the secrets, and the markers of each class.
local function assert_redacted(text, what)
	assert.truthy(#text > 0, what .. " is empty");
	for _, secret in ipairs(SECRETS) do
		assert.falsy(text:find(secret, 1, true), what .. " holds " .. secret .. ":\n" .. text);
	end
	for _, marker in ipairs({ "<body>%[redacted %d+ bytes%]</body>", "mechanism='PLAIN'[^>]*>%[redacted %d+ bytes%]</auth>",
			"<password>%[redacted %d+ bytes%]</password>", "ip:%x+" }) do
		assert.truthy(text:find(marker), what .. " lacks " .. marker .. ":\n" .. text);
	end
	-- One address (the client's and the server's are both 127.0.0.1): one pseudonym.
	local pseudonyms, lines_with = {}, 0;
	for line in text:gmatch("[^\n]+") do
		local found = false;
		for pseudonym in line:gmatch("ip:(%x%x%x%x%x%x%x%x)") do
			pseudonyms[pseudonym], found = true, true;
		end
		if found then lines_with = lines_with + 1; end
	end
	assert.equal(1, #(function () local l = {}; for p in pairs(pseudonyms) do l[#l + 1] = p; end return l; end)());
	assert.truthy(lines_with >= 2, what .. ": the address on fewer than two lines");
end

if not rsyslog.available() then
	describe("redact", function ()
		pending("needs rsyslog (make deps): " .. select(2, rsyslog.available()));
	end);
	return;
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", redact", function ()
		local collector, server;
		setup(function ()
			collector = rsyslog.start();
			server = prosody.start(version, ([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "plain", lines = 5000, event = "e2e/plain", dump_on_crash = false, filename = "$DATA/plain.log" };
	{ to = "ringbuffer", name = "private", lines = 5000, redact = true, event = "e2e/private", dump_on_crash = false,
	  filename_template = "$DATA/private-{count}.log" };
	{ to = "ringbuffer", name = "forwarded", lines = 5000, redact = true, format = "rfc5424", event = "e2e/forwarded",
	  dump_on_crash = false, forward = "tcp://127.0.0.1:%d", filename = "$DATA/forwarded-not-forwarded.log" };
	{ to = "ringbuffer", name = "jids", lines = 5000, redact = { "jids" }, dump_on_crash = false, filename = "$DATA/jids.log" };
	{ to = "ringbuffer", name = "crash", lines = 5000, redact = true, filename_template = "$DATA/crash-{count}.log" };
}]]):format(collector.tcp_port), ([[
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
modules_enabled = { %s"log_ringbuffer", "e2e_control", "admin_shell", "saslauth", "stanza_debug", "e2e_redact" }
]]):format(version == "0.12" and '"posix", ' or ""));
			local output, code = server:ctl("register", USER, "localhost", PASSWORD);
			assert(code == 0, output);
			run_client(server.c2s_port);
			-- The session's last line is logged once the stream is closed.
			prosody.wait_for(function ()
				return server:shell([[ringbuffer:grep("Client disconnected", { sink = "plain" })]]):find("Client disconnected", 1, true);
			end, 15, "the client's session to end");
		end);
		teardown(function ()
			if server then server:cleanup(); end
			if collector then collector:cleanup(); end
		end);

		it("is off by default: the body, the password and the address are in the dump", function ()
			server:command("fire e2e/plain");
			local text = prosody.wait_for(function ()
				local t = server:file("plain.log");
				return t and t:find("-- End of dump", 1, true) and t;
			end, 15, "the plain dump");
			for _, secret in ipairs(SECRETS) do
				assert.truthy(text:find(secret, 1, true), "the dump lacks " .. secret);
			end
			assert.falsy(text:find("[redacted ", 1, true));
		end);

		it("with redact = true, leaves none of them in tail, grep, a dump or a forward", function ()
			-- The shell first: a dump takes the lines out of the buffer.
			assert_redacted(server:shell([[ringbuffer:tail(5000, { sink = "private" })]]), "tail");
			assert_redacted(server:shell([[ringbuffer:grep(".", { sink = "private", limit = 5000 })]]), "grep");
			server:command("fire e2e/private", "fire e2e/forwarded");
			local text = prosody.wait_for(function ()
				for _, name in ipairs(server:files("^private%-%d+%.log$")) do
					local t = server:file(name);
					if t and t:find("-- End of dump", 1, true) then return t; end
				end
			end, 15, "the redacted dump");
			assert_redacted(text, "the file dump");
			local records = collector:wait_for_records("tcp", function (list)
				for _, record in ipairs(list) do
					if record.msg and record.msg:find("End of dump", 1, true) then return list; end
				end
			end, 20, "the forwarded dump");
			local messages = {};
			for i, record in ipairs(records) do messages[i] = record.msg or ""; end
			assert_redacted(table.concat(messages, "\n"), "the forward");
		end);

		it("with redact = { \"jids\" }, keeps the shell's jid filter working", function ()
			local output = server:shell(([[ringbuffer:tail(5000, { sink = "jids", jid = "%s@localhost" })]]):format(USER));
			assert.truthy(output:find("Authenticated as u:%x+@localhost"), output);
			assert.falsy(output:find(USER .. "@", 1, true), output);
			assert.truthy(output:find(BODY, 1, true), "bodies are another class");
		end);

		it("with redact = true, leaves none of them in a crash dump (kill -SEGV)", function ()
			server:signal("SEGV");
			local text = prosody.wait_for(function ()
				for _, name in ipairs(server:files("^crash%-%d+%.log$")) do
					local t = server:file(name);
					if t and t:find("End of dump", 1, true) then return t; end
				end
			end, 20, "the crash dump");
			assert.truthy(text:find("-- Fatal signal SIGSEGV", 1, true), text);
			assert_redacted(text, "the crash dump");
		end);
	end);
end
