#!/usr/bin/env bash
# Checks the Debian package end to end: a real `dpkg -i` of `make deb`'s package into a throwaway
# root with its own dpkg database (the machine's own dpkg database and files are not touched, and
# several checks can run at once), its files, modes and metadata, a real Prosody loading the
# module from the installed files and dumping the ring buffer on SIGUSR2, then `dpkg -r` and
# `dpkg -P` leaving none of the package's files behind.
#
# Usage: scripts/check-deb.sh [PROSODY_LAUNCHER]
#   scripts/check-deb.sh                                             # Prosody 0.12 from .deps
#   scripts/check-deb.sh "lua5.4 .deps/prosody13/usr/bin/prosody"   # Prosody 13
# The package must have been built (`make deb`; `make test-deb` does both). DEB=<file> checks
# another file. Prosody listens on free 127.0.0.1 ports the kernel picks.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."
PACKAGE=prosody-mod-log-ringbuffer
DEPS=${DEPS:-$PWD/.deps}
DEB=${DEB:-$(scripts/make-deb.sh --path)}
PLUGIN_DIR=usr/lib/prosody/modules/mod_log_ringbuffer
DOC_DIR=usr/share/doc/$PACKAGE

read -r -a launcher <<<"${1:-lua5.4 $DEPS/prosody012/usr/bin/prosody}"
[ ${#launcher[@]} -gt 0 ] || { echo "check-deb: empty Prosody launcher" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-deb.XXXXXX")
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
	echo "check-deb: FAIL: $*" >&2
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

[ -f "$DEB" ] || fail "$DEB not found: run 'make deb' first"

# Which Prosody is this? 0.12 needs mod_posix for the pidfile and signals; 13 does both itself.
version=$(prosody_version "${launcher[@]}")
[ -n "$version" ] || fail "Prosody launcher '${launcher[*]}' not found"
case $version in
	0.*) modules='"log_ringbuffer", "posix"' ;;
	*) modules='"log_ringbuffer"' ;;
esac
# The Debian version of that Prosody package (its changelog, beside the unpacked tree), for the
# stand-in entry in the throwaway dpkg database below.
script=${launcher[-1]}
[ -f "$script" ] || script=$(command -v "$script")
srcdir=$(sed -n "s/^CFG_SOURCEDIR='\(.*\)';\$/\1/p" "$script" | head -n 1)
prosody_deb_version=$(zcat "$srcdir/../../share/doc/prosody/changelog.Debian.gz" 2>/dev/null \
	| sed -n '1s/^prosody (\([^)]*\)).*/\1/p')
prosody_deb_version=${prosody_deb_version:-$version}
echo "check-deb: $(basename "$DEB") on Prosody $version (package $prosody_deb_version) via '${launcher[*]}'"

# 1. The package's metadata.
dpkg-deb --info "$DEB" >"$tmp/info" || fail "dpkg-deb --info $DEB"
field() { sed -n "s/^ *$1: //p" "$2" | head -n 1; }
[ "$(field Package "$tmp/info")" = "$PACKAGE" ] || fail "Package is not $PACKAGE"
[ "$(field Architecture "$tmp/info")" = "$(dpkg --print-architecture)" ] || fail "wrong Architecture"
[ "$(field Section "$tmp/info")" = net ] || fail "Section is not net"
[ "$(field Priority "$tmp/info")" = optional ] || fail "Priority is not optional"
[ -n "$(field Maintainer "$tmp/info")" ] || fail "no Maintainer"
depends=$(field Depends "$tmp/info")
for dep in 'libc6 (>= ' 'libgcc-s1' 'lua5.4' 'prosody (>= 0.12)'; do
	case ", $depends," in *", $dep"*) ;; *) fail "Depends lacks '$dep': $depends" ;; esac
