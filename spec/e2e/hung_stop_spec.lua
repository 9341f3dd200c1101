-- End to end: dump_on_exit when the server is stopped while its main loop hangs, in real
-- Prosody 0.12 and 13. Prosody handles SIGTERM on that loop (13 reads it through signalfd from
-- the loop itself), so a hung loop never runs the exit dump; the dump must come anyway, within
-- 2 s of the signal, and Prosody keeps its own behaviour: the hung process is not made to exit.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

local config = [[{
	{ levels = { min = "debug" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 4*1024*1024, dump_on_exit = true, filename = "$DATA/exit.log" };
}]];

-- How Prosody takes the signal is set up: 0.12 registers its handlers on a timer after modules
-- load, and the module goes in front of them then; 13's signalfd is set up as the module loads.
local function ready(server, version)
	if version == "0.12" then server:wait_for_log("SIGTERM: chained in front of Prosody's handler"); end
end

-- The dump file once it holds a whole dump (or several), parsed.
local function wait_for_dump(server)
	return prosody.wait_for(function ()
		local ok, list = pcall(dumps.parse, server:file("exit.log"));
		return ok and #list > 0 and list;
	end, 10, "the dump");
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version, function ()
		for _, how in ipairs({ "lua", "c" }) do
			it("a SIGTERM to a main loop hung in " .. how .. " writes the dump within 2 s; Prosody lives on", function ()
				local server = prosody.start(version, config);
				finally(function () server:cleanup(); end);
				ready(server, version);
				server:command("spam 200 hung-line");
				server:wait_for_log("hung-line done");
				server:command("hang " .. how .. " 30");
				prosody.wait_for(function () return server:file("hanging"); end, 10, "the loop to hang");
				local sent = prosody.clock();
				server:signal("TERM");
				local list = wait_for_dump(server);
				local took = prosody.clock() - sent;
				print(("hung in %s, Prosody %s: SIGTERM -> dump in %.2f s"):format(how, version, took));
				assert.truthy(took < 2, ("the dump took %.2f s"):format(took));
				assert.equal(1, #list);
				assert.equal(200, dumps.count_matching(list[1], "hung%-line %d+$"));
				assert.truthy(server:alive(), "Prosody exited by the module's doing");
				server:signal("KILL");
				prosody.wait_for(function () return not server:alive(); end, 10, "Prosody to die");
			end);
		end

		it("a SIGINT to a main loop hung in C writes the dump too", function ()
			local server = prosody.start(version, config);
			finally(function () server:cleanup(); end);
			ready(server, version);
			server:command("log debug int-line", "hang c 30");
			prosody.wait_for(function () return server:file("hanging"); end, 10, "the loop to hang");
			server:signal("INT");
			local list = wait_for_dump(server);
			assert.equal(1, dumps.count_matching(list[1], "int%-line"));
			assert.truthy(server:alive(), "Prosody exited by the module's doing");
		end);

		it("a loop that recovers after the hung dump stops as usual; its exit dump has the rest", function ()
			local server = prosody.start(version, config);
			finally(function () server:cleanup(); end);
			ready(server, version);
			server:command("log debug before-line", "hang c 4");
			prosody.wait_for(function () return server:file("hanging"); end, 10, "the loop to hang");
			server:signal("TERM");
			wait_for_dump(server);
			prosody.wait_for(function () return not server:alive(); end, 15, "Prosody to stop once it recovers");
			local list = dumps.parse(server:file("exit.log"));
			assert.equal(2, #list);
			assert.equal(1, dumps.count_matching(list[1], "before%-line"));
			assert.equal(0, dumps.count_matching(list[2], "before%-line"));
			assert.equal(0, dumps.count_matching(list[1], "warn%s+Received SIGTERM"));
			assert.equal(1, dumps.count_matching(list[2], "warn%s+Received SIGTERM"));
			assert.truthy(server:log():find("SIGTERM arrived and Prosody's main loop did not respond", 1, true));
		end);

		it("a SIGTERM to a healthy server gives its one exit dump, as before", function ()
			local server = prosody.start(version, config);
			finally(function () server:cleanup(); end);
			ready(server, version);
			server:command("log debug healthy-line");
			server:stop();
			local list = dumps.parse(server:file("exit.log"));
			assert.equal(1, #list);
			assert.equal(1, dumps.count_matching(list[1], "healthy%-line"));
			assert.falsy(server:log():find("not respond", 1, true));
		end);
	end);
end

describe("Prosody 0.12 with mod_posix reloaded (its handlers registered again over ours)", function ()
	it("goes in front of them again: a hung loop is dumped", function ()
		local server = prosody.start("0.12", config);
		finally(function () server:cleanup(); end);
		ready(server, "0.12");
		server:command("reload_module posix");
		prosody.wait_for(function ()
			local _, chained = server:log():gsub("SIGTERM: chained in front of Prosody's handler", "");
			return chained >= 2;
		end, 10, "the module to chain SIGTERM again");
		server:command("log debug reloaded-line", "hang c 30");
		prosody.wait_for(function () return server:file("hanging"); end, 10, "the loop to hang");
		server:signal("TERM");
		local list = wait_for_dump(server);
		assert.equal(1, dumps.count_matching(list[1], "reloaded%-line"));
		assert.truthy(server:alive(), "Prosody exited by the module's doing");
	end);
end);

describe("Prosody 0.12 started with -D (daemonized after modules load)", function ()
	it("the daemon watches SIGTERM too: a hung loop is dumped", function ()
		local server = prosody.start("0.12", config, nil, { daemonize = true });
		finally(function () server:cleanup(); end);
		server:wait_for_log("Successfully daemonized");
		ready(server, "0.12");
		server:command("log debug daemon-line", "hang c 30");
		prosody.wait_for(function () return server:file("hanging"); end, 10, "the loop to hang");
		local sent = prosody.clock();
		server:signal("TERM");
		local list = wait_for_dump(server);
		assert.truthy(prosody.clock() - sent < 2, "the dump took too long");
		assert.equal(1, dumps.count_matching(list[1], "daemon%-line"));
		assert.truthy(server:alive(), "Prosody exited by the module's doing");
	end);
end);
