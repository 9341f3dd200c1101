//! Build stamps: which Lua file a library was built with.
//!
//! build.rs (which includes this file) stamps the library with the digests of
//! `lua/mod_log_ringbuffer.lua` and of the admin shell's `lua/mod_log_ringbuffer/ringbuffer_shell.lib.lua`
//! as they were built; at load the library stamps the Lua files Prosody actually runs the same way,
//! and the Lua side refuses to go on when one differs, so Lua files and a library from different
//! builds never run together.

/// FNV-1a, 64 bits: the same on every platform and Rust version (std's hashers promise neither).
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// How a stamp reads: `<crate version>+<digest of the Lua file, 16 hex digits>`.
pub fn stamp(version: &str, lua_file: &[u8]) -> String {
    format!("{version}+{:016x}", digest(lua_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_fnv1a_64() {
        // The published FNV-1a test vectors.
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn one_byte_changes_the_stamp() {
        assert_eq!(stamp("1.2.3", b"local x = 1;"), stamp("1.2.3", b"local x = 1;"));
        assert_ne!(stamp("1.2.3", b"local x = 1;"), stamp("1.2.3", b"local x = 2;"));
        assert!(stamp("1.2.3", b"").starts_with("1.2.3+"));
    }
}
