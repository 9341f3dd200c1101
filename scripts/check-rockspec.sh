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

init_check check-rockspec
find_prosody "${launcher[@]}"
echo "check-rockspec: Prosody $version via '${launcher[*]}'"

# 1. Build and install into a fresh tree.
tree=$tmp/tree
luarocks --lua-version 5.4 lint "$ROCKSPEC" >"$tmp/luarocks.log" 2>&1 \
	|| { cat "$tmp/luarocks.log" >&2; fail "luarocks lint $ROCKSPEC"; }
luarocks --lua-version 5.4 --tree "$tree" make "$ROCKSPEC" >"$tmp/luarocks.log" 2>&1 \
	|| { tail -n 40 "$tmp/luarocks.log" >&2; fail "luarocks make $ROCKSPEC"; }
for f in share/lua/5.4/mod_log_ringbuffer.lua share/lua/5.4/mod_log_ringbuffer/ringbuffer_shell.lua lib/lua/5.4/log_ringbuffer_native.so; do
	[ -f "$tree/$f" ] || fail "luarocks did not install $f"
done
# luarocks exports CC=gcc to the build: when target/release was built without CC set (`make
# build`), cargo reruns zstd-sys's build script and rebuilds the crates above it (a minute).
compiled=$(grep -c "^ *Compiling " "$tmp/luarocks.log" || true)
echo "check-rockspec: luarocks make installed the module and the native library (cargo compiled $compiled crates)"

# 2. Run Prosody with the module loaded from the tree, on free ports.
start_prosody "plugin_paths = { \"$tree/share/lua/5.4\" }" "${launcher[@]}"
wait_for_library "$tree/lib/lua/5.4/log_ringbuffer_native.so" "log_ringbuffer_native.so from the rocks tree"

# 3. SIGUSR2 must produce a complete dump in the data directory.
dump_on_sigusr2
[ "$(wc -l <"$dump")" -gt 2 ] || fail "dump $dump holds no log lines"
echo "check-rockspec: SIGUSR2 wrote $(basename "$dump") ($(wc -l <"$dump") lines)"

# 4. Clean shutdown on SIGTERM.
stop_prosody
check_prosody_log
echo "check-rockspec: OK (Prosody $version)"
