//! `dump_on_exit` when the main loop is hung: a stop signal (SIGTERM, SIGINT) that Prosody's
//! main loop does not act on in time makes a native thread dump the `dump_on_exit` sinks
//! (`pure::hung_stop` decides). The signal is only *noticed* here, never taken from Prosody:
//!
//! - Prosody 13 blocks the signal and reads it through its own signalfd from the main loop. A
//!   signalfd of ours for it is polled, never read, so the signal stays pending for Prosody's;
//!   while it is pending ours is readable (level-triggered), so once seen it is not polled again
//!   until `sigpending` says Prosody took it.
//! - Prosody 0.12 (and 0.11) give the signal a handler (util.signal's, which makes the main
//!   loop's Lua run mod_posix's handler). A handler of ours goes in front of it: it writes the
//!   signal's number into a pipe (async-signal-safe) and then calls that handler as the kernel
//!   would have. mod_posix registers its handlers on a timer after modules load, and may do so
//!   again (a reload), so [`check`] looks again each time the Lua side calls it; the handler we
//!   replaced goes back when the last sink goes.
//!
//! Each call of [`check`] from the Lua side is also a sign that the main loop runs. The thread
//! of this file blocks every signal, like every native thread.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::os::{self, ChainedHandler, Disposition};
use super::sink::{DumpOrigin, Sink};
use super::thread::{self, PerProcess};
use super::{reports, writer};
use crate::pure::hung_stop::{StopWatch, Verdict, GRACE};

