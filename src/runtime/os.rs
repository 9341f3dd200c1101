//! The few operating-system calls the runtime needs that the standard library does not offer:
//! signal dispositions (SIGXFSZ made harmless among them), blocking all signals on a thread, a
//! descriptor's non-blocking flag, allocating a file region, a TCP socket's unacknowledged
//! bytes, a send that never waits, the C library's wording of an error, noticing a stop signal without taking it, and a
//! shared file mapping with its lock and a fork counter (the journal of `persist`). Every
//! `unsafe` block of the runtime outside the ring's lock is here.

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

/// Sends what socket `fd` takes of `bytes` at once: never waits, and a peer that went away is
/// an error (`EPIPE`), not a SIGPIPE. `WouldBlock` when it takes nothing now.
pub(crate) fn send_now(fd: c_int, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length are `bytes`'s, valid for reading during the call, and send
    // only reads them. `fd` is a plain number: one that is not an open socket fails (EBADF,
    // ENOTSOCK) without effect.
    let sent = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
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

// ---- For runtime::stop_signal: noticing a stop signal without taking it from Prosody ----

/// Whether `signal` is blocked on the calling thread (Prosody 13 blocks the signals it reads
/// through signalfd before modules load).
pub(crate) fn blocked_on_this_thread(signal: c_int) -> bool {
    // SAFETY: a query only (null new set) into a zeroed local set; sigismember only reads it.
    unsafe {
        let mut now: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now) == 0 && libc::sigismember(&now, signal) == 1
    }
}

/// A signalfd for `signals`, non-blocking and closed on exec. It is meant to be *polled only*:
/// it becomes readable while one of them is pending, and reading it would take the signal.
pub(crate) fn signal_fd(signals: &[c_int]) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: sigemptyset and sigaddset fill the zeroed local set; signalfd only reads it and
    // returns a new descriptor that nothing else owns, handed to OwnedFd at once.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::os::fd::OwnedFd::from_raw_fd(fd))
    }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes (`None`: no limit).
/// Which ones are; none if the wait was interrupted or timed out.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<std::time::Duration>) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    // Rounded up, so a wait for a deadline does not wake just before it.
    let millis = timeout.map_or(-1, |t| c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX));
    // SAFETY: poll reads and writes `polled.len()` pollfd entries of the local vector.
    let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(polled.iter().map(|p| ready > 0 && p.revents != 0).collect())
}

impl Disposition {
    /// Whether the signal has a handler function (not `SIG_DFL` nor `SIG_IGN`) that a handler
    /// of ours can call after its own work, as the kernel would have: not one the kernel resets
    /// on delivery (`SA_RESETHAND`), which a chain could not imitate.
    pub(crate) fn is_chainable(&self) -> bool {
        let handler = self.0.sa_sigaction;
        handler != libc::SIG_DFL && handler != libc::SIG_IGN && self.0.sa_flags & libc::SA_RESETHAND == 0
    }

    /// Whether `handler` is the handler of this disposition.
    pub(crate) fn runs(&self, handler: InfoHandler) -> bool {
        self.0.sa_sigaction == handler as libc::sighandler_t
    }
}

/// The handler a chained handler of ours calls after its own work: set only from a
/// disposition sigaction returned, so it is always a handler function of the right kind.
/// Atomics: a signal handler reads it.
pub(crate) struct ChainedHandler {
    address: std::sync::atomic::AtomicUsize,
    flags: std::sync::atomic::AtomicI32,
}

impl ChainedHandler {
    pub(crate) const fn new() -> Self {
        ChainedHandler { address: std::sync::atomic::AtomicUsize::new(0), flags: std::sync::atomic::AtomicI32::new(0) }
    }

    /// Calls `previous`'s handler from now on (if it is chainable; else nothing).
    fn set(&self, previous: &Disposition) {
        use std::sync::atomic::Ordering;
        if previous.is_chainable() {
            self.flags.store(previous.0.sa_flags, Ordering::SeqCst);
            self.address.store(previous.0.sa_sigaction, Ordering::SeqCst);
        }
    }

