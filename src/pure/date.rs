//! Dates as Lua's `os.date` writes them: the line timestamps, the dump header's time and the
//! `{time|...}` template filters. Formats are checked once (against what Lua 5.4 accepts) and
//! rendered by the C library's `strftime`, which is what `os.date` itself calls, so the bytes are
//! the same in every locale and time zone. Line timestamps alone may also show fractions of a
//! second (GNU date's `%3N`, `%6N`, `%9N`, `%N`), written by us between strftime's pieces.
//!
//! A fatal signal's handler may not call `localtime` or `strftime` nor allocate: for it, the
//! header's time is written from UTC plus an offset found in advance ([`utc_offset_at`]), by
//! [`header_stamp`], and numbers by [`decimal`].

use std::ffi::{CStr, CString};

/// The timestamp format of the dump header and of the default line timestamps.
pub(crate) const DEFAULT_TIMESTAMP: &str = "%b %d %H:%M:%S ";

/// A strftime format as Lua's `os.date` accepts it, checked once when the sink is made; line
/// timestamps may also hold fractions of a second (see [`DateFormat::with_fractions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    format: CString,
    utc: bool,
    /// Only for a format with fractions of a second: the format cut at them, in order. Empty
    /// otherwise, and `format` is rendered whole, as `os.date` would.
    pieces: Vec<Piece>,
}

/// Part of a format with fractions of a second.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    /// strftime text between fractions.
    Text(CString),
    /// This many leading digits of the nanoseconds (3, 6 or 9).
    Fraction(u8),
}

/// The conversions Lua 5.4's `os.date` allows (LUA_STRFTIMEOPTIONS for C99).
const DATE_OPTIONS_1: &[u8] = b"aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%";
const DATE_OPTIONS_2: &[&[u8]] = &[
    b"Ec", b"EC", b"Ex", b"EX", b"Ey", b"EY", b"Od", b"Oe", b"OH", b"OI", b"Om", b"OM", b"OS", b"Ou", b"OU", b"OV",
    b"Ow", b"OW", b"Oy",
];

/// What the fraction conversions are, for error messages.
const FRACTIONS: &str = "'%3N' (milliseconds), '%6N' (microseconds), '%9N' or '%N' (nanoseconds)";

impl DateFormat {
    /// Parses an `os.date` format; `!` at the start means UTC, as in Lua. Fractions of a second
    /// are refused: only line timestamps have them.
    pub fn new(format: &str) -> Result<Self, String> {
        Self::parse(format, false)
    }

    /// [`DateFormat::new`], and GNU date's fractions of a second as well: `%3N`, `%6N`, `%9N`
    /// and `%N` (= `%9N`) write that many leading digits of the nanoseconds (truncated, so never
    /// the next second). For line timestamps only.
    pub fn with_fractions(format: &str) -> Result<Self, String> {
        Self::parse(format, true)
    }