/// The signals that stop Prosody (prosodyctl stop sends SIGTERM; Ctrl-C in the foreground
/// SIGINT), and the handler each calls after ours when we chain.
const STOP_SIGNALS: [(c_int, &str); 2] = [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")];
static CHAINED: [ChainedHandler; 2] = [ChainedHandler::new(), ChainedHandler::new()];

/// How often a signal seen pending is looked at again, to poll the signalfd once it is taken.
const PENDING_RECHECK: Duration = Duration::from_millis(100);

/// This process's thread: the pipe's write end, the signalfd it polls, the decision.
struct Process {
    wake: io::PipeWriter,
    signal_fd: Option<(Vec<c_int>, Arc<OwnedFd>)>,
    watch: StopWatch,
}

struct State {
    sinks: Vec<Weak<Sink>>,
    /// Signals whose handler we chained, with the disposition we replaced.
    chained: Vec<(c_int, Disposition)>,
    process: PerProcess<Process>,
    /// The last error [`check`] returned.
    last_problem: Option<String>,
}

static STATE: Mutex<State> =
    Mutex::new(State { sinks: Vec::new(), chained: Vec::new(), process: PerProcess::new(), last_problem: None });

/// The pipe our handler writes to; -1 before the thread exists.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Makes a stop signal to a hung main loop dump `sink` (its `dump_on_exit`).
pub(crate) fn watch(sink: &Arc<Sink>) -> Result<Vec<String>, String> {
    let mut state = STATE.lock();
    state.sinks.retain(|s| s.strong_count() > 0);
    if !state.sinks.iter().any(|s| s.as_ptr() == Arc::as_ptr(sink)) {
        state.sinks.push(Arc::downgrade(sink));
    }
    settle(&mut state)
}

/// Stops `sink` dumping that way; the last sink gives back what was taken.
pub(crate) fn unwatch(sink: &Arc<Sink>) {
    let mut state = STATE.lock();
    state.sinks.retain(|s| s.as_ptr() != Arc::as_ptr(sink) && s.strong_count() > 0);
    let _ = settle(&mut state);
}

/// Called from the main loop (cheap, idempotent): the loop runs; and follows how Prosody takes
/// the stop signals now (a handler installed or replaced since, a fork). What changed, for the
/// debug log, or an error; the same error again (it is checked every second) is not repeated.
pub(crate) fn check() -> Result<Vec<String>, String> {
    let mut state = STATE.lock();
    // Settled first: in a forked child the parent's pipe, which our handler may still write
    // to, is dropped only once a new one replaces it (see `thread::PerProcess::get_or_try`).
    let settled = settle(&mut state);
    if let Some(process) = state.process.get() {
        process.watch.alive(Instant::now());
    }
    match settled {
        Err(problem) if state.last_problem.as_ref() == Some(&problem) => Ok(Vec::new()),
        Err(problem) => {
            state.last_problem = Some(problem.clone());
            Err(problem)
        }
        Ok(changes) => {
            state.last_problem = None;
            Ok(changes)
        }
    }
}

/// Makes the handlers and the signalfd match what Prosody does and whether any sink watches.
fn settle(state: &mut State) -> Result<Vec<String>, String> {
    let mut changes = Vec::new();
    let wanted = !state.sinks.is_empty();
    if wanted {
        state.process.get_or_try(start_thread)?;
    }
    let mut by_signal_fd = Vec::new();
    for (slot, &(signal, name)) in STOP_SIGNALS.iter().enumerate() {
        let blocked = os::blocked_on_this_thread(signal);
        if wanted && blocked {
            by_signal_fd.push(signal);
        }
        let now = os::disposition(signal).map_err(|e| format!("cannot read how {name} is handled: {e}"))?;
        let ours = now.runs(on_stop_signal);
        let position = state.chained.iter().position(|(s, _)| *s == signal);
        if !wanted || blocked {
            if let Some(position) = position {
                let (_, previous) = state.chained.swap_remove(position);
                if ours {
                    os::restore_handler(signal, &previous);
                    changes.push(format!("{name}: Prosody's handler is no longer chained"));
                }
            }
        } else if !ours && now.is_chainable() {
            // Prosody's handler is in place (again, after replacing ours): go in front of it.
            let previous = os::install_chained_handler(signal, on_stop_signal, &now, &CHAINED[slot])
                .map_err(|e| format!("cannot watch {name} for dump_on_exit: {e}"))?;
            match position {
                Some(position) => state.chained[position].1 = previous,
                None => state.chained.push((signal, previous)),
            }
            changes.push(format!("{name}: chained in front of Prosody's handler, for dump_on_exit"));
        } else if !ours {
            if let Some(position) = position {
                state.chained.swap_remove(position); // reset to the default or ignored by someone
            }
        }
    }
    if let Some(process) = state.process.get() {
        let current = process.signal_fd.as_ref().map(|(signals, _)| signals.as_slice()).unwrap_or(&[]);
        if current != by_signal_fd.as_slice() {
            process.signal_fd = match by_signal_fd.is_empty() {
                true => None,
                false => {
                    let fd = os::signal_fd(&by_signal_fd).map_err(|e| format!("cannot watch stop signals: {e}"))?;
                    Some((by_signal_fd.clone(), Arc::new(fd)))
                }
            };
            changes.push(format!("stop signals watched through a signalfd: {}", names(&by_signal_fd)));
            os::write_byte_in_handler(process.wake.as_raw_fd(), 0); // the thread polls the new set
        }
    }
    Ok(changes)
}

fn names(signals: &[c_int]) -> String {
    let list: Vec<&str> = STOP_SIGNALS.iter().filter(|(s, _)| signals.contains(s)).map(|(_, name)| *name).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn start_thread() -> Result<Process, String> {
    let problem = |e: io::Error| format!("cannot start watching stop signals: {e}");
    let (read, write) = io::pipe().map_err(problem)?;
    os::set_nonblocking(write.as_fd(), true).map_err(problem)?;
    os::set_nonblocking(read.as_fd(), true).map_err(problem)?;
    thread::spawn_worker("log_ringbuffer-stop", std::iter::once(read), watch_loop).map_err(problem)?;
    WAKE_FD.store(write.as_raw_fd(), Ordering::Release);
    Ok(Process { wake: write, signal_fd: None, watch: StopWatch::default() })
}

/// Our handler: notes the signal (an atomic load and `write`), then Prosody's handler runs.
extern "C" fn on_stop_signal(signal: c_int, info: *mut libc::siginfo_t, context: *mut std::ffi::c_void) {
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        os::write_byte_in_handler(fd, signal as u8);
    }
    if let Some(slot) = STOP_SIGNALS.iter().position(|&(s, _)| s == signal) {
        CHAINED[slot].call(signal, info, context);
    }
}

/// The thread: waits for a stop signal, then for the decision.
fn watch_loop(mut pipe: io::PipeReader) {
    // A signal seen pending on the signalfd: not polled again until it is no longer pending.
    let mut seen_pending = false;
    loop {
        let closing = writer::is_closing(); // before STATE: it is a leaf lock
        let (signal_fd, verdict) = {
            let mut state = STATE.lock();
            let Some(process) = state.process.get() else { return };
            if closing {
                process.watch.exit_began();
            }
            (process.signal_fd.clone(), process.watch.poll(Instant::now()))
        };
        if let Verdict::Dump { signal } = verdict {
            dump_all(signal);
            continue;
        }
        let pending = signal_fd.as_ref().and_then(|(signals, _)| signals.iter().copied().find(|s| os::is_pending(*s)));
        seen_pending &= pending.is_some();
        let mut timeout = match verdict {
            Verdict::WaitUntil(deadline) => Some(deadline.saturating_duration_since(Instant::now())),
            _ => None,
        };
        if seen_pending {
            timeout = Some(timeout.map_or(PENDING_RECHECK, |t| t.min(PENDING_RECHECK)));
        }
        let polled_fd = signal_fd.as_ref().filter(|_| !seen_pending).map(|(_, fd)| fd.as_fd());
        let fds: Vec<_> = std::iter::once(pipe.as_fd()).chain(polled_fd).collect();
        let Ok(ready) = os::wait_readable(&fds, timeout) else {
            std::thread::sleep(PENDING_RECHECK); // cannot happen with valid descriptors; never spin
            continue;
        };
        let mut signals = Vec::new();
        if ready.first() == Some(&true) {
            let mut bytes = [0u8; 64];
            match pipe.read(&mut bytes) {
                Ok(0) => return, // the write end is gone: nothing can reach us any more
                Ok(n) => signals.extend(bytes[..n].iter().filter(|&&b| b != 0).map(|&b| c_int::from(b))),
                Err(_) => {}
            }
        }
        if ready.get(1) == Some(&true) {
            seen_pending = true;
            signals.extend(signal_fd.as_ref().and_then(|(list, _)| list.iter().copied().find(|s| os::is_pending(*s))));
        }
        if !signals.is_empty() {
            let mut state = STATE.lock();
            if let Some(process) = state.process.get() {
                for signal in signals {
                    process.watch.signalled(signal, Instant::now());
                }
            }
        }
    }
}

/// The loop is hung: every `dump_on_exit` sink dumps, as a native signal would make it.
fn dump_all(signal: c_int) {
    let name = STOP_SIGNALS.iter().find(|(s, _)| *s == signal).map_or("a stop signal", |(_, name)| name);
    if writer::is_closing() {
        return;
    }
    let sinks: Vec<Arc<Sink>> = STATE.lock().sinks.iter().filter_map(Weak::upgrade).collect();
    if sinks.is_empty() {
        return;
    }
    reports::push(
        "warn",
        format!(
            "{name} arrived and Prosody's main loop did not respond within {} s: dumping the dump_on_exit \
             sinks now; the exit dump, if it comes, holds what is logged after this",
            GRACE.as_secs_f64()
        ),
    );
    let reason = format!("dump_on_exit ({name}; Prosody's main loop is not responding)");
    for sink in sinks {
        sink.newest().dump_and_report(DumpOrigin::NativeThread, &reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A real signal, blocked on the thread (as Prosody 13 blocks it), makes the signalfd
    /// readable and stays pending: it is noticed, not taken.
    #[test]
    fn a_blocked_signal_is_seen_on_the_signalfd_and_left_pending() {
        let signal = libc::SIGRTMAX() - 5;
        let checked = std::thread::spawn(move || {
            os::block_all_signals();
            let fd = os::signal_fd(&[signal]).expect("signalfd");
            let before = os::wait_readable(&[fd.as_fd()], Some(Duration::from_millis(1))).expect("poll");
            os::signal_this_thread(signal);
            let after = os::wait_readable(&[fd.as_fd()], Some(Duration::from_secs(5))).expect("poll");
            let pending = os::is_pending(signal);
            let again = os::wait_readable(&[fd.as_fd()], Some(Duration::from_millis(1))).expect("poll");
            (before, after, pending, again)
        });
        let (before, after, pending, again) = checked.join().expect("thread");
        assert_eq!(before, vec![false]);
        assert_eq!(after, vec![true]);
        assert!(pending, "polling the signalfd left the signal pending");
        assert_eq!(again, vec![true], "level-triggered: readable while pending");
    }

    static PROSODYS_HANDLER_RAN: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn prosodys_handler(_: c_int) {
        PROSODYS_HANDLER_RAN.fetch_add(1, Ordering::SeqCst);
    }

    /// A real SIGTERM with a handler in place (as Prosody 0.12's util.signal installs): ours
    /// goes in front, the signal is noticed, the previous handler still runs once per signal,
    /// and it is given back with the last sink.
    #[test]
    fn a_handled_signal_is_chained_noticed_passed_on_and_given_back() {
        let previous = os::install_handler(libc::SIGTERM, prosodys_handler).expect("install");
        let sink = Arc::new(Sink::for_tests());
        let changes = watch(&sink).expect("watch");
        assert!(changes.iter().any(|c| c.starts_with("SIGTERM: chained")), "{changes:?}");
        assert!(os::disposition(libc::SIGTERM).expect("query").runs(on_stop_signal));
        assert!(check().expect("check").is_empty(), "idempotent");

        os::signal_this_thread(libc::SIGTERM);
        assert_eq!(PROSODYS_HANDLER_RAN.load(Ordering::SeqCst), 1, "Prosody's handler ran as before");
        let deadline = Instant::now() + Duration::from_secs(10);
        let noticed = loop {
            let verdict = STATE.lock().process.get().map(|p| p.watch.poll(Instant::now()));
            if matches!(verdict, Some(Verdict::WaitUntil(_))) || Instant::now() > deadline {
                break verdict;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(matches!(noticed, Some(Verdict::WaitUntil(_))), "{noticed:?}");
        // Decided later by the thread; cancelled here, so this test never dumps.
        if let Some(process) = STATE.lock().process.get() {
            process.watch.exit_began();
        }

        // Prosody registers its handler again (0.12: mod_posix reloaded), displacing ours: the
        // next check goes in front of it again, and the signal still reaches both.
        let ours = os::install_handler(libc::SIGTERM, prosodys_handler).expect("displace");
        assert!(ours.runs(on_stop_signal));
        let changes = check().expect("check");
        assert!(changes.iter().any(|c| c.starts_with("SIGTERM: chained")), "{changes:?}");
        os::signal_this_thread(libc::SIGTERM);
        assert_eq!(PROSODYS_HANDLER_RAN.load(Ordering::SeqCst), 2);

        unwatch(&sink);
        assert_eq!(os::current_handler(libc::SIGTERM), prosodys_handler as *const () as libc::sighandler_t);
        os::restore_handler(libc::SIGTERM, &previous);
    }
}
