//! `dump_on_crash`: when the process gets a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
//! SIGABRT), the handler here appends the ring of every sink that asked for it to that sink's
//! dump file, then lets the signal do what it would have done without this module.
//!
//! A signal handler may only make async-signal-safe calls, and the crashed thread may hold any
//! lock (the allocator's, the ring's). So the handler allocates nothing, waits on no lock, and
//! everything it needs is made in advance:
//! - The dump file's name: rendered when the sink is armed and again after every dump of any
//!   sink, into one of two fixed buffers per sink (the handler reads the other one). `{count}` is
//!   the count the next dump would get, `{time}` the time of that rendering. A forked child
//!   (Prosody 0.12's `-D`) puts its own PID where `{pid}` went.
//! - The header's time: `localtime` is not async-signal-safe, so local time is UTC plus the UTC
//!   offset found at that rendering.
//! - The buffers for the lines and for a name: static, untouched until a crash.
//!
//! The ring is read through [`SharedRing::read_in_crash`](super::shared_ring::SharedRing): a
//! lock that is not had in time is not waited for. When the read cannot be trusted to be whole
//! (the crash came while the crashed thread stored a line or held the lock), the dump says
//! `-- may be incomplete --`, NUL bytes are written as U+2400, and a panic while walking a torn
//! ring is caught.
//!
//! Dumps being written into regular files when the crash comes (see `regions`) are stopped
//! first: the handler freezes the table, waits up to half a second for the writes under way,
//! then takes each dump off its file, newest first: cut off if nothing follows it, else (a
//! region another dump's region follows) filled with `-- Dump failed: cut off by a fatal signal
//! --` and spaces, so the file never holds NUL bytes nor a dump without its footer. The lines
//! those dumps had taken out of the ring come first in the crash dump of their sink, after a
//! line saying so; a dump still waiting for its writer has its lines out of reach, and the
//! crash dump says how many are missing. A compressed dump is written to a hidden file and
//! renamed at the end (see `dump_file`): it just never appears.
//!
//! Installing: `SA_SIGINFO | SA_ONSTACK`, every signal blocked while the handler runs; the Lua
//! thread gets an alternate signal stack if it has none, so a stack overflow can be dumped too.
//! A signal that is ignored is left alone. The dispositions found are put back when the last
//! sink goes, as `signals` does for native triggers.
//!
//! In the handler: the first thread in (an atomic flag) dumps; a thread that crashes at the same
//! moment waits for that dump and does not write. Every fatal signal gets its previous
//! disposition back on entry, so a fault in the handler (or in another thread meanwhile) takes
//! the old path. After the dump: a previous default action is taken by raising the signal again
//! (it is blocked while the handler runs and is delivered as it returns, so the process dies by
//! that signal, with its core dump, whether it was a fault, `abort()` or `kill`); a previous
//! handler function is called as the kernel would have called it, and decides. A watchdog
//! (`alarm`) ends the process by the signal if the dump takes longer than 10 seconds (a hung
//! disk, a FIFO whose reader does not read, a deadlock caused by a torn ring).

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::dump_count;
use super::os::{self, Disposition};
use super::regions::{self, Abandoned, Kind};
use super::shared_ring::CrashView;
use super::sink::Sink;
use crate::pure::date::{decimal, header_stamp, now_seconds, utc_offset_at};
use crate::pure::records::FOOTER;
use crate::pure::ring::Ring;

/// The signals that dump, by index in the handler's tables.
const FATAL: [(c_int, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGABRT, "SIGABRT"),
];
/// Room for a file name and its NUL byte (Linux's PATH_MAX).
const NAME_CAP: usize = 4096;
/// Where `{pid}` may be put again in a forked child (more occurrences: the name is kept).
const MAX_PID_SPOTS: usize = 4;
/// The lines are written in pieces this large (a default 100 KiB ring in one `write`).
const OUT_CAP: usize = 1 << 20;
/// How long the ring's lock is tried, and the owner waited for (see `read_in_crash`).
const PATIENCE: Duration = Duration::from_millis(500);
/// How long the dumps may take before the watchdog ends the process by its signal (the tests
/// wait less).
const WATCHDOG_SECONDS: u32 = if cfg!(test) { 2 } else { 10 };
/// The alternate signal stack given to the Lua thread if it has none (mapped lazily).
const ALT_STACK: usize = 256 * 1024;
const INCOMPLETE: &[u8] = b"-- may be incomplete --\n";

// ---- State shared with the handler ----

/// Set by the first thread into the handler: from then on nothing the handler reads changes.
static CRASHING: AtomicBool = AtomicBool::new(false);
/// Set once the first thread's dumps are written.
static DONE: AtomicBool = AtomicBool::new(false);
/// The sinks to dump: a list that is replaced, never changed, while the handler may read it.
static ARMED: AtomicPtr<Armed> = AtomicPtr::new(std::ptr::null_mut());
/// Seconds east of UTC when names were last rendered, for the header's local time.
static UTC_OFFSET: AtomicI64 = AtomicI64::new(0);
/// The signal the watchdog ends the process with.
static WATCHED: AtomicI32 = AtomicI32::new(0);

struct Armed {
    slots: Vec<Arc<Slot>>,
}

/// What the handler needs of one sink.
struct Slot {
    sink: Arc<Sink>,
    /// Two names: the handler reads `names[current]`, a new one is written into the other.
    names: [UnsafeCell<Name>; 2],
    /// 0 or 1, or [`NO_NAME`].
    current: AtomicU8,
}

const NO_NAME: u8 = 2;

// SAFETY: `names` is written only by `Slot::store` (callers hold `STATE`), into the buffer
// `current` does not name, and only while no crash has begun; the handler reads only the buffer
// `current` names after setting `CRASHING` (see `Slot::store` for why that one is never written
// under it). Everything else is immutable or atomic.
unsafe impl Sync for Slot {}

/// A dump file name, ready for `open(2)`.
struct Name {
    /// The name, then a NUL byte.
    bytes: [u8; NAME_CAP],
    /// The name's length without the NUL.
    len: usize,
    /// The PID the name was rendered with, and where `{pid}` put its digits.
    pid: u32,
    pid_spots: [usize; MAX_PID_SPOTS],
    pid_spot_count: usize,
}

/// The dispositions the fatal signals had before ours, for the handler (by index in `FATAL`).
struct Previous {
    actions: [UnsafeCell<MaybeUninit<libc::sigaction>>; 5],
    /// `actions[i]` holds the disposition our handler replaced.
    saved: [AtomicBool; 5],
}

// SAFETY: `actions[i]` is written only while `saved[i]` is false and our handler is not
// installed for that signal (callers hold `STATE`); the handler reads it only when `saved[i]`.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous {
    actions: [const { UnsafeCell::new(MaybeUninit::uninit()) }; 5],
    saved: [const { AtomicBool::new(false) }; 5],
};

/// The handler's buffers: static (zero pages, untouched until a crash), used only by the first
/// thread into the handler.
struct Scratch {
    out: UnsafeCell<[u8; OUT_CAP]>,
    name: UnsafeCell<[u8; NAME_CAP + 10 * MAX_PID_SPOTS]>,
    /// SIGALRM's disposition while the watchdog runs.
    alarm: UnsafeCell<MaybeUninit<libc::sigaction>>,
}

