-- The collectors fleets run, for real, at the library level: the native library (as Prosody
-- loads it) makes a sink with the `forward` options, lines are logged through it and a dump is
-- forwarded to a throwaway syslog-ng (spec/helpers/syslog_ng.lua) or rsyslog
-- (spec/helpers/rsyslog.lua). What the daemon stored must be exactly the dump's records (begin,
-- lines, end), in order, once:
-- - syslog-ng's network() source (LF framing) with forward_framing = "lf", its syslog() source
--   with octet counting (the default), its unix-stream() source through unix:// (detected, lf);
-- - rsyslog over TCP with lf, over a unix stream socket (imptcp), and format = "rfc3164" over UDP;
-- - a line longer than forward_max_message arrives cut, with its marker;
-- - forward_rate against rsyslog's unix socket with a journald-like rate limit (interval and
--   burst per process, the rest dropped without a word): paced, the dump arrives whole; unpaced,
--   the limit is seen to drop messages (so the limit is real);
-- - bad forward_framing / forward_max_message values: config errors, and the sink dumps to its file.
local helper = require "spec.helpers.native";
local prosody = require "spec.helpers.prosody";
local syslog_ng = require "spec.helpers.syslog_ng";
local rsyslog = require "spec.helpers.rsyslog";

local native = helper.native;

-- What the lines say; each is logged by source "c2s<n>".
local texts = {
	"first line",
	"a message\nwith a newline", -- util.format makes it "a message\n\twith a newline"
	"tab\tand \"quotes\" and \xc3\xa9",
	"last line",
};

local tmpdir = os.getenv("TMPDIR");
if tmpdir == nil or tmpdir == "" then tmpdir = "/tmp"; end

local function new_sink(config)
	config.lines = config.lines or 1000;
	config.format = config.format or "rfc5424";
	local handle, sink, problems = native.new_sink(config, { data = tmpdir }, helper.format, tostring, nil);
	return handle, sink, problems;
end

-- Logs `texts` (plus `extra` lines) and forwards them; returns the dump's line count.
local function forward(config, extra)
	local handle, sink, problems = new_sink(config);
	assert.same({}, problems);
	for n, text in ipairs(texts) do sink("c2s" .. n, "debug", text); end
	for n, text in ipairs(extra or {}) do sink("extra" .. n, "info", text); end
	local ok, err = handle:dump("test");
	assert.truthy(ok, err);
	prosody.wait_for(function () return native.dumps_in_flight() == 0; end, 60, "the forward to end");
	native.take_reports();
	assert.is_nil(handle:last_error());
	return #texts + #(extra or {});
end

-- The sources and messages a collector got, from RFC 5424 network messages (`local` false) or
-- syslog(3)'s local form, each message's MSGID/first word being the source.
local function parse(messages, form)
	local out = {};
	for _, raw in ipairs(messages) do
		local source, sd, msg;
		if form == "rfc5424" then
			source, sd, msg = raw:match("^<%d+>1 %S+ %S+ prosody %d+ (%S+) (%b[]) (.*)$");
		else
			source, sd, msg = raw:match("^<%d+>%a%a%a [ %d]%d %d%d:%d%d:%d%d prosody%[%d+%]: (%S+) (%b[]) (.*)$");
		end
		assert.truthy(source, "not a message as sent: " .. raw);
		table.insert(out, { source = source, seq = tonumber(sd:match('seq="(%d+)"')), msg = msg });
	end
	return out;
end

