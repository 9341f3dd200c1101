-- End to end: `dump_on_stall` in real Prosody 0.12 and 13, both versions at once (the specs
-- wait for stalls, which take seconds; running the versions side by side keeps this file near
-- 100 s). A main loop that spins in Lua, or is blocked in C, is dumped by a native thread, once
-- per stall, with the Lua traceback or a line saying there is none; a loop that recovers gets
-- one warning; a server stopped for a while, and a healthy one under a real XMPP load for 60 s,
-- are never taken for stalled.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

local STALL_NOTE = "^%-%- Prosody's main loop has not turned for (%d+) s %-%-$";
local TRACEBACK_HEADER = "\n-- Lua traceback of Prosody's main thread --\n";
local TRACEBACK_FOOTER = "\n-- End of Lua traceback --\n";
local NO_TRACEBACK = "\n-- No Lua traceback: Prosody's main thread ran no Lua code within 1 s of asking";
local RECOVERED = "Prosody's main loop did not turn for ";

-- One server per version, each with `log_config`, `extra(version)` and `options(version)` (see
-- prosody.start); all are killed (by PID) when the test ends.
local function start_all(log_config, extra, options)
	local servers = {};
	finally(function ()
		for _, server in ipairs(servers) do server:cleanup(); end
	end);
	for _, version in ipairs(prosody.versions()) do
		table.insert(servers, prosody.start(version, log_config, extra and extra(version), options and options(version)));
	end
	return servers;
end

local function stalled_at(server)
	return tonumber(server:file("stalled-at") or "");
end

local function count(text, plain)
	local n, at = 0, 1;
	while true do
		local found = text:find(plain, at, true);
		if not found then return n; end
		n, at = n + 1, found + #plain;
	end
end

local function one_to(n)
	local list = {};
	for i = 1, n do list[i] = i; end
	return list;
end

