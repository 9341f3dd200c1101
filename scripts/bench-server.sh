#!/bin/bash
# `make bench-server`: what keeping debug capture on costs a real Prosody. Each Prosody version
# (0.12 and 13, from make deps) runs on loopback, with accounts made by its own prosodyctl;
# bench/loadgen (pre-built, pipelined stanzas after a real SASL login, bind and presence) routes
# a fixed number of chat messages between CLIENTS logged-in users until every one has arrived.
# Configurations, each a fresh Prosody, in rotating order within each of ROUNDS rounds:
#   A  info and up to a file (the baseline)
#   B  A + this module, debug into a RING_SIZE ring (full and evicting during the timed part)
#   C  A + the upstream Lua module's algorithm (bench/upstream_sink.lua), RING_SIZE ring
#   H  A + RING_SIZE bytes of Lua heap held and never logged into (C's heap without its work)
#   D  A + debug to a file
#   N  A + a Lua sink that does nothing: what handing debug lines to any sink costs the server
#   P  B with capture paused (mod_bench_pause_ringbuffer): the native sink is called and returns
#   F  B + 10 admin-shell followers (ringbuffer:follow of u0's sessions, each read by a client
#      of bench/follow_holds.lua's reader process); not in the default set
# Ratios to A are taken within each round; bench/server/report.lua prints their medians and
# writes bench/server-results.md and bench/server-results.svg. Everything runs in a temp dir
# that is removed however the script ends; only the processes started here are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

LUA=${LUA:-lua5.4}
DEPS=${DEPS:-$PWD/.deps}
ROUNDS=${ROUNDS:-7}
CLIENTS=${CLIENTS:-20}
MESSAGES=${MESSAGES:-40000}
WARMUP=${WARMUP:-6000}
RING_SIZE=${RING_SIZE:-$((1024 * 1024))}
read -r -a CONFIGS <<<"${CONFIGS:-A B C H D N P}"
read -r -a VERSIONS <<<"${VERSIONS:-$DEPS/prosody012 $DEPS/prosody13}"
# KEEP_DEBUG_LOGS=<dir>: copy each version's debug file of configuration D there (for a look).
KEEP_DEBUG_LOGS=${KEEP_DEBUG_LOGS:-}
# CALLGRIND_DIR=<dir>: run Prosody under callgrind, instrumented during the timed part only, and
# keep callgrind-<version>-<config>-<round>.out there; the summary then gives the instructions
# per message and per debug line (counts that other processes cannot disturb; wall times are
# void).
CALLGRIND_DIR=${CALLGRIND_DIR:-}
# CALLGRIND_CACHE=1 (with CALLGRIND_DIR): valgrind's cache model as well, its first-level caches
# as this CPU's and its last level as big as CALLGRIND_LL (default 524288 bytes, an L2 of the
# machine these figures were made on); the summary adds the first-level cache misses per message.
CALLGRIND_CACHE=${CALLGRIND_CACHE:-}
CALLGRIND_LL=${CALLGRIND_LL:-524288}
# GC_PROBE=1: with the collector stopped during the timed part (mod_bench_gcprobe), add
# lua_bytes=<Lua heap allocated> to each result line. Timings are then void.
GC_PROBE=${GC_PROBE:-}
PASSWORD=bench-password
LOADGEN=bench/loadgen/target/release/bench-loadgen
start_time=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

init_check bench-server
results=$tmp/results.tsv
# Every ratio is taken against A, so A must run too.
[[ " ${CONFIGS[*]} " == *" A "* ]] || fail "CONFIGS must include A, the baseline (got: ${CONFIGS[*]})"
for config in "${CONFIGS[@]}"; do
	[[ $config == [ABCHDNPF] ]] || fail "unknown configuration '$config' in CONFIGS (A B C H D N P F)"
done

