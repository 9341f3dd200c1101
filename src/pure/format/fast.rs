//! The one-pass path for the most common line: a cached format of plain text, `%s`, `%d` and
//! `%i`, with plain arguments, written by [`format_simple`] through a [`FastLine`] straight
//! into its final place (the ring's free space). Each string is checked while it is copied;
//! at the first byte that needs care (or when the room runs out) the line is given up, and the
//! caller starts over on the general path, which gives the same bytes for whatever this takes.

use super::copy::{copy_plain_raw, copy_raw};
use super::numbers::{float_is_integer, float_prints_whole, int_text};
use super::{Arg, ArgValues, Compiled};

/// A line being written by the fast path into a buffer of fixed size. Every write either fits
/// and is plain ASCII, or returns `None` and the caller starts over on the general path.
pub struct FastLine<'b> {
    buf: &'b mut [u8],
    /// Bytes written so far; never more than `buf.len()`.
    len: usize,
    /// A write failed for want of room (rather than for a byte that needs care).
    full: bool,
}

impl<'b> FastLine<'b> {
    /// A line to be written at the start of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        FastLine { buf, len: 0, full: false }
    }

    /// What was written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// How many bytes were written so far.
    pub fn written(&self) -> usize {
        self.len
    }

    /// Whether a write failed because the buffer was full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Where `n` more bytes go, if they fit: a pointer valid for writing `n` bytes.
    #[inline(always)]
    fn room(&mut self, n: usize) -> Option<*mut u8> {
        if n <= self.buf.len() - self.len {
            // SAFETY: len <= buf.len(), so the pointer stays within (or one past) the buffer,
            // and n <= buf.len() - len bytes follow it.
            Some(unsafe { self.buf.as_mut_ptr().add(self.len) })
        } else {
            self.full = true;
            None
        }
    }

    /// Appends bytes already known to be plain.
    #[inline(always)]
    pub fn trusted(&mut self, s: &[u8]) -> Option<()> {
        let dst = self.room(s.len())?;
        // SAFETY: `room` vouches for s.len() writable bytes at dst, inside `buf`, which is
        // borrowed mutably here and so cannot overlap `s`.
        unsafe { copy_raw(s, dst) };
        self.len += s.len();
        Some(())
    }

    /// Appends `s` if it is plain ASCII (what `util.format` leaves alone), checking while
    /// copying.
    #[inline(always)]
    pub fn plain(&mut self, s: &[u8]) -> Option<()> {
        let dst = self.room(s.len())?;
        // SAFETY: as in `trusted`.
        if !unsafe { copy_plain_raw(s, dst) } {
            return None;
        }
        self.len += s.len();
        Some(())
    }

    /// Appends the decimal text of `n`.
    #[inline(always)]
    pub fn int(&mut self, n: i64) -> Option<()> {
        let mut digits = [0u8; 20];
        let text = int_text(n, &mut digits);
        self.trusted(text)
    }
}

/// The common case in one pass, with no Lua at all: a format of plain literals, `%s`, `%d`
/// and `%i`, and arguments that are plain strings, integers (whole floats on a Lua without
/// integers), booleans or nil, no more than the format uses. `None` when anything else turns
/// up (or the buffer is full); `out` is then to be discarded.
#[inline(always)]
pub fn format_simple<'a, A: ArgValues<'a> + ?Sized>(
    compiled: &Compiled,
    args: &A,
    out: &mut FastLine<'_>,
) -> Option<()> {
    let simple = compiled.simple.as_ref()?;
    if args.count() > simple.conversions.len() {
        return None;
    }
    let mut at = 0;
    for (i, &(literal_end, string)) in simple.conversions.iter().enumerate() {
        out.trusted(simple.text.get(at..literal_end)?)?;
        at = literal_end;
        match args.get(i) {
            Arg::Str(s) if string => out.plain(s)?,
            Arg::Int(n) => out.int(n)?,
            Arg::Nil => out.trusted(b"(nil)")?,
            Arg::Bool(true) if string => out.trusted(b"true")?,
            Arg::Bool(false) if string => out.trusted(b"false")?,
            // Only on a Lua without integers (the guards are false otherwise): every number is
            // a float there, and whole ones print as integers (see `numbers`).
            Arg::Float(n) if !string && float_is_integer(n) => out.int(n as i64)?,
            Arg::Float(n) if string && float_prints_whole(n) => out.int(n as i64)?,
            _ => return None,
        }
    }
    out.trusted(simple.text.get(at..)?)
}

#[cfg(test)]
mod tests {
    use super::super::copy::needs_care;
    use super::*;

    #[test]
    fn plain_copies_find_care_anywhere_at_every_length() {
        for len in 0..80 {
            let mut s: Vec<u8> = (0..len).map(|i| b' ' + (i % 95) as u8).collect();
            let mut buf = vec![0u8; 100];
            let mut out = FastLine::new(&mut buf);
            assert_eq!(out.plain(&s), Some(()), "{len}");
            assert_eq!(out.bytes(), &s[..]);
            for at in 0..len {
                for bad in [0x00, b'\n', 0x1f, 0x80, 0xc3, 0xff] {
                    let keep = s[at];
                    s[at] = bad;
                    let mut buf = vec![0u8; 100];
                    assert_eq!(FastLine::new(&mut buf).plain(&s), None, "{len} {at} {bad}");
                    assert!(needs_care(&s));
                    s[at] = keep;
                }
            }
        }
        // DEL is plain here as in needs_care; a full buffer is told apart from care.
        let mut buf = vec![0u8; 4];
        let mut out = FastLine::new(&mut buf);
        assert_eq!(out.plain(b"\x7f~"), Some(()));
        assert_eq!(out.plain(b"abc"), None);
        assert!(out.is_full());
    }

    struct List<'a>(Vec<Arg<'a>>);

    impl<'a> ArgValues<'a> for List<'a> {
        fn count(&self) -> usize {
            self.0.len()
        }
        fn get(&self, i: usize) -> Arg<'a> {
            self.0.get(i).copied().unwrap_or(Arg::Nil)
        }
    }

    #[test]
    fn simple_lines_and_what_they_leave_to_the_general_path() {
        let compiled = Compiled::new(b"got %s from %d, 100%% %s").expect("split");
        let mut buf = [0u8; 64];
        let mut out = FastLine::new(&mut buf);
        let args = List(vec![Arg::Str(b"x"), Arg::Int(-12)]);
        assert_eq!(format_simple(&compiled, &args, &mut out), Some(()));
        assert_eq!(out.bytes(), b"got x from -12, 100% (nil)");
        for refused in [vec![Arg::Float(1.5)], vec![Arg::Other], vec![Arg::Str(b"a\nb")], vec![Arg::Nil; 4]] {
            let mut buf = [0u8; 64];
            assert_eq!(format_simple(&compiled, &List(refused), &mut FastLine::new(&mut buf)), None);
        }
    }
}