// SAFETY: only the thread that set `CRASHING` (once per process) touches these.
unsafe impl Sync for Scratch {}

static SCRATCH: Scratch = Scratch {
    out: UnsafeCell::new([0; OUT_CAP]),
    name: UnsafeCell::new([0; NAME_CAP + 10 * MAX_PID_SPOTS]),
    alarm: UnsafeCell::new(MaybeUninit::uninit()),
};

// ---- Arming (the Lua thread), refreshing (whoever dumps) ----

struct State {
    slots: Vec<Arc<Slot>>,
    /// The handlers installed: (signal, index in `FATAL`, the disposition replaced).
    installed: Vec<(c_int, usize, Disposition)>,
    active: bool,
}

static STATE: Mutex<State> = Mutex::new(State { slots: Vec::new(), installed: Vec::new(), active: false });

/// Makes a fatal signal dump `sink` (its `dump_on_crash`). Installs the handler with the first
/// sink; again for a sink already armed only renders its name anew.
pub(crate) fn watch(sink: &Arc<Sink>) -> Result<(), String> {
    let mut state = STATE.lock();
    refresh_offset();
    if let Some(slot) = state.slots.iter().find(|s| Arc::ptr_eq(&s.sink, sink)) {
        return slot.refresh();
    }
    let slot = Arc::new(Slot::new(Arc::clone(sink)));
    slot.refresh()?;
    dump_count::on_taken(refresh);
    if !state.active {
        install(&mut state)?;
    }
    state.slots.push(slot);
    publish(&state.slots);
    Ok(())
}

/// Stops `sink` dumping on a fatal signal; the last sink gives the signals their previous
/// dispositions back.
pub(crate) fn unwatch(sink: &Arc<Sink>) {
    let mut state = STATE.lock();
    let before = state.slots.len();
    state.slots.retain(|s| !Arc::ptr_eq(&s.sink, sink));
    if state.slots.len() == before {
        return;
    }
    publish(&state.slots);
    if state.slots.is_empty() {
        uninstall(&mut state);
    }
}

/// Renders every armed sink's name anew (after a dump: `{count}` moved on).
pub(crate) fn refresh() {
    let state = STATE.lock();
    if state.slots.is_empty() {
        return;
    }
    refresh_offset();
    for slot in &state.slots {
        let _ = slot.refresh();
    }
}

fn install(state: &mut State) -> Result<(), String> {
    // Best effort: without it, a stack overflow on the Lua thread just dies as before.
    let _ = os::ensure_alternate_stack(ALT_STACK);
    if DONE.load(Ordering::SeqCst) {
        // A crash was handled and a previous handler let the process go on: start afresh.
        DONE.store(false, Ordering::SeqCst);
        CRASHING.store(false, Ordering::SeqCst);
    }
    for (index, &(signal, name)) in FATAL.iter().enumerate() {
        let problem = |e: std::io::Error| format!("cannot handle {name} for dump_on_crash: {e}");
        let now = match os::disposition(signal) {
            Ok(now) => now,
            Err(e) => {
                uninstall(state);
                return Err(problem(e));
            }
        };
        if now.is_ignored() {
            continue; // as before: the process ignores it (a fault still kills, without a dump)
        }
        // SAFETY: `saved[index]` is false and our handler is not installed for `signal` (see
        // `Previous`); we hold STATE, so nobody else writes it.
        unsafe { (*PREVIOUS.actions[index].get()).write(now.raw()) };
        PREVIOUS.saved[index].store(true, Ordering::SeqCst);
        match os::install_info_handler(signal, on_fatal) {
            Ok(replaced) => state.installed.push((signal, index, replaced)),
            Err(e) => {
                PREVIOUS.saved[index].store(false, Ordering::SeqCst);
                uninstall(state);
                return Err(problem(e));
            }
        }
    }
    state.active = true;
    Ok(())
}

fn uninstall(state: &mut State) {
    for (signal, index, previous) in state.installed.drain(..) {
        os::restore_handler(signal, &previous);
        PREVIOUS.saved[index].store(false, Ordering::SeqCst);
    }
    state.active = false;
}

/// Replaces the list the handler reads. The old list is freed unless a crash has begun (the
/// handler sets `CRASHING` before it loads the list, so a list it may be reading is never freed).
fn publish(slots: &[Arc<Slot>]) {
    let new =
        if slots.is_empty() { std::ptr::null_mut() } else { Box::into_raw(Box::new(Armed { slots: slots.to_vec() })) };
    let old = ARMED.swap(new, Ordering::SeqCst);
    if !old.is_null() && !CRASHING.load(Ordering::SeqCst) {
        // SAFETY: `old` came from Box::into_raw above and is no longer published; no handler
        // can hold it (see above).
        drop(unsafe { Box::from_raw(old) });
    }
}

/// The local time's offset from UTC now, for headers (`%z` is `+hhmm`).
fn refresh_offset() {
    if let Some(offset) = utc_offset_at(now_seconds()) {
        UTC_OFFSET.store(offset, Ordering::Relaxed);
    }
}

/// A name as rendered for the handler.
#[derive(Debug, PartialEq)]
struct Rendered {
    text: String,
    pid: u32,
    pid_spots: Vec<usize>,
}

/// Renders `sink`'s dump file name for a dump from the handler, without the suffix of
/// `compress` (a dump from a signal handler cannot be compressed).
fn render(sink: &Sink, pid: u32, count: u64, time: i64) -> Result<Rendered, String> {
    let (text, pid_positions) = sink.dump_path(pid, count, time);
    let why = if text.len() >= NAME_CAP {
        Some(format!("it is longer than {} bytes", NAME_CAP - 1))
    } else if text.contains('\0') {
        Some("it contains a NUL byte".into())
    } else {
        None
    };
    if let Some(why) = why {
        let shown: String = text.chars().take(80).collect();
        let more = if shown.len() < text.len() { "..." } else { "" };
        return Err(format!(
            "dump_on_crash: cannot dump to {shown:?}{more}: {why}; this sink is not dumped on a crash"
        ));
    }
    // More places than the name keeps (or a PID under a date filter): the name is kept.
    let pid_spots = pid_positions.filter(|spots| spots.len() <= MAX_PID_SPOTS).unwrap_or_default();
    Ok(Rendered { text, pid, pid_spots })
}

impl Slot {
    fn new(sink: Arc<Sink>) -> Self {
        let empty = || {
            UnsafeCell::new(Name {
                bytes: [0; NAME_CAP],
                len: 0,
                pid: 0,
                pid_spots: [0; MAX_PID_SPOTS],
                pid_spot_count: 0,
            })
        };
        Slot { sink, names: [empty(), empty()], current: AtomicU8::new(NO_NAME) }
    }

    /// Renders the name for a dump now; an unusable name leaves the sink without one.
    fn refresh(&self) -> Result<(), String> {
        let rendered = render(&self.sink, std::process::id(), dump_count::next(), now_seconds());
        self.store(rendered.as_ref().ok());
        rendered.map(|_| ())
    }

