//! Numbers as the Lua the library is built for prints them: `tostring`, `string.format("%g")`
//! and `"%d"`, and which numbers `util.format` lets through `%d`. Chosen when the library is
//! built (by its Lua feature), since a built library only ever loads into that one Lua.
//!
//! - Lua 5.3 and 5.4 have an integer subtype. A float prints with `%.14g`, plus `.0` when that
//!   looks like an integer (`3.0`, `-0.0`; `1e+15` stays). `util.format` lets only integers
//!   through `%d` (`math.type`); a float there prints as `[tostring(n)]`.
//! - Lua 5.1 and 5.2 have floats only, printed with `%.14g` (`3`, `-0`, `1e+15`). Prosody 0.12's
//!   `util.format` (13 needs 5.3 or later) lets a float through `%d` if it is whole and within
//!   ±2^53 (its `num_type` without `math.type`), which `string.format` prints as a C integer.
//! - LuaJIT is 5.1 for all of this, except that it prints with a formatter of its own
//!   (lj_strfmt_num.c), not C's printf: it writes every NaN as `nan` where printf writes `-nan`
//!   for one with the sign bit (`0/0` on x86-64), and it rounds a value exactly halfway between
//!   two outputs away from zero where printf (glibc) rounds it to even: `%g` of 0.125 is `0.13`,
//!   of 123456.5 is `123457` (glibc: `0.12`, `123456`).

/// Whether the Lua has an integer subtype (5.3, 5.4): then [`Arg::Int`](super::Arg::Int) is
/// an integer and [`Arg::Float`](super::Arg::Float) a float, as `math.type` tells them; without
/// one every number is a float.
pub const INTEGER_SUBTYPE: bool = cfg!(any(feature = "lua53", feature = "lua54"));

/// Whether LuaJIT's own number formatter prints, rather than C's `snprintf`.
const LUAJIT: bool = cfg!(feature = "luajit");

/// The Lua the library is built for, as `_VERSION` (or `jit.version`) names it.
pub const LUA_NAME: &str = if cfg!(feature = "lua51") {
    "Lua 5.1"
} else if cfg!(feature = "lua52") {
    "Lua 5.2"
} else if cfg!(feature = "lua53") {
    "Lua 5.3"
} else if LUAJIT {
    "LuaJIT"
} else {
    "Lua 5.4"
};

use std::ffi::{c_int, CStr};

/// 2^53: the bound of `util.format`'s integer test without `math.type`.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// `tostring` of a float (of any number, on a Lua without integers).
pub(crate) fn push_float(n: f64, out: &mut Vec<u8>) {
    let start = out.len();
    push_lua_g(14, n, out);
    if INTEGER_SUBTYPE && out[start..].iter().all(|b| b"-0123456789".contains(b)) {
        out.extend_from_slice(b".0");
    }
}

/// `string.format("%g", n)`.
pub(super) fn push_g(n: f64, out: &mut Vec<u8>) {
    push_lua_g(6, n, out);
}

/// `%.{digits}g` of `n` as the Lua prints it: C's printf, or LuaJIT's rules on top of it.
fn push_lua_g(digits: c_int, n: f64, out: &mut Vec<u8>) {
    if LUAJIT {
        if n.is_nan() {
            out.extend_from_slice(b"nan");
            return;
        }
        if is_exact_tie(digits, n) {
            // One unit in the last place away from zero: printf then rounds the way LuaJIT
            // does, and nothing else changes (an ulp is far below half a unit in the
            // 17th significant digit, let alone the 14th).
            let away = f64::from_bits(n.to_bits() + 1);
            c_format_float(c"%.*g", digits, away, out);
            return;
        }
    }
    c_format_float(c"%.*g", digits, n, out);
}

/// Whether the exact decimal value of `n` (finite) is `digits` significant digits followed by a
/// 5 and nothing else: halfway between two roundings, where LuaJIT rounds away from zero and
/// printf to even. Looks at four digits past the cut first (a tie shows `5000` there, and
/// almost nothing else does), and only then at the value's whole expansion (a double's exact
/// decimal expansion has at most 767 significant digits).
fn is_exact_tie(digits: c_int, n: f64) -> bool {
    let cut = digits.max(1) as usize;
    let mut short = [0u8; 64];
    let shown = mantissa_digits(&mut short, cut as c_int + 3, n);
    if shown.get(cut..cut + 4) != Some(b"5000".as_slice()) {
        return false;
    }
    let mut long = [0u8; 800];
    let shown = mantissa_digits(&mut long, 770, n);
    shown.len() > cut && shown[cut] == b'5' && shown[cut + 1..].iter().all(|&b| b == b'0')
}

/// The significant digits of `%.{precision}e` of `n` (the mantissa without its sign and point),
/// written into `buf`.
fn mantissa_digits(buf: &mut [u8], precision: c_int, n: f64) -> &[u8] {
    let len = c_format_into(buf, c"%.*e", precision, n.abs());
    let text = &mut buf[..len];
    let end = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    // "d.ddd": the leading digit moves over the point.
    if end >= 2 && text[1] == b'.' {
        text[1] = text[0];
        &text[1..end]
    } else {
        &text[..end]
    }
}

