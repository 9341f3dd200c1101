-- End to end: the sinks' counters in Prosody's statistics, scraped from mod_http_openmetrics's
-- /metrics of real Prosody 0.12 and 13 (statistics = "internal", collected every second).
local prosody = require "spec.helpers.prosody";
local http = require "socket.http";

-- Both sinks keep only warnings, which nothing but the specs log once Prosody runs.
local log_config = [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", levels = { "warn" }, timestamps = false, event = "e2e/dump-main",
		filename_template = "{paths.data}/main.log" };
	{ to = "ringbuffer", levels = { "warn" }, lines = 5, timestamps = false, event = "e2e/dump-fail",
		filename_template = "{paths.data}/missing/fail.log" };
}]];
-- Bytes held per line logged as "log warn wNN".
local line_bytes = #"mod_e2e_control\twarn\tw01\n";

-- One sink's samples, named as /metrics shows them (without the family prefix).
local function sink_samples(sink, v)
	local l = ('{sink="%s"}'):format(sink);
	return {
		["captured_lines_total" .. l] = v.captured;
		["dropped_lines_total" .. l] = v.dropped;
		["held_lines" .. l] = v.lines;
		["held_bytes" .. l] = v.lines * line_bytes;
		[('dumps_total{sink="%s",outcome="ok"}'):format(sink)] = v.ok;
		[('dumps_total{sink="%s",outcome="failed"}'):format(sink)] = v.failed;
	};
end

local function merge(...)
	local all = {};
	for _, t in ipairs({ ... }) do
		for k, v in pairs(t) do all[k] = v; end
	end
	return all;
end

local function logs(from, to)
	local commands = {};
	for i = from, to do
		table.insert(commands, ("log warn w%02d"):format(i));
	end
	return table.unpack(commands);
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. " with mod_http_openmetrics", function ()
		local server, url;
		setup(function ()
			local http_port = prosody.free_ports(1);
			url = ("http://127.0.0.1:%d/metrics"):format(http_port);
			server = prosody.start(version, log_config, ([[
modules_enabled = { %s"log_ringbuffer", "e2e_control", "admin_shell", "http_openmetrics" }
http_ports = { %d }
http_interfaces = { "127.0.0.1" }
statistics = "internal"
statistics_interval = 1
openmetrics_allow_ips = { "127.0.0.1" }
]]):format(version == "0.12" and '"posix", ' or "", http_port));
		end);
		teardown(function ()
			if server then server:cleanup(); end
		end);

		-- The module's samples in /metrics, and the whole text.
		local function scrape()
			local body, code = http.request(url);
			assert.equal(200, code, body);
			local samples = {};
			for name, value in body:gmatch("\nprosody_mod_log_ringbuffer__(%S+) (%S+)") do
				samples[name] = tonumber(value);
			end
			return samples, body;
		end

		-- Scrapes until the samples named in `expected` have those values (a collection runs
		-- every second); returns the last scrape.
		local function expect(expected)
			local deadline, samples, body, got = os.time() + 10;
			repeat
				samples, body = scrape();
				got = {};
				local same = true;
				for name, value in pairs(expected) do
					got[name] = samples[name];
					same = same and got[name] == value;
				end
				if same then break; end
				prosody.sleep(0.2);
			until os.time() > deadline;
			assert.same(expected, got);
			return samples, body;
		end

		-- Rewrites the config file and reloads it (SIGHUP), waiting for the logging reload.
		local function reload_config(from, to)
			local config = prosody.read(server.config);
			local f = assert(io.open(server.config, "w"));
			f:write((config:gsub(from, to)));
			f:close();
			server:sighup();
		end

		local created;

		it("publishes every family, typed, before anything is logged", function ()
			local samples, body = expect(merge(
				sink_samples("main", { captured = 0, dropped = 0, lines = 0, ok = 0, failed = 0 }),
				sink_samples("2", { captured = 0, dropped = 0, lines = 0, ok = 0, failed = 0 })));
			for family, type_ in pairs({ captured_lines = "counter", dropped_lines = "counter", dumps = "counter",
				held_lines = "gauge", held_bytes = "gauge" }) do
				assert.truthy(body:find(("\n# TYPE prosody_mod_log_ringbuffer__%s %s\n"):format(family, type_), 1, true), family);
			end
			created = samples['captured_lines_created{sink="main"}'];
			assert.is_number(created);
		end);

		it("counts captured, dropped and held lines, and dumps by outcome", function ()
			-- main dumps w01-w08 and keeps w09-w10; the other, 5 lines long, fails to dump and keeps w06-w10.
			server:command(logs(1, 8));
			server:command("fire e2e/dump-main", "fire e2e/dump-fail", logs(9, 10));
			expect(merge(
				sink_samples("main", { captured = 10, dropped = 0, lines = 2, ok = 1, failed = 0 }),
				sink_samples("2", { captured = 10, dropped = 5, lines = 5, ok = 0, failed = 1 })));
		end);

		it("keeps counting across a module reload", function ()
			server:command("reload_module log_ringbuffer", logs(11, 11));
			local samples = expect(merge(
				sink_samples("main", { captured = 11, dropped = 0, lines = 3, ok = 1, failed = 0 }),
				sink_samples("2", { captured = 11, dropped = 6, lines = 5, ok = 0, failed = 1 })));
			assert.equal(created, samples['captured_lines_created{sink="main"}'], "the series was made again");
		end);

		it("keeps counting across a logging reload", function ()
			server:command("reload_logging", logs(12, 12));
			local samples = expect(merge(
				sink_samples("main", { captured = 12, dropped = 0, lines = 4, ok = 1, failed = 0 }),
				sink_samples("2", { captured = 12, dropped = 7, lines = 5, ok = 0, failed = 1 })));
			assert.equal(created, samples['captured_lines_created{sink="main"}']);
		end);

		it("goes on under a new name, and adds a replaced sink's counts to its label", function ()
			-- "main" keeps its buffer as "primary"; the other sink is made anew (lines = 6) and
			-- takes over the 5 lines of the one it replaces (adopted lines are not captured again).
			reload_config('name = "main"', 'name = "primary"');
			reload_config("lines = 5", "lines = 6");
			server:command(logs(13, 13));
			expect(merge(
				sink_samples("main", { captured = 12, dropped = 0, lines = 0, ok = 1, failed = 0 }),
				sink_samples("primary", { captured = 1, dropped = 0, lines = 5, ok = 0, failed = 0 }),
				sink_samples("2", { captured = 13, dropped = 7, lines = 6, ok = 0, failed = 1 })));
		end);

		it("shows a sink that went away as holding nothing, its counters kept", function ()
			reload_config("\n\t{ to = \"ringbuffer\", levels = { \"warn\" }, lines = 6,.-\n\t\t[^\n]*\n", "\n");
			server:command(logs(14, 14));
			expect(merge(
				sink_samples("primary", { captured = 2, dropped = 0, lines = 6, ok = 0, failed = 0 }),
				sink_samples("2", { captured = 13, dropped = 7, lines = 0, ok = 0, failed = 1 })));
		end);

		it("is shown by the shell's stats:show()", function ()
			local output = server:shell('stats:show("log_ringbuffer")');
			assert.truthy(output:find("prosody_mod_log_ringbuffer/held_lines", 1, true), output);
			assert.truthy(output:find("sink=primary%s+6 lines"), output);
		end);

		it("stops cleanly", function ()
			local output = server:stop();
			assert.falsy(output:find("Segmentation") or output:find("panicked") or output:find("Aborted"), output);
		end);
	end);
end
