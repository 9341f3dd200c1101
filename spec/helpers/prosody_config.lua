-- The one writer of the Prosody configuration files that the tests and checks run Prosody with
-- (spec/helpers/prosody.lua, spec/e2e/crash_spec.lua, scripts/lib.sh, scripts/bench-server.sh).
-- From Lua: require "spec.helpers.prosody_config".render(options) returns the text.
-- From a shell: `lua5.4 spec/helpers/prosody_config.lua key=value ...` prints it (plugin_path=,
-- given once per path, makes plugin_paths; interfaces= with any value sets interfaces).
--
-- options, in the order their lines come: dir (holds prosody.pid and certs/), data (data_path),
-- head (lines after `certificates`), plugin_paths (a list), interfaces (true: Prosody listens on
-- 127.0.0.1 only), c2s_port, s2s_port, console_port (with console_interfaces), options (lines
-- before modules_enabled), modules (the Lua source inside modules_enabled's braces), log (the Lua
-- source of `log`'s value), tail (lines after it). A text option given, even empty, is a line.
local prosody_config = {};

function prosody_config.render(o)
	local out = {};
	local function add(fmt, ...) table.insert(out, fmt:format(...)); end
	add("run_as_root = true");
	add("pidfile = \"%s/prosody.pid\"", o.dir);
	add("data_path = \"%s\"", o.data);
	add("certificates = \"%s/certs\"", o.dir);
	if o.head then add("%s", o.head); end
	if o.plugin_paths then add("plugin_paths = { \"%s\" }", table.concat(o.plugin_paths, "\", \"")); end
	if o.interfaces then add("interfaces = { \"127.0.0.1\" }"); end
	add("c2s_ports = { %s }", o.c2s_port);
	add("c2s_interfaces = { \"127.0.0.1\" }");
	add("s2s_ports = { %s }", o.s2s_port);
	add("s2s_interfaces = { \"127.0.0.1\" }");
	add("http_ports = {}");
	add("https_ports = {}");
	if o.console_port then
		add("console_ports = { %s }", o.console_port);
		add("console_interfaces = { \"127.0.0.1\" }");
	end
	if o.options then add("%s", o.options); end
	add("modules_enabled = { %s }", o.modules);
	add("log = %s", o.log);
	if o.tail then add("%s", o.tail); end
	add("VirtualHost \"localhost\"");
	return table.concat(out, "\n") .. "\n";
end

-- Run as a script (required, `...` is the module's name): the options from the command line, the
-- text to stdout.
if (...) ~= "spec.helpers.prosody_config" then
	local options = {};
	for _, given in ipairs({ ... }) do
		local key, value = given:match("^([%w_]+)=(.*)$");
		assert(key, "expected key=value, not " .. given);
		if key == "plugin_path" then
			options.plugin_paths = options.plugin_paths or {};
			table.insert(options.plugin_paths, value);
		elseif key == "interfaces" then
			options.interfaces = true;
		else
			options[key] = value;
		end
	end
	io.write(prosody_config.render(options));
end

return prosody_config;
