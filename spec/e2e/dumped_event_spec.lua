-- End to end: the global event `ringbuffer/dumped` reaches another module (a test plugin) after
-- every dump, whatever started it: a real signal, a dump_on window, an event, and a dump that
-- fails (its directory does not exist); a handler that raises an error is logged and breaks
-- nothing. Real Prosody 0.12 and 13.
local prosody = require "spec.helpers.prosody";

-- The events the plugin recorded, as tables.
local function events(server)
	local list = {};
	for line in prosody.lines(server:file("dumped-events") or "") do
		local sink, reason, ok, lines, path, err = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$");
		table.insert(list, { sink = sink, reason = reason, ok = ok == "true", lines = tonumber(lines), path = path, error = err });
	end
	return list;
end

local function wait_for_event(server, sink, n)
	return prosody.wait_for(function ()
		local found = {};
		for _, event in ipairs(events(server)) do
			if event.sink == sink then table.insert(found, event); end
		end
		return #found >= (n or 1) and found[n or 1];
	end, 10, "a ringbuffer/dumped event of sink " .. sink);
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", ringbuffer/dumped", function ()
		local server;
		setup(function ()
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "sig", signal = "SIGUSR2", filename = "$DATA/sig.log" };
	{ to = "ringbuffer", name = "win", dump_on = "error", dump_after = 0.2, filename_template = "$DATA/win-{count}.log" };
	{ to = "ringbuffer", name = "bad", event = "e2e/bad", filename_template = "$DATA/missing/bad-{count}.log" };
}]]);
			server:command("load_module e2e_dumped");
		end);
		teardown(function ()
			if server then server:cleanup(); end
		end);

		it("follows a signal dump", function ()
			server:command("log debug before the signal");
			server:signal("USR2");
			local event = wait_for_event(server, "sig");
			assert.is_true(event.ok);
			assert.equal(server.data .. "/sig.log", event.path);
			assert.truthy(event.reason:find("SIGUSR2", 1, true), event.reason);
			assert.is_true(event.lines >= 1);
			assert.equal("nil", event.error);
		end);

		it("follows a dump_on dump", function ()
			server:command("log warn not yet", "log error the error");
			local event = wait_for_event(server, "win");
			assert.is_true(event.ok);
			assert.truthy(event.path:match("/win%-%d+%.log$"), event.path);
			assert.truthy(event.reason:find("dump_on", 1, true), event.reason);
			local text = assert(io.open(event.path)):read("a");
			assert.truthy(text:find("the error", 1, true));
		end);

		it("follows a failed dump, with its error", function ()
			server:command("log debug for the bad sink", "fire e2e/bad");
			local event = wait_for_event(server, "bad");
			assert.is_false(event.ok);
			assert.truthy(event.path:find("/missing/bad-", 1, true), event.path);
			assert.truthy(event.error:find("No such file or directory", 1, true), event.error);
			assert.equal("e2e/bad", event.reason);
		end);

		it("survives a handler that raises an error", function ()
			assert(io.open(server.data .. "/dumped-raise", "w")):close();
			server:command("fire e2e/bad");
			wait_for_event(server, "bad", 2);
			server:wait_for_log("A handler of ringbuffer/dumped failed");
			os.remove(server.data .. "/dumped-raise");
			-- The module goes on: the next dump is followed too.
			server:command("fire e2e/bad");
			wait_for_event(server, "bad", 3);
			assert.is_true(server:alive());
		end);
	end);
end
