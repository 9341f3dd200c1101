-- A real TCP collector that misbehaves (spec/helpers/bad_collector.py, run by python3): one that
-- accepts and never reads, or one that half-closes at once and then resets. For the forwarding
-- specs. The child lives in a temp dir of its own (its PID in <dir>/launched.pid, for
-- scripts/run-e2e.sh) and exits by itself when the Lua process that started it is gone.
--   local collector = bad_collector.start("never-read");
--   collector.port, collector:accepted(), collector:received(), collector:cleanup()
local prosody = require "spec.helpers.prosody";

local bad_collector = {};
bad_collector.__index = bad_collector;

local root = os.getenv("PWD");
local tmpdir = os.getenv("TMPDIR");
if tmpdir == nil or tmpdir == "" then tmpdir = "/tmp"; end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'"; end

function bad_collector.start(mode)
	local dir = io.popen(("mktemp -d %s/lrb-collector-XXXXXX"):format(quote(tmpdir))):read("l");
	assert(dir and dir ~= "", "mktemp failed");
	local self = setmetatable({ dir = dir, mode = mode }, bad_collector);
	-- In io.popen's shell, $PPID is this Lua process; $! is the collector's PID.
	local pipe = io.popen(("python3 %s %s %s $PPID < /dev/null > %s/stdout 2>&1 & echo $! | tee -a %s/launched.pid")
		:format(quote(root .. "/spec/helpers/bad_collector.py"), quote(mode), quote(dir), quote(dir), quote(dir)));
	self.pid = tonumber(pipe:read("l"));
	pipe:close();
	assert(self.pid, "could not start the collector");
	self.port = tonumber(prosody.wait_for(function ()
		if not self:alive() then error("the collector exited: " .. (prosody.read(dir .. "/stdout") or "")); end
		return prosody.read(dir .. "/port");
	end, 10, "the collector to listen"):match("%d+"));
	return self;
end

-- Whether the collector still runs. (Not told by its command line: /proc/PID/cmdline reads empty
-- for a moment while the shell's child execs python3, more often on a busy machine.)
function bad_collector:alive()
	local status = prosody.read("/proc/" .. self.pid .. "/status");
	return status ~= nil and not status:match("\nState:%s*Z");
end

-- Whether the PID is still this collector's (a PID is reused once the process is gone).
function bad_collector:ours()
	local cmdline = (prosody.read("/proc/" .. self.pid .. "/cmdline") or ""):gsub("%z", " ");
	return cmdline:find(self.dir, 1, true) ~= nil;
end

-- Connections accepted so far.
function bad_collector:accepted()
	return tonumber((prosody.read(self.dir .. "/accepted") or "0"):match("%d+"));
end

-- What the good connections delivered (half-close-first), in the order they ended.
function bad_collector:received()
	return prosody.read(self.dir .. "/received") or "";
end

function bad_collector:cleanup()
	if self:ours() then os.execute(("kill -KILL %d"):format(self.pid)); end
	os.execute("rm -rf " .. quote(self.dir));
end

return bad_collector;
