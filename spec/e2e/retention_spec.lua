-- End to end: bounded disk use in real Prosody 0.12 and 13: `keep_dumps` keeps the newest N
-- files a sink's template made and touches nothing else; `keep_dumps_for` deletes the ones older
-- than a span; `compress` writes gzip/zstd dumps that the real `gzip` and `zstd` commands
-- decompress to exactly the plain dump's bytes. And what is kept at all: `filter`, Prosody's
-- own sink option, drops and rewrites lines.
local prosody = require "spec.helpers.prosody";
local dumps = require "spec.helpers.dumps";

local function sh(command)
	assert(os.execute(command), command);
end

-- Names in `dir` (recursively, relative to it), sorted.
local function listing(dir)
	local names = {};
	for name in io.popen(("cd %s && find . -mindepth 1 | sed 's|^\\./||'"):format(dir)):lines() do
		table.insert(names, name);
	end
	table.sort(names);
	return names;
end

-- The output of `command` (stderr discarded); nil if it failed.
local function output(command)
	local pipe = io.popen(command .. " 2>/dev/null");
	local text = pipe:read("a");
	local ok = pipe:close();
	return ok and text or nil;
end

-- A compressed file decompressed by the real tool, or nil while it is not whole yet.
local tools = { gz = "gzip -dc", zst = "zstd -dcq" };
local function decompressed(path)
	return output(("%s %s"):format(tools[path:match("%.(%a+)$")], path));
end

