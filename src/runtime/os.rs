//! The few operating-system calls the runtime needs that the standard library does not offer:
//! signal dispositions (SIGXFSZ made harmless among them), blocking all signals on a thread, a
//! descriptor's non-blocking flag, allocating a file region, a TCP socket's unacknowledged
//! bytes, and the C library's wording of an error. Every `unsafe` block of the runtime outside
//! the ring's lock is here.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::raw::c_int;

/// A signal disposition, as saved by [`install_handler`] and given back by [`restore_handler`].
pub(crate) struct Disposition(libc::sigaction);

// SAFETY: a `sigaction` is plain data (a handler address, flags and a signal set).
unsafe impl Send for Disposition {}

/// Makes `handler` the handler of `signal` (restarting interrupted calls, every signal blocked
/// while it runs); returns the disposition it replaced.
pub(crate) fn install_handler(signal: c_int, handler: extern "C" fn(c_int)) -> io::Result<Disposition> {
    // SAFETY: both structs are zeroed plain data, filled in before use, and only read by
    // sigaction; `handler` is a plain `extern "C" fn(c_int)`, as sa_handler expects.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigfillset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &action, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Disposition(previous))
    }
}

/// Gives `signal` back the disposition [`install_handler`] saved.
pub(crate) fn restore_handler(signal: c_int, previous: &Disposition) {
    // SAFETY: `previous` was filled in by sigaction; a null old-action pointer is allowed.
    unsafe {
        libc::sigaction(signal, &previous.0, std::ptr::null_mut());
    }
}

/// Makes a file-size limit (`ulimit -f`, `RLIMIT_FSIZE`) a write error instead of the end of
/// Prosody: a write or an allocation past the limit raises SIGXFSZ, whose default action kills
/// the process; ignored, the call just fails with `EFBIG`. Only the default disposition is
/// replaced: a handler or an ignore set by someone else stays as it is. It is not put back
/// later: a SIGXFSZ raised by a write that just failed may be delivered after any moment chosen
/// to restore the default, and would then kill the process. (Programs Prosody starts keep it
/// ignored too, as `exec` keeps ignored signals.) True if it was changed now.
pub(crate) fn ignore_file_size_signal() -> bool {
    // SAFETY: a query into zeroed plain data, then, if the default is in place, an action of
    // zeroed plain data with SIG_IGN as its handler; both only read by sigaction.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut now) != 0 || now.sa_sigaction != libc::SIG_DFL {
            return false;
        }
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut ignore.sa_mask);
        libc::sigaction(libc::SIGXFSZ, &ignore, std::ptr::null_mut()) == 0
    }
}

/// The handler currently installed for `signal` (`SIG_DFL`, `SIG_IGN` or an address).
#[cfg(test)]
pub(crate) fn current_handler(signal: c_int) -> libc::sighandler_t {
    // SAFETY: a query only (null new action) into zeroed plain data.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut now);
        now.sa_sigaction
    }
}

/// Writes `byte` to `fd` from a signal handler: async-signal-safe, and `errno` is kept.
pub(crate) fn write_byte_in_handler(fd: c_int, byte: u8) {
    // SAFETY: __errno_location returns this thread's errno slot; write(2) is async-signal-safe
    // and reads one byte from a local. A bad descriptor only makes write fail.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// Whether `signal` is pending: raised but blocked (Prosody 13 blocks the signals it reads
/// through signalfd, and one that arrives as the main loop stops stays pending).
pub(crate) fn is_pending(signal: c_int) -> bool {
    // SAFETY: sigpending fills the zeroed local set; sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set) == 0 && libc::sigismember(&set, signal) == 1
    }
}

