-- End to end: what lua/mod_log_ringbuffer.lua does inside real Prosody 0.12 and 13: logging
-- reloads (SIGHUP, direct, after a module reload, daemonizing), the level option across module
-- reloads, the admin shell, one dump per signal, signals given back, and prosodyctl.
local prosody = require "spec.helpers.prosody";
local dump_files = require "spec.helpers.dumps";
local parse_dumps, count_matching = dump_files.parse, dump_files.count_matching;

-- A pattern for a dumped line whose message is `text`.
local function message(text)
	return "\t" .. text:gsub("%p", "%%%0") .. "$";
end

local function file_mode(path)
	local pipe = io.popen("stat -c %a " .. path .. " 2>/dev/null");
	local mode = pipe:read("l");
	pipe:close();
	return mode;
end

-- The dumps of a data file, once it holds whole dumps only (no region still being written).
local function settled_dumps(server, name)
	local text = server:file(name);
	if not text or text:find("\0", 1, true) then return nil; end
	local ok, list = pcall(parse_dumps, text);
	return ok and list or nil;
end

-- Pulls `trigger` once, then logs a barrier line and pulls it again; returns the dumps the
-- first pull wrote into the data file `name` (all dumps after `seen` that come before the one
-- holding the barrier). A duplicated trigger shows up as more than one dump.
local barriers = 0;
local function dumps_of_one_pull(server, name, trigger)
	local seen = #(settled_dumps(server, name) or {});
	trigger();
	prosody.wait_for(function ()
		local list = settled_dumps(server, name);
		return list and #list > seen;
	end, 10, "a dump in " .. name);
	barriers = barriers + 1;
	local barrier = ("barrier-%d"):format(barriers);
	server:command("log info " .. barrier);
	trigger();
	return prosody.wait_for(function ()
		local list = settled_dumps(server, name);
		for i = seen + 1, #(list or {}) do
			if table.concat(list[i], "\n"):find(barrier, 1, true) then
				return table.move(list, seen + 1, i - 1, 1, {});
			end
		end
	end, 10, "the barrier dump in " .. name);
end

-- Whether the process has a handler installed for signal number `n` (/proc/<pid>/status).
local function catches(server, n)
	local status = prosody.read("/proc/" .. server.pid .. "/status");
	local mask = assert(tonumber(status:match("\nSigCgt:%s*(%x+)"), 16));
	return mask & (1 << (n - 1)) ~= 0;
