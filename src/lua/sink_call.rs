//! The sink function Prosody calls for every log line: `sink(source, level, message, ...)`.
//!
//! A raw C function, because it runs for every line. The common line (string source and level,
//! a format seen before made of `%s`, `%d` and `%i`, plain ASCII strings, integers, booleans
//! and nil) is done in one pass: its arguments read straight off the stack where `lua_stack`'s
//! probe allows (through the C API otherwise), formatted by `format::format_simple` directly
//! into the ring's free space, with no Lua call and no copy. Every other line takes the general
//! path: formatted in Rust into a buffer, calling Lua only for what Lua alone can answer
//! (`__tostring`, `%q`, invalid UTF-8, unusual conversions) through Prosody's own `util.format`
//! under `lua_pcall`, so errors there never escape. Neither path creates Lua values for
//! strings, numbers or booleans.
//!
//! Upvalues: 1 = light userdata pointing to the [`LuaSink`], 2 = `util.format.format`,
//! 3 = `tostring`, 4 = the handle userdata that keeps the `LuaSink` alive, 5 = util.stanza's
//! metatable and 6 = its original `__tostring` (both may be nil), 7 to 10 = the key strings
//! native stanza printing looks up, 11 = the table that keeps cached format strings alive.
//!
//! Nothing here may raise into the caller or let a panic cross into Lua. Values with destructors
//! are held across Lua calls that could longjmp only on memory exhaustion, where they leak.

use std::cell::RefCell;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mlua::ffi;

use crate::pure::format::{self, Arg, ArgValues, Args, FastLine, FormatError};
use crate::lua::stack::{self as lua_stack, Frame};
use crate::lua::stanza as lua_stanza;
use crate::runtime::sink::Sink;

/// Per-sink state owned by the Lua thread (a `RefCell`: only that thread ever touches it).
pub struct LuaSink {
    pub sink: Arc<Sink>,
    scratch: RefCell<Scratch>,
}

/// Buffers reused from line to line, and the timestamp of the current second.
#[derive(Default)]
struct Scratch {
    /// The fast path's buffer (see `record_simple`); made on first use.
    simple: Vec<u8>,
    line: Vec<u8>,
    message: Vec<u8>,
    stamp_second: Option<i64>,
    stamp: Vec<u8>,
    formats: format::FormatCache,
}

/// Longer lines take the general path.
const SIMPLE_LINE_MAX: usize = 8 * 1024;

impl LuaSink {
    pub fn new(sink: Arc<Sink>) -> Self {
        LuaSink { sink, scratch: RefCell::new(Scratch::default()) }
    }
}

const ARG_SOURCE: c_int = 1;
const ARG_LEVEL: c_int = 2;
const ARG_MESSAGE: c_int = 3;
const UPVALUE_FORMAT: c_int = 2;
const UPVALUE_TOSTRING: c_int = 3;
const UPVALUE_STANZA_MT: c_int = 5;
const UPVALUE_STANZA_TOSTRING: c_int = 6;
/// Upvalues 7 to 10: the strings "__tostring", "name", "attr", "xmlns".
const UPVALUE_KEYS: c_int = 7;
/// Upvalue 11: a table with room for one string per `FormatCache` slot, which keeps each
/// cached format string alive (see `Args::keep_format`).
const UPVALUE_FORMATS_KEPT: c_int = 11;

/// The sink function.
///
/// # Safety
/// Only for Lua to call, as a C closure built by `lua_binding` with the upvalues listed above.
pub unsafe extern "C-unwind" fn sink_call(state: *mut ffi::lua_State) -> c_int {
    // A panic here would be a bug; the line is lost but Prosody carries on.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // The same pointer two ways: straight from the closure where lua_stack's probe passed.
        let mut this = std::ptr::null_mut();
        if lua_stack::usable() {
            this = lua_stack::first_upvalue_pointer(state);
        }
        if this.is_null() {
            this = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1));
        }
        let this = this as *const LuaSink;
        if let Some(this) = this.as_ref() {
            record(state, this);
        }
    }));
    0
}

