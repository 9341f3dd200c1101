# shellcheck shell=bash
# Shell functions shared by scripts/demo.sh and scripts/check-rockspec.sh (sourced, not run).

# N distinct loopback TCP ports that are free right now (the kernel picks them).
free_ports() {
	lua5.4 -e "n = $1" -e '
		local socket = require "socket"
		local servers, ports = {}, {}
		for i = 1, n do
			servers[i] = assert(socket.bind("127.0.0.1", 0))
			ports[i] = select(2, servers[i]:getsockname())
		end
		print(table.concat(ports, " "))'
}

# The version of the Prosody that a launcher (`lua5.4 <tree>/usr/bin/prosody`, as words) runs:
# read from the source dir its launcher script names. Empty if it cannot be told.
prosody_version() {
	local script=${*: -1} srcdir
	[ -f "$script" ] || script=$(command -v "$script") || return 0
	srcdir=$(sed -n "s/^CFG_SOURCEDIR='\(.*\)';\$/\1/p" "$script" | head -n 1)
	cat "${srcdir:-/nonexistent}/prosody.version" 2>/dev/null || true
}
