-- Test-only plugin: the upstream mod_log_ringbuffer's algorithm, as the reference the compat
-- specs byte-compare real dumps against. A sink type "upstream_reference" that formats each line
-- as upstream does (`format("%s%s\t%s\t%s\n", timestamp, source, level, format(message, ...))`
-- with the running Prosody's util.format, no timestamps here), keeps every line (no size
-- limit: the comparison is about the bytes of each line, not about eviction) and, on its
-- `event`, appends `-- Dumping log buffer at <time> --`, the lines and `-- End of dump --` to
-- its `filename`, then empties itself, as upstream does. Unlike upstream, a logging reload does
-- not hook the event again: the sink the last reload made is the one dumped.
module:set_global();

local loggingmanager = require "core.loggingmanager";
local format = require "util.format".format;

-- Event name -> the sink it dumps: { lines = ..., filename = ... }.
local by_event = {};

local function maker(config)
	local sink = { lines = {}, filename = config.filename };
	if not by_event[config.event] then
		module:hook_global(config.event, function ()
			local current = by_event[config.event];
			local f = assert(io.open(current.filename, "a"));
			f:write("-- Dumping log buffer at ", os.date("%b %d %H:%M:%S "), " --\n", table.concat(current.lines),
				"-- End of dump --\n\n");
			f:close();
			current.lines = {};
		end);
	end
	by_event[config.event] = sink;
	return function (source, level, message, ...)
		table.insert(sink.lines, format("%s%s\t%s\t%s\n", "", source, level, format(message, ...)));
	end;
end

loggingmanager.register_sink_type("upstream_reference", maker);
