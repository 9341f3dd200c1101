//! Message formatting: Prosody's `util.format.format` rules, restated in Rust.
//!
//! `util.format` wraps `string.format` so that bad arguments never raise and cannot spoof log lines.
//! The common cases (plain `%s`, `%d`, `%i`, `%g`, `nil`, extra arguments) are done here without
//! touching Lua. Everything whose exact output depends on Lua itself (`__tostring`, `%q`
//! serialisation, invalid UTF-8, widths and precisions, `string.format` errors) is delegated to
//! the caller through [`Args`], which calls Prosody's own `util.format` for that one conversion.
//! `util.format` treats every conversion independently, so the delegated pieces compose into
//! exactly the string Prosody would produce.
//!
//! The most common line of all (a cached format of plain text, `%s`, `%d` and `%i`, with plain
//! arguments) also has a one-pass form, [`format_simple`] writing through [`FastLine`]: it
//! checks and copies each string in the same pass and gives up, writing nothing that counts,
//! at the first byte that needs care. The fuzz target checks it against the general path.


/// One log call argument, as seen without calling into Lua.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a [u8]),
    /// Tables, userdata, functions, threads: only Lua knows how to `tostring` them.
    Other,
}

/// Why a message could not be formatted the way `util.format` would.
pub type FormatError = String;

/// The arguments of one log call, read without calling Lua.
pub trait ArgValues<'a> {
    fn count(&self) -> usize;
    /// Argument `i` (0-based, counting after the format string).
    fn get(&self, i: usize) -> Arg<'a>;
}

/// [`ArgValues`], and Lua for the rare cases.
pub trait Args<'a>: ArgValues<'a> {
    /// Appends `util.format(spec, arg i)`.
    fn lua_format(&mut self, spec: &[u8], i: usize, out: &mut Vec<u8>) -> Result<(), FormatError>;
    /// Appends `tostring(arg i)`, unsanitised (natively for stanzas where possible).
    fn tostring(&mut self, i: usize, out: &mut Vec<u8>) -> Result<(), FormatError>;
    /// Appends `util.format("%s", text)` for text that is not valid UTF-8 (Prosody serialises it).
    fn lua_quote(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError>;
    /// Keeps the format string alive for as long as it sits in [`FormatCache`] slot `slot`
    /// (until another format takes that slot). True if it did: then no other string can have
    /// its address meanwhile, and the cache finds it by address alone.
    fn keep_format(&mut self, _slot: usize) -> bool {
        false
    }
}

/// The conversion letters `util.format`'s pattern recognises (`%%[^...]*[...]`).
fn is_conversion(b: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut table = [false; 256];
        let letters = b"cdiouxXaAeEfgGpqs%";
        let mut i = 0;
        while i < letters.len() {
            table[letters[i] as usize] = true;
            i += 1;
        }
        table
    };
    TABLE[b as usize]
}

const HIGH: u64 = 0x8080_8080_8080_8080;
const SPACE: u64 = 0x2020_2020_2020_2020;

/// For eight bytes in a word: the high bit of each byte that is below 0x20 or has its own high
/// bit set (a borrow can also mark the bytes above a marked one, which is enough to say "some").
#[inline(always)]
fn care_bits(w: u64) -> u64 {
    (w | w.wrapping_sub(SPACE)) & HIGH
}

/// True if `util.format` would look closer at this string (control or non-ASCII bytes).
fn needs_care(s: &[u8]) -> bool {
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

/// Appends `s` with control characters made visible and every newline followed by a tab,
/// as `util.format` does for valid UTF-8: `gsub("[%z\1-\8\11-\31\127]", pictures)` then
/// `gsub("\n\t?", "\n\t")`.
pub fn sanitize_into(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b'\n' => {
                out.extend_from_slice(b"\n\t");
                if s.get(i + 1) == Some(&b'\t') {
                    i += 1;
                }
            }
            0x00..=0x08 | 0x0b..=0x1f => out.extend_from_slice(&[0xe2, 0x90, 0x80 + b]),
            0x7f => out.extend_from_slice(&[0xe2, 0x90, 0xa1]),
            _ => out.push(b),
        }
        i += 1;
    }
}

