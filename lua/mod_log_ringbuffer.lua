-- mod_log_ringbuffer: keep the newest log lines in memory, write them to a file on demand.
--
-- The ring, the formatting and the dump writing live in the native library
-- (log_ringbuffer_native); this file registers the "ringbuffer" sink type, hooks the
-- configured events and logs what the native side reports.

module:set_global();

local loggingmanager = require "core.loggingmanager";
local logger = require "util.logger";
local format = require "util.format".format;
local stanza_mt = require "util.stanza".stanza_mt;

local native_name = "log_ringbuffer_native";

-- Accepted for compatibility with the Lua module; dumps are no longer written in chunks.
module:get_option_number("log_ringbuffer_chunk_size", 16384);

-- The native library sits beside this file (plugin folder), in the luarocks tree this file was
-- installed into (Prosody does not add that tree's lib/ to package.cpath), or on package.cpath.
local function load_native()
	if package.loaded[native_name] then
		return package.loaded[native_name];
	end
	local dir = module:get_directory();
	local lua_version = _VERSION:match("%d+%.%d+");
	local problems = {};
	for _, path in ipairs({
		dir .. "/" .. native_name .. ".so";
		dir .. "/../../../lib/lua/" .. lua_version .. "/" .. native_name .. ".so";
	}) do
		local open, err, stage = package.loadlib(path, "luaopen_" .. native_name);
		if open then
			local lib = open();
			package.loaded[native_name] = lib;
			return lib;
		elseif stage ~= "open" or not err:find("No such file", 1, true) then
			table.insert(problems, err);
		end
	end
	local ok, lib = pcall(require, native_name);
	if ok then
		return lib;
	end
	table.insert(problems, lib);
	error("cannot load the native library " .. native_name .. ".so: " .. table.concat(problems, "; "));
end

local native = load_native();

-- Sinks attached to Prosody's logger, in the order the logging config lists them.
-- Each record: { handle = native handle, sink = the function Prosody calls }.
local live = {};
-- The logging reload in progress: { claimed = its records in maker-call order, taken = the
-- same as a set, previous = `live` before it }.
local pass;
-- Event name -> records it dumps.
local by_event = {};
local report_timer;

-- Outcomes of dumps written by native threads, logged here since only this thread may log.
-- A failing sink shows in Prosody's module status (the shell's module:info()) until its dumps
-- work again.
local failing_status;
local function update_status()
	local failing;
	for i, record in ipairs(live) do
		local last_error = record.handle:last_error();
		if last_error then
			failing = ("Dumps of ringbuffer sink #%d are failing: %s"):format(i, last_error);
			break;
		end
	end
	if failing and failing ~= failing_status then
		module:set_status("error", failing, true);
	elseif not failing and failing_status then
		module:set_status("info", "Dumps are working again", true);
	end
	failing_status = failing;
end

local function log_reports()
	for _, report in ipairs(native.take_reports()) do
		module:log(report.level, "%s", report.text);
	end
	update_status();
end

local function has_native_triggers()
	for _, record in ipairs(live) do
		if record.handle:has_native_triggers() then return true; end
	end
	return false;
end

local function poll_reports()
	-- Asked first: when none is in flight, every outcome is reported by the time we look.
	local busy = native.dumps_in_flight() > 0;
	log_reports();
	local err = native.rearm_after_fork();
	if err then module:log("error", "Native signal triggers stopped: %s", err); end
	if busy then
		return 0.05;
	elseif has_native_triggers() then
		return 1;
	end
	report_timer = nil;
end

local function watch_reports()
	if not report_timer then
		report_timer = module:add_timer(0.05, poll_reports);
	end
end

local function dump(record, reason)
	local ok, result, lines = record.handle:dump(reason);
	if not ok then
		module:log("error", "%s", result);
	end
	watch_reports();
	return ok, result, lines;
end

local function on_event(event_name)
	return function ()
		for _, record in ipairs(by_event[event_name]) do
			dump(record, event_name);
		end
	end
end

local function arm(record)
	for _, event_name in ipairs(record.handle:events()) do
		if not by_event[event_name] then
			by_event[event_name] = {};
			module:hook_global(event_name, on_event(event_name));
		end
		table.insert(by_event[event_name], record);
	end
	for _, problem in ipairs(record.handle:arm()) do
		module:log("error", "%s", problem);
	end
	if record.handle:has_native_triggers() then
		watch_reports();
	end
