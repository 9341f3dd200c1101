//! Recently used format strings and their split ([`Compiled`]), looked up by the address of the
//! string's bytes, so that a format logged again and again is neither parsed nor compared again.
//!
//! The address is only ever a key: the cache never reads memory through it. A format string the
//! caller keeps alive (`Args::keep_format`) is found by address and length alone, since no other
//! string can have its address while it lives; any other is confirmed by comparing its bytes
//! with the cached copy, since a freed string's address can be reused.

use super::compile::Compiled;
use super::rules::{format_compiled, format_message};
use super::{Args, FormatError};

/// The cache: a fixed number of slots, chosen by address.
pub(crate) struct FormatCache {
    slots: Vec<Option<CachedFormat>>,
}

/// A cached format: the address it was seen at, its bytes, its split, and whether it is kept
/// alive (so its address is its identity).
struct CachedFormat {
    address: usize,
    bytes: Box<[u8]>,
    compiled: Compiled,
    kept: bool,
}

impl CachedFormat {
    #[inline(always)]
    fn is(&self, fmt: &[u8]) -> bool {
        self.address == fmt.as_ptr() as usize && self.bytes.len() == fmt.len() && (self.kept || *self.bytes == *fmt)
    }
}

impl FormatCache {
    /// How many formats it holds (and how many a caller may be asked to keep alive).
    pub(crate) const SLOTS: usize = 64;
    /// Longer formats (whole messages without arguments, mostly) are not worth keeping.
    const MAX_LEN: usize = 256;

    /// An empty cache.
    pub(crate) fn new() -> Self {
        FormatCache { slots: (0..Self::SLOTS).map(|_| None).collect() }
    }

    /// The split of `fmt` if it is cached (the general path, [`FormatCache::format`], fills it).
    #[inline(always)]
    pub(crate) fn lookup(&self, fmt: &[u8]) -> Option<&Compiled> {
        match &self.slots[Self::slot_of(fmt)] {
            Some(cached) if cached.is(fmt) => Some(&cached.compiled),
            _ => None,
        }
    }

    /// Formats `fmt`, using and filling the cache.
    pub(crate) fn format<'a, A: Args<'a> + ?Sized>(
        &mut self,
        fmt: &[u8],
        args: &mut A,
        out: &mut Vec<u8>,
    ) -> Result<bool, FormatError> {
        if fmt.len() > Self::MAX_LEN {
            return format_message(fmt, args, out);
        }
        let slot = Self::slot_of(fmt);
        match &self.slots[slot] {
            Some(cached) if cached.is(fmt) => format_compiled(fmt, &cached.compiled, args, out),
            _ => {
                let compiled = Compiled::new(fmt)?;
                let result = format_compiled(fmt, &compiled, args, out);
                let kept = args.keep_format(fmt, slot);
                self.slots[slot] =
                    Some(CachedFormat { address: fmt.as_ptr() as usize, bytes: fmt.into(), compiled, kept });
                result
            }
        }
    }

    #[inline(always)]
    fn slot_of(fmt: &[u8]) -> usize {
        (fmt.as_ptr() as usize >> 3) % Self::SLOTS
    }
}

impl Default for FormatCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::testing::Plain;
    use super::super::{Arg, ArgValues};
    use super::*;

    #[test]
    fn cache_tells_formats_apart() {
        let mut cache = FormatCache::new();
        let mut plain = Plain { args: vec![Arg::Int(1)], delegated: vec![] };
        let mut buffer = b"a %d".to_vec();
        let mut out = Vec::new();
        cache.format(&buffer, &mut plain, &mut out).expect("format");
        // Same address, new content: must not reuse the old split.
        buffer.copy_from_slice(b"%d b");
        cache.format(&buffer, &mut plain, &mut out).expect("format");
        assert_eq!(out, b"a 11 b");
    }

    #[test]
    fn kept_formats_are_found_by_address_alone() {
        struct Keeping(Vec<usize>);
        impl<'a> ArgValues<'a> for Keeping {
            fn count(&self) -> usize {
                0
            }
            fn get(&self, _i: usize) -> Arg<'a> {
                Arg::Nil
            }
        }
        impl<'a> Args<'a> for Keeping {
            fn lua_format(&mut self, _: &[u8], _: usize, _: &mut Vec<u8>) -> Result<(), FormatError> {
                Ok(())
            }
            fn tostring(&mut self, _: usize, _: &mut Vec<u8>) -> Result<(), FormatError> {
                Ok(())
            }
            fn lua_quote(&mut self, _: &[u8], _: &mut Vec<u8>) -> Result<(), FormatError> {
                Ok(())
            }
            fn keep_format(&mut self, _fmt: &[u8], slot: usize) -> bool {
                self.0.push(slot);
                true
            }
        }
        let mut cache = FormatCache::new();
        let mut keeping = Keeping(vec![]);
        let fmt = b"kept %s".to_vec();
        cache.format(&fmt, &mut keeping, &mut Vec::new()).expect("format");
        assert_eq!(keeping.0, vec![FormatCache::slot_of(&fmt)]);
        assert!(cache.lookup(&fmt).is_some());
        // The same bytes elsewhere are another string: not found until formatted there.
        assert!(cache.lookup(&fmt.clone()).is_none());
    }
}
