//! The byte-level work under both paths: which bytes `util.format` looks closer at ("care"),
//! and copying a few bytes at a time with unaligned word loads and stores.
//!
//! The fast path copies each piece of a line with these instead of `memcpy`, which for pieces
//! of a few bytes costs more than the copying. The copying functions take a raw destination and
//! are `unsafe`: the caller ([`super::FastLine`]) has checked the room first.

const HIGH: u64 = 0x8080_8080_8080_8080;
const SPACE: u64 = 0x2020_2020_2020_2020;

/// For eight bytes in a word: the high bit of each byte that is below 0x20 or has its own high
/// bit set (a borrow can also mark the bytes above a marked one, which is enough to say "some").
#[inline(always)]
fn care_bits(w: u64) -> u64 {
    (w | w.wrapping_sub(SPACE)) & HIGH
}

/// True if `util.format` would look closer at this string (control or non-ASCII bytes).
pub(super) fn needs_care(s: &[u8]) -> bool {
    let mut words = s.chunks_exact(8);
    for word in words.by_ref() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        if care_bits(u64::from_le_bytes(bytes)) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|b| !(0x20..0x80).contains(b))
}

/// Copies `s` to `dst`: one `memcpy` above 32 bytes, otherwise two overlapping words.
///
/// # Safety
/// `dst` must be valid for writing `s.len()` bytes, and must not overlap `s`.
#[inline(always)]
pub(super) unsafe fn copy_raw(s: &[u8], dst: *mut u8) {
    let (n, src) = (s.len(), s.as_ptr());
    // SAFETY (for each block below): every read is within `s` (offsets 0..n, the second word
    // ending at n), and every write within the `n` bytes at `dst` the caller vouches for.
    if n > 32 {
        // SAFETY: as above; the caller vouches that the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
    } else if n >= 16 {
        // SAFETY: as above (16 <= n).
        unsafe {
            copy_word::<u128>(src, dst);
            copy_word::<u128>(src.add(n - 16), dst.add(n - 16));
        }
    } else if n >= 8 {
        // SAFETY: as above (8 <= n).
        unsafe {
            copy_word::<u64>(src, dst);
            copy_word::<u64>(src.add(n - 8), dst.add(n - 8));
        }
    } else if n >= 4 {
        // SAFETY: as above (4 <= n).
        unsafe {
            copy_word::<u32>(src, dst);
            copy_word::<u32>(src.add(n - 4), dst.add(n - 4));
        }
    } else {
        for i in 0..n {
            // SAFETY: i < n: within `s` and within the n bytes at `dst`.
            unsafe { *dst.add(i) = *src.add(i) };
        }
    }
}

/// Copies `s` to `dst` and says whether every byte was plain ASCII (0x20 to 0x7f: what
/// [`needs_care`] accepts). Sixteen bytes at a time with SSE2 (on every x86-64): a signed compare
/// with 0x20 catches both control bytes and bytes with the high bit set. Tails are done as one
/// overlapping block. On `false`, what was written is to be discarded.
///
/// # Safety
/// `dst` must be valid for writing `s.len()` bytes, and must not overlap `s`.
#[inline(always)]
pub(super) unsafe fn copy_plain_raw(s: &[u8], dst: *mut u8) -> bool {
    let (n, src) = (s.len(), s.as_ptr());
    // In every block below, `for_each_block` only passes `at` with `at + width <= n`, so each
    // read is within `s` and each write within the `n` bytes at `dst` the caller vouches for.
    #[cfg(target_arch = "x86_64")]
    if n >= 16 {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; these two only build registers.
        let (limit, mut bad) = unsafe { (_mm_set1_epi8(0x20), _mm_setzero_si128()) };
        for_each_block(n, 16, |at| {
            // SAFETY: 16 bytes at `at` in both buffers (see above); unaligned load and store.
            unsafe {
                let v = _mm_loadu_si128(src.add(at) as *const __m128i);
                bad = _mm_or_si128(bad, _mm_cmplt_epi8(v, limit));
                _mm_storeu_si128(dst.add(at) as *mut __m128i, v);
            }
        });
        // SAFETY: SSE2, registers only.
        return unsafe { _mm_movemask_epi8(bad) } == 0;
    }
    // Narrower pieces are checked as words whose other bytes are spaces.
    let mut flags = 0u64;
    if n >= 8 {
        for_each_block(n, 8, |at| {
            // SAFETY: 8 bytes at `at` in both buffers (see above).
            let w = unsafe { std::ptr::read_unaligned(src.add(at) as *const u64) };
            flags |= care_bits(w);
            // SAFETY: as above.
            unsafe { std::ptr::write_unaligned(dst.add(at) as *mut u64, w) };
        });
    } else if n >= 4 {
        for_each_block(n, 4, |at| {
            // SAFETY: 4 bytes at `at` in both buffers (see above).
            let w = unsafe { std::ptr::read_unaligned(src.add(at) as *const u32) };
            flags |= care_bits(u64::from(w) | (SPACE << 32));
            // SAFETY: as above.
            unsafe { std::ptr::write_unaligned(dst.add(at) as *mut u32, w) };
        });
    } else {
        for i in 0..n {
            // SAFETY: i < n: within `s` and within the n bytes at `dst`.
            let b = unsafe { *src.add(i) };
            flags |= care_bits(u64::from(b) | (SPACE << 8));
            // SAFETY: as above.
            unsafe { *dst.add(i) = b };
        }
    }
    flags == 0
}

/// Calls `f` with the start of each `width`-byte block covering `0..n` (`n >= width`); the
/// last block overlaps the one before when `width` does not divide `n`. Every `at` passed has
/// `at + width <= n`.
#[inline(always)]
fn for_each_block(n: usize, width: usize, mut f: impl FnMut(usize)) {
    let mut at = 0;
    while at + width <= n {
        f(at);
        at += width;
    }
    if at < n {
        f(n - width);
    }
}

/// Copies one unaligned `T` (u32, u64 or u128) from `src` to `dst`.
///
/// # Safety
/// `src` must be valid for reading and `dst` for writing `size_of::<T>()` bytes; `T` must be a
/// plain integer type (any bit pattern valid).
#[inline(always)]
unsafe fn copy_word<T: Copy>(src: *const u8, dst: *mut u8) {
    // SAFETY: the caller vouches for both ranges; unaligned accesses need no alignment.
    unsafe { std::ptr::write_unaligned(dst as *mut T, std::ptr::read_unaligned(src as *const T)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn care_is_found_anywhere() {
        let mut s = vec![b'a'; 100];
        assert!(!needs_care(&s));
        for i in [0, 31, 32, 63, 64, 99] {
            s[i] = b'\n';
            assert!(needs_care(&s), "{i}");
            s[i] = 0xc3;
            assert!(needs_care(&s), "{i}");
            s[i] = b'a';
        }
        assert!(!needs_care(b"\x7f"));
    }

    #[test]
    fn copies_are_exact_at_every_length() {
        for len in 0..80 {
            let s: Vec<u8> = (0..len).map(|i| b' ' + (i % 95) as u8).collect();
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            // SAFETY: both buffers hold exactly len bytes and are distinct.
            let plain = unsafe {
                copy_raw(&s, a.as_mut_ptr());
                copy_plain_raw(&s, b.as_mut_ptr())
            };
            assert!(plain, "{len}");
            assert_eq!((&a, &b), (&s, &s), "{len}");
        }
    }
}