end

local function disarm(record)
	for _, records in pairs(by_event) do
		for i = #records, 1, -1 do
			if records[i] == record then
				table.remove(records, i);
			end
		end
	end
	record.handle:disarm();
end

-- Which maker calls make up one logging reload. Prosody's reload_logging() first calls
-- util.logger's reset(), which empties the sink list of every level, then calls the maker once
-- per ringbuffer entry. A probe sink on a level of our own, at which nothing ever logs, tells
-- whether such a reset happened since the current pass began; how many calls a reload makes
-- never matters. A pass is settled (its sinks become `live`, dropped ones are disarmed) once
-- the reload has returned: on Prosody's logging-reloaded event, on a zero-delay timer (direct
-- reload_logging() calls, e.g. when daemonizing), or at the next reset, whichever comes first.
local probe_level = "ringbuffer-reload-probe";
local probe_log = logger.make_logger("mod_log_ringbuffer", probe_level);
local probe_seen = false;
local function probe_sink()
	probe_seen = true;
end

local function logger_was_reset()
	probe_seen = false;
	probe_log("probe");
	return not probe_seen;
end

local function attach_probe()
	if logger_was_reset() then
		logger.add_level_sink(probe_level, probe_sink);
	end
end
attach_probe(); -- from now on (a reloaded module continues the state it restores)

local function retire(records, kept)
	for _, record in ipairs(records) do
		if not (kept and kept[record]) then
			disarm(record);
		end
	end
end

local function finish_pass()
	retire(pass.previous, pass.taken);
	live, pass = pass.claimed, nil;
end

-- Once no reload_logging() is running (from events, timers and the shell).
local function settle()
	local reset = logger_was_reset();
	if pass then
		finish_pass();
	end
	if not reset then return; end
	-- The logger was reset after the last maker call: the logging config has no ringbuffer sink.
	retire(live);
	live = {};
	attach_probe();
end

module:hook_global("logging-reloaded", settle);

-- Whether `levels` is exactly what `level = min_level` gives.
local function is_min_only(levels, min_level)
	if type(levels) ~= "table" or levels.min ~= min_level then return false; end
	for key in pairs(levels) do
		if key ~= "min" then return false; end
	end
	return true;
end

-- `level = "info"` is ours to honour (Prosody reads `levels` after the maker returns). The
-- table may be one that an earlier maker call (perhaps of an earlier instance of this module)
-- already gave `levels = { min = ... }`: only a different `levels` can be the user's own.
local function apply_min_level(sink_config, min_level)
	if not min_level then return; end
	if sink_config.levels == nil then
		sink_config.levels = { min = min_level };
	elseif not is_min_only(sink_config.levels, min_level) then
		module:log("warn", "Option 'level' is ignored for a ringbuffer sink that also sets 'levels'");
	end
end

local function new_record(handle, sink, problems)
	for _, problem in ipairs(problems) do
		module:log(problem.level, "ringbuffer sink: %s", problem.text);
	end
	local record = { handle = handle, sink = sink };
	if #handle:events() == 0 and not handle:has_native_triggers() and not handle:dump_on_exit() then
		module:log("warn", "A ringbuffer sink has no 'signal', 'event', 'dump_on' or 'dump_on_exit' option: "
			.. "nothing will dump it but the admin shell or a crash");
	end
	arm(record);
	return record;
end

local function ringbuffer_sink_maker(sink_config)
	if pass and logger_was_reset() then
		finish_pass(); -- a new reload began before the last one was settled
	end
	if not pass then
		pass = { claimed = {}, taken = {}, previous = live };
		attach_probe();
		module:add_timer(0, function () settle(); end);
	end
	local handle, sink, problems = native.new_sink(sink_config, prosody.paths, format, tostring, stanza_mt);
	apply_min_level(sink_config, handle:min_level());

	-- Same options as a sink of the previous configuration: keep its buffer and triggers.
	local record;
	for _, old in ipairs(pass.previous) do
		if not pass.taken[old] and old.handle:same_options(handle) then
			record = old;
			break;
		end
	end
	record = record or new_record(handle, sink, problems);
	table.insert(pass.claimed, record);
	pass.taken[record] = true;
	return record.sink;
end

loggingmanager.register_sink_type("ringbuffer", ringbuffer_sink_maker);

