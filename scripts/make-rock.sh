#!/usr/bin/env bash
# `make rock`: writes target/rocks/, a luarocks repository holding this module twice: as a source
# rock that builds offline (the Rust crates are vendored into it, with a .cargo/config.toml that
# points cargo at them), and as a binary rock for this machine's platform, packed from a build of
# that source rock. The folder works as it is with
#   prosodyctl install --server=file://$PWD/target/rocks mod_log_ringbuffer
#   luarocks --lua-version 5.4 install --server=file://$PWD/target/rocks mod_log_ringbuffer
# (luarocks takes the binary rock when it is for its own platform, else builds the source rock),
# and each rock file alone with `prosodyctl install <file>` or `luarocks install <file>`.
#
# What it writes, for the version in Cargo.toml (V) and luarocks' platform (A, e.g. linux-x86_64):
#   mod_log_ringbuffer-V.tar.gz       this tree's sources (Cargo.toml, Cargo.lock, build.rs, src/,
#                                     lua/, LICENSE, README.markdown), vendor/ and .cargo/
#   mod_log_ringbuffer-V-1.rockspec   made by `luarocks new_version` from
#                                     rockspec/mod_log_ringbuffer-scm-1.rockspec; its source.url
#                                     is the tarball above (a file:// path on this machine)
#   mod_log_ringbuffer-V-1.src.rock   made by `luarocks pack`: that rockspec and the tarball
#   mod_log_ringbuffer-V-1.A.rock     the binary rock: the .src.rock is built and installed with
#                                     `luarocks install` into a throwaway tree, offline (cargo has
#                                     no network and an empty CARGO_HOME, luarocks no remote
#                                     server: this is also the proof that the source rock builds
#                                     from the rock alone), and `luarocks pack` packs that install
#   manifest*, index.html             made by `luarocks-admin make-manifest`
#
# Needs cargo and luarocks. `cargo vendor` takes the crates from ~/.cargo when they are there and
# downloads the rest from the crates registry (crates for other platforms too: the lock file names them).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

NAME=mod_log_ringbuffer
ROOT=$PWD
SCM_ROCKSPEC=rockspec/$NAME-scm-1.rockspec
OUT=$PWD/target/rocks
# The Lua the binary rock is built for (Prosody's, on Debian): its library works in that Lua only.
ROCK_LUA=5.4
LUAROCKS=(luarocks --lua-version "$ROCK_LUA")

# The rock's version is the crate's: [package] version in Cargo.toml. luarocks versions are
# numbers and dots only, so a pre-release version (1.0.0-rc.1) is refused.
version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ $version =~ ^[0-9]+(\.[0-9]+)*$ ]] || {
	echo "make-rock: Cargo.toml's version '$version' is not a luarocks version (digits and dots)" >&2
	exit 1
}
base=$NAME-$version

tmp=$(mktemp -d "${TMPDIR:-/tmp}/make-rock.XXXXXX")
done=
group=
# shellcheck disable=SC2317 # runs from the EXIT trap
rock_cleanup() {
	local status=$?
	trap - EXIT
	trap "" INT TERM # a second signal must not cut the cleanup short
	kill_group # the offline build (scripts/lib.sh: by its recorded process group only)
	rm -rf "$tmp"
	# A half-written repository must not pass for a good one.
	[ -n "$done" ] || rm -rf "$OUT"
	exit "$status"
}
trap rock_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The sources, and the crates they need, vendored.
src=$tmp/$base
mkdir -p "$src/.cargo"
cp -R Cargo.toml Cargo.lock build.rs LICENSE README.markdown src lua "$src/"
echo "make-rock: vendoring the crates of Cargo.lock into $base/vendor"
(cd "$src" && cargo vendor --locked vendor >"$tmp/cargo-config.toml" 2>"$tmp/cargo-vendor.log") \
	|| { cat "$tmp/cargo-vendor.log" >&2; exit 1; }
{
	echo "# Written by scripts/make-rock.sh: build with the crates in vendor/, never from the network."
	cat "$tmp/cargo-config.toml"
} >"$src/.cargo/config.toml"
grep -q '^directory = "vendor"$' "$src/.cargo/config.toml" || {
	echo "make-rock: cargo vendor printed no vendored-sources configuration" >&2
	exit 1
}

