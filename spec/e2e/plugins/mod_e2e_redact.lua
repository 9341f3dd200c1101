-- For spec/e2e/redact_spec.lua: logs every message a local client sends with the stanza object
-- itself as the argument (what a module does when it logs a stanza), before it is routed.
local function log_stanza(event)
	module:log("debug", "Message from a client: %s", event.stanza);
end

module:hook("pre-message/full", log_stanza, 1000);
module:hook("pre-message/bare", log_stanza, 1000);
