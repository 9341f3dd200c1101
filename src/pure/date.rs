//! Dates as Lua's `os.date` writes them: the line timestamps, the dump header's time and the
//! `{time|...}` template filters. Formats are checked once (against what Lua 5.4 accepts) and
//! rendered by the C library's `strftime`, which is what `os.date` itself calls, so the bytes are
//! the same in every locale and time zone.

use std::ffi::CString;

/// The timestamp format of the dump header and of the default line timestamps.
pub(crate) const DEFAULT_TIMESTAMP: &str = "%b %d %H:%M:%S ";

/// A strftime format as Lua's `os.date` accepts it, checked once when the sink is made.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    format: CString,
    utc: bool,
}

/// The conversions Lua 5.4's `os.date` allows (LUA_STRFTIMEOPTIONS for C99).
const DATE_OPTIONS_1: &[u8] = b"aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%";
const DATE_OPTIONS_2: &[&[u8]] = &[
    b"Ec", b"EC", b"Ex", b"EX", b"Ey", b"EY", b"Od", b"Oe", b"OH", b"OI", b"Om", b"OM", b"OS", b"Ou", b"OU", b"OV",
    b"Ow", b"OW", b"Oy",
];

impl DateFormat {
    /// Parses an `os.date` format; `!` at the start means UTC, as in Lua.
    pub fn new(format: &str) -> Result<Self, String> {
        let (utc, body) = match format.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        if body.starts_with("*t") {
            return Err("'*t' makes os.date return a table, not text".into());
        }
        let bytes = body.as_bytes();
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
                let shown = String::from_utf8_lossy(&bytes[i..(i + 2).min(bytes.len())]).into_owned();
                return Err(format!("invalid conversion specifier '{shown}'"));
            }
            i += 1;
        }
        let format = CString::new(body).map_err(|_| "contains a NUL byte".to_string())?;
        Ok(DateFormat { format, utc })
    }

    /// The format as given (with its `!` for UTC).
    pub fn source(&self) -> String {
        format!("{}{}", if self.utc { "!" } else { "" }, self.format.to_string_lossy())
    }

    /// `os.date(format, time)`, appended to `out`.
    pub fn render(&self, time: i64, out: &mut Vec<u8>) {
        if self.format.as_bytes().is_empty() {
            return;
        }
        // SAFETY: tm is plain data filled by the libc call; strftime writes at most buf.len().
        unsafe {
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
            let mut size = 256;
            loop {
                let mut buf = vec![0u8; size];
                let n = libc::strftime(buf.as_mut_ptr().cast(), size, self.format.as_ptr(), &tm);
                // 0 means "did not fit" (or an empty result); retry larger, like Lua's buffer.
                if n > 0 || size >= 64 * 1024 {
                    out.extend_from_slice(&buf[..n]);
                    return;
                }
                size *= 4;
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
}