-- Checks that `got` is the dump of `texts` (and `extra`), in order, once; `newline` is what a
-- newline inside a message arrives as.
local function assert_whole_dump(got, newline, extra)
	local expected = {};
	for n, text in ipairs(texts) do
		table.insert(expected, { source = "c2s" .. n, msg = (text:gsub("\n", newline .. "\t")) });
	end
	for n, text in ipairs(extra or {}) do table.insert(expected, { source = "extra" .. n, msg = text }); end
	assert.equal(#expected + 2, #got, "begin, the lines, end: each once");
	assert.equal("mod_log_ringbuffer", got[1].source);
	assert.equal("Dumping log buffer", got[1].msg);
	assert.equal("End of dump", got[#got].msg);
	for i, record in ipairs(got) do assert.equal(i - 1, record.seq); end
	for i, want in ipairs(expected) do
		assert.equal(want.source, got[i + 1].source);
		assert.equal(want.msg, got[i + 1].msg);
	end
end

describe("forwarding to a real syslog-ng", function ()
	local collector;
	lazy_setup(function ()
		local ok, why = syslog_ng.available();
		assert(ok, why);
		collector = syslog_ng.start();
	end);
	lazy_teardown(function ()
		if collector then collector:cleanup(); end
	end);

	local function stored(input, count)
		return collector:messages(input), prosody.wait_for(function ()
			return #collector:messages(input) >= count;
		end, 30, ("syslog-ng's %s input to hold %d messages; %s"):format(input, count, collector:said()));
	end

	it("network() (LF framing) with forward_framing = \"lf\": each message whole, a newline inside it as ␤", function ()
		local lines = forward({ forward = "tcp://127.0.0.1:" .. collector.network_port, forward_framing = "lf" });
		stored("network", lines + 2);
		assert_whole_dump(parse(collector:messages("network"), "rfc5424"), "\u{2424}");
	end);

	it("syslog() with octet counting (the default over TCP)", function ()
		local lines = forward({ forward = "tcp://127.0.0.1:" .. collector.syslog_port });
		stored("syslog", lines + 2);
		assert_whole_dump(parse(collector:messages("syslog"), "rfc5424"), "\n");
	end);

	it("unix-stream() through unix:// (a stream socket: lf by default), in syslog(3)'s local form", function ()
		local lines = forward({ forward = "unix://" .. collector.socket });
		stored("stream", lines + 2);
		assert_whole_dump(parse(collector:messages("stream"), "local"), "\u{2424}");
	end);

	it("a line over forward_max_message arrives cut to it, with a marker saying how much was cut", function ()
		local before = #collector:messages("network");
		local long = ("x"):rep(20000);
		forward({ forward = "tcp://127.0.0.1:" .. collector.network_port, forward_framing = "lf",
			forward_max_message = 4096 }, { long });
		stored("network", before + #texts + 3);
		local got = parse({ table.unpack(collector:messages("network"), before + 1) }, "rfc5424");
		local raw = collector:messages("network")[before + #texts + 2];
		assert.truthy(#raw <= 4096 and #raw > 4000, #raw);
		local kept, left_out = got[#texts + 2].msg:match("^(x+)\u{2026} %[cut (%d+) bytes%]$");
		assert.truthy(kept, got[#texts + 2].msg:sub(-40));
		assert.equal(20000, #kept + tonumber(left_out));
	end);
end);

describe("forwarding to a real rsyslog", function ()
	local collector;
	lazy_setup(function ()
		collector = rsyslog.start({ unix_rate_limit = { interval = 2, burst = 30 } });
	end);
	lazy_teardown(function ()
		if collector then collector:cleanup(); end
	end);

	local function records(input, count)
		return collector:wait_for_records(input, function (list) return #list >= count and list; end, 30);
	end

	it("over TCP with forward_framing = \"lf\"", function ()
		local lines = forward({ forward = "tcp://127.0.0.1:" .. collector.tcp_port, forward_framing = "lf" });
		local raws = {};
		for _, record in ipairs(records("tcp", lines + 2)) do table.insert(raws, record.raw); end
		assert_whole_dump(parse(raws, "rfc5424"), "\u{2424}");
	end);

	it("over a unix stream socket (imptcp): lf by default, in syslog(3)'s local form", function ()
		local lines = forward({ forward = "unix://" .. collector.stream_socket });
		local raws = {};
		for _, record in ipairs(records("stream", lines + 2)) do table.insert(raws, record.raw); end
		assert_whole_dump(parse(raws, "local"), "\u{2424}");
	end);

	it("format = \"rfc3164\" over UDP: BSD syslog that rsyslog parses into host, tag and message", function ()
		local lines = forward({ forward = "udp://127.0.0.1:" .. collector.udp_port, format = "rfc3164",
			syslog_facility = "local3" });
		local got = records("udp", lines + 2);
		local hostname = prosody.read("/proc/sys/kernel/hostname"):match("%S+");
		local raws = {};
		for _, record in ipairs(got) do
			assert.equal(hostname, record.hostname);
			assert.truthy(record.tag:match("^prosody%[%d+%]:$"), record.tag);
			assert.equal("0", tostring(record.protocol));
			table.insert(raws, (record.raw:gsub(" " .. hostname:gsub("%p", "%%%0") .. " ", " ", 1)));
		end
		assert.equal(tostring(19 * 8 + 7), tostring(got[2].pri));
		assert_whole_dump(parse(raws, "local"), "\n");
	end);

	-- rsyslog's unix input drops what one process sends over 30 messages in 2 seconds, as
	-- journald does over RateLimitBurst per RateLimitIntervalSec. (Its interval counts whole
	-- seconds, so one may last up to 3: 9 a second stays under the burst.)
	it("forward_rate under a unix socket's rate limit: the whole dump arrives; unpaced, the limit drops its tail", function ()
		local many = {};
		for n = 1, 40 do many[n] = "burst line " .. n; end
		local before = #collector:records("unix");
		local started = os.time();
		local lines = forward({ forward = "unix://" .. collector.socket, forward_rate = 9 }, many);
		assert.truthy(os.time() - started >= 4, "paced: 46 messages at 9 a second take 5 s");
		local got = records("unix", before + lines + 2);
		local raws = {};
		for i = before + 1, #got do table.insert(raws, got[i].raw); end
		assert_whole_dump(parse(raws, "local"), "\n", many);

		-- The same dump unpaced, then a message from another process (a rate limit of its own)
		-- behind it on the socket: once that is stored, so is everything of the dump that will be.
		local after_paced = #got;
		forward({ forward = "unix://" .. collector.socket, forward_rate = false }, many);
		assert(os.execute("logger -u '" .. collector.socket .. "' -t sentinel 'after the unpaced dump'"));
		local all = collector:wait_for_records("unix", function (list)
			for i = after_paced + 1, #list do
				if list[i].tag == "sentinel:" then return list; end
			end
		end, 30);
		local delivered = #all - after_paced - 1;
		assert.truthy(delivered < lines + 2, ("the limit dropped nothing: %d of %d"):format(delivered, lines + 2));
	end);
end);

describe("bad forward settings", function ()
	it("are config errors naming the option and the value, and the sink dumps to its file", function ()
		for _, case in ipairs({
			{ "forward_framing", "crlf", "Invalid value for option 'forward_framing': \"crlf\"; "
				.. "expected \"octet-counting\", \"lf\" or \"nul\"; dumps go to the file instead" },
			{ "forward_max_message", 10, "Invalid value for option 'forward_max_message': 10; "
				.. "expected a whole number of bytes from 480 to 1048576; dumps go to the file instead" },
		}) do
			local file = os.tmpname();
			local handle, sink, problems = new_sink({ forward = "tcp://127.0.0.1:9", [case[1]] = case[2], filename = file });
			assert.same({ { level = "error", text = case[3] } }, problems);
			sink("c2s1", "debug", "kept");
			assert.truthy(handle:dump("test"));
			prosody.wait_for(function () return native.dumps_in_flight() == 0; end, 30, "the dump");
			native.take_reports();
			local text = prosody.read(file) or "";
			os.remove(file);
			assert.truthy(text:find("ringbuffer@32473", 1, true) and text:find("] kept\n", 1, true), text);
		end
	end);
end);