    /// Makes `rendered` the name the handler uses. Callers hold `STATE`.
    ///
    /// Why the handler never reads a buffer while it is written: a store that sees no crash
    /// begun writes the buffer `current` does not name. A handler that loads `current` after
    /// that check (it sets `CRASHING` first) gets either the old index, which this store does
    /// not write, or the new one, stored after the writing was done; every later store sees
    /// `CRASHING` and stops.
    fn store(&self, rendered: Option<&Rendered>) {
        if CRASHING.load(Ordering::SeqCst) {
            return;
        }
        let next = if self.current.load(Ordering::SeqCst) == 0 { 1 } else { 0 };
        let Some(rendered) = rendered else {
            self.current.store(NO_NAME, Ordering::SeqCst);
            return;
        };
        // SAFETY: see above: neither the handler nor another store (STATE) uses this buffer now.
        let name = unsafe { &mut *self.names[usize::from(next)].get() };
        let text = rendered.text.as_bytes();
        name.bytes[..text.len()].copy_from_slice(text);
        name.bytes[text.len()] = 0;
        name.len = text.len();
        name.pid = rendered.pid;
        name.pid_spot_count = rendered.pid_spots.len().min(MAX_PID_SPOTS);
        name.pid_spots[..name.pid_spot_count].copy_from_slice(&rendered.pid_spots[..name.pid_spot_count]);
        self.current.store(next, Ordering::SeqCst);
    }
}

// ---- The handler: async-signal-safe from here on ----

extern "C" fn on_fatal(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let errno = errno();
    let first = !CRASHING.swap(true, Ordering::SeqCst);
    put_back_previous();
    if first {
        let watchdog = Watchdog::start(signal);
        dump_all(signal, info);
        watchdog.stop();
        DONE.store(true, Ordering::SeqCst);
    } else {
        wait_for_first();
    }
    pass_on(signal, info, context);
    set_errno(errno);
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}