for _, version in ipairs(prosody.versions()) do
	describe("in Prosody " .. version, function ()
		describe("keep_dumps", function ()
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", keep_dumps = 3, event = "e2e/keep", timestamps = false,
		filename_template = "{paths.data}/dumps/keep-{pid}-{count}.log" };
	{ to = "ringbuffer", keep_dumps = 2, compress = "gzip", event = "e2e/keep-gz", timestamps = false,
		filename_template = "{paths.data}/dumps/gz-{count}.log" };
}]]);
			end);
			teardown(function () if server then server:cleanup(); end end);

			it("after 10 dumps leaves exactly the newest 3 files, and nothing else is touched", function ()
				local dir = server.data .. "/dumps";
				sh("mkdir -p " .. dir .. "/sub");
				-- Decoys: names the template does not make, a matching name in a subfolder, and
				-- a file of the other sink; all older than every dump.
				local decoys = { "keep-1-1.log.bak", "keep-x-1.log", "keep--1.log", "keep-1-1.txt", "other-1-1.log",
					"traceback-1-1.log", "sub/keep-1-1.log", "gz-1.log.zst.old" };
				for _, name in ipairs(decoys) do
					sh(("echo decoy > %s/%s && touch -d '1 hour ago' %s/%s"):format(dir, name, dir, name));
				end
				for i = 1, 10 do
					server:command("log debug keep-line " .. i, "fire e2e/keep");
					prosody.wait_for(function ()
						return select(2, server:log():gsub("Dumped %d+ buffered lines to [^\n]*/keep%-", "")) >= i;
					end, 10, "dump " .. i);
				end
				local kept = prosody.wait_for(function ()
					local ours = {};
					for _, name in ipairs(listing(dir)) do
						if name:match("^keep%-" .. server.pid .. "%-%d+%.log$") then table.insert(ours, name); end
					end
					return #ours == 3 and ours;
				end, 10, "the older dumps to be deleted");
				-- The newest three: the lines of dumps 8, 9 and 10, one dump each.
				local seen = {};
				for _, name in ipairs(kept) do
					local list = dumps.parse(prosody.read(dir .. "/" .. name));
					assert.equal(1, #list);
					assert.equal(1, dumps.count_matching(list[1], "keep%-line %d+$"));
					for _, line in ipairs(list[1]) do
						table.insert(seen, tonumber(line:match("keep%-line (%d+)$")));
					end
				end
				table.sort(seen);
				assert.same({ 8, 9, 10 }, seen);
				local expected = { "sub" };
				for _, name in ipairs(decoys) do table.insert(expected, name); end
				for _, name in ipairs(kept) do table.insert(expected, name); end
				table.sort(expected);
				assert.same(expected, listing(dir));
				for _, name in ipairs(decoys) do
					assert.equal("decoy\n", prosody.read(dir .. "/" .. name));
				end
				assert.truthy(server:log():find("Deleted 1 old dump file(s) (keep_dumps = 3): " .. dir .. "/keep-", 1, true));
			end);

			it("counts the template's compressed and plain files alike", function ()
				local dir = server.data .. "/dumps";
				-- An earlier uncompressed dump of the same template, and a foreign .gz.
				sh(("echo old > %s/gz-1000.log && touch -d '1 hour ago' %s/gz-1000.log"):format(dir, dir));
				sh(("echo foreign > %s/gz-x.log.gz"):format(dir));
				for i = 1, 3 do
					server:command("log debug gz-line " .. i, "fire e2e/keep-gz");
					prosody.wait_for(function ()
						return select(2, server:log():gsub("Dumped %d+ buffered lines to [^\n]*/gz%-%d+%.log%.gz", "")) >= i;
					end, 10, "compressed dump " .. i);
				end
				local ours = prosody.wait_for(function ()
					local found = {};
					for _, name in ipairs(listing(dir)) do
						local base = name:gsub("%.gz$", ""):gsub("%.zst$", "");
						if base:match("^gz%-%d+%.log$") then table.insert(found, name); end
					end
					return #found == 2 and found;
				end, 10, "the older gz dumps to be deleted");
				local seen = {};
				for _, name in ipairs(ours) do
					assert.truthy(name:match("^gz%-%d+%.log%.gz$"), name);
					local list = dumps.parse(decompressed(dir .. "/" .. name));
					assert.equal(1, dumps.count_matching(list[1], "gz%-line %d+$"));
					for _, line in ipairs(list[1]) do
						table.insert(seen, tonumber(line:match("gz%-line (%d+)$")));
					end
				end
				table.sort(seen);
				assert.same({ 2, 3 }, seen);
				assert.equal("foreign\n", prosody.read(dir .. "/gz-x.log.gz"));
			end);
		end);

		describe("filter and keep_dumps_for", function ()
			-- The filters are written as in a real config file: globals taken once, at load (13
			-- reaches Lua's through `Lua`), and strings' own methods.
			local server;
			setup(function ()
				server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", name = "filtered", event = "e2e/filter", timestamps = false, filename = "$DATA/filter.log",
		filter = (function ()
			local inner = (Lua or _G).require("util.logger").init("inner");
			return function (message)
				if message:find("drop-me", 1, true) then return nil; end
				if message:find("break-me", 1, true) then return message:no_such_method(); end
				if message:find("log-me", 1, true) then inner("debug", "while filtering <%s>", message); end
				return (message:gsub("secret%-%w+", "[hidden]"));
			end;
		end)() };
	{ to = "ringbuffer", name = "yielding", event = "e2e/filter", timestamps = false, filename = "$DATA/yield.log",
		filter = (function ()
			local yield = (Lua or _G).coroutine.yield;
			return function (message)
				if message == "yield-me" then yield("from the filter"); end
				return "ok " .. message;
			end;
		end)() };
	{ to = "ringbuffer", name = "aged", keep_dumps_for = "1h", event = "e2e/aged", timestamps = false,
		filename_template = "{paths.data}/aged/aged-{pid}-{count}.log" };
	{ to = "ringbuffer", name = "other", event = "e2e/aged", timestamps = false,
		filename_template = "{paths.data}/aged/other-{pid}-{count}.log" };
}]]);
			end);
			teardown(function () if server then server:cleanup(); end end);

			it("drops and rewrites lines, keeps a failing one unfiltered and says so once; one that logs is safe", function ()
				local commands = { "log debug keep-me", "log debug drop-me please", "log info a secret-XYZ here" };
				for i = 1, 20 do table.insert(commands, "log debug break-me " .. i); end
				table.insert(commands, "log debug log-me");
				table.insert(commands, "log info all-logged");
				server:command(table.unpack(commands));
				server:wait_for_log("all-logged");
				server:command("fire e2e/filter");
				local lines = dumps.wait_for(server, "filter.log", 1) and dumps.parse(server:file("filter.log"))[1];
				local text = table.concat(lines, "\n");
				assert.truthy(text:find("mod_e2e_control\tdebug\tkeep-me", 1, true), text);
				assert.falsy(text:find("drop-me", 1, true), text);
				assert.truthy(text:find("\tinfo\ta [hidden] here", 1, true), text);
				assert.falsy(text:find("secret-XYZ", 1, true), text);
				assert.equal(20, dumps.count_matching(lines, "\tdebug\tbreak%-me %d+$"));
				-- The filter's own line, unfiltered, before the line it was filtering.
				local inner_at = text:find("inner\tdebug\twhile filtering <log-me>", 1, true);
				assert.truthy(inner_at and inner_at < text:find("\tdebug\tlog-me", 1, true), text);
				-- One report for 20 failures (a minute apart at most), in the sink itself too,
				-- unfiltered; the file sink has it once.
				local report = "The filter of ringbuffer sink filtered failed: "
				local _, in_log = server:log():gsub(report:gsub("%p", "%%%0"), "");
				assert.equal(1, in_log, server:log());
				assert.equal(1, dumps.count_matching(lines, "\terror\t" .. report:gsub("%p", "%%%0")
					.. ".*no_such_method.*: the line was kept unfiltered$"));
			end);

			it("keeps the line of a filter that yields in a coroutine unfiltered, and the code that logged goes on", function ()
				server:command("log_async debug yield-me", "log debug plain");
				server:wait_for_log("The filter of ringbuffer sink yielding yielded (a filter must return at once): "
					.. "the line was kept unfiltered");
				server:command("log info yield-logged");
				server:wait_for_log("yield-logged");
				server:command("fire e2e/filter");
				-- Its second dump (the first test's event dumped it too).
				local lines = dumps.wait_for(server, "yield.log", 2) and dumps.parse(server:file("yield.log"))[2];
				local text = table.concat(lines, "\n") .. "\n";
				local yielded = text:find("\tdebug\tyield-me\n", 1, true);
				local continued = text:find("\tdebug\tok yield-me continued\n", 1, true);
				assert.truthy(yielded and continued and yielded < continued, text);
				assert.truthy(text:find("\tdebug\tok plain\n", 1, true), text);
			end);

			it("keep_dumps_for: after a dump, deletes the template's files older than the span and nothing else", function ()
				local dir = server.data .. "/aged";
				sh("mkdir -p " .. dir .. "/sub");
				local old = { "aged-1-1.log", "aged-1-2.log.gz" };
				local kept = { "aged-1-3.log", "aged-x-1.log", "aged-1-1.log.bak", "other-1-1.log", "sub/aged-1-4.log" };
				for _, name in ipairs(old) do sh(("echo old > %s/%s && touch -d '2 hours ago' %s/%s"):format(dir, name, dir, name)); end
				sh(("echo recent > %s/aged-1-3.log && touch -d '50 minutes ago' %s/aged-1-3.log"):format(dir, dir));
				for _, name in ipairs(kept) do
					if name ~= "aged-1-3.log" then
						sh(("echo decoy > %s/%s && touch -d '2 hours ago' %s/%s"):format(dir, name, dir, name));
					end
				end
				-- A symlink and a folder under names the template makes, both old.
				sh(("ln -s %s/other-1-1.log %s/aged-2-1.log && touch -h -d '2 hours ago' %s/aged-2-1.log"):format(dir, dir, dir));
				sh(("mkdir %s/aged-2-2.log && touch -d '2 hours ago' %s/aged-2-2.log"):format(dir, dir));
				server:command("log debug aged-line", "fire e2e/aged");
				local expected = ("Deleted 2 dump file(s) older than keep_dumps_for = 1h: %s/aged-1-1.log, %s/aged-1-2.log.gz")
					:format(dir, dir);
				server:wait_for_log(expected);
				local log = server:log();
				local dumped = log:find("Dumped %d+ buffered lines to " .. (dir .. "/aged-" .. server.pid):gsub("%p", "%%%0"));
				assert.truthy(dumped and dumped < log:find(expected, 1, true), log);
				local ours = listing(dir);
				local expected_names = { "aged-2-1.log", "aged-2-2.log", "sub" };
				for _, name in ipairs(kept) do table.insert(expected_names, name); end
				for _, name in ipairs(ours) do
					if name:match("^aged%-" .. server.pid .. "%-%d+%.log$") or name:match("^other%-" .. server.pid .. "%-%d+%.log$") then
						table.insert(expected_names, name);
					end
				end
				table.sort(expected_names);
				assert.same(expected_names, ours);
				assert.equal("recent\n", prosody.read(dir .. "/aged-1-3.log"));
				assert.equal("decoy\n", prosody.read(dir .. "/other-1-1.log"));
			end);
		end);

		describe("keep_dumps under a burst", function ()
			-- 40 dumps fired in one tick of the main loop, all queued on the writer lane at once.
			-- A dump is *finished* when its "Dumped ... to X" report is logged. Required: exactly
			-- the files of the 5 dumps finished last remain, each holding its dump whole; a file
			-- is deleted only after its own dump finished and 5 newer dumps finished after it;
			-- every file a report names is still there or was deleted that way.
			it("keeps the newest 5 finished dumps whole and deletes no file before its dump is done", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", keep_dumps = 5, event = "e2e/burst", timestamps = false,
		filename_template = "{paths.data}/burst/burst-{pid}-{count}.log" };
}]]);
				finally(function () server:cleanup(); end);
				local dir = server.data .. "/burst";
				sh("mkdir -p " .. dir);
				local commands = {};
				for i = 1, 40 do
					table.insert(commands, "log debug burst-line " .. i);
					table.insert(commands, "fire e2e/burst");
				end
				server:command(table.unpack(commands));
				-- The reports in the order they were logged: { dumped = path } or { deleted = path }.
				local function events()
					local list = {};
					for line in server:log():gmatch("[^\n]+") do
						local dumped = line:match("Dumped %d+ buffered lines to (%S+) %(e2e/burst%)");
						local deleted = line:match("Deleted %d+ old dump file%(s%) %(keep_dumps = 5%): (.*)$");
						if dumped then table.insert(list, { dumped = dumped }); end
						for path in (deleted or ""):gmatch("[^, ]+") do table.insert(list, { deleted = path }); end
					end
					return list;
				end
				local function count(list, kind)
					local n = 0;
					for _, event in ipairs(list) do if event[kind] then n = n + 1; end end
					return n;
				end
				prosody.wait_for(function () return count(events(), "dumped") == 40; end, 30, "40 dumps to finish");
				-- The last dump's keep_dumps pass comes right after its report.
				local list = prosody.wait_for(function ()
					local l = events();
					return count(l, "deleted") >= 35 and l;
				end, 10, "35 files to be deleted");
				assert.equal(35, count(list, "deleted"));
				local finished, deleted, order = {}, {}, {};
				for at, event in ipairs(list) do
					if event.dumped then
						assert.is_nil(finished[event.dumped], "two dumps reported into " .. event.dumped);
						table.insert(order, event.dumped);
						finished[event.dumped] = #order;
					else
						local path = event.deleted;
						assert.truthy(finished[path], "deleted before its dump finished: " .. path .. " (report " .. at .. ")");
						assert.is_nil(deleted[path], "deleted twice: " .. path);
						deleted[path] = true;
						assert.truthy(#order - finished[path] >= 5,
							("%s deleted after only %d newer dumps finished"):format(path, #order - finished[path]));
					end
				end
				-- What remains: the files of the 5 dumps finished last, and nothing else.
				local remaining = {};
				for _, name in ipairs(listing(dir)) do table.insert(remaining, dir .. "/" .. name); end
				local expected = { table.unpack(order, 36, 40) };
				table.sort(expected);
				assert.same(expected, remaining);
				for _, path in ipairs(order) do
					assert.equal(not deleted[path], prosody.read(path) ~= nil, path);
				end
				-- Their dumps are whole and hold burst lines 36 to 40, one each: the newest five.
				local seen = {};
				for _, path in ipairs(remaining) do
					local parsed = dumps.parse(prosody.read(path));
					assert.equal(1, #parsed, path);
					assert.equal(1, dumps.count_matching(parsed[1], "burst%-line %d+$"), path);
					for _, line in ipairs(parsed[1]) do
						table.insert(seen, tonumber(line:match("burst%-line (%d+)$")));
					end
				end
				table.sort(seen);
				assert.same({ 36, 37, 38, 39, 40 }, seen);
			end);
		end);

		describe("compress", function ()
			it("gives dumps that gzip and zstd decompress to the plain dump's bytes, two dumps in one file", function ()
				local server = prosody.start(version, [[{
	{ levels = { min = "info" }, to = "file", filename = "$DIR/prosody.log" };
	{ to = "ringbuffer", size = 8*1024*1024, event = "e2e/same", timestamps = false, filename = "$DATA/plain.log" };
	{ to = "ringbuffer", size = 8*1024*1024, event = "e2e/same", timestamps = false, filename = "$DATA/same.log", compress = "zstd" };
	{ to = "ringbuffer", size = 8*1024*1024, event = "e2e/same", timestamps = false, filename = "$DATA/same.log", compress = "gzip" };
}]]);
				finally(function () server:cleanup(); end);
				server:command("spam 30000 first-dump 80");
				server:wait_for_log("first-dump done");
				server:command("log debug non-ASCII \226\130\172 text", "fire e2e/same");
				dumps.wait_for(server, "plain.log", 1);
				server:command("spam 5000 second-dump", "log info second-dump-fired");
				server:wait_for_log("second-dump done");
				server:command("fire e2e/same");
				local plain = dumps.wait_for(server, "plain.log", 2) and server:file("plain.log");
				-- Only the headers' times may differ (each sink reads the clock itself).
				local function normalised(text)
					return (text:gsub("(%-%- Dumping log buffer at )[^\n]*", "%1T"));
				end
				assert.equal(2, #dumps.parse(plain));
				for suffix, magic in pairs({ zst = "\40\181\47\253", gz = "\31\139" }) do
					local path = server.data .. "/same.log." .. suffix;
					local text = prosody.wait_for(function ()
						local t = decompressed(path);
						local ok, list = pcall(dumps.parse, t);
						return ok and #list == 2 and t;
					end, 15, "two dumps in " .. path);
					local raw = prosody.read(path);
					assert.equal(magic, raw:sub(1, #magic));
					assert.truthy(#raw * 5 < #plain, suffix .. " compresses");
					assert.equal(#plain, #text);
					assert.equal(normalised(plain), normalised(text));
					assert.truthy(server:log():find("Dumped %d+ buffered lines to " .. path:gsub("%p", "%%%0") .. " %(e2e/same%)"));
				end
				-- Two members or frames: each decompresses on its own to one dump.
				local frames = output("zstd -lv " .. server.data .. "/same.log.zst");
				assert.truthy(frames and frames:find("# Zstandard Frames: 2", 1, true), frames);
				assert.is_nil(prosody.read(server.data .. "/same.log"));
			end);
		end);
	end);
end
