-- Where the main Lua thread is, asked from a native thread (runtime::lua_traceback): a real
-- signal sent to this thread, a real hook, real Lua code spinning or a real blocking C call.
local helper = require "spec.helpers.native";
local testing = helper.testing;

-- Waits (up to 30 s) until the probe's thread is done, calling into C each time round.
local function wait_for(probe)
	local deadline = os.time() + 30;
	while not probe:finished() do
		assert(os.time() <= deadline, "the probe did not finish");
	end
end

-- Spins, calling nothing once the probe was told to go, until a count hook set by Lua ends it
-- (see spin_under_lua_hook). The bound only matters if that hook was lost, which the caller
-- then sees.
local function spin_without_calls(probe, limit)
	probe:go();
	local x = 0;
	for i = 1, limit do x = x + i; end
	return x;
end

local function spin_calling(probe)
	probe:go();
	while not probe:finished() do end
end

-- Runs spin_without_calls under a Lua count hook that checks the probe every 10000
-- instructions and stops the loop once it finished (or after 30 s).
local function spin_under_lua_hook(probe)
	local deadline = os.time() + 30;
	local stopped_by_hook = false;
	local function lua_hook()
		if probe:finished() or os.time() > deadline then
			stopped_by_hook = true;
			error("stop");
		end
	end
	debug.sethook(lua_hook, "", 10000);
	pcall(function () spin_without_calls(probe, 2^31); end);
	local hook, mask, count = debug.gethook();
	debug.sethook();
	return stopped_by_hook, hook == lua_hook, mask, count;
end