done
echo "check-deb: Depends: $depends"
# Every file root-owned; 0644 files, 0755 directories.
dpkg-deb --contents "$DEB" >"$tmp/contents"
awk '$2 != "root/root" { bad = 1 } END { exit bad }' "$tmp/contents" || fail "files not owned by root/root"
awk '($1 ~ /^-/ && $1 != "-rw-r--r--") || ($1 ~ /^d/ && $1 != "drwxr-xr-x") { bad = 1 } END { exit bad }' \
	"$tmp/contents" || { cat "$tmp/contents" >&2; fail "a file is not 0644 or a directory not 0755"; }

# 2. dpkg -i into a throwaway root with its own database. The dependencies are stand-in entries
# in that database with the versions really present here (the Prosody under test, this machine's
# libc6, libgcc-s1, lua5.4), so dpkg itself checks the Depends against them: no --force-depends.
# Prosody's plugin directory belongs to the stand-in prosody entry, as on a real system.
root=$tmp/root
admin=$root/var/lib/dpkg
mkdir -p "$admin/info" "$admin/updates" "$admin/triggers" "$root/usr/lib/prosody/modules"
: >"$admin/available"
stub() {
	printf 'Package: %s\nStatus: install ok installed\nPriority: optional\nSection: misc\n' "$1"
	printf 'Maintainer: stand-in <noreply@invalid>\nArchitecture: %s\nVersion: %s\n' "$2" "$3"
	printf 'Description: stand-in for the real package (check-deb.sh)\n\n'
}
host_version() {
	dpkg-query -W -f '${Version}' "$1" 2>/dev/null || fail "$1 is not installed on this machine (make deps)"
}
arch=$(dpkg --print-architecture)
{
	stub libc6 "$arch" "$(host_version libc6)"
	stub libgcc-s1 "$arch" "$(host_version libgcc-s1)"
	stub lua5.4 "$arch" "$(host_version lua5.4)"
	stub prosody "$arch" "$prosody_deb_version"
} >"$admin/status"
for p in libc6 libgcc-s1 lua5.4; do : >"$admin/info/$p.list"; done
printf '/.\n/usr\n/usr/lib\n/usr/lib/prosody\n/usr/lib/prosody/modules\n' >"$admin/info/prosody.list"

run_dpkg() {
	dpkg --root="$root" --admindir="$admin" --log="$tmp/dpkg.log" \
		--force-script-chrootless --force-not-root "$@"
}
run_dpkg -i "$DEB" >"$tmp/dpkg.out" 2>&1 || { cat "$tmp/dpkg.out" >&2; fail "dpkg -i $DEB"; }
dpkg --root="$root" --admindir="$admin" -s "$PACKAGE" >"$tmp/status" || fail "dpkg -s after dpkg -i"
[ "$(field Status "$tmp/status")" = "install ok installed" ] || fail "not 'install ok installed' after dpkg -i"
[ "$(field Depends "$tmp/status")" = "$depends" ] || fail "dpkg -s shows other Depends than the package"
echo "check-deb: dpkg -i: $(field Status "$tmp/status"), version $(field Version "$tmp/status")"

# The files where Debian's Prosody looks, with their modes, as dpkg -L lists them.
dpkg --root="$root" --admindir="$admin" -L "$PACKAGE" >"$tmp/files" || fail "dpkg -L"
for f in "$PLUGIN_DIR/mod_log_ringbuffer.lua" "$PLUGIN_DIR/log_ringbuffer_native.so" \
	"$DOC_DIR/copyright" "$DOC_DIR/changelog.Debian.gz"; do
	[ -f "$root/$f" ] || fail "dpkg -i did not install /$f"
	grep -qx "/$f" "$tmp/files" || fail "dpkg -L does not list /$f"
	[ "$(stat -c %a "$root/$f")" = 644 ] || fail "/$f has mode $(stat -c %a "$root/$f"), not 644"
	if [ "$(id -u)" = 0 ]; then
		[ "$(stat -c %U:%G "$root/$f")" = root:root ] || fail "/$f is not owned by root:root"
	fi
