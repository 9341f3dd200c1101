-- Reading dump files in the end-to-end specs.
local prosody = require "spec.helpers.prosody";

local dumps = {};

local header_pattern = "^%-%- Dumping log buffer at %a%a%a %d%d %d%d:%d%d:%d%d  %-%-$";
dumps.stamp_pattern = "^%a%a%a %d%d %d%d:%d%d:%d%d ";

-- The dumps in a file: each a list of its lines (header and footer excluded; the notice lines
-- right after the header, such as "-- 12 older lines were dropped since the previous dump --",
-- go to the list's `notes`). Fails on a malformed header, a dump inside another, or an
-- unfinished dump.
function dumps.parse(text)
	local list, current = {}, nil;
	assert(text, "dump file missing");
	for line in prosody.lines(text) do
		if line:match("^%-%- Dumping log buffer at ") then
			assert(line:match(header_pattern), "bad header: " .. line);
			assert(current == nil, "dump started inside another dump");
			current = { notes = {} };
		elseif line == "-- End of dump --" then
			table.insert(list, (assert(current, "footer without header")));
			current = nil;
		elseif current and #current == 0 and line:match("^%-%- .* %-%-$") then
			table.insert(current.notes, line);
		elseif current then
			table.insert(current, line);
		end
	end
	assert(current == nil, "unfinished dump");
	return list;
end

function dumps.count_matching(lines, pattern)
	local n = 0;
	for _, line in ipairs(lines) do
		if line:find(pattern) then n = n + 1; end
	end
	return n;
end

-- The numbers of the "<tag> <i>" lines (`tag` a pattern) among `lines`, in their order.
function dumps.numbers_in(lines, tag)
	local found = {};
	for _, line in ipairs(lines) do
		local i = line:match("\t" .. tag .. " (%d+)$");
		if i then table.insert(found, tonumber(i)); end
	end
	return found;
end

-- Waits until the data file `name` of `instance` holds at least `count` whole dumps.
function dumps.wait_for(instance, name, count)
	return prosody.wait_for(function ()
		local text = instance:file(name);
		if not text then return nil; end
		local ok, list = pcall(dumps.parse, text);
		return ok and #list >= (count or 1) and list;
	end, 10, name);
end

return dumps;