# 2. The tarball, with fixed owners, order and times (those of the last commit, when there is one).
rm -rf "$OUT"
mkdir -p "$OUT"
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tar -C "$tmp" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -cf - "$base" \
	| gzip -n -9 >"$OUT/$base.tar.gz"

# 3. The versioned rockspec, its source the tarball; then the source rock.
# (In $tmp: new_version copies the rockspec it starts from into the current directory.)
(cd "$tmp" && "${LUAROCKS[@]}" new_version "$ROOT/$SCM_ROCKSPEC" "$version" "file://$OUT/$base.tar.gz" --dir "$OUT" \
	>"$tmp/luarocks.log" 2>&1) || { cat "$tmp/luarocks.log" >&2; exit 1; }
rockspec=$OUT/$base-1.rockspec
[ -f "$rockspec" ] || { echo "make-rock: luarocks new_version wrote no $rockspec" >&2; exit 1; }
# new_version checked the tarball by unpacking it beside itself: not part of the repository.
rm -rf "${OUT:?}/$base" "$OUT/$base.tar"
{
	echo "-- Generated by scripts/make-rock.sh from $SCM_ROCKSPEC; source.url is the tarball it wrote."
	cat "$rockspec"
} >"$tmp/rockspec" && mv "$tmp/rockspec" "$rockspec"
"${LUAROCKS[@]}" lint "$rockspec"
(cd "$OUT" && "${LUAROCKS[@]}" pack "$rockspec" >"$tmp/luarocks.log" 2>&1) \
	|| { cat "$tmp/luarocks.log" >&2; exit 1; }
[ -f "$OUT/$base-1.src.rock" ] || { echo "make-rock: luarocks pack wrote no $base-1.src.rock" >&2; exit 1; }

# 4. The source rock built from the rock alone, offline, into a throwaway tree: luarocks sees no
# server but this folder (and needs none: Lua is its only dependency), cargo may not use the
# network and has no crates of its own (an empty CARGO_HOME: only the vendored ones can be used).
# In a process group of its own (setsid), waited for with `wait` so that a signal to this script
# is handled at once; the cleanup stops that group, recorded in $group.
tree=$tmp/tree
mkdir -p "$tmp/cargo-home" "$tmp/luarocks-tmp"
cat >"$tmp/luarocks-config.lua" <<EOF
rocks_servers = { "file://$OUT" }
local_cache = "$tmp/luarocks-cache"
EOF
echo "make-rock: building $base-1.src.rock offline into a throwaway tree (a release build: minutes)"
status=0
setsid env LUAROCKS_CONFIG="$tmp/luarocks-config.lua" CARGO_NET_OFFLINE=true CARGO_HOME="$tmp/cargo-home" \
	TMPDIR="$tmp/luarocks-tmp" "${LUAROCKS[@]}" --tree "$tree" install "$OUT/$base-1.src.rock" \
	</dev/null >"$tmp/build.log" 2>&1 &
group=$!
wait "$group" || status=$?
group=
[ "$status" -eq 0 ] || { tail -n 40 "$tmp/build.log" >&2; echo "make-rock: luarocks install $base-1.src.rock exited $status" >&2; exit 1; }
grep -q "Compiling mlua" "$tmp/build.log" || { cat "$tmp/build.log" >&2; echo "make-rock: the build compiled no crates" >&2; exit 1; }
if grep -q "Downloading\|Downloaded \|Updating .*index" "$tmp/build.log"; then
	cat "$tmp/build.log" >&2
	echo "make-rock: cargo reached for the network while building $base-1.src.rock" >&2
	exit 1
