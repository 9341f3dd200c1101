-- End to end: dump_on_crash in real Prosody 0.12 and 13. A fatal signal (kill -SEGV, kill -ABRT,
-- a real fault in the Lua thread, abort() in C) appends each sink's buffer to its dump file as
-- one whole dump, and Prosody still dies by that very signal. A crash (or kill -9) in the middle
-- of a background dump leaves no NUL bytes, no dump without its end, and no broken compressed
-- file, and the crash dump holds the lines that dump had taken out of the buffer.
--
-- spec/helpers/prosody.lua starts Prosody in the background, which loses its exit status; here
-- it runs under a small shell script that writes the status to a file (a shell reports death by
-- a signal as 128 + its number) and turns core files off. The instance it makes is a helper
-- instance all the same (commands, files, cleanup).
local prosody = require "spec.helpers.prosody";
local prosody_config = require "spec.helpers.prosody_config";
local dumps = require "spec.helpers.dumps";
local socket = require "socket";

local root = os.getenv("PWD");
local tmpdir = os.getenv("TMPDIR");
if tmpdir == nil or tmpdir == "" then tmpdir = "/tmp"; end
-- Each version's launcher, plugin folder and extra modules, as prosody.start uses them.
local known = prosody.known_versions;

local SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV = 4, 6, 7, 8, 11;
local FATAL = { SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV };

-- Faults of the real kind, fired by events: calling the address of a data object (libc's
-- `stdin`, not executable) is a SIGSEGV from the kernel in the Lua thread; abort() is what a C
-- library does when it finds its heap broken.
local crash_plugin = [[
module:set_global();
module:hook_global("e2e/fault", function ()
	package.loadlib("libc.so.6", "stdin")();
end);
module:hook_global("e2e/abort", function ()
	package.loadlib("libc.so.6", "abort")();
end);
-- 30000 lines "<1008 random hex digits> noise <i>", 500 every 10 ms, then "noise done": lines
-- that do not compress much, so a compressed dump of them writes as it goes.
module:hook_global("e2e/noise", function ()
	local i, digits = 0, {};
	module:add_timer(0, function ()
		for _ = 1, 500 do
			i = i + 1;
			if i > 30000 then
				module:log("info", "noise done");
				return;
			end
			for d = 1, 63 do digits[d] = ("%016x"):format(math.random(0, math.maxinteger)); end
			module:log("debug", "%s noise %d", table.concat(digits), i);
		end
		return 0.01;
	end);
end);
]];

local function sh(command)
	assert(os.execute(command), command);
end

local function write(path, text)
	local f = assert(io.open(path, "w"));
	f:write(text);
	f:close();
end

-- Starts Prosody `version` with `log_config` (as for prosody.start) under the status script.
local function start(version, log_config)
	local dir = io.popen(("mktemp -d '%s/lrb-crash-XXXXXX'"):format(tmpdir)):read("l");
	local self = setmetatable({ version = version, dir = dir, data = dir .. "/data" }, prosody);
	sh(("mkdir -p %s %s/certs %s/plugins"):format(self.data, dir, dir));
	write(dir .. "/plugins/mod_e2e_crash.lua", crash_plugin);
	self.c2s_port, self.s2s_port = prosody.free_ports(2);
	log_config = log_config:gsub("%$DATA", self.data):gsub("%$DIR", dir);
	self.config = dir .. "/prosody.cfg.lua";
	write(self.config, prosody_config.render({
		dir = dir, data = self.data,
		plugin_paths = { known[version].plugins, root .. "/spec/e2e/plugins", dir .. "/plugins" },
		c2s_port = self.c2s_port, s2s_port = self.s2s_port,
		modules = known[version].modules .. "\"log_ringbuffer\", \"e2e_control\", \"e2e_crash\"",
		log = log_config,
	}));
	-- The script's PID goes to launched.pid for scripts/run-e2e.sh, as the helper does.
	write(dir .. "/run.sh", ([[
echo $$ >> %s/launched.pid
ulimit -c 0
cd %s
%s -F --config %s > %s/stdout 2>&1
echo $? > %s/status.tmp && mv %s/status.tmp %s/status
]]):format(dir, dir, known[version].command, self.config, dir, dir, dir, dir));
	sh(("sh %s/run.sh > /dev/null 2>&1 &"):format(dir));
	self.pid = prosody.wait_for(function ()
		local pid = prosody.read(dir .. "/prosody.pid");
		return pid and pid:match("%d+");
	end, 15, "Prosody " .. version .. " to start (see " .. dir .. "/stdout)");
	local f = assert(io.open(dir .. "/launched.pid", "a"));
	f:write(self.pid, "\n");
	f:close();
	self:command("log info e2e started");
	return self;
