#!/usr/bin/env bash
# Installs what the build and the tests need (Debian bookworm, as root), skipping what is there.
# It never installs the `prosody` package, never starts, stops or kills anything, and leaves a
# system Prosody (if any) alone:
# - apt-get installs the Lua 5.4 tools and the Lua/C libraries Prosody runs on ($packages below);
# - Prosody 0.12 (the machine's default suite) and 13 (<codename>-backports) are downloaded with
#   `apt-get download` and unpacked with `dpkg -x` into $DEPS/prosody012 and $DEPS/prosody13,
#   their launchers pointed at the unpacked trees; run them as `lua5.4 $DEPS/prosody012/usr/bin/prosody`;
# - Prosody 0.11 (Debian bullseye's, for Lua 5.2, with bullseye's libssl1.1, libidn11 and
#   lua-bitop beside it) is unpacked the same way into $DEPS/prosody011, run as
#   `LD_LIBRARY_PATH=$DEPS/prosody011/usr/lib/x86_64-linux-gnu:$DEPS/prosody011/lib/x86_64-linux-gnu
#   lua5.2 $DEPS/prosody011/usr/bin/prosody`;
# - the newest Prosody 13.0.x (Debian sid's) is unpacked into $DEPS/prosody13-newest with the C
#   modules of 13.0.1 ($DEPS/prosody13) in place of its own, which need a newer glibc than
#   bookworm's; its Lua code runs over them with lua5.4;
# - bullseye and sid are never added to the machine's apt sources: their indexes are fetched into
#   $DEPS/apt (a sources list, index and cache of its own, on the same mirror as the machine's
#   <codename> suite) and used only to download those packages;
# - rsyslog and rsyslog-gnutls (the forwarding specs' collector) are unpacked the same way into
#   $DEPS/rsyslog: installing them would start a system rsyslog;
# - if no <codename>-backports suite is configured, it is added, on the Debian mirror the machine's
#   apt sources already use, in /etc/apt/sources.list.d/mod_log_ringbuffer-<codename>-backports.list
#   (a backports suite is never preferred by apt over the default one: nothing else changes).
set -euo pipefail

DEPS=${DEPS:-$(cd "$(dirname "$0")/.." && pwd)/.deps}
case $DEPS in
	/*) ;;
	*) DEPS=$PWD/$DEPS ;;
esac
case $DEPS in
	*[\'\|\\\&]*) echo "setup: DEPS=$DEPS must not contain ' | \\ or &" >&2; exit 2 ;;
esac

# Build and test tools, then what Prosody 0.12 and 13 need to run (their Depends without
# adduser/ssl-cert, which only the packaged service uses, plus the recommended lua-unbound; the
# lua5.4-* names in them are provided by these packages), then the libraries of the forwarding
# specs' syslog collector (rsyslog itself is unpacked, not installed: see unpack_rsyslog), their
# JSON reader and certificate maker, and the Python the specs' peers are written in (a collector
# that misbehaves, a remote s2s server).
packages=(lua5.4 liblua5.4-dev lua-busted lua-check luarocks pkg-config
	lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev luajit libluajit-5.1-dev
	lua-expat lua-filesystem lua-sec lua-socket lua-bitop lua-unbound libicu72 libssl3
	libestr0 libfastjson4 libgnutls30 lua-cjson openssl python3)

# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || { echo "setup: cannot tell the Debian release from /etc/os-release" >&2; exit 1; }
backports_suite=$codename-backports
backports_list=/etc/apt/sources.list.d/mod_log_ringbuffer-$backports_suite.list

updated=
apt_update() {
	[ -z "$updated" ] || return 0
	updated=1
	echo "setup: apt-get update"
	# Third-party sources on the machine may be unreachable; Debian's own are what we need.
	apt-get update -qq || true
}

# Every enabled `deb` entry of the apt sources, one line each: suite, URI, signed-by (may be empty).
# Reads both one-line .list files and deb822 .sources files.
apt_entries() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '
			{ sub(/#.*/, "") }
			$1 == "deb" {
				signed = ""
				if (match($0, /\[[^]]*\]/)) {
					opts = substr($0, RSTART + 1, RLENGTH - 2)
					$0 = substr($0, 1, RSTART - 1) substr($0, RSTART + RLENGTH)
					n = split(opts, o, /[ \t]+/)
					for (i = 1; i <= n; i++) if (o[i] ~ /^signed-by=/) signed = substr(o[i], 11)
				}
				print $3 "\t" $2 "\t" signed
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
			function flush(   n, m, i, j, s, u) {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
					n = split(suites, s, /[ \t]+/)
					m = split(uris, u, /[ \t]+/)
					for (i = 1; i <= n; i++)
						for (j = 1; j <= m; j++)
							if (s[i] != "" && u[j] != "") print s[i] "\t" u[j] "\t" signed
				}
				types = suites = uris = signed = enabled = ""
			}
			/^#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]/ { next }
			{
				colon = index($0, ":")
				key = tolower(substr($0, 1, colon - 1))
				value = substr($0, colon + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", value)
				if (key == "types") types = value
				else if (key == "suites") suites = value
				else if (key == "uris") uris = value
				else if (key == "signed-by") signed = value
				else if (key == "enabled") enabled = tolower(value)
			}
			END { flush() }' "$f"
	done
}

