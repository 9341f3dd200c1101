#!/bin/sh
# `make test-lua-versions`: builds the library for every Lua Prosody 0.12 runs on (5.1, 5.2, 5.3,
# LuaJIT, 5.4) and runs the formatter's differential test (spec/unit/format_versions.lua) under
# each one's own interpreter, against util.format's rules as that Lua runs them; under 5.4 also
# against Prosody 0.12's and 13's own util.format, on both ways of reading the arguments.
# Debug builds, all in one target dir (target/lua-versions): the dependencies that do not depend
# on the Lua (zstd's C library, regex, ...) are built once, and each Lua's build of mlua and of
# this crate stays there, so a second run builds nothing. Without debug info: that halves the
# build and link time, and nothing here needs it.
# Needs what `make deps` installs (lua5.1 ... luajit and their -dev packages).
set -eu
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
DEPS=${DEPS:-$PWD/.deps}
TARGET=target/lua-versions
export CARGO_TARGET_DIR="$PWD/$TARGET" CARGO_PROFILE_DEV_DEBUG=false CARGO_INCREMENTAL=0
start=$(date +%s)

# feature:interpreter, the Lua Debian's Prosody runs last.
for pair in lua51:lua5.1 lua52:lua5.2 lua53:lua5.3 luajit:luajit lua54:lua5.4; do
	feature=${pair%%:*}
	lua=${pair#*:}
	command -v "$lua" >/dev/null || { echo "test-lua-versions: no $lua (make deps installs it)" >&2; exit 1; }
	built=$(date +%s)
	"$CARGO" build --quiet --no-default-features --features "$feature module"
	echo "test-lua-versions: built for $feature in $(( $(date +%s) - built )) s"
	mkdir -p "$TARGET/$feature"
	cp "$TARGET/debug/liblog_ringbuffer_native.so" "$TARGET/$feature/liblog_ringbuffer_native.so"
	if [ "$feature" = lua54 ]; then
		# With 0.12's util.format on the direct stack reader, with 13's on the C API.
		PROSODY_SRC=$DEPS/prosody012/usr/lib/prosody "$lua" spec/unit/format_versions.lua \
			"$TARGET/$feature/liblog_ringbuffer_native.so"
		LOG_RINGBUFFER_STACK=api PROSODY_SRC=$DEPS/prosody13/usr/lib/prosody "$lua" spec/unit/format_versions.lua \
			"$TARGET/$feature/liblog_ringbuffer_native.so"
	else
		"$lua" spec/unit/format_versions.lua "$TARGET/$feature/liblog_ringbuffer_native.so"
	fi
done
echo "test-lua-versions: every Lua passed, in $(( $(date +%s) - start )) s"
