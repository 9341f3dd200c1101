-- Test-only plugin: a module that reacts to `ringbuffer/dumped`, as another module would (to
-- upload or announce a dump). Appends each event to <data>/dumped-events as one line:
--   <sink>\t<reason>\t<ok>\t<lines>\t<path>\t<error>
-- A second handler, run after it, raises an error while <data>/dumped-raise exists: the module
-- must log it and go on.
module:set_global();

local events_file = prosody.paths.data .. "/dumped-events";

module:hook_global("ringbuffer/dumped", function (event)
	local f = assert(io.open(events_file, "a"));
	f:write(("%s\t%s\t%s\t%d\t%s\t%s\n"):format(event.sink, event.reason, tostring(event.ok), event.lines, event.path,
		tostring(event.error)));
	f:close();
end, 10);

module:hook_global("ringbuffer/dumped", function ()
	local raise = io.open(prosody.paths.data .. "/dumped-raise");
	if raise then
		raise:close();
		error("a broken ringbuffer/dumped handler");
	end
end, 0);
