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
local async = require "util.async";
local promise = require "util.promise";
local time = require "util.time";
local socket = require "socket";
-- Lua 5.1 and LuaJIT have neither table.pack nor table.unpack.
local pack = table.pack or function (...) return { n = select("#", ...), ... }; end;
local unpack = table.unpack or _G.unpack; -- luacheck: ignore 143

local native_name = "log_ringbuffer_native";

-- Accepted for compatibility with the Lua module; dumps are no longer written in chunks.
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

-- This file and the library must come from one build (a library installed one way can shadow a
-- newer one installed another way): a library of another build is refused, naming both files.
local lua_stamp, stamp_err;
if module.path and native.lua_file_stamp then
	lua_stamp, stamp_err = native.lua_file_stamp(module.path);
end
if module.path and (lua_stamp == nil or lua_stamp ~= native.build_stamp) then
	error(("The Lua file %s (build %s) and the native library %s (build %s) come from different builds; "
		.. "install both from one build (make install-plugin, or the same package or rock) and restart Prosody")
		:format(module.path, lua_stamp or stamp_err or "unknown", native_path,
			native.build_stamp or "unknown: older than build stamps"), 0);
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

-- Admin shell, all of it: ringbuffer:status(), tail(), grep(), dump(), clear(), pause() and
-- resume(). The section goes into the shell's environment, which is all 0.12 knows; the same
-- handlers are also offered as shell-command items, which 13's shell turns into `prosodyctl
-- shell ringbuffer tail 50 --source mod_s2s` and `help ringbuffer` (a Prosody without that
-- feature keeps the items unused). tail, grep and a dump that keeps the buffer read a snapshot
-- on a native thread; the command answers with a promise, which both shells wait for.

-- The live sinks a command applies to: all of them, or the one `which` names (name or position).
local function shell_sinks(which)
	if #live == 0 then
		return nil, "No ringbuffer sinks are configured";
	end
	local chosen, labels = {}, {};
	for i, record in ipairs(live) do
		local name = label(i, record);
		table.insert(labels, name);
		if which == nil or tostring(which) == name or tostring(which) == tostring(i) then
			table.insert(chosen, { label = name, record = record });
		end
	end
	if #chosen == 0 then
		return nil, ("There is no ringbuffer sink %q; the sinks are: %s"):format(tostring(which), table.concat(labels, ", "));
	end
	return chosen;
end

local read_fields = { level = true, source = true, since = true, limit = true, sink = true, shell = true, jid = true };
local dump_fields = { level = true, source = true, since = true, sink = true, keep = true, to = true, jid = true };

local function field_list(fields)
	local names = {};
	for name in pairs(fields) do table.insert(names, name); end
	table.sort(names);
	return table.concat(names, ", ");
end

-- A filter table as given (nil: none). Number keys are the positional arguments that 13's
-- command line also puts there.
local function shell_filter(filter, fields)
	if filter == nil then
		return {};
	elseif type(filter) ~= "table" then
		return nil, ("The filter must be a table, e.g. { level = \"warn\", source = \"mod_s2s\" }; fields: %s")
			:format(field_list(fields));
	end
	for key in pairs(filter) do
		if type(key) ~= "number" and not fields[key] then
			return nil, ("Unknown filter field %q; the fields are: %s"):format(tostring(key), field_list(fields));
		end
	end
	return filter;
end

-- 0.11's console (mod_admin_telnet) runs a command outside any async runner and prints what it
-- returns at once: while it runs one, native reads are driven to the end on the spot (see drive).
local wait_in_place = false;

-- Whether the shell running a command is still there: a function, asked each tick while its
-- reads run. 13's shell session says so itself; on 0.12 the admin socket's session that holds
-- this shell session loses its connection when the client goes away. Anything else (a caller
-- that is no shell) counts as there.
local admin_sessions = module:shared("/*/admin_socket/sessions");
local function shell_presence(self)
	local session = type(self) == "table" and self.session;
	if type(session) ~= "table" then
		return function () return true; end;
	elseif type(session.is_connected) == "function" then
		return session.is_connected;
	end
	for _, admin in pairs(admin_sessions) do
		if admin.shell_session == session then
			return function () return admin.conn ~= nil; end;
		end
	end
	return function () return true; end;
end

-- The reads being answered, each a step function (see drive), and the one timer that steps
-- them: at most one batch of lines is printed per tick for all reads together, taking turns,
-- so however many shells read at once, a tick holds the main loop for one batch at most.
local reading, stepping = {}, false;
local function step_reads()
	local printed, ready = false, false;
	local i = 1;
	while i <= #reading do
		local step = reading[i];
		local state = step(not printed);
		if state == "done" then
			table.remove(reading, i);
		elseif state == "printed" then
			-- Its turn is over: it goes last.
			printed = true;
			table.remove(reading, i);
			table.insert(reading, step);
		else
			ready = ready or state == "ready";
			i = i + 1;
		end
	end
	if #reading == 0 then
		stepping = false;
		return nil;
	end
	return (printed or ready) and 0 or 0.01;
end

-- The admin shell's own lines, which tail and grep leave out unless `shell = true`: those of
-- the admin socket's plumbing (sources adminstream, mod_admin_socket) and, for each of the last
-- 32 shell connections that ran a command (the querying one among them), its session (admin…),
-- its connection (conn…) and their runners (runner…). Known from the admin-socket sessions
-- themselves, never from the log lines.
local shell_plumbing = { "adminstream", "mod_admin_socket" };
local shell_connections = {}; -- newest last: { id =, conn_id =, admin = }
local function note_shell_connection(admin)
	if type(admin) ~= "table" or type(admin.id) ~= "string" then return; end
	local conn_id;
	for i, known in ipairs(shell_connections) do
		if known.id == admin.id then
			conn_id = known.conn_id;
			table.remove(shell_connections, i);
			break;
		end
	end
	-- The connection is gone from the session once it closed: noted while it is there.
	local conn = admin.conn;
	if type(conn) == "table" and type(conn.id) == "string" then conn_id = conn.id; end
	table.insert(shell_connections, { id = admin.id, conn_id = conn_id, admin = admin });
	if #shell_connections > 32 then table.remove(shell_connections, 1); end
end
module:hook_global("admin/repl-input", function (event) note_shell_connection(event.origin); end, 1000);

local function shell_sources(self)
	local session = type(self) == "table" and self.session;
	for _, admin in pairs(admin_sessions) do
		if admin.shell_session == session then note_shell_connection(admin); end
	end
	local sources = {};
	for _, source in ipairs(shell_plumbing) do table.insert(sources, source); end
	for _, known in ipairs(shell_connections) do
		table.insert(sources, known.id);
		if known.conn_id then table.insert(sources, known.conn_id); end
		-- The runners of the socket session and of its shell session (made at its first command).
		for _, owner in ipairs({ known.admin, known.admin.shell_session }) do
			local thread = type(owner) == "table" and owner.thread;
			if type(thread) == "table" and thread.id ~= nil then table.insert(sources, "runner" .. tostring(thread.id)); end
		end
	end
	return sources;
end

-- The `jid` filter: which sessions (by the source their lines carry, and their connection's)
-- belong to which account, or (s2s) remote domain, from Prosody's own session events
-- (authentication, resource binding; s2s: created, established), never from the lines' text.
-- The newest 4096 sessions are remembered, ended ones too, so a JID still finds its lines
-- after it disconnected (about 200 bytes each).
local jid_sessions, jid_index = {}, {}; -- { id =, conn =, bare =, full = }, newest last; by id
local max_jid_sessions = 4096;
local jid_changes = 0; -- counts changes to the mapping, for followers of a JID
local function jid_entry(session)
	local entry = jid_index[session.id];
	if not entry then
		entry = { id = session.id };
		jid_index[session.id] = entry;
		table.insert(jid_sessions, entry);
		if #jid_sessions > max_jid_sessions then
			jid_index[table.remove(jid_sessions, 1).id] = nil;
		end
	end
	jid_changes = jid_changes + 1;
	local conn = session.conn;
	if type(conn) == "table" and type(conn.id) == "string" then entry.conn = conn.id; end
	return entry;
end
local function note_session(event)
	local session = event.session;
	if type(session) ~= "table" or type(session.id) ~= "string" or type(session.username) ~= "string" then return; end
	local entry = jid_entry(session);
	entry.bare = (session.username .. "@" .. tostring(session.host)):lower();
	entry.full = type(session.full_jid) == "string" and session.full_jid:lower() or entry.full;
end
-- An s2s session is the remote domain's: an outgoing one from its creation, an incoming one
-- once it authenticated (its remote domain is known only then).
local function note_s2s(event)
	local session = event.session;
	if type(session) ~= "table" or type(session.id) ~= "string" then return; end
	local remote = session.direction == "outgoing" and session.to_host or session.from_host;
	if type(remote) ~= "string" then return; end
	jid_entry(session).bare = remote:lower();
end
function module.add_host(host_module) -- luacheck: ignore 122 (a global module's hook per host)
	host_module:hook("authentication-success", note_session, 1000);
	host_module:hook("resource-bind", note_session, 1000);
	host_module:hook("s2sout-created", note_s2s, 1000);
	host_module:hook("s2sout-established", note_s2s, 1000);
	host_module:hook("s2sin-established", note_s2s, 1000);
end

-- The sources of the sessions of `jid`: a bare JID's every session, a full JID's one.
local function jid_sources(jid)
	jid = jid:lower();
	local full = jid:find("/", 1, true) ~= nil;
	local sources = {};
	for _, entry in ipairs(jid_sessions) do
		if (full and entry.full == jid) or (not full and entry.bare == jid) then
			table.insert(sources, entry.id);
			if entry.conn then table.insert(sources, entry.conn); end
		end
	end
	return sources;
end

local function check_jid(filter)
	if filter.jid ~= nil and (type(filter.jid) ~= "string" or filter.jid == "") then
		return nil, "jid must be a JID, e.g. \"alice@example.com\" (every session) or \"alice@example.com/phone\"";
	end
	return filter;
end

-- Runs native reads to the end in bounded steps: polls each until it has answered, then
-- hands a found answer's lines to `on_batch` one batch (up to 500 lines, 64 KiB) at a time,
-- in the turns step_reads gives (on 0.11's console, all at once: see wait_in_place). Once the
-- shell went away or one read failed, cancels them all (their scans stop, their memory is
-- freed); without `on_answer` (copies), a failed one is an answer like the others. Resolves with the answers ({ ok =, value = }), in order.
local function drive(queries, present, on_answer, on_batch)
	return promise.new(function (resolve, reject)
		local answers, i = {}, 1;
		local function stop(err)
			for _, query in ipairs(queries) do query:cancel(); end
			reject(err);
			return "done";
		end
		local function advance(may_print)
			if not present() then
				module:log("debug", "A ringbuffer read was cancelled: its shell went away");
				return stop("the shell went away");
			end
			while i <= #queries do
				local query = queries[i];
				if not answers[i] then
					local ok, value = query:result();
					if ok == nil then return "waiting"; end
					answers[i] = { ok = ok, value = value };
					if on_answer then
						if not ok then return stop(value); end
						on_answer(i, value);
					end
				end
				if on_batch and query:has_lines() then
					if not may_print then return "ready"; end
					on_batch(i, query:lines());
					return "printed";
				end
				i = i + 1;
			end
			resolve(answers);
			return "done";
		end
		-- An error (in a shell's print, say) ends this read only.
		local function step(may_print)
			local ok, state = pcall(advance, may_print);
			if not ok then return stop(state); end
			return state;
		end
		if wait_in_place then
			-- 0.11's console: every step now, waiting for the answers in place (bounded).
			local deadline = time.now() + 10;
			local state = step(true);
			while state ~= "done" do
				if time.now() > deadline then
					stop("no answer from the buffer within 10 s");
					break;
				end
				if state == "waiting" then socket.sleep(0.002); end
				state = step(true);
			end
			return;
		end
		table.insert(reading, step);
		if not stepping then
			stepping = true;
			module:add_timer(0, step_reads);
		end
	end);
end

local function cancel_all(queries)
	for _, query in ipairs(queries) do query:cancel(); end
end

-- Where a command's lines go: the shell's print (0.12 and 13), or the answer text.
local function shell_printer(self)
	local session = type(self) == "table" and self.session;
	if session and session.print then
		return session.print, nil;
	end
	local collected = {};
	return function (text) table.insert(collected, text); end, collected;
end

-- tail and grep: the newest `limit` lines that pass, from each chosen sink.
local function shell_read(self, pattern, filter, default_limit)
	local sinks, err = shell_sinks(filter.sink);
	if not sinks then return false, err; end
	local limit = filter.limit or default_limit;
	local not_sources = not filter.shell and shell_sources(self) or nil;
	local only_sources = filter.jid and jid_sources(filter.jid) or nil;
	local queries = {};
	for i, chosen in ipairs(sinks) do
		local query, problem = chosen.record.handle:scan(filter, pattern, limit, not_sources, only_sources);
		if not query then
			cancel_all(queries);
			return false, problem;
		end
		queries[i] = query;
	end
	local print, collected = shell_printer(self);
	local shown, matched = 0, 0;
	local function on_answer(i, found)
		if #sinks > 1 then print(("== sink %s =="):format(sinks[i].label)); end
		if found.matched > found.count then
			print(("… %d more lines (limit = %d; up to %d)"):format(found.matched - found.count, limit, native.max_limit));
		end
		shown, matched = shown + found.count, matched + found.matched;
	end
	return drive(queries, shell_presence(self), on_answer, function (_, batch) print(batch); end):next(function ()
		local summary = ("%d of %d matching lines shown"):format(shown, matched);
		if collected and #collected > 0 then
			summary = table.concat(collected, "\n") .. "\n" .. summary;
		end
		return summary;
	end);
end

local function shell_tail(self, n, filter)
	local checked, err = shell_filter(filter, read_fields);
	if checked then checked, err = check_jid(checked); end
	if not checked then return false, err; end
	if n ~= nil and checked.limit ~= nil then
		return false, "Give the number of lines once: tail(n) or { limit = n }";
	end
	if n ~= nil then
		checked.limit = n;
	end
	return shell_read(self, nil, checked, 20);
end

local function shell_grep(self, pattern, filter)
	if type(pattern) ~= "string" or pattern == "" then
		return false, "grep needs a regular expression, e.g. ringbuffer:grep(\"c2s%x+\", { level = \"warn\" })";
	end
	local checked, err = shell_filter(filter, read_fields);
	if checked then checked, err = check_jid(checked); end
	if not checked then return false, err; end
	return shell_read(self, pattern, checked, 100);
end

local function shell_dump(self, filter) -- luacheck: ignore 212/self
	local checked, err = shell_filter(filter, dump_fields);
	if checked then checked, err = check_jid(checked); end
	if not checked then return false, err; end
	if checked.keep ~= nil and type(checked.keep) ~= "boolean" then
		return false, "keep must be true or false";
	elseif checked.to ~= nil and (type(checked.to) ~= "string" or checked.to == "") then
		return false, "to must be the path of a file";
	end
	local sinks, problem = shell_sinks(checked.sink);
	if not sinks then return false, problem; end
	local filtered = checked.level ~= nil or checked.source ~= nil or checked.since ~= nil or checked.jid ~= nil;
	if not (checked.keep or filtered) then
		local started, failed = {}, {};
		for _, chosen in ipairs(sinks) do
			local ok, result, lines = dump(chosen.record, "admin shell", checked.to);
			table.insert(ok and started or failed, ok and ("%d lines to %s"):format(lines, result) or result);
		end
		if #failed > 0 then return false, table.concat(failed, "\n"); end
		return true, "Dumping " .. table.concat(started, ", ");
	end
	-- A copy, filtered or whole: the buffer keeps its lines.
	local queries = {};
	for i, chosen in ipairs(sinks) do
		local query, why = chosen.record.handle:dump_copy("admin shell", checked, checked.to,
			checked.jid and jid_sources(checked.jid) or nil);
		if not query then
			cancel_all(queries);
			return false, why;
		end
		queries[i] = query;
	end
	-- A copy is written even if the shell goes away meanwhile.
	local function always() return true; end
	return drive(queries, always):next(function (answers)
		log_reports();
		local done, failed = {}, {};
		for _, answer in ipairs(answers) do
			if answer.ok then
				table.insert(done, ("%d lines to %s"):format(answer.value.lines, answer.value.path));
			else
				table.insert(failed, answer.value);
			end
		end
		if #failed > 0 then error(table.concat(failed, "\n"), 0); end
		return "Dumped a copy of " .. table.concat(done, ", ") .. "; the buffer keeps its lines";
	end);
end

-- follow: the newest `backlog` matching lines, then each new one as it is logged, until the
-- shell goes away (Ctrl-C). One timer for all followers hands each one's native thread a
-- snapshot every 0.1 s; the thread keeps the new lines that pass in a bounded outbox (256 KiB;
-- see runtime::follow); the timer prints their batches (32 lines, 4 KiB: one print each, about
-- 0.1 ms a KiB), taking turns, for at most 2 ms a tick, and for at most a 20th of the main
-- loop's time (after a tick that used its 2 ms, the next comes 38 ms later; never more than
-- 0.1 s). While a shell's connection has more than `follow_output_max` bytes it
-- has not taken, nothing more is printed to it: the follower's outbox fills, and the lines
-- past it are counted and told once the shell reads again.
local follow_fields = { level = true, source = true, since = true, sink = true, shell = true, jid = true,
	pattern = true, backlog = true };
local follow_output_max = 128 * 1024;
local follow_tick, follow_share = 0.002, 0.05;
local following, follow_timer = {}, false; -- steps, see shell_follow
local follow_stops = {}; -- follower ends, by step, for module.unload

-- Bytes the connection holds that its client has not taken yet (0.12: a list of strings;
-- 13: a dbuffer, whose length # gives; either: a string).
local function output_waiting(conn)
	local buffer = type(conn) == "table" and conn.writebuffer;
	if type(buffer) == "string" then
		return #buffer;
	elseif type(buffer) == "table" then
		local mt = getmetatable(buffer);
		if mt and mt.__len then return #buffer; end
		local n = 0;
		for _, chunk in ipairs(buffer) do n = n + #tostring(chunk); end
		return n;
	end
	return 0;
end

-- The admin-socket connection of the shell running a command (a function: it may change).
local function shell_connection(self)
	local session = type(self) == "table" and self.session;
	for _, admin in pairs(admin_sessions) do
		if admin.shell_session == session then
			return function () return admin.conn; end;
		end
	end
	return function () return nil; end;
end

-- Rounds of one batch per follower, until none has more or the tick's time is used up.
local function step_followers()
	local started, more, used = time.now(), true, 0;
	while more and used < follow_tick do
		more = false;
		local i = 1;
		while i <= #following do
			local state = "more"; -- (not asked: its turn comes next tick)
			if used < follow_tick then
				state = following[i]();
				used = time.now() - started;
			end
			if state == "done" then
				table.remove(following, i);
			else
				more = more or state == "more";
				i = i + 1;
			end
		end
	end
	if #following == 0 then
		follow_timer = false;
		return nil;
	end
	-- The next tick starts with the next follower, so none waits behind busy ones for ever.
	table.insert(following, table.remove(following, 1));
	if not more then return 0.1; end
	-- (At most 0.1 s: a tick the system put off the CPU seems long, and must not delay lines.)
	return math.min(0.1, used / follow_share - used);
end

local function shell_follow(self, filter)
	local checked, err = shell_filter(filter, follow_fields);
	if checked then checked, err = check_jid(checked); end
	if not checked then return false, err; end
	if checked.pattern ~= nil and (type(checked.pattern) ~= "string" or checked.pattern == "") then
		return false, "pattern must be a regular expression, e.g. \"c2s%x+\"";
	end
	local backlog = checked.backlog;
	if backlog ~= nil then
		backlog = tonumber(backlog);
		if not backlog or backlog % 1 ~= 0 or backlog < 0 or backlog > native.max_backlog then
			return false, ("backlog must be a whole number from 0 to %d"):format(native.max_backlog);
		end
	end
	local sinks, problem = shell_sinks(checked.sink);
	if not sinks then return false, problem; end
	if #sinks > 1 then
		return false, "follow reads one sink: name it, e.g. { sink = \"" .. sinks[1].label .. "\" }";
	end
	local chosen = sinks[1];
	local not_sources = not checked.shell and shell_sources(self) or nil;
	local jid_seen = jid_changes;
	local follower, why = chosen.record.handle:follow(checked, checked.pattern, backlog, not_sources,
		checked.jid and jid_sources(checked.jid) or nil);
	if not follower then return false, why; end
	local present, conn = shell_presence(self), shell_connection(self);
	local print = shell_printer(self);
	print(("Following ringbuffer sink %s (Ctrl-C ends it; prosodyctl shell needs it twice)"):format(chosen.label));
	local shown, skipped, next_look = 0, 0, 0;
	return promise.new(function (resolve, reject)
		local function live_sink()
			for _, record in ipairs(live) do
				if record == chosen.record then return true; end
			end
			return false;
		end
		local function finish(ok, text)
			follower:stop();
			module:log("debug", "A ringbuffer follower ended: %s", text);
			if ok then resolve(text); else reject(text); end
			return "done";
		end
		local function advance()
			if not present() then
				return finish(true, "the shell went away");
			elseif not live_sink() then
				return finish(false, "the sink was reloaded; follow again");
			end
			local failed = follower:error();
			if failed then return finish(false, failed); end
			if checked.jid and jid_changes ~= jid_seen then
				-- Sessions of the JID that began since: their lines from now on.
				if follower:set_sources(jid_sources(checked.jid)) then jid_seen = jid_changes; end
			end
			local more = false;
			if output_waiting(conn()) <= follow_output_max then
				local text, count, lost, left = follower:lines();
				if lost and lost > 0 then
					skipped = skipped + lost;
					print(("… %d lines skipped: the shell could not keep up"):format(lost));
				end
				if text then
					print(text);
					shown = shown + count;
				end
				more = left == true;
			end
			-- Last: the thread then has until the next turn to look (the outbox is its lock).
			local now = time.now();
			if now >= next_look then
				next_look = now + 0.1;
				follower:look();
			end
			return more and "more" or "waiting";
		end
		local function step()
			local ok, state = pcall(advance);
			if not ok then state = finish(false, state); end
			if state == "done" then follow_stops[step] = nil; end
			return state;
		end
		table.insert(following, step);
		follow_stops[step] = function () finish(false, "the module was unloaded or reloaded; follow again"); end;
		if not follow_timer then
			follow_timer = true;
			module:add_timer(0, step_followers);
		end
	end):next(function (ended)
		return ("%d lines shown, %d skipped; ended: %s"):format(shown, skipped, ended);
	end);
end

local function shell_time(t)
	return t and os.date("%Y-%m-%d %H:%M:%S", t) or "-";
end

local function shell_status()
	local out = {};
	for i, record in ipairs(live) do
		local s = record.handle:status();
		local name = record.name and (" " .. record.name) or "";
		table.insert(out, ("#%d%s: %d lines, %d bytes buffered (%s = %d), %d dropped since the last dump"):format(
			i, name, s.lines, s.bytes, s.bound, s.limit, s.dropped));
		table.insert(out, ("    oldest %s, newest %s; triggers: %s"):format(shell_time(s.oldest), shell_time(s.newest),
			#s.triggers > 0 and table.concat(s.triggers, ", ") or "none"));
		local last = s.last_path and ("; last to %s: %s"):format(s.last_path, s.last_error or "ok") or "";
		table.insert(out, ("    dumps: %d done, %d failed%s"):format(s.dumps, s.failed, last));
		if s.forward or s.format ~= "plain" then
			table.insert(out, ("    format %s%s"):format(s.format, s.forward and (", forwarded to " .. s.forward) or ""));
		end
		if s.persist then
			table.insert(out, ("    persisted to %s"):format(s.persist));
		elseif s.persist_wanted then
			table.insert(out, "    persist is set, but this sink runs without persistence (see Prosody's log)");
		end
		if s.paused then
			table.insert(out, "    capture is paused (ringbuffer:resume() to go on)");
		end
	end
	if native.followers() > 0 then
		table.insert(out, ("%d followers (ringbuffer:follow) running"):format(native.followers()));
	end
	return true, #out > 0 and table.concat(out, "\n") or "No ringbuffer sinks are configured";
end

-- clear, pause and resume: of the sink `which` names (or { sink = ... }), or of all.
local function for_sinks(verb, act)
	return function (_, which)
		if type(which) == "table" then
			local checked, err = shell_filter(which, { sink = true });
			if not checked then return false, err; end
			which = checked.sink;
		end
		local sinks, err = shell_sinks(which);
		if not sinks then return false, err; end
		local labels = {};
		for _, chosen in ipairs(sinks) do
			act(chosen.record.handle);
			table.insert(labels, chosen.label);
		end
		return true, ("%s ringbuffer sink%s %s"):format(verb, #labels > 1 and "s" or "", table.concat(labels, ", "));
	end;
end

-- 13's command line: the filter fields as options (`--source mod_s2s`, `--keep`).
local read_flags = {
	value_params = { level = true, source = true, since = true, limit = true, sink = true, jid = true };
	kv_params = { shell = true };
	stop_on_positional = false;
};
local dump_flags = {
	value_params = { level = true, source = true, since = true, sink = true, to = true, jid = true };
	kv_params = { keep = true };
	stop_on_positional = false;
};

local follow_flags = {
	value_params = { level = true, source = true, since = true, sink = true, jid = true, pattern = true, backlog = true };
	kv_params = { shell = true };
	stop_on_positional = false;
};
local sink_arg = { name = "sink", type = "string" };
local shell_commands = {
	{ name = "status", desc = "Show what each ringbuffer sink holds, its triggers and its dumps", run = shell_status };
	{ name = "tail", desc = "Show the newest n lines (default 20) without removing them;"
		.. " filter: level, source, since, limit, sink, shell (true: the shell's own lines too)",
		args = { { name = "n", type = "number" } }, flags = read_flags, run = shell_tail };
	{ name = "grep", desc = "Show the newest lines matching a regular expression; filter: level, source, since, limit, sink, shell",
		args = { { name = "pattern", type = "string" } }, flags = read_flags, run = shell_grep };
	{ name = "dump", desc = "Dump now; with keep = true or a filter (level, source, since) a copy, and to = path elsewhere",
		flags = dump_flags, run = shell_dump };
	{ name = "follow", desc = "Show the newest matching lines (backlog, default 10), then each new one as it is logged,"
		.. " until Ctrl-C; filter: level, source, since, sink, shell, jid, pattern, backlog",
		flags = follow_flags, run = shell_follow };
	{ name = "clear", desc = "Empty a sink's buffer (or all) without dumping it", args = { sink_arg },
		run = for_sinks("Cleared", function (handle) handle:clear(); end) };
	{ name = "pause", desc = "Stop capturing lines into a sink (or all)", args = { sink_arg },
		run = for_sinks("Paused", function (handle) handle:pause(); end) };
	{ name = "resume", desc = "Capture lines into a paused sink (or all) again", args = { sink_arg },
		run = for_sinks("Resumed", function (handle) handle:resume(); end) };
};

local shell_section = {};
for _, command in ipairs(shell_commands) do
	-- Called as ringbuffer:<name>(...); never raises into the shell.
	command.handler = function (self, ...)
		local args = pack(...);
		local ok, success, text = pcall(function ()
			settle();
			return command.run(self, unpack(args, 1, args.n));
		end);
		if not ok then
			return false, ("ringbuffer:%s() failed: %s"):format(command.name, tostring(success));
		end
		-- The shell runs commands in an async runner: wait there, so both versions print "OK:".
		if promise.is_promise(success) and async.ready and async.ready() then
			local answer, err = async.wait_for(success);
			return answer ~= nil, answer or tostring(err);
		elseif promise.is_promise(success) and wait_in_place then -- settled already
			local answer, err;
			success:next(function (value) answer = value; end, function (reason) err = reason; end);
			return answer ~= nil, answer or tostring(err);
		end
		return success, text;
	end;
	shell_section[command.name] = command.handler;
end

local shell_env = module:shared("/*/admin_shell/env");
shell_env.ringbuffer = shell_section;
-- 0.11's console takes the same section (0.12's mod_admin_telnet reads admin_shell's instead).
local telnet_section = {};
for name, handler in pairs(shell_section) do
	telnet_section[name] = function (...)
		wait_in_place = true;
		local results = pack(pcall(handler, ...));
		wait_in_place = false;
		if not results[1] then return false, tostring(results[2]); end
		return unpack(results, 2, results.n);
	end;
end
local telnet_env = module:shared("/*/admin_telnet/env");
telnet_env.ringbuffer = telnet_section;
if before_012 then
	module:log("info", "The admin shell (prosodyctl shell) is unavailable: Prosody %s has none; the ringbuffer:* "
		.. "commands are in mod_admin_telnet's console instead (telnet), all of them", prosody.version);
end
for _, command in ipairs(shell_commands) do
	module:add_item("shell-command", {
		section = "ringbuffer";
		section_desc = "Look inside and dump the in-memory log buffers of mod_log_ringbuffer";
		name = command.name;
		desc = command.desc;
		args = command.args or {};
		flags = command.flags;
		handler = command.handler;
	});
end

function module.unload()
	for _, stop in pairs(follow_stops) do stop(); end
	follow_stops = {};
	log_reports();
	settle();
	for _, record in ipairs(live) do
		record.handle:disarm();
	end
	-- 13's shell took the section over for the shell-command items (it gave it a metatable with
	-- their help) and removes it with them after this; removing it first here makes 13.0.7's
	-- mod_admin_shell fail on the missing section. A shell that left no mark needs it removed.
	local taken_over = getmetatable(shell_section) and getmetatable(shell_section).help;
	if shell_env.ringbuffer == shell_section and not taken_over then
		shell_env.ringbuffer = nil;
	end
	if telnet_env.ringbuffer == telnet_section then
		telnet_env.ringbuffer = nil;
	end
	if not module.reloading then
		-- Really unloading: take the ringbuffer sinks out of Prosody's logger too.
		loggingmanager.register_sink_type("ringbuffer", nil);
		loggingmanager.reload_logging();
	end
end
