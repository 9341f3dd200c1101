-- scripts/in-parallel.sh (make test-e2e's two lanes) under a real SIGTERM to its process
-- group, as a Ctrl-C in the terminal sends SIGINT to make check's whole foreground group: each
-- lane must still run its cleanup to the end, and what the cleanup prints must still be shown.
-- (Before, the output filters died with the group, and a lane's cleanup, run-e2e.sh's, died of
-- SIGPIPE at its first message, leaving its temp dir behind.)

local function read(path)
	local f = io.open(path, "rb");
	if not f then return nil; end
	local text = f:read("a");
	f:close();
	return text;
end

local function wait_for(what, done)
	local deadline = os.time() + 30;
	while not done() do
		assert(os.time() <= deadline, "timed out waiting for " .. what);
		os.execute("sleep 0.05");
	end
end

describe("scripts/in-parallel.sh", function ()
	it("lets every lane finish its cleanup, shown, when its group gets SIGTERM", function ()
		local dir = assert(io.popen("mktemp -d"):read("l"));
		local pid;
		finally(function ()
			-- Whatever is left of the run: the script's group and each lane's (their PIDs).
			for _, file in ipairs({ "pid", "ready-1", "ready-2" }) do
				local group = tonumber(read(dir .. "/" .. file) or "");
				if group then os.execute("kill -KILL -" .. group .. " 2>/dev/null"); end
			end
			os.execute("rm -rf '" .. dir .. "'");
		end);
		-- Each lane: ready (its PID, its group's), then waits; on TERM (once) a cleanup that takes a while, prints,
		-- and leaves a mark. SIGPIPE is not ignored, as in a plain script.
		local lanes = {};
		for n = 1, 2 do
			lanes[n] = ([['trap "trap \"\" TERM; sleep 0.2; echo cleaned-%d; touch %s/done-%d; exit 143" TERM; ]]
				.. [[echo $$ > %s/ready-%d; while :; do sleep 0.05; done']]):format(n, dir, n, dir, n);
		end
		-- (setsid in a background job keeps the PID: it is the group's.)
		assert(os.execute(("setsid scripts/in-parallel.sh %s %s > %s/out 2>&1 & echo $! > %s/pid")
			:format(lanes[1], lanes[2], dir, dir)));
		pid = assert(tonumber(read(dir .. "/pid")));
		wait_for("both lanes", function ()
			return tonumber(read(dir .. "/ready-1") or "") and tonumber(read(dir .. "/ready-2") or "");
		end);
		assert(os.execute("kill -TERM -" .. pid));
		wait_for("both cleanups", function ()
			local out = read(dir .. "/out") or "";
			return out:find("[1] cleaned-1", 1, true) and out:find("[2] cleaned-2", 1, true)
				and read(dir .. "/done-1") and read(dir .. "/done-2");
		end);
	end);
end);
