//! The sink function Prosody calls for every log line: `sink(source, level, message, ...)`.
//!
//! A raw C function, because it runs for every line. Its one unsafe step is the entry: the
//! call's context ([`LuaCall`]) and the sink it belongs to; everything after is safe Rust.
//!
//! The common line (string source and level, a format seen before made of `%s`, `%d` and `%i`,
//! plain ASCII strings, integers, booleans and nil) is done in one pass: its arguments read
//! straight off the stack where `raw_stack` allows (through the C API otherwise), formatted by
//! `format_simple` directly into the ring's free space, with no Lua call and no copy. Every
//! other line takes the general path ([`LineArgs`]): formatted in Rust into a buffer, calling
//! Lua only for what Lua alone can answer (`__tostring`, `%q`, invalid UTF-8, unusual
//! conversions) through Prosody's own `util.format` under `lua_pcall`, so errors there never
//! escape. Neither path creates Lua values for strings, numbers or booleans.
//!
//! Lua code run from the general path (a `__tostring`, or a finalizer run by the collector) can
//! replace any value in this call's stack frame with `debug.setlocal` (for a C function it
//! reaches every slot, "(C temporary)") and then collect the old one. So the general path reads
//! the call's values through [`CallArgs`], which anchors them all in the `Held` upvalue table
//! (out of `debug.setlocal`'s reach) before the first thing that may run Lua, and from then on
//! reads and passes on those: the line is the one the original arguments give, and every
//! string it borrowed stays alive until the line is stored. The upvalues are listed in
//! `upvalues.rs`.
//!
//! Nothing here may raise into the caller or let a panic cross into Lua. Values with
//! destructors are held across Lua calls that could longjmp only on memory exhaustion, where
//! they leak.

use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mlua::ffi;

use super::call::{CallArgs, LuaCall};
use super::stanza::{self, Anchors};
use super::upvalues::Upvalue;
use crate::pure::date::{self, StampSecond};
use crate::pure::format::{self, Arg, ArgValues, Args, FastLine, FormatCache, FormatError};
use crate::pure::level::Level;
use crate::pure::message_match::MessagePattern;
use crate::pure::redact::Redactor;
use crate::pure::ring::Meta;
use crate::runtime::auto_dump;
use crate::runtime::sink::Sink;

/// Per-sink state owned by the Lua thread (`RefCell`, `Cell`: only that thread touches it).
pub(crate) struct LuaSink {
    pub(crate) sink: Arc<Sink>,
    buffers: RefCell<LineBuffers>,
    /// Entries of the held table in use by the lines in progress (a `__tostring` that logs
    /// makes a line within a line; they end in reverse order).
    held_top: Cell<i64>,
    /// `dump_on`, kept here so that a sink without it pays one test of a local field per line.
    dump_on: Option<Level>,
    /// `redact`, kept here likewise: a sink without it pays one test per line.
    redact: Option<Redactor>,
    /// `dump_on_match`, kept here for the same reason.
    dump_on_match: Option<MessagePattern>,
    /// Capture paused from the admin shell: lines are not stored.
    pub(crate) paused: Cell<bool>,
}

/// Buffers reused from line to line, and the timestamp of the current second.
#[derive(Default)]
struct LineBuffers {
    /// The fast path's buffer (see `write_common_line`); made on first use.
    simple: Vec<u8>,
    line: Vec<u8>,
    message: Vec<u8>,
    /// A line after `redact`.
    redacted: Vec<u8>,
    /// The second `stamp` was made for (and where its fraction digits are, if it has any).
    stamp_second: StampSecond,
    stamp: Vec<u8>,
    formats: FormatCache,
}

/// Longer lines take the general path.
const SIMPLE_LINE_MAX: usize = 8 * 1024;

impl LuaSink {
    /// The Lua side of `sink`.
    pub(crate) fn new(sink: Arc<Sink>) -> Self {
        let dump_on = sink.options.auto.on_level;
        let redact = sink.redactor.clone();
        let dump_on_match = sink.options.auto.on_match.clone();
        LuaSink {
            sink,
            redact,
            buffers: RefCell::new(LineBuffers::default()),
            held_top: Cell::new(0),
            dump_on,
            dump_on_match,
            paused: Cell::new(false),
        }
    }
}

const ARG_SOURCE: c_int = 1;
const ARG_LEVEL: c_int = 2;
const ARG_MESSAGE: c_int = 3;

