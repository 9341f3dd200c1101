-- Test-only plugin: calls the ringbuffer shell commands the way the admin shell does, but
-- several in one main-loop tick, and writes what happened to <data>/probe-<name>.lua (a Lua
-- table constructor) for shell_reads_spec. Driven by global events (mod_e2e_control's `fire`):
--   e2e_probe/reads   five grep(".", { limit = 10000 }) started in one tick: the fifth must be
--                     told "busy"; for the four others, how their lines came (one print a
--                     batch) and in how many main-loop ticks; then one more read, admitted
--                     again once the four have answered
--   e2e_probe/holds_start, e2e_probe/holds_stop   (bench/shell_holds.lua) a 10 ms timer notes
--                     how late it fires in between: the longest hold of the main loop
--   e2e_probe/gone    a grep whose shell says it went away after its first batch: the read
--                     ends with that error, and four reads are admitted again afterwards
module:set_global();

local env = module:shared("/*/admin_shell/env");

local function write(name, text)
	local path = ("%s/probe-%s.lua"):format(prosody.paths.data, name);
	local f = assert(io.open(path .. ".tmp", "w"));
	f:write(text);
	f:close();
	assert(os.rename(path .. ".tmp", path));
end

-- Counts main-loop ticks while it runs (a timer due again at once runs once a tick).
local tick, ticking = 0, false;
local function start_ticking()
	if ticking then return; end
	ticking = true;
	module:add_timer(0, function ()
		tick = tick + 1;
		if ticking then return 0; end
	end);
end

-- A shell session as the commands see it: its prints recorded with the tick they came in.
local function fake_shell(connected)
	local prints = {};
	local self = { session = {
		print = function (text)
			local _, newlines = tostring(text):gsub("\n", "");
			table.insert(prints, { lines = newlines + 1, tick = tick });
		end;
		is_connected = connected;
	} };
	return self, prints;
end

local function outcome(prints)
	local batches, most, ticks, seen = 0, 0, 0, {};
	for _, p in ipairs(prints) do
		if p.lines > 1 then
			batches, most = batches + 1, math.max(most, p.lines);
		end
		if not seen[p.tick] then
			seen[p.tick], ticks = true, ticks + 1;
		end
	end
	return ("{ prints = %d, batches = %d, most = %d, ticks = %d }"):format(#prints, batches, most, ticks);
end

module:hook_global("e2e_probe/reads", function ()
	start_ticking();
	local runs, results, left = {}, {}, 4;
	for i = 1, 5 do
		local self, prints = fake_shell();
		local answer, text = env.ringbuffer.grep(self, ".", { limit = 10000, sink = "main" });
		runs[i] = { answer = answer, text = text, prints = prints };
	end
	local busy = ("busy = %q"):format(tostring(runs[5].answer) .. " " .. tostring(runs[5].text));
	for i = 1, 4 do
		runs[i].answer:next(function (summary)
			results[i] = ("{ summary = %q, prints = %s }"):format(summary, outcome(runs[i].prints));
			left = left - 1;
			if left == 0 then
				ticking = false;
				local again = env.ringbuffer.tail(fake_shell(), 1, { sink = "main" });
				write("reads", ("return { %s, again = %q, reads = { %s } }"):format(busy,
					type(again) == "table" and "admitted" or tostring(again), table.concat(results, ", ")));
			end
		end);
	end
end);

module:hook_global("e2e_probe/gone", function ()
	local self, prints;
	-- Gone once the first batch of lines was printed.
	self, prints = fake_shell(function ()
		for _, p in ipairs(prints) do
			if p.lines > 1 then return false; end
		end
		return true;
	end);
	env.ringbuffer.grep(self, ".", { limit = 10000, sink = "main" }):next(function (summary)
		write("gone", ("return { ended = %q }"):format("answered: " .. summary));
	end, function (err)
		local admitted = 0;
		for _ = 1, 4 do
			if type(env.ringbuffer.tail(fake_shell(), 1, { sink = "main" })) == "table" then
				admitted = admitted + 1;
			end
		end
		write("gone", ("return { ended = %q, prints = %d, admitted = %d }"):format(tostring(err), #prints, admitted));
	end);
end);

-- The longest hold of the main loop: how late a 10 ms timer fired, at most.
local now = require "util.time".now;
local holds;
module:hook_global("e2e_probe/holds_start", function ()
	local measuring = { longest = 0, ticks = 0, due = now() + 0.01 };
	holds = measuring;
	module:add_timer(0.01, function ()
		if holds ~= measuring then return; end
		local t = now();
		measuring.longest = math.max(measuring.longest, t - measuring.due);
		measuring.ticks = measuring.ticks + 1;
		measuring.due = t + 0.01;
		return 0.01;
	end);
end);
module:hook_global("e2e_probe/holds_stop", function ()
	local measured = holds;
	holds = nil;
	write("holds", ("return { longest = %.6f, ticks = %d }"):format(measured.longest, measured.ticks));
end);