-- A module reload keeps the buffers (the logger still holds the old sink functions).
function module.save()
	settle();
	return { live = live };
end

function module.restore(data)
	live = data.live or {};
	for _, record in ipairs(live) do
		arm(record);
	end
end

-- At shutdown: sinks with dump_on_exit dump, a SIGUSR1/SIGUSR2 that arrived as the main loop
-- stopped (it stays pending on Prosody 13) is honoured, and every dump in flight is finished.
module:hook_global("server-stopped", function ()
	for _, record in ipairs(live) do
		if record.handle:dump_on_exit() then
			dump(record, "dump_on_exit");
		end
	end
	for _, name in ipairs(native.pending_signals()) do
		local records = by_event["signal/" .. name];
		for _, record in ipairs(records or {}) do
			dump(record, "signal/" .. name .. " (pending at shutdown)");
		end
	end
	native.shut_down(native.shutdown_wait);
	log_reports();
end);

-- Admin shell, all of it: ringbuffer:dump() and ringbuffer:status(). The section goes into the
-- shell's environment, which is all 0.12 knows; the same handlers are also offered as
-- shell-command items, which 13's shell turns into `prosodyctl shell ringbuffer status` and
-- `help ringbuffer` (a Prosody without that feature keeps the items unused).
local function shell_dump()
	if #live == 0 then
		return false, "No ringbuffer sinks are configured";
	end
	local started, failed = {}, {};
	for _, record in ipairs(live) do
		local ok, result, lines = dump(record, "admin shell");
		if ok then
			table.insert(started, ("%d lines to %s"):format(lines, result));
		else
			table.insert(failed, result);
		end
	end
	if #failed > 0 then
		return false, table.concat(failed, "\n");
	end
	return true, "Dumping " .. table.concat(started, ", ");
end

local function shell_time(t)
	return t and os.date("%Y-%m-%d %H:%M:%S", t) or "-";
end

local function shell_status()
	local out = {};
	for i, record in ipairs(live) do
		local s = record.handle:status();
		table.insert(out, ("#%d: %d lines, %d bytes buffered (%s = %d), %d dropped since the last dump"):format(
			i, s.lines, s.bytes, s.bound, s.limit, s.dropped));
		table.insert(out, ("    oldest %s, newest %s; triggers: %s"):format(shell_time(s.oldest), shell_time(s.newest),
			#s.triggers > 0 and table.concat(s.triggers, ", ") or "none"));
		local last = s.last_path and ("; last to %s: %s"):format(s.last_path, s.last_error or "ok") or "";
		table.insert(out, ("    dumps: %d done, %d failed%s"):format(s.dumps, s.failed, last));
	end
	return true, #out > 0 and table.concat(out, "\n") or "No ringbuffer sinks are configured";
end

local shell_commands = {
	{ name = "dump", desc = "Dump every ringbuffer sink to its file now", run = shell_dump };
	{ name = "status", desc = "Show how many lines and bytes each ringbuffer sink holds", run = shell_status };
};

local shell_section = {};
for _, command in ipairs(shell_commands) do
	-- Called as ringbuffer:<name>(); never raises into the shell.
	command.handler = function (self) -- luacheck: ignore 212/self
		local ok, success, text = pcall(function ()
			settle();
			return command.run();
		end);
		if not ok then
			return false, ("ringbuffer:%s() failed: %s"):format(command.name, tostring(success));
		end
		return success, text;
	end;
	shell_section[command.name] = command.handler;
end

local shell_env = module:shared("/*/admin_shell/env");
shell_env.ringbuffer = shell_section;
for _, command in ipairs(shell_commands) do
	module:add_item("shell-command", {
		section = "ringbuffer";
		section_desc = "Dump and inspect the in-memory log buffers of mod_log_ringbuffer";
		name = command.name;
		desc = command.desc;
		args = {};
		handler = command.handler;
	});
end

function module.unload()
	log_reports();
	settle();
	for _, record in ipairs(live) do
		record.handle:disarm();
	end
	if shell_env.ringbuffer == shell_section then
		shell_env.ringbuffer = nil;
	end
	if not module.reloading then
		-- Really unloading: take the ringbuffer sinks out of Prosody's logger too.
		loggingmanager.register_sink_type("ringbuffer", nil);
		loggingmanager.reload_logging();
	end
end
