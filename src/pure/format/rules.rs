//! `util.format`'s rules: the general path, which takes any format and any arguments, does
//! natively whatever has a certain answer and asks Lua (through [`Args`]) for the rest.

use super::compile::{Compiled, Piece};
use super::copy::needs_care;
use super::numbers::{float_is_integer, push_float, push_g, push_int, push_whole};
use super::{Arg, Args, FormatError};

/// Appends `s` with control characters made visible and every newline followed by a tab,
/// as `util.format` does for valid UTF-8: `gsub("[%z\1-\8\11-\31\127]", pictures)` then
/// `gsub("\n\t?", "\n\t")`.
pub(crate) fn sanitize_into(s: &[u8], out: &mut Vec<u8>) {
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
pub(crate) fn string_field<'a, A: Args<'a> + ?Sized>(
    s: &[u8],
    args: &mut A,
    out: &mut Vec<u8>,
) -> Result<bool, FormatError> {
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

/// Appends `util.format(fmt, args...)`. Returns whether every byte appended is plain
/// (printable ASCII), so the caller can skip looking at the message again.
pub fn format_message<'a, A: Args<'a> + ?Sized>(
    fmt: &[u8],
    args: &mut A,
    out: &mut Vec<u8>,
) -> Result<bool, FormatError> {
    format_compiled(fmt, &Compiled::new(fmt)?, args, out)
}

/// [`format_message`] for a format already split by [`Compiled::new`] (from these bytes).
pub(super) fn format_compiled<'a, A: Args<'a> + ?Sized>(
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
        // Only on a Lua without integers (see `numbers`).
        (Arg::Float(n), true, b'd' | b'i') if float_is_integer(n) => push_whole(n, out),
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

/// Arguments without Lua for the tests of this module and its siblings: records which cases
/// were delegated.
#[cfg(test)]
pub(super) mod testing {
    use super::super::{Arg, ArgValues, Args, FormatError};

    pub(in super::super) struct Plain<'a> {
        pub(in super::super) args: Vec<Arg<'a>>,
        pub(in super::super) delegated: Vec<String>,
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
}

#[cfg(test)]
mod tests {
    use super::super::INTEGER_SUBTYPE;
    use super::testing::Plain;
    use super::*;

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
        // A whole float goes through %d only on a Lua without integers, which prints it as "3".
        let (whole_d, whole_s) = if INTEGER_SUBTYPE { ("[3.0]", "2.0") } else { ("3", "2") };
        assert_eq!(fmt("%d", vec![Arg::Float(3.0)]).0, whole_d);
        assert_eq!(fmt("%d", vec![Arg::Float(2f64.powi(60))]).0, "[1.1529215046068e+18]");
        assert_eq!(fmt("%d", vec![Arg::Bool(false)]).0, "[false]");
        assert_eq!(fmt("%d", vec![Arg::Str(b"12")]).0, "[12]");
        assert_eq!(fmt("%s", vec![Arg::Float(1e15)]).0, "1e+15");
        assert_eq!(fmt("%s", vec![Arg::Float(2.0)]).0, whole_s);
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
    fn dangling_percent_is_an_error() {
        let mut plain = Plain { args: vec![], delegated: vec![] };
        assert!(format_message(b"100%", &mut plain, &mut Vec::new()).is_err());
    }
}
