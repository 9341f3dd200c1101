#!/usr/bin/env bash
# Shows mod_log_ringbuffer at work in a real, throwaway Prosody 0.12 on loopback:
# start it with the module, let a client connect so it logs, send SIGUSR2, show the dump.
set -euo pipefail

plugins=${1:?usage: demo.sh PLUGIN_DIR}
port=25422
dir=$(mktemp -d /tmp/log_ringbuffer-demo-XXXXXX)
mkdir -p "$dir/data" "$dir/certs"

cat > "$dir/prosody.cfg.lua" <<CFG
run_as_root = true
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
plugin_paths = { "$plugins" }
c2s_ports = { $port }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { $((port + 1)) }
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

stop() {
	if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
}
trap stop EXIT

echo "== Starting Prosody $(dpkg-query -W -f='${Version}' prosody) in $dir (c2s on 127.0.0.1:$port)"
(cd "$dir" && exec prosody -F --config "$dir/prosody.cfg.lua" > "$dir/stdout" 2>&1) &
for _ in $(seq 100); do [ -s "$dir/prosody.pid" ] && break; sleep 0.1; done
pid=$(cat "$dir/prosody.pid" 2>/dev/null) || { echo "Prosody did not start:"; cat "$dir/stdout"; exit 1; }
sleep 0.5

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
	dump=$(ls "$dir"/data/debug-logs-*.log 2>/dev/null | head -n 1) || true
	[ -n "$dump" ] && grep -q -- "-- End of dump --" "$dump" && break
	sleep 0.1
done
[ -n "$dump" ] || { echo "no dump appeared"; cat "$dir/prosody.log"; exit 1; }

echo "== The dump went to $dump ($(grep -vc -- '^-- ' "$dump") lines). Its first lines:"
head -n 6 "$dump" | cut -c 1-160
echo "   ... and what it recorded about the client:"
grep -E "^[A-Z][a-z]{2} [0-9 ]{2} [0-9:]{8} c2s" "$dump" | head -n 6 | cut -c 1-160
echo "   ..."
tail -n 3 "$dump"
echo "== Prosody's own log says:"
{ grep -P " mod_log_ringbuffer\t" "$dir/prosody.log" || true; } | sed "s/^/   /"
stop
echo "== Stopped. Everything is left in $dir"
