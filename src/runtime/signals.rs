//! Native signal triggers: a signal Prosody does not use itself (SIGWINCH, SIGRTMIN+n, ...)
//! dumps the sinks that asked for it, from a thread of ours, so it works even while Prosody's
//! main loop is busy or stuck.
//!
//! The handler only writes the signal's number into a pipe (async-signal-safe); the signal
//! thread reads the pipe and starts the dumps. The disposition a signal had before is saved
//! when the first sink asks for it and put back when the last one goes, so a signal we no
//! longer use behaves as it did before (`kill -TSTP` stops Prosody again, for example).
//! signal-hook cannot do that: its handlers stay installed for the life of the process.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::os::{self, Disposition};
use super::sink::{DumpOrigin, Sink};
use super::thread::{self, PerProcess};

struct Watch {
    signal: c_int,
    name: String,
    sink: Weak<Sink>,
}

/// A signal whose handler is ours, and what it was before.
struct Installed {
    signal: c_int,
    previous: Disposition,
}

/// The write end of this process's signal pipe (its read end belongs to the signal thread).
struct Pipe {
    _write: io::PipeWriter,
}

struct Native {
    pipe: PerProcess<Pipe>,
    watches: Vec<Watch>,
    installed: Vec<Installed>,
}

static NATIVE: Mutex<Native> =
    Mutex::new(Native { pipe: PerProcess::new(), watches: Vec::new(), installed: Vec::new() });

/// The pipe the handler writes to; -1 before the first native trigger.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Makes `signal` dump `sink`. Starts the signal thread and installs the handler on first use.
pub(crate) fn watch(signal: c_int, name: &str, sink: &Arc<Sink>) -> Result<(), String> {
    let mut native = NATIVE.lock();
    native.pipe.get_or_try(start_thread)?;
    let already = native.watches.iter().any(|w| w.signal == signal && w.sink.as_ptr() == Arc::as_ptr(sink));
    if !already {
        native.watches.push(Watch { signal, name: name.to_string(), sink: Arc::downgrade(sink) });
    }
    if !native.installed.iter().any(|i| i.signal == signal) {
        let previous = os::install_handler(signal, on_signal).map_err(|e| format!("cannot handle {name}: {e}"))?;
        native.installed.push(Installed { signal, previous });
    }
    Ok(())
}

/// Stops every native trigger of `sink`, and gives back each signal no sink uses any more.
pub(crate) fn unwatch(sink: &Arc<Sink>) {
    let mut native = NATIVE.lock();
    native.watches.retain(|w| w.sink.as_ptr() != Arc::as_ptr(sink) && w.sink.strong_count() > 0);
    let Native { watches, installed, .. } = &mut *native;
    installed.retain(|i| {
        if watches.iter().any(|w| w.signal == i.signal) {
            return true;
        }
        os::restore_handler(i.signal, &i.previous);
        false
    });
}

/// Starts the signal thread again in a forked child (the handlers survive a fork, threads do
/// not). Cheap when nothing changed; the Lua side calls it periodically.
pub(crate) fn rearm_after_fork() -> Result<(), String> {
    let mut native = NATIVE.lock();
    if native.watches.is_empty() {
        return Ok(());
    }
    native.pipe.get_or_try(start_thread).map(|_| ())
}

/// A new pipe whose read end a new signal thread reads. The handler writes to it from now on.
fn start_thread() -> Result<Pipe, String> {
    let (mut read, write) = io::pipe().map_err(|e| format!("cannot set up signal handling: {e}"))?;
    os::set_nonblocking(write.as_fd(), true).map_err(|e| format!("cannot set up signal handling: {e}"))?;
    let signals = std::iter::from_fn(move || {
        let mut byte = [0u8];
        loop {
            match read.read(&mut byte) {
                Ok(1) => return Some(c_int::from(byte[0])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return None,
            }
        }
    });
    thread::spawn_worker("log_ringbuffer-signals", signals, dump_for)
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    WAKE_FD.store(write.as_raw_fd(), Ordering::Release);
    Ok(Pipe { _write: write })
}

/// The handler: async-signal-safe (an atomic load and `write`).
extern "C" fn on_signal(signal: c_int) {
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        os::write_byte_in_handler(fd, signal as u8);
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
        sink.dump_and_report(DumpOrigin::NativeThread, &name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_disposition_comes_back_with_the_last_sink() {
        let signal = libc::SIGRTMAX() - 3;
        assert_eq!(os::current_handler(signal), libc::SIG_DFL);
        let (first, second) = (Arc::new(Sink::for_tests()), Arc::new(Sink::for_tests()));
        watch(signal, "SIGRTMAX-3", &first).expect("watch");
        watch(signal, "SIGRTMAX-3", &second).expect("watch");
        assert_ne!(os::current_handler(signal), libc::SIG_DFL);
        unwatch(&first);
        assert_ne!(os::current_handler(signal), libc::SIG_DFL, "still used by the second sink");
        unwatch(&second);
        assert_eq!(os::current_handler(signal), libc::SIG_DFL);
    }
}
