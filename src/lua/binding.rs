//! The Lua module `log_ringbuffer_native`: its table, and the sink handle's own methods. This is
//! where Lua drives the runtime (mlua, safe but for the closures made over raw C functions).
//!
//! `new_sink(config, paths, format, tostring, stanza_mt)` parses the options, makes the sink
//! (`runtime::sink`, with its collector connection) and the sink function for Prosody's logging
//! manager, and returns those with the config problems to log. The handle's methods start the
//! runtime's work: dumps (handed to the writer thread), the native triggers it arms and disarms
//! (signal, crash, stop-signal and stall watchers), the `persist` ring file, the hourly
//! `keep_dumps_for` pass; and they name the events the Lua side must hook. The module's
//! functions run the process-wide parts: the reports native threads leave, the heartbeat,
//! shutdown and the wait for dumps in flight, the pending-signal and stop-signal checks.

use std::os::raw::c_void;
use std::rc::Rc;
use std::sync::Arc;

use mlua::{AnyUserData, Function, IntoLuaMulti, LightUserData, Lua, Result, Table, UserData, UserDataMethods, Value};

use super::call::probe_call;
use super::handle::Handle;
use super::sink_call::LuaSink;
use super::sink_closure::{sink_closure, SinkUpvalues};
use super::stack_path::{self, Decision};
use crate::pure::build_stamp;
use crate::pure::dump_names;
use crate::pure::format::FormatCache;
use crate::pure::options::{OptValue, Problem, Severity, SinkOptions};
use crate::pure::ring::Limit;
use crate::pure::signal_names::Trigger;
use crate::runtime::forward::Forwarder;
use crate::runtime::sink::{DumpOrigin, Sink};
use crate::runtime::{auto_dump, crash, heartbeat, os, reports, retention, signals, stall, stop_signal, writer};
use std::time::Duration;

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // Whether `other`'s buffer can carry over to this sink in a logging reload.
        methods.add_method("same_options", |_, this, other: mlua::UserDataRef<Handle>| {
            Ok(this.sink().options.reload_key() == other.sink().options.reload_key())
        });
        // Whether `other` dumps to the same place (file, template or collector): how a logging
        // reload tells which sink one made anew replaces.
        methods.add_method("same_target", |_, this, other: mlua::UserDataRef<Handle>| {
            let (mine, theirs) = (this.sink(), other.sink());
            Ok(mine.options.target == theirs.options.target && mine.forwards_to() == theirs.forwards_to())
        });
        // A logging reload made this sink in `predecessor`'s place with other options: takes
        // over its lines and its open dump_on window (see Sink::adopt).
        methods.add_method("adopt", |_, this, predecessor: mlua::UserDataRef<Handle>| {
            this.sink().adopt(predecessor.sink());
            Ok(())
        });
        // `persist`: opens the sink's ring file for `identity` (its name or position) and dumps
        // what a process that died left in it; returns what to log ({ level =, text = }).
        methods.add_method("open_journal", |lua, this, identity: String| {
            messages(lua, this.sink().open_journal(&identity).into_iter())
        });
        // Whether the sink asks for `persist`, and the ring file it has open (nil: none).
        methods.add_method("persists", |_, this, ()| Ok(this.sink().options.persist.is_some()));
        methods.add_method("journal_path", |_, this, ()| Ok(this.sink().journal_path()));
        // A logging reload made this sink in `predecessor`'s place: the same ring file goes on.
        methods.add_method("take_journal", |_, this, (predecessor, identity): (mlua::UserDataRef<Handle>, String)| {
            this.sink().take_journal(predecessor.sink(), &identity);
            Ok(())
        });
        // Closes the ring file with a clean-shutdown mark (server stopped, or sink removed).
        methods.add_method("close_journal", |_, this, ()| {
            this.sink().close_journal();
            Ok(())
        });
        // Whether the sink has `keep_dumps_for`; its hourly pass starts deleting this sink's dump
        // files older than the span, in the background (reported like a dump's pass), and says
        // whether it started (not without files of its own, nor once shutdown has begun).
        methods.add_method("keeps_dumps_for", |_, this, ()| Ok(this.sink().options.retention.keep_for.is_some()));
        methods.add_method("prune_aged_dumps", |_, this, ()| {
            Ok(retention::prune_aged_later(&this.sink().options, this.sink().paths()))
        });
        // Whether a dump_on window is open: its dump is still to come.
        methods.add_method("window_open", |_, this, ()| Ok(this.sink().level_trigger.window_open()));
        // Starts a dump, written by the writer thread: `true, path, lines` or `nil, error` if
        // the file cannot be opened. How the writing went is reported (take_reports). `to`: a
        // file other than the configured one.
        methods.add_method("dump", |lua, this, (reason, to): (Option<String>, Option<String>)| {
            match this.sink().dump_to(DumpOrigin::LuaThread, reason.as_deref().unwrap_or("dump"), to.as_deref()) {
                Ok(done) => (true, done.path, done.lines).into_lua_multi(lua),
                Err(e) => (Value::Nil, e.to_string()).into_lua_multi(lua),
            }
        });
        // Global events that should dump this sink.
        methods.add_method("events", |_, this, ()| {
            Ok(this
                .sink()
                .options
                .triggers
                .iter()
                .filter_map(|t| match t {
                    Trigger::Event(name) => Some(name.clone()),
                    Trigger::Signal(..) => None,
                })
                .collect::<Vec<_>>())
        });
        methods.add_method("min_level", |_, this, ()| Ok(this.sink().options.min_level.map(|l| l.name())));
        // Starts the native signal triggers, the dump on a fatal signal (`dump_on_crash`) and
        // on a stop signal to a hung main loop (`dump_on_exit`); returns the problems met.
        methods.add_method("arm", |_, this, ()| {
            let mut problems = Vec::new();
            for trigger in &this.sink().options.triggers {
                if let Trigger::Signal(number, name) = trigger {
                    if let Err(e) = signals::watch(*number, name, this.sink()) {
                        problems.push(e);
                    }
                }
            }
            if this.sink().options.auto.on_crash {
                if let Err(e) = crash::watch(this.sink()) {
                    problems.push(e);
                }
            }
            if this.sink().options.auto.on_exit {
                if let Err(e) = stop_signal::watch(this.sink()) {
                    problems.push(e);
                }
            }
            if let Some(after) = this.sink().options.auto.on_stall {
                stall::watch(this.sink(), after);
            }
            Ok(problems)
        });
        // Prosody 0.11 turns neither SIGUSR1 nor SIGUSR2 into an event: there the Lua side has
        // its `signal/SIGUSR1|2` events caught natively. Returns the problem met, if any.
        methods.add_method("watch_signal", |_, this, name: String| {
            let number = match name.as_str() {
                "SIGUSR1" => libc::SIGUSR1,
                "SIGUSR2" => libc::SIGUSR2,
                _ => return Ok(Some(format!("{name} is not SIGUSR1 or SIGUSR2"))),
            };
            Ok(signals::watch(number, &format!("signal/{name}"), this.sink()).err())
        });
        methods.add_method("disarm", |_, this, ()| {
            signals::unwatch(this.sink());
            crash::unwatch(this.sink());
            stop_signal::unwatch(this.sink());
            stall::unwatch(this.sink());
            Ok(())
        });
        // Whether native threads may dump this sink (a native signal, `dump_on`): the Lua side
        // then polls for their reports.
        methods.add_method("has_native_triggers", |_, this, ()| {
            let options = &this.sink().options;
            Ok(options.auto.on_level.is_some()
                || options.auto.on_match.is_some()
                || options.auto.on_stall.is_some()
                || options.triggers.iter().any(|t| matches!(t, Trigger::Signal(..))))
        });
        // Whether the heartbeat (native.heartbeat() from a timer) must run for this sink.
        methods.add_method("wants_heartbeat", |_, this, ()| {
            let auto = &this.sink().options.auto;
            Ok(auto.on_stall.is_some() || auto.on_exit)
        });
        methods.add_method("dump_on_exit", |_, this, ()| Ok(this.sink().options.auto.on_exit));
        // Lines and bytes held now.
        methods.add_method("usage", |_, this, ()| Ok(this.sink().usage()));
        // Why the last dump failed (nil if it worked, or none was made): cheap, for polling.
        methods
            .add_method("last_error", |_, this, ()| Ok(this.sink().outcomes().last.and_then(|(_, failure)| failure)));
        // What the admin shell's status shows: a table (see runtime::sink::Status).
        methods.add_method("status", |lua, this, ()| {
            let sink = this.sink();
            let status = sink.status();
            let t = lua.create_table()?;
            let (bound, limit) = match sink.options.limit {
                Limit::Bytes(n) => ("size", n),
                Limit::Lines(n) => ("lines", n),
            };
            t.set("bound", bound)?;
            t.set("limit", limit)?;
            t.set("lines", status.lines)?;
            t.set("bytes", status.bytes)?;
            t.set("dropped", status.dropped)?;
            t.set("oldest", status.oldest)?;
            t.set("newest", status.newest)?;
            t.set("dumps", status.outcomes.done)?;
            t.set("failed", status.outcomes.failed)?;
            if let Some((path, failure)) = status.outcomes.last {
                t.set("last_path", path)?;
                t.set("last_error", failure)?;
            }
            t.set("triggers", lua.create_sequence_from(trigger_names(&sink.options))?)?;
            t.set("paused", this.lua_sink().paused.get())?;
            t.set("format", sink.options.output.format.name())?;
            t.set("forward", sink.forwards_to())?;
            t.set("persist", sink.journal_path())?;
            t.set("persist_wanted", sink.options.persist.is_some())?;
            t.set("dump_on_stall", sink.options.auto.on_stall.map(|d| d.as_secs_f64()))?;
            Ok(t)
        });
        super::shell::add_methods(methods);
        super::dumped::add_methods(methods);
        super::follow::add_methods(methods);
    }
}