end

-- Hands control commands to mod_e2e_control without waiting for them (the last one crashes).
local function send(server, ...)
	write(server.data .. "/control.tmp", table.concat({ ... }, "\n") .. "\n");
	assert(os.rename(server.data .. "/control.tmp", server.data .. "/control"));
end

-- Waits for Prosody to be gone; returns its exit status as the shell saw it.
local function exit_status(server)
	return tonumber(prosody.wait_for(function ()
		local status = prosody.read(server.dir .. "/status");
		return status and status:match("%d+");
	end, 30, "Prosody to end"));
end

-- The signals of `set` ("SigCgt", "SigBlk") in /proc/<pid>/status (the main thread's for SigBlk).
local function signal_set(server, set)
	local status = assert(prosody.read("/proc/" .. server.pid .. "/status"));
	local mask = tonumber(assert(status:match("\n" .. set .. ":%s*(%x+)")), 16);
	local found = {};
	for _, n in ipairs(FATAL) do
		if (mask >> (n - 1)) & 1 == 1 then table.insert(found, n); end
	end
	return found;
end

-- The only dump in data file `name`: its lines (header and footer left out by dumps.parse).
local function only_dump(server, name)
	local list = dumps.parse(server:file(name));
	assert.equal(1, #list);
	return list[1];
end

-- The dumps in `text`, each a list of its lines with `ended`: "footer", or the line that marks
-- it as failed. Fails on NUL bytes, a header inside a dump, or a dump that never ends.
local function dumps_in(text)
	assert.is_nil(text:find("\0", 1, true), "NUL bytes in the file");
	local list, current = {}, nil;
	for line in prosody.lines(text) do
		if line:match("^%-%- Dumping log buffer at ") then
			assert(current == nil, "a header inside a dump");
			current = {};
		elseif current and (line == "-- End of dump --" or line:match("^%-%- Dump failed: ")) then
			current.ended = line == "-- End of dump --" and "footer" or (line:gsub("%s+$", ""));
			table.insert(list, current);
			current = nil;
		elseif current then
			table.insert(current, line);
		end
	end
	assert(current == nil, "a dump without its footer or a failure mark");
	return list;
end

local one_sink = [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", filename_template = "$DATA/crash-{pid}-{count}.log" };
}]];