unsafe fn record(state: *mut ffi::lua_State, this: &LuaSink) {
    // A __tostring that logs re-enters this sink while the scratch buffers are in use.
    let mut own;
    let mut guard = this.scratch.try_borrow_mut();
    // Only the sink's own cache may keep formats alive in the upvalue table, slot for slot.
    let (scratch, keep_formats): (&mut Scratch, bool) = match guard.as_deref_mut() {
        Ok(s) => (s, true),
        Err(_) => {
            own = Scratch::default();
            (&mut own, false)
        }
    };
    let Scratch { simple, line, message, stamp_second, stamp, formats } = scratch;

    if let Some(date) = &this.sink.options.timestamps {
        let now = crate::pure::date::now_seconds();
        if *stamp_second != Some(now) {
            let mut raw = Vec::new();
            date.render(now, &mut raw);
            stamp.clear();
            if format::string_field(&raw, &mut StackArgs::from(state, 1, false), stamp).is_err() {
                stamp.clear();
            }
            *stamp_second = Some(now);
        }
    }
    // The common line goes straight into the ring; if the ring's current chunk is too full
    // for it, into `simple` and then the ring; anything else takes the general path.
    let mut full = false;
    let stored = this.sink.push_in_place(|room| {
        let mut out = FastLine::new(room);
        let done = simple_line(state, stamp, formats, &mut out);
        full = out.is_full();
        done.map(|()| out.len())
    });
    if stored {
        return;
    }
    if full {
        if simple.is_empty() {
            simple.resize(SIMPLE_LINE_MAX, 0);
        }
        let mut out = FastLine::new(simple);
        if simple_line(state, stamp, formats, &mut out).is_some() {
            this.sink.push(out.bytes());
            return;
        }
    }

    let mut fields = StackArgs::from(state, 1, false);
    line.clear();
    line.extend_from_slice(stamp);
    field(&mut fields, ARG_SOURCE, line);
    line.push(b'\t');
    field(&mut fields, ARG_LEVEL, line);
    line.push(b'\t');

    // The message is formatted straight into the line; only a message that is not plain
    // ASCII is taken out again for the line-level pass (control pictures, UTF-8 check).
    let message_start = line.len();
    let mut args = StackArgs::from(state, ARG_MESSAGE + 1, keep_formats);
    let formatted = match fields.get_index(ARG_MESSAGE) {
        Arg::Str(fmt) => formats.format(fmt, &mut args, line),
        _ => Err("the log message is not a string".to_string()),
    };
    if !matches!(formatted, Ok(true)) {
        message.clear();
        message.extend_from_slice(&line[message_start..]);
        line.truncate(message_start);
        if let Err(why) = formatted {
            describe_failure(&mut fields, &mut args, &why, message);
        }
        if format::string_field(message, &mut fields, line).is_err() {
            format::sanitize_into(&String::from_utf8_lossy(message).into_owned().into_bytes(), line);
        }
    }
    line.push(b'\n');
    this.sink.push(line);
}

/// [`record_simple`] on the running call's arguments, read straight off the stack where
/// `lua_stack`'s probe allows, through the C API otherwise.
#[inline(always)]
unsafe fn simple_line(
    state: *mut ffi::lua_State,
    stamp: &[u8],
    formats: &format::FormatCache,
    out: &mut FastLine<'_>,
) -> Option<()> {
    if lua_stack::usable() {
        let frame = Frame::current(state);
        record_simple(&frame, &frame.skip(ARG_MESSAGE as usize), stamp, formats, out)
    } else {
        let (frame, args) = (StackArgs::from(state, 1, false), StackArgs::from(state, ARG_MESSAGE + 1, false));
        record_simple(&frame, &args, stamp, formats, out)
    }
}

/// The common line in one pass, without calling Lua: string source and level, and a message
/// that `format::format_simple` can take (a cached format, or one without conversions and
/// arguments). `None` leaves nothing stored; the general path then starts over.
/// `frame` holds all of the call's arguments, `args` those after the message.
#[inline(always)]
fn record_simple<'a, V: ArgValues<'a>>(
    frame: &V,
    args: &V,
    stamp: &[u8],
    formats: &format::FormatCache,
    out: &mut FastLine<'_>,
) -> Option<()> {
    let (Arg::Str(source), Arg::Str(level), Arg::Str(fmt)) = (frame.get(0), frame.get(1), frame.get(2)) else {
        return None;
    };
    out.trusted(stamp)?;
    out.plain(source)?;
    out.trusted(b"\t")?;
    out.plain(level)?;
    out.trusted(b"\t")?;
    match formats.lookup(fmt) {
        Some(compiled) => format::format_simple(compiled, args, out)?,
        None if args.count() == 0 && !fmt.contains(&b'%') => out.plain(fmt)?,
        None => return None,
    }
    out.trusted(b"\n")
}

