//! Keeps the library mapped until the process exits: Prosody's `lua_close` at exit would
//! otherwise unmap it under the running signal thread. Also refuses, with our own feature
//! names, a build for no Lua or for more than one (mlua's error names mlua's features).
use std::process::ExitCode;

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
    ExitCode::SUCCESS
}
