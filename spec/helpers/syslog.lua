-- Strict readers of the dump formats the module writes and forwards: RFC 5424 (section 6: its
-- header, STRUCTURED-DATA and MSG) and JSON Lines, for the e2e specs (spec/e2e/forward_spec.lua).
-- `expect` is the spec's table of what the module writes: sd_id (our SD-ID), marker_source
-- (the source and MSGID of markers), time (a line's time), any_time (any other time), severity
-- (by level) and events (the marker events).
local assert = require "luassert";
local cjson = require "cjson.safe";
local prosody = require "spec.helpers.prosody";

local syslog = {};

-- The params of our SD element in STRUCTURED-DATA text (nil if there is none); also the rest of
-- the text after the whole STRUCTURED-DATA when `text` is a message tail. Strict: fails on bad
-- syntax (RFC 5424 section 6.3).
function syslog.parse_sd(text, sd_id)
	if text:sub(1, 1) == "-" then return nil, text:sub(2); end
	local ours, at = nil, 1;
	assert(text:sub(1, 1) == "[", "STRUCTURED-DATA must be - or start with [: " .. text);
	while text:sub(at, at) == "[" do
		local id, after = text:match("^([^ =%]\"]+)()", at + 1);
		assert(id and #id <= 32 and id:match("^[!-~]+$"), "bad SD-ID in " .. text);
		local params = {};
		at = after;
		while text:sub(at, at) == " " do
			local name, quote_at = text:match("^([^ =%]\"]+)=()\"", at + 1);
			assert(name and #name <= 32 and name:match("^[!-~]+$"), "bad SD-PARAM in " .. text);
			local value, i = {}, quote_at + 1;
			while true do
				local c = text:sub(i, i);
				assert(c ~= "", "unterminated PARAM-VALUE in " .. text);
				if c == "\\" and text:sub(i + 1, i + 1):match('["\\%]]') then
					table.insert(value, text:sub(i + 1, i + 1));
					i = i + 2;
				elseif c == "\"" then
					break;
				else
					assert(c ~= "]", "unescaped ] in PARAM-VALUE in " .. text);
					table.insert(value, c);
					i = i + 1;
				end
			end
			params[name] = table.concat(value);
			at = i + 1;
		end
		assert(text:sub(at, at) == "]", "SD-ELEMENT not closed in " .. text);
		at = at + 1;
		if id == sd_id then ours = params; end
	end
	return ours, text:sub(at);
end

-- One RFC 5424 message (without framing), strictly: its fields, our SD params, MSG.
function syslog.parse_5424(message, expect)
	local pri, time, host, app, procid, msgid, rest = message:match("^<(%d%d?%d?)>1 (%S+) (%S+) (%S+) (%S+) (%S+) (.*)$");
	assert(pri, "not an RFC 5424 message: " .. message);
	assert(tonumber(pri) <= 191 and (pri == "0" or pri:sub(1, 1) ~= "0"), "bad PRI in " .. message);
	assert(time:match(expect.any_time) and #time <= 32, "TIMESTAMP is not RFC 3339 UTC: " .. message);
	for _, field in ipairs({ { host, 255 }, { app, 48 }, { procid, 128 }, { msgid, 32 } }) do
		assert(#field[1] <= field[2] and field[1]:match("^[!-~]+$"), "bad header field " .. field[1] .. " in " .. message);
	end
	local params, tail = syslog.parse_sd(rest, expect.sd_id);
	assert(tail == "" or tail:sub(1, 1) == " ", "no space between STRUCTURED-DATA and MSG: " .. message);
	return { pri = tonumber(pri), time = time, hostname = host, app = app, procid = procid, msgid = msgid,
		params = params, msg = tail:sub(2) };
end

-- A JSON Lines dump file: its dumps, each { records = { objects }, lines = { non-marker
-- objects } }; every object checked.
function syslog.parse_json_dumps(text, expect)
	local list, current = {}, nil;
	for line in prosody.lines(text) do
		if line ~= "" then
			local object, err = cjson.decode(line);
			assert(type(object) == "table", ("not a JSON object (%s): %s"):format(tostring(err), line));
			for _, field in ipairs({ "time", "source", "level", "message", "dump" }) do
				assert(type(object[field]) == "string", "no string " .. field .. " in " .. line);
			end
			assert(object.time:match(object.event and expect.any_time or expect.time),
				"time is not RFC 3339 UTC (with microseconds for lines): " .. line);
			assert(expect.severity[object.level], "bad level in " .. line);
			assert(type(object.seq) == "number" and object.seq % 1 == 0, "no whole number seq in " .. line);
			if object.event == "begin" then
				assert(current == nil, "a dump inside another");
				current = { records = {}, lines = {}, begin = object };
				assert(type(object.reason) == "string" and type(object.lines) == "number" and object.lines % 1 == 0, line);
			end
			assert(current, "a record outside a dump: " .. line);
			assert.equal(#current.records, object.seq);
			assert.equal(current.begin.dump, object.dump);
			table.insert(current.records, object);
			if object.event then
				assert.truthy(expect.events[object.event], line);
				assert.equal(expect.marker_source, object.source);
				assert.equal("info", object.level);
			else
				table.insert(current.lines, object);
			end
			if object.event == "end" then
				assert.equal(#current.lines, current.begin.lines);
				table.insert(list, current);
				current = nil;
			end
		end
	end
	assert(current == nil, "unfinished JSON dump");
	return list;
end

-- The lines of an RFC 5424 dump file, in dumps: { lines = { non-marker lines }, markers }.
function syslog.parse_5424_dumps(text, expect)
	local list, current = {}, nil;
	for line in prosody.lines(text) do
		local parsed = syslog.parse_5424(line, expect);
		local params = assert(parsed.params, "no " .. expect.sd_id .. " element: " .. line);
		if params.event == "begin" then
			assert(current == nil, "a dump inside another");
			current = { lines = {}, parsed = {}, markers = {}, id = params.dump };
		end
		assert(current, "a line outside a dump: " .. line);
		assert.equal(current.id, params.dump);
		assert.equal(#current.lines + #current.markers, tonumber(params.seq));
		if params.event then
			assert.equal(expect.marker_source, parsed.msgid);
			table.insert(current.markers, line);
		else
			table.insert(current.lines, line);
			table.insert(current.parsed, parsed);
		end
		if params.event == "end" then
			table.insert(list, current);
			current = nil;
		end
	end
	assert(current == nil, "unfinished RFC 5424 dump");
	return list;
end

return syslog;