done
cmp -s lua/mod_log_ringbuffer.lua "$root/$PLUGIN_DIR/mod_log_ringbuffer.lua" \
	|| fail "the installed mod_log_ringbuffer.lua differs from lua/mod_log_ringbuffer.lua"
grep -q '^License: MIT$' "$root/$DOC_DIR/copyright" || fail "copyright does not name the MIT licence"
zcat "$root/$DOC_DIR/changelog.Debian.gz" | head -n 1 | grep -q "^$PACKAGE (" || fail "bad changelog.Debian.gz"
echo "check-deb: installed /$PLUGIN_DIR/{mod_log_ringbuffer.lua,log_ringbuffer_native.so} (0644, root:root)"

# 3. Prosody with the module as installed. On a real system /usr/lib/prosody/modules is Prosody's
# built-in plugin directory (CFG_PLUGINDIR of Debian's /usr/bin/prosody), searched with no config
# line; here the throwaway root's copy of that directory stands in for it, named in plugin_paths.
mkdir -p "$tmp/data" "$tmp/certs"
write_config() {
	cat >"$tmp/prosody.cfg.lua" <<EOF
run_as_root = true
pidfile = "$tmp/prosody.pid"
data_path = "$tmp/data"
certificates = "$tmp/certs"
-- Stands in for /usr/lib/prosody/modules, which Debian's Prosody searches by itself.
plugin_paths = { "$root/usr/lib/prosody/modules" }
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
	# Ready once the pidfile names our process and c2s listens.
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
	echo "check-deb: port $C2S_PORT or $S2S_PORT was taken meanwhile (attempt $attempt), trying others"
	stop_prosody
done
[ -n "$ready" ] || fail "no free ports for Prosody after 3 attempts"
# The library mapped must be the one dpkg installed (Prosody 13 may load global modules after c2s).
loaded=
for _ in $(seq 100); do
	grep -qs "$root/$PLUGIN_DIR/log_ringbuffer_native.so" "/proc/$pid/maps" && { loaded=1; break; }
	sleep 0.1
done
[ -n "$loaded" ] || fail "Prosody did not load /$PLUGIN_DIR/log_ringbuffer_native.so from the installed package"
sleep 0.5

# SIGUSR2 must produce a complete dump in the data directory.
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
echo "check-deb: SIGUSR2 wrote $(basename "$dump") ($(wc -l <"$dump") lines)"

kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "Prosody still running 10 s after SIGTERM"
wait "$pid" 2>/dev/null || true
pid=
grep -q "mod_log_ringbuffer.*error\|cannot load the native library" "$tmp/prosody.log" \
	&& fail "mod_log_ringbuffer logged errors"

# 4. dpkg -r, then -P: every file of the package gone, Prosody's plugin directory left in place.
run_dpkg -r "$PACKAGE" >"$tmp/dpkg.out" 2>&1 || { cat "$tmp/dpkg.out" >&2; fail "dpkg -r $PACKAGE"; }
run_dpkg -P "$PACKAGE" >"$tmp/dpkg.out" 2>&1 || { cat "$tmp/dpkg.out" >&2; fail "dpkg -P $PACKAGE"; }
left=
while read -r f; do
	case $f in /. | /usr | /usr/lib | /usr/lib/prosody | /usr/lib/prosody/modules) continue ;; esac
	[ -e "$root$f" ] && left="$left $f"
done <"$tmp/files"
[ -z "$left" ] || fail "left behind by dpkg -r/-P:$left"
[ -d "$root/usr/lib/prosody/modules" ] || fail "dpkg -r removed Prosody's own plugin directory"
[ -z "$(find "$root/usr" -type f)" ] || fail "files left under /usr: $(find "$root/usr" -type f)"
dpkg-query --root="$root" --admindir="$admin" -W "$PACKAGE" >/dev/null 2>&1 \
	&& fail "dpkg still knows $PACKAGE after dpkg -P"
echo "check-deb: dpkg -r and -P removed all $(wc -l <"$tmp/files") paths of the package"
echo "check-deb: OK (Prosody $version)"
