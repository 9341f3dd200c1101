-- Stanza arguments are printed natively, byte-identical to util.stanza's __tostring.
local helper = require "spec.helpers.native";
local st = require "util.stanza";

local function sink_counting_tostring()
	local calls = 0;
	local function counting_tostring(v)
		calls = calls + 1;
		return tostring(v);
	end
	local handle, sink = helper.native.new_sink({ lines = 1, timestamps = false }, {}, helper.format,
		counting_tostring, st.stanza_mt);
	return handle, sink, function () return calls; end;
end

-- util.stanza refuses control characters and invalid UTF-8 in text; a stanza built from
-- network input can still hold them, so put them in behind its back.
local function with_raw_text(text)
	local stanza = st.message():tag("body"):text("placeholder"):up();
	stanza.tags[1][1] = text;
	return stanza;
end

local function stanzas()
	local list = {
		st.message({ to = "juliet@example.com", from = "romeo@example.net/orchard", type = "chat", id = "a'b\"c<d>&e" })
			:tag("body"):text("Hello <there> & 'you' \"all\""):up()
			:tag("active", { xmlns = "http://jabber.org/protocol/chatstates" }),
		st.iq({ type = "get", id = "q1", xmlns = "jabber:client" }):query("jabber:iq:roster"),
		st.presence():tag("x", { xmlns = "jabber:x:extra", ["urn:example:ns\1attr"] = "v&1", ["urn:other\1b"] = "2" }),
		st.stanza("empty"),
		with_raw_text("ütf-8 ✓ \1\27 ctl\n\tnewline"),
		with_raw_text("bad \255 utf8"),
	};
	local nested = st.stanza("root", { xmlns = "urn:a" });
	for i = 1, 40 do nested:tag("level" .. i, { xmlns = i % 2 == 0 and "urn:a" or "urn:b" }); end
	nested:text("deep");
	table.insert(list, nested);
	local many = st.stanza("many");
	for i = 1, 30 do many:tag("a" .. i, { ["k" .. i] = tostring(i) }):text(tostring(i)):up(); end
	table.insert(list, many);
	return list;
end

describe("native stanza printing", function ()
	it("matches tostring() under %s, %d and as an extra argument", function ()
		local handle, sink = helper.sink();
		for _, stanza in ipairs(stanzas()) do
			for _, call in ipairs({ { "%s", stanza }, { "%d", stanza }, { "x", stanza }, { "%s|%s", stanza, stanza:top_tag() } }) do
				sink("src", "debug", table.unpack(call));
				assert.equal(helper.upstream_line("", "src", "debug", table.unpack(call)), helper.peek(handle));
			end
		end
	end);

	it("does not call Lua's tostring for ordinary stanzas", function ()
		local handle, sink, calls = sink_counting_tostring();
		local stanza = stanzas()[1];
		sink("src", "debug", "Received[c2s]: %s", stanza);
		assert.equal(0, calls());
		assert.equal(helper.upstream_line("", "src", "debug", "Received[c2s]: %s", stanza), helper.peek(handle));
	end);

	it("falls back to Lua for deep stanzas and for a replaced __tostring", function ()
		local handle, sink, calls = sink_counting_tostring();
		local deep = stanzas()[7];
		sink("src", "debug", "%s", deep);
		assert.equal(1, calls());
		assert.equal(helper.upstream_line("", "src", "debug", "%s", deep), helper.peek(handle));
		local original = st.stanza_mt.__tostring;
		st.stanza_mt.__tostring = function () return "replaced"; end
		local ok, err = pcall(function ()
			sink("src", "debug", "%s", stanzas()[1]);
			assert.equal("src\tdebug\treplaced\n", helper.peek(handle));
		end);
		st.stanza_mt.__tostring = original;
		assert(ok, err);
	end);
end);