/// The sink function.
///
/// # Safety
/// Only for Lua to call, as the closure `sink_closure` makes.
pub(crate) unsafe extern "C-unwind" fn sink_call(state: *mut ffi::lua_State) -> c_int {
    // A panic here would be a bug; the line is lost but Prosody carries on.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let run = |mut call: LuaCall<'_>| {
            let pointer = call.first_upvalue_pointer() as *const LuaSink;
            // SAFETY: `run` runs only here, in the sink closure (sink_call's one use), whose
            // first upvalue is `Rc::as_ptr` of the LuaSink that its handle upvalue owns; the
            // closure, running, is alive, and so is the handle and the LuaSink until the call
            // returns. (Lua code could change a closure's upvalues only with debug.setupvalue
            // on the sink itself, which, like writing to its memory, nothing here can guard
            // against.)
            if let Some(this) = unsafe { pointer.as_ref() } {
                take_line(&mut call, this);
            }
        };
        // SAFETY: Lua passes the state running this function, and `run` returns before it.
        unsafe { LuaCall::with(state, run) }
    }));
    0
}

/// One call of the sink: unless capture is paused, the line is formatted and pushed into the
/// ring ([`format_and_push`]), then `auto_dump` hears of it if it matches `dump_on_match` or is
/// at `dump_on`'s level.
fn take_line(call: &mut LuaCall<'_>, this: &LuaSink) {
    if this.paused.get() {
        return;
    }
    // A sink without `dump_on_match` stores the line as it would without the option at all.
    match &this.dump_on_match {
        None => {
            format_and_push(call, this, &NoCheck);
        }
        Some(pattern) => {
            if format_and_push_matching(call, this, pattern) {
                // A line that matches and is at the level opens one window, not one and a count.
                auto_dump::line_matched(&this.sink);
                return;
            }
        }
    }
    if let Some(trigger) = this.dump_on {
        check_trigger(call, this, trigger);
    }
}

/// [`format_and_push`] for a sink with `dump_on_match`: whether the line's message matches.
/// Not inlined, so that [`take_line`] for a sink without it stays as it was.
#[inline(never)]
fn format_and_push_matching(call: &mut LuaCall<'_>, this: &LuaSink, pattern: &MessagePattern) -> bool {
    format_and_push(call, this, pattern)
}

/// What is checked on each line right after it is formatted, as it is stored.
trait StoreCheck {
    /// Whether [`StoreCheck::check`] can say true: false leaves the per-line path as it is
    /// without any check (one copy of it is made for each kind of check).
    const CHECKS: bool;
    /// Whether `line` (its source at `source_at`, its message at `message_at`) is one to act on.
    fn check(&self, line: &[u8], source_at: usize, message_at: usize) -> bool;
}

/// Nothing: the line is only stored.
struct NoCheck;

impl StoreCheck for NoCheck {
    const CHECKS: bool = false;
    #[inline(always)]
    fn check(&self, _: &[u8], _: usize, _: usize) -> bool {
        false
    }
}

/// `dump_on_match`: whether the line's message matches.
impl StoreCheck for MessagePattern {
    const CHECKS: bool = true;
    #[inline(never)]
    fn check(&self, line: &[u8], source_at: usize, message_at: usize) -> bool {
        self.matches_line(line, source_at, message_at)
    }
}

/// Tells `auto_dump` about a line at or above `dump_on`.
#[cold]
#[inline(never)]
fn check_trigger(call: &LuaCall<'_>, this: &LuaSink, trigger: Level) {
    // Read afresh: the general path may have run Lua code, which may have changed the slot.
    let level = match call.arg(ARG_LEVEL) {
        Arg::Str(name) => std::str::from_utf8(name).ok().and_then(Level::from_name),
        _ => None,
    };
    if level.is_some_and(|level| level >= trigger) {
        auto_dump::line_at_trigger_level(&this.sink);
    }
}