fn signal_index(signal: c_int) -> Option<usize> {
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
fn put_back_previous() {
    for (index, &(signal, _)) in FATAL.iter().enumerate() {
        if let Some(action) = previous(index) {
            // SAFETY: sigaction (async-signal-safe) reads a disposition it once returned.
            unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        }
    }
}

/// Sets `signal` to its default action.
fn set_default(signal: c_int) {
    // SAFETY: a zeroed sigaction is SIG_DFL with no flags and an empty mask; sigaction is
    // async-signal-safe.
    unsafe {
        let action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

fn raise(signal: c_int) {
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(signal) };
}

/// What would have happened without us (see the module doc).
fn pass_on(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
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

/// A second thread in: lets the first finish its dumps (the watchdog bounds them).
fn wait_for_first() {
    let deadline = Instant::now() + Duration::from_secs(u64::from(WATCHDOG_SECONDS) + 1);
    while !DONE.load(Ordering::SeqCst) && Instant::now() < deadline {
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 };
        // SAFETY: nanosleep (async-signal-safe) reads the local timespec.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
}

/// Ends the process by the crash's signal if the dumps take too long.
struct Watchdog {
    armed: bool,
}

impl Watchdog {
    fn start(signal: c_int) -> Self {
        WATCHED.store(signal, Ordering::SeqCst);
        // SAFETY: only the first thread into the handler runs this (`Scratch`); sigaction,
        // pthread_sigmask and alarm are async-signal-safe and read zeroed or filled locals.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_watchdog as extern "C" fn(c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_ONSTACK;
            libc::sigfillset(&mut action.sa_mask);
            let old = (*SCRATCH.alarm.get()).as_mut_ptr();
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

    fn stop(self) {
        if self.armed {
            // SAFETY: as in `start`, which filled the saved disposition.
            unsafe {
                libc::alarm(0);
                libc::sigaction(libc::SIGALRM, (*SCRATCH.alarm.get()).as_ptr(), std::ptr::null_mut());
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

/// Who sent the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// The kernel: a fault.
    Kernel,
    /// This process (`abort()`, `raise`, `kill` of itself).
    ThisProcess,
    /// Another process (`kill`, a supervisor's watchdog).
    Process(i32),
}

/// The crash being dumped.
struct Crash {
    signal_name: &'static str,
    sender: Sender,
    /// Unix time, and the local time's offset from UTC.
    time: i64,
    utc_offset: i64,
}

impl Crash {
    fn now(signal: c_int, info: *const libc::siginfo_t) -> Self {
        let signal_name = signal_index(signal).map_or("a fatal signal", |i| FATAL[i].1);
        // SAFETY: the kernel passes a valid siginfo_t (checked for null all the same); si_pid
        // is meaningful for the user-sent codes (<= 0); getpid is async-signal-safe.
        let sender = unsafe {
            match info.as_ref() {
                Some(info) if info.si_code <= 0 => match info.si_pid() {
                    pid if pid == libc::getpid() => Sender::ThisProcess,
                    pid => Sender::Process(pid),
                },
                _ => Sender::Kernel,
            }
        };
        // now_seconds is time(2), async-signal-safe.
        Crash { signal_name, sender, time: now_seconds(), utc_offset: UTC_OFFSET.load(Ordering::Relaxed) }
    }
}

fn dump_all(signal: c_int, info: *const libc::siginfo_t) {
    let armed = ARMED.load(Ordering::SeqCst);
    // SAFETY: `publish` frees a list only while no crash has begun, and CRASHING was set
    // before this load.
    let Some(armed) = (unsafe { armed.as_ref() }) else { return };
    let crash = Crash::now(signal, info);
    // SAFETY: only the first thread into the handler gets here, once (`Scratch`).
    let (out, name) = unsafe { (&mut *SCRATCH.out.get(), &mut *SCRATCH.name.get()) };
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    stop_dumps_in_flight(pid, out);
    for slot in &armed.slots {
        dump_slot(slot, &crash, pid, out, name);
    }
    regions::release_all();
}

/// Stops the dumps of process `pid` being written into regular files and takes each off its
/// file (see the module doc). `spaces`: a buffer to fill with spaces.
fn stop_dumps_in_flight(pid: u32, spaces: &mut [u8]) {
    regions::freeze();
    regions::abandon_all(pid, os::thread_id(), PATIENCE);
    // Newest first: a region cut off leaves the one before it last in its file, to be cut too.
    regions::for_each_abandoned(true, |dump| cut_off(dump, spaces));
}

/// The line a region cut off by a crash begins with (then spaces, as `dump_file` marks a
/// failed dump).
const CUT_OFF: &[u8] = b"-- Dump failed: cut off by a fatal signal --\n";

/// Takes a dump that was being written off its file, so that what follows is whole text and
/// the crash dump can be appended: a span with nothing after it is cut off; a region with
/// something after it (another dump's region) is filled with [`CUT_OFF`] and spaces up to a
/// final newline, never NUL bytes; an append followed by something else is left (it cannot be
/// told apart). `spaces`: a buffer to fill with spaces.
fn cut_off(dump: &Abandoned, spaces: &mut [u8]) {
    let Some(kind @ (Kind::Region | Kind::Append)) = dump.kind else { return };
    let (Ok(offset), Ok(end)) = (libc::off_t::try_from(dump.offset), libc::off_t::try_from(dump.end)) else {
        return;
    };
    // SAFETY: fstat and ftruncate are async-signal-safe; the descriptor stays open while the
    // dump is abandoned (its writer waits for `regions::release_all` before it closes it); the
    // stat buffer is a zeroed local.
    let size = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(dump.fd, &mut stat) != 0 {
            return;
        }
        if stat.st_size <= end {
            libc::ftruncate(dump.fd, offset);
            return;
        }
        stat.st_size
    };
    if kind != Kind::Region || size <= offset || end <= offset || spaces.is_empty() {
        return;
    }
    let head = &CUT_OFF[..CUT_OFF.len().min((end - offset) as usize)];
    let mut at = offset;
    if !write_at(dump.fd, head, at) {
        return;
    }
    at += head.len() as libc::off_t;
    spaces.fill(b' ');
    while at < end {
        let n = spaces.len().min((end - at) as usize);
        if !write_at(dump.fd, &spaces[..n], at) {
            return;
        }
        at += n as libc::off_t;
    }
    write_at(dump.fd, b"\n", end - 1);
}

/// Writes all of `bytes` at `at` of `fd`.
fn write_at(fd: c_int, mut bytes: &[u8], mut at: libc::off_t) -> bool {
    while !bytes.is_empty() {
        // SAFETY: pwrite is async-signal-safe and reads `bytes.len()` bytes of the slice.
        let n = unsafe { libc::pwrite(fd, bytes.as_ptr().cast(), bytes.len(), at) };
        if n > 0 {
            bytes = &bytes[n as usize..];
            at += n as libc::off_t;
        } else if !(n < 0 && errno() == libc::EINTR) {
            return false;
        }
    }
    true
}

/// Writes the lines the dumps of `owner` that a crash cut off had taken out of its ring, oldest
/// first, each after a line that says so; a dump that had not begun writing says how many lines
/// it took (they cannot be reached).
fn write_abandoned_lines(out: &mut Out<'_>, owner: usize, cutoff: Option<u32>) -> CrashView {
    let mut view = CrashView::Whole;
    let mut digits = [0u8; 20];
    regions::for_each_abandoned(false, |dump| {
        if dump.owner != owner || dump.taken == 0 {
            return;
        }
        // SAFETY: the lines stay alive and unchanged while the dump is abandoned: its writer
        // keeps them until it has left `regions`, which waits for `regions::release_all`.
        match unsafe { dump.lines.as_ref() } {
            Some(ring) => {
                out.put(b"-- The next ");
                out.put(decimal(ring.lines() as u64, &mut digits));
                out.put(b" lines were being dumped when the crash came: that dump was cut off --\n");
                if write_lines(out, ring, CrashView::Whole, cutoff) == CrashView::MayBeIncomplete {
                    view = CrashView::MayBeIncomplete;
                }
            }
            None => {
                out.put(b"-- ");
                out.put(decimal(dump.taken as u64, &mut digits));
                out.put(b" lines taken for a dump that was waiting to be written are missing --\n");
            }
        }
    });
    view
}

fn dump_slot(slot: &Slot, crash: &Crash, pid: u32, out: &mut [u8], scratch: &mut [u8]) {
    let Some(cell) = slot.names.get(usize::from(slot.current.load(Ordering::SeqCst))) else { return };
    // SAFETY: the buffer `current` names is not written once a crash has begun (`Slot::store`).
    let name = unsafe { &*cell.get() };
    let Some(path) = name_for_pid(name, pid, scratch) else { return };
    let Some(file) = CrashFile::open(path) else { return };
    let sink = &slot.sink;
    let cutoff = sink.since(None); // async-signal-safe
    let mut out = Out::new(file.fd, out);
    write_dump(&mut out, crash, |out| {
        let cut = write_abandoned_lines(out, sink.address(), cutoff);
        let held = sink.read_in_crash(PATIENCE, |ring, view| write_lines(out, ring, view, cutoff));
        if cut == CrashView::Whole {
            held
        } else {
            cut
        }
    });
}

/// `name` (NUL-terminated) as this process should open it: with `pid` where `{pid}` was, if
/// the name was rendered in another process (a forked child), built in `scratch`.
fn name_for_pid<'a>(name: &'a Name, pid: u32, scratch: &'a mut [u8]) -> Option<&'a [u8]> {
    if name.len == 0 || name.len >= NAME_CAP {
        return None;
    }
    if pid == name.pid || name.pid_spot_count == 0 {
        return name.bytes.get(..=name.len);
    }
    let mut old_digits = [0u8; 20];
    let old_len = decimal(u64::from(name.pid), &mut old_digits).len();
    let mut new_digits = [0u8; 20];
    let new = decimal(u64::from(pid), &mut new_digits);
    let mut at = 0;
    let mut from = 0;
    let mut copy = |bytes: &[u8], at: &mut usize| -> Option<()> {
        scratch.get_mut(*at..*at + bytes.len())?.copy_from_slice(bytes);
        *at += bytes.len();
        Some(())
    };
    for &spot in name.pid_spots.get(..name.pid_spot_count)? {
        copy(name.bytes.get(from..spot)?, &mut at)?;
        copy(new, &mut at)?;
        from = spot + old_len;
    }
    copy(name.bytes.get(from..=name.len)?, &mut at)?;
    scratch.get(..at)
}

/// Prosody's own standard output or error, by the names `dump_file` knows them by.
fn standard_stream(name: &[u8]) -> Option<c_int> {
    match name {
        b"/dev/stdout" | b"/proc/self/fd/1" | b"/dev/fd/1" => Some(1),
        b"/dev/stderr" | b"/proc/self/fd/2" | b"/dev/fd/2" => Some(2),
        _ => None,
    }
}

/// A dump file opened by the handler.
struct CrashFile {
    fd: c_int,
    close: bool,
}

impl CrashFile {
    /// Opens `path` (NUL-terminated) as the normal dumps do: appending, without following a
    /// symlink or blocking on a FIFO; a new or empty file gets mode 0600; a pipe or device is
    /// then written blocking (the watchdog bounds that).
    fn open(path: &[u8]) -> Option<CrashFile> {
        let (&0, name) = path.split_last()? else { return None };
        if let Some(fd) = standard_stream(name) {
            return Some(CrashFile { fd, close: false });
        }
        let flags =
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: open, fstat, fchmod and fcntl are async-signal-safe; `path` ends with a NUL
        // byte (checked above) and the stat buffer is a zeroed local.
        unsafe {
            let fd = libc::open(path.as_ptr().cast::<c_char>(), flags, 0o600 as libc::c_uint);
            if fd < 0 {
                return None;
            }
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut stat) == 0 {
                if stat.st_mode & libc::S_IFMT == libc::S_IFREG {
                    if stat.st_size == 0 && stat.st_mode & 0o777 != 0o600 {
                        libc::fchmod(fd, 0o600);
                    }
                } else {
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                    }
                }
            }
            Some(CrashFile { fd, close: true })
        }
    }
}

impl Drop for CrashFile {
    fn drop(&mut self) {
        if self.close {
            // SAFETY: close is async-signal-safe; the descriptor is ours.
            unsafe { libc::close(self.fd) };
        }
    }
}

/// Bytes gathered into a fixed buffer and written to a descriptor when it is full.
struct Out<'a> {
    fd: c_int,
    buf: &'a mut [u8],
    len: usize,
    failed: bool,
}

impl<'a> Out<'a> {
    fn new(fd: c_int, buf: &'a mut [u8]) -> Self {
        debug_assert!(!buf.is_empty());
        Out { fd, buf, len: 0, failed: false }
    }

    fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.failed {
            if self.len == self.buf.len() {
                self.flush();
                continue;
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }

    /// Writes what is gathered; false once anything failed.
    fn flush(&mut self) -> bool {
        let mut left = &self.buf[..self.len];
        while !left.is_empty() && !self.failed {
            // SAFETY: write is async-signal-safe and reads `left.len()` bytes of the buffer.
            let n = unsafe { libc::write(self.fd, left.as_ptr().cast(), left.len()) };
            if n > 0 {
                left = &left[n as usize..];
            } else if n < 0 && errno() == libc::EINTR {
                continue;
            } else {
                self.failed = true;
            }
        }
        self.len = 0;
        !self.failed
    }
}

/// One dump: the header, the lines `lines` writes (it says how far they can be trusted), the
/// marker if they cannot, the signal, the footer.
fn write_dump(out: &mut Out<'_>, crash: &Crash, lines: impl FnOnce(&mut Out<'_>) -> CrashView) -> bool {
    out.put(b"-- Dumping log buffer at ");
    out.put(&header_stamp(crash.time.saturating_add(crash.utc_offset)));
    out.put(b"  --\n");
    if lines(out) == CrashView::MayBeIncomplete {
        out.put(INCOMPLETE);
    }
    out.put(b"-- Fatal signal ");
    out.put(crash.signal_name.as_bytes());
    let mut digits = [0u8; 20];
    match crash.sender {
        Sender::Kernel => {}
        Sender::ThisProcess => out.put(b", raised by this process"),
        Sender::Process(pid) => {
            out.put(b", sent by PID ");
            out.put(decimal(u64::try_from(pid).unwrap_or(0), &mut digits));
        }
    }
    out.put(b" --\n");
    out.put(FOOTER);
    out.flush()
}

/// Writes the ring's lines, oldest first, leaving out those logged before `cutoff`
/// (`max_age`). A torn ring's bytes may be anything: NUL bytes are written as U+2400, and a
/// panic while walking it ends the lines.
fn write_lines(out: &mut Out<'_>, ring: &Ring, view: CrashView, cutoff: Option<u32>) -> CrashView {
    let torn = view == CrashView::MayBeIncomplete;
    let walked = catch_unwind(AssertUnwindSafe(|| {
        for line in ring.iter() {
            if out.failed {
                return;
            }
            if cutoff.is_some_and(|cutoff| line.meta.time < cutoff) {
                continue;
            }
            for piece in line.pieces() {
                if torn {
                    for (i, part) in piece.split(|&b| b == 0).enumerate() {
                        if i > 0 {
                            out.put("\u{2400}".as_bytes());
                        }
                        out.put(part);
                    }
                } else {
                    out.put(piece);
                }
            }
        }
    }));
    if walked.is_ok() {
        view
    } else {
        CrashView::MayBeIncomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::options::{OptValue, SinkOptions};
    use crate::pure::ring::Limit;
    use crate::runtime::test_dir::TestDir;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::ExitStatusExt;

    fn sink_with(dir: &str, template: &str, extra: &[(&'static str, OptValue)]) -> Arc<Sink> {
        let template = template.to_string();
        let (options, problems) = SinkOptions::parse(
            |k| match extra.iter().find(|(name, _)| *name == k) {
                Some((_, value)) => value.clone(),
                None if k == "filename_template" => OptValue::Str(template.clone()),
                None if k == "lines" => OptValue::Int(100),
                None => OptValue::Absent,
            },
            &[],
        );
        assert!(problems.is_empty(), "{problems:?}");
        Arc::new(Sink::new(options, vec![("data".into(), dir.to_string())]))
    }

    fn crash(sender: Sender) -> Crash {
        Crash { signal_name: "SIGSEGV", sender, time: 1_700_000_000, utc_offset: 3600 }
    }

    /// The dump `write_dump` makes of `ring`, as text.
    fn dump_text(ring: &Ring, view: CrashView, crash: &Crash, cutoff: Option<u32>, buffer: usize) -> String {
        let dir = TestDir::new("crash-text");
        let path = dir.file("d.log");
        let file = std::fs::File::create(&path).expect("create");
        let mut buf = vec![0u8; buffer];
        let mut out = Out::new(file.as_raw_fd(), &mut buf);
        assert!(write_dump(&mut out, crash, |out| write_lines(out, ring, view, cutoff)));
        std::fs::read_to_string(&path).expect("read")
    }

    fn ring_of(lines: &[(&str, u32)]) -> Ring {
        let mut ring = Ring::new(Limit::Lines(100));
        for (line, time) in lines {
            ring.push(line.as_bytes(), *time);
        }
        ring
    }

    #[test]
    fn a_dump_is_the_header_the_lines_the_signal_and_the_footer() {
        let ring = ring_of(&[("one\n", 5), ("two\n", 6)]);
        // 16 bytes of buffer: many writes, same bytes.
        for buffer in [16, OUT_CAP] {
            let text = dump_text(&ring, CrashView::Whole, &crash(Sender::Kernel), None, buffer);
            assert_eq!(
                text,
                "-- Dumping log buffer at Nov 14 23:13:20  --\none\ntwo\n-- Fatal signal SIGSEGV --\n-- End of dump --\n\n"
            );
        }
        let text = dump_text(&ring, CrashView::Whole, &crash(Sender::Process(4321)), Some(6), 64);
        assert!(text.ends_with("\ntwo\n-- Fatal signal SIGSEGV, sent by PID 4321 --\n-- End of dump --\n\n"), "{text}");
        assert!(!text.contains("one"), "max_age leaves older lines out");
        let text = dump_text(&Ring::new(Limit::Lines(1)), CrashView::Whole, &crash(Sender::ThisProcess), None, 64);
        assert!(text.ends_with("  --\n-- Fatal signal SIGSEGV, raised by this process --\n-- End of dump --\n\n"));
    }

    #[test]
    fn a_read_that_may_be_torn_is_marked_and_writes_no_nul_bytes() {
        let ring = ring_of(&[("one\n", 0), ("t\0rn\n", 0)]);
        let text = dump_text(&ring, CrashView::MayBeIncomplete, &crash(Sender::Kernel), None, 64);
        assert!(text.contains("\none\nt\u{2400}rn\n-- may be incomplete --\n-- Fatal signal SIGSEGV --\n"), "{text}");
    }

    #[test]
    fn a_forked_child_puts_its_pid_where_pid_was() {
        let dir = TestDir::new("crash-pid");
        let sink = sink_with(&dir.path(), "{paths.data}/{pid}/x-{pid}-{count}.log", &[]);
        let rendered = render(&sink, 4711, 3, 0).expect("render");
        let root = dir.path();
        assert_eq!(rendered.text, format!("{root}/4711/x-4711-3.log"));
        assert_eq!(rendered.pid_spots, vec![root.len() + 1, root.len() + 8]);
        let slot = Slot::new(Arc::clone(&sink));
        slot.store(Some(&rendered));
        // SAFETY: nothing else uses this slot.
        let name = unsafe { &*slot.names[usize::from(slot.current.load(Ordering::SeqCst))].get() };
        let mut scratch = [0u8; NAME_CAP + 40];
        let same = name_for_pid(name, 4711, &mut scratch).expect("name").to_vec();
        assert_eq!(same, format!("{root}/4711/x-4711-3.log\0").into_bytes());
        let forked = name_for_pid(name, 1_234_567, &mut scratch).expect("name");
        assert_eq!(forked, format!("{root}/1234567/x-1234567-3.log\0").as_bytes());
        // No {pid}, or one under a filter: the name stays as rendered.
        let plain = sink_with(&root, "{paths.data}/x.log", &[]);
        assert_eq!(render(&plain, 4711, 0, 0).expect("render").pid_spots, Vec::<usize>::new());
        let filtered = sink_with(&root, "{paths.data}/{pid|hhmmss}-{pid}.log", &[]);
        assert_eq!(render(&filtered, 4711, 0, 0).expect("render").pid_spots, Vec::<usize>::new());
        // Unusable names are refused at arming.
        let long = sink_with(&root, &"x".repeat(NAME_CAP), &[]);
        assert!(render(&long, 1, 0, 0).expect_err("too long").contains("longer than 4095 bytes"));
    }

    #[test]
    fn files_are_opened_like_normal_dumps() {
        let dir = TestDir::new("crash-open");
        let nul = |p: &str| format!("{p}\0").into_bytes();
        let fifo = dir.file("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        assert!(CrashFile::open(&nul(&fifo)).is_none(), "a FIFO without reader fails at once");
        let (target, link) = (dir.file("target"), dir.file("link"));
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(CrashFile::open(&nul(&link)).is_none(), "a symlink is refused");
        let new = dir.file("new.log");
        drop(CrashFile::open(&nul(&new)).expect("created"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&new).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(CrashFile::open(b"/dev/stderr\0").map(|f| (f.fd, f.close)), Some((2, false)));
        assert!(CrashFile::open(b"no-nul").is_none());
    }

    /// The one test that arms in this process (arming is process-wide).
    #[test]
    fn the_first_sink_installs_the_handler_and_the_last_one_puts_back_what_was_there() {
        let dir = TestDir::new("crash-arm");
        let before: Vec<_> = FATAL.iter().map(|&(s, _)| os::current_handler(s)).collect();
        let ours = on_fatal as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t;
        let long = sink_with(&dir.path(), &"x".repeat(NAME_CAP), &[]);
        assert!(watch(&long).is_err());
        assert_eq!(FATAL.iter().map(|&(s, _)| os::current_handler(s)).collect::<Vec<_>>(), before);

        let (a, b) = (sink_with(&dir.path(), "{paths.data}/a-{count}.log", &[]), sink_with(&dir.path(), "b", &[]));
        watch(&a).expect("watch");
        watch(&b).expect("watch");
        watch(&a).expect("again");
        assert_eq!(STATE.lock().slots.len(), 2);
        assert!(FATAL.iter().all(|&(s, _)| os::current_handler(s) == ours));

        // After a dump, the name has the next dump's {count}.
        let count_in_name = || {
            let state = STATE.lock();
            let slot = state.slots.iter().find(|s| Arc::ptr_eq(&s.sink, &a)).expect("slot");
            // SAFETY: names are written only under STATE, which is held.
            let name = unsafe { &*slot.names[usize::from(slot.current.load(Ordering::SeqCst))].get() };
            let text = std::str::from_utf8(&name.bytes[..name.len]).expect("utf8").to_string();
            text.rsplit('-').next().and_then(|c| c.strip_suffix(".log")).and_then(|c| c.parse::<u64>().ok())
        };
        let first = count_in_name().expect("a count");
        a.push(b"line\n", 0);
        let dumped = a.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
        assert!(super::super::writer::wait_idle(Duration::from_secs(5)));
        let dumped_count: u64 =
            dumped.path.rsplit('-').next().and_then(|c| c.strip_suffix(".log")).expect("count").parse().expect("n");
        assert!(dumped_count >= first);
        assert!(count_in_name().expect("a count") > dumped_count);

        unwatch(&a);
        assert!(FATAL.iter().all(|&(s, _)| os::current_handler(s) == ours), "still used by b");
        unwatch(&b);
        unwatch(&b);
        assert_eq!(FATAL.iter().map(|&(s, _)| os::current_handler(s)).collect::<Vec<_>>(), before);
        assert!(ARMED.load(Ordering::SeqCst).is_null());
    }

    // ---- Real crashes, each in a process of its own (this test binary, run again) ----

    /// Runs the ignored test `name` in a new process with `dir` as its folder.
    fn run_child(name: &str, dir: &TestDir) -> std::process::ExitStatus {
        std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", &format!("runtime::crash::tests::{name}"), "--ignored", "--test-threads=1"])
            .env("CRASH_TEST_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run")
    }

    /// In a child: no core files, the default action for the faults (the test harness has
    /// Rust's stack overflow handler there), a sink holding two lines, armed.
    fn child_sink() -> Arc<Sink> {
        child_sink_to("crash-{pid}.log")
    }

    fn child_sink_to(name: &str) -> Arc<Sink> {
        let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: setrlimit reads the local.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        set_default(libc::SIGSEGV);
        set_default(libc::SIGBUS);
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        let sink = sink_with(&dir, &format!("{{paths.data}}/{name}"), &[]);
        sink.push(b"one\n", 0);
        sink.push(b"two\n", 0);
        watch(&sink).expect("watch");
        sink
    }

    /// Waits to be killed; exits with 3 if that does not happen.
    fn linger() -> ! {
        std::thread::sleep(Duration::from_secs(5));
        std::process::exit(3)
    }

    /// The one dump in the crash file of `pid` in `dir`: its lines after the header.
    fn dumped_lines(dir: &TestDir, pid: u32) -> Vec<String> {
        let text = std::fs::read_to_string(dir.file(&format!("crash-{pid}.log"))).expect("a dump file");
        let body = text.strip_suffix("\n-- End of dump --\n\n").unwrap_or_else(|| panic!("unfinished: {text}"));
        let lines: Vec<String> = body.lines().map(String::from).collect();
        assert_eq!(lines.iter().filter(|l| l.starts_with("-- Dumping log buffer at ")).count(), 1, "{text}");
        assert!(lines[0].starts_with("-- Dumping log buffer at ") && lines[0].ends_with("  --"), "{text}");
        lines[1..].to_vec()
    }

    fn child_pid_of(dir: &TestDir) -> u32 {
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("crash-"))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        names[0].trim_start_matches("crash-").trim_end_matches(".log").parse().expect("pid")
    }

    #[test]
    #[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
    fn child_kill() {
        let _sink = child_sink();
        // SAFETY: kill with our own PID.
        unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
        linger();
    }

    #[test]
    #[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
    fn child_fault() {
        let _sink = child_sink();
        // SAFETY: not safe at all: a write to an unmapped page, the fault this test is about.
        unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u8>(8), 1) };
        linger();
    }

    #[test]
    #[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
    fn child_abort() {
        let _sink = child_sink();
        std::process::abort();
    }

    #[test]
    #[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
    fn child_mid_push() {
        let sink = child_sink();
        // The signal comes while this (the owner) thread is storing a line.
        sink.push_in_place(0.into(), |_| {
            raise(libc::SIGSEGV);
            None
        });
        linger();
    }

    static CHAINED_FD: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn earlier_handler(_: c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
        // SAFETY: write and _exit are async-signal-safe; info comes from the kernel.
        unsafe {
            let text: &[u8] = if (*info).si_code <= 0 { b"chained, sent\n" } else { b"chained\n" };
            libc::write(CHAINED_FD.load(Ordering::SeqCst), text.as_ptr().cast(), text.len());
            libc::_exit(42);
        }
    }

    #[test]
    #[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
    fn child_chained() {
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        let marker = std::fs::File::create(format!("{dir}/chained")).expect("marker");
        CHAINED_FD.store(marker.as_raw_fd(), Ordering::SeqCst);
        std::mem::forget(marker);
        // SAFETY: installs a three-argument handler with SA_SIGINFO, from zeroed plain data.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = earlier_handler as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
        }
        let _sink = child_sink();
        raise(libc::SIGABRT);
        linger();
    }

    #[test]
    #[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
    fn child_forked() {
        let _sink = child_sink();
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        std::fs::write(format!("{dir}/forker"), std::process::id().to_string()).expect("write");
        // SAFETY: the grandchild only raises a signal (its handler is async-signal-safe) or
        // _exits; this process waits for it.
        unsafe {
            let grandchild = libc::fork();
            if grandchild == 0 {
                libc::kill(libc::getpid(), libc::SIGBUS);
                libc::_exit(3);
            }
            let mut status = 0;
            libc::waitpid(grandchild, &mut status, 0);
            let ok = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS;
            libc::_exit(if ok { 0 } else { 4 });
        }
    }

    #[test]
    #[ignore = "run by a_dump_that_cannot_finish_is_cut_off_by_the_watchdog"]
    fn child_stuck_reader() {
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        let fifo = format!("{dir}/fifo\0");
        // SAFETY: mkfifo and open read the NUL-terminated path; the read end is kept open and
        // never read, so writing blocks once the pipe is full.
        unsafe {
            libc::mkfifo(fifo.as_ptr().cast(), 0o600);
            libc::open(fifo.as_ptr().cast(), libc::O_RDONLY | libc::O_NONBLOCK);
        }
        let sink = child_sink_to("fifo");
        for _ in 0..100 {
            sink.push(&[b'x'; 2000], 0); // far more than a pipe holds
        }
        raise(libc::SIGSEGV);
        linger();
    }

    #[test]
    fn a_dump_that_cannot_finish_is_cut_off_by_the_watchdog() {
        let dir = TestDir::new("child_stuck_reader");
        let started = Instant::now();
        let status = run_child("child_stuck_reader", &dir);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(u64::from(WATCHDOG_SECONDS)) && took < Duration::from_secs(8), "{took:?}");
    }

    #[test]
    fn real_crashes_dump_and_die_by_their_signal() {
        for (child, signal, last) in [
            ("child_kill", libc::SIGSEGV, "-- Fatal signal SIGSEGV, raised by this process --"),
            ("child_fault", libc::SIGSEGV, "-- Fatal signal SIGSEGV --"),
            ("child_abort", libc::SIGABRT, "-- Fatal signal SIGABRT, raised by this process --"),
        ] {
            let dir = TestDir::new(child);
            let status = run_child(child, &dir);
            assert_eq!(status.signal(), Some(signal), "{child}: {status:?}");
            assert_eq!(dumped_lines(&dir, child_pid_of(&dir)), ["one", "two", last], "{child}");
        }
    }

    #[test]
    fn a_crash_while_a_line_is_stored_is_marked() {
        let dir = TestDir::new("child_mid_push");
        let status = run_child("child_mid_push", &dir);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        assert_eq!(
            dumped_lines(&dir, child_pid_of(&dir)),
            ["one", "two", "-- may be incomplete --", "-- Fatal signal SIGSEGV, raised by this process --"]
        );
    }

    #[test]
    fn an_earlier_handler_is_called_after_the_dump() {
        let dir = TestDir::new("child_chained");
        let status = run_child("child_chained", &dir);
        assert_eq!(status.code(), Some(42), "{status:?}");
        assert_eq!(std::fs::read_to_string(dir.file("chained")).expect("marker"), "chained, sent\n");
        assert_eq!(dumped_lines(&dir, child_pid_of(&dir)).len(), 3);
    }

    #[test]
    fn a_forked_child_dumps_to_its_own_pid() {
        let dir = TestDir::new("child_forked");
        let status = run_child("child_forked", &dir);
        assert_eq!(status.code(), Some(0), "{status:?}");
        let pid = child_pid_of(&dir);
        assert_ne!(pid.to_string(), std::fs::read_to_string(dir.file("forker")).expect("forker"));
        assert_eq!(
            dumped_lines(&dir, pid),
            ["one", "two", "-- Fatal signal SIGBUS, raised by this process --"],
            "the grandchild's dump, under its own PID"
        );
    }

    // ---- Dumps in flight when the crash comes ----

    /// Every dump in `text`: (its lines, how it ends: "footer" or the failure line).
    fn dumps_in(text: &str) -> Vec<(Vec<String>, String)> {
        assert!(!text.contains('\0'), "NUL bytes in the file");
        let mut found = Vec::new();
        let mut current: Option<Vec<String>> = None;
        for line in text.lines() {
            if line.starts_with("-- Dumping log buffer at ") {
                assert!(current.is_none(), "a header without a footer or a failure mark: {line}");
                current = Some(Vec::new());
            } else if line == "-- End of dump --" || line.starts_with("-- Dump failed: ") {
                let end = if line.starts_with("-- End") { "footer".to_string() } else { line.trim_end().to_string() };
                found.push((current.take().unwrap_or_default(), end));
            } else if let Some(lines) = current.as_mut() {
                lines.push(line.to_string());
            }
        }
        assert!(current.is_none(), "the last dump has no footer");
        found
    }

    #[test]
    #[ignore = "run by regions_in_flight_are_cut_off_or_marked"]
    fn child_cut_regions() {
        use crate::runtime::dump_file;
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        let path = format!("{dir}/d.log");
        let whole = ring_of(&[("whole\n", 0)]);
        dump_file::prepare(&path, 0, whole.text_bytes(), &[]).expect("prepare").write(&whole).expect("dump");
        // A region waiting for its writer, another module's line after it, then two more
        // regions, the last one half written.
        let waiting = dump_file::prepare(&path, 0, 100, &[]).expect("prepare");
        let mut other = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        std::io::Write::write_all(&mut other, b"another module's line\n").expect("write");
        let second = dump_file::prepare(&path, 0, 200, &[]).expect("prepare");
        let last = dump_file::prepare(&path, 0, 300, &[]).expect("prepare");
        let len = std::fs::metadata(&path).expect("meta").len();
        let writer = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
        std::os::unix::fs::FileExt::write_all_at(
            &writer,
            b"-- Dumping log buffer at Jan 01 00:00:00  --\nhalf",
            len - 300,
        )
        .expect("half written");
        let mut spaces = vec![0u8; 64];
        stop_dumps_in_flight(std::process::id(), &mut spaces);
        regions::release_all();
        let text = std::fs::read_to_string(&path).expect("read");
        let dumps = dumps_in(&text);
        assert_eq!(dumps.len(), 2, "{text}");
        assert_eq!(dumps[0], (vec!["whole".to_string()], "footer".to_string()));
        assert_eq!(dumps[1].1, "-- Dump failed: cut off by a fatal signal --");
        assert!(text.ends_with("  \nanother module's line\n"), "the later regions are cut off: {text:?}");
        let framing = crate::pure::records::plain_header(0).len() + FOOTER.len();
        assert_eq!(text.len(), len as usize - (200 + framing) - (300 + framing));
        drop((waiting, second, last));
    }

    #[test]
    fn regions_in_flight_are_cut_off_or_marked() {
        let dir = TestDir::new("child_cut_regions");
        let status = run_child("child_cut_regions", &dir);
        assert!(status.success(), "{status:?}");
    }

    /// A sink of `dir` holding `count` numbered lines of about 100 bytes, armed.
    fn big_sink(dir: &str, name: &str, count: usize, extra: &[(&'static str, OptValue)]) -> Arc<Sink> {
        let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: setrlimit reads the local.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        set_default(libc::SIGSEGV);
        let mut options = vec![("lines", OptValue::Int(count as i64 + 10))];
        options.extend_from_slice(extra);
        let sink = sink_with(dir, &format!("{{paths.data}}/{name}"), &options);
        let filler = "x".repeat(90);
        for n in 0..count {
            sink.push(format!("line {n:08} {filler}\n").as_bytes(), 0);
        }
        watch(&sink).expect("watch");
        sink
    }

    #[test]
    #[ignore = "run by a_crash_during_a_background_dump_leaves_text_and_loses_no_line"]
    fn child_crash_mid_dump() {
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        let sink = big_sink(&dir, "d.log", 400_000, &[]); // 40 MB: tens of ms to write
        sink.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
        if let Some(delay) = std::env::var("CRASH_DELAY_US").ok().and_then(|d| d.parse().ok()) {
            // From when the writer has begun (the region reads as NUL bytes until then).
            let file = std::fs::File::open(format!("{dir}/d.log")).expect("open");
            let mut first = [0u8];
            while std::os::unix::fs::FileExt::read_at(&file, &mut first, 0).ok() != Some(1) || first[0] == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
            std::thread::sleep(Duration::from_micros(delay));
        }
        // SAFETY: kill with our own PID.
        unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
        linger();
    }

    /// Checks the file of a child that crashed while it dumped 400,000 lines: text only, every
    /// dump ended, and every line in a dump that ended with its footer, once.
    fn check_nothing_lost(text: &str, count: usize) {
        let dumps = dumps_in(text);
        let mut seen = vec![0u32; count];
        for (lines, end) in &dumps {
            if end != "footer" {
                continue;
            }
            for line in lines {
                if let Some(n) =
                    line.strip_prefix("line ").and_then(|l| l.get(..8)).and_then(|n| n.parse::<usize>().ok())
                {
                    seen[n] += 1;
                }
            }
        }
        let missing = seen.iter().filter(|&&n| n == 0).count();
        assert_eq!(
            missing,
            0,
            "{missing} lines are in no whole dump; dumps: {:?}",
            dumps.iter().map(|d| (d.0.len(), &d.1)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_crash_during_a_background_dump_leaves_text_and_loses_no_line() {
        // None: at once, while the dump may still wait for its writer.
        for delay in [None, Some(0), Some(2_000), Some(5_000), Some(10_000)] {
            let dir = TestDir::new("child_crash_mid_dump");
            let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
            child
                .args(["--exact", "runtime::crash::tests::child_crash_mid_dump", "--ignored", "--test-threads=1"])
                .env("CRASH_TEST_DIR", dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if let Some(delay) = delay {
                child.env("CRASH_DELAY_US", delay.to_string());
            }
            let status = child.status().expect("run");
            assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
            let text = std::fs::read_to_string(dir.file("d.log")).expect("a dump file");
            assert!(text.ends_with("-- Fatal signal SIGSEGV, raised by this process --\n-- End of dump --\n\n"));
            let missing = "-- 400000 lines taken for a dump that was waiting to be written are missing --\n";
            if delay.is_none() && text.contains(missing) {
                assert_eq!(dumps_in(&text).len(), 1, "the waiting region is cut off");
            } else {
                check_nothing_lost(&text, 400_000);
            }
        }
    }

    #[test]
    #[ignore = "run by a_crash_during_a_compressed_dump_leaves_the_file_whole_and_dumps_its_lines"]
    fn child_crash_mid_compressed() {
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        let sink = big_sink(&dir, "c.log", 100_000, &[("compress", OptValue::Str("zstd".into()))]);
        sink.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
        // The hidden file is made as the dump begins, and gets its first bytes (the earlier
        // dump, copied) once the dump is in the table the handler reads (see `regions`).
        let hidden = format!("{dir}/.c.log.zst.{}.part", std::process::id());
        while std::fs::metadata(&hidden).map_or(true, |m| m.len() == 0) {
            std::thread::sleep(Duration::from_micros(200));
        }
        raise(libc::SIGSEGV);
        linger();
    }

    #[test]
    fn a_crash_during_a_compressed_dump_leaves_the_file_whole_and_dumps_its_lines() {
        let dir = TestDir::new("child_crash_mid_compressed");
        std::fs::write(dir.file("c.log.zst"), zstd::encode_all(&b"earlier\n"[..], 3).expect("zstd")).expect("write");
        let status = run_child("child_crash_mid_compressed", &dir);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        let compressed = std::fs::read(dir.file("c.log.zst")).expect("the file");
        let text = zstd::decode_all(&compressed[..]).expect("whole frames");
        assert!(text == b"earlier\n" || text.ends_with(b"-- End of dump --\n\n"), "as before, or with the whole dump");
        if text == b"earlier\n" {
            let crash = std::fs::read_to_string(dir.file("c.log")).expect("the crash dump");
            check_nothing_lost(&crash, 100_000);
            assert!(
                crash.contains("\n-- The next 100000 lines were being dumped when the crash came"),
                "{}",
                &crash[..200]
            );
        }
    }

    #[test]
    #[ignore = "run by a_kill_during_a_compressed_dump_leaves_the_file_as_it_was"]
    fn child_compressing() {
        let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
        let sink = big_sink(&dir, "k.log", 200_000, &[("compress", OptValue::Str("gzip".into()))]);
        sink.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
        linger();
    }

    #[test]
    fn a_kill_during_a_compressed_dump_leaves_the_file_as_it_was() {
        use std::io::Read;
        let dir = TestDir::new("child_compressing");
        let earlier = {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, b"earlier\n").expect("gzip");
            encoder.finish().expect("gzip")
        };
        std::fs::write(dir.file("k.log.gz"), &earlier).expect("write");
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "runtime::crash::tests::child_compressing", "--ignored", "--test-threads=1"])
            .env("CRASH_TEST_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run");
        let hidden = dir.file(&format!(".k.log.gz.{}.part", child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&hidden).map_or(true, |m| m.len() <= earlier.len() as u64) {
            assert!(Instant::now() < deadline, "the dump did not begin");
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().expect("SIGKILL");
        assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
        let now = std::fs::read(dir.file("k.log.gz")).expect("the file");
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&now[..]).read_to_string(&mut text).expect("whole members");
        assert!(text == "earlier\n" || text.ends_with("-- End of dump --\n\n"), "as before, or with the whole dump");
    }
}