describe("the main thread's traceback from a native thread", function ()
	it("is known: the library found the main thread", function ()
		local stats = testing.traceback_stats();
		assert.is_true(stats.lua_thread > 0);
	end);

	it("arrives while Lua spins in a loop that calls nothing, and names the function", function ()
		local probe = testing.traceback_probe({ after_go = true, wait = 5000 });
		local stopped_by_hook, same_hook, mask, count = spin_under_lua_hook(probe);
		local answers = probe:answers();
		assert.is_true(probe:requested());
		assert.truthy(answers[1], "a traceback came");
		assert.truthy(answers[1]:find("^stack traceback:"), answers[1]);
		assert.truthy(answers[1]:find("spin_without_calls", 1, true), answers[1]);
		-- The debug.sethook set by Lua before was put back, and it is what stopped the loop.
		assert.is_true(stopped_by_hook);
		assert.is_true(same_hook);
		assert.equal("", mask);
		assert.equal(10000, count);
	end);

	it("arrives while Lua spins in a loop that calls a function, and names it", function ()
		local probe = testing.traceback_probe({ after_go = true, wait = 5000 });
		spin_calling(probe);
		local answer = probe:answers()[1];
		assert.truthy(answer, "a traceback came");
		assert.truthy(answer:find("spin_calling", 1, true), answer);
		assert.truthy(answer:find("traceback_spec.lua:%d+:"), answer);
	end);

	it("does not come while the thread is blocked in C, and comes once Lua runs again", function ()
		local hooks = testing.traceback_stats().hooks;
		local function counting() end
		debug.sethook(counting, "", 1000);
		-- Two requests while blocked: the second finds the hook of the first still waiting.
		local probe = testing.traceback_probe({ when_blocked = true, wait = 300, count = 2 });
		local function block_in_c() os.execute("sleep 2"); end
		block_in_c();
		local hook, mask, count = debug.gethook();
		debug.sethook();
		-- The probe gave up while this thread was in os.execute.
		wait_for(probe);
		assert.is_true(probe:requested());
		assert.same({ false, false }, probe:answers());
		-- The hook ran at the first instruction after os.execute returned, and put back Lua's.
		assert.is_true(testing.traceback_stats().hooks > hooks);
		assert.equal(counting, hook);
		assert.equal("", mask);
		assert.equal(1000, count);
		local late = probe:take();
		assert.truthy(late, "take gets it later");
		assert.truthy(late:find("block_in_c", 1, true), late);
		assert.is_nil(probe:take(), "handed over once");
	end);

	it("delivers nothing for a cancelled request, and the next request gets its own", function ()
		local before = testing.traceback_stats();
		local probe = testing.traceback_probe({ when_blocked = true, wait = 300, cancel = true });
		os.execute("sleep 1");
		wait_for(probe);
		assert.is_false(probe:answers()[1]);
		assert.is_true(testing.traceback_stats().hooks > before.hooks, "the hook ran");
		assert.equal(before.open, testing.traceback_stats().open, "no ticket of this probe waits");
		assert.is_nil(probe:take());
		local next_probe = testing.traceback_probe({ after_go = true, wait = 5000 });
		spin_calling(next_probe);
		assert.truthy(next_probe:answers()[1]);
	end);

	it("keeps a debug.sethook hook across requests while Lua runs plain code", function ()
		local calls = 0;
		local function counting() calls = calls + 1; end
		debug.sethook(counting, "", 1000);
		local probe = testing.traceback_probe({ after_go = true, wait = 5000 });
		spin_calling(probe);
		-- Plain code after the request, under the hook put back: it runs (the request may end
		-- within the hook's first 1000 instructions, on a loaded machine).
		for _ = 1, 10000 do end
		local hook, mask, count = debug.gethook();
		debug.sethook();
		assert.equal(counting, hook);
		assert.equal("", mask);
		assert.equal(1000, count);
		assert.truthy(probe:answers()[1]);
		assert.is_true(calls > 0);
	end);

	-- Prosody's util.signal (0.12 and 13) also runs its Lua handlers from a hook it sets in its
	-- signal handler, saving and putting back the hook it finds: the two nest in either order.
	for _, order in ipairs({ "before", "after" }) do
		it("coexists with util.signal's hook when Prosody's signal comes " .. order .. " the request", function ()
			local signal = require "util.signal";
			local handled = 0;
			signal.signal("SIGUSR2", function () handled = handled + 1; end);
			local function counting() end
			debug.sethook(counting, "", 1000);
			local probe = testing.traceback_probe({ when_blocked = true, wait = 300, ["kill_" .. order] = signal.SIGUSR2 });
			local function block_in_c() os.execute("sleep 1"); end
			block_in_c();
			local hook, mask, count = debug.gethook();
			debug.sethook();
			signal.signal("SIGUSR2");
			wait_for(probe);
			assert.equal(1, handled, "Prosody's handler ran");
			assert.equal(counting, hook, "the hook set by Lua is back");
			assert.equal("", mask);
			assert.equal(1000, count);
			local late = probe:take();
			assert.truthy(late, "the traceback came");
			assert.truthy(late:find("block_in_c", 1, true), late);
		end);
	end

	-- The hook is set on the main thread: a coroutine spinning (a util.async runner, where
	-- Prosody runs stanza handlers) is not interrupted. The request waits until the main thread
	-- runs Lua again, and what comes then is the main thread's stack, not the coroutine's.
	it("does not come while a coroutine spins; the main thread's comes after it", function ()
		-- Asked from inside the coroutine: the main thread runs no Lua until it returns.
		local probe;
		local function spin_in_coroutine()
			probe = testing.traceback_probe({ after_go = true, wait = 300 });
			spin_calling(probe);
		end
		local function resume_it() coroutine.wrap(spin_in_coroutine)(); end
		resume_it();
		assert.is_false(probe:answers()[1]);
		local late = probe:take();
		assert.truthy(late, "it came once the main thread ran Lua again");
		assert.truthy(late:find("resume_it", 1, true), late);
		assert.falsy(late:find("spin_in_coroutine", 1, true), late);
	end);

	-- Prosody 0.12's -D forks after the modules loaded (util.pposix.daemonize): the child's main
	-- thread, the one that forked, still answers.
	it("still answers in a child forked by util.pposix.daemonize", function ()
		local result = os.tmpname();
		finally(function () os.remove(result); end);
		local _, child = require "util.pposix".daemonize();
		if not child then
			-- The child: its answer goes to the file, and it leaves whatever happens.
			pcall(function ()
				local probe = testing.traceback_probe({ after_go = true, wait = 5000 });
				local function spin_in_child(p)
					p:go();
					while not p:finished() do end
				end
				spin_in_child(probe);
				local file = io.open(result .. ".tmp", "w");
				file:write(probe:answers()[1] or "no traceback");
				file:close();
				os.rename(result .. ".tmp", result);
			end);
			os.exit(0);
		end
		local function answer()
			local file = io.open(result);
			if not file then return nil; end
			local text = file:read("a");
			file:close();
			return text ~= "" and text or nil;
		end
		local deadline, text = os.time() + 30, answer();
		while not text and os.time() <= deadline do
			os.execute("sleep 0.05");
			text = answer();
		end
		assert.truthy(text, "the child answered");
		assert.truthy(text:find("spin_in_child", 1, true), text);
	end);

	it("answers 50 requests in a row, none lost or given to another", function ()
		local open = testing.traceback_stats().open;
		local probe = testing.traceback_probe({ after_go = true, count = 50, wait = 5000 });
		spin_calling(probe);
		local answers, latencies = probe:answers(), probe:latencies();
		assert.equal(50, #answers);
		local worst, sum = 0, 0;
		for i, answer in ipairs(answers) do
			assert.truthy(answer, "request " .. i .. " was answered");
			assert.truthy(answer:find("spin_calling", 1, true), answer);
			worst, sum = math.max(worst, latencies[i]), sum + latencies[i];
		end
		assert.equal(open, testing.traceback_stats().open, "no ticket left open");
		print(("\n50 requests while spinning: mean %.3f ms, worst %.3f ms from request to traceback"):format(
			sum / 50, worst));
	end);
end);
