//! Dump triggers: which signal names mean what, and the native signal thread.
//!
//! SIGUSR1 and SIGUSR2 belong to Prosody, which turns them into the global events
//! `signal/SIGUSR1` and `signal/SIGUSR2` on 0.12 and 13 alike; the Lua side hooks those.
//! Any other catchable signal is handled here by signal-hook in a Rust thread that writes the
//! dump itself, so it works while the Lua thread is busy. That thread blocks every signal, so
//! it never steals one Prosody handles. Its outcomes go to `reports`, since only the Lua thread
//! may call into Prosody's logger.

use std::os::raw::c_int;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use signal_hook::iterator::{Handle, Signals};

use crate::sink::Sink;

/// What fires a dump.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A Prosody global event (including `signal/SIGUSR1` and `signal/SIGUSR2`).
    Event(String),
    /// A signal handled natively, with its name as configured.
    Signal(c_int, String),
}

const NAMED: &[(&str, c_int)] = &[
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGALRM", libc::SIGALRM),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPOLL", libc::SIGPOLL),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSTKFLT", libc::SIGSTKFLT),
];

/// Signals Prosody (or the C runtime under it) uses for itself, or that cannot be caught.
const RESERVED: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE", "SIGKILL", "SIGSTOP", "SIGILL", "SIGFPE", "SIGSEGV", "SIGBUS", "SIGABRT",
    "SIGTRAP", "SIGSYS",
];

/// Reads a `signal` option. Errors say what is accepted.
pub fn parse_signal(name: &str) -> Result<Trigger, String> {
    if name == "SIGUSR1" || name == "SIGUSR2" {
        return Ok(Trigger::Event(format!("signal/{name}")));
    }
    if RESERVED.contains(&name) {
        return Err(format!("a signal Prosody does not use itself ({name} is reserved), e.g. \"SIGUSR2\""));
    }
    if let Some(&(_, number)) = NAMED.iter().find(|(n, _)| *n == name) {
        return Ok(Trigger::Signal(number, name.to_string()));
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let realtime = if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        offset(rest, '+').map(|n| min + n)
    } else if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        offset(rest, '-').map(|n| max - n)
    } else {
        None
    };
    match realtime {
        Some(number) if (min..=max).contains(&number) => Ok(Trigger::Signal(number, name.to_string())),
        _ => Err(format!(
            "a signal name: \"SIGUSR1\", \"SIGUSR2\", \"SIGWINCH\", \"SIGRTMIN+n\" or another catchable signal \
             Prosody does not use ({name:?} is not one)"
        )),
    }
}

/// `""` or `"<sign><n>"` after SIGRTMIN/SIGRTMAX.
fn offset(rest: &str, sign: char) -> Option<c_int> {
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(sign)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

struct Watch {
    signal: c_int,
    name: String,
    sink: Weak<Sink>,
}

struct Native {
    /// The process that started the signal thread (threads do not survive `fork`), and the
    /// handle that adds signals to it.
    thread: Option<(u32, Handle)>,
    watches: Vec<Watch>,
}

static NATIVE: Mutex<Native> = Mutex::new(Native { thread: None, watches: Vec::new() });

/// Makes `signal` dump `sink`. Starts the signal thread on first use.
pub fn watch(signal: c_int, name: &str, sink: &Arc<Sink>) -> Result<(), String> {
    let mut native = NATIVE.lock();
    let already = native.watches.iter().any(|w| w.signal == signal && std::ptr::eq(w.sink.as_ptr(), Arc::as_ptr(sink)));
    if !already {
        native.watches.push(Watch { signal, name: name.to_string(), sink: Arc::downgrade(sink) });
    }
    ensure_thread(&mut native)?.add_signal(signal).map_err(|e| format!("cannot handle {name}: {e}"))
}

/// Stops every native trigger of `sink`.
pub fn unwatch(sink: &Arc<Sink>) {
    NATIVE.lock().watches.retain(|w| !std::ptr::eq(w.sink.as_ptr(), Arc::as_ptr(sink)) && w.sink.strong_count() > 0);
}

/// Starts the signal thread again in a forked child (Prosody 0.12's `-D` forks after modules
/// load). Cheap when nothing changed; the Lua side calls it periodically.
pub fn rearm_after_fork() -> Result<(), String> {
    let mut native = NATIVE.lock();
    if native.watches.is_empty() {
        return Ok(());
    }
    ensure_thread(&mut native).map(|_| ())
}

fn ensure_thread(native: &mut Native) -> Result<&Handle, String> {
    let pid = std::process::id();
    if let Some((owner, handle)) = &native.thread {
        if *owner != pid {
            // The parent's thread is not here; drop its registrations and pipe.
            handle.close();
            native.thread = None;
        }
    }
    if native.thread.is_none() {
        let signals: Vec<c_int> = native.watches.iter().map(|w| w.signal).collect();
        native.thread = Some((pid, start_thread(&signals)?));
    }
    match &native.thread {
        Some((_, handle)) => Ok(handle),
        None => Err("the signal thread is not running".into()),
    }
}

fn start_thread(signals: &[c_int]) -> Result<Handle, String> {
    let mut signals = Signals::new(signals).map_err(|e| format!("cannot set up signal handling: {e}"))?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("log_ringbuffer-signals".into())
        .spawn(move || {
            block_all_signals();
            for signal in signals.forever() {
                // A bug in one dump must not end the thread that serves every signal.
                let _ = std::panic::catch_unwind(|| dump_for(signal));
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(handle)
}

/// Native threads must never take a signal meant for Prosody's own handlers.
pub fn block_all_signals() {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

fn dump_for(signal: c_int) {
    let targets: Vec<(String, Arc<Sink>)> = NATIVE
        .lock()
        .watches
        .iter()
        .filter(|w| w.signal == signal)
        .filter_map(|w| Some((w.name.clone(), w.sink.upgrade()?)))
        .collect();
    for (name, sink) in targets {
        // This thread is already off the Lua thread: write here, in order.
        if let Err(e) = sink.dump(false, &name) {
            crate::sink::report_failure(&e, &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prosody_signals_become_events() {
        assert_eq!(parse_signal("SIGUSR2"), Ok(Trigger::Event("signal/SIGUSR2".into())));
        assert_eq!(parse_signal("SIGUSR1"), Ok(Trigger::Event("signal/SIGUSR1".into())));
    }

    #[test]
    fn other_signals_are_native() {
        assert_eq!(parse_signal("SIGWINCH"), Ok(Trigger::Signal(libc::SIGWINCH, "SIGWINCH".into())));
        assert_eq!(parse_signal("SIGRTMIN+2"), Ok(Trigger::Signal(libc::SIGRTMIN() + 2, "SIGRTMIN+2".into())));
        assert_eq!(parse_signal("SIGRTMAX-1"), Ok(Trigger::Signal(libc::SIGRTMAX() - 1, "SIGRTMAX-1".into())));
        assert_eq!(parse_signal("SIGRTMIN"), Ok(Trigger::Signal(libc::SIGRTMIN(), "SIGRTMIN".into())));
    }

    #[test]
    fn bad_names_are_refused() {
        for name in
            ["SIGFOO", "USR2", "SIGHUP", "SIGTERM", "SIGKILL", "SIGRTMIN+99", "SIGRTMIN-1", "SIGRTMIN+", "", "9"]
        {
            assert!(parse_signal(name).is_err(), "{name}");
        }
    }
}
