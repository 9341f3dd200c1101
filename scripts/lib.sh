# shellcheck shell=bash
# Shell functions shared by scripts/demo.sh and the scripts/check-*.sh checks (sourced, not run).

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

# ---- The checks' shared steps (scripts/check-rockspec.sh, check-install.sh, check-deb.sh) ----
# They share globals: check (the name that prefixes messages), tmp (the check's temp dir), pid
# (the Prosody started here), group (a process group started here), version and modules.

# Makes the temp dir $tmp for check $1; cleanup runs however the script ends (exit, INT, TERM).
init_check() {
	check=$1
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$check.XXXXXX")
	pid=
	group=
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# shellcheck disable=SC2317 # runs from the EXIT trap
# Stops the recorded process group and Prosody (by recorded ID only), removes $tmp, keeps the exit status.
cleanup() {
	local status=$?
	trap - EXIT
	trap "" INT TERM # a second signal must not cut the cleanup short
	kill_group
	kill_prosody
	rm -rf "$tmp"
	exit "$status"
}

# Prints the last 40 lines of file $1, under a header naming it $2, to stderr if it is not empty.
show_tail() {
	[ -s "$1" ] || return 0
	echo "---- $2 (last 40 lines) ----" >&2
	tail -n 40 "$1" >&2
}

# Pairs of file and name whose ends `fail` shows before Prosody's logs (a check adds its tools').
fail_show=()

# Says "<check>: FAIL: $*" and shows the ends of the logs, then exits 1 (cleanup stops Prosody).
fail() {
	local i
	echo "$check: FAIL: $*" >&2
	for ((i = 0; i + 1 < ${#fail_show[@]}; i += 2)); do show_tail "${fail_show[i]}" "${fail_show[i + 1]}"; done
	show_tail "$tmp/prosody.log" "prosody.log"
	show_tail "$tmp/prosody.out" "prosody stdout/stderr"
	exit 1
}

# Sets version (of launcher "$@"'s Prosody) and modules: 0.12 needs mod_posix for pidfile and signals.
find_prosody() {
	version=$(prosody_version "$@")
	[ -n "$version" ] || fail "Prosody launcher '$*' not found"
	case $version in
		0.*) modules='"log_ringbuffer", "posix"' ;;
		*) modules='"log_ringbuffer"' ;;
	esac
}

# The one writer of Prosody configurations (the e2e specs use it too): prints the config that
# its key=value arguments describe (see the file). Found from where this file is, whatever the
# working directory is when it is called.
prosody_config_writer=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/spec/helpers/prosody_config.lua
prosody_config() {
	lua5.4 "$prosody_config_writer" "$@"
}

# Writes $tmp/prosody.cfg.lua (ringbuffer sink on SIGUSR2, ports $C2S_PORT/$S2S_PORT) plus the lines $1.
write_prosody_config() {
	mkdir -p "$tmp/data" "$tmp/certs"
	prosody_config dir="$tmp" data="$tmp/data" head="$1" interfaces=yes \
		c2s_port="${C2S_PORT:-0}" s2s_port="${S2S_PORT:-0}" modules="$modules" log="{
	{ levels = { min = \"info\" }, to = \"file\", filename = \"$tmp/prosody.log\" };
	{ to = \"ringbuffer\", signal = \"SIGUSR2\", filename_template = \"{paths.data}/rb-{pid}-{count}.log\" };
}" >"$tmp/prosody.cfg.lua"
}

# Starts Prosody (config lines $1, launcher "${@:2}") as $pid on free ports; returns once c2s listens.
start_prosody() {
	local lines=$1 ready='' attempt
	shift
	for attempt in 1 2 3; do
		read -r C2S_PORT S2S_PORT < <(free_ports 2)
		write_prosody_config "$lines"
		rm -f "$tmp/prosody.log" "$tmp/prosody.pid"
		"$@" -F --config "$tmp/prosody.cfg.lua" >"$tmp/prosody.out" 2>&1 </dev/null &
		pid=$!
		for _ in $(seq 150); do
			kill -0 "$pid" 2>/dev/null || fail "Prosody exited during startup"
			if [ "$(cat "$tmp/prosody.pid" 2>/dev/null)" = "$pid" ] \
				&& grep -q "Activated service 'c2s' on \[127.0.0.1\]:$C2S_PORT" "$tmp/prosody.log" 2>/dev/null; then
				ready=1
				break
			fi
			grep -qs "Failed to open server port" "$tmp/prosody.log" && break
			sleep 0.1
		done
		[ -z "$ready" ] || return 0
		grep -qs "Failed to open server port" "$tmp/prosody.log" || fail "Prosody did not start within 15 s"
		echo "$check: port $C2S_PORT or $S2S_PORT was taken meanwhile (attempt $attempt), trying others"
		kill_prosody
	done
	fail "no free ports for Prosody after 3 attempts"
}

# Waits until Prosody maps library $1 (13 may load it after c2s listens); else fails: did not load $2.
wait_for_library() {
	local loaded=''
	for _ in $(seq 100); do
		grep -qs "$1" "/proc/$pid/maps" && { loaded=1; break; }
		grep -qs "cannot load the native library" "$tmp/prosody.log" && break
		sleep 0.1
	done
	[ -n "$loaded" ] || fail "Prosody did not load $2"
	sleep 0.5
}

# Sends Prosody SIGUSR2 and sets dump to the complete dump file it writes (header and end marker).
dump_on_sigusr2() {
	kill -USR2 "$pid"
	dump=
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || fail "Prosody died on SIGUSR2"
		dump=$(find "$tmp/data" -maxdepth 1 -name "rb-$pid-*.log" -print -quit)
		if [ -n "$dump" ] && grep -q -- "^-- End of dump --\$" "$dump"; then break; fi
		dump=
		sleep 0.1
	done
	[ -n "$dump" ] || fail "no complete dump file rb-$pid-*.log in the data directory after SIGUSR2"
	head -n 1 "$dump" | grep -q -- "^-- Dumping log buffer at " || fail "dump $dump lacks the '-- Dumping log buffer at' header"
}

# Stops Prosody with SIGTERM; fails if it still runs 10 s later (clean shutdown is checked).
stop_prosody() {
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && fail "Prosody still running 10 s after SIGTERM"
	wait "$pid" 2>/dev/null || true
	pid=
}

# Stops the recorded Prosody if it still runs: SIGTERM, SIGKILL after 5 s.
kill_prosody() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	pid=
}

# Stops the recorded process group $group if it still runs: SIGTERM, SIGKILL after 5 s.
kill_group() {
	if [ -n "$group" ] && kill -0 -- "-$group" 2>/dev/null; then
		kill -TERM -- "-$group" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.1; done
		kill -KILL -- "-$group" 2>/dev/null || true
		wait "$group" 2>/dev/null || true
	fi
	group=
}

# Fails if Prosody's log shows mod_log_ringbuffer errors or that it could not load the native library.
check_prosody_log() {
	if grep -q "mod_log_ringbuffer.*error\|cannot load the native library" "$tmp/prosody.log"; then
		fail "mod_log_ringbuffer logged errors"
	fi
}