/// The triggers of a sink as the config names them.
fn trigger_names(options: &SinkOptions) -> Vec<String> {
    let mut names: Vec<String> = options
        .triggers
        .iter()
        .map(|t| match t {
            Trigger::Event(name) => format!("event {name}"),
            Trigger::Signal(_, name) => format!("signal {name}"),
        })
        .collect();
    let auto = &options.auto;
    if let Some(level) = auto.on_level {
        names.push(format!(
            "dump_on {} (after {}s, cooldown {}s)",
            level.name(),
            auto.after.as_secs_f64(),
            auto.cooldown.as_secs_f64()
        ));
    }
    if let Some(pattern) = &auto.on_match {
        names.push(format!(
            "dump_on_match {:?} (after {}s, cooldown {}s)",
            pattern.source(),
            auto.after.as_secs_f64(),
            auto.cooldown.as_secs_f64()
        ));
    }
    if let Some(after) = auto.on_stall {
        names.push(format!("dump_on_stall {}s (cooldown {}s)", after.as_secs_f64(), auto.cooldown.as_secs_f64()));
    }
    if auto.on_exit {
        names.push("dump_on_exit".into());
    }
    if auto.on_crash {
        names.push("dump_on_crash".into());
    }
    names
}

fn opt_value(value: Value) -> OptValue {
    match value {
        Value::Nil => OptValue::Absent,
        Value::Boolean(b) => OptValue::Bool(b),
        Value::Integer(n) => OptValue::Int(n),
        Value::Number(n) => OptValue::Float(n),
        Value::String(s) => OptValue::Str(s.to_string_lossy()),
        Value::Table(t) => OptValue::List(t.sequence_values::<Value>().flatten().map(opt_item).collect()),
        other => OptValue::Other(other.type_name()),
    }
}

