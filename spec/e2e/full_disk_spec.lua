-- End to end: dumps whose file cannot take them, in real Prosody 0.12 and 13, against real
-- faults: a full filesystem (a 1 MiB tmpfs filled with dd), the same remounted read-only, a
-- file-size limit (Prosody started under prlimit --fsize), and /proc/self/mem from the admin
-- shell. Each fails with one clear line, Prosody goes on (its main loop turns, another sink
-- dumps), the lines stay buffered, and the next dump once the fault is gone holds every one of
-- them once, in order, without NUL bytes. Prosody then stops on SIGTERM as usual.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";
local faults = require "spec.helpers.faults";
local socket = require "socket";

-- How often `text` occurs in Prosody's log.
local function occurrences(server, text)
	local n, at = 0, 1;
	local log = server:log();
	while true do
		local found = log:find(text, at, true);
		if not found then return n; end
		n, at = n + 1, found + #text;
	end
end

-- Logs `count` debug lines "<tag> <i>" and waits until they are in.
local function spam(server, count, tag)
	server:command(("spam %d %s"):format(count, tag));
	server:wait_for_log(tag .. " done");
end

-- The numbers of the lines "<tag> <i>" of a dump, in the dump's order.
local function numbers(dump, tag)
	local list = {};
	for _, line in ipairs(dump) do
		local n = line:match("\t" .. tag:gsub("%-", "%%-") .. " (%d+)$");
		if n then table.insert(list, tonumber(n)); end
	end
	return list;
end

-- Checks that the lines "<tag> <i>" of a dump are exactly 1 to `count`, in order (with a short
-- message: luassert would print and compare tens of thousands of numbers).
local function holds_once_in_order(dump, tag, count)
	local list = numbers(dump, tag);
	for i, n in ipairs(list) do
		if n ~= i then error(("%s: the dump's line %d is number %d"):format(tag, i, n), 2); end
	end
	if #list ~= count then error(("%s: %d lines, not %d"):format(tag, #list, count), 2); end
end

-- The main loop turns, and another sink (SIGWINCH, to $DATA/other.log) still dumps.
local function still_responsive(server, mark)
	server:command("log info " .. mark);
	server:wait_for_log(mark);
	local before = #(dumps.parse(server:file("other.log") or ""));
	server:signal("WINCH");
	dumps.wait_for(server, "other.log", before + 1);
end

-- Waits for `count` whole dumps in `path` (a full path), and no NUL byte in it, and returns
-- them. (A dump's room is allocated before it is written: until then it reads as NUL bytes,
-- which are not parsed, as a long run of them without a newline takes dumps.parse minutes.)
local function dumps_in(path, count)
	local text = prosody.wait_for(function ()
		local t = prosody.read(path);
		if not t or t:find("\0", 1, true) then return nil; end
		local ok, list = pcall(dumps.parse, t);
		return ok and #list >= count and t;
	end, 10, count .. " whole dumps and no NUL byte in " .. path);
	return dumps.parse(text);
end