# Adds the backports suite on the mirror that serves the default suite, unless one is configured;
# succeeds only if it added it.
add_backports_source() {
	local entries mirror signed
	entries=$(apt_entries)
	if awk -F'\t' -v s="$backports_suite" '$1 == s { found = 1 } END { exit !found }' <<<"$entries"; then
		return 1
	fi
	mirror=$(awk -F'\t' -v s="$codename" '$1 == s && $2 !~ /^cdrom:/ { print $2; exit }' <<<"$entries")
	[ -n "$mirror" ] || { echo "setup: no apt source for the suite '$codename' to take the mirror from" >&2; exit 1; }
	signed=$(awk -F'\t' -v s="$codename" -v m="$mirror" '$1 == s && $2 == m { print $3; exit }' <<<"$entries")
	echo "setup: adding $backports_suite on $mirror in $backports_list"
	{
		echo "# Added by mod_log_ringbuffer's scripts/setup-deps.sh to download Prosody 13 for its tests."
		echo "# Nothing is installed from it; delete this file to remove it."
		if [ -n "$signed" ] && [ -f "$signed" ]; then
			echo "deb [signed-by=$signed] $mirror $backports_suite main"
		else
			echo "deb $mirror $backports_suite main"
		fi
	} >"$backports_list"
}

# The newest version of the `prosody` package apt knows that starts with $1 ("0.12.", "13.").
prosody_version() {
	apt-cache madison prosody 2>/dev/null | awk -F'|' -v p="$1" '{ gsub(/ /, "", $2) } index($2, p) == 1 { print $2; exit }'
}

# apt on a sources list, index and cache of its own under $DEPS/apt: other Debian suites
# (bullseye, sid) to download from, which the machine's apt never sees.
private_apt_dir=$DEPS/apt
private_apt_options=(-o "Dir::Etc::SourceList=$private_apt_dir/sources.list" -o "Dir::Etc::SourceParts=$private_apt_dir/none"
	-o "Dir::State::Lists=$private_apt_dir/lists" -o "Dir::Cache=$private_apt_dir/cache" -o Acquire::Languages=none
	-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
	-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
	-o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
	-o Acquire::IndexTargets::deb::CNF::DefaultEnabled=false -o APT::Sandbox::User=root)
private_apt_ready=