/// A source or level name: `%s` rules, `tostring` for non-strings.
unsafe fn field(args: &mut StackArgs, index: c_int, out: &mut Vec<u8>) {
    let result = match args.get_index(index) {
        Arg::Str(s) => format::string_field(s, args, out).map(|_| ()),
        _ => args.call_format(b"%s", Some(index), None, out),
    };
    if let Err(why) = result {
        out.extend_from_slice(format!("[{why}]").as_bytes());
    }
}

/// The message Prosody's `util.format` would have raised on: say why, then show the raw format
/// and every argument, so nothing is lost.
unsafe fn describe_failure(fields: &mut StackArgs, args: &mut StackArgs, why: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(format!("[format error: {why}] ").as_bytes());
    match fields.get_index(ARG_MESSAGE) {
        Arg::Str(fmt) => out.extend_from_slice(fmt),
        _ => {
            if fields.tostring_at(ARG_MESSAGE, out).is_err() {
                out.extend_from_slice(b"?");
            }
        }
    }
    if let Err(e) = format::format_message(b"", args, out) {
        out.extend_from_slice(format!(" [{e}]").as_bytes());
    }
}

/// A window onto the Lua stack: argument `i` is at stack index `base + i`.
struct StackArgs {
    state: *mut ffi::lua_State,
    base: c_int,
    count: usize,
    /// `keep_format` stores the message (stack index `ARG_MESSAGE`) in the upvalue table.
    keep_formats: bool,
}

impl StackArgs {
    /// The call's arguments from stack index `base` on.
    unsafe fn from(state: *mut ffi::lua_State, base: c_int, keep_formats: bool) -> Self {
        let count = (ffi::lua_gettop(state) - base + 1).max(0) as usize;
        StackArgs { state, base, count, keep_formats }
    }

    /// The value at stack `index`. Strings borrow from the stack, valid while the call runs.
    unsafe fn get_index<'a>(&self, index: c_int) -> Arg<'a> {
        let l = self.state;
        match ffi::lua_type(l, index) {
            ffi::LUA_TNIL | ffi::LUA_TNONE => Arg::Nil,
            ffi::LUA_TBOOLEAN => Arg::Bool(ffi::lua_toboolean(l, index) != 0),
            ffi::LUA_TNUMBER => {
                if ffi::lua_isinteger(l, index) != 0 {
                    Arg::Int(ffi::lua_tointegerx(l, index, std::ptr::null_mut()))
                } else {
                    Arg::Float(ffi::lua_tonumberx(l, index, std::ptr::null_mut()))
                }
            }
            ffi::LUA_TSTRING => {
                let mut len = 0usize;
                let ptr = ffi::lua_tolstring(l, index, &mut len);
                if ptr.is_null() {
                    Arg::Other
                } else {
                    // The string stays on the stack, so it outlives this borrow.
                    Arg::Str(std::slice::from_raw_parts(ptr as *const u8, len))
                }
            }
            _ => Arg::Other,
        }
    }

