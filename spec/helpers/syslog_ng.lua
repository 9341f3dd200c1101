-- Runs a real, throwaway syslog-ng (Debian's `syslog-ng-core`, unpacked into $DEPS/syslog-ng by
-- scripts/setup-deps.sh, never installed as a service) as a collector for the forwarding specs.
-- Each instance has a temp dir of its own under $TMPDIR (default /tmp) holding its config,
-- pidfile, persist and control files and what it received; it listens only on loopback ports
-- picked when it starts and on a unix stream socket in that dir. The machine's syslog is never
-- used or touched.
--
--   local collector = syslog_ng.start();
--   collector.network_port  -- network(transport("tcp")): one message per line (LF framing)
--   collector.syslog_port   -- syslog(transport("tcp")): RFC 6587 octet counting
--   collector.socket        -- unix-stream(): one message per line, as syslog-ng's and Vector's
--   collector:messages("network")  -- what arrived on one input ("network", "syslog", "stream"),
--                                  -- oldest first: each message exactly as received, without
--                                  -- its framing (flags(no-parse): the whole message is $MSG)
--   collector:stop(), :cleanup()
--
-- Messages are stored as JSON (syslog-ng's format-json, read back with lua-cjson), so tabs and
-- any other byte come back as sent.
--
-- syslog-ng is stopped only by the PID recorded when it started (and only while its command
-- line still names the instance's dir). A watchdog process (sh, in a session of its own) kills
-- it and removes the instance when the Lua process that started it is gone; the PIDs are also
-- listed in <dir>/launched.pid for scripts/run-e2e.sh.
local prosody = require "spec.helpers.prosody";
local cjson = require "cjson.safe";

local syslog_ng = {};
syslog_ng.__index = syslog_ng;

local deps = os.getenv("DEPS") or ((os.getenv("PWD") or ".") .. "/.deps");
local root = os.getenv("SYSLOG_NG_ROOT") or (deps .. "/syslog-ng");
local binary = root .. "/usr/sbin/syslog-ng";
local libs = ("%s/usr/lib/x86_64-linux-gnu:%s/lib/x86_64-linux-gnu:%s/usr/lib/syslog-ng"):format(root, root, root);

local tmpdir = os.getenv("TMPDIR");
if tmpdir == nil or tmpdir == "" then tmpdir = "/tmp"; end

local read = prosody.read;

local function quote(s)
	return "'" .. s:gsub("'", "'\\''") .. "'";
end

local function write(path, text)
	local f = assert(io.open(path, "w"));
	f:write(text);
	f:close();
end

-- The module dir of the unpacked version (usr/lib/syslog-ng/<version>).
local function module_dir()
	local p = io.popen("ls -d " .. quote(root) .. "/usr/lib/syslog-ng/3.* 2>/dev/null");
	local dir = p:read("l");
	p:close();
	return dir;
end

function syslog_ng.available()
	local f = io.open(binary);
	if not f then return false, binary .. " is missing (make deps unpacks syslog-ng-core there)"; end
	f:close();
	return module_dir() ~= nil, "no syslog-ng module dir under " .. root;
end

syslog_ng.inputs = { "network", "syslog", "stream" };

local function config(self)
	local d = self.dir;
	local version = module_dir():match("(%d+%.%d+)$");
	return ([[
@version: %s
# Written by spec/helpers/syslog_ng.lua for one test run; removed with its folder.
options { stats-freq(0); log-msg-size(262144); keep-timestamp(yes); };
source s_network { network(ip("127.0.0.1") port(%d) transport("tcp") flags(no-parse) log-msg-size(262144)); };
source s_syslog { syslog(ip("127.0.0.1") port(%d) transport("tcp") flags(no-parse) log-msg-size(262144)); };
source s_stream { unix-stream("%s" flags(no-parse) log-msg-size(262144)); };
source s_internal { internal(); };
destination d_network { file("%s/network.jsonl" template("$(format-json --key MSG)\n")); };
destination d_syslog { file("%s/syslog.jsonl" template("$(format-json --key MSG)\n")); };
destination d_stream { file("%s/stream.jsonl" template("$(format-json --key MSG)\n")); };
destination d_internal { file("%s/internal.log"); };
log { source(s_network); destination(d_network); };
log { source(s_syslog); destination(d_syslog); };
log { source(s_stream); destination(d_stream); };
log { source(s_internal); destination(d_internal); };
]]):format(version, self.network_port, self.syslog_port, self.socket, d, d, d, d);
end

-- Kills the instance's syslog-ng and removes the dir once the Lua process that runs this is gone.
local watchdog = [[
lua=$1 started=$2 dir=$3
alive() { [ "$(sed 's/^.*) //' "/proc/$lua/stat" 2>/dev/null | cut -d' ' -f20)" = "$started" ]; }
while [ -d "$dir" ] && alive; do sleep 0.5; done
[ -d "$dir" ] || exit 0
pid=$(cat "$dir/syslog-ng.launched" 2>/dev/null)
case $pid in
	''|*[!0-9]*) ;;
	*) tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" && kill -KILL "$pid" ;;
esac
sleep 0.2
rm -rf "$dir"
]];