/// Formats the line and pushes it into the sink's ring: the common line in one pass
/// ([`write_common_line`], straight into the ring's space where it fits), any other on the
/// general path ([`LineArgs`]); what `check` says of it.
#[inline(always)]
fn format_and_push<C: StoreCheck>(call: &mut LuaCall<'_>, this: &LuaSink, check: &C) -> bool {
    // A __tostring that logs re-enters this sink while the buffers are in use.
    let mut own;
    let mut guard = this.buffers.try_borrow_mut();
    // Only the sink's own cache may keep formats alive in the upvalue table, slot for slot.
    let (buffers, keep_formats): (&mut LineBuffers, bool) = match guard.as_deref_mut() {
        Ok(s) => (s, true),
        Err(_) => {
            own = LineBuffers::default();
            (&mut own, false)
        }
    };
    let LineBuffers { simple, line, message, redacted, stamp_second, stamp, formats } = buffers;

    // Every line keeps the second it was logged at (for `max_age`), timestamps or not.
    // A timestamp with fractions of a second (`%3N`) reads the precise clock, once, for both
    // the stamp and that second; the text is made once a second and each line writes only its
    // digits. Any other timestamp costs what it always did: `time()` and the cached text.
    let timestamps = &this.sink.options.timestamps;
    let now;
    if let Some(date) = timestamps.as_ref().filter(|date| date.has_fraction()) {
        let (second, nanos) = date::now_precise();
        now = second;
        if stamp_second.second != Some(now) {
            let escape = |raw: &[u8], out: &mut Vec<u8>| {
                format::string_field(raw, &mut LineArgs::new(call, this, false).view(1), out).is_ok()
            };
            stamp_second.refresh(date, now, nanos, stamp, escape);
        }
        stamp_second.set_fraction(nanos, stamp);
    } else {
        now = date::now_seconds();
        if let Some(date) = timestamps {
            if stamp_second.second != Some(now) {
                let mut raw = Vec::new();
                date.render(now, &mut raw);
                stamp.clear();
                if format::string_field(&raw, &mut LineArgs::new(call, this, false).view(1), stamp).is_err() {
                    stamp.clear();
                }
                stamp_second.second = Some(now);
            }
        }
    }
    let time = u32::try_from(now).unwrap_or(0);
    // The source begins after the timestamp (for the admin shell's filters).
    let meta = Meta { time, source_at: u16::try_from(stamp.len()).unwrap_or(Meta::NO_SOURCE) };
    // The common line goes straight into the ring; if the ring's current chunk is too full
    // for it (or the sink redacts), into `simple` and then the ring; anything else takes the
    // general path.
    let mut full = false;
    let mut checked = false;
    let stored = this.redact.is_none()
        && this.sink.push_in_place(meta, |room| {
            let mut out = FastLine::new(room);
            let done = write_common_line_of_call(call, stamp, formats, &mut out);
            full = out.is_full();
            if let Some(message_at) = done.filter(|_| C::CHECKS) {
                // In the ring's space (no copy): other threads wait for the ring this long more.
                checked = check.check(out.bytes(), stamp.len(), message_at);
            }
            done.map(|_| out.written())
        });
    if stored {
        return checked;
    }
    if full || this.redact.is_some() {
        if simple.is_empty() {
            simple.resize(SIMPLE_LINE_MAX, 0);
        }
        let mut out = FastLine::new(simple);
        if let Some(message_at) = write_common_line_of_call(call, stamp, formats, &mut out) {
            // Matched before `redact`: a pattern sees what was logged.
            let matched = check.check(out.bytes(), stamp.len(), message_at);
            keep_line(this, out.bytes(), stamp.len(), meta, redacted);
            return matched;
        }
    }

    let mut values = LineArgs::new(call, this, keep_formats);
    line.clear();
    line.extend_from_slice(stamp);
    field(&mut values, ARG_SOURCE, line);
    line.push(b'\t');
    field(&mut values, ARG_LEVEL, line);
    line.push(b'\t');

    // The message is formatted straight into the line; only a message that is not plain
    // ASCII is taken out again for the line-level pass (control pictures, UTF-8 check).
    let message_start = line.len();
    let formatted = match values.value(ARG_MESSAGE) {
        Arg::Str(fmt) => formats.format(fmt, &mut values.view(ARG_MESSAGE + 1), line),
        _ => Err("the log message is not a string".to_string()),
    };
    if !matches!(formatted, Ok(true)) {
        message.clear();
        message.extend_from_slice(&line[message_start..]);
        line.truncate(message_start);
        if let Err(why) = formatted {
            describe_failure(&mut values, &why, message);
        }
        if format::string_field(message, &mut values.view(1), line).is_err() {
            format::sanitize_into(&String::from_utf8_lossy(message).into_owned().into_bytes(), line);
        }
    }
    line.push(b'\n');
    let matched = check.check(line, stamp.len(), message_start);
    keep_line(this, line, stamp.len(), meta, redacted);
    matched
}

/// Stores a finished line that did not go straight into the ring: every line's text passes
/// here (a sink with `redact` formats none in place), after formatting and before storing,
/// the place for anything that must see or change the final text. `message_from`: where the
/// text after the timestamp begins.
#[inline(always)]
fn keep_line(this: &LuaSink, line: &[u8], message_from: usize, meta: Meta, redacted: &mut Vec<u8>) {
    match &this.redact {
        None => this.sink.push(line, meta),
        Some(redactor) => keep_redacted(this, redactor, line, message_from, meta, redacted),
    }
}