    /// Calls `util.format(spec, value)` where value is the stack slot `index` or `text`,
    /// protected; appends the result.
    unsafe fn call_format(
        &mut self,
        spec: &[u8],
        index: Option<c_int>,
        text: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let l = self.state;
        if ffi::lua_checkstack(l, 4) == 0 {
            return Err("Lua stack exhausted".into());
        }
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(UPVALUE_FORMAT));
        ffi::lua_pushlstring(l, spec.as_ptr() as *const c_char, spec.len());
        match (index, text) {
            (Some(i), _) => ffi::lua_pushvalue(l, i),
            (None, Some(t)) => {
                ffi::lua_pushlstring(l, t.as_ptr() as *const c_char, t.len());
            }
            (None, None) => ffi::lua_pushnil(l),
        }
        self.finish_call(ffi::lua_pcall(l, 2, 1, 0), out)
    }

    /// `tostring(value at index)`: natively for stanzas, through Lua otherwise.
    unsafe fn tostring_at(&mut self, index: c_int, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let l = self.state;
        let anchors = lua_stanza::Anchors {
            stanza_mt: ffi::lua_upvalueindex(UPVALUE_STANZA_MT),
            original_tostring: ffi::lua_upvalueindex(UPVALUE_STANZA_TOSTRING),
            key_tostring: ffi::lua_upvalueindex(UPVALUE_KEYS),
            key_name: ffi::lua_upvalueindex(UPVALUE_KEYS + 1),
            key_attr: ffi::lua_upvalueindex(UPVALUE_KEYS + 2),
            key_xmlns: ffi::lua_upvalueindex(UPVALUE_KEYS + 3),
        };
        if lua_stanza::serialize(l, index, &anchors, out) {
            return Ok(());
        }
        if ffi::lua_checkstack(l, 3) == 0 {
            return Err("Lua stack exhausted".into());
        }
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(UPVALUE_TOSTRING));
        ffi::lua_pushvalue(l, index);
        self.finish_call(ffi::lua_pcall(l, 1, 1, 0), out)
    }

    /// Takes the single result (or error) of a `lua_pcall` off the stack.
    unsafe fn finish_call(&mut self, status: c_int, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let l = self.state;
        let text = if ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
            let mut len = 0usize;
            let ptr = ffi::lua_tolstring(l, -1, &mut len);
            Some(std::slice::from_raw_parts(ptr as *const u8, len).to_vec())
        } else {
            None
        };
        let kind = ffi::lua_type(l, -1);
        ffi::lua_settop(l, -2);
        match (status, text) {
            (ffi::LUA_OK, Some(t)) => {
                out.extend_from_slice(&t);
                Ok(())
            }
            (ffi::LUA_OK, None) => Err(format!("tostring returned a {}", type_name(kind))),
            (_, Some(t)) => Err(String::from_utf8_lossy(&t).into_owned()),
            (_, None) => Err(format!("error object is a {} value", type_name(kind))),
        }
    }
}

fn type_name(kind: c_int) -> &'static str {
    match kind {
        ffi::LUA_TNIL => "nil",
        ffi::LUA_TBOOLEAN => "boolean",
        ffi::LUA_TNUMBER => "number",
        ffi::LUA_TSTRING => "string",
        ffi::LUA_TTABLE => "table",
        ffi::LUA_TFUNCTION => "function",
        ffi::LUA_TUSERDATA | ffi::LUA_TLIGHTUSERDATA => "userdata",
        ffi::LUA_TTHREAD => "thread",
        _ => "no",
    }
}

impl<'a> ArgValues<'a> for StackArgs {
    fn count(&self) -> usize {
        self.count
    }

    fn get(&self, i: usize) -> Arg<'a> {
        if i >= self.count {
            return Arg::Nil;
        }
        // SAFETY: i < count, so the slot is one of this call's arguments.
        unsafe { self.get_index(self.base + i as c_int) }
    }
}

impl<'a> Args<'a> for StackArgs {
    fn lua_format(&mut self, spec: &[u8], i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let index = self.base + i as c_int;
        // SAFETY: the stack slot exists; call_format checks stack space and runs protected.
        unsafe { self.call_format(spec, Some(index), None, out) }
    }

    fn tostring(&mut self, i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let index = self.base + i as c_int;
        // SAFETY: as above.
        unsafe { self.tostring_at(index, out) }
    }

    fn lua_quote(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
        // SAFETY: as above.
        unsafe { self.call_format(b"%s", None, Some(text), out) }
    }

    fn keep_format(&mut self, slot: usize) -> bool {
        if !self.keep_formats {
            return false;
        }
        let l = self.state;
        // SAFETY: the table was made with an array part of one entry per slot, so rawseti
        // stores without allocating and cannot raise; one stack slot is checked for first.
        unsafe {
            let kept = ffi::lua_upvalueindex(UPVALUE_FORMATS_KEPT);
            if ffi::lua_type(l, kept) != ffi::LUA_TTABLE
                || ffi::lua_type(l, ARG_MESSAGE) != ffi::LUA_TSTRING
                || ffi::lua_checkstack(l, 1) == 0
            {
                return false;
            }
            ffi::lua_pushvalue(l, ARG_MESSAGE);
            ffi::lua_rawseti(l, kept, slot as ffi::lua_Integer + 1);
        }
        true
    }
}
