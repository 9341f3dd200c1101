-- LuaRocks spec: builds the native library with cargo and installs it next to the Prosody module.
-- Local use:  luarocks --lua-version 5.4 --tree <tree> make rockspec/mod_log_ringbuffer-scm-1.rockspec
-- then add "<tree>/share/lua/5.4" to Prosody's plugin_paths; the module finds the library in
-- "<tree>/lib/lua/5.4" on its own (Prosody does not put that directory on package.cpath).
rockspec_format = "3.0"
package = "mod_log_ringbuffer"
version = "scm-1"

source = {
	url = "git+https://example.org/mod_log_ringbuffer.git", -- placeholder
}

description = {
	summary = "In-memory ring buffer log sink for Prosody, dumped to a file on demand",
	detailed = [[
Keeps the newest log lines in memory (native Rust library) and writes them to a
file on a signal or event. Load it in Prosody as module "log_ringbuffer".]],
	license = "MIT",
	labels = { "prosody", "logging", "xmpp" },
}

dependencies = {
	"lua >= 5.4, < 5.5",
}

build = {
	type = "command",
	-- Offline: crates must already be in ~/.cargo (run `cargo fetch` once otherwise).
	-- install.lib keeps the file name, so give the library its module name first.
	build_command = "cargo build --release --offline && cp target/release/liblog_ringbuffer_native.so log_ringbuffer_native.so",
	install = {
		lua = { mod_log_ringbuffer = "lua/mod_log_ringbuffer.lua" },
		lib = { log_ringbuffer_native = "log_ringbuffer_native.so" },
	},
}
