-- End to end: the admin shell's reads never hold Prosody's main loop long (real Prosody 0.12
-- and 13). A 10,000-line answer comes in batches, one a tick; past four reads at once the next
-- is told "busy"; a read whose shell went away (a real admin-socket client that disconnects
-- mid-answer, and a shell session that says it is gone) is cancelled and gives its place back;
-- the shell's own lines are left out of tail unless asked for.
local prosody = require "spec.helpers.prosody";

-- A real admin-socket client: sends one shell line, waits for the first output, then drops
-- the connection without reading the rest.
local function ask_and_leave(server, line)
	local unix = require "socket.unix";
	local client = assert((unix.stream or unix)());
	assert(client:connect(server.data .. "/prosody.sock"));
	client:settimeout(10);
	local escaped = line:gsub("&", "&amp;"):gsub("<", "&lt;");
	assert(client:send("<stream:stream xmlns='xmpp:prosody.im/admin' xmlns:stream='http://etherx.jabber.org/streams'>"
		.. "<repl-input>" .. escaped .. "</repl-input>"));
	local received = "";
	while not received:find("<repl%-output") do
		local data, err, partial = client:receive(4096);
		received = received .. (data or partial or "");
		assert(data or (partial and partial ~= ""), err);
	end
	client:close();
	return received;
end

local function probe(server, name)
	os.remove(server.data .. "/probe-" .. name .. ".lua");
	server:command("fire e2e_probe/" .. name);
	return prosody.wait_for(function ()
		local f = io.open(server.data .. "/probe-" .. name .. ".lua");
		if not f then return nil; end
		local text = f:read("a");
		f:close();
		return assert(load(text))();
	end, 30, "the probe " .. name);
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", a shell read", function ()
		local server;
		setup(function ()
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", lines = 30000, filename = "$DATA/main.log" };
}]]);
			server:command("load_module e2e_shell_probe", "spam 25000 fill");
			server:wait_for_log("fill done");
		end);
		teardown(function ()
			if server then server:cleanup(); end
		end);

		it("answers in batches over many ticks, and past four reads at once says busy", function ()
			local result = probe(server, "reads");
			assert.truthy(result.busy:match("^false busy: 4 ringbuffer reads are running already"), result.busy);
			assert.equal(4, #result.reads);
			for _, read in ipairs(result.reads) do
				assert.truthy(read.summary:match("^10000 of %d+ matching lines shown$"), read.summary);
				-- 10,000 lines in batches of at most 500 lines, one print each.
				assert.is_true(read.prints.batches >= 20, read.summary);
				assert.is_true(read.prints.most <= 500);
				-- Other main-loop work ran between them (a timer due at once, counting turns of
				-- the loop, advanced; on 13 it runs every other turn).
				assert.is_true(read.prints.ticks >= read.prints.batches / 2,
					("%d ticks, %d batches"):format(read.prints.ticks, read.prints.batches));
			end
			assert.equal("admitted", result.again);
		end);

		it("compiles its pattern off the main loop and says why a bad one is refused", function ()
			local output = server:shell([[ringbuffer:grep("(unclosed", { sink = "main" })]]);
			assert.truthy(output:find("Error: invalid regular expression: regex parse error:", 1, true), output);
			output = server:shell([[ringbuffer:grep("(?:\\w{40}){20}", { sink = "main" })]]);
			assert.truthy(output:find("Error: invalid regular expression: Compiled regex exceeds size limit", 1, true), output);
			-- Their places were given back: four reads at once are admitted.
			assert.equal(4, probe(server, "gone").admitted);
		end);

		it("is cancelled when its shell says it went away, and gives its place back", function ()
			local result = probe(server, "gone");
			assert.equal("the shell went away", result.ended);
			assert.equal(4, result.admitted);
		end);

		it("leaves out the admin shell's own lines, unless shell = true", function ()
			local function shell_sources(output)
				local found = {};
				for line in output:gmatch("[^\n]+") do
					local source = line:match("^%S+ %S+ %S+ ([^\t]+)\t");
					-- (runner… lines are left out too, but other modules have runners: not checked.)
					if source and (source:match("^admin%x+$") or source:match("^conn")
						or source == "adminstream" or source == "mod_admin_socket") then
						table.insert(found, source);
					end
				end
				return found;
			end
			server:shell("ringbuffer:status()"); -- another shell connection just before
			local output = server:shell([[ringbuffer:tail(5, { sink = "main" })]]);
			assert.truthy(output:find("OK: 5 of ", 1, true), output);
			assert.same({}, shell_sources(output), output);
			local with = server:shell([[ringbuffer:tail(5, { sink = "main", shell = true })]]);
			assert.is_true(#shell_sources(with) > 0, with);
		end);

		it("is cancelled when its admin-socket client disconnects mid-answer", function ()
			local function cancelled()
				local output = server:shell([[ringbuffer:grep("cancelled: its shell went away", { sink = "main" })]]);
				return tonumber(output:match("OK: %d+ of (%d+) matching lines shown"));
			end
			local before = assert(cancelled());
			ask_and_leave(server, [[ringbuffer:grep(".", { limit = 10000, sink = "main" })]]);
			prosody.wait_for(function () return cancelled() > before; end, 10, "the read to be cancelled");
		end);
	end);
end
