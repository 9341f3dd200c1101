-- End to end: `persist` in real Prosody 0.12 and 13. A sink's ring outlives the process: a
-- Prosody killed with SIGKILL while it logs at full speed leaves its lines in the ring file, and
-- the next start dumps exactly the newest lines the ring's bound allows (in order, none
-- duplicated, a line cut off as it was written counted in the note). A clean shutdown leaves
-- nothing to recover. Hostile ring files are moved aside with a warning; a second Prosody on the
-- same data directory runs without persistence and leaves the first one's file alone.
local prosody = require "spec.helpers.prosody";

local BOUND, BURST, ROUNDS = 5000, 20000, 10;

local function sh(command)
	assert(os.execute(command), command);
end

local function write(path, text)
	local f = assert(io.open(path, "wb"));
	f:write(text);
	f:close();
end

local function log_config(sinks)
	return ([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	%s
}]]):format(sinks);
end

-- A persisted sink `name` whose dumps go to <data>/dump-<name>-{pid}-{count}.log.
local function sink(name, more)
	return ([[{ to = "ringbuffer", name = %q, persist = true, lines = %d, filename_template = "$DATA/dump-%s-{pid}-{count}.log"%s };]])
		:format(name, BOUND, name, more or "");
end

-- A Prosody instance in `dir` (made if nil), with the log config `log`, started or started
-- again there; `data` another data directory to use. It can log bursts (mod_e2e_burst).
local function start(version, log, dir, data)
	return prosody.start(version, log, nil, { dir = dir, data = data, modules = '"e2e_burst", ' });
end

local function kill9(server)
	server:signal("KILL");
	prosody.wait_for(function () return not server:alive(); end, 15, "Prosody to die");
end

-- The dump file in the data dir that says it recovered the lines of PID `pid`, and its lines.
local function recovered_dump(server, pid)
	local note = ("-- Recovered from PID %d, which ended without a clean shutdown"):format(pid);
	local text = prosody.wait_for(function ()
		for _, name in ipairs(server:files("^dump%-")) do
			local text = server:file(name) or "";
			if text:find(note, 1, true) and text:find("-- End of dump --\n", 1, true) then return text; end
		end
	end, 20, "the recovery dump of PID " .. pid);
	local lines, notes = {}, {};
	for line in prosody.lines(text) do
		if line:match("^%-%- ") then
			table.insert(notes, line);
		elseif line ~= "" then
			table.insert(lines, line);
		end
	end
	return lines, table.concat(notes, "\n"), text;
end

