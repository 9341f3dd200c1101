//! The admin shell's native side, as methods of a sink's handle: pause, resume, clear, the
//! statistics counters, and the slow reads (`scan` for `tail`/`grep`, `dump_copy` for a dump
//! that keeps the buffer). A slow read compiles its pattern and scans a snapshot on a thread
//! of its own and gives a `Query` that the shell polls with `query:result()`, then takes the
//! lines from in bounded batches (`query:lines()`), one batch a tick, so no answer holds the
//! main loop long; `query:cancel()` drops it when its shell went away. Past
//! [`inspect::MAX_READS`] reads at once, a read is answered "busy". Bad arguments are answered
//! with `nil, message`, never raised.

use std::cell::RefCell;
use std::collections::VecDeque;

use mlua::{IntoLuaMulti, Lua, MultiValue, Table, UserData, UserDataMethods, Value};

use super::handle::Handle;
use crate::pure::duration;
use crate::pure::level::Level;
use crate::pure::query::{self, Filter, Found};
use crate::runtime::inspect::{self, Pending, ReadPermit};
use crate::runtime::sink::{self, DumpRequest, Dumped};

/// The most lines one `tail`/`grep` answer carries.
pub(crate) const MAX_LIMIT: usize = 10_000;

pub(crate) fn add_methods<M: UserDataMethods<Handle>>(methods: &mut M) {
    methods.add_method("pause", |_, this, ()| {
        this.lua_sink().paused.set(true);
        Ok(())
    });
    methods.add_method("resume", |_, this, ()| {
        this.lua_sink().paused.set(false);
        Ok(())
    });
    methods.add_method("paused", |_, this, ()| Ok(this.lua_sink().paused.get()));
    methods.add_method("clear", |_, this, ()| {
        this.sink().clear();
        Ok(())
    });
    methods.add_method("counters", |lua, this, ()| {
        let c = this.sink().counters();
        let t = lua.create_table()?;
        t.set("captured", c.captured)?;
        t.set("dropped", c.dropped)?;
        t.set("lines", c.lines)?;
        t.set("bytes", c.bytes)?;
        t.set("dumps_done", c.dumps_done)?;
        t.set("dumps_failed", c.dumps_failed)?;
        Ok(t)
    });
    // scan(filter, pattern, limit, not_sources, only_sources): the newest `limit` lines that
    // pass, leaving out the lines of the sources listed in `not_sources` (the admin shell's
    // own) and, with `only_sources` (a JID's sessions), those of any other source.
    methods.add_method("scan", |lua, this, (filter, pattern, limit, not_sources, only_sources): ScanArgs| {
        let started = filter_from(filter).and_then(|mut filter| {
            filter.not_sources = not_sources.unwrap_or_default().iter().map(|s| s.as_bytes().to_vec()).collect();
            filter.only_sources = sources(only_sources);
            let limit = limit_from(limit)?;
            let permit = inspect::read_permit()?;
            let snapshot = this.sink().snapshot();
            inspect::run("ringbuffer-scan", permit, move |cancel| {
                // Compiled here: a costly pattern takes up to a few hundred milliseconds.
                if let Some(pattern) = pattern {
                    filter.pattern = Some(query::pattern(&pattern)?);
                }
                let found = query::newest_unless(&snapshot, &filter, limit, || cancel.is_cancelled());
                found.map(Answer::Found).ok_or_else(|| "cancelled".to_string())
            })
        });
        answer_or_error(lua, started)
    });
    // dump_copy(reason, filter, to): writes a copy of the lines that pass, leaving the buffer.
    // With `only_sources`, only the lines of those sources (a JID's sessions).
    methods.add_method("dump_copy", |lua, this, (reason, filter, to, only_sources): CopyArgs| {
        let started = filter_from(filter).and_then(|mut filter| {
            filter.only_sources = sources(only_sources);
            this.sink().start_copy(reason, DumpRequest { filter, to }, Answer::Dumped)
        });
        answer_or_error(lua, started)
    });
}

pub(crate) type Sources = Option<Vec<mlua::LuaString>>;
type ScanArgs = (Option<Table>, Option<String>, Value, Sources, Sources);
type CopyArgs = (String, Option<Table>, Option<String>, Sources);

pub(crate) fn sources(list: Sources) -> Option<Vec<Vec<u8>>> {
    list.map(|list| list.iter().map(|s| s.as_bytes().to_vec()).collect())
}

/// What a slow read gives.
enum Answer {
    Found(Found),
    Dumped(Dumped),
}

/// The most lines, and bytes, one `query:lines()` batch carries (at most one line more than
/// the bytes): what the shell prints in one tick.
pub(crate) const BATCH_LINES: usize = 500;
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// A slow read in progress, for the shell to poll, then the lines of its answer not yet taken
/// (with the place among [`inspect::MAX_READS`] they hold).
struct Query {
    pending: Pending<Answer>,
    rest: RefCell<Option<(VecDeque<Vec<u8>>, ReadPermit)>>,
}

