-- Runs a real, throwaway rsyslogd (Debian's `rsyslog` with `rsyslog-gnutls`) as a syslog
-- collector for the forwarding specs and bench/forward.lua. Each instance has a temp dir of its
-- own under $TMPDIR (default /tmp) holding its config, work directory, pidfile, certificates
-- and what it received; it listens only on loopback ports picked when it starts and on a unix
-- socket in that dir. The machine's syslog (/dev/log, /etc/rsyslog.conf, a system rsyslog
-- service) is never used or touched.
--
--   local collector = rsyslog.start();
--   collector.udp_port, collector.tcp_port, collector.tls_port  -- imudp, imtcp, imtcp + TLS
--   collector.socket      -- a unix datagram socket read as /dev/log is (imuxsock)
--   collector.stream_socket  -- a unix stream socket (imptcp; LF framing or octet counting)
--   collector.ca_file     -- the CA that signed the TLS input's certificate (localhost, 127.0.0.1)
--   collector:records("tcp")  -- what arrived on one input ("unix", "udp", "tcp", "tls", "stream"), oldest
--                            -- first: one table per message, see `template` below
--   collector:pause(), :resume(), :kill(), :stop(), :restart(), :cleanup()
--
-- Every message is stored as one JSON object per line (rsyslog's own JSON escaping, read back
-- with lua-cjson), so messages holding tabs or newlines come back byte for byte:
--   raw       %rawmsg%: the message as received (TCP: without the octet count and its space)
--   msg       %msg%: RFC 5424: the MSG part, without the space before it; the unix socket's
--             local form (and RFC 3164 over UDP): what follows "TAG:", *with* its leading space
--   pri, hostname, app, procid, msgid, sd, tag, time (timereported as RFC 3339), protocol
--             (1 for RFC 5424, 0 for the legacy forms)
-- Control characters are stored as received (parser.escapeControlCharactersOnReceive="off";
-- rsyslog's default would turn a tab into "#011"), and messages up to 256 KiB are whole
-- (maxMessageSize; the default 8 KiB would cut longer ones).
--
-- The rsyslogd process is stopped only by the PID recorded when it started (and only while
-- its command line still names the instance's config). A watchdog process (sh, in a session
-- of its own) removes the instance and kills its rsyslogd when the Lua process that started it
-- is gone, so an interrupted run or a crashed spec leaves nothing behind; the PIDs are also
-- listed in <dir>/launched.pid for scripts/run-e2e.sh. Several instances, and several runs at
-- once, do not interfere.
local prosody = require "spec.helpers.prosody";
local cjson = require "cjson.safe";

local rsyslog = {};
rsyslog.__index = rsyslog;

-- The binary and (if not the installed package's) its module dir: $RSYSLOGD and
-- $RSYSLOG_MODDIR if set, else rsyslog unpacked into $DEPS/rsyslog (`dpkg -x` of the rsyslog
-- and rsyslog-gnutls packages, as scripts/setup-deps.sh does with Prosody) if there, else the
-- installed /usr/sbin/rsyslogd.
local binary = os.getenv("RSYSLOGD");
local module_dir = os.getenv("RSYSLOG_MODDIR");
if not binary then
	local deps = os.getenv("DEPS") or ((os.getenv("PWD") or ".") .. "/.deps");
	local unpacked = deps .. "/rsyslog/usr/sbin/rsyslogd";
	local f = io.open(unpacked);
	if f then
		f:close();
		binary = unpacked;
		local p = io.popen("ls -d '" .. deps .. "'/rsyslog/usr/lib/*/rsyslog 2>/dev/null");
		module_dir = module_dir or p:read("l");
		p:close();
	else
		binary = "/usr/sbin/rsyslogd";
	end
end

local tmpdir = os.getenv("TMPDIR");
if tmpdir == nil or tmpdir == "" then tmpdir = "/tmp"; end

local read = prosody.read;

local function sh(command)
	local ok = os.execute(command);
	return ok;
end

local function write(path, text)
	local f = assert(io.open(path, "w"));
	f:write(text);
	f:close();
end

local function quote(s)
	return "'" .. s:gsub("'", "'\\''") .. "'";
end

-- Whether rsyslogd and its TLS driver are installed (scripts/setup-deps.sh installs them).
function rsyslog.available()
	local f = io.open(binary);
	if not f then return false, binary .. " is missing (apt-get install rsyslog rsyslog-gnutls)"; end
	f:close();
	local dir = module_dir or "/usr/lib/x86_64-linux-gnu/rsyslog";
	local probe = io.popen("ls " .. quote(dir) .. " /usr/lib/*/rsyslog 2>/dev/null");
	local listing = probe:read("a");
	probe:close();
	if not listing:find("lmnsd_gtls.so", 1, true) then
		return false, "rsyslog's gtls driver is missing (apt-get install rsyslog-gnutls)";
	end
	return true;
end

-- A free loopback UDP port (the kernel picks it).
local function free_udp_port()
	local socket = require "socket";
	local udp = assert(socket.udp());
	assert(udp:setsockname("127.0.0.1", 0));
	local _, port = udp:getsockname();
	udp:close();
	return assert(tonumber(port));
end

-- The sockets (inode numbers) process `pid` holds open.
local function sockets_of(pid)
	local held = {};
	local ls = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null");
	for inode in ls:read("a"):gmatch("socket:%[(%d+)%]") do held[inode] = true; end
	ls:close();
	return held;
end

-- Whether one of the sockets `held` is in state `state` (hex, /proc/net/tcp's "st" column: 0A
-- is LISTEN, 07 an unconnected UDP socket) and bound to 127.0.0.1:port in the table `file`.
-- (Another process's socket on that port does not count.)
local function bound(held, file, port, state)
	local text = read(file) or "";
	local wanted = ("0100007F:%04X"):format(port);
	for local_address, st, inode in text:gmatch("\n%s*%d+: (%x+:%x+) %x+:%x+ (%x%x) %x+:%x+ %x+:%x+ %x+%s+%d+%s+%d+%s+(%d+)") do
		if local_address == wanted and st == state and held[inode] then return true; end
	end
	return false;
end

-- Whether one of the sockets `held` is the unix socket at `path`.
local function bound_unix(held, path)
	for inode, at in (read("/proc/net/unix") or ""):gmatch("\n%x+: %x+ %x+ %x+ %x+ %x+%s+(%d+) ([^\n]*)") do
		if at == path and held[inode] then return true; end
	end
	return false;
end

-- A CA and a server certificate for localhost and 127.0.0.1 signed by it (P-256 keys: fast to
-- make), plus a second, unrelated CA for tests that must fail verification.
local function make_certificates(dir)
	local script = ([[
set -e
cd %s
cat > server.ext <<EOF
subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=mod_log_ringbuffer test CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=unrelated CA"
chmod 600 ca.key server.key other-ca.key
]]):format(quote(dir));
	assert(sh("sh -c " .. quote(script) .. " > " .. quote(dir .. "/openssl.out") .. " 2>&1"),
		"openssl could not make the test certificates: " .. (read(dir .. "/openssl.out") or ""));
end

local inputs = { "unix", "udp", "tcp", "tls", "stream" };
rsyslog.inputs = inputs;

-- The unix input's rate limit (imuxsock's, per sending process, like journald's per service:
-- over `burst` messages in `interval` seconds the rest are dropped); none unless asked for.
local function unix_rate_limit(limit)
	if not limit then return 'RateLimit.Interval="0"'; end
	return ('RateLimit.Interval="%d" RateLimit.Burst="%d"'):format(limit.interval, limit.burst);
end

local function config(self)
	local d = self.dir;
	local rulesets = {};
	for _, name in ipairs(inputs) do
		if self.store == "file" then
			table.insert(rulesets, ('ruleset(name="%s") { action(type="omfile" file="%s/%s.log" template="RSYSLOG_FileFormat") }')
				:format(name, d, name));
		else
			table.insert(rulesets, ('ruleset(name="%s") { action(type="omfile" file="%s/%s.jsonl" template="record") }')
				:format(name, d, name));
		end
	end
	-- One worker: with more, batches can be written out of order.
	local queue = self.store == "file" and "" or 'main_queue(queue.workerThreads="1")';
	return ([[
# Written by spec/helpers/rsyslog.lua for one test run; removed with its folder.
global(
	workDirectory="%s/work"
	maxMessageSize="256k"
	parser.escapeControlCharactersOnReceive="off"
	defaultNetstreamDriverCAFile="%s/ca.pem"
	defaultNetstreamDriverCertFile="%s/server.pem"
	defaultNetstreamDriverKeyFile="%s/server.key"
)
%s
module(load="imuxsock" SysSock.Use="off")
module(load="imudp")
module(load="imtcp" maxSessions="200")
module(load="imptcp")
template(name="record" type="list" option.jsonf="on") {
	property(outname="raw" name="rawmsg" format="jsonf")
	property(outname="msg" name="msg" format="jsonf")
	property(outname="pri" name="pri" format="jsonf")
	property(outname="hostname" name="hostname" format="jsonf")
	property(outname="app" name="app-name" format="jsonf")
	property(outname="procid" name="procid" format="jsonf")
	property(outname="msgid" name="msgid" format="jsonf")
	property(outname="sd" name="structured-data" format="jsonf")
	property(outname="tag" name="syslogtag" format="jsonf")
	property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
	property(outname="protocol" name="protocol-version" format="jsonf")
}
%s
input(type="imuxsock" Socket="%s" ruleset="unix" %s CreatePath="off")
input(type="imudp" address="127.0.0.1" port="%d" ruleset="udp" RateLimit.Interval="0" rcvbufSize="8m")
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="tcp" streamDriver.name="ptcp")
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="tls" streamDriver.name="gtls"
	streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imptcp" path="%s" ruleset="stream" unlink="on")
# rsyslogd's own messages (errors included)
*.* action(type="omfile" file="%s/internal.log")
]]):format(d, d, d, d, queue, table.concat(rulesets, "\n"), self.socket, unix_rate_limit(self.unix_rate_limit),
		self.udp_port, self.tcp_port, self.tls_port, self.stream_socket, d);
end

-- Removes the instance and kills its rsyslogd once the Lua process that runs this (our
-- parent's parent's... see start) is gone, or returns once the instance dir is gone.
local watchdog = [[
lua=$1 started=$2 dir=$3
alive() { [ "$(sed 's/^.*) //' "/proc/$lua/stat" 2>/dev/null | cut -d' ' -f20)" = "$started" ]; }
while [ -d "$dir" ] && alive; do sleep 0.5; done
[ -d "$dir" ] || exit 0
pid=$(cat "$dir/rsyslogd.pid" 2>/dev/null)
case $pid in
	''|*[!0-9]*) ;;
	*) tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" && kill -KILL "$pid" ;;
esac
# (rsyslogd's shell writes its exit status into the dir right after it dies.)
for _ in $(seq 50); do rm -rf "$dir" 2>/dev/null; [ -d "$dir" ] || break; sleep 0.1; done
]];

