#!/usr/bin/env bash
# Shows mod_log_ringbuffer at work in a real, throwaway Prosody 0.12 on loopback:
# start it with the module, let a client connect so it logs, send SIGUSR2, show the dump.
#
# Usage: scripts/demo.sh PLUGIN_DIR [PROSODY_LAUNCHER]
# The launcher defaults to the Prosody 0.12 tree scripts/setup-deps.sh unpacks into $DEPS
# (default .deps). Prosody listens on free 127.0.0.1 ports; only the process started here is
# ever signalled. Its files are left in a temp dir (under $TMPDIR, default /tmp) for a look.
set -euo pipefail

plugins=${1:?usage: demo.sh PLUGIN_DIR [PROSODY_LAUNCHER]}
DEPS=${DEPS:-$(cd "$(dirname "$0")/.." && pwd)/.deps}
read -r -a launcher <<<"${2:-lua5.4 $DEPS/prosody012/usr/bin/prosody}"
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
version=$(prosody_version "${launcher[@]}")
[ -n "$version" ] || { echo "demo: Prosody launcher '${launcher[*]}' not found (make deps)" >&2; exit 1; }


dir=$(mktemp -d "${TMPDIR:-/tmp}/log_ringbuffer-demo-XXXXXX")
mkdir -p "$dir/data" "$dir/certs"
read -r port s2s_port < <(free_ports 2)

cat > "$dir/prosody.cfg.lua" <<CFG
run_as_root = true
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
certificates = "$dir/certs"
plugin_paths = { "$plugins" }
c2s_ports = { $port }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { $s2s_port }
s2s_interfaces = { "127.0.0.1" }
http_ports = {}
https_ports = {}
modules_enabled = { "posix", "log_ringbuffer" }
log = {
	{ levels = { min = "info" }, to = "file", filename = "$dir/prosody.log" };
	-- Debug and up, kept in a 2 MiB ring, dumped on SIGUSR2:
	{ to = "ringbuffer", level = "debug", size = 2*1024*1024, signal = "SIGUSR2",
	  filename_template = "{paths.data}/debug-logs-{pid}-{count}.log" };
}
VirtualHost "localhost"
CFG

pid=
stop() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	pid=
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== Starting Prosody $version in $dir (c2s on 127.0.0.1:$port)"
(cd "$dir" && exec "${launcher[@]}" -F --config "$dir/prosody.cfg.lua" > "$dir/stdout" 2>&1 < /dev/null) &
pid=$! # exec: this is Prosody itself
for _ in $(seq 100); do
	[ "$(cat "$dir/prosody.pid" 2>/dev/null)" = "$pid" ] \
		&& grep -qs "Activated service 'c2s' on \[127.0.0.1\]:$port" "$dir/prosody.log" && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
grep -qs "Activated service 'c2s' on \[127.0.0.1\]:$port" "$dir/prosody.log" \
	|| { echo "Prosody did not start (or not on port $port):"; cat "$dir/stdout" "$dir/prosody.log" 2>/dev/null; exit 1; }
sleep 0.3

echo "== A client opens a stream, so Prosody logs debug lines (they stay in memory)"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf "%s" "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" >&3
timeout 2 head -c 300 <&3 >/dev/null || true
exec 3>&-
sleep 0.3
echo "   prosody.log (info and up) has $(wc -l < "$dir/prosody.log") lines; nothing was written to disk at debug level"

echo "== kill -USR2 $pid"
kill -USR2 "$pid"
dump=""
for _ in $(seq 100); do
	dump=$(find "$dir/data" -maxdepth 1 -name 'debug-logs-*.log' -print -quit)
	[ -n "$dump" ] && grep -q -- "^-- End of dump --\$" "$dump" && break
	dump=""
	sleep 0.1
done
[ -n "$dump" ] || { echo "no dump appeared"; cat "$dir/prosody.log"; exit 1; }

# Log lines of the dump: between header and footer, not counting the tab-indented continuation
# lines of multi-line messages (nor the blank line after the footer).
lines=$(awk '/^-- Dumping log buffer at /{ body = 1; next } /^-- End of dump --$/{ body = 0; next } body && !/^\t/{ n++ } END { print n + 0 }' "$dump")
echo "== The dump went to $dump ($lines lines). Its first lines:"
head -n 6 "$dump" | cut -c 1-160
echo "   ... and what it recorded about the client:"
grep -E "^[A-Z][a-z]{2} [0-9 ]{2} [0-9:]{8} c2s" "$dump" | head -n 6 | cut -c 1-160
echo "   ..."
tail -n 3 "$dump"

# The module reports the dump from a timer shortly after it is written.
for _ in $(seq 50); do
	grep -qE "Dumped [0-9]+ buffered lines" "$dir/prosody.log" && break
	sleep 0.1
done
echo "== Prosody's own log says:"
{ grep -E "log_ringbuffer"$'\t' "$dir/prosody.log" || echo "(no report from mod_log_ringbuffer within 5 s)"; } | sed "s/^/   /"
stop
echo "== Stopped. Everything is left in $dir"
