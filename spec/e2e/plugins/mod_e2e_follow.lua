-- Test-only plugin for follow_spec: on the global event e2e_follow/marker (mod_e2e_control's
-- `fire`), logs markers stamped with the precise time they were logged at: one at info that
-- the spec's follow filter takes, and, logged before it, two that the filter leaves out (a
-- debug line with the marker's text, an info line without it).
module:set_global();

local socket = require "socket";

local count = 0;
module:hook_global("e2e_follow/marker", function ()
	count = count + 1;
	module:log("debug", "follow-marker %d (debug, left out)", count);
	module:log("info", "unmarked %d (left out)", count);
	module:log("info", "follow-marker %d at %.6f", count, socket.gettime());
end);

-- On e2e_follow/odd: a line with markup, which the shell's XML must escape.
module:hook_global("e2e_follow/odd", function ()
	module:log("info", "odd-marker <b> & 'q' \"dq\" end");
end);