fi
[ -z "$(find "$tmp/cargo-home" -mindepth 1 -path "*/registry/*" -print -quit)" ] \
	|| { echo "make-rock: cargo put crates into its (empty) CARGO_HOME: the vendored ones were not used" >&2; exit 1; }
for f in "share/lua/$ROCK_LUA/$NAME.lua" "share/lua/$ROCK_LUA/$NAME/ringbuffer_shell.lua" "lib/lua/$ROCK_LUA/log_ringbuffer_native.so"; do
	[ -f "$tree/$f" ] || { echo "make-rock: luarocks install $base-1.src.rock did not install $f" >&2; exit 1; }
done
echo "make-rock: $base-1.src.rock built offline from the rock alone"

# 5. The binary rock: `luarocks pack` of what that install put into the tree.
arch=$("${LUAROCKS[@]}" config arch)
[[ $arch =~ ^[a-z0-9_]+-[a-z0-9_]+$ ]] || { echo "make-rock: luarocks config arch printed '$arch'" >&2; exit 1; }
(cd "$OUT" && "${LUAROCKS[@]}" --tree "$tree" pack "$NAME" "$version-1" >"$tmp/luarocks.log" 2>&1) \
	|| { cat "$tmp/luarocks.log" >&2; exit 1; }
binary=$base-1.$arch.rock
[ -f "$OUT/$binary" ] || { echo "make-rock: luarocks pack wrote no $binary" >&2; exit 1; }
# (The listing is read whole: grep -q in a pipe could end unzip early, failing under pipefail.)
listing=$(unzip -Z1 "$OUT/$binary") || { echo "make-rock: cannot list $binary" >&2; exit 1; }
grep -qx "lib/log_ringbuffer_native.so" <<<"$listing" \
	|| { echo "make-rock: $binary holds no lib/log_ringbuffer_native.so" >&2; exit 1; }
grep -qx "lua/$NAME/ringbuffer_shell.lua" <<<"$listing" \
	|| { echo "make-rock: $binary holds no lua/$NAME/ringbuffer_shell.lua" >&2; exit 1; }

# 6. The manifest, offering both rocks. luarocks-admin also writes one manifest per Lua version
# (manifest-5.1 ... -5.4, what a luarocks for that Lua reads), each listing the rocks whose
# rockspec accepts that Lua. The binary rock's library is built for Lua $ROCK_LUA only (its C API
# is resolved in the interpreter), so it is taken out of the others: a luarocks for another Lua
# gets the source rock and builds it for its own Lua.
luarocks-admin --lua-version "$ROCK_LUA" make-manifest "$OUT" >"$tmp/luarocks.log" 2>&1 \
	|| { cat "$tmp/luarocks.log" >&2; exit 1; }
[ -f "$OUT/manifest" ] || { echo "make-rock: luarocks-admin wrote no manifest" >&2; exit 1; }
lua5.4 - "$OUT" "$arch" "$ROCK_LUA" <<'EOF' || { echo "make-rock: cannot rewrite the per-Lua manifests" >&2; exit 1; }
local persist = require "luarocks.persist"
local out, arch, built_for = ...
for _, lua_version in ipairs { "5.1", "5.2", "5.3", "5.4", "5.5" } do
	local file = out .. "/manifest-" .. lua_version
	local exists = io.open(file)
	if exists then exists:close() end
	if lua_version ~= built_for and exists then
		local manifest = assert(persist.load_into_table(file))
		for _, versions in pairs(manifest.repository or {}) do
			for _, items in pairs(versions) do
				for i = #items, 1, -1 do
					if items[i].arch == arch then table.remove(items, i) end
				end
			end
		end
		assert(persist.save_from_table(file, manifest))
	end
end
EOF
for a in src "$arch"; do
	grep -q "arch = \"$a\"" "$OUT/manifest-$ROCK_LUA" \
		|| { echo "make-rock: manifest-$ROCK_LUA does not list the $a rock" >&2; exit 1; }
done

done=1
echo "make-rock: in $OUT, with a manifest:"
echo "  $base-1.src.rock ($(du -h "$OUT/$base-1.src.rock" | cut -f1)), builds offline"
echo "  $binary ($(du -h "$OUT/$binary" | cut -f1)), for $arch and Lua $ROCK_LUA"
echo "  prosodyctl install --server=file://$OUT $NAME"
