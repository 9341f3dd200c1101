-- A real XMPP client load for the end-to-end specs: `lua5.4 spec/helpers/xmpp_load.lua PORT
-- SECONDS CLIENTS OUT`. CLIENTS clients log in to the Prosody on 127.0.0.1:PORT (plain c2s,
-- SASL ANONYMOUS), bind a resource, and for SECONDS send each other chat messages in pipelined
-- batches, each batch once the one before it has arrived, so the server is kept busy routing.
-- Then writes "<messages routed> <seconds>" to OUT and exits 0 (1 on any failure).
local socket = require "socket";

local port, seconds, clients, out = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), arg[4];
assert(port and seconds and clients and out, "usage: xmpp_load.lua PORT SECONDS CLIENTS OUT");
local BATCH = 50;
local STREAM = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
	.. "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

local function connect()
	local c = assert(socket.connect("127.0.0.1", port));
	return { sock = c, buffer = "" };
end

-- Adds what has arrived to the buffer, waiting up to 30 s for something.
local function fill(client)
	local ready = socket.select({ client.sock }, nil, 30);
	if not ready[client.sock] then error("nothing arrived in 30 s"); end
	client.sock:settimeout(0);
	local data, err, partial = client.sock:receive(65536);
	client.sock:settimeout(30);
	data = data or partial;
	if err == "closed" or not data then error("connection: " .. tostring(err)); end
	client.buffer = client.buffer .. data;
end

local function send(client, text)
	assert(client.sock:send(text));
end

-- Reads until `pattern` is in the buffer; returns its captures, drops what comes before.
local function expect(client, pattern)
	while true do
		local from, to, a = client.buffer:find(pattern);
		if from then
			client.buffer = client.buffer:sub(to + 1);
			return a or true;
		end
		fill(client);
	end
end

local function log_in(client)
	send(client, STREAM);
	expect(client, "</stream:features>");
	send(client, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>");
	expect(client, "<success");
	send(client, STREAM);
	expect(client, "</stream:features>");
	send(client, "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
	client.jid = expect(client, "<jid>([^<]+)</jid>");
	send(client, "<presence/>");
end

local list = {};
for i = 1, clients do
	list[i] = connect();
	log_in(list[i]);
end

-- Counts the messages in the buffer (each ends with "</message>") and drops them.
local function take_messages(client)
	local n = 0;
	client.buffer = client.buffer:gsub("<message.-</message>", function () n = n + 1; return ""; end);
	return n;
end

local routed, started = 0, socket.gettime();
local body = ("load "):rep(20);
while socket.gettime() - started < seconds do
	for i, client in ipairs(list) do
		local to = list[i % #list + 1].jid;
		local batch = {};
		for k = 1, BATCH do
			batch[k] = ("<message to='%s' type='chat' id='m%d'><body>%s%d</body></message>"):format(to, k, body, k);
		end
		send(client, table.concat(batch));
	end
	for _, client in ipairs(list) do
		local got = take_messages(client);
		while got < BATCH do
			fill(client);
			got = got + take_messages(client);
		end
		routed = routed + got;
	end
end
local took = socket.gettime() - started;
for _, client in ipairs(list) do
	pcall(send, client, "</stream:stream>");
	client.sock:close();
end
local f = assert(io.open(out, "w"));
f:write(("%d %.1f\n"):format(routed, took));
f:close();
