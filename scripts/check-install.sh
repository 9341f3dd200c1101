#!/usr/bin/env bash
# Checks `prosodyctl install` end to end with the rock repository `make rock` writes
# (target/rocks: a source rock, a binary rock for this platform, their manifest): a real
# prosodyctl installs the module into a throwaway installer tree, a real Prosody then loads it
# from that tree and dumps the ring buffer on SIGUSR2, and `prosodyctl remove` takes it out again.
# Each way to install in INSTALL_SOURCES is checked in turn:
#   server    --server=file://<the folder> mod_log_ringbuffer: luarocks must pick the binary rock
#   file      the binary rock file, <name>-<version>.<platform>.rock
#   src-file  the .src.rock file: the install builds it (a release build, minutes), offline: cargo
#             may not use the network and has an empty CARGO_HOME, so only the crates vendored
#             into the rock can be used
# A binary install runs no build at all: the installed library is the binary rock's, byte for
# byte. (`make rock` built the .src.rock the same offline way to pack the binary rock.)
#
# Usage: scripts/check-install.sh [PROSODY_LAUNCHER]
#   scripts/check-install.sh                                             # Prosody 0.12 from .deps
#   scripts/check-install.sh "lua5.4 .deps/prosody13/usr/bin/prosody"   # Prosody 13
# prosodyctl is the one beside the launcher's prosody script. Environment: ROCKS (default
# target/rocks), INSTALL_SOURCES ("server file src-file", the default, or some of them).
# Prosody listens on free 127.0.0.1 ports the kernel picks, so several checks can run at once.
# Everything lives in one temp dir, removed at the end; only the Prosody started here is stopped.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."
NAME=mod_log_ringbuffer
DEPS=${DEPS:-$PWD/.deps}
ROCKS=$(realpath -m "${ROCKS:-target/rocks}")
read -r -a sources <<<"${INSTALL_SOURCES:-server file src-file}"

