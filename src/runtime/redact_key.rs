//! The key of `redact`'s pseudonyms: random, made once per process, kept in memory only (never
//! written, never logged), so pseudonyms are stable for the life of the process and cannot be
//! linked across restarts or reversed without it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Read;
use std::sync::OnceLock;

use crate::pure::keyed_hash::Key;

static KEY: OnceLock<Key> = OnceLock::new();

/// This process's key.
pub(crate) fn process_key() -> Key {
    *KEY.get_or_init(|| from_urandom().unwrap_or_else(from_random_state))
}

fn from_urandom() -> Option<Key> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).ok()?;
    let (a, b) = bytes.split_at(8);
    Some([u64::from_le_bytes(a.try_into().ok()?), u64::from_le_bytes(b.try_into().ok()?)])
}

/// Without /dev/urandom (a chroot without /dev): the standard library's hasher keys, which
/// it takes from the system's randomness.
fn from_random_state() -> Key {
    let state = RandomState::new();
    [state.hash_one(0u8), state.hash_one(1u8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_process_and_both_sources_are_random() {
        assert_eq!(process_key(), process_key());
        assert_ne!(from_urandom(), from_urandom());
        assert_ne!(from_random_state(), from_random_state());
        assert_ne!(process_key(), [0, 0]);
    }
}