local function octal(path)
	local pipe = io.popen("stat -c %a " .. path);
	local mode = pipe:read("l");
	pipe:close();
	return mode;
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", a persisted sink", function ()
		local server;
		after_each(function ()
			if server then server:cleanup(); end
			server = nil;
		end);

		it("recovers after SIGKILL exactly the newest lines its bound allows, " .. ROUNDS .. " times; a clean stop leaves nothing", function ()
			local log = log_config(sink("main"));
			server = start(version, log);
			local ring = server.data .. "/ringbuffer-main.ring";
			assert.equal("600", octal(ring));
			assert.truthy(server:shell("ringbuffer:status()"):find("persisted to " .. ring, 1, true));
			math.randomseed(os.time());
			-- How long a burst takes here and now (a loaded machine is slower), so that the kill
			-- can come at a random moment within it.
			local function burst(tag)
				write(server.data .. "/burst-tag", ("%s %d\n"):format(tag, BURST));
				os.remove(server.data .. "/burst-progress");
				server:command("fire e2e/burst");
			end
			burst("r0");
			local took = prosody.wait_for(function ()
				local logged, seconds = (server:file("burst-progress") or ""):match("^r0 (%d+) (%S+)");
				return logged == tostring(BURST) and tonumber(seconds);
			end, 30, "a whole burst");
			for round = 1, ROUNDS do
				local tag = ("r%d"):format(round);
				burst(tag);
				require "socket".sleep(math.random() * took);
				local progress = 0;
				local killed = tonumber(server.pid);
				kill9(server);
				local p = server:file("burst-progress") or "";
				progress = tonumber(p:match("^" .. tag .. " (%d+)")) or progress;
				server = start(version, log, server.dir);
				local lines, notes = recovered_dump(server, killed);
				-- The lines of this round's burst: contiguous, in order, ending where the kill came.
				local first, last, count = nil, nil, 0;
				for _, line in ipairs(lines) do
					local n = line:match("\t" .. tag .. " (%d+)$");
					if n then
						n = tonumber(n);
						if last then assert.equal(last + 1, n, "round " .. round .. ": in order, none missing or twice"); end
						first, last, count = first or n, n, count + 1;
					else
						assert.falsy(line:find("\t" .. tag .. " ", 1, true), "a torn line was trusted: " .. line);
					end
				end
				assert.truthy((last or 0) >= progress, ("round %d: logged through %d before the kill, recovered through %s")
					:format(round, progress, tostring(last)));
				if (last or 0) >= BOUND then
					assert.equal(BOUND, #lines, "round " .. round .. ": exactly the bound");
					assert.equal(last, tonumber(lines[#lines]:match(" (%d+)$")), "the newest line last");
				else
					assert.equal(last or 0, count, "round " .. round .. ": every line of the burst from the first");
				end
				local torn = notes:match("; (%d+) line cut off as it was written");
				io.stderr:write(("persist %s round %d: logged through %d before SIGKILL; recovered %d lines, %s %s..%s; torn %s\n")
					:format(version, round, progress, #lines, tag, tostring(first), tostring(last), torn or "0"));
				assert.truthy(torn == nil or torn == "1", notes);
				assert.truthy(server:log():find("Recovered from PID " .. killed, 1, true));
			end
			-- A clean stop: no recovery dump at the next start.
			local stopped = tonumber(server.pid);
			server:stop();
			server = start(version, log, server.dir);
			server:command("log info after a clean stop");
			assert.falsy(server:log():find("Recovered from PID " .. stopped, 1, true));
			for _, name in ipairs(server:files("^dump%-")) do
				assert.falsy((server:file(name) or ""):find("Recovered from PID " .. stopped, 1, true), name);
			end
		end);

		it("names the daemon's PID when Prosody forked at start (-D)", function ()
			local log = log_config(sink("main"));
			server = prosody.start(version, log, nil, { daemonize = true });
			server:command("log debug logged by the daemon");
			local daemon = tonumber(server.pid);
			local ring = assert(server:file("ringbuffer-main.ring"));
			assert.equal(daemon, string.unpack("<I4", ring, 33), "the PID in the ring file's header");
			kill9(server);
			server = start(version, log, server.dir);
			local _, _, text = recovered_dump(server, daemon);
			assert.truthy(text:find("\tlogged by the daemon\n", 1, true), text);
		end);

		it("moves hostile ring files aside with a warning and runs; a second Prosody leaves the first's file alone", function ()
			-- A valid ring file of sink "main" to copy from.
			server = start(version, log_config(sink("main")));
			server:command("log debug a line for the file");
			server:stop();
			local valid = assert(server:file("ringbuffer-main.ring"));
			local data = server.data;
			local cases = {
				truncated = function (p) write(p, valid:sub(1, 100)); end;
				zeroes = function (p) write(p, ("\0"):rep(#valid)); end;
				random = function (p) sh(("head -c %d /dev/urandom > %s"):format(#valid, p)); end;
				version = function (p) write(p, valid:sub(1, 8) .. "\2" .. valid:sub(10)); end;
				other = function (p) write(p, valid); end;
				link = function (p) sh(("ln -s %s/ringbuffer-main.ring %s"):format(data, p)); end;
				mode = function (p) write(p, valid); sh("chmod 644 " .. p); end;
				owner = function (p) write(p, valid); sh("chown 65534 " .. p); end;
				fifo = function (p) sh("mkfifo " .. p); end;
			};
			local names, sinks = {}, {};
			for name, make in pairs(cases) do
				local path = ("%s/ringbuffer-%s.ring"):format(data, name);
				make(path);
				if name ~= "link" and name ~= "fifo" then sh("chmod " .. (name == "mode" and "644 " or "600 ") .. path); end
				table.insert(names, name);
				table.insert(sinks, sink(name));
			end
			table.insert(sinks, sink("main"));
			server = start(version, log_config(table.concat(sinks, "\n\t")), server.dir);
			server:command("log debug still running");
			local log = server:log();
			for _, name in ipairs(names) do
				local path = ("%s/ringbuffer-%s.ring"):format(data, name);
				assert.truthy(log:find("Ring file " .. path .. " cannot be trusted", 1, true), name .. ":\n" .. log);
				assert.truthy(os.execute(("test -e %s.corrupt -o -L %s.corrupt"):format(path, path)), name);
				assert.equal("600", octal(path), name);
			end
			assert.falsy(server:file("ringbuffer-main.ring.corrupt"), "main's own file is trusted");
			assert.falsy(log:find("ringbuffer-main.ring cannot be trusted", 1, true), "the link's target is not moved");

			-- A second Prosody on the same data directory.
			local first_pid = tonumber(server.pid);
			local before = server:file("ringbuffer-main.ring");
			local second = start(version, log_config(sink("main")), nil, data);
			local ok, err = pcall(function ()
				second:wait_for_log("another process holds it");
				local after = server:file("ringbuffer-main.ring");
				assert.equal(#before, #after);
				assert.equal(before:sub(1, 32), after:sub(1, 32));
				assert.equal(first_pid, string.unpack("<I4", after, 33), "the first one's PID stays in its file");
				assert.falsy(os.execute(("test -e %s/ringbuffer-main.ring.corrupt"):format(data)));
				second:stop();
			end);
			second:cleanup();
			assert(ok, err);
			assert.truthy(server:alive());
		end);
	end);
end