/// An entry of a list option: a value, a table in it only named.
fn opt_item(value: Value) -> OptValue {
    match value {
        Value::Table(_) => OptValue::Other("table"),
        other => opt_value(other),
    }
}

fn new_sink(
    lua: &Lua,
    (config, paths, format, tostring, stanza_mt): (Table, Option<Table>, Function, Function, Option<Table>),
) -> Result<(AnyUserData, Function, Table)> {
    let keys: Vec<String> = config
        .pairs::<Value, Value>()
        .filter_map(|pair| pair.ok())
        .map(|(k, _)| match k {
            Value::String(s) => s.to_string_lossy(),
            other => format!("[{}]", other.type_name()),
        })
        .collect();
    let (options, mut problems) =
        SinkOptions::parse(|name| config.raw_get::<Value>(name).map(opt_value).unwrap_or(OptValue::Absent), &keys);
    let mut path_list = Vec::new();
    if let Some(paths) = paths {
        for (k, v) in paths.pairs::<String, String>().flatten() {
            path_list.push((k, v));
        }
    }
    if let Some(text) = dump_names::keep_dumps_warning(&options.target, &options.retention, &path_list) {
        problems.push(Problem { severity: Severity::Warning, text });
    }
    // `forward`: a host that does not resolve or a CA file that does not load is a config error
    // like the others, and the sink dumps to its file.
    let forwarder = Forwarder::new(&options.output).unwrap_or_else(|why| {
        let target = options.output.forward.as_ref().map(ToString::to_string).unwrap_or_default();
        let text = format!("Invalid value for option 'forward': {target:?}: {why}; dumps go to the file instead");
        problems.push(Problem { severity: Severity::Error, text });
        None
    });
    settle_stack_path(lua);
    let state = Rc::new(LuaSink::new(Arc::new(Sink::new(options, path_list).forwarding(forwarder))));
    let pointer = Rc::as_ptr(&state) as *const c_void;
    let handle = lua.create_userdata(Handle::new(state))?;
    let sink = sink_closure(
        lua,
        SinkUpvalues {
            lua_sink: pointer,
            format,
            tostring,
            handle: handle.clone(),
            stanza_mt,
            kept_formats: FormatCache::SLOTS,
        },
    )?;
    let problems = messages(lua, problems.into_iter().map(|p| (severity_name(p.severity), p.text)))?;
    Ok((handle, sink, problems))
}