read -r -a launcher <<<"${1:-lua5.4 $DEPS/prosody012/usr/bin/prosody}"
[ ${#launcher[@]} -gt 0 ] || { echo "check-install: empty Prosody launcher" >&2; exit 2; }
# prosodyctl: the launcher with its last word, the prosody script, swapped for the one beside it.
ctl=("${launcher[@]}")
last=${ctl[${#ctl[@]}-1]}
[[ $last == *prosody ]] || { echo "check-install: launcher '${launcher[*]}' does not end in prosody" >&2; exit 2; }
ctl[${#ctl[@]}-1]=${last}ctl

init_check check-install
fail_show=("$tmp/prosodyctl.out" "last prosodyctl output")

# The repository: a manifest, one source rock and one binary rock for luarocks' platform
# (scripts/make-rock.sh writes them).
[ -f "$ROCKS/manifest" ] || fail "no luarocks manifest in $ROCKS: run 'make rock' first"
mapfile -t rocks < <(find "$ROCKS" -maxdepth 1 -name "$NAME-*.src.rock")
[ ${#rocks[@]} -eq 1 ] || fail "expected one $NAME-*.src.rock in $ROCKS, found ${#rocks[@]}"
rock=${rocks[0]}
rock_version=$(basename "$rock" .src.rock)
rock_version=${rock_version#"$NAME"-}
arch=$(luarocks --lua-version 5.4 config arch)
binary=$ROCKS/$NAME-$rock_version.$arch.rock
for source in "${sources[@]}"; do
	case $source in
		server | file) [ -f "$binary" ] || fail "no binary rock $(basename "$binary") in $ROCKS: run 'make rock' first" ;;
	esac
done

find_prosody "${launcher[@]}"
echo "check-install: Prosody $version via '${launcher[*]}', prosodyctl '${ctl[*]}', rocks in $ROCKS"

# The installer tree is `installer_plugin_path` (default: custom_plugins in the launcher's own
# data dir, not data_path), so the config names one in the temp dir.
tree=$tmp/data/custom_plugins
plugin_config="installer_plugin_path = \"$tree\""
mkdir -p "$tmp/cargo-home" "$tmp/luarocks-tmp"
write_prosody_config "$plugin_config"

# luarocks (run by prosodyctl) sees this repository only, never a remote one; cargo (run by the
# rock's build) may not use the network and has no crates of its own.
cat >"$tmp/luarocks-config.lua" <<EOF
rocks_servers = { "file://$ROCKS" }
local_cache = "$tmp/luarocks-cache"
EOF
# prosodyctl sets HOME to the data dir before it runs luarocks: a rustup-managed cargo must be told
# where rustup keeps its toolchains (README says so too).
rustup_env=()
if [ -z "${RUSTUP_HOME:-}" ] && [ -d "${HOME:-/nonexistent}/.rustup" ]; then
	rustup_env=(RUSTUP_HOME="$HOME/.rustup")
fi
# prosodyctl runs luarocks, which runs cargo and its compilers: all of them in a process group of
# their own (setsid), waited for with `wait` so that a signal to this script is handled at once,
# and the whole group, recorded in $group, is stopped by the cleanup (scripts/lib.sh).
run_ctl() {
	local status=0
	setsid env LUAROCKS_CONFIG="$tmp/luarocks-config.lua" CARGO_NET_OFFLINE=true CARGO_HOME="$tmp/cargo-home" \
		"${rustup_env[@]}" TMPDIR="$tmp/luarocks-tmp" "${ctl[@]}" --config "$tmp/prosody.cfg.lua" "$@" </dev/null &
	group=$!
	wait "$group" || status=$?
	group=
	return "$status"
}

installed_files=(
	"share/lua/5.4/$NAME.lua"
	"share/lua/5.4/$NAME/ringbuffer_shell.lua"
	"lib/lua/5.4/log_ringbuffer_native.so"
	"lib/luarocks/rocks-5.4/$NAME/$rock_version"
)

# Starts Prosody on free ports, waits until it has mapped the library from the installer tree,
# dumps with SIGUSR2, checks the dump and stops it.
run_prosody() {
	start_prosody "$plugin_config" "${launcher[@]}"
	wait_for_library "$tree/lib/lua/5.4/log_ringbuffer_native.so" \
		"log_ringbuffer_native.so from the installer tree $tree"
	echo "check-install: Prosody (PID $pid) mapped $tree/lib/lua/5.4/log_ringbuffer_native.so"

	dump_on_sigusr2
	[ "$(tail -n 2 "$dump" | head -n 1)" = "-- End of dump --" ] || fail "dump $dump does not end with '-- End of dump --'"
	[ "$(grep -c -- "^-- Dumping log buffer at " "$dump")" -eq 1 ] || fail "dump $dump holds more than one dump"
	[ "$(wc -l <"$dump")" -gt 3 ] || fail "dump $dump holds no log lines"
	grep -q $'\tinfo\t' "$dump" || fail "dump $dump holds no info lines"
	echo "check-install: SIGUSR2 wrote $(basename "$dump") ($(wc -l <"$dump") lines, header and end marker in place)"
	rm -f "$dump"

	stop_prosody
	check_prosody_log
	if grep -q "Error initializing module 'log_ringbuffer'" "$tmp/prosody.log"; then
		fail "mod_log_ringbuffer logged errors"
	fi
}

# check_install <what to install> <how messages name it> <src|binary: the rock it must install>
#   [more prosodyctl install arguments]
check_install() {
	local what=$1 how=$2 kind=$3 f left
	shift 3
	rm -rf "$tree"
	run_ctl install "$@" "$what" >"$tmp/prosodyctl.out" 2>&1 || fail "prosodyctl install $how exited $?"
	for f in "${installed_files[@]}"; do
		[ -e "$tree/$f" ] || fail "prosodyctl install $how did not create $tree/$f"
	done
	if grep -q "Downloading\|Downloaded \|Updating .*index" "$tmp/prosodyctl.out"; then
		fail "cargo reached for the network during prosodyctl install $how"
	fi
	[ -z "$(find "$tmp/cargo-home" -mindepth 1 -path "*/registry/*" -print -quit)" ] \
		|| fail "cargo put crates into its (empty) CARGO_HOME: the vendored ones were not used"
	grep -q "^$NAME $rock_version is now installed in $tree" "$tmp/prosodyctl.out" \
		|| fail "luarocks did not report $NAME $rock_version installed in $tree"
	grep -E "^(Installing|$NAME $rock_version is now installed)" "$tmp/prosodyctl.out" | sed 's/^/  prosodyctl: /'
	case $kind in
		src)
			# The library was built here from the rock, not copied from anywhere.
			grep -q "Compiling mlua" "$tmp/prosodyctl.out" || fail "prosodyctl install $how did not compile the crates"
			echo "check-install: prosodyctl install $how built and installed $NAME $rock_version into $tree, offline"
			;;
		binary)
			# The binary rock's library, installed as it is: nothing was built.
			if grep -q "Compiling \|cargo build" "$tmp/prosodyctl.out"; then
				fail "prosodyctl install $how built the crates instead of installing the binary rock"
			fi
			[ "$what" = "$binary" ] || grep -q "^Installing .*/$(basename "$binary")\$" "$tmp/prosodyctl.out" \
				|| fail "prosodyctl install $how did not install the binary rock $(basename "$binary")"
			unzip -p "$binary" lib/log_ringbuffer_native.so >"$tmp/binary-rock.so" \
				|| fail "cannot read lib/log_ringbuffer_native.so from $binary"
			cmp -s "$tmp/binary-rock.so" "$tree/lib/lua/5.4/log_ringbuffer_native.so" \
				|| fail "the installed library is not the one in $(basename "$binary")"
			echo "check-install: prosodyctl install $how installed the binary rock's $NAME $rock_version into $tree, no build"
			;;
	esac

	run_prosody

	run_ctl remove "$NAME" >"$tmp/prosodyctl.out" 2>&1 || fail "prosodyctl remove $NAME exited $?"
	grep -E "^(Removing|Removal successful)" "$tmp/prosodyctl.out" | sed 's/^/  prosodyctl: /'
	for f in "${installed_files[@]}"; do
		[ ! -e "$tree/$f" ] || fail "prosodyctl remove $NAME left $tree/$f"
	done
	left=$(find "$tree" -name "*ringbuffer*" | head -n 5)
	[ -z "$left" ] || fail "prosodyctl remove $NAME left: $left"
	echo "check-install: prosodyctl remove $NAME removed every file it installed"
}

for source in "${sources[@]}"; do
	case $source in
		server) check_install "$NAME" "--server=file://$ROCKS $NAME" binary "--server=file://$ROCKS" ;;
		file) check_install "$binary" "$(basename "$binary")" binary ;;
		src-file) check_install "$rock" "$(basename "$rock")" src ;;
		*) fail "unknown INSTALL_SOURCES entry '$source' (server, file or src-file)" ;;
	esac
done
echo "check-install: OK (Prosody $version)"
