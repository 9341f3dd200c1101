#!/usr/bin/env bash
# Builds the Debian package target/debian/prosody-mod-log-ringbuffer_<version>-1_<arch>.deb from
# the release library (`make build`, which `make deb` runs first), lua/mod_log_ringbuffer.lua and the admin
# shell's lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua.
#
# Usage: scripts/make-deb.sh          # build the package, print its path
#        scripts/make-deb.sh --path   # only print the path it builds (for scripts/check-deb.sh)
#
# It installs the module where Debian's Prosody (0.12 in bookworm, 13 in bookworm-backports)
# already looks: its built-in plugin directory /usr/lib/prosody/modules (CFG_PLUGINDIR in
# /usr/bin/prosody, always searched after any plugin_paths), as
#   /usr/lib/prosody/modules/mod_log_ringbuffer/mod_log_ringbuffer.lua
#   /usr/lib/prosody/modules/mod_log_ringbuffer/ringbuffer_shell.lib.lua
#   /usr/lib/prosody/modules/mod_log_ringbuffer/log_ringbuffer_native.so
# so no config line is needed to find it. (/usr/local/lib/prosody/modules, which Debian's
# default config lists in plugin_paths, is the admin's, not a package's.) Files are root-owned
# (dpkg-deb --root-owner-group) and 0644, the library too: Debian policy 8.1, dlopen needs no x bit.
# Depends: what dpkg-shlibdeps finds the library needs (libc6, libgcc-s1), plus the Prosody and the
# Lua (5.4: the library uses its C API, resolved in the interpreter) it runs in.
set -euo pipefail

cd "$(dirname "$0")/.."
PACKAGE=prosody-mod-log-ringbuffer
LIB=target/release/liblog_ringbuffer_native.so
OUT_DIR=target/debian
PLUGIN_DIR=usr/lib/prosody/modules/mod_log_ringbuffer
DOC_DIR=usr/share/doc/$PACKAGE
MAINTAINER="mod_log_ringbuffer authors <noreply@invalid>"

fail() { echo "make-deb: $*" >&2; exit 1; }

for tool in dpkg dpkg-deb dpkg-shlibdeps strip gzip; do
	command -v "$tool" >/dev/null || fail "$tool not found (apt-get install dpkg-dev binutils gzip)"
done

# The version of the [package] section of Cargo.toml, plus Debian revision 1.
upstream_version=$(awk '
	/^\[/ { in_package = ($0 == "[package]") }
	in_package && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }' Cargo.toml)
[ -n "$upstream_version" ] || fail "no version in Cargo.toml's [package]"
version=$upstream_version-1
arch=$(dpkg --print-architecture)
deb=$OUT_DIR/${PACKAGE}_${version}_${arch}.deb

if [ "${1:-}" = "--path" ]; then
	echo "$deb"
	exit 0
fi
[ $# -eq 0 ] || fail "unknown argument '$1' (usage: $0 [--path])"
[ -f "$LIB" ] || fail "$LIB is missing: run 'make build' (or 'make deb')"

# Dates in the package come from the last commit (reproducible), or now outside git.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/make-deb.XXXXXX")
cleanup() {
	local status=$?
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

umask 022
# dpkg-shlibdeps wants the binaries under debian/<package>/ and a debian/control beside it.
stage=$tmp/debian/$PACKAGE
mkdir -p "$stage/DEBIAN" "$stage/$PLUGIN_DIR" "$stage/$DOC_DIR"

install -m 0644 lua/mod_log_ringbuffer.lua "$stage/$PLUGIN_DIR/mod_log_ringbuffer.lua"
install -m 0644 lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua "$stage/$PLUGIN_DIR/ringbuffer_shell.lib.lua"
install -m 0644 "$LIB" "$stage/$PLUGIN_DIR/log_ringbuffer_native.so"
# As dh_strip does for shared libraries: the dynamic symbols (luaopen_*) stay.
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
	"$stage/$PLUGIN_DIR/log_ringbuffer_native.so"

# copyright in Debian's machine-readable format, the licence text from LICENSE.
[ -f LICENSE ] || fail "LICENSE is missing"
{
	cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mod_log_ringbuffer
Comment: A native (Rust) drop-in replacement for the Prosody module mod_log_ringbuffer.

Files: *
Copyright: $(sed -n 's/^Copyright (c) //p' LICENSE | head -n 1)
License: MIT

License: MIT
EOF
	# The text after the copyright line, each line indented, blank lines as " ."
	awk 'f { if ($0 == "") print " ."; else print " " $0 } /^Copyright/ { f = 1 }' LICENSE \
		| sed '1{/^ \.$/d}'
} >"$stage/$DOC_DIR/copyright"

cat >"$stage/$DOC_DIR/README.Debian" <<'EOF'
prosody-mod-log-ringbuffer for Debian
-------------------------------------

The module is installed in Prosody's own plugin directory, /usr/lib/prosody/modules, where
Prosody finds it without a plugin_paths entry. To use it, add "log_ringbuffer" to
modules_enabled in /etc/prosody/prosody.cfg.lua, add a { to = "ringbuffer", ... } entry to the
log table (see the project's README for the options), and restart Prosody.

After an upgrade of this package, restart Prosody (systemctl restart prosody): a running
Prosody keeps the old native library loaded until it exits, and a module or config reload does
not replace it.
EOF

changelog_date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
cat >"$tmp/changelog.Debian" <<EOF
$PACKAGE ($version) unstable; urgency=medium

  * Built from the mod_log_ringbuffer source tree by scripts/make-deb.sh.

 -- $MAINTAINER  $changelog_date
EOF
gzip -9n <"$tmp/changelog.Debian" >"$stage/$DOC_DIR/changelog.Debian.gz"
chmod 0644 "$stage/$DOC_DIR"/*

# Depends: the library's shared-library needs, computed like a Debian build does.
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PACKAGE" "$PACKAGE" >"$tmp/debian/control"
shlibs=$(cd "$tmp" && dpkg-shlibdeps -O -e"debian/$PACKAGE/$PLUGIN_DIR/log_ringbuffer_native.so" 2>"$tmp/shlibdeps.err") \
	|| { cat "$tmp/shlibdeps.err" >&2; fail "dpkg-shlibdeps failed"; }
shlibs=${shlibs#shlibs:Depends=}
[ -n "$shlibs" ] || fail "dpkg-shlibdeps found no dependencies"
depends="$shlibs, lua5.4, prosody (>= 0.12)"

installed_size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f 1)
cat >"$stage/DEBIAN/control" <<EOF
Package: $PACKAGE
Version: $version
Architecture: $arch
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: $depends
Section: net
Priority: optional
Description: in-memory ring buffer log sink for Prosody, dumped on demand
 A native (Rust) drop-in replacement for the Prosody module mod_log_ringbuffer:
 it keeps the newest log lines (debug included) in a fixed-size buffer in
 Prosody's memory and writes them to a file only when asked: on a signal, on a
 Prosody event, when an error is logged, on a crash, or from the admin shell.
 .
 Installed in Prosody's own plugin directory: enable it by adding
 "log_ringbuffer" to modules_enabled and a { to = "ringbuffer" } log entry.
EOF
(cd "$stage" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

mkdir -p "$OUT_DIR"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$tmp/package.deb" >/dev/null
mv "$tmp/package.deb" "$deb"
echo "make-deb: wrote $deb"
echo "make-deb: Depends: $depends"
