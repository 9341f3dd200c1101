//! The fatal signals, the dispositions our handler replaced (saved at arming), and what
//! happens after the dump: each signal gets its previous disposition back, and the signal is
//! passed on as it would have been without us (the default action by raising it again, or the
//! previous handler, called as the kernel would have). Async-signal-safe.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

/// The signals that dump, by index in the handler's tables.
pub(super) const FATAL: [(c_int, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGABRT, "SIGABRT"),
];

/// The dispositions the fatal signals had before ours, for the handler (by index in `FATAL`).
pub(super) struct Previous {
    pub(super) actions: [UnsafeCell<MaybeUninit<libc::sigaction>>; 5],
    /// `actions[i]` holds the disposition our handler replaced.
    pub(super) saved: [AtomicBool; 5],
}

// SAFETY: `actions[i]` is written only while `saved[i]` is false and our handler is not
// installed for that signal (callers hold `STATE`); the handler reads it only when `saved[i]`.
unsafe impl Sync for Previous {}

pub(super) static PREVIOUS: Previous = Previous {
    actions: [const { UnsafeCell::new(MaybeUninit::uninit()) }; 5],
    saved: [const { AtomicBool::new(false) }; 5],
};

pub(super) fn signal_index(signal: c_int) -> Option<usize> {
    FATAL.iter().position(|&(s, _)| s == signal)
}

/// The disposition our handler replaced for `FATAL[index]`, if it saved one.
fn previous(index: usize) -> Option<libc::sigaction> {
    if !PREVIOUS.saved[index].load(Ordering::SeqCst) {
        return None;
    }
    // SAFETY: `saved` says it was written, and it is not written again while saved (`Previous`).
    Some(unsafe { (*PREVIOUS.actions[index].get()).assume_init() })
}

/// Every fatal signal gets the disposition it had before ours.
pub(super) fn put_back_previous() {
    for (index, &(signal, _)) in FATAL.iter().enumerate() {
        if let Some(action) = previous(index) {
            // SAFETY: sigaction (async-signal-safe) reads a disposition it once returned.
            unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        }
    }
}

/// Sets `signal` to its default action.
pub(super) fn set_default(signal: c_int) {
    // SAFETY: a zeroed sigaction is SIG_DFL with no flags and an empty mask; sigaction is
    // async-signal-safe.
    unsafe {
        let action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

pub(super) fn raise(signal: c_int) {
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(signal) };
}

/// What would have happened without us (see the module doc).
pub(super) fn pass_on(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let action = signal_index(signal).and_then(previous);
    let handler = action.map_or(libc::SIG_DFL, |a| a.sa_sigaction);
    if handler == libc::SIG_IGN {
        return; // never installed over SIG_IGN; only a handler of ours left from before can see it
    }
    let Some(action) = action.filter(|_| handler != libc::SIG_DFL) else {
        set_default(signal);
        raise(signal); // blocked until the handler returns: then the process dies by it
        return;
    };
    if action.sa_flags & libc::SA_RESETHAND != 0 {
        set_default(signal); // what the kernel does when it delivers to such a handler
    }
    if action.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the previous owner registered a three-argument handler at
        // this address; it gets the arguments the kernel gave us.
        let previous: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = unsafe { std::mem::transmute(handler) };
        previous(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the address is a one-argument handler.
        let previous: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        previous(signal);
    }
}
