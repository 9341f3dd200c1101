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
local time = require "util.time";

local native_name = "log_ringbuffer_native";

-- The Lua module reads its buffer out in chunks of at most this many bytes as it dumps. Read so
-- that a configuration written for it loads unchanged (and a value that is no number is still
-- reported as for any option), but ignored: a native thread writes dumps in large blocks.
module:get_option_number("log_ringbuffer_chunk_size", 16384);

-- Where the native library can be, from what Prosody tells the module about itself (no path is
-- guessed), in this order:
-- 1. beside this file (`module.path`): a plugin folder (`make install-plugin`);
-- 2. when this file is in the installer tree (`prosody.paths.installer`, the luarocks tree that
--    `prosodyctl install` fills; modulemanager tells such modules apart the same way): that
--    tree's lib/lua/<version>/, which Prosody does not add to package.cpath;
-- 3. when this file is `<tree>/share/lua/<version>/<file>` (luarocks make --tree <tree>, with
--    <tree>/share/lua/<version> or <tree> in plugin_paths): <tree>/lib/lua/<version>/;
-- 4. package.cpath, through require.
local function native_candidates()
	local lua_version = _VERSION:match("%d+%.%d+");
	local file_name = native_name .. ".so";
	local lib_dir = "/lib/lua/" .. lua_version .. "/";
	local candidates, seen = {}, {};
	local function add(path, where)
		if not seen[path] then
			seen[path] = true;
			table.insert(candidates, { path = path, where = where });
		end
	end
	local file = module.path;
	if not file then return candidates; end
	add((file:match("^(.*)/[^/]*$") or ".") .. "/" .. file_name, "beside " .. file);
	local installer = prosody.paths and prosody.paths.installer;
	if installer and file:sub(1, #installer + 1) == installer .. "/" then
		add(installer .. lib_dir .. file_name, "in the installer tree " .. installer);
	end
	local tree = file:match("^(.*)/share/lua/" .. (lua_version:gsub("%.", "%%.")) .. "/[^/]*$");
	if tree then
		add(tree .. lib_dir .. file_name, "in the luarocks tree " .. tree);
	end
	return candidates;
end

-- The native library and the path it was loaded from.
local function load_native()
	local loaded = package.loaded[native_name];
	if loaded then
		return loaded, loaded.loaded_from;
	end
	local tried = {};
	for _, candidate in ipairs(native_candidates()) do
		local open, err = package.loadlib(candidate.path, "luaopen_" .. native_name);
		if open then
			return open(), candidate.path;
		end
		err = tostring(err);
		if not err:find(candidate.path, 1, true) then
			err = candidate.path .. ": " .. err;
		end
		table.insert(tried, candidate.where .. ": " .. err);
	end
	local ok, lib = pcall(require, native_name);
	if ok then
		package.loaded[native_name] = nil; -- kept only once it passes the build check
		local path = package.searchpath and package.searchpath(native_name, package.cpath);
		return lib, path or ("package.cpath (" .. package.cpath .. ")");
	end
	table.insert(tried, "package.cpath: " .. tostring(lib));
	error("cannot load the native library " .. native_name .. ".so; tried: " .. table.concat(tried, "; "));
end

local native, native_path = load_native();

-- This file, the admin shell's (ringbuffer_shell.lib.lua) and the library must come from one build
-- (a library installed one way can shadow a newer one installed another way): a Lua file the
-- library was not built with is refused, naming both files.
local function check_build(lua_file, built_stamp)
	local lua_stamp, stamp_err;
	if lua_file and native.lua_file_stamp then
		lua_stamp, stamp_err = native.lua_file_stamp(lua_file);
	end
	if lua_stamp == nil or lua_stamp ~= built_stamp then
		error(("The Lua file %s (build %s) and the native library %s (build %s) come from different builds; "
			.. "install both from one build (make install-plugin, or the same package or rock) and restart Prosody")
			:format(lua_file or "?", lua_stamp or stamp_err or "unknown", native_path,
				built_stamp or "unknown: older than build stamps"), 0);
	end
end
if module.path then
	check_build(module.path, native.build_stamp);
end
-- The admin shell. module:require looks for it in the plugin folders, as for this file: a plugin
-- folder and the Debian package hold mod_log_ringbuffer/ringbuffer_shell.lib.lua; a rock installs
-- share/lua/<version>/mod_log_ringbuffer/ringbuffer_shell.lua, where Prosody 0.12 and 13 look too.
-- Its build is checked before anything of it is put in place.
local ringbuffer_shell = module:require "ringbuffer_shell";
if module.path then
	check_build(ringbuffer_shell.path, native.shell_build_stamp);
end
native.loaded_from = native_path;
package.loaded[native_name] = native;
module:log("info", "Using %s with the native library %s (build %s)", module.path or "this file", native_path,
	native.build_stamp);

-- Before 0.12, mod_posix turns neither SIGUSR1 nor SIGUSR2 into a `signal/...` event and there
-- is no admin shell: only the version tells (what else 0.11 lacks, module:metric and
-- module:set_status, is looked for where it is used). Those two signals are caught natively there.
local prosody_major, prosody_minor = tostring(prosody.version or ""):match("^(%d+)%.(%d+)");
local before_012 = tonumber(prosody_major) == 0 and tonumber(prosody_minor) < 12;

-- Sinks attached to Prosody's logger, in the order the logging config lists them.
-- Each record: { handle = native handle, sink = the function Prosody calls }.
local live = {};
-- The logging reload in progress: { claimed = its records in maker-call order, taken = the
-- same as a set, fresh = those of them made anew, previous = `live` before it }.
local pass;
-- What the admin shell and the statistics call a live sink: its name, or its position.
local function label(i, record)
	return record.name or tostring(i);
end

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
	if not module.set_status then -- 0.11: the log lines are all there is
		failing_status = failing;
		return;
	end
	if failing and failing ~= failing_status then
		module:set_status("error", failing, true);
	elseif not failing and failing_status then
		module:set_status("info", "Dumps are working again", true);
	end
	failing_status = failing;
end

-- The global event `ringbuffer/dumped`, fired on the main loop after every dump, whatever
-- started it: { sink =, path =, lines =, reason =, ok =, error = }. A handler that errors is
-- logged; it never breaks the module.
local function fire_dumped()
	for _, outcome in ipairs(native.take_dumped()) do
		local sink = "removed by a config reload";
		for i, record in ipairs(live) do
			if record.handle:sink_id() == outcome.sink_id then
				sink = label(i, record);
				break;
			end
		end
		local event = { sink = sink, path = outcome.path, lines = outcome.lines, reason = outcome.reason,
			ok = outcome.ok, error = outcome.error };
		local ok, err = pcall(prosody.events.fire_event, "ringbuffer/dumped", event);
		if not ok then
			module:log("error", "A handler of ringbuffer/dumped failed: %s", tostring(err));
		end
	end
end

local function log_reports()
	for _, report in ipairs(native.take_reports()) do
		module:log(report.level, "%s", report.text);
	end
	update_status();
	fire_dumped();
end

local function has_native_triggers()
	for _, record in ipairs(live) do
		if record.handle:has_native_triggers() or record.native_usr_signals then return true; end
	end
	return false;
end

-- Sinks a reload removed while their dump_on window was open: the native timer dumps them at
-- the window's end, and the outcome is still to be logged.
local lingering = {};
-- Whether a dump_on window was open at the last look: its dump starts as it closes, so the
-- reports are polled once more after that.
local windows_were_open = false;

local function windows_open()
	for i = #lingering, 1, -1 do
		if not lingering[i].handle:window_open() then table.remove(lingering, i); end
	end
	if #lingering > 0 then return true; end
	for _, record in ipairs(live) do
		if record.handle:window_open() then return true; end
	end
	return false;
end

local function poll_reports()
	-- Asked first: when none is in flight, every outcome is reported by the time we look.
	local busy = native.dumps_in_flight() > 0;
	log_reports();
	local err = native.rearm_after_fork();
	if err then module:log("error", "Native signal triggers stopped: %s", err); end
	local open, was_open = windows_open(), windows_were_open;
	windows_were_open = open;
	if busy then
		return 0.05;
	elseif open or was_open or has_native_triggers() then
		return 1;
	end
	report_timer = nil;
end

local function watch_reports()
	if not report_timer then
		report_timer = module:add_timer(0.05, poll_reports);
	end
end

-- The heartbeat: while a sink has dump_on_stall (or dump_on_exit), this timer tells the native
-- side once a second that the main loop turned; a native thread dumps a sink whose loop has not
-- turned for its dump_on_stall (see runtime::stall), or one with dump_on_exit when a stop signal
-- finds the loop hung (runtime::stop_signal). A stall that a beat ends is logged here.
local heartbeat_timer;

local function wants_heartbeat()
	for _, records in ipairs({ live, pass and pass.claimed or {} }) do
		for _, record in ipairs(records) do
			if record.handle:wants_heartbeat() then return true; end
		end
	end
	return false;
end

-- dump_on_exit when the main loop hangs: a native thread dumps those sinks if a SIGTERM or SIGINT
-- gets no response from this loop in time. Each call says the loop runs, and follows how Prosody
-- takes those signals (0.12 installs its handlers on a zero-delay timer after modules load).
local function check_stop_signal()
	for _, message in ipairs(native.check_stop_signal() or {}) do
		module:log(message.level, "%s", message.text);
	end
end

-- An error must not stop the timer: a heartbeat that stops looks like a stalled loop.
local function beat()
	local ok, warnings = pcall(native.heartbeat);
	for _, warning in ipairs(ok and warnings or {}) do
		module:log(warning.level, "%s", warning.text);
	end
	if not ok then
		module:log("error", "dump_on_stall heartbeat: %s", tostring(warnings));
	end
	check_stop_signal();
	if wants_heartbeat() then
		return native.heartbeat_interval;
	end
	heartbeat_timer = nil;
end

local function start_heartbeat()
	if not heartbeat_timer then
		heartbeat_timer = module:add_timer(0, beat);
	end
end

-- keep_dumps_for: besides after each dump, once an hour (first on the turn after a sink with
-- it starts) each such sink deletes its dump files older than the span; the listing and the
-- deleting run on a native thread (see runtime::retention), whose report is polled for.
local age_timer;
local start_age_timer; -- once settle() is known

local function dump(record, reason, to)
	local ok, result, lines = record.handle:dump(reason, to);
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
		-- The event is hooked as well: another module may fire it.
		local usr_signal = before_012 and event_name:match("^signal/(SIGUSR[12])$");
		local problem = usr_signal and record.handle:watch_signal(usr_signal);
		if problem then
			module:log("error", "%s", problem);
		elseif usr_signal then
			record.native_usr_signals = true;
		end
		if not by_event[event_name] then
			by_event[event_name] = {};
			module:hook_global(event_name, on_event(event_name));
		end
		table.insert(by_event[event_name], record);
	end
	for _, problem in ipairs(record.handle:arm()) do
		module:log("error", "%s", problem);
	end
	if record.handle:has_native_triggers() or record.native_usr_signals then
		watch_reports();
	end
	if record.handle:wants_heartbeat() then
		start_heartbeat();
	end
	if record.handle:keeps_dumps_for() then
		start_age_timer();
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

-- Takes sinks out of service. A sink that no successor replaces (the reload removed it) dumps
-- what it holds, so that no line vanishes: at the end of its open dump_on window if it has one
-- (the native timer keeps it until then), else now.
local function retire(records, kept, replaced)
	for _, record in ipairs(records) do
		if not (kept and kept[record]) then
			disarm(record);
			-- A replaced sink's lines and open window are its successor's now.
			local removed = not (replaced and replaced[record]);
			if removed and record.handle:window_open() then
				table.insert(lingering, record);
				watch_reports();
			elseif removed and record.handle:usage() > 0 then
				dump(record, "its sink was removed by a config reload");
			end
			if removed then record.handle:close_journal(); end
		end
	end
end

-- `persist`: opens the sink's ring file (named after its name or its position `i`), which first
-- dumps what a process that died left in it. Tried once per sink (a failure is logged once).
local function open_journal(record, i)
	if record.journal_tried or not record.handle:persists() or record.handle:journal_path() then return; end
	record.journal_tried = true;
	local said = record.handle:open_journal(record.name or tostring(i));
	for _, message in ipairs(said) do
		module:log(message.level, "%s", message.text);
	end
	if #said > 0 then watch_reports(); end
end

-- Whether a sink of the previous configuration has a ring file open (a sink made anew then
-- waits for the pairing: its predecessor may hand the same file over).
local function journals_open(records)
	for _, record in ipairs(records) do
		if record.handle:journal_path() then return true; end
	end
	return false;
end

-- Which sink a reload made anew (its options changed) replaces which of the previous ones,
-- in this order of preference: the one with the same `name`; else the first one that dumps to
-- the same place (`filename`, `filename_template` or `forward`); else, in config order, the
-- n-th sink left unpaired before the reload is replaced by the n-th one left unpaired after
-- it. Each side at most once; a sink kept as it was is no successor. An old sink left over is
-- removed.
local function index_of(list, item)
	for i, x in ipairs(list) do
		if x == item then return i; end
	end
end

local function successors_of(previous, claimed, taken, fresh)
	local successors, adopted = {}, {};
	local function pair(old, new)
		if new and fresh[new] and not adopted[new] and not taken[old] and not successors[old] then
			successors[old], adopted[new] = new, true;
		end
	end
	local function pair_all(matches)
		for _, old in ipairs(previous) do
			for _, new in ipairs(claimed) do
				if not successors[old] and matches(old, new) then pair(old, new); end
			end
		end
	end
	pair_all(function (old, new) return old.name ~= nil and new.name == old.name; end);
	pair_all(function (old, new) return old.handle:same_target(new.handle); end);
	local rest = {};
	for _, new in ipairs(claimed) do
		if fresh[new] and not adopted[new] then table.insert(rest, new); end
	end
	for _, old in ipairs(previous) do
		if #rest > 0 and not taken[old] and not successors[old] then
			pair(old, table.remove(rest, 1));
		end
	end
	return successors;
end

local function finish_pass()
	local successors = successors_of(pass.previous, pass.claimed, pass.taken, pass.fresh);
	-- In the previous order: each successor takes its predecessor's lines and open dump_on
	-- window before the predecessor is retired.
	for _, old in ipairs(pass.previous) do
		local new = successors[old];
		if new then
			new.handle:adopt(old.handle);
			new.handle:take_journal(old.handle, new.name or tostring(index_of(pass.claimed, new)));
			old.handle:close_journal();
		end
	end
	retire(pass.previous, pass.taken, successors);
	live, pass = pass.claimed, nil;
	for i, record in ipairs(live) do
		open_journal(record, i);
	end
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

local keep_dumps_for_interval = 3600;
local function prune_aged()
	settle();
	local any = false;
	for _, record in ipairs(live) do
		if record.handle:keeps_dumps_for() then
			any = true;
			if record.handle:prune_aged_dumps() then watch_reports(); end
		end
	end
	if any then return keep_dumps_for_interval; end
	age_timer = nil;
end

function start_age_timer()
	if not age_timer then
		age_timer = module:add_timer(0, prune_aged);
	end
end

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
		module:log("warn", "A ringbuffer sink has no 'signal', 'event', 'dump_on', 'dump_on_match' or 'dump_on_exit' option: "
			.. "nothing will dump it but the admin shell or a crash");
	end
	arm(record);
	return record;
end

-- The `name` option: how the admin shell and the statistics call a sink (default: its position).
local function sink_name(name)
	if name ~= nil and (type(name) ~= "string" or name == "" or name:match("^%d+$")) then
		module:log("error", "Option 'name' of a ringbuffer sink must be a word that is not a number; ignored");
		return nil;
	end
	return name;
end

-- `filter`, as Prosody's own file sink has it: a function given each line's message, formatted
-- the way that sink formats it (util.format's result, made natively), that returns the text to
-- keep, or nil or false to leave the line out of this sink (it is not stored, counted or seen
-- by dump_on). A sink without one is the native function itself and pays nothing. The filter runs in a coroutine
-- of its own, so that one that yields cannot suspend the code that logged: a yield, an error
-- or a value that is no string (a number is taken as its text) keeps the line unfiltered, and
-- is logged at most once a minute per sink. A line logged while the sink's filter runs (by the
-- filter itself, or that report) is stored as it is, without the filter: no recursion. A call
-- util.format cannot format (a `__tostring` that raises) is stored as the sink stores it.
local filter_report_interval = 60;
local clock = time.monotonic or time.now;
-- util.format's result, formatted natively (util.format itself for what only Lua can answer).
local format_message = native.message_formatter(format, tostring);

-- How an option's value reads in a config error (as the native side shows them).
local function shown_value(value)
	if type(value) == "string" then return ("%q"):format(value); end
	if type(value) == "number" or type(value) == "boolean" then return tostring(value); end
	return "a " .. type(value);
end

local function sink_filter(filter)
	if filter == nil or type(filter) == "function" then return filter; end
	module:log("error", "ringbuffer sink: Invalid value for option 'filter': %s; expected a function "
		.. "(message) -> message or nil; capturing lines unfiltered", shown_value(filter));
	return nil;
end

local function filtered_sink(native_sink, filter, sink_label)
	local busy = false;
	local finished = {}; -- marks the runner's own yields
	local runner;
	local function new_runner()
		return coroutine.create(function (text)
			while true do
				text = coroutine.yield(finished, filter(text));
			end
		end);
	end
	local reported_at, unreported = nil, 0;
	local function report(problem)
		local now = clock();
		if reported_at and now - reported_at < filter_report_interval then
			unreported = unreported + 1;
			return;
		end
		local more = unreported > 0 and ("; %d more such lines since the last report"):format(unreported) or "";
		reported_at, unreported = now, 0;
		module:log("error", "The filter of ringbuffer sink %s %s: the line was kept unfiltered%s", sink_label, problem, more);
	end
	return function (source, level, message, ...)
		if busy then
			return native_sink(source, level, message, ...);
		end
		busy = true;
		local text = format_message(message, ...);
		if text == nil then -- util.format cannot format it (see filter_format.rs): as without filter
			native_sink(source, level, message, ...);
			busy = false;
			return;
		end
		runner = runner or new_runner();
		local ok, mark, result = coroutine.resume(runner, text);
		local problem;
		if not ok then
			runner, problem = nil, "failed: " .. tostring(mark);
		elseif mark ~= finished then
			runner, problem = nil, "yielded (a filter must return at once)";
		elseif result == nil or result == false then
			busy = false;
			return;
		elseif type(result) == "number" then
			result = tostring(result);
		elseif type(result) ~= "string" then
			problem = ("returned a %s (expected a string, or nil to leave the line out)"):format(type(result));
		end
		native_sink(source, level, "%s", problem and text or result);
		-- Another sink that raises must not leave this one busy (its filter would stay off).
		if problem then pcall(report, problem); end
		busy = false;
	end
end

local function ringbuffer_sink_maker(sink_config)
	if pass and logger_was_reset() then
		finish_pass(); -- a new reload began before the last one was settled
	end
	if not pass then
		pass = { claimed = {}, taken = {}, fresh = {}, previous = live };
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
	if not record then
		record = new_record(handle, sink, problems);
		pass.fresh[record] = true;
	end
	record.name = sink_name(sink_config.name);
	table.insert(pass.claimed, record);
	pass.taken[record] = true;
	if not journals_open(pass.previous) then
		open_journal(record, #pass.claimed);
	end
	local filter = sink_filter(sink_config.filter);
	if filter then
		return filtered_sink(record.sink, filter, record.name or ("#" .. #pass.claimed));
	end
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

module:hook_global("server-started", function ()
	check_stop_signal();
	module:add_timer(0, check_stop_signal);
end);
-- A shutdown that takes a while keeps saying the loop runs.
module:hook_global("server-stopping", function ()
	check_stop_signal();
	module:add_timer(0.25, function ()
		check_stop_signal();
		return 0.25;
	end);
end);

-- At shutdown: sinks with dump_on_exit dump, a SIGUSR1/SIGUSR2 that arrived as the main loop
-- stopped (it stays pending on Prosody 13) is honoured, and every dump in flight is finished.
module:hook_global("server-stopped", function ()
	-- Shutdown begins first: native threads start no new dumps, and these are written at once,
	-- so a forward that fails falls back to the sink's file (there is no next dump).
	native.shut_down(0);
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
	-- The very last: a ring file closed here is not recovered at the next start.
	for _, record in ipairs(live) do
		record.handle:close_journal();
	end
end);

-- Statistics (module:metric), published on Prosody's collection.
-- The sinks count natively; each collection copies their counts into metric families labelled
-- by sink. A counter is advanced by what its sink counted since the last collection (the record
-- remembers, across logging and module reloads; the families outlive a module reload), so it
-- never goes back: a replaced sink adds to its label, a renamed one goes on under its new label.
-- util.openmetrics cannot remove a label: the gauges are cleared first, so a sink that went away
-- shows 0 lines and bytes held, and its counters keep their last values.
if not module.metric then
	module:log("info", "Statistics are unavailable: this Prosody has no module:metric (its statsmanager API came in 0.12)");
end
local metric = module.metric and function (...) return module:metric(...); end or function () end;
local captured_lines = metric("counter", "captured", "lines", "Lines stored by a ringbuffer sink", { "sink" });
local dropped_lines = metric("counter", "dropped", "lines",
	"Lines a ringbuffer sink lost to its size/lines limit or max_age", { "sink" });
local held_lines = metric("gauge", "held", "lines", "Lines a ringbuffer sink holds", { "sink" });
local held_bytes = metric("gauge", "held", "bytes", "Bytes of text a ringbuffer sink holds", { "sink" });
local dumps_total = metric("counter", "dumps", "", "Dumps of a ringbuffer sink by outcome", { "sink", "outcome" });

module:hook_global("stats-update", function ()
	if not captured_lines then return; end
	settle();
	held_lines:clear();
	held_bytes:clear();
	for i, record in ipairs(live) do
		local sink, now = label(i, record), record.handle:counters();
		local before = record.published or { captured = 0, dropped = 0, dumps_done = 0, dumps_failed = 0 };
		captured_lines:with_labels(sink):add(now.captured - before.captured);
		dropped_lines:with_labels(sink):add(now.dropped - before.dropped);
		dumps_total:with_labels(sink, "ok"):add(now.dumps_done - before.dumps_done);
		dumps_total:with_labels(sink, "failed"):add(now.dumps_failed - before.dumps_failed);
		held_lines:with_labels(sink):set(now.lines);
		held_bytes:with_labels(sink):set(now.bytes);
		record.published = now;
	end
end);

-- The admin shell: ringbuffer:status(), tail(), grep(), dump(), follow(), clear(), pause() and
-- resume() (ringbuffer_shell.lib.lua).
ringbuffer_shell.register({
	live_sinks = function () return live; end;
	label = label;
	dump = dump;
	log_reports = log_reports;
	settle = settle;
	native = native;
	before_012 = before_012;
});

function module.unload()
	ringbuffer_shell.stop_followers();
	log_reports();
	settle();
	for _, record in ipairs(live) do
		record.handle:disarm();
	end
	ringbuffer_shell.remove_sections();
	if not module.reloading then
		-- Really unloading: take the ringbuffer sinks out of Prosody's logger too.
		loggingmanager.register_sink_type("ringbuffer", nil);
		loggingmanager.reload_logging();
	end
end