-- What syslog-ng said about itself.
function syslog_ng:said()
	local d = self.dir;
	return ("its output:\n%s\nits own log:\n%s"):format(read(d .. "/stdout") or "(none)", read(d .. "/internal.log") or "(none)");
end

-- Whether something accepts connections on 127.0.0.1:port.
local function listening(port)
	local socket = require "socket";
	local conn = socket.tcp();
	conn:settimeout(1);
	local ok = conn:connect("127.0.0.1", port);
	conn:close();
	return ok ~= nil;
end

function syslog_ng.start()
	assert(syslog_ng.available());
	local dir = io.popen(("mktemp -d %s/lrb-syslog-ng-XXXXXX"):format(quote(tmpdir))):read("l");
	assert(dir and dir ~= "", "mktemp failed");
	local self = setmetatable({ dir = dir, socket = dir .. "/stream.sock" }, syslog_ng);
	write(dir .. "/watchdog.sh", watchdog);
	local pipe = io.popen(("lua=$PPID; started=$(sed 's/^.*) //' /proc/$lua/stat | cut -d' ' -f20); \z
		setsid sh %s/watchdog.sh \"$lua\" \"$started\" %s < /dev/null > /dev/null 2>&1 & echo ok"):format(dir, quote(dir)));
	assert(pipe:read("l") == "ok", "could not start the watchdog");
	pipe:close();
	self.network_port, self.syslog_port = prosody.free_ports(2);
	write(dir .. "/syslog-ng.conf", config(self));
	local d = quote(dir);
	assert(os.execute(("LD_LIBRARY_PATH=%s %s -F -f %s/syslog-ng.conf -p %s/syslog-ng.pid -R %s/persist -c %s/ctl \z
		--module-path=%s -e < /dev/null > %s/stdout 2>&1 & echo $! > %s/syslog-ng.launched; echo $! >> %s/launched.pid")
		:format(quote(libs), quote(binary), d, d, d, d, quote(module_dir()), d, d, d)));
	self.pid = assert(tonumber(read(dir .. "/syslog-ng.launched"):match("%d+")));
	local ok, err = pcall(prosody.wait_for, function ()
		if not self:alive() then error("syslog-ng exited before it was ready; " .. self:said(), 0); end
		return read(dir .. "/syslog-ng.pid") and os.execute("test -S " .. quote(self.socket))
			and listening(self.network_port) and listening(self.syslog_port);
	end, 60, "syslog-ng to listen");
	if not ok then
		self:cleanup();
		error(tostring(err) .. "; " .. self:said(), 0);
	end
	return self;
end

function syslog_ng:alive()
	local status = read("/proc/" .. self.pid .. "/status");
	if status == nil or status:match("\nState:%s*Z") then return false; end
	local cmdline = (read("/proc/" .. self.pid .. "/cmdline") or ""):gsub("%z", " ");
	-- (Before its exec the child is the launching shell, whose command line names the dir quoted.)
	return cmdline == "" or cmdline:find(self.dir, 1, true) ~= nil;
end

-- The messages stored for an input so far, oldest first.
function syslog_ng:messages(input)
	local list = {};
	for line in prosody.lines(read(self.dir .. "/" .. input .. ".jsonl") or "") do
		local record, err = cjson.decode(line);
		assert(record, ("syslog-ng stored a line that is not JSON (%s): %s"):format(err, line));
		table.insert(list, record.MSG or "");
	end
	return list;
end

function syslog_ng:stop()
	if self:alive() then os.execute(("kill -TERM %d"):format(self.pid)); end
	prosody.wait_for(function () return not self:alive(); end, 10, "syslog-ng to stop");
end

function syslog_ng:cleanup()
	if self:alive() then os.execute(("kill -KILL %d"):format(self.pid)); end
	pcall(prosody.wait_for, function () return not self:alive(); end, 10, "syslog-ng to die");
	os.execute("rm -rf " .. quote(self.dir));
end

return syslog_ng;
