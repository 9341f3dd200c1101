-- Runs a real, throwaway Prosody (0.11, 0.12, 13.0.1 or the newest 13.0.x, all unpacked into
-- .deps/ by scripts/setup-deps.sh) with the module installed by `make install-plugin`, for the
-- end-to-end specs. Which versions the specs loop over (`prosody.versions()`) is the runner's
-- choice: E2E_PROSODY, e.g. "0.12 13-newest" (default "0.12 13").
-- Instances live in $TMPDIR (default /tmp) and listen on free loopback ports, so runs can overlap.
-- Each instance's PIDs are recorded in <instance>/launched.pid, so that scripts/run-e2e.sh can
-- stop whatever an interrupted run left behind.
local prosody_config = require "spec.helpers.prosody_config";

local root = os.getenv("PWD");
local deps = os.getenv("DEPS") or (root .. "/.deps");
local plugins = os.getenv("E2E_PLUGIN_DIR") or (root .. "/target/e2e-plugins");
-- 0.11 runs on Lua 5.2: the plugin folder with the library built for it.
local plugins_lua52 = os.getenv("E2E_PLUGIN_DIR_LUA52") or (root .. "/target/e2e-plugins-lua52");
local tmpdir = os.getenv("TMPDIR");
if tmpdir == nil or tmpdir == "" then tmpdir = "/tmp"; end

-- `lua` is the interpreter command (with its environment), `modules` what the config enables
-- besides the module, `shell` the console module.
local prosody = {};
prosody.__index = prosody;

local function tree(name, lua, modules, shell)
	local dir = deps .. "/" .. name;
	return {
		tree = dir,
		command = lua .. " " .. dir .. "/usr/bin/prosody",
		ctl = lua .. " " .. dir .. "/usr/bin/prosodyctl",
		modules = modules,
		shell = shell or "admin_shell",
		plugins = plugins,
	};
end
local tree011 = deps .. "/prosody011";
-- Bullseye's libssl1.1 and libidn11 for its C modules, bullseye's lua-bitop for Lua 5.2.
local lua52 = ("env LD_LIBRARY_PATH=%s/usr/lib/x86_64-linux-gnu:%s/lib/x86_64-linux-gnu "
	.. "LUA_CPATH_5_2='%s/usr/lib/x86_64-linux-gnu/lua/5.2/?.so;;' lua5.2"):format(tree011, tree011, tree011);
local versions = {
	["0.11"] = tree("prosody011", lua52, '"posix", ', "admin_telnet"),
	["0.12"] = tree("prosody012", "lua5.4", '"posix", '),
	["13"] = tree("prosody13", "lua5.4", ""),
	["13-newest"] = tree("prosody13-newest", "lua5.4", ""),
};
versions["0.11"].plugins = plugins_lua52;
prosody.known_versions = versions;


local function sh(command)
	local ok = os.execute(command);
	return ok;
end

local function read(path)
	local f = io.open(path, "rb");
	if not f then return nil; end
	local text = f:read("a");
	f:close();
	return text;
end
prosody.read = read;

local function sleep(seconds)
	sh(("sleep %.2f"):format(seconds));
end
prosody.sleep = sleep;

-- The whole lines of `text` (each without its "\n"; an unfinished last line is left out), in
-- linear time. (`text:gmatch("([^\n]*)\n")` takes time quadratic in the length of a stretch
-- without "\n": hours on a dump file being written, whose reserved region reads as NUL bytes.)
function prosody.lines(text)
	local at = 1;
	return function ()
		local newline = text:find("\n", at, true);
		if not newline then return nil; end
		local line = text:sub(at, newline - 1);
		at = newline + 1;
		return line;
	end
end

-- The wall clock, in seconds with fractions: the clock Prosody stamps its lines from.
function prosody.clock()
	return require "socket".gettime();
end

-- Waits until the wall clock is past `time`: for a gap a spec makes on purpose (lines growing
-- older than a cutoff), measured on the clock rather than guessed as a sleep.
function prosody.wait_until(time, what)
	return prosody.wait_for(function () return prosody.clock() > time; end,
		math.max(0, time - prosody.clock()) + 10, what or "the clock");
end

-- `n` distinct loopback TCP ports that are free right now (the kernel picks them).
function prosody.free_ports(n)
	local socket = require "socket";
	local servers, ports = {}, {};
	for i = 1, n do
		servers[i] = assert(socket.bind("127.0.0.1", 0));
		local _, port = servers[i]:getsockname();
		ports[i] = assert(tonumber(port));
	end
	for _, server in ipairs(servers) do server:close(); end
	return table.unpack(ports, 1, n);
end

-- Appends a PID to the instance's list for scripts/run-e2e.sh.
local function record_pid(dir, pid)
	local f = io.open(dir .. "/launched.pid", "a");
	if f then
		f:write(pid, "\n");
		f:close();
	end