    fn parse(format: &str, fractions: bool) -> Result<Self, String> {
        let (utc, body) = match format.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        if body.starts_with("*t") {
            return Err("'*t' makes os.date return a table, not text".into());
        }
        let bytes = body.as_bytes();
        let mut pieces = Vec::new();
        let mut text_from = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let one = bytes.get(i + 1).copied();
                let two = bytes.get(i + 1..i + 3);
                if one.is_some_and(|c| DATE_OPTIONS_1.contains(&c)) {
                    i += 2;
                    continue;
                }
                if two.is_some_and(|t| DATE_OPTIONS_2.contains(&t)) {
                    i += 3;
                    continue;
                }
                // GNU date's `%N` with an optional width.
                let width_end = i + 1 + bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                if bytes.get(width_end) == Some(&b'N') {
                    let shown = &body[i..=width_end];
                    let digits = match &body[i + 1..width_end] {
                        "" | "9" => 9,
                        "6" => 6,
                        "3" => 3,
                        _ => {
                            return Err(format!(
                                "invalid conversion specifier '{shown}' (fractions of a second are {FRACTIONS})"
                            ))
                        }
                    };
                    if !fractions {
                        return Err(format!(
                            "'{shown}' (a fraction of a second) is only accepted in the 'timestamps' option"
                        ));
                    }
                    if text_from < i {
                        pieces.push(Piece::Text(c_text(&bytes[text_from..i])));
                    }
                    pieces.push(Piece::Fraction(digits));
                    i = width_end + 1;
                    text_from = i;
                    continue;
                }
                let shown = String::from_utf8_lossy(&bytes[i..(i + 2).min(bytes.len())]).into_owned();
                return Err(format!("invalid conversion specifier '{shown}'"));
            }
            i += 1;
        }
        if !pieces.is_empty() && text_from < bytes.len() {
            pieces.push(Piece::Text(c_text(&bytes[text_from..])));
        }
        let format = CString::new(body).map_err(|_| "contains a NUL byte".to_string())?;
        Ok(DateFormat { format, utc, pieces })
    }

    /// The format as given (with its `!` for UTC).
    pub fn source(&self) -> String {
        format!("{}{}", if self.utc { "!" } else { "" }, self.format.to_string_lossy())
    }

    /// Whether the format has fractions of a second.
    #[inline]
    pub fn has_fraction(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// `os.date(format, time)`, appended to `out`; fractions of a second are zeros.
    pub fn render(&self, time: i64, out: &mut Vec<u8>) {
        self.render_at(time, 0, out);
    }

    /// [`DateFormat::render`] at `nanos` past `time`.
    pub fn render_at(&self, time: i64, nanos: u32, out: &mut Vec<u8>) {
        if self.format.as_bytes().is_empty() {
            return;
        }
        // SAFETY: tm is plain data filled by the libc call.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            let t: libc::time_t = time as libc::time_t;
            let ok = if self.utc {
                !libc::gmtime_r(&t, &mut tm).is_null()
            } else {
                !libc::localtime_r(&t, &mut tm).is_null()
            };
            if !ok {
                return;
            }
            tm
        };
        if self.pieces.is_empty() {
            strftime_into(&self.format, &tm, out);
            return;
        }
        let nanos = nine_digits(nanos);
        for piece in &self.pieces {
            match piece {
                Piece::Text(format) => strftime_into(format, &tm, out),
                Piece::Fraction(digits) => out.extend_from_slice(&nanos[..usize::from(*digits)]),
            }
        }
    }

    /// The digits all fractions write together.
    fn fraction_digits(&self) -> impl Iterator<Item = u8> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Fraction(digits) => Some(*digits),
            Piece::Text(_) => None,
        })
    }
}

/// Part of a format (one with a NUL byte is refused after the parts are made).
fn c_text(bytes: &[u8]) -> CString {
    CString::new(bytes).unwrap_or_default()
}

/// `strftime(format, tm)`, appended to `out`.
fn strftime_into(format: &CStr, tm: &libc::tm, out: &mut Vec<u8>) {
    let mut size = 256;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: strftime writes at most buf.len() bytes into buf; format is NUL-terminated.
        let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), size, format.as_ptr(), tm) };
        // 0 means "did not fit" (or an empty result); retry larger, like Lua's buffer.
        if n > 0 || size >= 64 * 1024 {
            out.extend_from_slice(&buf[..n]);
            return;
        }
        size *= 4;
    }
}

/// The nanoseconds as 9 digits, zero-padded; a fraction of `n` digits is the first `n` (so it
/// is truncated, never rounded up into the next second).
#[inline]
fn nine_digits(nanos: u32) -> [u8; 9] {
    let mut rest = nanos.min(999_999_999);
    let mut text = [b'0'; 9];
    for digit in text.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    text
}