/// Settles, once, how sinks read the Lua stack (see `stack_path`).
pub(crate) fn settle_stack_path(lua: &Lua) -> &'static Decision {
    stack_path::decide(|| probe_stack(lua).unwrap_or(false))
}

/// Runs `raw_stack`'s check with one value of every kind it reads, and a table.
fn probe_stack(lua: &Lua) -> Result<bool> {
    let marker = Box::new(0u8);
    // SAFETY: pushes a C closure over the one light userdata exec_raw placed on the stack;
    // probe_call only reads its upvalue and arguments and pushes a boolean.
    let probe: Function = unsafe {
        lua.exec_raw(LightUserData(&*marker as *const u8 as *mut c_void), |state| {
            mlua::ffi::lua_pushcclosure(state, probe_call, 1);
        })
    }?;
    let long = "a string longer than the 40 bytes Lua interns as a short string";
    probe.call((
        "short",
        "",
        long,
        -1_234_567_890_123_i64,
        0.1_f64,
        true,
        false,
        Value::Nil,
        lua.create_table()?,
        "last",
    ))
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warn",
    }
}

/// A list of `{ level = ..., text = ... }` tables, for `module:log`.
fn messages(lua: &Lua, list: impl Iterator<Item = (&'static str, String)>) -> Result<Table> {
    let out = lua.create_table()?;
    for (level, text) in list {
        let entry = lua.create_table()?;
        entry.set("level", level)?;
        entry.set("text", text)?;
        out.push(entry)?;
    }
    Ok(out)
}

/// Messages from the writer and signal threads.
fn take_reports(lua: &Lua, (): ()) -> Result<Table> {
    messages(lua, reports::take().into_iter().map(|r| (r.level, r.text)))
}

/// The main loop turned (a timer, every `heartbeat_interval` seconds): the warnings for
/// Prosody's log of a stall that this turn ended (see `runtime::stall`).
fn heartbeat(lua: &Lua, (): ()) -> Result<Table> {
    heartbeat::beat();
    messages(lua, stall::after_beat().into_iter().map(|text| ("warn", text)))
}

/// Begins shutdown: native threads start no new dumps, and dumps from Lua are written at once
/// from now on. Waits up to `seconds` for the dumps in flight; true if none are left.
fn shut_down(_: &Lua, seconds: f64) -> Result<bool> {
    auto_dump::flush();
    Ok(writer::shut_down(Duration::from_secs_f64(seconds.clamp(0.0, 3600.0))))
}

/// Which of Prosody's dump signals (SIGUSR1, SIGUSR2) arrived but were never handled: on
/// Prosody 13 a signal that comes as the main loop stops stays pending.
fn pending_signals(lua: &Lua, (): ()) -> Result<Table> {
    let names = [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGUSR2, "SIGUSR2")];
    lua.create_sequence_from(names.into_iter().filter(|(n, _)| os::is_pending(*n)).map(|(_, name)| name))
}

