-- LuaRocks spec of the working tree: builds the native library with cargo and installs it next to
-- the Prosody module.
-- Local use:  luarocks --lua-version 5.4 --tree <tree> make rockspec/mod_log_ringbuffer-scm-1.rockspec
-- (from the tree's root), then add "<tree>/share/lua/5.4" to Prosody's plugin_paths; the module
-- finds the library in "<tree>/lib/lua/5.4" on its own (Prosody does not put that directory on
-- package.cpath).
-- A rock to install anywhere else (luarocks install, prosodyctl install) comes from `make rock`:
-- scripts/make-rock.sh turns this file into a versioned rockspec whose source is a tarball of
-- this tree with the crates vendored, and packs both into a .src.rock that builds offline.
rockspec_format = "3.0"
package = "mod_log_ringbuffer"
version = "scm-1"

-- The working tree this file is in: `luarocks make` builds the directory it runs in and never
-- fetches source.url, so this one is not packed (`make rock` replaces it with a tarball's URL).
source = {
	url = "file://.",
}

description = {
	summary = "In-memory ring buffer log sink for Prosody, dumped to a file on demand",
	detailed = [[
Keeps the newest log lines in memory (native Rust library) and writes them to a
file on a signal or event. Load it in Prosody as module "log_ringbuffer".]],
	license = "MIT",
	labels = { "prosody", "logging", "xmpp" },
}

-- Every Lua Prosody 0.12 runs on (13 needs 5.3 or 5.4): the library is built for the one
-- luarocks targets (below).
dependencies = {
	"lua >= 5.1, < 5.5",
}

build = {
	type = "command",
	-- Offline, with the versions in Cargo.lock: from the working tree the crates must already be
	-- in ~/.cargo (run `cargo fetch` once otherwise); in a rock from `make rock`, its
	-- .cargo/config.toml points cargo at the crates vendored into it. The target dir is named so
	-- that a CARGO_TARGET_DIR in the environment does not move the library away from the copy.
	-- The Lua feature (lua51 ... lua54, luajit) is the one of the interpreter luarocks targets,
	-- $(LUA) (luarocks passes no Lua version to a command build; `--lua-version 5.3` picks it).
	-- install.lib keeps the file name, so give the library its module name first.
	build_command = [[cargo build --release --offline --locked --target-dir target --no-default-features --features "module `'$(LUA)' -e 'print(jit and "luajit" or "lua" .. _VERSION:sub(5):gsub("%.", ""))'`" && cp target/release/liblog_ringbuffer_native.so log_ringbuffer_native.so]],
	install = {
		-- The admin shell's library goes to share/lua/<version>/mod_log_ringbuffer/ringbuffer_shell.lua
		-- (luarocks turns a module name's dots into folders and names the file <last part>.lua), where
		-- module:require finds it: Prosody 0.12 and 13 look for a library's <name>.lua in
		-- mod_<module>/ too, and for share/lua/<version>/mod_<module>/ from the tree's root.
		lua = {
			mod_log_ringbuffer = "lua/mod_log_ringbuffer.lua",
			["mod_log_ringbuffer.ringbuffer_shell"] = "lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua",
		},
		lib = { log_ringbuffer_native = "log_ringbuffer_native.so" },
	},
}