# Writes the private sources list (suites $@ on the machine's mirror of the default suite) and
# fetches its indexes (about 20 MB for bullseye and sid), once per run.
private_apt_update() {
	local entries mirror signed suite options=""
	[ -z "$private_apt_ready" ] || return 0
	entries=$(apt_entries)
	mirror=$(awk -F'\t' -v s="$codename" '$1 == s && $2 !~ /^cdrom:/ { print $2; exit }' <<<"$entries")
	[ -n "$mirror" ] || { echo "setup: no apt source for the suite '$codename' to take the mirror from" >&2; exit 1; }
	signed=$(awk -F'\t' -v s="$codename" -v m="$mirror" '$1 == s && $2 == m { print $3; exit }' <<<"$entries")
	[ -z "$signed" ] || [ ! -f "$signed" ] || options=" signed-by=$signed"
	mkdir -p "$private_apt_dir/lists/partial" "$private_apt_dir/cache/archives/partial" "$private_apt_dir/none"
	for suite in "$@"; do
		echo "deb [arch=$(dpkg --print-architecture)$options] $mirror $suite main"
	done >"$private_apt_dir/sources.list"
	echo "setup: apt-get update of $* (on $mirror) into $private_apt_dir"
	apt-get "${private_apt_options[@]}" update -qq
	private_apt_ready=1
}

# Downloads the packages $2... (`name/suite`) from the private apt and unpacks them into $1,
# replacing it.
private_download_and_unpack() {
	local apt_download_options=("${private_apt_options[@]}")
	download_and_unpack "$@" \
		|| { echo "setup: could not download ${*:2} from $private_apt_dir/sources.list" >&2; exit 1; }
}

# Prosody 0.11 with the libraries bookworm lacks (OpenSSL 1.1 and libidn 11 for its C modules,
# lua-bitop for Lua 5.2), into $1.
unpack_prosody011() {
	private_apt_update bullseye sid
	private_download_and_unpack "$1" prosody/bullseye libssl1.1/bullseye libidn11/bullseye lua-bitop/bullseye
}

# The newest Prosody 13.0.x's Lua code over 13.0.1's C modules ($2), into $1.
unpack_prosody13_newest() {
	local dest=$1 c_modules=$2 so version
	private_apt_update bullseye sid
	version=$(apt-cache "${private_apt_options[@]}" madison prosody 2>/dev/null \
		| awk -F'|' '{ gsub(/ /, "", $2) } index($2, "13.0.") == 1 { print $2; exit }')
	[ -n "$version" ] || { echo "setup: sid has no Prosody 13.0.x (apt-cache madison prosody)" >&2; exit 1; }
	private_download_and_unpack "$dest.sid" "prosody=$version"
	for so in "$dest.sid"/usr/lib/prosody/util/*.so; do
		[ -f "$c_modules/usr/lib/prosody/util/${so##*/}" ] \
			|| { echo "setup: 13.0.1 has no C module ${so##*/} for sid's Prosody" >&2; exit 1; }
		cp "$c_modules/usr/lib/prosody/util/${so##*/}" "$so"
	done
	rm -rf "$dest"
	mv "$dest.sid" "$dest"
}

