//! The watchdog: `alarm` ends the process by the crash's signal if the dumps take longer than
//! [`WATCHDOG_SECONDS`] (a hung disk, a FIFO whose reader does not read, a deadlock caused by a
//! torn ring).

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

use super::previous::set_default;

/// How long the dumps may take before the watchdog ends the process by its signal (the tests
/// wait less).
pub(super) const WATCHDOG_SECONDS: u32 = if cfg!(test) { 2 } else { 10 };

/// The signal the watchdog ends the process with.
static WATCHED: AtomicI32 = AtomicI32::new(0);

/// SIGALRM's disposition while the watchdog runs, put back when it stops.
struct SavedAlarm(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: only the first thread into the handler (the one that set `CRASHING`, once per process)
// starts and stops the watchdog.
unsafe impl Sync for SavedAlarm {}

static SAVED_ALARM: SavedAlarm = SavedAlarm(UnsafeCell::new(MaybeUninit::uninit()));

/// Ends the process by the crash's signal if the dumps take too long.
pub(super) struct Watchdog {
    armed: bool,
}

impl Watchdog {
    pub(super) fn start(signal: c_int) -> Self {
        WATCHED.store(signal, Ordering::SeqCst);
        // SAFETY: only the first thread into the handler runs this (`SavedAlarm`); sigaction,
        // pthread_sigmask and alarm are async-signal-safe and read zeroed or filled locals.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_watchdog as extern "C" fn(c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_ONSTACK;
            libc::sigfillset(&mut action.sa_mask);
            let old = (*SAVED_ALARM.0.get()).as_mut_ptr();
            if libc::sigaction(libc::SIGALRM, &action, old) != 0 {
                return Watchdog { armed: false };
            }
            let mut alarm: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut alarm);
            libc::sigaddset(&mut alarm, libc::SIGALRM);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &alarm, std::ptr::null_mut());
            libc::alarm(WATCHDOG_SECONDS);
        }
        Watchdog { armed: true }
    }

    pub(super) fn stop(self) {
        if self.armed {
            // SAFETY: as in `start`, which filled the saved disposition.
            unsafe {
                libc::alarm(0);
                libc::sigaction(libc::SIGALRM, (*SAVED_ALARM.0.get()).as_ptr(), std::ptr::null_mut());
            }
        }
    }
}

extern "C" fn on_watchdog(_: c_int) {
    let signal = WATCHED.load(Ordering::SeqCst);
    set_default(signal);
    // SAFETY: pthread_sigmask, raise and _exit are async-signal-safe; the set is a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
        libc::_exit(128 + signal);
    }
}
