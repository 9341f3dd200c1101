-- The longest hold of Prosody's main loop while the admin shell reads a full 64 MiB ring, in a
-- real Prosody 0.12 and 13 (started like the e2e specs do, with the module from
-- `make install-plugin` in $E2E_PLUGIN_DIR): a 10 ms timer in the server notes how late it
-- fires (spec/e2e/plugins/mod_e2e_shell_probe.lua). Measured: 2 s idle, then 10 concurrent
-- `prosodyctl shell` sessions, 8 of them `grep(".", { limit = 10000 })` and 2 with costly
-- patterns, each asking again while told "busy", until all 10 have answered. The shell
-- clients run at nice 19, so that their own start-up (Lua loading Prosody's libraries, ~0.2 s
-- of CPU each) does not take the CPU from the server being measured on a small machine.
-- The control: the same 10 shells at once asking for `ringbuffer:status()` (no read), to tell
-- the holds the shells' connections cause from those the reads cause.
-- Prints a Lua table constructor: per version, the longest hold idle, under the control and
-- under the reads (seconds), the answers, the busy answers and the wall time of the reads.
-- Usage (from the checkout): lua5.4 bench/shell_holds.lua
package.path = "./?.lua;" .. package.path;
if not os.getenv("E2E_PLUGIN_DIR") then -- the plugin folder prosody.start() uses by default
	assert(os.execute("make -s --no-print-directory install-plugin PLUGIN_DIR=\"$PWD/target/e2e-plugins\" >&2"));
end
local prosody = require "spec.helpers.prosody";

local deps = os.getenv("DEPS") or (os.getenv("PWD") .. "/.deps");
local ctl = {
	["0.12"] = "lua5.4 " .. deps .. "/prosody012/usr/bin/prosodyctl";
	["13"] = "lua5.4 " .. deps .. "/prosody13/usr/bin/prosodyctl";
};

local costly = { [[(?:\w{40}){20}]], [[(?i)[\p{L}\p{N}]{300}]] };

local function probe_result(server, name)
	return prosody.wait_for(function ()
		local text = server:file("probe-" .. name .. ".lua");
		return text and assert(load(text))();
	end, 120, "the probe " .. name);
end

local function measure(version)
	local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "main", size = 64 * 1024 * 1024, filename = "$DATA/main.log" };
}]]);
	local ok, result = pcall(function ()
		-- About 290,000 lines of 240 bytes: more than 64 MiB, so the ring is full.
		server:command("load_module e2e_shell_probe", "spam 290000 fill 200");
		prosody.wait_for(function () return server:log():find("fill done", 1, true); end, 120, "the ring to fill");
		server:command("fire e2e_probe/holds_start");
		prosody.sleep(2);
		server:command("fire e2e_probe/holds_stop");
		local idle = probe_result(server, "holds");
		os.remove(server.data .. "/probe-holds.lua");

		-- 10 shells at once, each asking again while told busy; the longest hold meanwhile.
		local function sessions(command_of)
			os.remove(server.data .. "/probe-holds.lua");
			server:command("fire e2e_probe/holds_start");
			local started = prosody.clock();
			local script = {};
			for i = 1, 10 do
				table.insert(script, ([[(busy=0; while :; do out=$(nice -n 19 %s --config %s shell %s 2>&1 | tail -n 1); ]]
					.. [[case "$out" in *busy:*) busy=$((busy+1)); sleep 0.2;; *) break;; esac; done; echo "$busy $out") &]])
					:format(ctl[version], server.config, (("%q"):format(command_of(i)):gsub("%$", "\\$"))));
			end
			table.insert(script, "wait");
			local pipe = io.popen("cd " .. server.dir .. " && " .. table.concat(script, "\n"));
			local answered, busy, other = 0, 0, {};
			for line in pipe:lines() do
				local times, rest = line:match("^(%d+) (.*)$");
				busy = busy + (tonumber(times) or 0);
				if rest and rest:match("^OK: ") then
					answered = answered + 1;
				else
					table.insert(other, rest or line);
				end
			end
			pipe:close();
			local wall = prosody.clock() - started;
			server:command("fire e2e_probe/holds_stop");
			local holds = probe_result(server, "holds");
			return holds.longest, answered, busy, table.concat(other, " | "), wall;
		end
		-- The control: the same 10 shells asking for ringbuffer:status(), which reads nothing.
		local control = sessions(function () return "ringbuffer:status()"; end);
		local longest, answered, busy, other, wall = sessions(function (i)
			return i <= 2 and ("ringbuffer:grep(%q, { limit = 10000 })"):format(costly[i])
				or [[ringbuffer:grep(".", { limit = 10000 })]];
		end);
		return ("{ version = %q, idle = %.4f, control = %.4f, longest = %.4f, answered = %d, busy = %d, wall = %.1f,"
			.. " other = %q }"):format(version, idle.longest, control, longest, answered, busy, wall, other);
	end);
	server:cleanup();
	return assert(ok and result, result);
end

local out = {};
for i, version in ipairs(prosody.versions()) do
	out[i] = measure(version);
end
print("return { " .. table.concat(out, ", ") .. " }");