/// Blocks every signal on the calling thread.
/// Except the fatal ones (a fault in the thread, `abort()`): blocked, the kernel would kill the
/// process without running the crash handler (see `crash`).
pub(crate) fn block_all_signals() {
    // SAFETY: sigfillset and sigdelset initialise and edit the local set; pthread_sigmask only
    // reads it.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        for fatal in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGABRT] {
            libc::sigdelset(&mut all, fatal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// Sets or clears `O_NONBLOCK` on a descriptor.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller keeps open; no memory is passed.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        let wanted = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        flags >= 0 && (flags == wanted || libc::fcntl(fd, libc::F_SETFL, wanted) == 0)
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes written to a TCP socket that the peer has not acknowledged yet (`SIOCOUTQ`, Linux's
/// `TIOCOUTQ` on a socket): while any are left, the peer has not taken everything sent.
pub(crate) fn unacknowledged_bytes(socket: BorrowedFd<'_>) -> io::Result<usize> {
    let mut queued: c_int = 0;
    // SAFETY: SIOCOUTQ writes one int into `queued`, a local that outlives the call, on a
    // descriptor the caller keeps open.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// Allocates `len` bytes of disk at `offset` (growing the file), so that writing them later
/// cannot fail for want of space. `Unsupported` where the file system cannot do that.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::FileTooLarge));
    };
    // SAFETY: posix_fallocate on a descriptor `file` keeps open; no memory is passed.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), offset, len) } {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => Err(io::Error::from(io::ErrorKind::Unsupported)),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

/// The C library's text for an OS error (as Lua's `io.open` words it), without Rust's
/// "(os error N)" suffix.
pub(crate) fn reason(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    // SAFETY: strerror returns a pointer to a NUL-terminated string that stays valid until the
    // next strerror call on this thread; it is copied at once.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) };
    text.to_string_lossy().into_owned()
}

// ---- For runtime::crash: the fatal signals' handler (installed here, run there) ----

/// A handler that gets the signal's details (`SA_SIGINFO`): the signal, its `siginfo_t` and the
/// interrupted context.
pub(crate) type InfoHandler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut std::ffi::c_void);

impl Disposition {
    /// The disposition as the C library holds it, for a signal handler to put back or call.
    pub(crate) fn raw(&self) -> libc::sigaction {
        self.0
    }

    /// Whether the signal is ignored (`SIG_IGN`).
    pub(crate) fn is_ignored(&self) -> bool {
        self.0.sa_sigaction == libc::SIG_IGN
    }
}

/// The disposition `signal` has now.
pub(crate) fn disposition(signal: c_int) -> io::Result<Disposition> {
    // SAFETY: a query only (null new action) into zeroed plain data.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut now) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Disposition(now))
    }
}

/// Makes `handler` the handler of `signal` with `SA_SIGINFO` (it gets the signal's details) and
/// `SA_ONSTACK` (it runs on the thread's alternate signal stack if there is one, so a stack
/// overflow can be handled), every signal blocked while it runs; returns the disposition it
/// replaced.
pub(crate) fn install_info_handler(signal: c_int, handler: InfoHandler) -> io::Result<Disposition> {
    // SAFETY: both structs are zeroed plain data, filled in before use, and only read by
    // sigaction; with SA_SIGINFO, sa_sigaction holds a three-argument handler, as `handler` is.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigfillset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &action, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Disposition(previous))
    }
}

/// Gives the calling thread an alternate signal stack of `size` bytes if it has none, so that
/// `SA_ONSTACK` handlers run even when the thread's own stack has overflowed. The stack is
/// mapped lazily (no memory is used until a handler runs on it) and kept until exit. True if
/// one was set up.
pub(crate) fn ensure_alternate_stack(size: usize) -> io::Result<bool> {
    // SAFETY: sigaltstack queries into a zeroed local; mmap asks for a fresh private anonymous
    // mapping, which is only handed to the kernel as the new stack and never unmapped (a handler
    // may run on it at any time until exit).
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut current) != 0 {
            return Err(io::Error::last_os_error());
        }
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return Ok(false);
        }
        let memory = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if memory == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = libc::stack_t { ss_sp: memory, ss_flags: 0, ss_size: size };
        if libc::sigaltstack(&stack, std::ptr::null_mut()) != 0 {
            let error = io::Error::last_os_error();
            libc::munmap(memory, size);
            return Err(error);
        }
        Ok(true)
    }
}

/// The calling thread's kernel id (async-signal-safe).
pub(crate) fn thread_id() -> c_int {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Gives the calling thread the lowest CPU priority (nice 19), so that on a busy machine
/// Prosody's main thread runs first; best effort.
pub(crate) fn lowest_priority_for_this_thread() {
    // SAFETY: setpriority takes plain integers; on Linux PRIO_PROCESS with a thread id sets
    // that one thread's nice value. A failure changes nothing.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, thread_id() as libc::id_t, 19) };
}

/// Sleeps for `pause` (async-signal-safe: nanosleep).
pub(crate) fn pause_in_handler(pause: std::time::Duration) {
    let pause = libc::timespec { tv_sec: pause.as_secs() as libc::time_t, tv_nsec: pause.subsec_nanos().into() };
    // SAFETY: nanosleep reads the local timespec; a null remainder is allowed.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}
