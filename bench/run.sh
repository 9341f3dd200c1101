#!/bin/sh
# `make bench`: times log calls through Prosody's util.logger into the native sink, upstream's
# algorithm (bench/upstream_sink.lua), Prosody's file sink and an empty sink; measures memory
# and dumps. Prints the results; writes bench/results.md and bench/results.svg.
# Debian bookworm, as root: needs prosody, lua5.4, cargo; installs gnuplot-nox and valgrind
# (for instruction counts) if missing.
set -eu
cd "$(dirname "$0")/.."
start=$(date +%s%N)

if ! command -v gnuplot >/dev/null || ! command -v valgrind >/dev/null; then
	apt-get install -y gnuplot-nox valgrind >/dev/null \
		|| { apt-get update >/dev/null && apt-get install -y gnuplot-nox valgrind >/dev/null; }
fi
"${CARGO:-cargo}" build --release --quiet

"${LUA:-lua5.4}" bench/bench.lua

end=$(date +%s%N)
echo
echo "Whole run: $(( (end - start) / 1000000 )) ms wall; wrote bench/results.md and bench/results.svg"