/// Appends a string the way `util.format` treats a string under `%s`: untouched if plain
/// ASCII, sanitised if valid UTF-8, serialised by Prosody (through Lua) otherwise.
/// Returns whether `s` was plain (appended as it was).
pub fn string_field<'a, A: Args<'a> + ?Sized>(s: &[u8], args: &mut A, out: &mut Vec<u8>) -> Result<bool, FormatError> {
    if !needs_care(s) {
        out.extend_from_slice(s);
        return Ok(true);
    } else if std::str::from_utf8(s).is_ok() {
        sanitize_into(s, out);
    } else {
        args.lua_quote(s, out)?;
    }
    Ok(false)
}

/// Lua 5.4 `tostring` of a number: `%d` for integers, `%.14g` for floats, plus `.0` when the
/// float text looks like an integer.
pub fn push_float(n: f64, out: &mut Vec<u8>) {
    let start = out.len();
    c_format_float(b"%.14g\0", n, out);
    if out[start..].iter().all(|b| b"-0123456789".contains(b)) {
        out.extend_from_slice(b".0");
    }
}

pub fn push_int(n: i64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(int_text(n, &mut digits));
}

/// The decimal text of `n`, written at the end of `digits`.
#[inline(always)]
fn int_text(n: i64, digits: &mut [u8; 20]) -> &[u8] {
    // Two digits at a time from a table, as itoa does.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    while rest >= 100 {
        let pair = (rest % 100) as usize * 2;
        rest /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if rest >= 10 {
        let pair = rest as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + rest as u8;
    }
    if n < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    &digits[at..]
}

/// `string.format("%g", n)`: C's printf, so every digit matches Lua's.
fn push_g(n: f64, out: &mut Vec<u8>) {
    c_format_float(b"%g\0", n, out);
}

fn c_format_float(fmt: &[u8], n: f64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 64];
    // SAFETY: fmt is NUL-terminated and takes exactly one double; %g and %.14g fit in 64 bytes.
    let written = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr().cast(), n) };
    let written = usize::try_from(written).unwrap_or(0).min(buf.len() - 1);
    out.extend_from_slice(&buf[..written]);
}

/// `tostring(arg)` for the argument kinds Rust can see; false for those only Lua can print.
fn plain_tostring(arg: Arg<'_>, out: &mut Vec<u8>) -> bool {
    match arg {
        Arg::Nil => out.extend_from_slice(b"nil"),
        Arg::Bool(true) => out.extend_from_slice(b"true"),
        Arg::Bool(false) => out.extend_from_slice(b"false"),
        Arg::Int(n) => push_int(n, out),
        Arg::Float(n) => push_float(n, out),
        Arg::Str(s) => out.extend_from_slice(s),
        Arg::Other => return false,
    }
    true
}

/// One piece of a format string.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    /// Text copied as written (a byte range of the format string).
    Literal(usize, usize),
    /// `%%`.
    Percent,
    /// A conversion consuming the next argument (a byte range of the format string).
    Conversion(usize, usize),
}

/// A format string split into its pieces once, so a format logged again and again is not
/// parsed again (see `FormatCache`).
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pieces: Vec<Piece>,
    /// No literal piece holds control or non-ASCII bytes.
    plain_literals: bool,
    /// Set for plain literals and only bare `%s`, `%d` and `%i`: [`format_simple`] takes it.
    simple: Option<Simple>,
}

/// A format in the form [`format_simple`] runs: its literal text (`%%` already made `%`) and,
/// for each conversion, where the text before it ends and whether it is `%s`.
#[derive(Debug, Clone, PartialEq)]
struct Simple {
    text: Box<[u8]>,
    conversions: Box<[(usize, bool)]>,
}

impl Simple {
    fn new(fmt: &[u8], pieces: &[Piece]) -> Option<Simple> {
        let mut text = Vec::new();
        let mut conversions = Vec::new();
        for piece in pieces {
            match *piece {
                Piece::Literal(from, to) => text.extend_from_slice(&fmt[from..to]),
                Piece::Percent => text.push(b'%'),
                Piece::Conversion(from, to) => {
                    let string = match &fmt[from..to] {
                        b"%s" => true,
                        b"%d" | b"%i" => false,
                        _ => return None,
                    };
                    conversions.push((text.len(), string));
                }
            }
        }
        Some(Simple { text: text.into(), conversions: conversions.into() })
    }
}

