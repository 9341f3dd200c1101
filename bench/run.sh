#!/bin/sh
# `make bench`: times log calls through Prosody's util.logger into the native sink, upstream's
# algorithm (bench/upstream_sink.lua), Prosody's file sink and an empty sink; measures memory
# and dumps. Prints the results; writes bench/results.md and bench/results.svg.
# Debian bookworm, as root: needs what `make deps` installs (Prosody's libraries are taken from
# PROSODY_SRC, by default the Prosody 0.12 tree unpacked into $DEPS/prosody012) and cargo;
# installs gnuplot-nox and valgrind (for instruction counts) if missing.
set -eu
cd "$(dirname "$0")/.."
DEPS=${DEPS:-$PWD/.deps}
PROSODY_SRC=${PROSODY_SRC:-$DEPS/prosody012/usr/lib/prosody}
export DEPS PROSODY_SRC
[ -f "$PROSODY_SRC/util/format.lua" ] || { echo "bench: no Prosody libraries in $PROSODY_SRC (make deps)" >&2; exit 1; }
start=$(date +%s%N)

if ! command -v gnuplot >/dev/null || ! command -v valgrind >/dev/null; then
	apt-get install -y gnuplot-nox valgrind >/dev/null \
		|| { apt-get update >/dev/null && apt-get install -y gnuplot-nox valgrind >/dev/null; }
fi
"${CARGO:-cargo}" build --release --quiet

"${LUA:-lua5.4}" bench/bench.lua
"${LUA:-lua5.4}" bench/forward.lua # forwarding to a throwaway rsyslogd against a file dump (prints only)

end=$(date +%s%N)
echo
echo "Whole run: $(( (end - start) / 1000000 )) ms wall; wrote bench/results.md and bench/results.svg"