/// `redact`: the line as stored, and so as every output shows it. Written straight into the
/// ring's space where it fits (as the plain path writes its lines), through `redacted` and
/// then the ring otherwise.
#[inline(never)]
fn keep_redacted(this: &LuaSink, redactor: &Redactor, line: &[u8], from: usize, meta: Meta, redacted: &mut Vec<u8>) {
    if this.sink.push_in_place(meta, |room| redactor.redact_into(line, from, room)) {
        return;
    }
    if redactor.redact(line, from, redacted) {
        this.sink.push(redacted, meta);
    } else {
        this.sink.push(line, meta);
    }
}

/// [`write_common_line`] on the running call's arguments, read straight off the stack where
/// `raw_stack` allows, through the C API otherwise.
#[inline(always)]
fn write_common_line_of_call(
    call: &LuaCall<'_>,
    stamp: &[u8],
    formats: &FormatCache,
    out: &mut FastLine<'_>,
) -> Option<usize> {
    match call.frame() {
        Some(frame) => write_common_line(&frame, &frame.skip(ARG_MESSAGE as usize), stamp, formats, out),
        None => write_common_line(&call.api_args(1), &call.api_args(ARG_MESSAGE + 1), stamp, formats, out),
    }
}

/// Writes the common line into `out` in one pass, without calling Lua: string source and
/// level, and a message that `format::format_simple` can take (a cached format, or one without
/// conversions and arguments); returns where the message begins in `out`. `None` leaves nothing
/// stored; the general path then starts over. `frame` holds all of the call's arguments, `args`
/// those after the message.
#[inline(always)]
fn write_common_line<'a, V: ArgValues<'a>>(
    frame: &V,
    args: &V,
    stamp: &[u8],
    formats: &FormatCache,
    out: &mut FastLine<'_>,
) -> Option<usize> {
    let (Arg::Str(source), Arg::Str(level), Arg::Str(fmt)) = (frame.get(0), frame.get(1), frame.get(2)) else {
        return None;
    };
    out.trusted(stamp)?;
    out.plain(source)?;
    out.trusted(b"\t")?;
    out.plain(level)?;
    out.trusted(b"\t")?;
    let message_at = out.written();
    match formats.lookup(fmt) {
        Some(compiled) => format::format_simple(compiled, args, out)?,
        None if args.count() == 0 && !fmt.contains(&b'%') => out.plain(fmt)?,
        None => return None,
    }
    out.trusted(b"\n")?;
    Some(message_at)
}

/// A source or level name: `%s` rules, `tostring` for non-strings.
fn field(values: &mut LineArgs<'_, '_>, index: c_int, out: &mut Vec<u8>) {
    let result = match values.value(index) {
        Arg::Str(s) => format::string_field(s, &mut values.view(1), out).map(|_| ()),
        _ => values.call_format(b"%s", Pushed::Value(index), out),
    };
    if let Err(why) = result {
        out.extend_from_slice(format!("[{why}]").as_bytes());
    }
}

/// The message Prosody's `util.format` would have raised on: say why, then show the raw format
/// and every argument, so nothing is lost.
fn describe_failure(values: &mut LineArgs<'_, '_>, why: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(format!("[format error: {why}] ").as_bytes());
    match values.value(ARG_MESSAGE) {
        Arg::Str(fmt) => out.extend_from_slice(fmt),
        _ => {
            if values.tostring(ARG_MESSAGE, out).is_err() {
                out.extend_from_slice(b"?");
            }
        }
    }
    if let Err(e) = format::format_message(b"", &mut values.view(ARG_MESSAGE + 1), out) {
        out.extend_from_slice(format!(" [{e}]").as_bytes());
    }
}

/// The call's arguments (source, level, message and its arguments) for the general path, which
/// may run Lua code: see [`CallArgs`], which keeps them as the call was given them whatever
/// that code does.
struct LineArgs<'line, 'call> {
    args: CallArgs<'line, 'call>,
    /// Whether the format cache may keep formats in the upvalue table (not for a line within a
    /// line, which uses a cache of its own).
    keep_formats: bool,
}

/// What `call_format` formats.
enum Pushed<'t> {
    /// The call's value at this index.
    Value(c_int),
    /// A string with these bytes.
    Text(&'t [u8]),
}

impl<'line, 'call> LineArgs<'line, 'call> {
    fn new(call: &'line mut LuaCall<'call>, this: &'line LuaSink, keep_formats: bool) -> Self {
        LineArgs { args: CallArgs::new(call, Upvalue::Held.index(), &this.held_top), keep_formats }
    }