impl UserData for Query {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // nil while running; then `true, result` or `false, error`, once. A found answer's
        // lines are then taken with lines().
        methods.add_method("result", |lua, this, ()| match this.pending.take() {
            None => Ok(MultiValue::new()),
            Some((Err(e), _)) => (false, e).into_lua_multi(lua),
            Some((Ok(answer), permit)) => {
                let t = lua.create_table()?;
                match answer {
                    Answer::Found(found) => {
                        t.set("count", found.lines.len())?;
                        t.set("matched", found.matched)?;
                        t.set("scanned", found.scanned)?;
                        *this.rest.borrow_mut() = Some((found.lines, permit));
                    }
                    Answer::Dumped(dumped) => {
                        t.set("path", dumped.path)?;
                        t.set("lines", dumped.lines)?;
                    }
                }
                (true, t).into_lua_multi(lua)
            }
        });
        // The next batch of lines, oldest first, joined by newlines, and how many; nil once
        // all were taken (the read's place is then given back).
        methods.add_method("lines", |lua, this, ()| {
            let mut rest = this.rest.borrow_mut();
            let Some((lines, _)) = rest.as_mut() else { return Ok(MultiValue::new()) };
            if lines.is_empty() {
                *rest = None;
                return Ok(MultiValue::new());
            }
            let mut batch = Vec::new();
            let mut count = 0;
            while let Some(line) = lines.front() {
                if count == BATCH_LINES || (count > 0 && batch.len() + line.len() > BATCH_BYTES) {
                    break;
                }
                if count > 0 {
                    batch.push(b'\n');
                }
                batch.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
                lines.pop_front();
                count += 1;
            }
            if lines.is_empty() {
                // All taken: the read's place is free again.
                *rest = None;
            }
            (lua.create_string(&batch)?, count).into_lua_multi(lua)
        });
        methods.add_method("has_lines", |_, this, ()| {
            Ok(this.rest.borrow().as_ref().is_some_and(|(lines, _)| !lines.is_empty()))
        });
        // Drops the read: stops its scan, frees its answer and gives its place back.
        methods.add_method("cancel", |_, this, ()| {
            this.pending.cancel();
            *this.rest.borrow_mut() = None;
            Ok(())
        });
    }
}

fn answer_or_error(lua: &Lua, started: Result<Pending<Answer>, String>) -> mlua::Result<MultiValue> {
    match started {
        Ok(pending) => lua.create_userdata(Query { pending, rest: RefCell::new(None) })?.into_lua_multi(lua),
        Err(e) => (Value::Nil, e).into_lua_multi(lua),
    }
}

/// The filter a shell command gives: `{ level =, source =, since = }` (a `grep` pattern is
/// compiled by the scan, off the main loop).
pub(crate) fn filter_from(table: Option<Table>) -> Result<Filter, String> {
    let mut filter = Filter::default();
    let Some(table) = table else { return Ok(filter) };
    let field = |name: &str| table.raw_get::<Value>(name).unwrap_or(Value::Nil);
    filter.min_level =
        match field("level") {
            Value::Nil => None,
            Value::String(s) => Some(Level::from_name(&s.to_string_lossy()).ok_or_else(|| {
                format!("level must be one of debug, info, warn, error (not '{}')", s.to_string_lossy())
            })?),
            other => return Err(format!("level must be a level name, not a {}", other.type_name())),
        };
    filter.source = match field("source") {
        Value::Nil => None,
        Value::String(s) if !s.as_bytes().is_empty() => Some(s.to_string_lossy()),
        other => return Err(format!("source must be a non-empty name or glob, not {}", shown(&other))),
    };
    filter.since = match field("since") {
        Value::Nil => None,
        given => {
            let span = match &given {
                Value::Integer(n) => duration::from_seconds(*n as f64),
                Value::Number(n) => duration::from_seconds(*n),
                Value::String(s) => duration::from_text(&s.to_string_lossy()),
                _ => None,
            }
            .ok_or_else(|| {
                format!(
                    "since must be seconds or a span like \"30s\", \"5m\", \"2h\" (up to a year), not {}",
                    shown(&given)
                )
            })?;
            Some(sink::cutoff(span))
        }
    };
    Ok(filter)
}

/// How many lines an answer may carry: 1 to [`MAX_LIMIT`].
fn limit_from(value: Value) -> Result<usize, String> {
    let n = match &value {
        Value::Integer(n) => Some(*n),
        Value::Number(n) if n.fract() == 0.0 => Some(*n as i64),
        Value::String(s) => s.to_string_lossy().trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as usize),
        _ => Err(format!("the number of lines must be a whole number from 1 to {MAX_LIMIT}, not {}", shown(&value))),
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{}'", s.to_string_lossy()),
        Value::Integer(n) => n.to_string(),
        Value::Number(n) => n.to_string(),
        other => format!("a {}", other.type_name()),
    }
}