impl Compiled {
    /// Splits `fmt` the way `util.format`'s pattern does. A `%` that starts no conversion makes
    /// `string.format` reject the whole format.
    pub fn new(fmt: &[u8]) -> Result<Compiled, FormatError> {
        let mut pieces = Vec::new();
        let mut plain_literals = true;
        let mut literal = |pieces: &mut Vec<Piece>, from: usize, to: usize| {
            if from < to {
                plain_literals &= !needs_care(&fmt[from..to]);
                pieces.push(Piece::Literal(from, to));
            }
        };
        let mut i = 0;
        while let Some(pct) = fmt[i..].iter().position(|&b| b == b'%') {
            let start = i + pct;
            literal(&mut pieces, i, start);
            let Some(len) = fmt[start + 1..].iter().position(|&b| is_conversion(b)) else {
                return Err("invalid conversion at end of format string".into());
            };
            i = start + len + 2;
            pieces.push(if &fmt[start..i] == b"%%" { Piece::Percent } else { Piece::Conversion(start, i) });
        }
        literal(&mut pieces, i, fmt.len());
        let simple = if plain_literals { Simple::new(fmt, &pieces) } else { None };
        Ok(Compiled { pieces, plain_literals, simple })
    }
}

/// A line being written by the fast path into a buffer of fixed size. Every write either fits
/// and is plain ASCII, or returns `None` and the caller starts over on the general path.
/// Writes are done with unaligned word loads and stores: this runs for every log line, and
/// calling `memcpy` for each few-byte piece costs more than the copying.
pub struct FastLine<'b> {
    buf: &'b mut [u8],
    len: usize,
    /// A write failed for want of room (rather than for a byte that needs care).
    full: bool,
}

impl<'b> FastLine<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        FastLine { buf, len: 0, full: false }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a write failed because the buffer was full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Where `n` more bytes go, if they fit.
    #[inline(always)]
    fn room(&mut self, n: usize) -> Option<*mut u8> {
        if n <= self.buf.len() - self.len {
            // SAFETY: len <= buf.len(), so the pointer stays within (or one past) the buffer.
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
        let (n, src) = (s.len(), s.as_ptr());
        // SAFETY: `room` guarantees n writable bytes at dst; every read is within s.
        unsafe {
            if n > 32 {
                std::ptr::copy_nonoverlapping(src, dst, n);
            } else if n >= 16 {
                copy_word::<u128>(src, dst);
                copy_word::<u128>(src.add(n - 16), dst.add(n - 16));
            } else if n >= 8 {
                copy_word::<u64>(src, dst);
                copy_word::<u64>(src.add(n - 8), dst.add(n - 8));
            } else if n >= 4 {
                copy_word::<u32>(src, dst);
                copy_word::<u32>(src.add(n - 4), dst.add(n - 4));
            } else {
                for i in 0..n {
                    *dst.add(i) = *src.add(i);
                }
            }
        }
        self.len += n;
        Some(())
    }

    /// Appends `s` if it is plain ASCII (what `needs_care` accepts), checking while copying.
    #[inline(always)]
    pub fn plain(&mut self, s: &[u8]) -> Option<()> {
        let dst = self.room(s.len())?;
        // SAFETY: `room` guarantees s.len() writable bytes at dst.
        if !unsafe { copy_plain(s, dst) } {
            return None;
        }
        self.len += s.len();
        Some(())
    }

    #[inline(always)]
    pub fn int(&mut self, n: i64) -> Option<()> {
        let mut digits = [0u8; 20];
        let text = int_text(n, &mut digits);
        self.trusted(text)
    }
}