/// The second a line timestamp's text was made for, and where that text's fraction digits are,
/// so that each line of the same second writes only those digits.
#[derive(Debug, Default)]
pub(crate) struct StampSecond {
    /// `None`: nothing rendered yet (or the text must be made afresh for every line).
    pub(crate) second: Option<i64>,
    /// (position in the text, index into the nine digits of the nanoseconds).
    digits: Vec<(usize, u8)>,
}

impl StampSecond {
    /// Renders `format` for `second` into `stamp` through `escape` (which appends its input,
    /// made safe for a log line, and returns false on failure) and finds where the fraction
    /// digits landed. Should they not be found (escaping that moves digits about), the text is
    /// rendered with `nanos` and made afresh for the next line too.
    pub(crate) fn refresh(
        &mut self,
        format: &DateFormat,
        second: i64,
        nanos: u32,
        stamp: &mut Vec<u8>,
        mut escape: impl FnMut(&[u8], &mut Vec<u8>) -> bool,
    ) {
        let mut render = |nanos: u32, out: &mut Vec<u8>| {
            let mut raw = Vec::new();
            format.render_at(second, nanos, &mut raw);
            out.clear();
            if !escape(&raw, out) {
                out.clear();
            }
        };
        render(0, stamp);
        self.second = Some(second);
        self.digits.clear();
        if !format.has_fraction() {
            return;
        }
        // Every fraction digit is 0 in one text and 9 in the other; nothing else differs.
        let mut nines = Vec::new();
        render(999_999_999, &mut nines);
        let mut places = (0..stamp.len()).filter(|&at| nines.len() == stamp.len() && stamp[at] != nines[at]);
        for digits in format.fraction_digits() {
            for index in 0..digits {
                match places.next() {
                    Some(at) if stamp[at] == b'0' && nines[at] == b'9' => self.digits.push((at, index)),
                    _ => {
                        self.digits.clear();
                        self.second = None;
                        render(nanos, stamp);
                        return;
                    }
                }
            }
        }
        if places.next().is_some() {
            self.digits.clear();
            self.second = None;
            render(nanos, stamp);
        }
    }

    /// Writes the digits of `nanos` into `stamp`, as [`StampSecond::refresh`] left it.
    #[inline]
    pub(crate) fn set_fraction(&self, nanos: u32, stamp: &mut [u8]) {
        let text = nine_digits(nanos);
        for &(at, index) in &self.digits {
            if let Some(byte) = stamp.get_mut(at) {
                *byte = text[usize::from(index)];
            }
        }
    }
}

/// The current time in whole seconds: `time()`, as Lua's `os.time()` reads it (on Linux a vDSO
/// call that reads the kernel's current second, cheaper than `clock_gettime`).
#[inline]
pub fn now_seconds() -> i64 {
    // SAFETY: a null argument asks time() only to return the value.
    unsafe { libc::time(std::ptr::null_mut()) as i64 }
}

/// The wall clock, `clock_gettime(CLOCK_REALTIME)`: (seconds, nanoseconds), for line
/// timestamps with fractions of a second.
#[inline]
pub fn now_precise() -> (i64, u32) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec for clock_gettime to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return (now_seconds(), 0);
    }
    let seconds: libc::time_t = ts.tv_sec;
    (seconds as i64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// The local time's offset from UTC at `time` in seconds, as `%z` writes it (`+hhmm`).
pub(crate) fn utc_offset_at(time: i64) -> Option<i64> {
    let mut text = Vec::new();
    if let Ok(format) = DateFormat::new("%z") {
        format.render(time, &mut text);
    }
    parse_utc_offset(&text)
}

/// A `%z` text (`+hhmm` or `-hhmm`) as seconds east of UTC.
fn parse_utc_offset(text: &[u8]) -> Option<i64> {
    let [sign, h1, h2, m1, m2] = *text else { return None };
    let digit = |b: u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
    let seconds = (digit(h1)? * 10 + digit(h2)?) * 3600 + (digit(m1)? * 10 + digit(m2)?) * 60;
    match sign {
        b'+' => Some(seconds),
        b'-' => Some(-seconds),
        _ => None,
    }
}

/// `os.date("%b %d %H:%M:%S", t)` (the dump header's time) for a local time `t` given as
/// seconds (UTC plus the offset), in the C locale, without the C library and without
/// allocating: async-signal-safe.
pub(crate) fn header_stamp(local: i64) -> [u8; 15] {
    const MONTHS: &[u8; 36] = b"JanFebMarAprMayJunJulAugSepOctNovDec";
    let (days, seconds) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: the month and day of a day count from 1970-01-01.
    let z = days + 719_468;
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 2 } else { shifted_month - 10 };
    let two = |n: i64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let m = (month as usize) * 3;
    let [d1, d2] = two(day);
    let [h1, h2] = two(seconds / 3600);
    let [n1, n2] = two(seconds / 60 % 60);
    let [s1, s2] = two(seconds % 60);
    [MONTHS[m], MONTHS[m + 1], MONTHS[m + 2], b' ', d1, d2, b' ', h1, h2, b':', n1, n2, b':', s1, s2]
}