-- SIGTERM stops Prosody, alive until then, within a few seconds.
local function stops_at_once(server)
	assert.truthy(server:alive(), "Prosody is gone before SIGTERM");
	local started = socket.gettime();
	server:stop();
	assert.truthy(socket.gettime() - started < 5, "SIGTERM took " .. (socket.gettime() - started) .. " s");
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version .. ", a dump whose file cannot take it", function ()
		describe("on a full or read-only file system", function ()
			local server, disk, path;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "disk", lines = 100000, signal = "SIGUSR2", filename = "$DIR/disk/dump.log" };
	{ to = "ringbuffer", lines = 10, signal = "SIGWINCH", filename = "$DATA/other.log" };
}]]);
				disk = server.dir .. "/disk";
				path = disk .. "/dump.log";
				faults.tmpfs(disk, 1024 * 1024);
			end);
			teardown(function ()
				if server then
					faults.unmount(disk);
					server:cleanup();
				end
			end);

			it("fails with one line on a full disk; the next dump holds every line once", function ()
				faults.fill(disk);
				spam(server, 3000, "full-a");
				server:signal("USR2");
				local failure = "Unable to write dump: " .. path .. ": No space left on device";
				server:wait_for_log(failure);
				still_responsive(server, "main loop turns after a full disk");
				assert.equal(1, occurrences(server, failure));
				faults.unfill(disk);
				spam(server, 100, "full-b");
				server:signal("USR2");
				local list = dumps_in(path, 1);
				assert.equal(1, #list);
				holds_once_in_order(list[1], "full-a", 3000);
				holds_once_in_order(list[1], "full-b", 100);
				local text = prosody.read(path);
				assert.truthy(text:find("full-a 3000\n", 1, true) < text:find("full-b 1\n", 1, true));
			end);

			it("fails with one line on a read-only file system; the next dump holds every line once", function ()
				spam(server, 2000, "ro-a");
				faults.remount(disk, "ro");
				server:signal("USR2");
				local failure = "Unable to open output file: " .. path .. ": Read-only file system";
				server:wait_for_log(failure);
				still_responsive(server, "main loop turns after a read-only file system");
				assert.equal(1, occurrences(server, failure));
				faults.remount(disk, "rw");
				spam(server, 100, "ro-b");
				server:signal("USR2");
				local list = dumps_in(path, 2);
				assert.equal(2, #list);
				holds_once_in_order(list[2], "ro-a", 2000);
				holds_once_in_order(list[2], "ro-b", 100);
				holds_once_in_order(list[2], "full-a", 0); -- nothing of the first dump again
			end);

			it("answers a dump to /proc/self/mem from the admin shell with an error at once", function ()
				local started = socket.gettime();
				assert.truthy(server:shell("ringbuffer:status()"):find("OK: ", 1, true));
				local baseline = socket.gettime() - started;
				started = socket.gettime();
				local output = server:shell([[ringbuffer:dump({ sink = "disk", keep = true, to = "/proc/self/mem" })]]);
				local took = socket.gettime() - started;
				assert.truthy(output:find("Error: Unable to write dump: /proc/self/mem: ", 1, true), output);
				assert.truthy(took < baseline + 1, ("%.2f s, against %.2f s for status()"):format(took, baseline));
				-- Nothing is left holding a lock: a copy and a signal's dump still go through.
				local kept = server:shell([[ringbuffer:dump({ sink = "disk", keep = true })]]);
				assert.truthy(kept:find("OK: Dumped a copy of ", 1, true), kept);
				spam(server, 10, "after-shell");
				server:signal("USR2");
				local list = dumps_in(path, 4);
				holds_once_in_order(list[4], "after-shell", 10);
			end);

			it("stops on SIGTERM as usual after all that", function ()
				stops_at_once(server);
			end);
		end);

		describe("past a file-size limit (ulimit -f)", function ()
			local server, path;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", lines = 100000, signal = "SIGUSR2", filename = "$DATA/limited.log" };
	{ to = "ringbuffer", lines = 10, signal = "SIGWINCH", filename = "$DATA/other.log" };
}]], nil, { wrapper = "prlimit --fsize=524288:unlimited --" });
				path = server.data .. "/limited.log";
			end);
			teardown(function ()
				if server then server:cleanup(); end
			end);

			it("fails with one line instead of killing Prosody; the next dump holds every line once", function ()
				spam(server, 20000, "big"); -- about 1 MB of lines: twice the limit
				server:signal("USR2");
				local failure = "Unable to write dump: " .. path .. ": File too large";
				server:wait_for_log(failure);
				assert.truthy(server:alive());
				still_responsive(server, "main loop turns after the file-size limit");
				assert.equal(1, occurrences(server, failure));
				assert.truthy(os.execute(("prlimit --pid %s --fsize=unlimited"):format(server.pid)));
				spam(server, 100, "small");
				server:signal("USR2");
				local list = dumps_in(path, 1);
				assert.equal(1, #list);
				holds_once_in_order(list[1], "big", 20000);
				holds_once_in_order(list[1], "small", 100);
			end);

			it("stops on SIGTERM as usual after that", function ()
				stops_at_once(server);
			end);
		end);
	end);
end
