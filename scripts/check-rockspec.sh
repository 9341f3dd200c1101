#!/usr/bin/env bash
# Checks the rockspec end to end: `luarocks make` into a throwaway tree (offline), then a real
# Prosody loading the module from that tree and dumping the ring buffer on SIGUSR2.
#
# Usage: scripts/check-rockspec.sh [PROSODY_LAUNCHER]
#   scripts/check-rockspec.sh                                             # Prosody 0.12 from .deps
#   scripts/check-rockspec.sh "lua5.4 .deps/prosody13/usr/bin/prosody"   # Prosody 13
# The launchers are the Prosody trees scripts/setup-deps.sh unpacks into $DEPS (default .deps).
# Prosody listens on free 127.0.0.1 ports the kernel picks, so several checks can run at once.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."
ROCKSPEC=rockspec/mod_log_ringbuffer-scm-1.rockspec
DEPS=${DEPS:-$PWD/.deps}

read -r -a launcher <<<"${1:-lua5.4 $DEPS/prosody012/usr/bin/prosody}"
[ ${#launcher[@]} -gt 0 ] || { echo "check-rockspec: empty Prosody launcher" >&2; exit 2; }


tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-rockspec.XXXXXX")
pid=

cleanup() {
	local status=$?
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "check-rockspec: FAIL: $*" >&2
	if [ -f "$tmp/prosody.log" ]; then
		echo "---- prosody.log (last 40 lines) ----" >&2
		tail -n 40 "$tmp/prosody.log" >&2
	fi
	if [ -s "$tmp/prosody.out" ]; then
		echo "---- prosody stdout/stderr (last 40 lines) ----" >&2
		tail -n 40 "$tmp/prosody.out" >&2
	fi
	exit 1
}

# Which Prosody is this? 0.12 needs mod_posix for the pidfile and signals; 13 does both itself.
version=$(prosody_version "${launcher[@]}")
[ -n "$version" ] || fail "Prosody launcher '${launcher[*]}' not found"
case $version in
	0.*) modules='"log_ringbuffer", "posix"' ;;
	*) modules='"log_ringbuffer"' ;;
esac
echo "check-rockspec: Prosody $version via '${launcher[*]}'"

# 1. Build and install into a fresh tree.
tree=$tmp/tree
luarocks --lua-version 5.4 lint "$ROCKSPEC" >"$tmp/luarocks.log" 2>&1 \
	|| { cat "$tmp/luarocks.log" >&2; fail "luarocks lint $ROCKSPEC"; }
luarocks --lua-version 5.4 --tree "$tree" make "$ROCKSPEC" >"$tmp/luarocks.log" 2>&1 \
	|| { tail -n 40 "$tmp/luarocks.log" >&2; fail "luarocks make $ROCKSPEC"; }
for f in share/lua/5.4/mod_log_ringbuffer.lua lib/lua/5.4/log_ringbuffer_native.so; do
	[ -f "$tree/$f" ] || fail "luarocks did not install $f"
done
echo "check-rockspec: luarocks make installed the module and the native library"

# 2. Run Prosody with the module loaded from the tree, on free ports (picked again if another
# process takes one between the pick and Prosody's bind).
mkdir -p "$tmp/data" "$tmp/certs"
write_config() {
	cat >"$tmp/prosody.cfg.lua" <<EOF
run_as_root = true
pidfile = "$tmp/prosody.pid"
data_path = "$tmp/data"
certificates = "$tmp/certs"
plugin_paths = { "$tree/share/lua/5.4" }
interfaces = { "127.0.0.1" }
c2s_ports = { $C2S_PORT }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { $S2S_PORT }
s2s_interfaces = { "127.0.0.1" }
http_ports = {}
https_ports = {}
modules_enabled = { $modules }
log = {
	{ levels = { min = "info" }, to = "file", filename = "$tmp/prosody.log" };
	{ to = "ringbuffer", signal = "SIGUSR2", filename_template = "{paths.data}/rb-{pid}-{count}.log" };
}
VirtualHost "localhost"
EOF
}

stop_prosody() {
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
}

ready=
for attempt in 1 2 3; do
	read -r C2S_PORT S2S_PORT < <(free_ports 2)
	write_config
	rm -f "$tmp/prosody.log" "$tmp/prosody.pid"
	"${launcher[@]}" -F --config "$tmp/prosody.cfg.lua" >"$tmp/prosody.out" 2>&1 </dev/null &
	pid=$!
	# Ready once the pidfile names our process and c2s listens (modules are loaded by then).
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
	[ -z "$ready" ] || break
	grep -qs "Failed to open server port" "$tmp/prosody.log" || fail "Prosody did not start within 15 s"
	echo "check-rockspec: port $C2S_PORT or $S2S_PORT was taken meanwhile (attempt $attempt), trying others"
	stop_prosody
done
[ -n "$ready" ] || fail "no free ports for Prosody after 3 attempts"
# Listening on c2s does not mean every global module is loaded yet (Prosody 13 may load
# log_ringbuffer after mod_c2s): wait for the library to be mapped.
loaded=
for _ in $(seq 100); do
	grep -qs "$tree/lib/lua/5.4/log_ringbuffer_native.so" "/proc/$pid/maps" && { loaded=1; break; }
	sleep 0.1
done
[ -n "$loaded" ] || fail "Prosody did not load log_ringbuffer_native.so from the rocks tree"
sleep 0.5

# 3. SIGUSR2 must produce a complete dump in the data directory.
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
[ "$(wc -l <"$dump")" -gt 2 ] || fail "dump $dump holds no log lines"
echo "check-rockspec: SIGUSR2 wrote $(basename "$dump") ($(wc -l <"$dump") lines)"

# 4. Clean shutdown on SIGTERM.
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "Prosody still running 10 s after SIGTERM"
wait "$pid" 2>/dev/null || true
pid=
grep -q "mod_log_ringbuffer.*error\|cannot load the native library" "$tmp/prosody.log" \
	&& fail "mod_log_ringbuffer logged errors"
echo "check-rockspec: OK (Prosody $version)"
