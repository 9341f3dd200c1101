//! The fatal signal's handler: the first thread in dumps every armed sink, with the watchdog
//! running; a thread that crashes at the same moment waits for that dump. Then the signal is
//! passed on (see `previous`). Async-signal-safe from entry to return.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::os::raw::c_int;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::in_flight::{stop_dumps_in_flight, write_abandoned_lines, PATIENCE};
use super::names::{name_for_pid, MAX_PID_SPOTS, NAME_CAP};
use super::output::{errno, write_dump, write_lines, Crash, CrashFile, Out, Sender, OUT_CAP};
use super::previous::{pass_on, put_back_previous, signal_index, FATAL};
use super::shared::{ArmedSink, ARMED, CRASHING, DONE, UTC_OFFSET};
use super::watchdog::{Watchdog, WATCHDOG_SECONDS};
use crate::pure::date::now_seconds;
use crate::runtime::regions;
use crate::runtime::shared_ring::CrashView;

/// The handler's buffers: static (zero pages, untouched until a crash), used only by the first
/// thread into the handler.
struct HandlerBuffers {
    out: UnsafeCell<[u8; OUT_CAP]>,
    name: UnsafeCell<[u8; NAME_CAP + 10 * MAX_PID_SPOTS]>,
}

// SAFETY: only the thread that set `CRASHING` (once per process) touches these.
unsafe impl Sync for HandlerBuffers {}

static SCRATCH: HandlerBuffers =
    HandlerBuffers { out: UnsafeCell::new([0; OUT_CAP]), name: UnsafeCell::new([0; NAME_CAP + 10 * MAX_PID_SPOTS]) };

pub(super) extern "C" fn on_fatal(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
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

fn set_errno(value: c_int) {
    // SAFETY: as in `output::errno`.
    unsafe { *libc::__errno_location() = value };
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
    // SAFETY: only the first thread into the handler gets here, once (`HandlerBuffers`).
    let (out, name) = unsafe { (&mut *SCRATCH.out.get(), &mut *SCRATCH.name.get()) };
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    stop_dumps_in_flight(pid, out);
    for slot in &armed.slots {
        dump_slot(slot, &crash, pid, out, name);
    }
    regions::release_all();
}

fn dump_slot(slot: &ArmedSink, crash: &Crash, pid: u32, out: &mut [u8], scratch: &mut [u8]) {
    let Some(cell) = slot.names.get(usize::from(slot.current.load(Ordering::SeqCst))) else { return };
    // SAFETY: the buffer `current` names is not written once a crash has begun (`ArmedSink::store`).
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
