-- The longest hold of Prosody's main loop while 10 shells follow a full 64 MiB ring that keeps
-- filling, in a real Prosody 0.12 and 13 (started like the e2e specs do, with the module from
-- `make install-plugin` in $E2E_PLUGIN_DIR): a 10 ms timer in the server notes how late it
-- fires (spec/e2e/plugins/mod_e2e_shell_probe.lua) while 100,000 more lines are logged (500 a
-- tick, see mod_e2e_control's spam). Three runs: no follower (the control), 10 followers of
-- every line (`pattern = "."`, each reading all it is given: a reader process with 10 real
-- admin-socket clients), and 10 followers whose shells never read.
-- Prints a Lua table constructor: per version and run, the longest hold (seconds), the wall
-- time of the 100,000 lines, the bytes the readers received and at what rate (MB/s, from
-- their first byte to their last), and the longest tick of the shell's follow timer (seconds,
-- from ringbuffer:status(), which shows it while followers run).
-- Usage (from the checkout): lua5.4 bench/follow_holds.lua
-- (`lua5.4 bench/follow_holds.lua readers SOCKET N read|stuck [FILTER]` is the reader process,
-- also for `make bench-server`'s configuration F.)
package.path = "./?.lua;" .. package.path;
local socket = require "socket";

local function follow_clients(path, n, filter)
	local unix = require "socket.unix";
	local clients = {};
	for i = 1, n do
		local client = assert((unix.stream or unix)());
		assert(client:connect(path));
		assert(client:send("<stream:stream xmlns='xmpp:prosody.im/admin' xmlns:stream='http://etherx.jabber.org/streams'>"
			.. "<repl-input>ringbuffer:follow(" .. filter .. ")</repl-input>"));
		client:settimeout(0);
		clients[i] = client;
	end
	return clients;
end

if arg[1] == "readers" then
	local clients = follow_clients(arg[2], tonumber(arg[3]), arg[5] or '{ pattern = ".", backlog = 0 }');
	local received, first, last = 0, nil, nil;
	io.stdout:setvbuf("line");
	print("connected");
	while true do
		if arg[4] == "read" then
			local ready = socket.select(clients, nil, 1);
			for _, client in ipairs(ready) do
				local data, err, partial = client:receive(65536);
				local got = #(data or partial or "");
				if got > 0 then
					last = socket.gettime();
					first = first or last;
				end
				received = received + got;
				if err == "closed" then os.exit(0); end
			end
		else
			socket.sleep(1);
		end
		local f = io.open(arg[2] .. ".received", "w");
		if f then f:write(("%d %.6f"):format(received, first and last - first or 0)); f:close(); end
	end
end

if not os.getenv("E2E_PLUGIN_DIR") then -- the plugin folder prosody.start() uses by default
	assert(os.execute("make -s --no-print-directory install-plugin PLUGIN_DIR=\"$PWD/target/e2e-plugins\" >&2"));
end
local prosody = require "spec.helpers.prosody";

local function probe_result(server, name)
	return prosody.wait_for(function ()
		local text = server:file("probe-" .. name .. ".lua");
		return text and assert(load(text))();
	end, 120, "the probe " .. name);
end

local function followers(server)
	return tonumber(server:shell("ringbuffer:status()"):match("(%d+) followers")) or 0;
end

-- The longest tick of the follow timer so far (seconds), while followers run.
local function longest_turn(server)
	local status = server:shell("ringbuffer:status()");
	return (tonumber(status:match("longest turn ([%d.]+) ms")) or 0) / 1e3;
end

local function measure(version)
	local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", size = 64 * 1024 * 1024, filename = "$DATA/main.log" };
}]]);
	local runs = 0;
	local ok, result = pcall(function ()
		-- About 290,000 lines of 240 bytes: more than 64 MiB, so the ring is full.
		server:command("load_module e2e_shell_probe", "spam 290000 fill 200");
		prosody.wait_for(function () return server:log():find("fill done", 1, true); end, 120, "the ring to fill");
		local function run(mode)
			runs = runs + 1;
			local sock, readers = server.data .. "/prosody.sock", nil;
			os.remove(sock .. ".received");
			if mode ~= "none" then
				readers = io.popen(("echo $$ >> %s/launched.pid; exec lua5.4 bench/follow_holds.lua readers %s 10 %s")
					:format(server.dir, sock, mode));
				assert(readers:read("l") == "connected");
				prosody.wait_for(function () return followers(server) == 10; end, 30, "10 followers");
			end
			os.remove(server.data .. "/probe-holds.lua");
			server:command("fire e2e_probe/holds_start");
			local started = prosody.clock();
			server:command(("spam 100000 run%d 200"):format(runs));
			prosody.wait_for(function () return server:log():find(("run%d done"):format(runs), 1, true); end, 120, "the lines");
			local wall = prosody.clock() - started;
			server:command("fire e2e_probe/holds_stop");
			local holds = probe_result(server, "holds");
			local received, receiving, turn = 0, 0, 0;
			if readers then
				prosody.sleep(1.5);
				turn = longest_turn(server);
				local text = prosody.read(sock .. ".received") or "";
				received, receiving = text:match("^(%d+) ([%d.]+)");
				received, receiving = tonumber(received) or 0, tonumber(receiving) or 0;
				local pid = prosody.read(server.dir .. "/launched.pid"):match("(%d+)%s*$");
				os.execute("kill " .. pid);
				readers:close();
				prosody.wait_for(function () return followers(server) == 0; end, 30, "the followers to end");
			end
			local rate = receiving > 0 and received / receiving / 1e6 or 0;
			return ("{ mode = %q, longest = %.4f, wall = %.2f, received = %d, mb_per_s = %.2f, longest_turn = %.4f }")
				:format(mode, holds.longest, wall, received, rate, turn);
		end
		return ("{ version = %q, %s, %s, %s }"):format(version, run("none"), run("read"), run("stuck"));
	end);
	server:cleanup();
	return assert(ok and result, result);
end

local out = {};
for i, version in ipairs(prosody.versions()) do
	out[i] = measure(version);
end
print("return { " .. table.concat(out, ", ") .. " }");