/// Copies `s` to `dst` and says whether every byte was printable ASCII (0x20 to 0x7f).
/// Sixteen bytes at a time with SSE2 (on every x86-64): a signed compare with 0x20 catches
/// both control bytes and bytes with the high bit set. Tails are done as one overlapping block.
///
/// # Safety
/// `dst` must be valid for `s.len()` bytes of writing.
#[inline(always)]
unsafe fn copy_plain(s: &[u8], dst: *mut u8) -> bool {
    let (n, src) = (s.len(), s.as_ptr());
    #[cfg(target_arch = "x86_64")]
    if n >= 16 {
        use std::arch::x86_64::*;
        let limit = _mm_set1_epi8(0x20);
        let mut bad = _mm_setzero_si128();
        for_each_block(n, 16, |at| {
            let v = _mm_loadu_si128(src.add(at) as *const __m128i);
            bad = _mm_or_si128(bad, _mm_cmplt_epi8(v, limit));
            _mm_storeu_si128(dst.add(at) as *mut __m128i, v);
        });
        return _mm_movemask_epi8(bad) == 0;
    }
    // Narrower pieces are checked as words whose other bytes are spaces.
    let mut flags = 0u64;
    if n >= 8 {
        for_each_block(n, 8, |at| {
            let w = std::ptr::read_unaligned(src.add(at) as *const u64);
            flags |= care_bits(w);
            std::ptr::write_unaligned(dst.add(at) as *mut u64, w);
        });
    } else if n >= 4 {
        for_each_block(n, 4, |at| {
            let w = std::ptr::read_unaligned(src.add(at) as *const u32);
            flags |= care_bits(u64::from(w) | (SPACE << 32));
            std::ptr::write_unaligned(dst.add(at) as *mut u32, w);
        });
    } else {
        for i in 0..n {
            let b = *src.add(i);
            flags |= care_bits(u64::from(b) | (SPACE << 8));
            *dst.add(i) = b;
        }
    }
    flags == 0
}

/// Calls `f` with the start of each `width`-byte block covering `0..n` (`n >= width`); the
/// last block overlaps the one before when `width` does not divide `n`.
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
#[inline(always)]
unsafe fn copy_word<T: Copy>(src: *const u8, dst: *mut u8) {
    std::ptr::write_unaligned(dst as *mut T, std::ptr::read_unaligned(src as *const T));
}

/// The common case in one pass, with no Lua at all: a format of plain literals, `%s`, `%d`
/// and `%i`, and arguments that are plain strings, integers, booleans or nil, no more than the
/// format uses. `None` when anything else turns up (or the buffer is full); `out` is then
/// to be discarded.
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
            _ => return None,
        }
    }
    out.trusted(simple.text.get(at..)?)
}

/// Appends `util.format(fmt, args...)`. Returns whether every byte appended is plain
/// (printable ASCII), so the caller can skip looking at the message again.
pub fn format_message<'a, A: Args<'a> + ?Sized>(
    fmt: &[u8],
    args: &mut A,
    out: &mut Vec<u8>,
) -> Result<bool, FormatError> {
    format_compiled(fmt, &Compiled::new(fmt)?, args, out)
}

/// [`format_message`] for a format already split by [`Compiled::new`].
pub fn format_compiled<'a, A: Args<'a> + ?Sized>(
    fmt: &[u8],
    compiled: &Compiled,
    args: &mut A,
    out: &mut Vec<u8>,
) -> Result<bool, FormatError> {
    let mut plain = compiled.plain_literals;
    let mut next_arg = 0;
    for piece in &compiled.pieces {
        match *piece {
            Piece::Literal(from, to) => out.extend_from_slice(&fmt[from..to]),
            Piece::Percent => out.push(b'%'),
            Piece::Conversion(from, to) => {
                plain &= format_conversion(&fmt[from..to], next_arg, args, out)?;
                next_arg += 1;
            }
        }
    }
    if next_arg < args.count() {
        plain = false;
    }
    for extra in next_arg..args.count() {
        out.extend_from_slice(b" [");
        let arg = args.get(extra);
        match arg {
            Arg::Nil => out.extend_from_slice(b"(nil)"),
            // Extra arguments are always sanitised (DEL too), with no UTF-8 check.
            Arg::Str(s) => sanitize_into(s, out),
            _ => {
                let mut text = Vec::new();
                if !plain_tostring(arg, &mut text) {
                    args.tostring(extra, &mut text)?;
                }
                sanitize_into(&text, out);
            }
        }
        out.push(b']');
    }
    Ok(plain)
}

