-- Shared by the bench scripts, which run from the repository root (bench/run.sh sees to
-- that): library paths, the workloads, a clock and /proc readers.
-- Prosody's util libraries and the native library are loaded as the specs load them.
local loaded = require "spec.helpers.native";
local src, native = loaded.src, loaded.native;
local st = require "util.stanza";
local format = require "util.format".format;
local socket = require "socket";
local tmp = os.getenv("TMPDIR");
if tmp == nil or tmp == "" then tmp = "/tmp"; end

local common = { prosody_src = src, native = native, testing = loaded.testing, now = socket.gettime, source = "c2s55d0a1" };

-- A native sink made the way lua/mod_log_ringbuffer.lua makes it: handle, sink function.
-- (Natives built before stanza printing ignore the fifth argument.)
function common.new_sink(config)
	local handle, sink, problems = native.new_sink(config, { data = tmp }, format, tostring, st.stanza_mt);
	assert(#problems == 0, problems[1] and problems[1].text);
	return handle, sink;
end

local stanza_string = "<message to='romeo@example.net' type='chat' id='x1'><body>hi</body></message>";
local stanza = st.message({ to = "romeo@example.net", type = "chat", id = "x1" }):tag("body"):text("hi");
local big = ("The quick brown fox jumps over the lazy dog. "):rep(100):sub(1, 4096);

-- Each workload logs `n` lines through `log`, a logger from util.logger.
common.workloads = {
	{ name = "typical", run = function (log, n)
		for _ = 1, n do log("Received[c2s]: %s from %s id=%d", stanza_string, "juliet@example.com/balcony", 12345); end
	end };
	{ name = "stanza", run = function (log, n)
		for _ = 1, n do log("Received[c2s]: %s", stanza); end
	end };
	{ name = "4KiB", run = function (log, n)
		for _ = 1, n do log(big); end
	end };
	{ name = "6 args", run = function (log, n)
		for _ = 1, n do log("%s %s %s %d %s %s", "juliet@example.com/balcony", 42, true, 12345, false, "c2s"); end
	end };
};

-- The `dump_on_match` of the benchmarks' matching sink: the issue's examples (mod_log_slow_events'
-- warning, a Lua traceback, one user's JID), none of which the workloads' lines contain.
common.match_pattern = [[Slow event|Traceback|alice@example\.com]];

-- A folder for the ring files of persisted sinks (`persist`), made empty: PERSIST_DIR, or one
-- under TMPDIR.
function common.persist_dir()
	local dir = os.getenv("PERSIST_DIR") or (tmp .. "/lrb-bench-persist");
	assert(os.execute(("rm -rf '%s' && mkdir -p '%s'"):format(dir, dir)));
	return dir;
end

-- A native sink with `persist` in `dir`, its ring file opened as the module opens it.
function common.new_persisted_sink(config, dir)
	config.persist = dir;
	local handle, sink = common.new_sink(config);
	local said = handle:open_journal("bench");
	assert(#said == 0 and handle:journal_path(), said[1] and said[1].text);
	return handle, sink;
end

-- Typical lines whose id counts up, for filling big rings.
function common.fill(log, n)
	for i = 1, n do log("Received[c2s]: %s from %s id=%d", stanza_string, "juliet@example.com/balcony", i); end
end

-- A field of /proc/self/status in bytes (VmHWM: peak RSS, VmRSS: RSS now).
function common.status(field)
	local f = assert(io.open("/proc/self/status"));
	local text = f:read("a");
	f:close();
	return tonumber(text:match(field .. ":%s*(%d+) kB")) * 1024;
end

return common;