math.randomseed(os.time());

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", a fatal signal", function ()
		local server;
		after_each(function ()
			if server then server:cleanup(); end
			server = nil;
		end);

		it("sent with kill -SEGV dumps every sink, and Prosody dies by SIGSEGV", function ()
			server = start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", filename_template = "$DATA/crash-{pid}-{count}.log" };
	{ to = "ringbuffer", level = "info", lines = 3, event = "e2e/dump", filename = "$DATA/second.log" };
	{ to = "ringbuffer", event = "e2e/dump", dump_on_crash = false, filename = "$DATA/off.log" };
}]]);
			-- Handled, and not blocked in the main thread (Prosody 13 blocks the signals it reads
			-- through signalfd, none of these).
			assert.same(FATAL, signal_set(server, "SigCgt"));
			assert.same({}, signal_set(server, "SigBlk"));
			server:command("log debug crash-line 1", "log info crash-line 2", "log warn crash-line 3");
			server:signal("SEGV");
			assert.equal(128 + SIGSEGV, exit_status(server));
			local lines = only_dump(server, ("crash-%s-0.log"):format(server.pid));
			for i = 1, 3 do
				assert.equal(1, dumps.count_matching(lines, "crash%-line " .. i .. "$"));
			end
			assert.matches("^%-%- Fatal signal SIGSEGV, sent by PID %d+ %-%-$", lines[#lines]);
			assert.matches("crash%-line 3$", lines[#lines - 1]);
			assert.equal(0, dumps.count_matching(lines, "may be incomplete"));
			-- The other sink: its own limit and level, and its own file.
			local second = only_dump(server, "second.log");
			assert.equal(4, #second);
			assert.matches("crash%-line 2$", second[2]);
			assert.matches("crash%-line 3$", second[3]);
			assert.matches("^%-%- Fatal signal SIGSEGV", second[4]);
			assert.is_nil(server:file("off.log"));
			assert.falsy(prosody.read(server.dir .. "/stdout"):find("panicked", 1, true));
		end);

		it("sent with kill -ABRT dumps after the last dump's {count}, and Prosody dies by SIGABRT", function ()
			server = start(version, one_sink);
			server:command("log debug before-dump", "fire e2e/dump");
			server:wait_for_log("Dumped");
			server:command("log debug after-dump");
			server:signal("ABRT");
			assert.equal(128 + SIGABRT, exit_status(server));
			local lines = only_dump(server, ("crash-%s-1.log"):format(server.pid));
			assert.equal(1, dumps.count_matching(lines, "after%-dump$"));
			assert.equal(0, dumps.count_matching(lines, "before%-dump$"));
			assert.matches("^%-%- Fatal signal SIGABRT, sent by PID %d+ %-%-$", lines[#lines]);
			assert.equal(1, #dumps.parse(server:file(("crash-%s-0.log"):format(server.pid))));
		end);

		it("from a real fault in the Lua thread dumps, and Prosody dies by SIGSEGV", function ()
			server = start(version, one_sink);
			send(server, "log debug before-fault", "fire e2e/fault");
			assert.equal(128 + SIGSEGV, exit_status(server));
			local lines = only_dump(server, ("crash-%s-0.log"):format(server.pid));
			assert.equal(1, dumps.count_matching(lines, "before%-fault$"));
			assert.equal("-- Fatal signal SIGSEGV --", lines[#lines]);
		end);

		it("from abort() in C dumps, and Prosody dies by SIGABRT", function ()
			server = start(version, one_sink);
			send(server, "log debug before-abort", "fire e2e/abort");
			assert.equal(128 + SIGABRT, exit_status(server));
			local lines = only_dump(server, ("crash-%s-0.log"):format(server.pid));
			assert.equal(1, dumps.count_matching(lines, "before%-abort$"));
			assert.equal("-- Fatal signal SIGABRT, raised by this process --", lines[#lines]);
		end);

		it("with dump_on_crash = false everywhere is not handled: no dump, the same death", function ()
			server = start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", dump_on_crash = false, filename = "$DATA/off.log" };
}]]);
			assert.same({}, signal_set(server, "SigCgt"));
			server:command("log debug not-dumped");
			server:signal("SEGV");
			assert.equal(128 + SIGSEGV, exit_status(server));
			assert.is_nil(server:file("off.log"));
		end);

		it("after the module is unloaded is not handled any more", function ()
			server = start(version, one_sink);
			assert.same(FATAL, signal_set(server, "SigCgt"));
			server:command("unload_module log_ringbuffer");
			prosody.wait_for(function () return #signal_set(server, "SigCgt") == 0; end, 10, "the handlers to go");
			server:signal("ABRT");
			assert.equal(128 + SIGABRT, exit_status(server));
			assert.same({}, server:files("^crash%-"));
		end);

		-- A 32 MiB buffer: its dump takes tens of milliseconds, compressed a few hundred.
		local fill_lines, pad = 30000, 1000;

		-- Fills the buffer with `fill_lines` lines "fill <i>" (after `pad` bytes) and waits for them.
		local function fill(tag)
			server:command(("spam %d %s %d"):format(fill_lines, tag, pad));
			server:wait_for_log(tag .. " done");
		end

		-- The size of the data file `name` (0 if there is none).
		local function size_of(name)
			local f = io.open(server.data .. "/" .. name, "rb");
			if not f then return 0; end
			local size = f:seek("end");
			f:close();
			return size;
		end

		-- Sends the native dump signal; once one of the data files `names` has grown past
		-- `beyond` bytes (the dump has begun), waits up to `within` seconds (a random time) and
		-- sends `signal`.
		local function dump_then(signal, names, beyond, within)
			server:signal("WINCH");
			local deadline = socket.gettime() + 10;
			local function begun()
				for _, name in ipairs(names) do
					if size_of(name) > beyond then return true; end
				end
			end
			while not begun() do
				assert(socket.gettime() < deadline, "the dump did not begin");
				socket.sleep(0.0005);
			end
			socket.sleep(math.random() * within);
			server:signal(signal);
		end

		-- Every line "<tag> <i>" (1 <= i <= fill_lines) in a dump that ended with its footer; the
		-- lines in none must be named as missing by a crash dump.
		local function check_no_line_lost(list, tag)
			local seen, named = {}, 0;
			for _, dump in ipairs(list) do
				for _, line in ipairs(dump) do
					local missing = line:match("^%-%- (%d+) lines taken for a dump that was waiting to be written are missing %-%-$");
					named = named + (tonumber(missing) or 0);
					local i = dump.ended == "footer" and line:match(" " .. tag .. " (%d+)$");
					if i then seen[tonumber(i)] = true; end
				end
			end
			local lost = 0;
			for i = 1, fill_lines do
				if not seen[i] then lost = lost + 1; end
			end
			assert(lost <= named, ("%d lines lost, %d named as missing"):format(lost, named));
		end

		for round = 1, 3 do
			it("during a background dump to the same file leaves only text, every dump ended, no line lost (" .. round .. ")", function ()
				server = start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 32*1024*1024, signal = "SIGWINCH", filename = "$DATA/big.log" };
}]]);
				fill("fill");
				dump_then("SEGV", { "big.log" }, 1000000, 0.015); -- the region is reserved at once
				assert.equal(128 + SIGSEGV, exit_status(server));
				local list = dumps_in(assert(server:file("big.log")));
				assert.matches("^%-%- Fatal signal SIGSEGV, sent by PID %d+ %-%-$", list[#list][#list[#list]]);
				check_no_line_lost(list, "fill");
			end);
		end

		it("during a compressed dump (kill -9) leaves the file decompressing to its earlier dumps", function ()
			server = start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 32*1024*1024, signal = "SIGWINCH", filename = "$DATA/big.log", compress = "zstd" };
}]]);
			server:command("log debug earlier-dump");
			server:signal("WINCH");
			server:wait_for_log("Dumped");
			server:command("fire e2e/noise");
			server:wait_for_log("noise done", 60); -- 30000 random lines: seconds on a busy machine
			local earlier = size_of("big.log.zst");
			dump_then("KILL", { "big.log.zst", (".big.log.zst.%s.part"):format(server.pid) }, earlier, 0.08);
			assert.equal(128 + 9, exit_status(server));
			local path = server.data .. "/big.log.zst";
			assert(os.execute("zstd -q -t " .. path), "zstd -t " .. path);
			local text = io.popen("zstd -q -dc " .. path):read("a");
			local list = dumps_in(text);
			assert.equal(1, dumps.count_matching(list[1], "earlier%-dump$"));
		end);

		it("during a compressed dump (kill -SEGV) leaves the file whole, and the crash dump holds its lines", function ()
			server = start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 32*1024*1024, signal = "SIGWINCH", filename = "$DATA/big.log", compress = "gzip" };
}]]);
			server:command("log debug earlier-dump");
			server:signal("WINCH");
			server:wait_for_log("Dumped");
			server:command("fire e2e/noise");
			server:wait_for_log("noise done", 60); -- 30000 random lines: seconds on a busy machine
			local earlier = size_of("big.log.gz");
			dump_then("SEGV", { "big.log.gz", (".big.log.gz.%s.part"):format(server.pid) }, earlier, 0.08);
			assert.equal(128 + SIGSEGV, exit_status(server));
			local path = server.data .. "/big.log.gz";
			assert(os.execute("gzip -t " .. path), "gzip -t " .. path);
			local list = dumps_in(io.popen("gzip -dc " .. path):read("a"));
			assert.equal(1, dumps.count_matching(list[1], "earlier%-dump$"));
			for _, dump in ipairs(dumps_in(assert(server:file("big.log")))) do
				table.insert(list, dump);
			end
			check_no_line_lost(list, "noise");
		end);
	end);
end