/// One conversion, natively when the result is certain, through Lua otherwise. Returns
/// whether what it appended is plain ASCII.
fn format_conversion<'a, A: Args<'a> + ?Sized>(
    spec: &[u8],
    index: usize,
    args: &mut A,
    out: &mut Vec<u8>,
) -> Result<bool, FormatError> {
    let arg = if index < args.count() { args.get(index) } else { Arg::Nil };
    let plain = spec.len() == 2;
    let conversion = spec[spec.len() - 1];
    match (arg, plain, conversion) {
        (Arg::Nil, _, _) => out.extend_from_slice(b"(nil)"),
        (Arg::Str(s), true, b's') => return string_field(s, args, out),
        (Arg::Int(_) | Arg::Float(_) | Arg::Bool(_), true, b's') => {
            plain_tostring(arg, out);
        }
        // util.format: tostring, then the rules for strings.
        (Arg::Other, true, b's') => {
            // Printed straight into `out`; taken out again only if it needs the string rules.
            let start = out.len();
            args.tostring(index, out)?;
            if !needs_care(&out[start..]) {
                return Ok(true);
            }
            let text = out.split_off(start);
            string_field(&text, args, out)?;
            return Ok(false);
        }
        (Arg::Int(n), true, b'd' | b'i') => push_int(n, out),
        (Arg::Int(n), true, b'g') => push_g(n as f64, out),
        (Arg::Float(n), true, b'g') => push_g(n, out),
        // A number conversion given something else prints "[tostring(arg)]".
        (Arg::Float(_) | Arg::Bool(_), true, b'd' | b'i' | b'g') => {
            out.push(b'[');
            plain_tostring(arg, out);
            out.push(b']');
        }
        (Arg::Str(s), true, b'd' | b'i' | b'g') if std::str::from_utf8(s).is_ok() => {
            out.push(b'[');
            sanitize_into(s, out);
            out.push(b']');
            return Ok(false);
        }
        _ => {
            args.lua_format(spec, index, out)?;
            return Ok(false);
        }
    }
    // nil, numbers and booleans print as ASCII letters, digits and signs.
    Ok(true)
}

/// Recently used format strings and their compiled form, looked up by the address of the
/// Lua string's bytes. A string the caller keeps alive (`Args::keep_format`) is found by
/// address and length alone; any other is confirmed by comparing the bytes, since a freed
/// string's address can be reused.
pub struct FormatCache {
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
    #[inline]
    fn is(&self, fmt: &[u8]) -> bool {
        self.address == fmt.as_ptr() as usize && self.bytes.len() == fmt.len() && (self.kept || *self.bytes == *fmt)
    }
}

impl FormatCache {
    pub const SLOTS: usize = 64;
    /// Longer formats (whole messages without arguments, mostly) are not worth keeping.
    const MAX_LEN: usize = 256;

    pub fn new() -> Self {
        FormatCache { slots: (0..Self::SLOTS).map(|_| None).collect() }
    }

    /// The split of `fmt` if it is cached (the general path, [`FormatCache::format`], fills it).
    #[inline]
    pub fn lookup(&self, fmt: &[u8]) -> Option<&Compiled> {
        match &self.slots[Self::slot_of(fmt)] {
            Some(cached) if cached.is(fmt) => Some(&cached.compiled),
            _ => None,
        }
    }

