//! Keeps the library mapped until the process exits: Prosody's `lua_close` at exit would
//! otherwise unmap it under the running signal thread.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
