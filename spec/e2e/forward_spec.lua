-- End to end: dumps in JSON Lines, RFC 5424 and RFC 3164 (`format`), and dumps forwarded to a real syslog
-- collector (`forward`: a throwaway rsyslogd, see spec/helpers/rsyslog.lua) over TCP, TLS, UDP
-- and a unix socket, from real Prosody 0.12 and 13. What rsyslog stored is compared with a kept
-- copy of the same buffer that the admin shell wrote (`ringbuffer:dump({ keep = true, to = ... })`)
-- while the sink was paused, so both hold exactly the same lines. Then: the collector stopped
-- and killed in the middle of a dump of 2 MB, restarted, and the lines arriving whole with
-- the next dump; TLS with a CA that did not sign the collector's certificate; bad `forward`
-- values. Against collectors that misbehave (spec/helpers/bad_collector.py): one that never
-- reads while Prosody stops, one that half-closes at once and resets.
local prosody = require "spec.helpers.prosody";
local dump_files = require "spec.helpers.dumps";
local rsyslog = require "spec.helpers.rsyslog";
local bad_collector = require "spec.helpers.bad_collector";
local syslog = require "spec.helpers.syslog";
local cjson = require "cjson.safe";

------------------------------------------------------------------------------------------------
-- What the module writes, sends and logs: every exact string the specs below rely on.
------------------------------------------------------------------------------------------------
local expect = {};
expect.sd_id = "ringbuffer@32473";
expect.marker_source = "mod_log_ringbuffer"; -- JSON "source" and RFC 5424 MSGID of markers
expect.app_name = "prosody"; -- default syslog_name
expect.facility = 3; -- default syslog_facility: daemon
expect.severity = { debug = 7, info = 6, warn = 4, error = 3 };
expect.events = { begin = true, note = true, ["end"] = true };
-- A line's time in json and rfc5424: RFC 3339, UTC, microseconds.
expect.time = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$";
-- Any other time (markers; lines of plain sinks when forwarded): RFC 3339 UTC, a fraction or not.
expect.any_time = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%.%d]*Z$";
-- The plain header and footer (also the MESSAGE of plain markers when forwarded).
expect.plain_header = "^%-%- Dumping log buffer at %a%a%a [ %d]%d %d%d:%d%d:%d%d  %-%-$";
expect.plain_footer = "-- End of dump --";
-- The local (unix socket) form's header, up to BODY: <PRI>Mmm dd HH:MM:SS APP[PID]:
expect.local_header = "^<(%d+)>%a%a%a [ %d]%d %d%d:%d%d:%d%d ([^%[]+)%[(%d+)%]: ";

function expect.kept_copy(output, path)
	return output:find("OK: Dumped a copy of %d+ lines to " .. path:gsub("%p", "%%%0"));
end
-- Prosody's log after a dump was forwarded.
function expect.forwarded(log, target)
	return log:find("Forwarded %d+ buffered lines to " .. target:gsub("%p", "%%%0"));
end
-- Prosody's log after a forward failed; returns the failed dump's id.
function expect.forward_failed(log, target)
	local id = log:match("Could not forward dump (%S+) to " .. target:gsub("%p", "%%%0") .. ": [^\n]*the lines are kept for the next dump");
	return id;
end
-- Prosody's log after a forward failed at shutdown, when the lines go to the sink's file.
function expect.forward_failed_at_exit(log, target)
	return log:find("Could not forward dump %S+ to " .. target:gsub("%p", "%%%0") .. ": [^\n]*writing the lines to the sink's file");
end
-- Prosody's log for a bad `forward` value (or `forward_ca_file`, for a CA that cannot be used, or
-- `forward_framing`, `forward_max_message`): a line that names the option and shows the value.
function expect.invalid_forward(log, value)
	for line in log:gmatch("[^\n]+") do
		if (line:find("Invalid value for option 'forward': ", 1, true)
			or line:find("Invalid value for option 'forward_ca_file': ", 1, true)
			or line:find("Invalid value for option 'forward_framing': ", 1, true)
			or line:find("Invalid value for option 'forward_max_message': ", 1, true)) and line:find(value, 1, true) then
			return line;
		end
	end
end
-- Whether a resend (a dump after one that failed) says so: its begin marker or a note names the
-- failed dump's id.
function expect.mentions_resend(markers, failed_id)
	for _, text in ipairs(markers) do
		if text:find(failed_id, 1, true) then return true; end
	end
	return false;
end

------------------------------------------------------------------------------------------------
-- Reading RFC 5424 and the dumps out of what rsyslog stored.
------------------------------------------------------------------------------------------------

-- One RFC 5424 message (without framing), strictly: its fields, our SD params, MSG.
local function parse_5424(message)
	return syslog.parse_5424(message, expect);
end