end
local SIGTSTP = 20;

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version, function ()
		describe("logging reloads", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", timestamps = false, filename = "$DATA/event.log" };
	{ to = "ringbuffer", signal = "SIGWINCH", timestamps = false, filename = "$DATA/winch.log" };
	"*ringbuffer";
}]]);
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			-- Logs a marker, runs `reload`, logs another; checks that each sink's next dump
			-- holds both, and that one trigger gives one dump.
			local function check_kept_across(tag, reload)
				server:command("log debug before-" .. tag);
				reload();
				server:command("log debug after-" .. tag);
				local event_dumps = dumps_of_one_pull(server, "event.log", function () server:command("fire e2e/dump"); end);
				local winch_dumps = dumps_of_one_pull(server, "winch.log", function () server:signal("WINCH"); end);
				for _, dumps in ipairs({ event_dumps, winch_dumps }) do
					assert.equal(1, #dumps);
					assert.equal(1, count_matching(dumps[1], message("before-" .. tag)));
					assert.equal(1, count_matching(dumps[1], message("after-" .. tag)));
				end
				local status = server:shell("ringbuffer:status()");
				assert.truthy(status:find("#3: %d+ lines"), status);
				assert.falsy(status:find("#4:", 1, true), status);
			end

			it("keeps buffers and single triggers across a config reload (SIGHUP)", function ()
				check_kept_across("sighup", function () server:sighup(); end);
			end);

			it("keeps buffers and single triggers across a direct reload_logging()", function ()
				check_kept_across("direct", function () server:command("reload_logging"); end);
			end);

			it("keeps them across two direct reloads in one turn of the main loop", function ()
				check_kept_across("twice", function () server:command("reload_logging", "reload_logging"); end);
			end);

			it("keeps them across a module reload followed by a logging reload", function ()
				check_kept_across("module", function ()
					server:command("reload_module log_ringbuffer", "reload_logging");
				end);
				check_kept_across("module-sighup", function ()
					server:command("reload_module log_ringbuffer");
					server:sighup();
				end);
			end);
		end);

		describe("a daemonized server", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	"*ringbuffer";
	{ to = "ringbuffer", event = "e2e/dump", timestamps = false, filename = "$DATA/event.log" };
	debug = "*ringbuffer";
}]], nil, { daemonize = true });
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			it("has each sink once, with its buffer and one trigger", function ()
				local status = server:shell("ringbuffer:status()");
				assert.truthy(status:find("#3: %d+ lines"), status);
				assert.falsy(status:find("#4:", 1, true), status);
				server:command("log debug daemon-marker");
				local dumps = dumps_of_one_pull(server, "event.log", function () server:command("fire e2e/dump"); end);
				assert.equal(1, #dumps);
				assert.equal(1, count_matching(dumps[1], message("daemon-marker")));
				if version == "0.12" then -- 13 daemonizes before loading modules
					-- Logged right before 0.12's mod_posix reloads logging to detach.
					assert.equal(1, count_matching(dumps[1], "about to detach from the console"));
				end
			end);
		end);

		describe("the level option across module reloads", function ()
			local server;
			-- all.log's sink is made first at each logging reload, so it captures what the
			-- maker logs for the second sink, whatever order the logger's other sinks come in.
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/all", timestamps = false, filename = "$DATA/all.log" };
	{ to = "ringbuffer", level = "info", event = "e2e/dump", timestamps = false, filename = "$DATA/level.log" };
}]]);
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			local function check_no_warning_and_level_honoured(tag)
				server:command("log debug hidden-" .. tag, "log info shown-" .. tag);
				local dumps = dumps_of_one_pull(server, "level.log", function () server:command("fire e2e/dump"); end);
				assert.equal(1, #dumps);
				assert.equal(0, count_matching(dumps[1], "hidden%-"));
				assert.equal(1, count_matching(dumps[1], message("shown-" .. tag)));
				local all = dumps_of_one_pull(server, "all.log", function () server:command("fire e2e/all"); end);
				assert.equal(1, count_matching(all[1], message("shown-" .. tag)));
				assert.equal(0, count_matching(all[1], "Option 'level' is ignored"));
				assert.falsy(server:log():find("Option 'level' is ignored", 1, true));
			end

			it("gives no warning after a module reload and a logging reload", function ()
				server:command("reload_module log_ringbuffer", "reload_logging");
				check_no_warning_and_level_honoured("reload");
				server:command("reload_module log_ringbuffer");
				server:sighup();
				check_no_warning_and_level_honoured("reload-sighup");
			end);

			it("gives no warning after an unload, a load and a logging reload", function ()
				server:command("unload_module log_ringbuffer", "load_module log_ringbuffer", "reload_logging");
				check_no_warning_and_level_honoured("load");
			end);
		end);

		describe("the admin shell", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", timestamps = false, filename = "$DATA/shell.log" };
}]]);
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			it("shows and dumps the sinks, also after a module reload", function ()
				server:command("log debug shell-one");
				local status = server:shell("ringbuffer:status()");
				assert.truthy(status:find("OK: #1: %d+ lines, %d+ bytes buffered"), status);
				server:command("reload_module log_ringbuffer");
				local output = server:shell("ringbuffer:dump()");
				assert.truthy(output:find("OK: Dumping %d+ lines to "), output);
				assert.truthy(output:find(server.data .. "/shell.log", 1, true), output);
				local dumps = dump_files.wait_for(server, "shell.log");
				assert.equal(1, count_matching(dumps[1], message("shell-one")));
			end);

			if version ~= "0.12" then
				it("is a command section on 13: prosodyctl shell ringbuffer status, help", function ()
					local output, code = server:ctl("shell", "ringbuffer", "status");
					assert.equal(0, code, output);
					assert.truthy(output:find("#1: %d+ lines, %d+ bytes buffered"), output);
					output = server:ctl("shell", "ringbuffer", "dump");
					assert.truthy(output:find("Dumping %d+ lines to "), output);
					output = server:ctl("shell", "help", "ringbuffer");
					assert.truthy(output:find("Look inside and dump the in-memory log buffers", 1, true), output);
					assert.truthy(output:find("ringbuffer status", 1, true), output);
					assert.truthy(output:find("Show what each ringbuffer sink holds, its triggers and its dumps", 1, true), output);
					assert.truthy(output:find("ringbuffer dump", 1, true), output);
					output = server:ctl("shell", "help");
					assert.truthy(output:find("\nringbuf[^\n]*| Look inside and dump the in%-memory log buffers"), output);
				end);
			end
		end);

		describe("native signals", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", signal = "SIGUSR2", event = "signal/SIGUSR2", timestamps = false, filename = "$DATA/usr2.log" };
	{ to = "ringbuffer", signal = "SIGTSTP", timestamps = false, filename = "$DATA/tstp.log" }; -- TSTP
}]]);
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			it("dump once per SIGUSR2 when both signal and event name it", function ()
				server:command("log debug usr2-marker");
				local dumps = dumps_of_one_pull(server, "usr2.log", function () server:signal("USR2"); end);
				assert.equal(1, #dumps);
				assert.equal(1, count_matching(dumps[1], message("usr2-marker")));
			end);

			it("gives a signal back when a config reload removes its sink", function ()
				assert.is_true(catches(server, SIGTSTP));
				local tstp_line = "\n[^\n]*%-%- TSTP\n";
				local tstp_text = prosody.read(server.config):match(tstp_line);
				server:rewrite_config(tstp_line, "\n");
				server:sighup();
				prosody.wait_for(function () return not catches(server, SIGTSTP); end, 10, "SIGTSTP to be given back");
				server:rewrite_config("\n}\n", tstp_text .. "}\n");
				server:sighup();
				prosody.wait_for(function () return catches(server, SIGTSTP); end, 10, "SIGTSTP to be caught again");
			end);

			it("gives its signals back when the module is unloaded", function ()
				assert.is_true(catches(server, SIGTSTP));
				server:command("unload_module log_ringbuffer");
				prosody.wait_for(function () return not catches(server, SIGTSTP); end, 10, "SIGTSTP to be given back");
				assert.is_true(server:alive());
			end);
		end);

		describe("prosodyctl", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", event = "e2e/dump", timestamps = false, filename = "$DATA/x.log" };
	{ to = "ringbuffer", event = "e2e/dump", timestamps = false, filename = "$DATA/missing/y.log" };
}]], nil, { umask = "022" });
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			it("refuses to run while a dump file's directory is missing", function ()
				assert.is_nil(server:file("x.log")); -- the server itself creates nothing before a dump
				local output, code = server:ctl("shell", "ringbuffer:status()");
				assert.equal(1, code, output);
				assert.equal(table.concat({
					"One of more of the Prosody log files are not",
					"writeable, please correct the errors and try",
					"starting prosodyctl again.",
					"",
					server.data .. "/missing/y.log: No such file or directory",
					"",
				}, "\n") .. "\n", output);
			end);

			it("creates each dump file empty, which the first dump makes 0600", function ()
				os.remove(server.data .. "/x.log");
				assert(os.execute("mkdir " .. server.data .. "/missing"));
				local output, code = server:ctl("shell", "ringbuffer:status()");
				assert.equal(0, code, output);
				for _, name in ipairs({ "x.log", "missing/y.log" }) do
					assert.equal("", server:file(name));
					-- prosodyctl sets Prosody's umask option (default "027") before it opens the file
					assert.equal("640", file_mode(server.data .. "/" .. name));
				end
				server:command("log debug ctl-marker", "fire e2e/dump");
				for _, name in ipairs({ "x.log", "missing/y.log" }) do
					local dumps = dump_files.wait_for(server, name);
					assert.equal(1, #dumps);
					assert.equal(1, count_matching(dumps[1], message("ctl-marker")));
					assert.equal("600", file_mode(server.data .. "/" .. name));
				end
			end);
		end);
	end);
end