    /// In a signal handler: calls the saved handler with the arguments the kernel gave us, in
    /// the form it was registered with.
    pub(crate) fn call(&self, signal: c_int, info: *mut libc::siginfo_t, context: *mut std::ffi::c_void) {
        use std::sync::atomic::Ordering;
        let address = self.address.load(Ordering::SeqCst);
        if address == 0 || address == libc::SIG_DFL || address == libc::SIG_IGN {
            return;
        }
        if self.flags.load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
            // SAFETY: `address` came from a disposition sigaction returned with SA_SIGINFO set
            // (see `set`): a three-argument handler; it gets the arguments the kernel gave us.
            let handler: InfoHandler = unsafe { std::mem::transmute::<usize, InfoHandler>(address) };
            handler(signal, info, context);
        } else {
            // SAFETY: without SA_SIGINFO the address sigaction returned is a one-argument handler.
            let handler: extern "C" fn(c_int) = unsafe { std::mem::transmute::<usize, extern "C" fn(c_int)>(address) };
            handler(signal);
        }
    }
}

/// Makes `handler` the handler of `signal` in front of `previous` (the disposition it has now,
/// which must be chainable): same flags (plus `SA_SIGINFO`) and the same mask, so the signal is
/// delivered as before, and `chain` calls `previous`'s handler. Returns the disposition replaced.
pub(crate) fn install_chained_handler(
    signal: c_int,
    handler: InfoHandler,
    previous: &Disposition,
    chain: &ChainedHandler,
) -> io::Result<Disposition> {
    if !previous.is_chainable() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    chain.set(previous);
    let mut action = previous.0;
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = previous.0.sa_flags | libc::SA_SIGINFO;
    let mut replaced = previous.0;
    // SAFETY: `action` is a copy of a disposition sigaction returned, with our three-argument
    // handler and SA_SIGINFO; `replaced` is plain data sigaction overwrites.
    if unsafe { libc::sigaction(signal, &action, &mut replaced) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Disposition(replaced))
}

/// Sends `signal` to the calling thread only (tests: a process-wide signal would reach the test
/// harness's threads, which do not block it).
#[cfg(test)]
pub(crate) fn signal_this_thread(signal: c_int) {
    // SAFETY: pthread_kill to the calling thread, which is alive.
    unsafe { libc::pthread_kill(libc::pthread_self(), signal) };
}

