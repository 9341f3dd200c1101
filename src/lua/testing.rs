//! The testing entry point, `luaopen_log_ringbuffer_native_testing`, in the same library: what
//! specs and benchmarks look at, kept out of the table `require "log_ringbuffer_native"` gives
//! Prosody. Loaded with `package.loadlib(path, "luaopen_log_ringbuffer_native_testing")` (or
//! `require "log_ringbuffer_native.testing"`, which Lua's all-in-one loader resolves to it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{Lua, Result, Table, UserData, UserDataMethods, UserDataRef};
use parking_lot::Mutex;

use super::binding::settle_stack_path;
use super::handle::Handle;
use super::stack_path::FORCE_VARIABLE;
use super::traceback;
use crate::pure::format::LUA_NAME;
use crate::pure::signal_names::traceback_signal;
use crate::runtime::lua_traceback::{self, Ticket};
use crate::runtime::{shared_ring, thread};

/// The testing table: `peek(handle)`, `version`, `built_for`, `per_line()`,
/// `traceback_probe(options)`, `traceback_stats()`.
pub(crate) fn exports(lua: &Lua) -> Result<Table> {
    let module = lua.create_table()?;
    // The buffered text of a sink, left in place.
    module.set(
        "peek",
        lua.create_function(|lua, handle: UserDataRef<Handle>| lua.create_string(handle.sink().text()))?,
    )?;
    module.set("version", env!("CARGO_PKG_VERSION"))?;
    // The Lua the library was built for ("Lua 5.3", "LuaJIT"): the one whose printing it follows.
    module.set("built_for", LUA_NAME)?;
    // How the per-line path runs here (the benchmark prints it): how arguments are read (settled
    // here if no sink did yet) and whether the ring lock uses membarrier.
    module.set(
        "per_line",
        lua.create_function(|lua, ()| {
            let decision = settle_stack_path(lua);
            let t = lua.create_table()?;
            t.set("direct_stack", decision.direct)?;
            t.set("stack_path", if decision.direct { "direct" } else { "api" })?;
            t.set("forced", decision.forced)?;
            t.set("force_variable", FORCE_VARIABLE)?;
            t.set("lua", decision.lua.clone())?;
            t.set("reason", decision.reason.clone())?;
            t.set("membarrier", shared_ring::uses_membarrier())?;
            Ok(t)
        })?,
    )?;
    module.set("traceback_probe", lua.create_function(|_, options: Table| start_probe(&options))?)?;
    module.set(
        "traceback_stats",
        lua.create_function(|lua, ()| {
            let t = lua.create_table()?;
            t.set("hooks", traceback::hooks_run())?;
            t.set("open", lua_traceback::open_tickets())?;
            t.set("signal", traceback_signal())?;
            t.set("lua_thread", traceback::lua_thread_id())?;
            Ok(t)
        })?,
    )?;
    Ok(module)
}

/// What a probe thread found.
#[derive(Default)]
struct ProbeState {
    finished: bool,
    /// One per request: the traceback, or None if none came within the wait (or no ticket).
    answers: Vec<Option<String>>,
    /// Milliseconds from each request to its answer.
    latencies: Vec<f64>,
    /// Whether the last request got a ticket.
    requested: bool,
    /// The last ticket, kept when its answer did not come and it was not cancelled.
    kept: Option<Ticket>,
}

/// A native thread asking for the Lua thread's traceback, as the stall watchdog does; and
/// whether Lua said go.
struct Probe(Arc<Mutex<ProbeState>>, Arc<AtomicBool>);