/// Called from the main loop (it runs) and cheap: follows how Prosody takes the stop signals
/// (see `stop_signal`). Messages for the log (what changed, or why it cannot), or nil.
fn check_stop_signal(lua: &Lua, (): ()) -> Result<Option<Table>> {
    match stop_signal::check() {
        Ok(changes) if changes.is_empty() => Ok(None),
        Ok(changes) => messages(lua, changes.into_iter().map(|text| ("debug", text))).map(Some),
        Err(text) => messages(lua, std::iter::once(("error", text))).map(Some),
    }
}

/// Kept in the Lua registry: when Lua closes (Prosody's exit), waits for the dumps still in
/// flight, whatever started them, so the exit cannot cut one off.
struct WaitAtClose;

impl UserData for WaitAtClose {}

impl Drop for WaitAtClose {
    fn drop(&mut self) {
        writer::shut_down(SHUTDOWN_WAIT);
    }
}

const WAIT_AT_CLOSE: &str = "log_ringbuffer_native.wait_at_close";

/// How long Prosody's exit waits for dumps in flight (documented in the README).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The module table.
pub fn exports(lua: &Lua) -> Result<Table> {
    let module = lua.create_table()?;
    module.set("new_sink", lua.create_function(new_sink)?)?;
    module.set("message_formatter", lua.create_function(super::filter_format::message_formatter)?)?;
    module.set("take_reports", lua.create_function(take_reports)?)?;
    module.set("take_dumped", lua.create_function(super::dumped::take)?)?;
    module.set("shut_down", lua.create_function(shut_down)?)?;
    module.set("heartbeat", lua.create_function(heartbeat)?)?;
    module.set("heartbeat_interval", heartbeat::INTERVAL.as_secs_f64())?;
    module.set("pending_signals", lua.create_function(pending_signals)?)?;
    module.set("check_stop_signal", lua.create_function(check_stop_signal)?)?;
    module.set("shutdown_wait", SHUTDOWN_WAIT.as_secs_f64())?;
    module.set("max_limit", super::shell::MAX_LIMIT)?;
    module.set("followers", lua.create_function(super::follow::followers)?)?;
    module.set("max_backlog", super::follow::MAX_BACKLOG)?;
    // The Lua files this library was built with (the module's and its admin shell's), and the
    // same stamp of the file at `path`: the Lua side refuses to run a file of another build (see
    // pure::build_stamp).
    module.set("build_stamp", env!("LOG_RINGBUFFER_BUILD_STAMP"))?;
    module.set("shell_build_stamp", env!("LOG_RINGBUFFER_SHELL_BUILD_STAMP"))?;
    module.set(
        "lua_file_stamp",
        lua.create_function(|lua, path: String| match std::fs::read(&path) {
            Ok(bytes) => build_stamp::stamp(env!("CARGO_PKG_VERSION"), &bytes).into_lua_multi(lua),
            Err(e) => (Value::Nil, format!("cannot read {path}: {e}")).into_lua_multi(lua),
        })?,
    )?;
    // In the registry, once per Lua state: it is dropped only when the state closes, not when
    // the module table is collected after a `require` again.
    if lua.named_registry_value::<Option<AnyUserData>>(WAIT_AT_CLOSE)?.is_none() {
        lua.set_named_registry_value(WAIT_AT_CLOSE, lua.create_userdata(WaitAtClose)?)?;
    }
    // Where the main Lua thread is, for native threads (a stalled main loop's dump).
    super::traceback::install(lua)?;
    module.set("dumps_in_flight", lua.create_function(|_, ()| Ok(writer::in_flight()))?)?;
    // Restarts native threads lost to a fork; returns an error text if that failed.
    module.set("rearm_after_fork", lua.create_function(|_, ()| Ok(signals::rearm_after_fork().err()))?)?;
    Ok(module)
}

#[cfg(feature = "module")]
#[mlua::lua_module(name = "log_ringbuffer_native")]
fn luaopen(lua: &Lua) -> Result<Table> {
    exports(lua)
}