/// Whether `util.format` lets this float through `%d`/`%i` (to `string.format`, which prints it
/// as [`push_whole`] does): never where `math.type` tells floats from integers; otherwise if it
/// is whole and within ±2^53.
#[inline(always)]
pub(super) fn float_is_integer(n: f64) -> bool {
    !INTEGER_SUBTYPE && n % 1.0 == 0.0 && n.abs() <= MAX_EXACT
}

/// `string.format("%d", n)` for a float that [`float_is_integer`] accepts: a C integer.
pub(super) fn push_whole(n: f64, out: &mut Vec<u8>) {
    push_int(n as i64, out);
}

/// Whether `tostring(n)` of this float is the decimal text of `n as i64`, on a Lua without
/// integers: whole, fewer than 15 digits (so `%.14g` writes no exponent), and not `-0`.
#[inline(always)]
pub(super) fn float_prints_whole(n: f64) -> bool {
    !INTEGER_SUBTYPE && n % 1.0 == 0.0 && n.abs() < 1e14 && !(n == 0.0 && n.is_sign_negative())
}

/// Lua `tostring` of an integer.
pub(super) fn push_int(n: i64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(int_text(n, &mut digits));
}

/// The decimal text of `n`, written at the end of `digits`.
#[inline(always)]
pub(super) fn int_text(n: i64, digits: &mut [u8; 20]) -> &[u8] {
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

/// Appends C's `snprintf(fmt, precision, n)`; `fmt` is `%.*g`, with a precision of at most 17.
fn c_format_float(fmt: &CStr, precision: c_int, n: f64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 64];
    let written = c_format_into(&mut buf, fmt, precision, n);
    out.extend_from_slice(&buf[..written]);
}

/// C's `snprintf(fmt, precision, n)` into `buf`, cut to fit; returns the length written. `fmt`
/// must take an `int` precision and one double (`%.*g`, `%.*e`).
fn c_format_into(buf: &mut [u8], fmt: &CStr, precision: c_int, n: f64) -> usize {
    // SAFETY: fmt is NUL-terminated and takes exactly an int and a double (the callers' formats
    // are `%.*g` and `%.*e`); snprintf writes at most buf.len() bytes (NUL included) into buf.
    let written = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), precision, n) };
    usize::try_from(written).unwrap_or(0).min(buf.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(n: f64) -> String {
        let mut out = Vec::new();
        push_float(n, &mut out);
        String::from_utf8(out).expect("ascii")
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
    fn floats_print_like_this_lua() {
        let integral = |with_subtype: &'static str, without: &'static str| {
            if INTEGER_SUBTYPE {
                with_subtype
            } else {
                without
            }
        };
        assert_eq!(float(3.0), integral("3.0", "3"));
        assert_eq!(float(-0.0), integral("-0.0", "-0"));
        assert_eq!(float(1e15), "1e+15");
        assert_eq!(float(2f64.powi(53)), "9.007199254741e+15");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(f64::INFINITY), "inf");
        assert_eq!(float(-f64::NAN), if LUAJIT { "nan" } else { "-nan" });
        // Halfway at the 14th digit: LuaJIT rounds away from zero, printf to even (and 5.3 and
        // 5.4 then see an integer's digits, as they do).
        let tie = if LUAJIT { "12345678901235" } else { integral("12345678901234.0", "12345678901234") };
        assert_eq!(float(12_345_678_901_234.5), tie);
    }

    #[test]
    fn ties_are_told_apart_from_near_ties() {
        assert!(is_exact_tie(6, 123_456.5));
        assert!(is_exact_tie(2, 0.125));
        assert!(is_exact_tie(6, -48_017.25));
        assert!(is_exact_tie(14, 12_345_678_901_234.5));
        // 0.15 is not exactly 15/100 in binary; 1.5 at 6 digits is no tie; whole numbers neither.
        for (digits, n) in [(1, 0.15), (6, 1.5), (14, 3.0), (6, 0.0), (6, 5e-324), (14, 1e300)] {
            assert!(!is_exact_tie(digits, n), "{digits} {n}");
        }
        let mut g = Vec::new();
        push_g(0.125, &mut g);
        push_g(123_456.5, &mut g);
        assert_eq!(g, if LUAJIT { b"0.125123457".as_slice() } else { b"0.125123456".as_slice() });
    }

    #[test]
    fn whole_floats_under_d_only_without_integers() {
        for n in [0.0, -0.0, 3.0, -3.0, MAX_EXACT, -MAX_EXACT] {
            assert_eq!(float_is_integer(n), !INTEGER_SUBTYPE, "{n}");
        }
        for n in [0.5, MAX_EXACT * 2.0, f64::INFINITY, f64::NAN] {
            assert!(!float_is_integer(n), "{n}");
        }
        for n in [1.0, -99_999_999_999_999.0, 0.0] {
            assert_eq!(float_prints_whole(n), !INTEGER_SUBTYPE, "{n}");
            if float_prints_whole(n) {
                let mut whole = Vec::new();
                push_whole(n, &mut whole);
                assert_eq!(float(n).into_bytes(), whole, "{n}");
            }
        }
        for n in [-0.0, 1e14, 0.5] {
            assert!(!float_prints_whole(n), "{n}");
        }
    }
}