describe("dump_on_stall", function ()
	-- The sink is made anew by a config reload first (its dump_on_stall changes).
	it("dumps a loop spinning in Lua once, within 4 s, with the traceback naming the function", function ()
		local servers = start_all([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on_stall = 30, dump_cooldown = 0, filename = "$DATA/stall.log" };
}]]);
		for _, server in ipairs(servers) do
			server:rewrite_config("dump_on_stall = 30", "dump_on_stall = 2");
			server:sighup();
			local status = server:shell("ringbuffer:status()");
			assert.truthy(status:find("dump_on_stall 2s", 1, true), server.version .. ": " .. status);
			server:command("spin spun 200");
		end
		local seen = {};
		prosody.wait_for(function ()
			for i, server in ipairs(servers) do
				local text = server:file("stall.log");
				if not seen[i] and text and text:find("-- End of dump --", 1, true) then
					seen[i] = prosody.clock();
				end
			end
			for i = 1, #servers do
				if not seen[i] then return false; end
			end
			return true;
		end, 20, "the stall dumps");
		for i, server in ipairs(servers) do
			local started = assert(stalled_at(server), "the spin began");
			local latency = seen[i] - started;
			print(("Prosody %s: stall dump %.2f s after the loop stopped"):format(server.version, latency));
			assert.is_true(latency <= 4, server.version .. ": " .. latency .. " s");
		end
		-- The traceback follows the dump within 1 s of it.
		local text = {};
		prosody.wait_for(function ()
			for i, server in ipairs(servers) do
				local now = server:file("stall.log");
				if now:find(TRACEBACK_FOOTER, 1, true) or now:find(NO_TRACEBACK, 1, true) then text[i] = now; end
			end
			for i = 1, #servers do
				if not text[i] then return false; end
			end
			return true;
		end, 10, "the tracebacks");
		for i, server in ipairs(servers) do
			local where = server.version .. ": " .. text[i];
			local list = dumps.parse(text[i]);
			assert.equal(1, #list, where);
			assert.same(one_to(200), dumps.numbers_in(list[1], "spun"), where);
			local turned = tonumber(list[1].notes[1] and list[1].notes[1]:match(STALL_NOTE));
			assert.truthy(turned and turned >= 2 and turned <= 4, where);
			local footer_at = text[i]:find("-- End of dump --", 1, true);
			local header_at = text[i]:find(TRACEBACK_HEADER, footer_at, true);
			assert.truthy(header_at, where);
			local traceback = text[i]:sub(header_at, (text[i]:find(TRACEBACK_FOOTER, header_at, true)));
			assert.truthy(traceback:find("spin_until_killed", 1, true), where);
		end
		-- The loop stays hung: no second dump, although a stall of twice the threshold passes
		-- (dump_cooldown = 0: one dump per stall holds without it).
		local after = prosody.clock() + 3;
		prosody.wait_until(after, "twice the threshold");
		for i, server in ipairs(servers) do
			assert.equal(text[i], server:file("stall.log"), server.version);
			assert.is_true(server:alive(), server.version);
		end
	end);

	-- 0.12 runs daemonized (-D forks after modules load): the watchdog works in the child.
	it("dumps a loop blocked in C, says there is no traceback, and warns once when it recovers", function ()
		local servers = start_all([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on_stall = "2s", filename = "$DATA/blocked.log" };
}]], nil, function (version) return version == "0.12" and { daemonize = true } or nil; end);
		for _, server in ipairs(servers) do
			server:command("block 5 blocked 20");
		end
		for _, server in ipairs(servers) do
			local list = dumps.wait_for(server, "blocked.log");
			local text = prosody.wait_for(function ()
				local now = server:file("blocked.log");
				return (now:find(NO_TRACEBACK, 1, true) or now:find(TRACEBACK_HEADER, 1, true)) and now;
			end, 10, "the traceback line");
			local where = server.version .. ": " .. text;
			assert.equal(1, #list, where);
			assert.same(one_to(20), dumps.numbers_in(list[1], "blocked"), where);
			assert.truthy(list[1].notes[1]:match(STALL_NOTE), where);
			assert.truthy(text:find(NO_TRACEBACK, 1, true), where);
			assert.falsy(text:find(TRACEBACK_HEADER, 1, true), where);
		end
		for _, server in ipairs(servers) do
			server:wait_for_log("blocked recovered");
			server:wait_for_log(RECOVERED);
			-- Two more beats (a round trip of the control plugin, then a second) bring no second.
			server:command("log info after-recovery");
			server:wait_for_log("after-recovery");
		end
		prosody.wait_until(prosody.clock() + 2, "two more beats");
		for _, server in ipairs(servers) do
			local log = server:log();
			assert.equal(1, count(log, RECOVERED), server.version .. ": " .. log);
			-- The loop was blocked for 5 s: between the last beat before and the first after.
			local least, most = log:match(RECOVERED .. "(%d+%.%d) to (%d+%.%d) s");
			least, most = tonumber(least), tonumber(most);
			assert.truthy(least and least >= 2 and least <= 6 and most >= 5, server.version .. ": " .. log);
			-- The traceback asked for during the stall came once Lua ran again: the blocking call.
			assert.truthy(log:find("(dump_on_stall); where it was: stack traceback:\n\t[C]: in field 'execute'", 1, true),
				server.version .. ": " .. log);
			assert.equal(1, #dumps.parse(server:file("blocked.log")), server.version);
		end
	end);

	it("does not count the time Prosody was stopped (SIGSTOP, a debugger, a frozen VM) as a stall", function ()
		local servers = start_all([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on_stall = 1, filename = "$DATA/stopped.log" };
}]]);
		for _, server in ipairs(servers) do server:signal("STOP"); end
		prosody.wait_until(prosody.clock() + 3.5, "three times the threshold, stopped");
		for _, server in ipairs(servers) do server:signal("CONT"); end
		for _, server in ipairs(servers) do
			server:command("log info running-again");
			server:wait_for_log("running-again");
		end
		prosody.wait_until(prosody.clock() + 2.5, "a stall's threshold and more, running");
		for _, server in ipairs(servers) do
			assert.is_nil(server:file("stopped.log"), server.version .. ": a stall dump");
			local log = server:log();
			assert.falsy(log:find(RECOVERED, 1, true), server.version);
			assert.falsy(log:find("dump_on_stall", 1, true), server.version .. ": " .. log);
		end
	end);

	it("never takes a healthy server under a 60 s XMPP message load for stalled", function ()
		local seconds = 60;
		local servers = start_all([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", dump_on_stall = 1, filename = "$DATA/healthy.log" };
}]], function (version)
			return ([[
authentication = "anonymous"
c2s_require_encryption = false
modules_enabled = { %s"log_ringbuffer", "e2e_control", "saslauth" }
]]):format(version == "0.12" and '"posix", ' or "");
		end);
		for _, server in ipairs(servers) do
			server.load_out = server.dir .. "/load.out";
			os.execute(("sh -c 'echo $$ >> %s/launched.pid; exec lua5.4 spec/helpers/xmpp_load.lua %d %d 4 %s' "
				.. "> %s/load.err 2>&1 &"):format(server.dir, server.c2s_port, seconds, server.load_out, server.dir));
		end
		prosody.wait_for(function ()
			for _, server in ipairs(servers) do
				assert.is_nil(server:file("healthy.log"), server.version .. ": a stall dump of a healthy server");
			end
			for _, server in ipairs(servers) do
				if not prosody.read(server.load_out) then return false; end
			end
			return true;
		end, seconds + 30, "the loads to end");
		for _, server in ipairs(servers) do
			local routed, took = prosody.read(server.load_out):match("^(%d+) (%S+)");
			print(("Prosody %s: %s messages routed in %s s with dump_on_stall = 1, no stall dump"):format(
				server.version, routed, took));
			assert.is_true(tonumber(routed) > 1000, server.version .. ": " .. (prosody.read(server.dir .. "/load.err") or ""));
			assert.is_nil(server:file("healthy.log"), server.version);
			local log = server:log();
			assert.falsy(log:find(RECOVERED, 1, true), server.version);
			assert.falsy(log:find("dump_on_stall", 1, true), server.version .. ": " .. log);
		end
	end);
end);