-- The dumps in what rsyslog stored from an RFC 5424 input (tcp, tls, udp), in order of their
-- begin markers: { id, records, lines = { records that are not markers }, markers = { texts } }.
-- rsyslog's own parse is used and checked against ours.
local function network_dumps(records)
	local list, by_id = {}, {};
	for _, record in ipairs(records) do
		local parsed = parse_5424(record.raw);
		assert.equal(parsed.msg, record.msg, "rsyslog and the spec parse MSG alike");
		assert.equal(parsed.msgid, record.msgid);
		assert.equal("1", record.protocol);
		record.parsed = parsed;
		local params = assert(parsed.params, "no " .. expect.sd_id .. " element: " .. record.raw);
		local dump = by_id[params.dump];
		if not dump then
			dump = { id = params.dump, records = {}, lines = {}, markers = {} };
			by_id[params.dump] = dump;
			table.insert(list, dump);
		end
		table.insert(dump.records, record);
		if params.event then
			assert.truthy(expect.events[params.event], params.event);
			assert.equal(expect.marker_source, parsed.msgid);
			table.insert(dump.markers, record.msg);
			if params.event == "begin" then dump.begin = record; end
			if params.event == "end" then dump.finish = record; end
		else
			table.insert(dump.lines, record);
		end
	end
	return list;
end

