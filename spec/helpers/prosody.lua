-- Runs a real, throwaway Prosody (0.12 or 13, both unpacked into .deps/ by scripts/setup-deps.sh)
-- with the module installed by `make install-plugin`, for the end-to-end specs.
-- Instances live in $TMPDIR (default /tmp) and listen on free loopback ports, so runs can overlap.
-- Each instance's PIDs are recorded in <instance>/launched.pid, so that scripts/run-e2e.sh can
-- stop whatever an interrupted run left behind.
local root = os.getenv("PWD");
local deps = os.getenv("DEPS") or (root .. "/.deps");
local plugins = os.getenv("E2E_PLUGIN_DIR") or (root .. "/target/e2e-plugins");
local tmpdir = os.getenv("TMPDIR");
if tmpdir == nil or tmpdir == "" then tmpdir = "/tmp"; end

local function tree(name)
	return {
		command = "lua5.4 " .. deps .. "/" .. name .. "/usr/bin/prosody",
		ctl = "lua5.4 " .. deps .. "/" .. name .. "/usr/bin/prosodyctl",
	};
end
local versions = { ["0.12"] = tree("prosody012"), ["13"] = tree("prosody13") };
versions["0.12"].modules = '"posix", ';
versions["13"].modules = "";

local prosody = {};
prosody.__index = prosody;

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
-- the rest of its arguments, e.g. "prlimit --fsize=524288 --").
function prosody.start(version, log_config, extra, options)
	options = options or {};
	local v = assert(versions[version], "unknown Prosody version " .. tostring(version));
	local dir = io.popen(("mktemp -d '%s/lrb-e2e-XXXXXX'"):format(tmpdir)):read("l");
	local self = setmetatable({ version = version, dir = dir, data = dir .. "/data" }, prosody);
	sh(("mkdir -p %s %s/certs"):format(self.data, dir)); -- an empty certs dir: no certmanager error
	self.c2s_port, self.s2s_port = prosody.free_ports(2);
	log_config = log_config:gsub("%$DATA", self.data):gsub("%$DIR", dir);
	local config = ([[
run_as_root = true
pidfile = "%s/prosody.pid"
data_path = "%s"
certificates = "%s/certs"
plugin_paths = { "%s", "%s/spec/e2e/plugins" }
c2s_ports = { %d }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { %d }
s2s_interfaces = { "127.0.0.1" }
http_ports = {}
https_ports = {}
modules_enabled = { %s"log_ringbuffer", "e2e_control", "admin_shell" }
log = %s
%s
VirtualHost "localhost"
]]):format(dir, self.data, dir, plugins, root, self.c2s_port, self.s2s_port, v.modules, log_config, extra or "");
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

-- Runs one admin shell command through prosodyctl; returns its output.
function prosody:shell(command)
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

-- Waits (up to 10 seconds) until the log contains `text`, as plain text.
function prosody:wait_for_log(text)
	return prosody.wait_for(function () return self:log():find(text, 1, true); end, 10, text);
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

function prosody.versions()
	return { "0.12", "13" };
end

return prosody;
