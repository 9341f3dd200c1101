//! Fuzzes the util.format restatement: any format string with any arguments must format
//! without panicking, a result reported as plain must really be plain ASCII, and whatever the
//! one-pass path (`format_simple`) accepts it must write exactly as the general path does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_ringbuffer_native::format::{format_message, format_simple, Arg, ArgValues, Args, Compiled, FastLine, FormatError};

/// Arguments decoded from the fuzz input; the Lua-only cases answer with fixed text.
struct FuzzArgs<'a> {
    args: Vec<Arg<'a>>,
}

impl<'a> ArgValues<'a> for FuzzArgs<'a> {
    fn count(&self) -> usize {
        self.args.len()
    }
    fn get(&self, i: usize) -> Arg<'a> {
        self.args.get(i).copied().unwrap_or(Arg::Nil)
    }
}

impl<'a> Args<'a> for FuzzArgs<'a> {
    fn lua_format(&mut self, spec: &[u8], _i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
        if spec.len() % 3 == 0 {
            return Err("lua error".into());
        }
        out.extend_from_slice(b"<lua>");
        Ok(())
    }
    fn tostring(&mut self, _i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
        out.extend_from_slice(b"table: 0x0\n\x01");
        Ok(())
    }
    fn lua_quote(&mut self, _text: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
        out.extend_from_slice(b"\"q\"");
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // Layout: format string, then arguments, separated by 0xFF; the first byte of each
    // argument picks its kind.
    let mut parts = data.split(|&b| b == 0xff);
    let fmt = parts.next().unwrap_or_default();
    let args = parts
        .take(16)
        .map(|p| match p.first().copied().unwrap_or(0) % 6 {
            0 => Arg::Nil,
            1 => Arg::Bool(p.len() % 2 == 0),
            2 => Arg::Int(p.iter().fold(0i64, |n, &b| n.wrapping_mul(257).wrapping_add(i64::from(b)))),
            3 => Arg::Float(f64::from_bits(p.iter().fold(0u64, |n, &b| n.rotate_left(8) ^ u64::from(b)))),
            4 => Arg::Str(&p[1..]),
            _ => Arg::Other,
        })
        .collect();
    let mut args = FuzzArgs { args };
    let mut out = Vec::new();
    let general = format_message(fmt, &mut args, &mut out);
    if let Ok(true) = general {
        assert!(out.iter().all(|b| (0x20..0x80).contains(b)), "claimed plain: {out:?}");
    }
    if let Ok(compiled) = Compiled::new(fmt) {
        // A small buffer now and then, so running out of room is exercised too.
        let mut buffer = vec![0u8; if fmt.len() % 7 == 0 { 16 } else { 4096 }];
        let mut line = FastLine::new(&mut buffer);
        if format_simple(&compiled, &args, &mut line).is_some() {
            assert_eq!(general, Ok(true));
            assert_eq!(line.bytes(), &out[..]);
        }
    }
});