# The configuration for run $config (set by run_one) replaces lib.sh's ringbuffer-only one;
# start_prosody calls this with its free ports.
write_prosody_config() {
	local extra='' sinks=''
	mkdir -p "$data" "$tmp/certs"
	case $config in
		B | P | F) extra='"log_ringbuffer";'
			[ "$config" != P ] || extra="$extra \"bench_pause_ringbuffer\";"
			[ "$config" != F ] || extra="$extra \"admin_shell\";"
			sinks="{ levels = { min = \"debug\" }, to = \"ringbuffer\", size = $RING_SIZE, signal = \"SIGUSR2\" };" ;;
		C) extra='"bench_upstream_sink";'
			sinks="{ levels = { min = \"debug\" }, to = \"bench_upstream\", size = $RING_SIZE };" ;;
		H) extra='"bench_heap";' ;;
		N) extra='"bench_noop_sink";'
			sinks="{ levels = { min = \"debug\" }, to = \"bench_noop\" };" ;;
		D) sinks="{ levels = { min = \"debug\" }, to = \"file\", filename = \"$tmp/debug.log\" };" ;;
	esac
	[ -z "$GC_PROBE" ] || extra="$extra \"bench_gcprobe\";"
	prosody_config dir="$tmp" data="$data" plugin_path="$tmp/plugins" interfaces=yes \
		c2s_port="${C2S_PORT:-0}" s2s_port="${S2S_PORT:-0}" options="c2s_require_encryption = false
allow_unencrypted_plain_auth = true
bench_upstream_sink_file = \"$PWD/bench/upstream_sink.lua\"
bench_heap_bytes = $RING_SIZE" modules="\"roster\", \"saslauth\", \"ping\", $modules $extra" log="{
	{ levels = { min = \"info\" }, to = \"file\", filename = \"$tmp/prosody.log\" };
	$sinks
}" >"$tmp/prosody.cfg.lua"
}

# Sets version, modules (0.12 needs mod_posix for its pidfile), data and launcher for tree $1.
use_version() {
	launcher=("$LUA" "$1/usr/bin/prosody")
	if [ -n "$CALLGRIND_DIR" ]; then
		local cache=()
		[ -z "$CALLGRIND_CACHE" ] || cache=(--cache-sim=yes "--LL=$CALLGRIND_LL,8,64")
		launcher=(valgrind --tool=callgrind --instr-atstart=no "${cache[@]}" "--callgrind-out-file=$tmp/callgrind.out"
			"${launcher[@]}")
	fi
	ctl=("$LUA" "$1/usr/bin/prosodyctl")
	version=$(prosody_version "$LUA" "$1/usr/bin/prosody")
	[ -n "$version" ] || fail "no Prosody in $1 (make deps)"
	case $version in
		0.*) modules='"posix";' ;;
		*) modules='' ;;
	esac
	data=$tmp/data-$version
}

# Makes the CLIENTS accounts u0, u1, ... with the version's own prosodyctl.
register_accounts() {
	local i
	config=A
	write_prosody_config
	for ((i = 0; i < CLIENTS; i++)); do
		"${ctl[@]}" --config "$tmp/prosody.cfg.lua" register "u$i" localhost "$PASSWORD" >>"$tmp/prosodyctl.out" 2>&1 \
			|| { fail_show=("$tmp/prosodyctl.out" "prosodyctl"); fail "prosodyctl register u$i failed"; }
	done
}