-- The lines of the single dump in a plain dump file, a line continued by util.format ("\n\t")
-- joined again.
local function plain_lines(text)
	local list = dump_files.parse(text);
	assert.equal(1, #list);
	local lines = {};
	for _, line in ipairs(list[1]) do
		if line:sub(1, 1) == "\t" and #lines > 0 then
			lines[#lines] = lines[#lines] .. "\n" .. line;
		else
			table.insert(lines, line);
		end
	end
	return lines;
end

-- Like assert.same for long lists of lines, naming the first difference instead of printing all.
local function assert_same_lines(expected, actual, what)
	for i = 1, math.max(#expected, #actual) do
		if expected[i] ~= actual[i] then
			error(("%s: %d lines expected, %d stored; first difference at line %d:\nexpected %q\nstored   %q")
				:format(what or "lines", #expected, #actual, i, tostring(expected[i]), tostring(actual[i])), 2);
		end
	end
end

-- Checks a forwarded dump's framing: seq 0, 1, 2, ... in the order stored, begin first with the
-- number of lines, end last, each record's PRI from its level and the default facility.
local function check_network_dump(dump, pid, level_of)
	assert.truthy(dump.begin and dump.finish, "a whole dump");
	assert.equal(dump.begin, dump.records[1]);
	assert.equal(dump.finish, dump.records[#dump.records]);
	assert.equal(#dump.lines, tonumber(dump.begin.parsed.params.lines));
	assert.truthy(dump.begin.parsed.params.reason);
	for i, record in ipairs(dump.records) do
		local parsed = record.parsed;
		assert.equal(i - 1, tonumber(parsed.params.seq), "seq of record " .. i);
		assert.equal(expect.app_name, parsed.app);
		assert.equal(tostring(pid), parsed.procid);
		local level = parsed.params.event and "info" or level_of(record);
		assert.equal(expect.facility * 8 + expect.severity[level], parsed.pri, record.raw);
	end
end

-- The lines of a forwarded dump's records, as MSG texts.
local function messages(records)
	local out = {};
	for i, record in ipairs(records) do out[i] = record.msg; end
	return out;
end

-- The level of a plain line ("<stamp><source>\t<level>\t<message>").
local function plain_level(text)
	return text:match("^[^\t]*\t(%a+)\t");
end

-- The MSGID a source gives: printable ASCII, at most 32 characters.
local function msgid_of(source)
	return source:gsub("[^!-~]", "_"):sub(1, 32);
end

-- A JSON Lines dump file: its dumps, each { records = { objects }, lines = { non-marker
-- objects } }; every object checked.
local function parse_json_dumps(text)
	return syslog.parse_json_dumps(text, expect);
end

-- A JSON object without the fields that differ between two dumps of the same lines.
local function without_dump_fields(object)
	local copy = {};
	for k, v in pairs(object) do
		if k ~= "dump" and k ~= "seq" then copy[k] = v; end
	end
	return copy;
end

-- An RFC 5424 line without the SD params that differ between two dumps of the same lines.
local function without_dump_params(line)
	return (line:gsub(" dump=\"[^\"]*\" seq=\"%d+\"", ""));
end

-- The lines of an RFC 5424 dump file, in dumps: { lines = { non-marker lines }, markers }.
local function parse_5424_dumps(text)
	return syslog.parse_5424_dumps(text, expect);
end

-- The last whole dump rsyslog stored on an RFC 5424 input, once there are `count` whole ones.
local function wait_for_network_dump(collector, input, count)
	-- Cheap first: as many end markers in the file (the JSON-escaped SD param).
	local needle = 'event=\\"end\\"';
	local ok, err = pcall(prosody.wait_for, function ()
		local text, n, at = prosody.read(collector.dir .. "/" .. input .. ".jsonl") or "", 0, 1;
		while true do
			at = text:find(needle, at, true);
			if not at then break; end
			n, at = n + 1, at + 1;
		end
		return n >= (count or 1);
	end, 60, "a whole forwarded dump on rsyslog's " .. input .. " input");
	if not ok then error(err .. "; rsyslogd's own log:\n" .. collector:internal_log(), 2); end
	local list = collector:wait_for_records(input, function (records)
		local parsed, dumps = pcall(network_dumps, records);
		if not parsed then error(dumps, 0); end
		local whole = {};
		for _, dump in ipairs(dumps) do
			if dump.finish then table.insert(whole, dump); end
		end
		return #whole >= (count or 1) and whole;
	end, 30, "a whole forwarded dump on rsyslog's " .. input .. " input");
	return list[#list], list;
end

-- Pauses capture into a sink, writes a kept copy of its buffer to `path` with the admin shell;
-- returns the shell's answer.
local function kept_copy(server, sink, path)
	assert.truthy(server:shell(("ringbuffer:pause(%q)"):format(sink)):find("OK: Paused", 1, true));
	local output = server:shell(("ringbuffer:dump({ sink = %q, keep = true, to = %q })"):format(sink, path));
	assert.truthy(expect.kept_copy(output, path), output);
	-- The copy is written in the background: wait for its end (plain footer, or end marker).
	prosody.wait_for(function ()
		local text = prosody.read(path) or "";
		local last = text:match("([^\n]*)\n$") or "";
		return text:sub(-#expect.plain_footer - 2) == expect.plain_footer .. "\n\n"
			or last:find('"event":"end"', 1, true) or last:find('event="end"', 1, true);
	end, 30, "the kept copy in " .. path);
	return output;
end

-- Whether a sink's configured file got no dump (prosodyctl, which the admin shell runs, creates
-- each log rule's `filename` empty).
local function no_dump_in(server, name)
	local text = server:file(name);
	return text == nil or text == "";
end

local function count_matching(list, pattern)
	local n = 0;
	for _, text in ipairs(list) do
		if text:find(pattern) then n = n + 1; end
	end
	return n;
end

-- Established TCP connections to 127.0.0.1:port whose receiving side has unread bytes.
local function unread_bytes(port)
	local text = prosody.read("/proc/net/tcp") or "";
	local wanted, total = ("0100007F:%04X"):format(port), 0;
	for local_address, st, rx in text:gmatch("\n%s*%d+: (%x+:%x+) %x+:%x+ (%x%x) %x+:(%x+)") do
		if local_address == wanted and st == "01" then total = total + tonumber(rx, 16); end
	end
	return total;
end

-- The messages of RFC 6587 octet-counted TCP bytes (`LEN SP MSG`...).
local function octet_frames(bytes)
	local list, at = {}, 1;
	while at <= #bytes do
		local len, start = bytes:match("^(%d+) ()", at);
		assert(len, "bad framing at byte " .. at);
		table.insert(list, bytes:sub(start, start + tonumber(len) - 1));
		at = start + tonumber(len);
	end
	return list;
end

if not rsyslog.available() then
	describe("forwarding to syslog", function ()
		pending("needs rsyslog and rsyslog-gnutls (make deps): " .. select(2, rsyslog.available()));
	end);
	return;
end

-- The collector itself, fed by util-linux's logger and a TLS client (lua-sec), so that a
-- failure of the specs below can be told from a broken harness.
describe("the rsyslog harness", function ()
	local collector;
	setup(function () collector = rsyslog.start(); end);
	teardown(function () if collector then collector:cleanup(); end end);

	local function run(command)
		assert(os.execute(command .. " 2>&1"), command);
	end

	it("stores RFC 5424 over TCP (octet counting) and UDP, and the local form over its unix socket, as sent", function ()
		run(("printf 'tcp\\ttab' | logger --rfc5424 --octet-count -T -n 127.0.0.1 -P %d -t lrb-test --msgid c2s55 -p daemon.debug")
			:format(collector.tcp_port));
		run(("logger -d -n 127.0.0.1 -P %d --rfc5424 -t lrb-test -p daemon.warning 'udp message'"):format(collector.udp_port));
		run(("logger -u %s -t lrb-test -i -p daemon.info 'unix message'"):format(collector.socket));
		local tcp = collector:wait_for_records("tcp", function (list) return #list == 1 and list[1]; end);
		assert.equal("tcp\ttab", tcp.msg);
		assert.equal("31", tcp.pri);
		assert.equal("c2s55", tcp.msgid);
		assert.equal("1", tcp.protocol);
		assert.truthy(tcp.raw:match("^<31>1 %S+ %S+ lrb%-test %- c2s55 %[.*%] tcp\ttab$"), tcp.raw);
		local udp = collector:wait_for_records("udp", function (list) return #list == 1 and list[1]; end);
		assert.equal("udp message", udp.msg);
		assert.equal("28", udp.pri);
		local unix = collector:wait_for_records("unix", function (list) return #list == 1 and list[1]; end);
		assert.equal(" unix message", unix.msg); -- rsyslog keeps the space after "TAG:"
		assert.equal("lrb-test", unix.app);
		assert.truthy(unix.raw:match("^<30>%a%a%a [ %d]%d %d%d:%d%d:%d%d lrb%-test%[%d+%]: unix message$"), unix.raw);
	end);

	it("takes TLS from a client that verifies its certificate against the test CA, and survives a restart", function ()
		local socket, ssl = require "socket", require "ssl";
		local message = '<30>1 2026-11-22T15:00:28.123456Z host prosody 42 mod_log_ringbuffer [ringbuffer@32473 dump="42-0" seq="0"] tls';
		local conn = assert(socket.connect("127.0.0.1", collector.tls_port));
		conn = assert(ssl.wrap(conn, { mode = "client", protocol = "any", verify = "peer", cafile = collector.ca_file,
			options = { "all" } }));
		conn:sni("localhost");
		assert(conn:dohandshake());
		assert(conn:send(#message .. " " .. message));
		conn:close();
		local record = collector:wait_for_records("tls", function (list) return #list == 1 and list[1]; end);
		assert.equal(message, record.raw);
		assert.equal("tls", record.msg);
		assert.equal("mod_log_ringbuffer", record.msgid);
		assert.equal('[ringbuffer@32473 dump="42-0" seq="0"]', record.sd);
		collector:pause();
		collector:kill();
		collector:restart();
		collector:send_tcp("5 again");
		collector:wait_for_records("tcp", function (list) return #list == 2 and list[2].raw == "again"; end);
	end);
end);

local versions = prosody.versions();
for _, version in ipairs(versions) do
	-- TCP, the formats, shutdown and bad values in every version; the other transports and the
	-- collector killed mid-dump (which do not depend on Prosody's version) in the newest only,
	-- to keep `make check` short.
	local it_newest = version == versions[#versions] and it or pending;
	describe("in Prosody " .. version .. ", forwarding to a real rsyslog", function ()
		local collector, down, server, targets;
		setup(function ()
			collector = rsyslog.start();
			down = rsyslog.start(); -- killed and restarted by the last spec
			targets = {
				tcp = ("tcp://127.0.0.1:%d"):format(collector.tcp_port);
				tls = ("tls://localhost:%d"):format(collector.tls_port);
				udp = ("udp://127.0.0.1:%d"):format(collector.udp_port);
				unix = "unix://" .. collector.socket;
				down = ("tcp://127.0.0.1:%d"):format(down.tcp_port);
			};
			server = prosody.start(version, ([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "tcp", size = 4*1024*1024, event = "e2e/tcp", forward = %q, filename = "$DATA/tcp-not-forwarded.log" };
	{ to = "ringbuffer", name = "tls", size = 4*1024*1024, format = "rfc5424", event = "e2e/tls", forward = %q,
	  forward_ca_file = %q, filename = "$DATA/tls-not-forwarded.log" };
	{ to = "ringbuffer", name = "udp", lines = 200, format = "json", event = "e2e/udp", forward = %q, filename = "$DATA/udp-not-forwarded.log" };
	{ to = "ringbuffer", name = "unix", lines = 200, event = "e2e/unix", forward = %q, filename = "$DATA/unix-not-forwarded.log" };
	{ to = "ringbuffer", name = "unix5424", lines = 200, format = "rfc5424", event = "e2e/unix5424", forward = %q,
	  filename = "$DATA/unix5424-not-forwarded.log" };
	{ to = "ringbuffer", name = "wrongca", lines = 2000, event = "e2e/wrongca", forward = %q, forward_ca_file = %q,
	  filename = "$DATA/wrongca.log" };
	{ to = "ringbuffer", name = "down", size = 48*1024*1024, event = "e2e/down", forward = %q, filename = "$DATA/down-not-forwarded.log" };
}]]):format(targets.tcp, targets.tls, collector.ca_file, targets.udp, targets.unix, targets.unix, targets.tls, collector.other_ca_file,
				targets.down));
		end);
		teardown(function ()
			if server then server:cleanup(); end
			if collector then collector:cleanup(); end
			if down then down:cleanup(); end
		end);

		it("over TCP, in the plain format: rsyslog holds the dump's lines, in order, one message each", function ()
			server:command("spam 3000 tcp-line 100");
			server:wait_for_log("tcp-line done");
			local copy_path = server.dir .. "/tcp-copy.log";
			kept_copy(server, "tcp", copy_path);
			local copy = plain_lines(prosody.read(copy_path));
			server:command("fire e2e/tcp");
			prosody.wait_for(function () return expect.forwarded(server:log(), targets.tcp); end, 30, "the forward to be logged");
			local dump = wait_for_network_dump(collector, "tcp");
			check_network_dump(dump, server.pid, function (record) return plain_level(record.msg); end);
			assert_same_lines(copy, messages(dump.lines));
			assert.equal(3000, count_matching(messages(dump.lines), " tcp%-line %d+$"));
			assert.truthy(dump.begin.msg:match(expect.plain_header), dump.begin.msg);
			assert.equal(expect.plain_footer, dump.finish.msg);
			for _, record in ipairs(dump.lines) do
				local source = record.msg:match("^%a%a%a [ %d]%d %d%d:%d%d:%d%d ([^\t]+)\t");
				assert.equal(msgid_of(source), record.parsed.msgid, record.raw);
			end
			assert.truthy(no_dump_in(server, "tcp-not-forwarded.log"), "nothing went to the file");
			server:shell([[ringbuffer:resume("tcp")]]);
		end);

		it_newest("over TLS, verified, in the RFC 5424 format: each message is the file's line", function ()
			server:command("spam 2000 tls-line 300", "log warn tls-warning", "log error tls-error");
			server:wait_for_log("tls-line done");
			local copy_path = server.dir .. "/tls-copy.log";
			kept_copy(server, "tls", copy_path);
			local copy = parse_5424_dumps(prosody.read(copy_path))[1];
			server:command("fire e2e/tls");
			prosody.wait_for(function () return expect.forwarded(server:log(), targets.tls); end, 30, "the forward to be logged");
			local dump = wait_for_network_dump(collector, "tls");
			check_network_dump(dump, server.pid, function (record)
				for name, severity in pairs(expect.severity) do
					if severity == record.parsed.pri % 8 then return name; end
				end
			end);
			local sent = {};
			for i, record in ipairs(dump.lines) do sent[i] = without_dump_params(record.raw); end
			local kept = {};
			for i, line in ipairs(copy.lines) do kept[i] = without_dump_params(line); end
			assert_same_lines(kept, sent);
			assert.equal(2000, count_matching(messages(dump.lines), " tls%-line %d+$"));
			local warned = 0;
			for _, record in ipairs(dump.lines) do
				if record.msg == "tls-warning" then
					warned = warned + 1;
					assert.equal(expect.facility * 8 + expect.severity.warn, record.parsed.pri);
					assert.equal("mod_e2e_control", record.parsed.msgid);
				elseif record.msg == "tls-error" then
					warned = warned + 1;
					assert.equal(expect.facility * 8 + expect.severity.error, record.parsed.pri);
				end
			end
			assert.equal(2, warned);
			server:shell([[ringbuffer:resume("tls")]]);
		end);

		it_newest("over TLS with a CA that did not sign the collector's certificate, fails and keeps the lines", function ()
			server:command("log debug wrong-ca-line", "fire e2e/wrongca");
			local id = prosody.wait_for(function () return expect.forward_failed(server:log(), targets.tls); end, 30,
				"the failed TLS forward to be logged");
			assert.truthy(id);
			assert.truthy(no_dump_in(server, "wrongca.log"), "a failed forward does not fall back to the file");
			local tail = server:shell([[ringbuffer:grep("wrong-ca-line", { sink = "wrongca" })]]);
			assert.truthy(tail:find("OK: 1 of 1 matching lines shown", 1, true), tail);
			assert.truthy(server:alive());
		end);

		it_newest("over UDP, in JSON: one datagram per record, each a JSON object", function ()
			server:command("spam 20 udp-line", "log info \"quoted\" \\ back\\slash é");
			server:wait_for_log("udp-line done");
			local copy_path = server.dir .. "/udp-copy.log";
			kept_copy(server, "udp", copy_path);
			local copy = parse_json_dumps(prosody.read(copy_path))[1];
			server:command("fire e2e/udp");
			prosody.wait_for(function () return expect.forwarded(server:log(), targets.udp); end, 30, "the forward to be logged");
			local dump = wait_for_network_dump(collector, "udp");
			local sent = {};
			for i, record in ipairs(dump.lines) do
				sent[i] = assert(cjson.decode(record.msg), record.msg);
				assert.equal(msgid_of(sent[i].source), record.parsed.msgid);
			end
			check_network_dump(dump, server.pid, function (record) return cjson.decode(record.msg).level; end);
			local kept = {};
			for i, object in ipairs(copy.lines) do kept[i] = without_dump_fields(object); end
			for i, object in ipairs(sent) do sent[i] = without_dump_fields(object); end
			assert.same(kept, sent);
			local found = false;
			for _, object in ipairs(sent) do
				if object.message == "\"quoted\" \\ back\\slash é" then found = true; end
			end
			assert.truthy(found, "the message with quotes, backslashes and UTF-8");
			server:shell([[ringbuffer:resume("udp")]]);
		end);

		it_newest("over a unix socket, in syslog(3)'s local form, as /dev/log takes it", function ()
			server:command("spam 20 unix-line");
			server:wait_for_log("unix-line done");
			local copy_path = server.dir .. "/unix-copy.log";
			kept_copy(server, "unix", copy_path);
			local copy = plain_lines(prosody.read(copy_path));
			server:command("fire e2e/unix");
			prosody.wait_for(function () return expect.forwarded(server:log(), targets.unix); end, 30, "the forward to be logged");
			local records = collector:wait_for_records("unix", function (list)
				return #list > 0 and list[#list].msg == " " .. expect.plain_footer and list;
			end, 30, "the dump on rsyslog's unix socket");
			assert.truthy(records[1].msg:sub(2):match(expect.plain_header), records[1].msg);
			local bodies, markers = {}, 2;
			for i, record in ipairs(records) do
				local pri, app, pid = record.raw:match(expect.local_header);
				assert.truthy(pri, record.raw);
				assert.equal(expect.app_name, app);
				assert.equal(tostring(server.pid), pid);
				assert.equal(expect.app_name, record.app);
				assert.equal(" ", record.msg:sub(1, 1)); -- rsyslog keeps the space after "TAG:"
				bodies[i] = record.msg:sub(2);
				local marker = i == 1 or i == #records or (i == markers and bodies[i]:match("^%-%- .* %-%-$"));
				if marker and i == markers then markers = markers + 1; end -- notes come right after the header
				local level = marker and "info" or plain_level(bodies[i]);
				assert.equal(expect.facility * 8 + expect.severity[level], tonumber(pri), record.raw);
			end
			assert_same_lines(copy, { table.unpack(bodies, markers, #bodies - 1) });
			assert.equal(20, count_matching(bodies, "\tunix%-line %d+$"));
			server:shell([[ringbuffer:resume("unix")]]);
		end);

		it_newest("over a unix socket in the RFC 5424 format: BODY is the file's line from MSGID on", function ()
			local before = #collector:records("unix");
			server:command("spam 20 unix5424-line");
			server:wait_for_log("unix5424-line done");
			local copy_path = server.dir .. "/unix5424-copy.log";
			kept_copy(server, "unix5424", copy_path);
			local copy = parse_5424_dumps(prosody.read(copy_path))[1];
			server:command("fire e2e/unix5424");
			prosody.wait_for(function () return expect.forwarded(server:log(), targets.unix); end, 30, "the forward to be logged");
			local records = collector:wait_for_records("unix", function (list)
				return #list > before and list[#list].msg:find('event="end"', 1, true) and { table.unpack(list, before + 1) };
			end, 30, "the dump on rsyslog's unix socket");
			local sent, sent_pri, seq = {}, {}, 0;
			for _, record in ipairs(records) do
				local pri, app, pid = record.raw:match(expect.local_header);
				assert.truthy(pri, record.raw);
				assert.equal(expect.app_name, app);
				assert.equal(tostring(server.pid), pid);
				local body = record.msg:sub(2);
				-- BODY: MSGID [SD] MESSAGE, checked with the RFC 5424 parser behind a made-up header.
				local parsed = parse_5424(("<%s>1 2026-01-01T00:00:00Z host %s %s %s"):format(pri, app, pid, body));
				assert.equal(seq, tonumber(parsed.params.seq));
				seq = seq + 1;
				if not parsed.params.event then
					table.insert(sent, without_dump_params(body));
					table.insert(sent_pri, tonumber(pri));
				end
			end
			local kept = {};
			for i, line in ipairs(copy.lines) do
				kept[i] = without_dump_params(line):match("^<%d+>1 %S+ %S+ %S+ %S+ (.*)$");
				assert.equal(copy.parsed[i].pri, sent_pri[i], "PRI of line " .. i);
			end
			assert_same_lines(kept, sent);
			assert.equal(20, count_matching(sent, "unix5424%-line %d+$"));
			server:shell([[ringbuffer:resume("unix5424")]]);
		end);

		it_newest("survives the collector stopping in the middle of a dump of 2 MB, and resends it whole", function ()
			local target = targets.down;
			-- About 2 MB. Whatever the sockets hold, bytes left unread when the collector dies reset the
			-- connection, so the dump fails; a bigger dump only costs the spec time.
			server:command("spam 5000 down-line 400");
			prosody.wait_for(function () return server:log():find("down-line done", 1, true); end, 60, "the ring to fill");
			local copy_path = server.dir .. "/down-copy.log";
			kept_copy(server, "down", copy_path);
			local copy = plain_lines(prosody.read(copy_path));
			assert.equal(5000, count_matching(copy, "down%-line %d+$"));

			down:pause();
			server:command("fire e2e/down");
			-- The dump has begun: bytes wait unread in the stopped collector's socket.
			prosody.wait_for(function () return unread_bytes(down.tcp_port) > 0; end, 30, "the dump to start");
			down:kill();
			local failed = prosody.wait_for(function () return expect.forward_failed(server:log(), target); end, 60,
				"the failed forward to be logged");
			assert.truthy(server:alive());
			server:command("log info still running");
			server:wait_for_log("still running");

			down:restart();
			server:command("fire e2e/down");
			prosody.wait_for(function () return expect.forwarded(server:log(), target); end, 60, "the resend to be logged");
			local dump = wait_for_network_dump(down, "tcp");
			check_network_dump(dump, server.pid, function (record) return plain_level(record.msg); end);
			assert.are_not.equal(failed, dump.id);
			assert.truthy(expect.mentions_resend(dump.markers, failed), "the resend names dump " .. failed);
			assert_same_lines(copy, messages(dump.lines));
			assert.truthy(no_dump_in(server, "down-not-forwarded.log"));
			server:shell([[ringbuffer:resume("down")]]);
		end);
	end);

	describe("in Prosody " .. version .. ", the formats in dump files", function ()
		local server;
		setup(function ()
			server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "json", format = "json", event = "e2e/json", filename = "$DATA/json.log" };
	{ to = "ringbuffer", name = "rfc", format = "rfc5424", event = "e2e/rfc", filename = "$DATA/rfc.log",
	  syslog_name = "xmpp-test", syslog_facility = "local3" };
	{ to = "ringbuffer", name = "bsd", format = "rfc3164", event = "e2e/bsd", filename = "$DATA/bsd.log",
	  syslog_name = "xmpp-test", syslog_facility = "local3" };
}]]);
		end);
		teardown(function () if server then server:cleanup(); end end);

		it("json: JSON Lines that a JSON parser reads, one object per record", function ()
			server:command("log debug json-line one", "log warn \"quoted\" back\\slash é", "log error json-error");
			server:command("fire e2e/json");
			local list = prosody.wait_for(function ()
				local text = server:file("json.log");
				local ok, parsed = pcall(parse_json_dumps, text or "");
				return ok and #parsed == 1 and parsed;
			end, 10, "the JSON dump");
			local dump = list[1];
			assert.equal("begin", dump.records[1].event);
			assert.equal("end", dump.records[#dump.records].event);
			local seen = {};
			for _, object in ipairs(dump.lines) do
				if object.source == "mod_e2e_control" and (object.message:find("json-", 1, true) or object.message:find("quoted", 1, true)) then
					table.insert(seen, object.level .. " " .. object.message);
				end
			end
			assert.same({ "debug json-line one", "warn \"quoted\" back\\slash é", "error json-error" }, seen);
			prosody.wait_for(function () return server:log():find("Dumped %d+ buffered lines to [^\n]*json%.log"); end, 10,
				"the JSON dump's report");
		end);

		it("rfc5424: lines that follow RFC 5424's grammar and that rsyslog parses as sent", function ()
			server:command("log debug rfc-line one", "log warn rfc warning", "fire e2e/rfc");
			local text = prosody.wait_for(function ()
				local t = server:file("rfc.log");
				return t and t:find("event=\"end\"", 1, true) and t;
			end, 10, "the RFC 5424 dump");
			local dump = parse_5424_dumps(text)[1];
			local local3 = 19;
			for _, parsed in ipairs(dump.parsed) do
				assert.equal("xmpp-test", parsed.app);
				assert.equal(tostring(server.pid), parsed.procid);
				assert.truthy(parsed.pri >= local3 * 8 and parsed.pri < local3 * 8 + 8, parsed.pri);
			end
			-- rsyslog reads every line the same way (octet counting over TCP).
			local collector = rsyslog.start();
			finally(function () collector:cleanup(); end);
			local lines = {};
			for line in prosody.lines(text) do table.insert(lines, line); end
			local framed = {};
			for i, line in ipairs(lines) do framed[i] = #line .. " " .. line; end
			collector:send_tcp(table.concat(framed));
			local records = collector:wait_for_records("tcp", function (list) return #list == #lines and list; end, 10,
				"rsyslog to read the dump");
			for i, record in ipairs(records) do
				local parsed = parse_5424(lines[i]);
				assert.equal(lines[i], record.raw);
				assert.equal("1", record.protocol);
				assert.equal(parsed.app, record.app);
				assert.equal(parsed.procid, record.procid);
				assert.equal(parsed.msgid, record.msgid);
				assert.equal(tostring(parsed.pri), record.pri);
				assert.equal(parsed.msg, record.msg);
				if parsed.time:match(expect.time) then assert.equal(parsed.time, record.time); end
			end
			local found = 0;
			for _, record in ipairs(records) do
				if record.msg == "rfc warning" then
					found = found + 1;
					assert.equal(tostring(local3 * 8 + expect.severity.warn), record.pri);
					assert.equal("mod_e2e_control", record.msgid);
				end
			end
			assert.equal(1, found);
		end);
		it("rfc3164: BSD syslog lines, <PRI>Mmm dd hh:mm:ss HOST TAG[PID]: SOURCE [SD] MESSAGE", function ()
			server:command("log debug bsd-line one", "log warn bsd warning", "fire e2e/bsd");
			local text = prosody.wait_for(function ()
				local t = server:file("bsd.log");
				return t and t:find("event=\"end\"", 1, true) and t;
			end, 10, "the RFC 3164 dump");
			local hostname = prosody.read("/proc/sys/kernel/hostname"):match("%S+");
			local local3, seen, count = 19, {}, 0;
			for line in prosody.lines(text) do
				local pri, host, tag, source, sd, msg =
					line:match("^<(%d+)>%a%a%a [ %d]%d %d%d:%d%d:%d%d (%S+) ([^%[ ]+%[%d+%]): (%S+) (%b[]) (.*)$");
				assert.truthy(pri, "not RFC 3164 as documented: " .. line);
				assert.equal(hostname, host);
				assert.equal(("xmpp-test[%d]"):format(server.pid), tag);
				assert.truthy(tonumber(pri) >= local3 * 8 and tonumber(pri) < local3 * 8 + 8, pri);
				assert.equal(count, tonumber(sd:match('seq="(%d+)"')));
				count = count + 1;
				if source == "mod_e2e_control" and msg:find("^bsd") then table.insert(seen, pri .. " " .. msg); end
			end
			assert.same({ tostring(local3 * 8 + 7) .. " bsd-line one", tostring(local3 * 8 + 4) .. " bsd warning" }, seen);
		end);
	end);

	describe("in Prosody " .. version .. ", a forward that fails at shutdown", function ()
		it("writes the lines to the sink's file instead (dump_on_exit)", function ()
			local closed = prosody.free_ports(1); -- nothing listens there
			local target = ("tcp://127.0.0.1:%d"):format(closed);
			local server = prosody.start(version, ([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "exit", dump_on_exit = true, forward = %q, filename = "$DATA/exit.log" };
}]]):format(target));
			finally(function () server:cleanup(); end);
			server:command("log debug exit-line");
			server:stop();
			local list = dump_files.parse(assert(server:file("exit.log"), "no dump in the sink's file; Prosody's log:\n" .. server:log()));
			assert.equal(1, #list);
			assert.equal(1, dump_files.count_matching(list[1], "exit%-line$"));
			assert.truthy(expect.forward_failed_at_exit(server:log(), target), server:log());
		end);
	end);

	describe("in Prosody " .. version .. ", a collector that misbehaves", function ()
		-- Every forward ends within the bounds the README gives, and no line is lost. In every
		-- version: SIGTERM's path differs between 0.12 and 13.
		local socket = require "socket";

		it("that never reads, at SIGTERM: the stuck forwards write their lines to the sink's file in time", function ()
			local collector, server = bad_collector.start("never-read"), nil;
			finally(function ()
				if server then server:cleanup(); end
				collector:cleanup();
			end);
			local target = ("tcp://127.0.0.1:%d"):format(collector.port);
			server = prosody.start(version, ([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "stuck", size = 16*1024*1024, event = "e2e/stuck", dump_on_exit = true, forward = %q,
	  filename = "$DATA/stuck.log" };
}]]):format(target));
			server:command("spam 60000 stuck-line");
			server:wait_for_log("stuck-line done");
			-- Admitted before the shutdown: stuck with its bytes unread in the collector's socket.
			server:command("fire e2e/stuck");
			prosody.wait_for(function () return unread_bytes(collector.port) > 0; end, 30, "the forward to stall");
			server:command("log debug exit-line", "log info exit-line logged");
			server:wait_for_log("exit-line logged");
			local started = socket.gettime();
			server:stop();
			local took = socket.gettime() - started;
			assert.is_true(took < 10, ("Prosody took %.1f s to stop"):format(took));
			local list = dump_files.parse(assert(server:file("stuck.log"), "no dump in the sink's file; Prosody's log:\n" .. server:log()));
			local lines, exit_lines = 0, 0;
			for _, dump in ipairs(list) do
				lines = lines + dump_files.count_matching(dump, "stuck%-line %d+$");
				exit_lines = exit_lines + dump_files.count_matching(dump, "exit%-line$");
			end
			assert.equal(60000, lines);
			assert.equal(1, exit_lines);
			local log = server:log();
			local said = 0;
			for _ in log:gmatch("Could not forward dump %S+ to [^\n]*Prosody is stopping[^\n]*writing the lines to the sink's file") do said = said + 1; end
			assert.equal(2, said, log);
			print(("  (shutdown with a stuck collector took %.1f s)"):format(took));
		end);

		it("that half-closes at once and resets: the dump failed, and the next dump delivers its lines", function ()
			local collector, server = bad_collector.start("half-close-first"), nil;
			finally(function ()
				if server then server:cleanup(); end
				collector:cleanup();
			end);
			local target = ("tcp://127.0.0.1:%d"):format(collector.port);
			server = prosody.start(version, ([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "half", size = 16*1024*1024, event = "e2e/half", forward = %q, filename = "$DATA/half.log" };
}]]):format(target));
			server:command("spam 20000 half-line");
			server:wait_for_log("half-line done");
			server:command("fire e2e/half");
			local failed = prosody.wait_for(function () return expect.forward_failed(server:log(), target); end, 30,
				"the failed forward to be logged");
			assert.falsy(expect.forwarded(server:log(), target), server:log());
			server:command("fire e2e/half");
			prosody.wait_for(function () return expect.forwarded(server:log(), target); end, 30, "the resend to be logged");
			local received = collector:received();
			local count, last = 0, 0;
			for _, message in ipairs(octet_frames(received)) do
				local n = tonumber(message:match("half%-line (%d+)$"));
				if n then
					assert.equal(last + 1, n, "in order");
					count, last = count + 1, n;
				end
			end
			assert.equal(20000, count);
			assert.truthy(received:find(failed, 1, true), "the resend names dump " .. failed);
			assert.truthy(no_dump_in(server, "half.log"));
		end);
	end);

	describe("in Prosody " .. version .. ", bad forward values", function ()
		local server;
		local bad = {
			{ name = "scheme", value = [["ftp://127.0.0.1:21"]], shown = "ftp://127.0.0.1:21" };
			{ name = "port", value = [["tcp://127.0.0.1:99999"]], shown = "tcp://127.0.0.1:99999" };
			{ name = "host", value = [["tcp://no-such-host.invalid:514"]], shown = "tcp://no-such-host.invalid:514" };
			{ name = "noca", value = [["tls://localhost:6514", forward_ca_file = "$DIR/missing-ca.pem"]],
			  shown = { "missing-ca.pem", "tls://localhost:6514" } };
			{ name = "number", value = [[42]], shown = "42" };
			-- A good target with a bad setting for it: the same, naming that option.
			{ name = "framing", value = [["tcp://127.0.0.1:514", forward_framing = "crlf"]],
			  shown = [[forward_framing': "crlf"; expected "octet-counting", "lf" or "nul"; dumps go to the file instead]] };
			{ name = "maxmessage", value = [["tcp://127.0.0.1:514", forward_max_message = 10]],
			  shown = "forward_max_message': 10; expected a whole number of bytes from 480 to 1048576; dumps go to the file instead" };
		};
		setup(function ()
			local sinks = {};
			for _, case in ipairs(bad) do
				table.insert(sinks, ([[{ to = "ringbuffer", name = "%s", lines = 100, event = "e2e/bad", forward = %s, filename = "$DATA/%s.log" };]])
					:format(case.name, case.value, case.name));
			end
			server = prosody.start(version, ([[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	%s
}]]):format(table.concat(sinks, "\n\t")));
		end);
		teardown(function () if server then server:cleanup(); end end);

		it("are errors in Prosody's log; the sink dumps to its file", function ()
			local log = server:log();
			for _, case in ipairs(bad) do
				local found = false;
				for _, shown in ipairs(type(case.shown) == "table" and case.shown or { case.shown }) do
					found = found or expect.invalid_forward(log, shown);
				end
				assert.truthy(found, case.name .. ": " .. log);
			end
			server:command("log debug bad-forward-line", "fire e2e/bad");
			for _, case in ipairs(bad) do
				local list = dump_files.wait_for(server, case.name .. ".log");
				assert.equal(1, dump_files.count_matching(list[1], "bad%-forward%-line$"));
			end
			assert.truthy(server:alive());
		end);
	end);
end