    /// Formats `fmt`, using and filling the cache.
    pub fn format<'a, A: Args<'a> + ?Sized>(
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
                let kept = args.keep_format(slot);
                self.slots[slot] =
                    Some(CachedFormat { address: fmt.as_ptr() as usize, bytes: fmt.into(), compiled, kept });
                result
            }
        }
    }

    #[inline]
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
    use super::*;

    /// Arguments without Lua: records which cases were delegated.
    struct Plain<'a> {
        args: Vec<Arg<'a>>,
        delegated: Vec<String>,
    }

    impl<'a> ArgValues<'a> for Plain<'a> {
        fn count(&self) -> usize {
            self.args.len()
        }
        fn get(&self, i: usize) -> Arg<'a> {
            self.args[i]
        }
    }

    impl<'a> Args<'a> for Plain<'a> {
        fn lua_format(&mut self, spec: &[u8], i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
            self.delegated.push(format!("format {} {}", String::from_utf8_lossy(spec), i));
            out.extend_from_slice(b"<lua>");
            Ok(())
        }
        fn tostring(&mut self, i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
            self.delegated.push(format!("tostring {i}"));
            out.extend_from_slice(b"table: 0x1\n");
            Ok(())
        }
        fn lua_quote(&mut self, _text: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
            self.delegated.push("quote".into());
            out.extend_from_slice(b"\"q\"");
            Ok(())
        }
    }

    fn fmt(f: &str, args: Vec<Arg<'_>>) -> (String, Vec<String>) {
        let mut plain = Plain { args, delegated: vec![] };
        let mut out = Vec::new();
        format_message(f.as_bytes(), &mut plain, &mut out).expect("format");
        (String::from_utf8(out).expect("utf8"), plain.delegated)
    }

    #[test]
    fn plain_conversions_stay_native() {
        let (s, d) = fmt("a %s b %d c %g %%", vec![Arg::Str(b"x"), Arg::Int(-5), Arg::Float(0.5)]);
        assert_eq!(s, "a x b -5 c 0.5 %");
        assert!(d.is_empty());
    }

    #[test]
    fn missing_and_extra_arguments() {
        assert_eq!(fmt("%s and %d", vec![]).0, "(nil) and (nil)");
        let (s, _) = fmt("x", vec![Arg::Nil, Arg::Int(3), Arg::Bool(true), Arg::Str(b"a\nb")]);
        assert_eq!(s, "x [(nil)] [3] [true] [a\n\tb]");
    }

    #[test]
    fn numbers_under_wrong_conversions_are_bracketed() {
        assert_eq!(fmt("%d", vec![Arg::Float(1.5)]).0, "[1.5]");
        assert_eq!(fmt("%d", vec![Arg::Float(3.0)]).0, "[3.0]");
        assert_eq!(fmt("%d", vec![Arg::Bool(false)]).0, "[false]");
        assert_eq!(fmt("%d", vec![Arg::Str(b"12")]).0, "[12]");
        assert_eq!(fmt("%s", vec![Arg::Float(1e15)]).0, "1e+15");
        assert_eq!(fmt("%s", vec![Arg::Float(2.0)]).0, "2.0");
        assert_eq!(fmt("%s", vec![Arg::Float(f64::INFINITY)]).0, "inf");
    }

    #[test]
    fn control_characters_become_pictures() {
        let (s, _) = fmt("%s", vec![Arg::Str(b"a\x00b\x1b[31m\x7f\n\tc\n")]);
        assert_eq!(s, "a\u{2400}b\u{241b}[31m\u{2421}\n\tc\n\t");
        // DEL alone is not looked at (util.format's quick check skips it).
        assert_eq!(fmt("%s", vec![Arg::Str(b"a\x7f")]).0, "a\x7f");
    }

    #[test]
    fn lua_only_cases_are_delegated() {
        let (s, d) = fmt("%5s %q %x %s", vec![Arg::Str(b"a"), Arg::Str(b"b"), Arg::Int(1), Arg::Other]);
        assert_eq!(s, "<lua> <lua> <lua> table: 0x1\n\t");
        assert_eq!(d.len(), 4);
        let (s, d) = fmt("%s", vec![Arg::Str(b"\xff")]);
        assert_eq!((s.as_str(), d), ("\"q\"", vec!["quote".to_string()]));
        let (s, _) = fmt("", vec![Arg::Other]);
        assert_eq!(s, " [table: 0x1\n\t]");
    }

    #[test]
    fn integers_print_like_lua() {
        for n in [0, 7, -7, 10, 12345, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_int(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

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
            fn keep_format(&mut self, slot: usize) -> bool {
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

    #[test]
    fn dangling_percent_is_an_error() {
        let mut plain = Plain { args: vec![], delegated: vec![] };
        assert!(format_message(b"100%", &mut plain, &mut Vec::new()).is_err());
    }
}
