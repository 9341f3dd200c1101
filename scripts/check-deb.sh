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

init_check check-deb
[ -f "$DEB" ] || fail "$DEB not found: run 'make deb' first"
find_prosody "${launcher[@]}"
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
for f in "$PLUGIN_DIR/mod_log_ringbuffer.lua" "$PLUGIN_DIR/ringbuffer_shell.lib.lua" "$PLUGIN_DIR/log_ringbuffer_native.so" \
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
cmp -s lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua "$root/$PLUGIN_DIR/ringbuffer_shell.lib.lua" \
	|| fail "the installed ringbuffer_shell.lib.lua differs from lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua"
grep -q '^License: MIT$' "$root/$DOC_DIR/copyright" || fail "copyright does not name the MIT licence"
zcat "$root/$DOC_DIR/changelog.Debian.gz" | head -n 1 | grep -q "^$PACKAGE (" || fail "bad changelog.Debian.gz"
echo "check-deb: installed /$PLUGIN_DIR/{mod_log_ringbuffer.lua,ringbuffer_shell.lib.lua,log_ringbuffer_native.so} (0644, root:root)"

# 3. Prosody with the module as installed. On a real system /usr/lib/prosody/modules is Prosody's
# built-in plugin directory (CFG_PLUGINDIR of Debian's /usr/bin/prosody), searched with no config
# line; here the throwaway root's copy of that directory stands in for it, named in plugin_paths.
plugin_config="-- Stands in for /usr/lib/prosody/modules, which Debian's Prosody searches by itself.
plugin_paths = { \"$root/usr/lib/prosody/modules\" }"
start_prosody "$plugin_config" "${launcher[@]}"
# The library mapped must be the one dpkg installed.
wait_for_library "$root/$PLUGIN_DIR/log_ringbuffer_native.so" \
	"/$PLUGIN_DIR/log_ringbuffer_native.so from the installed package"

# SIGUSR2 must produce a complete dump in the data directory.
dump_on_sigusr2
[ "$(wc -l <"$dump")" -gt 2 ] || fail "dump $dump holds no log lines"
echo "check-deb: SIGUSR2 wrote $(basename "$dump") ($(wc -l <"$dump") lines)"

stop_prosody
check_prosody_log

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
