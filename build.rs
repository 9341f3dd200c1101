//! Keeps the library mapped until the process exits: Prosody's `lua_close` at exit would
//! otherwise unmap it under the running signal thread. Also refuses, with our own feature
//! names, a build for no Lua or for more than one (mlua's error names mlua's features), and
//! stamps the library with the Lua files it is built with (see `pure::build_stamp`).
use std::process::ExitCode;

#[path = "src/pure/build_stamp.rs"]
mod build_stamp;

/// The Lua file that goes with the library, from the package root.
const LUA_FILE: &str = "lua/mod_log_ringbuffer.lua";
/// The admin shell's Lua file, which the module loads with `module:require`.
const SHELL_FILE: &str = "lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua";

/// The crate's Lua features (Cargo.toml), one of which must be chosen.
const LUA_FEATURES: [&str; 5] = ["lua51", "lua52", "lua53", "lua54", "luajit"];

fn main() -> ExitCode {
    let chosen: Vec<&str> = LUA_FEATURES
        .into_iter()
        .filter(|name| std::env::var_os(format!("CARGO_FEATURE_{}", name.to_uppercase())).is_some())
        .collect();
    if chosen.len() != 1 {
        eprintln!(
            "mod_log_ringbuffer is built for exactly one Lua: choose one of the features {} \
             (with --no-default-features; `make LUA_VERSION=5.3` does that), not {}",
            LUA_FEATURES.join(", "),
            if chosen.is_empty() { "none".to_string() } else { chosen.join(" and ") }
        );
        return ExitCode::FAILURE;
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/pure/build_stamp.rs");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    for (file, variable) in [(LUA_FILE, "LOG_RINGBUFFER_BUILD_STAMP"), (SHELL_FILE, "LOG_RINGBUFFER_SHELL_BUILD_STAMP")]
    {
        println!("cargo:rerun-if-changed={file}");
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("mod_log_ringbuffer: cannot read {file}, which the library is stamped with: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("cargo:rustc-env={variable}={}", build_stamp::stamp(&version, &bytes));
    }
    ExitCode::SUCCESS
}