# One run: Prosody $version with configuration $config, the load, one line of results.tsv.
run_one() {
	local round=$1 line count=()
	config=$2
	rm -f "$tmp/debug.log"
	start_prosody "" "${launcher[@]}"
	case $config in B | P | F) wait_for_library log_ringbuffer_native "the module's native library" ;; esac
	local readers=
	if [ "$config" = F ]; then
		rm -f "$data/prosody.sock.received"
		"$LUA" bench/follow_holds.lua readers "$data/prosody.sock" 10 read '{ jid = "u0@localhost", backlog = 0 }' \
			>"$tmp/readers.out" 2>&1 &
		readers=$!
		local waited=0
		until [ -f "$data/prosody.sock.received" ]; do
			sleep 0.1
			waited=$((waited + 1))
			[ "$waited" -lt 100 ] || fail "configuration F: the followers did not start ($version)"
		done
	fi
	[ "$config" != D ] || count=(--count-file "$tmp/debug.log")
	[ -z "$GC_PROBE" ] || count+=(--before-timed "kill -USR1 $pid; sleep 1" --after-timed "kill -USR1 $pid; sleep 1")
	[ -z "$CALLGRIND_DIR" ] || count+=(--before-timed "callgrind_control -i on $pid >/dev/null" \
		--after-timed "callgrind_control -i off $pid >/dev/null")
	line=$("$LOADGEN" --port "$C2S_PORT" --server-pid "$pid" --clients "$CLIENTS" --password "$PASSWORD" \
		--messages "$MESSAGES" --warmup "$WARMUP" "${count[@]}" 2>"$tmp/loadgen.err") \
		|| { fail_show=("$tmp/loadgen.err" "load generator"); fail "load generator failed ($version, $config)"; }
	[ -z "$readers" ] || { kill "$readers"; wait "$readers" 2>/dev/null || true; }
	case $config in B | P | F) check_prosody_log ;; esac
	if [ "$config" = P ] && ! grep -q "Paused ringbuffer sink" "$tmp/prosody.log"; then
		fail "configuration P: the ringbuffer sink was not paused ($version)"
	fi
	if grep -q "mod_bench.*error\|Traceback" "$tmp/prosody.log"; then fail "Prosody logged errors ($version, $config)"; fi
	if [ -n "$GC_PROBE" ]; then
		line="$line lua_bytes=$(sed -n 's/.*gcprobe: \([0-9]*\) bytes.*/\1/p' "$tmp/prosody.log" | tail -n 1)"
	fi
	stop_prosody
	if [ -n "$CALLGRIND_DIR" ]; then
		local profile=$CALLGRIND_DIR/callgrind-$version-$config-$round.out
		mv "$tmp/callgrind.out" "$profile"
		# The totals of the events recorded: Ir (instructions), and I1mr and D1mr with the cache model.
		line="$line $(awk '/^events:/ { for (i = 2; i <= NF; i++) event[i] = $i }
			/^totals:/ { for (i = 2; i <= NF; i++) {
				name = event[i] == "Ir" ? "instructions" : event[i] == "I1mr" ? "i1_misses" : event[i] == "D1mr" ? "d1_read_misses" : ""
				if (name != "") printf "%s=%s ", name, $i } }' "$profile")"
		line=${line% }
	fi
	[ "$config" != D ] || [ -z "$KEEP_DEBUG_LOGS" ] || cp "$tmp/debug.log" "$KEEP_DEBUG_LOGS/debug-$version.log"
	echo "$version $round $config ${line#result }" | tee -a "$results"
}

# MODULE_PLUGIN_DIR=<dir>: take the module from a plugin dir made earlier by `make install-plugin`
# (e.g. of another checkout) instead of building this one.
if [ -n "${MODULE_PLUGIN_DIR:-}" ]; then
	mkdir -p "$tmp/plugins"
	cp -r "$MODULE_PLUGIN_DIR/mod_log_ringbuffer" "$tmp/plugins/"
else
	echo "bench-server: building the module"
	make --no-print-directory install-plugin PLUGIN_DIR="$tmp/plugins" >/dev/null
fi
echo "bench-server: building the load generator"
"${CARGO:-cargo}" build --release --quiet --manifest-path bench/loadgen/Cargo.toml
cp bench/server/mod_bench_*.lua "$tmp/plugins/"

for tree in "${VERSIONS[@]}"; do
	use_version "$tree"
	echo "bench-server: Prosody $version: registering $CLIENTS accounts with prosodyctl"
	register_accounts
done

echo "bench-server: $ROUNDS rounds x ${#VERSIONS[@]} versions x ${#CONFIGS[@]} configurations;" \
	"$CLIENTS clients, $WARMUP warm-up + $MESSAGES timed messages per run, rings of $RING_SIZE bytes"
for ((round = 1; round <= ROUNDS; round++)); do
	for ((v = 0; v < ${#VERSIONS[@]}; v++)); do
		use_version "${VERSIONS[(v + round) % ${#VERSIONS[@]}]}"
		for ((c = 0; c < ${#CONFIGS[@]}; c++)); do
			run_one "$round" "${CONFIGS[(c + round - 1) % ${#CONFIGS[@]}]}"
		done
	done
done

echo "bench-server: load average at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$LUA" bench/server/report.lua "$results" "$RING_SIZE" "$CLIENTS" "$(nproc)" "$(( $(date +%s) - start_time ))"