end

-- Waits until `check()` returns a true value (which it returns), or fails after `timeout` seconds
-- in which it checked at least every 50 ms. (A machine that stalls, e.g. a VM whose CPU time is
-- throttled, can let the whole timeout pass between two checks: time alone would then give up
-- after one look.)
function prosody.wait_for(check, timeout, what)
	timeout = timeout or 10;
	local deadline, checks = os.time() + timeout, 0;
	repeat
		local result = check();
		if result then return result; end
		checks = checks + 1;
		sleep(0.05);
	until os.time() > deadline and checks >= timeout * 10;
	error("timed out waiting for " .. (what or "a condition"), 2);
end

-- `log_config` is the Lua source of the `log = ...` value ($DIR and $DATA are replaced by the
-- instance's folders); `extra` more config lines; `options.daemonize` starts it with -D,
-- `options.umask` under that umask, `options.wrapper` through that command (one that execs
-- the rest of its arguments, e.g. "prlimit --fsize=524288 --"), `options.plugins` with that
-- plugin folder instead of the installed one, `options.modules` with these modules (Lua source,
-- e.g. '"e2e_upstream", ') enabled too.
function prosody.start(version, log_config, extra, options)
	options = options or {};
	local v = assert(versions[version], "unknown Prosody version " .. tostring(version));
	-- options.dir: start again in the dir of an instance that has stopped (or been killed).
	local dir = options.dir or io.popen(("mktemp -d '%s/lrb-e2e-XXXXXX'"):format(tmpdir)):read("l");
	local self = setmetatable({ version = version, dir = dir, data = options.data or (dir .. "/data") }, prosody);
	os.remove(dir .. "/prosody.pid");
	sh(("mkdir -p %s %s/certs"):format(self.data, dir)); -- an empty certs dir: no certmanager error
	self.c2s_port, self.s2s_port, self.console_port = prosody.free_ports(3);
	log_config = log_config:gsub("%$DATA", self.data):gsub("%$DIR", dir);
	local config = prosody_config.render({
		dir = dir, data = self.data, plugin_paths = { options.plugins or v.plugins, root .. "/spec/e2e/plugins" },
		c2s_port = self.c2s_port, s2s_port = self.s2s_port, console_port = self.console_port,
		modules = ("%s%s\"log_ringbuffer\", \"e2e_control\", \"%s\""):format(v.modules, options.modules or "", v.shell),
		log = log_config, tail = extra or "",
	});
	self.config = dir .. "/prosody.cfg.lua";
	local f = assert(io.open(self.config, "w"));
	f:write(config);
	f:close();
	-- With -D the launcher returns once Prosody has forked (run in the background, Prosody's
	-- parent would be init and it would think it was daemonized already).
	-- The launcher's PID is recorded before it runs (exec keeps it), the daemon's once known.
	local launcher = ("sh -c 'echo $$ >> %s/launched.pid && exec \"$@\"' prosody %s%s"):format(dir,
		options.wrapper and (options.wrapper .. " ") or "", v.command);
	sh(("cd %s && umask %s && %s %s --config %s > %s/stdout 2>&1 %s"):format(dir, options.umask or "022",
		launcher, options.daemonize and "-D" or "-F", self.config, dir, options.daemonize and "" or "&"));
	self.pid = prosody.wait_for(function ()
		local pid = read(dir .. "/prosody.pid");
		return pid and pid:match("%d+");
	end, 15, "Prosody " .. version .. " to start (see " .. dir .. "/stdout)");
	if options.daemonize then -- the pidfile is written again by the daemon, with its own PID
		local first = read(dir .. "/launched.pid"):match("%d+");
		self.pid = prosody.wait_for(function ()
			local pid = (read(dir .. "/prosody.pid") or ""):match("%d+");
			return pid ~= first and pid;
		end, 15, "the daemon's PID in " .. dir .. "/prosody.pid");
	end
	record_pid(dir, self.pid);
	-- The log sink and the control plugin are ready once a control command round-trips.
	self:command("log info e2e started");
	return self;
end

-- Runs control commands (see mod_e2e_control) and waits until they have run.
function prosody:command(...)
	local text = table.concat({ ... }, "\n") .. "\n";
	local before = #(read(self.data .. "/control.done") or "");
	local f = assert(io.open(self.data .. "/control.tmp", "w"));
	f:write(text);
	f:close();
	assert(os.rename(self.data .. "/control.tmp", self.data .. "/control"));
	prosody.wait_for(function ()
		return #(read(self.data .. "/control.done") or "") >= before + #text;
	end, 10, "control commands to run");
end

-- Runs one command in 0.11's console (mod_admin_telnet, on a loopback port); returns its output.
function prosody:telnet(command)
	local socket = require "socket";
	local conn = assert(socket.connect("127.0.0.1", self.console_port));
	conn:settimeout(20);
	local function until_nul()
		local got = {};
		repeat
			local byte = assert(conn:receive(1));
			if byte ~= "\0" then table.insert(got, byte); end
		until byte == "\0";
		return table.concat(got);
	end
	until_nul(); -- the banner
	assert(conn:send(command .. "\n"));
	local output = until_nul();
	conn:close();
	return output;
end

-- Runs one admin shell command through prosodyctl (0.11: its console); returns its output.
function prosody:shell(command)
	if versions[self.version].shell == "admin_telnet" then
		return self:telnet(command);
	end
	local ctl = versions[self.version].ctl;
	local pipe = io.popen(("cd %s && timeout 20 %s --config %s shell %q 2>&1"):format(self.dir, ctl, self.config, command));
	local output = pipe:read("a");
	pipe:close();
	return output;
end

-- Runs prosodyctl against the instance's config, each argument passed as one; returns its
-- output and exit code.
function prosody:ctl(...)
	local args = {};
	for i, arg in ipairs({ ... }) do args[i] = ("%q"):format(arg); end
	local pipe = io.popen(("cd %s && timeout 20 %s --config %s %s 2>&1; echo \"exit=$?\""):format(
		self.dir, versions[self.version].ctl, self.config, table.concat(args, " ")));
	local output = pipe:read("a");
	pipe:close();
	local code = tonumber(output:match("exit=(%d+)\n$"));
	return (output:gsub("exit=%d+\n$", "")), code;
end

function prosody:signal(name)
	assert(sh(("kill -%s %s"):format(name, self.pid)), "kill failed");
end

-- Replaces the one occurrence of the pattern `from` in the server's config file with `to`.
function prosody:rewrite_config(from, to)
	local text = read(self.config);
	local new, n = text:gsub(from, to);
	assert(n == 1, "config text to replace not found: " .. from);
	local f = assert(io.open(self.config, "w"));
	f:write(new);
	f:close();
end

-- Sends a real SIGHUP and waits until Prosody has reloaded its config and logging (the specs'
-- control plugin appends a line to the data file "logging-reloaded" at each reload).
function prosody:sighup()
	local function reloads()
		local _, n = (self:file("logging-reloaded") or ""):gsub("\n", "");
		return n;
	end
	local before = reloads();
	self:signal("HUP");
	prosody.wait_for(function () return reloads() > before; end, 10, "the SIGHUP reload");
end

-- Running (a zombie left for a non-reaping init counts as gone).
function prosody:alive()
	local status = read("/proc/" .. self.pid .. "/status");
	return status ~= nil and not status:match("\nState:%s*Z");
end

-- Native threads of the process.
function prosody:thread_count()
	local n = 0;
	for _ in io.popen("ls /proc/" .. self.pid .. "/task"):lines() do n = n + 1; end
	return n;
end

function prosody:file(name)
	return read(self.data .. "/" .. name);
end

function prosody:log()
	return read(self.dir .. "/prosody.log") or "";
end

-- Waits (up to `timeout` seconds, default 10) until the log contains `text`, as plain text.
function prosody:wait_for_log(text, timeout)
	return prosody.wait_for(function () return self:log():find(text, 1, true); end, timeout or 10, text);
end

-- Files in the data directory whose names match the Lua pattern.
function prosody:files(pattern)
	local found = {};
	for name in io.popen("ls " .. self.data):lines() do
		if name:match(pattern) then table.insert(found, name); end
	end
	table.sort(found);
	return found;
end

-- SIGTERM, then wait for the process to be gone; returns the launcher's output.
function prosody:stop()
	if self:alive() then
		self:signal("TERM");
		prosody.wait_for(function () return not self:alive(); end, 15, "Prosody to stop");
	end
	return read(self.dir .. "/stdout") or "";
end

function prosody:cleanup()
	if self:alive() then self:signal("KILL"); end
	sh("chattr -i " .. self.data .. "/* 2>/dev/null"); -- a failed permission test may leave one
	sh("rm -rf " .. self.dir);
end

-- The versions the specs run on: E2E_PROSODY's, else 0.12 and 13.0.1.
function prosody.versions()
	local chosen = {};
	for version in (os.getenv("E2E_PROSODY") or "0.12 13"):gmatch("[^%s,]+") do
		assert(versions[version], "E2E_PROSODY: unknown Prosody version " .. version);
		table.insert(chosen, version);
	end
	return chosen;
end

-- The version number the unpacked tree of `version` says it is (e.g. "13.0.7").
function prosody.release(version)
	local text = read(versions[version].tree .. "/usr/lib/prosody/prosody.version") or version;
	return (text:gsub("%s+$", ""));
end

return prosody;