-- How a shell's `wait` status reads.
local function exit_status(text)
	local code = tonumber(text:match("%d+"));
	if not code then return "status unknown"; end
	if code > 128 then return ("killed by signal %d"):format(code - 128); end
	return ("exit status %d"):format(code);
end

-- What rsyslogd said about itself: its stdout and stderr, and its own log (internal.log).
function rsyslog:said()
	local d = self.dir;
	return ("its stdout and stderr (%s/stdout):\n%s\nits own log (%s/internal.log):\n%s"):format(
		d, read(d .. "/stdout") or "(none)", d, read(d .. "/internal.log") or "(none)");
end

-- Starts rsyslogd on the instance's config and waits until every input is ready.
--
-- A shell of its own runs rsyslogd as its child, records rsyslogd's PID in rsyslogd.pid, waits
-- for it and writes its `wait` status to rsyslogd.exit-<n> for the n-th launch (both written
-- whole: made under another name, then renamed; numbered, so that the shell of a previous
-- launch cannot be taken for this one's). So an rsyslogd that exits is told by that file, with
-- its status, and not guessed from /proc (where a process in the middle of exec shows an empty
-- command line).
function rsyslog:launch()
	local d = self.dir;
	local args = module_dir and ("-M " .. quote(module_dir) .. " ") or "";
	os.remove(d .. "/rsyslogd.pid");
	self.pid = nil;
	self.launches = (self.launches or 0) + 1;
	self.exit_file = ("%s/rsyslogd.exit-%d"):format(d, self.launches);
	local launcher = [[sh -c 'd=$1 ended=$2; shift 2; echo $$ >> "$d/launched.pid"
"$@" & pid=$!
echo $pid >> "$d/launched.pid"; echo $pid > "$d/rsyslogd.pid.new"; mv "$d/rsyslogd.pid.new" "$d/rsyslogd.pid"
wait $pid; echo $? > "$ended.new"; mv "$ended.new" "$ended"' rsyslogd]];
	assert(sh(("%s %s %s %s -n %s-f %s/rsyslog.conf -i %s/rsyslogd.pidfile < /dev/null >> %s/stdout 2>&1 &")
		:format(launcher, quote(d), quote(self.exit_file), quote(binary), args, d, d, d)));
	local function exited()
		local status = read(self.exit_file);
		if status then error(("rsyslogd exited (%s) before it was ready; %s"):format(exit_status(status), self:said()), 0); end
		-- A port taken meanwhile (by another run): rsyslogd goes on without that input.
		local said = (read(d .. "/stdout") or "") .. (read(d .. "/internal.log") or "");
		if said:find("Address already in use", 1, true) or said:find("[Cc]ould not create %a+ listener") then
			error({ port_taken = true, text = "rsyslogd could not listen on a port; " .. self:said() });
		end
	end
	-- Generous: a machine whose cores are all busy can take seconds to start a process.
	local ok, err = pcall(function ()
		self.pid = prosody.wait_for(function ()
			exited();
			local pid = read(d .. "/rsyslogd.pid");
			return pid and tonumber(pid:match("^%d+"));
		end, 60, "rsyslogd to be launched");
		prosody.wait_for(function ()
			exited();
			if not read(d .. "/rsyslogd.pidfile") then return false; end
			local held = sockets_of(self.pid);
			return bound(held, "/proc/net/tcp", self.tcp_port, "0A") and bound(held, "/proc/net/tcp", self.tls_port, "0A")
				and bound(held, "/proc/net/udp", self.udp_port, "07") and bound_unix(held, self.socket)
				and bound_unix(held, self.stream_socket);
		end, 60, ("rsyslogd to listen on 127.0.0.1 ports %d (tcp), %d (tls), %d (udp) and %s"):format(
			self.tcp_port, self.tls_port, self.udp_port, self.socket));
	end);
	if not ok then
		if type(err) == "table" then error(err, 0); end
		err = tostring(err);
		if err:find("^timed out") then err = err .. "; " .. self:said(); end
		error(err, 0);
	end
end

-- options.tmpdir: where the instance dir is made (default $TMPDIR or /tmp); options.store =
-- "file": each input is written to <dir>/<input>.log the way a stock rsyslog writes files
-- (RSYSLOG_FileFormat: time, host, tag and message, one line each) instead of the JSON records
-- that `records` reads, and rsyslog's main queue keeps its default workers, so messages may be
-- stored out of order (for bench/forward.lua); options.unix_rate_limit = { interval = seconds,
-- burst = messages }: the unix socket drops what a process sends over that limit, as journald does.
function rsyslog.start(options)
	options = options or {};
	assert(rsyslog.available());
	local base = options.tmpdir or tmpdir;
	local dir = io.popen(("mktemp -d %s/lrb-rsyslog-XXXXXX"):format(quote(base))):read("l");
	assert(dir and dir ~= "", "mktemp failed");
	local self = setmetatable({ dir = dir, socket = dir .. "/log.sock", stream_socket = dir .. "/stream.sock", ca_file = dir .. "/ca.pem",
		other_ca_file = dir .. "/other-ca.pem", store = options.store, unix_rate_limit = options.unix_rate_limit }, rsyslog);
	-- The watchdog first, so that nothing made below can outlive this process. In io.popen's
	-- shell, $PPID is this Lua process.
	write(dir .. "/watchdog.sh", watchdog);
	local pipe = io.popen(("lua=$PPID; started=$(sed 's/^.*) //' /proc/$lua/stat | cut -d' ' -f20); \z
		setsid sh %s/watchdog.sh \"$lua\" \"$started\" %s < /dev/null > /dev/null 2>&1 & echo ok"):format(dir, quote(dir)));
	assert(pipe:read("l") == "ok", "could not start the watchdog");
	pipe:close();
	sh("mkdir -p " .. quote(dir .. "/work"));
	make_certificates(dir);
	-- The ports are free when picked, but another process may take one before rsyslogd binds
	-- it: then again on new ones.
	local ok, err;
	for _ = 1, 3 do
		ok, err = pcall(function ()
			self.tcp_port, self.tls_port = prosody.free_ports(2);
			self.udp_port = free_udp_port();
			write(dir .. "/rsyslog.conf", config(self));
			self:launch();
		end);
		if ok or type(err) ~= "table" then break; end
		self:stop();
		os.remove(dir .. "/stdout");
		os.remove(dir .. "/internal.log");
	end
	if not ok then
		self:cleanup();
		error(type(err) == "table" and err.text or err, 0);
	end
	return self;
end

-- Running (a zombie counts as gone) and still ours: not reaped by its shell (which writes
-- rsyslogd.exit-<n> then), and its command line names the instance's dir, or is empty while the
-- shell's child is in the middle of exec'ing rsyslogd.
function rsyslog:alive()
	if not self.pid or read(self.exit_file) then return false; end
	local status = read("/proc/" .. self.pid .. "/status");
	if status == nil or status:match("\nState:%s*Z") then return false; end
	local cmdline = (read("/proc/" .. self.pid .. "/cmdline") or ""):gsub("%z", " ");
	return cmdline == "" or cmdline:find(self.dir .. "/", 1, true) ~= nil;
end

function rsyslog:signal(name)
	assert(self:alive(), "rsyslogd is not running");
	assert(sh(("kill -%s %d"):format(name, self.pid)), "kill failed");
end

-- SIGSTOP: connections are still accepted by the kernel, nothing is read.
function rsyslog:pause() self:signal("STOP"); end
function rsyslog:resume() self:signal("CONT"); end

-- SIGKILL (works on a stopped process too); waits until it is gone.
function rsyslog:kill()
	if self:alive() then self:signal("KILL"); end
	prosody.wait_for(function () return not self:alive(); end, 10, "rsyslogd to die");
	os.remove(self.dir .. "/rsyslogd.pidfile");
end

-- SIGTERM (rsyslogd writes what it holds); waits until it is gone.
function rsyslog:stop()
	if self:alive() then
		if (read("/proc/" .. self.pid .. "/status") or ""):match("\nState:%s*T") then self:resume(); end
		self:signal("TERM");
	end
	prosody.wait_for(function () return not self:alive(); end, 10, "rsyslogd to stop");
	os.remove(self.dir .. "/rsyslogd.pidfile");
end

-- Starts it again, same config, same ports, appending to the same files.
function rsyslog:restart()
	if self:alive() then self:stop(); end
	local ok, err = pcall(self.launch, self);
	if not ok then error(type(err) == "table" and err.text or err, 0); end
end

function rsyslog:cleanup()
	if self:alive() then sh(("kill -KILL %d"):format(self.pid)); end
	if self.pid then -- its shell writes the exit status into the dir: removed once that is done
		pcall(prosody.wait_for, function () return read(self.exit_file); end, 10, "rsyslogd's shell");
	end
	sh("rm -rf " .. quote(self.dir));
end

-- What rsyslogd logged about itself (config errors, TLS failures, ...).
function rsyslog:internal_log()
	return read(self.dir .. "/internal.log") or "";
end

-- The messages stored for an input so far, oldest first (only whole lines of the file).
function rsyslog:records(input)
	local text = read(self.dir .. "/" .. input .. ".jsonl") or "";
	local list = {};
	for line in prosody.lines(text) do
		local record, err = cjson.decode(line);
		assert(record, ("rsyslog stored a line that is not JSON (%s): %s"):format(err, line));
		table.insert(list, record);
	end
	return list;
end

-- Waits until `check(records)` gives a true value (returned), records being records(input).
function rsyslog:wait_for_records(input, check, timeout, what)
	return prosody.wait_for(function ()
		return check(self:records(input));
	end, timeout or 10, what or ("rsyslog's " .. input .. " input"));
end

-- Sends raw bytes over TCP (for tests of the harness itself): `framed` is sent as given.
function rsyslog:send_tcp(framed)
	local socket = require "socket";
	local conn = assert(socket.connect("127.0.0.1", self.tcp_port));
	assert(conn:send(framed));
	conn:close();
end

return rsyslog;