/// A file mapped shared and writable (`persist`'s journal): stores into it are in the page
/// cache at once, so they outlive the process however it ends. Unmapped when dropped.
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; whoever holds it exclusively (`&mut`)
// is its only user in this process.
unsafe impl Send for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Mapping {
    /// Maps the first `len` bytes of `file` (which must be at least that long).
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a new shared mapping of a descriptor the caller keeps open; the kernel picks the
        // address, and nothing else refers to it yet.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mapping = Mapping { ptr: ptr.cast(), len };
        mapping.no_read_ahead();
        Ok(mapping)
    }

    /// Maps pages in one at a time (`MADV_RANDOM`): without it a fault maps in a whole large
    /// folio that read-ahead made (up to 2 MiB), far ahead of where the journal writes.
    fn no_read_ahead(&self) {
        // SAFETY: advice on this value's own mapping; it changes no memory.
        unsafe {
            libc::madvise(self.ptr.cast(), self.len, libc::MADV_RANDOM);
        }
    }

    /// Grows the mapping to `len` bytes (the file must have grown first); it may move.
    pub(crate) fn grow(&mut self, len: usize) -> io::Result<()> {
        // SAFETY: remaps this value's own mapping; no reference into it outlives `&mut self`.
        let ptr = unsafe { libc::mremap(self.ptr.cast(), self.len, len, libc::MREMAP_MAYMOVE) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        (self.ptr, self.len) = (ptr.cast(), len);
        self.no_read_ahead();
        Ok(())
    }

    /// Its length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Maps `range` in, writable, with one call (`MADV_POPULATE_WRITE`) rather than a page fault
    /// per page. Only a speed-up: where the kernel lacks it, pages fault in as they are written.
    pub(crate) fn populate(&mut self, range: std::ops::Range<usize>) {
        if range.end > self.len || range.start >= range.end {
            return;
        }
        // SAFETY: the range lies in this value's mapping; populating changes no contents.
        unsafe {
            libc::madvise(self.ptr.add(range.start).cast(), range.end - range.start, libc::MADV_POPULATE_WRITE);
        }
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` bytes for as long as `self` lives; `&mut self` makes the slice
        // the only reference. (A file truncated by another process raises SIGBUS on access:
        // accepted, see docs/persist.md.)
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Lets the process drop its pages of `range` (they stay in the file and the page cache):
    /// a complete block of the journal then costs no resident memory.
    pub(crate) fn release(&mut self, range: std::ops::Range<usize>) {
        if range.end > self.len || range.start >= range.end {
            return;
        }
        // SAFETY: the range lies in this value's mapping; MADV_DONTNEED on a shared file mapping
        // only drops this process's page table entries: the data stays in the file.
        unsafe {
            libc::madvise(self.ptr.add(range.start).cast(), range.end - range.start, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps this value's own mapping; nothing refers to it any more.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Takes an exclusive lock on `file` without waiting (`flock`); `WouldBlock` if another open
/// file (another process) holds it.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: flock on a descriptor `file` keeps open; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective user ID of the process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

static FORKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many times the process forked since [`count_forks`] was first called: a journal whose
/// count is behind writes its new PID (Prosody 0.12's `-D` forks after loading modules).
pub(crate) fn forks() -> u32 {
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts counting forks (once per process).
pub(crate) fn count_forks() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers a child handler that only increments an atomic (async-signal-safe).
        unsafe {
            libc::pthread_atfork(None, None, Some(count_fork_in_child));
        }
    });
}

/// The fastest way this CPU offers to copy a line into its journal record and checksum it
/// (CRC32C, see `journal::checksum`): its CRC32C instruction (SSE 4.2) in the same pass as the
/// copy if it has one, else a copy and the portable tables. Both give the same value.
pub(crate) fn journal_copy_checksum() -> crate::pure::journal::CopyChecksum {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        return copy_checksum_sse42_detected;
    }
    crate::pure::journal::copy_checksum
}

/// [`copy_checksum_sse42`], given out by [`journal_copy_checksum`] only on a CPU that has SSE 4.2.
#[cfg(target_arch = "x86_64")]
fn copy_checksum_sse42_detected(seed: u64, line: &[u8], body: &mut [u8]) -> u32 {
    if line.len() != body.len() {
        return crate::pure::journal::copy_checksum(seed, line, body);
    }
    // SAFETY: `journal_copy_checksum` returns this function only when the CPU has SSE 4.2, and
    // `line` and `body` were just found to be of the same length.
    unsafe { copy_checksum_sse42(seed, line, body) }
}

/// `journal::checksum` with the CPU's CRC32C instruction, three streams in step, 8 bytes an
/// instruction, each word stored into `body` as it is read: the line is read once.
///
/// # Safety
///
/// The CPU must have SSE 4.2, and `body` must be as long as `line`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn copy_checksum_sse42(seed: u64, line: &[u8], body: &mut [u8]) -> u32 {
    use std::arch::x86_64::{__m128i, _mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    use std::arch::x86_64::{_mm_loadu_si128, _mm_storeu_si128};
    let (from, to, n) = (line.as_ptr(), body.as_mut_ptr(), line.len());
    // The 8-byte word at `at`.
    let read = |at: usize| {
        // SAFETY: every caller below has checked `at + 8 <= n`; an unaligned read is what this is.
        u64::from_le(unsafe { from.add(at).cast::<u64>().read_unaligned() })
    };
    // Moves the 16 bytes at `at`.
    let copy16 = |at: usize| {
        // SAFETY: every caller below has checked `at + 16 <= n`, and `body` is `n` bytes long too
        // (this function's contract); these are the unaligned forms.
        unsafe { _mm_storeu_si128(to.add(at).cast::<__m128i>(), _mm_loadu_si128(from.add(at).cast::<__m128i>())) }
    };
    // Moves the 8-byte word at `at` and returns it.
    let word = |at: usize| {
        // SAFETY: every caller below has checked `at + 8 <= n`, and `body` is `n` bytes long too.
        unsafe { to.add(at).cast::<u64>().write_unaligned(from.add(at).cast::<u64>().read_unaligned()) };
        read(at)
    };
    let all_ones = u64::from(u32::MAX);
    let (mut s0, mut s1, mut s2) = (_mm_crc32_u64(all_ones, seed), all_ones, all_ones);
    // Two triples a step while there are (copied 16 bytes a move), then one; then the last
    // words and bytes to stream 0.
    let mut at = 0;
    while at + 48 <= n {
        copy16(at);
        copy16(at + 16);
        copy16(at + 32);
        s0 = _mm_crc32_u64(_mm_crc32_u64(s0, read(at)), read(at + 24));
        s1 = _mm_crc32_u64(_mm_crc32_u64(s1, read(at + 8)), read(at + 32));
        s2 = _mm_crc32_u64(_mm_crc32_u64(s2, read(at + 16)), read(at + 40));
        at += 48;
    }
    if at + 24 <= n {
        s0 = _mm_crc32_u64(s0, word(at));
        s1 = _mm_crc32_u64(s1, word(at + 8));
        s2 = _mm_crc32_u64(s2, word(at + 16));
        at += 24;
    }
    // Less than 24 bytes left: two words at most, then 4, 2 and 1 bytes. Written out rather
    // than looped, or the compiler turns the moves into calls of memcpy.
    if at + 8 <= n {
        s0 = _mm_crc32_u64(s0, word(at));
        at += 8;
    }
    if at + 8 <= n {
        s0 = _mm_crc32_u64(s0, word(at));
        at += 8;
    }
    let mut crc = s0 as u32;
    if at + 4 <= n {
        // SAFETY: `at + 4 <= n`, and `body` is `n` bytes long too.
        let w = unsafe {
            let w = from.add(at).cast::<u32>().read_unaligned();
            to.add(at).cast::<u32>().write_unaligned(w);
            u32::from_le(w)
        };
        crc = _mm_crc32_u32(crc, w);
        at += 4;
    }
    if at + 2 <= n {
        // SAFETY: `at + 2 <= n`, and `body` is `n` bytes long too.
        let w = unsafe {
            let w = from.add(at).cast::<u16>().read_unaligned();
            to.add(at).cast::<u16>().write_unaligned(w);
            u16::from_le(w)
        };
        crc = _mm_crc32_u16(crc, w);
        at += 2;
    }
    if at < n {
        // SAFETY: `at < n`, and `body` is `n` bytes long too.
        let b = unsafe {
            let b = from.add(at).read();
            to.add(at).write(b);
            b
        };
        crc = _mm_crc32_u8(crc, b);
    }
    !_mm_crc32_u32(_mm_crc32_u32(crc, s1 as u32), s2 as u32)
}

#[cfg(test)]
mod checksum_tests {
    use super::*;

    #[test]
    fn the_cpus_copy_and_checksum_are_the_portable_ones() {
        let chosen = journal_copy_checksum();
        let bytes: Vec<u8> = (0..700u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in 0..bytes.len() {
            let seed = u64::from(len as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut body = vec![0u8; len];
            assert_eq!(
                chosen(seed, &bytes[..len], &mut body),
                crate::pure::journal::checksum(seed, &bytes[..len]),
                "length {len}"
            );
            assert_eq!(body, &bytes[..len], "length {len}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn send_now_takes_what_fits_never_waits_and_a_closed_peer_is_an_error() {
        let (ours, mut theirs) = UnixStream::pair().expect("a socket pair");
        let fd = ours.as_raw_fd();
        let batch = vec![b'x'; 64 * 1024];
        // A peer that does not read: the socket takes batches (or a part) until it is full.
        let mut sent = 0;
        let last = loop {
            match send_now(fd, &batch) {
                Ok(n) if n > 0 => sent += n,
                other => break other,
            }
            assert!(sent < 64 << 20, "the socket never filled");
        };
        assert_eq!(last.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
        let mut got = vec![0; sent];
        theirs.read_exact(&mut got).expect("what was taken arrives");
        assert!(got.iter().all(|&b| b == b'x'));
        // A peer that went away: an error, not a SIGPIPE that would end the test process.
        drop(theirs);
        assert_eq!(send_now(fd, b"after").map_err(|e| e.raw_os_error()), Err(Some(libc::EPIPE)));
        // Not a socket.
        assert!(send_now(-1, b"x").is_err());
    }
}
