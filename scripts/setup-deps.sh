#!/usr/bin/env bash
# Installs what the build and the tests need, skipping what is already there:
# Prosody 0.12 and the Lua tools from Debian bookworm, and Prosody 13 from bookworm-backports,
# unpacked into $DEPS/prosody13 so both versions run side by side.
set -euo pipefail

DEPS=${DEPS:-$(cd "$(dirname "$0")/.." && pwd)/.deps}
packages=(prosody lua5.4 liblua5.4-dev lua-busted lua-check luarocks pkg-config)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

backports=/etc/apt/sources.list.d/bookworm-backports.list
need_update=
if [ ! -f "$DEPS/prosody13/usr/bin/prosody" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
	echo "deb http://deb.debian.org/debian bookworm-backports main" > "$backports"
	need_update=1
fi
if [ ${#missing[@]} -gt 0 ] || [ -n "$need_update" ]; then
	echo "setup: installing ${missing[*]:-the bookworm-backports source}"
	# Third-party sources on the machine may be unreachable; Debian's own are what we need.
	apt-get update -qq || true
fi
if [ ${#missing[@]} -gt 0 ]; then
	# Installing prosody must not start a system-wide server.
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	rm -f /usr/sbin/policy-rc.d
	# A packaged server may have been started anyway; tests run their own.
	pkill -x prosody 2>/dev/null || pkill -f '^lua5.4 /usr/bin/prosody' 2>/dev/null || true
fi

if [ ! -f "$DEPS/prosody13/usr/bin/prosody" ]; then
	echo "setup: fetching Prosody 13 from bookworm-backports"
	mkdir -p "$DEPS/download"
	( cd "$DEPS/download" && rm -f prosody_*.deb && apt-get download -qq prosody/bookworm-backports 2>/dev/null \
		|| { apt-get update -qq || true; apt-get download -qq prosody/bookworm-backports; } )
	rm -rf "$DEPS/prosody13"
	dpkg -x "$DEPS"/download/prosody_*.deb "$DEPS/prosody13"
fi
# Point the launchers at the unpacked tree instead of /usr/lib/prosody (idempotent).
sed -i \
	-e "s|^CFG_SOURCEDIR=.*|CFG_SOURCEDIR='$DEPS/prosody13/usr/lib/prosody';|" \
	-e "s|^CFG_PLUGINDIR=.*|CFG_PLUGINDIR='$DEPS/prosody13/usr/lib/prosody/modules/';|" \
	"$DEPS/prosody13/usr/bin/prosody" "$DEPS/prosody13/usr/bin/prosodyctl"

for component in clippy rustfmt; do
	cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done
