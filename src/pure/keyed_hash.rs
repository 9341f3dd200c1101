//! SipHash-2-4: the keyed hash behind `redact`'s pseudonyms (`ip:…`, `u:…`). With a secret
//! key, its output cannot be computed, nor an address found from it, without the key; the
//! runtime makes one per process and never writes it anywhere.

/// The 128-bit key, as two little-endian words.
pub(crate) type Key = [u64; 2];

/// SipHash-2-4 of `bytes` under `key` (the reference algorithm, Aumasson and Bernstein 2012).
pub(crate) fn siphash24(key: Key, bytes: &[u8]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut m = [0u8; 8];
        m.copy_from_slice(word);
        compress(&mut v, u64::from_le_bytes(m));
    }
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = bytes.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    round(v);
    round(v);
    v[0] ^= m;
}

fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference key 00 01 .. 0f.
    const KEY: Key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    #[test]
    fn matches_the_reference_vectors() {
        // From the SipHash paper (appendix A) and its reference implementation's vectors.h:
        // the message 00 01 .. (n-1) for n = 0, 1, 8 and 15.
        let message: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(KEY, &message[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(KEY, &message[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(KEY, &message[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(KEY, &message[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn another_key_gives_another_hash() {
        assert_ne!(siphash24(KEY, b"192.0.2.1"), siphash24([1, 2], b"192.0.2.1"));
    }
}