/// `n` in decimal, in `buf`, without allocating: async-signal-safe.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_formats_are_checked_like_os_date() {
        assert!(DateFormat::new("%b %d %H:%M:%S ").is_ok());
        assert!(DateFormat::new("%Ey %Od").is_ok());
        assert!(DateFormat::new("%Q").is_err());
        assert!(DateFormat::new("%").is_err());
        assert!(DateFormat::new("*t").is_err());
        let mut out = Vec::new();
        DateFormat::new("!%Y-%m-%d %H:%M:%S").expect("valid").render(86_400 + 3661, &mut out);
        assert_eq!(out, b"1970-01-02 01:01:01");
    }

    fn rendered(format: &DateFormat, time: i64, nanos: u32) -> String {
        let mut out = Vec::new();
        format.render_at(time, nanos, &mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn fractions_write_their_number_of_digits() {
        let f = |format: &str| DateFormat::with_fractions(format).expect("valid");
        assert_eq!(rendered(&f("!%H:%M:%S.%3N"), 3661, 123_456_789), "01:01:01.123");
        assert_eq!(rendered(&f("!%H:%M:%S.%6N"), 3661, 123_456_789), "01:01:01.123456");
        assert_eq!(rendered(&f("!%H:%M:%S.%9N"), 3661, 123_456_789), "01:01:01.123456789");
        assert_eq!(rendered(&f("!%H:%M:%S.%N"), 3661, 123_456_789), "01:01:01.123456789");
        assert_eq!(rendered(&f("!%3N|%6N|%N|%S"), 3661, 1_000), "000|000001|000001000|01");
        assert_eq!(rendered(&f("!%3N"), 0, 7_000_000), "007");
        // Without a time to render (render), fractions are zeros.
        let mut out = Vec::new();
        f("!%S.%6N").render(59, &mut out);
        assert_eq!(out, b"59.000000");
    }

    #[test]
    fn fractions_are_truncated_not_rounded() {
        let f = DateFormat::with_fractions("!%H:%M:%S.%3N").expect("valid");
        assert_eq!(rendered(&f, 3661, 999_999_999), "01:01:01.999");
        assert_eq!(rendered(&f, 3661, 1_999_999), "01:01:01.001");
        assert_eq!(rendered(&DateFormat::with_fractions("!%S.%6N").expect("valid"), 1, 999_999_999), "01.999999");
        // Out of range (never from the clock): the largest fraction, not the next second.
        assert_eq!(rendered(&f, 3661, u32::MAX), "01:01:01.999");
    }

    #[test]
    fn percent_percent_n_is_a_literal() {
        let plain = DateFormat::new("%%N").expect("valid");
        assert!(!plain.has_fraction());
        assert_eq!(rendered(&plain, 0, 0), "%N");
        let both = DateFormat::with_fractions("!%%N%3N%%%N").expect("valid");
        assert!(both.has_fraction());
        assert_eq!(rendered(&both, 0, 123_456_789), "%N123%123456789");
        assert_eq!(rendered(&DateFormat::with_fractions("%%3N").expect("valid"), 0, 5), "%3N");
    }

    #[test]
    fn the_second_is_what_strftime_gives() {
        let whole = DateFormat::new("%b %d %H:%M:%S").expect("valid");
        let with = DateFormat::with_fractions("%b %d %H:%M:%S.%3N ").expect("valid");
        let whole_utc = DateFormat::new("!%Y-%m-%dT%H:%M:%S").expect("valid");
        let with_utc = DateFormat::with_fractions("!%Y-%m-%dT%H:%M:%S.%6NZ").expect("valid");
        let now = now_seconds();
        for time in [0, 86_399, 951_782_400, 1_700_000_000, now, now + 1] {
            assert_eq!(rendered(&with, time, 456_789_123), format!("{}.456 ", rendered(&whole, time, 0)));
            assert_eq!(rendered(&with_utc, time, 456_789_123), format!("{}.456789Z", rendered(&whole_utc, time, 0)));
        }
    }

    #[test]
    fn invalid_fractions_are_refused_with_a_clear_message() {
        for bad in ["%4N", "%1N", "%0N", "%12N", "%03N", "x %7N y"] {
            let why = DateFormat::with_fractions(bad).expect_err(bad);
            let shown = bad.trim_start_matches("x ").trim_end_matches(" y");
            assert!(why.contains(&format!("invalid conversion specifier '{shown}'")), "{bad}: {why}");
            assert!(why.contains("'%3N' (milliseconds)") && why.contains("'%N' (nanoseconds)"), "{why}");
        }
        // Digits not followed by N stay what os.date says about them.
        assert_eq!(DateFormat::with_fractions("%3d").expect_err("bad"), "invalid conversion specifier '%3'");
        assert_eq!(DateFormat::with_fractions("%3").expect_err("bad"), "invalid conversion specifier '%3'");
        // Only line timestamps take fractions: the header and the template filters do not.
        for only_lines in ["%3N", "%N", "!%H:%M:%S.%9N"] {
            assert!(DateFormat::with_fractions(only_lines).is_ok());
            let why = DateFormat::new(only_lines).expect_err(only_lines);
            assert!(why.ends_with("is only accepted in the 'timestamps' option"), "{why}");
        }
        assert_eq!(
            DateFormat::new("%3N").expect_err("bad"),
            "'%3N' (a fraction of a second) is only accepted in the 'timestamps' option"
        );
        // As before: a bad conversion is reported ahead of a NUL byte.
        assert_eq!(DateFormat::with_fractions("%3N\0%Q").expect_err("bad"), "invalid conversion specifier '%Q'");
        assert_eq!(DateFormat::with_fractions("%3N\0x").expect_err("bad"), "contains a NUL byte");
    }

    #[test]
    fn formats_without_fractions_are_unchanged() {
        for format in [DEFAULT_TIMESTAMP, "!%Y-%m-%dT%H:%M:%S ", "%H%M%S", "%Y%m%d", "%z", ""] {
            let plain = DateFormat::new(format).expect("valid");
            let lines = DateFormat::with_fractions(format).expect("valid");
            assert_eq!(plain, lines);
            assert!(!lines.has_fraction());
            assert_eq!(lines.source(), format);
        }
        let default = DateFormat::with_fractions(DEFAULT_TIMESTAMP).expect("valid");
        let mut out = Vec::new();
        default.render(1_700_000_000, &mut out);
        let mut expected = Vec::new();
        DateFormat::new(DEFAULT_TIMESTAMP).expect("valid").render(1_700_000_000, &mut expected);
        assert_eq!(out, expected);
        assert_eq!(out.len(), 16);
        let utc = DateFormat::new("!%b %d %H:%M:%S ").expect("valid");
        assert_eq!(rendered(&utc, 1_700_000_000, 999), "Nov 14 22:13:20 ");
    }

    /// What the sink does for each line, step by step.
    fn stamps(format: &DateFormat, lines: &[(i64, u32)], escape: fn(&[u8], &mut Vec<u8>) -> bool) -> Vec<Vec<u8>> {
        let mut second = StampSecond::default();
        let mut stamp = Vec::new();
        let mut out = Vec::new();
        for &(time, nanos) in lines {
            if second.second != Some(time) {
                second.refresh(format, time, nanos, &mut stamp, escape);
            }
            second.set_fraction(nanos, &mut stamp);
            out.push(stamp.clone());
        }
        out
    }

    #[test]
    fn cached_stamps_equal_rendering_each_line() {
        let sanitize: fn(&[u8], &mut Vec<u8>) -> bool = |raw, out| {
            crate::pure::format::sanitize_into(raw, out);
            true
        };
        let lines = [(100, 0), (100, 123_456_789), (100, 999_999_999), (101, 5), (101, 500_000_000), (7, 42)];
        for format in ["!%H:%M:%S.%3N ", "!%S\u{1}%6N\n%M|%N|%3N", "!%N", "!%3N%3N", "%b %d %H:%M:%S "] {
            let format = DateFormat::with_fractions(format).expect("valid");
            let got = stamps(&format, &lines, sanitize);
            for (i, &(time, nanos)) in lines.iter().enumerate() {
                let mut raw = Vec::new();
                format.render_at(time, nanos, &mut raw);
                let mut expected = Vec::new();
                sanitize(&raw, &mut expected);
                assert_eq!(got[i], expected, "{format:?} at {time}.{nanos}");
            }
        }
        // An escape that moves the digits about: rendered afresh for every line, still right.
        let drop_zeros: fn(&[u8], &mut Vec<u8>) -> bool = |raw, out| {
            out.extend(raw.iter().filter(|&&b| b != b'0'));
            true
        };
        let format = DateFormat::with_fractions("!%S.%3N").expect("valid");
        let got = stamps(&format, &[(100, 120_000_000), (100, 340_000_000)], drop_zeros);
        assert_eq!(got, [b"4.12".to_vec(), b"4.34".to_vec()]);
        // An escape that fails: no stamp.
        let fail: fn(&[u8], &mut Vec<u8>) -> bool = |raw, out| {
            out.extend_from_slice(raw);
            false
        };
        assert_eq!(stamps(&format, &[(100, 120_000_000)], fail), [Vec::<u8>::new()]);
    }

    #[test]
    fn the_precise_clock_agrees_with_the_second() {
        let before = now_seconds();
        let (second, nanos) = now_precise();
        let after = now_seconds();
        assert!(nanos < 1_000_000_000);
        // time() may trail the precise clock by up to one tick.
        assert!(before <= second && second <= after + 1, "{before} {second} {after}");
    }

    #[test]
    fn the_header_time_is_what_strftime_writes() {
        let format = DateFormat::new("!%b %d %H:%M:%S").expect("format");
        let mut t: i64 = -86_400 * 400;
        while t < 4_200_000_000 {
            let mut expected = Vec::new();
            format.render(t, &mut expected);
            assert_eq!(String::from_utf8_lossy(&header_stamp(t)), String::from_utf8_lossy(&expected), "t = {t}");
            t += 86_400 * 7 + 3_607;
        }
        assert_eq!(parse_utc_offset(b"+0530"), Some(19_800));
        assert_eq!(parse_utc_offset(b"-0100"), Some(-3_600));
        assert_eq!(parse_utc_offset(b"UTC"), None);
    }

    #[test]
    fn decimals() {
        let mut digits = [0u8; 20];
        for n in [0, 7, 10, 4_194_304, u64::MAX] {
            assert_eq!(decimal(n, &mut digits), n.to_string().as_bytes());
        }
    }
}