# Downloads the packages named after $1 (`name` or `name=version`) and unpacks them all into $1,
# replacing it. Fails (status 1) if apt cannot download them. apt-get takes the options in
# apt_download_options too (private_download_and_unpack's: a sources list of our own).
apt_download_options=()
download_and_unpack() {
	local dest=$1 download=$DEPS/download deb
	shift
	rm -rf "$download"
	mkdir -p "$download"
	# As root apt downloads unsandboxed anyway; say so instead of warning about it.
	(cd "$download" && apt-get download -qq -o APT::Sandbox::User=root "${apt_download_options[@]}" "$@") || return 1
	echo "setup: unpacking $* into $dest"
	rm -rf "$dest.new"
	for deb in "$download"/*.deb; do
		dpkg -x "$deb" "$dest.new"
	done
	rm -rf "$dest" "$download"
	mv "$dest.new" "$dest"
}

# Downloads the newest Prosody $1* .deb and unpacks it into $2 (replacing it).
unpack_prosody() {
	local prefix=$1 dest=$2 version attempt
	for attempt in 1 2; do
		version=$(prosody_version "$prefix")
		if [ -n "$version" ] && download_and_unpack "$dest" "prosody=$version"; then
			return 0
		fi
		[ "$attempt" = 2 ] || [ -n "$updated" ] || apt_update
	done
	echo "setup: could not download a Prosody $prefix* package (apt-cache madison prosody)" >&2
	exit 1
}

# rsyslog and rsyslog-gnutls of the default suite, unpacked into $1 for spec/helpers/rsyslog.lua's
# throwaway collector: installing the package would start (and on systemd hosts enable) a system
# rsyslog, or replace the syslog daemon the machine has.
unpack_rsyslog() {
	local attempt
	for attempt in 1 2; do
		download_and_unpack "$1" rsyslog rsyslog-gnutls && return 0
		[ "$attempt" = 2 ] || [ -n "$updated" ] || apt_update
	done
	echo "setup: could not download the rsyslog and rsyslog-gnutls packages" >&2
	exit 1
}

# syslog-ng-core and the libraries it needs that the machine may not have, unpacked into $1 for
# spec/helpers/syslog_ng.lua (installing it would replace the machine's syslog daemon).
unpack_syslog_ng() {
	download_and_unpack "$1" syslog-ng-core libivykis0 libnet1 libwrap0 libjson-c5 libpcre3 \
		|| { echo "setup: could not download the syslog-ng-core package" >&2; exit 1; }
}

# Points the launchers of an unpacked tree at that tree instead of /usr/lib/prosody, /etc/prosody
# and /var/lib/prosody (idempotent; files are only written when they change).
point_launchers() {
	local tree=$1 launcher expected
	mkdir -p "$tree/var/lib/prosody"
	for launcher in "$tree/usr/bin/prosody" "$tree/usr/bin/prosodyctl"; do
		expected="CFG_SOURCEDIR='$tree/usr/lib/prosody';"
		expected+=$'\n'"CFG_CONFIGDIR='$tree/etc/prosody';"
		expected+=$'\n'"CFG_PLUGINDIR='$tree/usr/lib/prosody/modules/';"
		expected+=$'\n'"CFG_DATADIR='$tree/var/lib/prosody';"
		[ "$(grep -E '^CFG_(SOURCE|CONFIG|PLUGIN|DATA)DIR=' "$launcher")" = "$expected" ] && continue
		sed -i \
			-e "s|^CFG_SOURCEDIR=.*|CFG_SOURCEDIR='$tree/usr/lib/prosody';|" \
			-e "s|^CFG_CONFIGDIR=.*|CFG_CONFIGDIR='$tree/etc/prosody';|" \
			-e "s|^CFG_PLUGINDIR=.*|CFG_PLUGINDIR='$tree/usr/lib/prosody/modules/';|" \
			-e "s|^CFG_DATADIR=.*|CFG_DATADIR='$tree/var/lib/prosody';|" \
			"$launcher"
		[ "$(grep -E '^CFG_(SOURCE|CONFIG|PLUGIN|DATA)DIR=' "$launcher")" = "$expected" ] \
			|| { echo "setup: $launcher does not set CFG_SOURCEDIR/CONFIGDIR/PLUGINDIR/DATADIR as expected" >&2; exit 1; }
	done
}

# One `apt-get update` covers a new backports source and missing packages.
need_update=
if [ ! -f "$DEPS/prosody13/usr/bin/prosody" ] && add_backports_source; then
	need_update=1
fi
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || need_update=1
[ -z "$need_update" ] || apt_update
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -f "$DEPS/prosody012/usr/bin/prosody" ] || unpack_prosody 0.12. "$DEPS/prosody012"
[ -f "$DEPS/prosody13/usr/bin/prosody" ] || unpack_prosody 13. "$DEPS/prosody13"
[ -x "$DEPS/rsyslog/usr/sbin/rsyslogd" ] || unpack_rsyslog "$DEPS/rsyslog"
[ -f "$DEPS/prosody011/usr/bin/prosody" ] || unpack_prosody011 "$DEPS/prosody011"
[ -f "$DEPS/prosody13-newest/usr/bin/prosody" ] || unpack_prosody13_newest "$DEPS/prosody13-newest" "$DEPS/prosody13"
point_launchers "$DEPS/prosody011"
[ -x "$DEPS/syslog-ng/usr/sbin/syslog-ng" ] || unpack_syslog_ng "$DEPS/syslog-ng"
point_launchers "$DEPS/prosody012"
point_launchers "$DEPS/prosody13"
point_launchers "$DEPS/prosody13-newest"

for component in clippy rustfmt; do
	cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done