    /// The call's arguments from index `first` on, for the formatter.
    fn view(&mut self, first: c_int) -> View<'_, 'line, 'call> {
        View { line: self, first }
    }

    /// The call's value at `index` (1-based: 1 is the source), as it was when the call began.
    fn value(&self, index: c_int) -> Arg<'line> {
        self.args.value(index)
    }

    /// Calls `util.format(spec, value)`, protected; appends the result.
    fn call_format(&mut self, spec: &[u8], value: Pushed<'_>, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let call = self.args.lua()?;
        let top = call.top();
        let mut pushed = call.ensure(4) && call.push_value(Upvalue::Format.index()) && call.push_bytes(spec);
        pushed = pushed
            && match value {
                Pushed::Value(index) => self.args.push_original(index),
                Pushed::Text(text) => self.args.lua()?.push_bytes(text),
            };
        let call = self.args.lua()?;
        if !pushed {
            call.truncate(top);
            return Err("Lua stack exhausted".into());
        }
        let status = call.pcall(2);
        finish_call(call, status, out)
    }

    /// `tostring(value at index)`: natively for stanzas, through Lua otherwise.
    fn tostring(&mut self, index: c_int, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let printed = self
            .args
            .with_original(index, STANZA_ROOM, |scope, value| stanza::serialize(scope, value, &STANZA_ANCHORS, out));
        if printed == Some(true) {
            return Ok(());
        }
        let top = self.args.lua()?.top();
        let pushed = {
            let call = self.args.lua()?;
            call.ensure(3) && call.push_value(Upvalue::Tostring.index())
        } && self.args.push_original(index);
        let call = self.args.lua()?;
        if !pushed {
            call.truncate(top);
            return Err("Lua stack exhausted".into());
        }
        let status = call.pcall(1);
        finish_call(call, status, out)
    }

    /// Stores the message string in the kept-formats table at `slot`, if it is the very
    /// string `fmt` belongs to.
    fn keep_format(&mut self, fmt: &[u8], slot: usize) -> bool {
        // The table was made with an array part of one entry per slot: storing there does
        // not allocate.
        self.keep_formats && self.args.keep_original(ARG_MESSAGE, fmt, Upvalue::KeptFormats.index(), slot as i64 + 1)
    }
}

/// Where native stanza printing finds what it compares with: the sink closure's upvalues.
const STANZA_ANCHORS: Anchors = Anchors {
    stanza_mt: Upvalue::StanzaMt,
    original_tostring: Upvalue::StanzaTostring,
    key_tostring: Upvalue::KeyTostring,
    key_name: Upvalue::KeyName,
    key_attr: Upvalue::KeyAttr,
    key_xmlns: Upvalue::KeyXmlns,
};

/// Values native stanza printing pushes besides the stanza itself.
const STANZA_ROOM: c_int = 8;

/// Takes the single result (or error) of a `pcall` off the stack.
fn finish_call(call: &mut LuaCall<'_>, status: Option<c_int>, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let Some(status) = status else {
        return Err("nothing to call".into());
    };
    let result = match (status, call.string_at(-1)) {
        (ffi::LUA_OK, Some(text)) => {
            out.extend_from_slice(text);
            Ok(())
        }
        (ffi::LUA_OK, None) => Err(format!("tostring returned a {}", type_name(call.type_of(-1)))),
        (_, Some(text)) => Err(String::from_utf8_lossy(text).into_owned()),
        (_, None) => Err(format!("error object is a {} value", type_name(call.type_of(-1)))),
    };
    call.pop(1);
    result
}

/// A [`LineArgs`]'s values from index `first` on, as the formatter's [`Args`].
struct View<'v, 'line, 'call> {
    line: &'v mut LineArgs<'line, 'call>,
    first: c_int,
}

impl View<'_, '_, '_> {
    fn index(&self, i: usize) -> c_int {
        self.first.saturating_add(c_int::try_from(i).unwrap_or(c_int::MAX))
    }
}

impl<'line> ArgValues<'line> for View<'_, 'line, '_> {
    fn count(&self) -> usize {
        (self.line.args.count() - self.first + 1).max(0) as usize
    }

    fn get(&self, i: usize) -> Arg<'line> {
        self.line.value(self.index(i))
    }
}

impl<'line> Args<'line> for View<'_, 'line, '_> {
    fn lua_format(&mut self, spec: &[u8], i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let index = self.index(i);
        self.line.call_format(spec, Pushed::Value(index), out)
    }

    fn tostring(&mut self, i: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let index = self.index(i);
        self.line.tostring(index, out)
    }

    fn lua_quote(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
        self.line.call_format(b"%s", Pushed::Text(text), out)
    }

    fn keep_format(&mut self, fmt: &[u8], slot: usize) -> bool {
        self.line.keep_format(fmt, slot)
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