impl UserData for Probe {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("go", |_, this, ()| {
            this.1.store(true, Ordering::SeqCst);
            Ok(())
        });
        methods.add_method("finished", |_, this, ()| Ok(this.0.lock().finished));
        methods.add_method("requested", |_, this, ()| Ok(this.0.lock().requested));
        // The answers, in order; false where none came.
        methods.add_method("answers", |lua, this, ()| {
            let state = this.0.lock();
            let t = lua.create_table()?;
            for answer in &state.answers {
                match answer {
                    Some(text) => t.push(text.as_str())?,
                    None => t.push(false)?,
                }
            }
            Ok(t)
        });
        methods.add_method("latencies", |lua, this, ()| lua.create_sequence_from(this.0.lock().latencies.clone()));
        // `take` on the kept ticket: its traceback if it came since.
        methods.add_method("take", |_, this, ()| Ok(this.0.lock().kept.as_ref().and_then(lua_traceback::take)));
    }
}

/// `traceback_probe{ after_go = bool, when_blocked = bool, count = n, wait = ms, cancel = bool,
/// kill_before = signal, kill_after = signal }`: a native thread that waits until Lua calls
/// `probe:go()` (or until the Lua thread is blocked in a system call), then `count` times
/// requests a traceback and waits up to `wait` for it; an answer that does not come is
/// cancelled if `cancel`, else its ticket is kept for `take`. `kill_before`/`kill_after`: a
/// signal sent to the process just before/after the first request (Prosody's own signals,
/// whose util.signal hooks Lua too).
fn start_probe(options: &Table) -> Result<Probe> {
    let after_go = options.get::<Option<bool>>("after_go")?.unwrap_or(false);
    let when_blocked = options.get::<Option<bool>>("when_blocked")?.unwrap_or(false);
    let count = options.get::<Option<usize>>("count")?.unwrap_or(1);
    let patience = Duration::from_millis(options.get::<Option<u64>>("wait")?.unwrap_or(1000));
    let cancel = options.get::<Option<bool>>("cancel")?.unwrap_or(false);
    let kill_before = options.get::<Option<i32>>("kill_before")?;
    let kill_after = options.get::<Option<i32>>("kill_after")?;
    let lua_thread = traceback::lua_thread_id();
    let shared = Arc::new(Mutex::new(ProbeState::default()));
    let go = Arc::new(AtomicBool::new(false));
    let (state, said_go) = (shared.clone(), go.clone());
    let run = move |()| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while after_go && !said_go.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if when_blocked {
            wait_until_blocked(lua_thread);
        }
        for round in 0..count {
            if round == 0 {
                kill_process(kill_before);
            }
            let Some(ticket) = lua_traceback::request() else {
                state.lock().requested = false;
                break;
            };
            let asked = Instant::now();
            if round == 0 {
                kill_process(kill_after);
            }
            let answer = lua_traceback::wait(&ticket, asked + patience);
            let mut found = state.lock();
            found.requested = true;
            found.latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
            if answer.is_none() && !cancel {
                found.kept = Some(ticket);
            } else {
                lua_traceback::cancel(ticket);
            }
            found.answers.push(answer);
        }
        state.lock().finished = true;
    };
    thread::spawn_worker("traceback-probe", std::iter::once(()), run)
        .map_err(|e| mlua::Error::runtime(format!("cannot start the probe: {e}")))?;
    Ok(Probe(shared, go))
}

/// Sends `signal` to this process: to the Lua thread, the only one that does not block it.
fn kill_process(signal: Option<i32>) {
    if let Some(signal) = signal {
        // SAFETY: kill only sends a signal, to this process.
        unsafe { libc::kill(libc::getpid(), signal) };
    }
}

/// Waits (up to 30 s) until the Lua thread sleeps in the kernel (state `S` in /proc).
fn wait_until_blocked(lua_thread: i32) {
    let path = format!("/proc/self/task/{lua_thread}/stat");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let state = std::fs::read_to_string(&path).ok().and_then(|stat| {
            let after_name = &stat[stat.rfind(')')? + 1..];
            after_name.split_whitespace().next().map(str::to_owned)
        });
        if state.as_deref() == Some("S") {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(feature = "module")]
#[mlua::lua_module(name = "log_ringbuffer_native_testing")]
fn luaopen_testing(lua: &Lua) -> Result<Table> {
    exports(lua)
}
