-- mod_log_ringbuffer's admin shell, loaded by mod_log_ringbuffer.lua with module:require (the way
-- Prosody's mod_pubsub and mod_mam load their libraries). It runs in the module's environment, so
-- `module` is that module; what it needs of the module comes as register()'s argument. The module
-- calls register() once its sinks and hooks are set up, and stop_followers() and remove_sections()
-- from its module.unload.

local async = require "util.async";
local promise = require "util.promise";
local time = require "util.time";
local socket = require "socket";
-- Lua 5.1 and LuaJIT have neither table.pack nor table.unpack.
local pack = table.pack or function (...) return { n = select("#", ...), ... }; end;
local unpack = table.unpack or _G.unpack; -- luacheck: ignore 143

-- Given by register(): the module's live sinks (a function: a logging reload replaces the list),
-- how it names a sink, dumps one, logs what the native side reports and settles a logging
-- reload, and the native library.
local live_sinks, label, dump, log_reports, settle, native;

-- Admin shell, all of it: ringbuffer:status(), tail(), grep(), dump(), clear(), pause() and
-- resume(). The section goes into the shell's environment, which is all 0.12 knows; the same
-- handlers are also offered as shell-command items, which 13's shell turns into `prosodyctl
-- shell ringbuffer tail 50 --source mod_s2s` and `help ringbuffer` (a Prosody without that
-- feature keeps the items unused). tail, grep and a dump that keeps the buffer read a snapshot
-- on a native thread; the command answers with a promise, which both shells wait for.

-- The live sinks a command applies to: all of them, or the one `which` names (name or position).
local function shell_sinks(which)
	if #live_sinks() == 0 then
		return nil, "No ringbuffer sinks are configured";
	end
	local chosen, labels = {}, {};
	for i, record in ipairs(live_sinks()) do
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
-- see runtime::follow); the timer sends their batches (32 lines, 4 KiB), taking turns, for at
-- most 2 ms a tick, and for at most a 20th of the main loop's time (after a tick that used its
-- 2 ms, the next comes 38 ms later; never more than 0.1 s). A shell on the admin socket (0.12,
-- 13) gets each batch as the thread made it, the `<repl-output>` message its print would send,
-- written as it is to its socket (see direct_socket; what the socket does not take is kept
-- and tried again 20 ms later) or else to its connection (rawsend); any other shell (0.11's
-- telnet console) gets the text printed. While a shell takes nothing (its socket full, or more
-- than `follow_output_max` bytes in its connection's buffer), nothing more is sent to it: the
-- follower's outbox fills, and the lines past it are counted and told once the shell reads again.
local follow_fields = { level = true, source = true, since = true, sink = true, shell = true, jid = true,
	pattern = true, backlog = true };
local follow_output_max = 128 * 1024;
local follow_tick, follow_share, follow_retry = 0.002, 0.05, 0.02;
local following, follow_timer = {}, false; -- steps, see shell_follow
-- For ringbuffer:status(), while followers run: the bytes sent them, and the longest tick.
local follow_sent, follow_longest = 0, 0;
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

-- A shell connection's socket, if a follower's batches may be written to it directly rather
-- than through net.server (see runtime::follow's Follower::turn): a batch then never becomes a
-- Lua string, whose making (the collector's work for it) was most of what following cost the
-- main loop. Only epoll's plain connections whose writes are not held; the caller writes
-- only while nothing waits in the connection's own buffer, so that the bytes go out in order.
local direct_writes; -- (known at the first send: net.server loads only inside Prosody)
local function direct_socket(conn)
	if direct_writes == nil then
		local ok, server = pcall(require, "net.server");
		direct_writes = ok and type(server.get_backend) == "function" and server.get_backend() == "epoll";
	end
	if not direct_writes or type(conn) ~= "table" or conn._write_lock then
		return nil;
	end
	if type(conn.ssl) == "function" and conn:ssl() then return nil; end
	local fd = type(conn.getfd) == "function" and conn:getfd();
	return type(fd) == "number" and fd >= 0 and fd or nil;
end

-- The admin-socket session of the shell running a command, if it is on one.
local function shell_admin(self)
	local session = type(self) == "table" and self.session;
	for _, admin in pairs(admin_sessions) do
		if admin.shell_session == session then return admin; end
	end
	return nil;
end

-- The admin-socket connection of the shell running a command (a function: it may change).
local function shell_connection(self)
	local admin = shell_admin(self);
	return function () return admin and admin.conn; end;
end

-- Writes a shell's batches as they are, if its session can (0.12's and 13's admin socket:
-- `rawsend`, which its own `send` calls after serializing); nil otherwise.
local function shell_rawsend(self)
	local admin = shell_admin(self);
	local rawsend = admin and admin.rawsend;
	return type(rawsend) == "function" and rawsend or nil;
end

-- Rounds of one batch per follower, until none has more or the tick's time is used up.
local function step_followers()
	local started, more, used, blocked = time.now(), true, 0, false;
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
				blocked = blocked or state == "blocked";
				i = i + 1;
			end
		end
	end
	follow_longest = math.max(follow_longest, time.now() - started);
	if #following == 0 then
		follow_timer = false;
		follow_sent, follow_longest = 0, 0;
		return nil;
	end
	-- The next tick starts with the next follower, so none waits behind busy ones for ever.
	table.insert(following, table.remove(following, 1));
	if not more then return blocked and follow_retry or 0.1; end
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
	local rawsend = shell_rawsend(self);
	local follower, why = chosen.record.handle:follow(checked, checked.pattern, backlog, not_sources,
		checked.jid and jid_sources(checked.jid) or nil, rawsend ~= nil);
	if not follower then return false, why; end
	local present, conn = shell_presence(self), shell_connection(self);
	local print = shell_printer(self);
	local send = rawsend or print;
	print(("Following ringbuffer sink %s (Ctrl-C ends it; prosodyctl shell needs it twice)"):format(chosen.label));
	local shown, skipped, next_look = 0, 0, 0;
	return promise.new(function (resolve, reject)
		local function live_sink()
			for _, record in ipairs(live_sinks()) do
				if record == chosen.record then return true; end
			end
			return false;
		end
		local function finish(ok, text)
			follower:stop();
			-- The rest of a batch its socket took part of, lest the shell's answer cut into it.
			local unsent = present() and follower:unsent();
			if unsent then send(unsent); end
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
			local state = "waiting";
			local c = conn();
			-- (Straight to the socket only what the shell would send as it is, and only while
			-- the connection's own buffer is empty: until then, another turn soon.)
			local fd = rawsend and direct_socket(c);
			local waiting = output_waiting(c);
			if fd and waiting > 0 then
				state = "blocked";
			elseif fd or waiting <= follow_output_max then
				local text, count, lost, left, written, blocked = follower:lines(fd or nil);
				if lost and lost > 0 then
					skipped = skipped + lost;
					print(("… %d lines skipped: the shell could not keep up"):format(lost));
				end
				if text then
					send(text);
					follow_sent = follow_sent + #text;
				end
				follow_sent = follow_sent + (written or 0);
				shown = shown + (count or 0);
				state = left and "more" or blocked and "blocked" or "waiting";
			end
			-- Last: the thread then has until the next turn to look (the outbox is its lock).
			local now = time.now();
			if now >= next_look then
				next_look = now + 0.1;
				follower:look();
			end
			return state;
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
	for i, record in ipairs(live_sinks()) do
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
		table.insert(out, ("%d followers (ringbuffer:follow) running: %.1f MB sent, longest turn %.1f ms"):format(
			native.followers(), follow_sent / 1e6, follow_longest * 1e3));
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

-- Puts the shell in place. `deps`: the locals above by name, and before_012 (Prosody older than 0.12).
local function register(deps)
	live_sinks, label, dump, log_reports, settle, native =
		deps.live_sinks, deps.label, deps.dump, deps.log_reports, deps.settle, deps.native;
	module:hook_global("admin/repl-input", function (event) note_shell_connection(event.origin); end, 1000);
	function module.add_host(host_module) -- luacheck: ignore 122 (a global module's hook per host)
		host_module:hook("authentication-success", note_session, 1000);
		host_module:hook("resource-bind", note_session, 1000);
		host_module:hook("s2sout-created", note_s2s, 1000);
		host_module:hook("s2sout-established", note_s2s, 1000);
		host_module:hook("s2sin-established", note_s2s, 1000);
	end
	shell_env.ringbuffer = shell_section;
	telnet_env.ringbuffer = telnet_section;
	if deps.before_012 then
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
end

-- At module.unload: every follower ends, telling its shell why.
local function stop_followers()
	for _, stop in pairs(follow_stops) do stop(); end
	follow_stops = {};
end

-- At module.unload: the shell and the console no longer offer the section.
local function remove_sections()
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
end

return {
	path = debug.getinfo(1, "S").source:match("^@(.*)$"); -- this file, for the build check
	register = register;
	stop_followers = stop_followers;
	remove_sections = remove_sections;
};
