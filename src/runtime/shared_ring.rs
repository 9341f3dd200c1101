//! The ring as shared by the Lua thread, which stores every log line, and the rare users on
//! other threads (a dump started by a native signal, a failed background dump putting its lines
//! back).
//!
//! A plain mutex would cost the Lua thread two atomic read-modify-write instructions per line,
//! about 18 ns on these machines: a fifth of what Prosody's logger spends on a whole call to an
//! empty sink. So the lock is asymmetric. The Lua thread (the thread that made the ring) only
//! announces itself with plain stores; a user on another thread makes up for the missing fence
//! with `membarrier(2)`, which has every running thread of the process execute a full memory
//! barrier (the technique of liburcu and folly's asymmetric barriers). Then at least one side
//! sees the other's flag: either the Lua thread sees `wanted` and queues on the mutex, or the
//! other thread sees `pushing` and waits for that one line to be stored. Where membarrier is
//! not available the Lua thread uses a real fence instead, and it is an ordinary Dekker lock.

use std::cell::UnsafeCell;
use std::sync::atomic::{compiler_fence, fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub(crate) struct SharedRing<T> {
    ring: UnsafeCell<T>,
    kind: BarrierKind,
    /// The thread that stores lines (the Lua thread that made the sink).
    owner: ThreadId,
    /// The same thread as `pthread_self` names it, for [`SharedRing::read_in_crash`] (a signal
    /// handler cannot call `thread::current`, which may allocate).
    owner_thread: libc::pthread_t,
    /// Held by every user but the owner's lock-free path.
    lock: Mutex<()>,
    /// The owner is in its lock-free section.
    pushing: AtomicBool,
    /// Another thread holds `lock` and wants the ring.
    wanted: AtomicBool,
}

// SAFETY: the ring is only reached through `with_owner` (the owner thread, excluded from other
// users by the protocol above), `with_lock` (the mutex, and the protocol towards the owner) and
// `read_in_crash` (the same protocol when it can be had in time; otherwise a read that the
// process's last moments accept may be torn, and say so).
unsafe impl<T: Send> Sync for SharedRing<T> {}

impl<T> std::fmt::Debug for SharedRing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRing").field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// Resets a flag when a section ends, however it ends.
struct Clear<'a>(&'a AtomicBool);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T> SharedRing<T> {
    /// A ring owned by the calling thread.
    pub(crate) fn new(ring: T) -> Self {
        Self::with_barrier(ring, barrier_kind())
    }

    fn with_barrier(ring: T, kind: BarrierKind) -> Self {
        SharedRing {
            ring: UnsafeCell::new(ring),
            kind,
            owner: thread::current().id(),
            owner_thread: this_thread(),
            lock: Mutex::new(()),
            pushing: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the ring, for the owner thread's per-line work: no atomic read-modify-write
    /// unless another thread is using the ring at that moment.
    #[inline]
    pub(crate) fn with_owner<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        debug_assert_eq!(thread::current().id(), self.owner);
        self.pushing.store(true, Ordering::Relaxed);
        match self.kind {
            BarrierKind::Membarrier => compiler_fence(Ordering::SeqCst),
            BarrierKind::Fence => fence(Ordering::SeqCst),
        }
        if !self.wanted.load(Ordering::Acquire) {
            let _done = Clear(&self.pushing);
            // SAFETY: no other thread is between `wanted` and its release (see the module doc).
            return f(unsafe { &mut *self.ring.get() });
        }
        self.pushing.store(false, Ordering::Release);
        self.with_lock(f)
    }

    /// Runs `f` on the ring from any thread.
    pub(crate) fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _guard = self.lock.lock();
        if thread::current().id() == self.owner {
            // The owner cannot be in its lock-free section while it is here.
            // SAFETY: other users hold `lock`.
            return f(unsafe { &mut *self.ring.get() });
        }
        self.wanted.store(true, Ordering::Relaxed);
        let _done = Clear(&self.wanted);
        heavy_barrier(self.kind);
        while self.pushing.load(Ordering::Acquire) {
            thread::yield_now();
        }
        // SAFETY: the owner is out of its section and will queue on `lock` until `wanted` clears.
        f(unsafe { &mut *self.ring.get() })
    }
}

// ---- Reading from a fatal signal's handler (runtime::crash) ----

/// What a reader in a fatal signal's handler could count on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashView {
    /// Nobody changed the ring while it was read: it was read exactly.
    Whole,
    /// The ring may have been in the middle of a change (the crashed thread was storing a line
    /// or held the lock, or another thread held it past the patience given): a line may be
    /// missing or torn.
    MayBeIncomplete,
}

impl<T> SharedRing<T> {
    /// Runs `f` on the ring from a fatal signal's handler, on whatever thread the signal hit.
    ///
    /// Async-signal-safe: it allocates nothing and never waits on a lock. The lock is only
    /// *tried*, for up to `patience` (a thread that holds it to take or give back lines lets go
    /// within microseconds; the crashed thread itself never will); then, from a thread other
    /// than the owner, the owner is waited for as in [`SharedRing::with_lock`], for up to
    /// `patience` again. On the owner thread, a line that was being stored when the signal came
    /// can never be finished. In each of those cases the ring is read anyway and `f` is told
    /// [`CrashView::MayBeIncomplete`].
    pub(crate) fn read_in_crash<R>(&self, patience: Duration, f: impl FnOnce(&T, CrashView) -> R) -> R {
        let on_owner = this_thread_is(self.owner_thread);
        let guard = try_lock_within(&self.lock, patience);
        let mut view = if guard.is_some() { CrashView::Whole } else { CrashView::MayBeIncomplete };
        let mut _wanted = None;
        if on_owner {
            // Stores of this thread are seen by its own handler in program order.
            if self.pushing.load(Ordering::Relaxed) {
                view = CrashView::MayBeIncomplete;
            }
        } else if guard.is_some() {
            self.wanted.store(true, Ordering::Relaxed);
            _wanted = Some(Clear(&self.wanted));
            heavy_barrier(self.kind);
            let deadline = Instant::now() + patience;
            while self.pushing.load(Ordering::Acquire) {
                if Instant::now() >= deadline {
                    view = CrashView::MayBeIncomplete;
                    break;
                }
                thread::yield_now();
            }
        }
        // SAFETY: with `Whole`, as in `with_lock`: the lock is held and the owner is out of its
        // section (or is this thread, outside it). Otherwise the ring may be changing or torn;
        // the process is about to die, the caller was told, and guards against what a torn ring
        // can do (see runtime::crash).
        f(unsafe { &*self.ring.get() }, view)
    }
}

/// Tries `lock` until it is had or `patience` has passed, without ever blocking on it.
fn try_lock_within(lock: &Mutex<()>, patience: Duration) -> Option<parking_lot::MutexGuard<'_, ()>> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(guard) = lock.try_lock() {
            return Some(guard);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::yield_now();
    }
}

fn this_thread() -> libc::pthread_t {
    // SAFETY: pthread_self only reads the calling thread's own descriptor.
    unsafe { libc::pthread_self() }
}

/// Whether the calling thread is `thread` (async-signal-safe, unlike `thread::current`).
fn this_thread_is(thread: libc::pthread_t) -> bool {
    // SAFETY: pthread_equal compares two thread ids and touches no memory.
    unsafe { libc::pthread_equal(this_thread(), thread) != 0 }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BarrierKind {
    /// The owner only stops the compiler reordering; other threads call membarrier.
    Membarrier,
    /// Both sides use ordinary fences.
    Fence,
}

/// Whether this process uses membarrier for the ring's lock (else plain fences).
pub(crate) fn uses_membarrier() -> bool {
    barrier_kind() == BarrierKind::Membarrier
}

const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 8;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 16;

fn membarrier(command: libc::c_long) -> bool {
    // SAFETY: membarrier takes a command and two zero arguments and touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_membarrier, command, 0 as libc::c_long, 0 as libc::c_long) == 0 }
}

/// Decided once per process: membarrier needs both the fast private command (registered) and
/// the global one to fall back on.
fn barrier_kind() -> BarrierKind {
    static KIND: OnceLock<BarrierKind> = OnceLock::new();
    *KIND.get_or_init(|| {
        // SAFETY: as in `membarrier`; QUERY returns the supported commands as a bit mask.
        let supported = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0 as libc::c_long, 0) };
        let needed = MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_PRIVATE_EXPEDITED;
        if supported >= 0 && supported & needed == needed && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) {
            BarrierKind::Membarrier
        } else {
            BarrierKind::Fence
        }
    })
}

/// The other side of the owner's compiler fence: a full barrier on every thread.
fn heavy_barrier(kind: BarrierKind) {
    match kind {
        BarrierKind::Fence => fence(Ordering::SeqCst),
        BarrierKind::Membarrier => {
            // A forked child may have to register again; the global command needs nothing.
            let private = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
                || (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
                    && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED));
            if !private && !membarrier(MEMBARRIER_CMD_GLOBAL) {
                // Never seen (the commands were there when the kind was settled). Last resort:
                // a store buffer drains in microseconds, so the owner's flag shows by then.
                thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::ring::{Limit, Ring};
    use std::sync::Arc;

    /// The owner stores numbered lines while another thread keeps taking them: every line must
    /// be taken exactly once, in order, and whole.
    fn owner_and_other_thread_never_lose_or_share_a_line(kind: BarrierKind) {
        let shared = Arc::new(SharedRing::with_barrier(Ring::new(Limit::Lines(1_000_000)), kind));
        let done = Arc::new(AtomicBool::new(false));
        let taker = {
            let (shared, done) = (Arc::clone(&shared), Arc::clone(&done));
            thread::spawn(move || {
                let mut seen = Vec::new();
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let taken = shared.with_lock(|ring| ring.take());
                    for line in taken.iter() {
                        let text = String::from_utf8(line.to_vec()).expect("utf8");
                        let n: u64 = text.trim_end().parse().expect("a whole number");
                        assert_eq!(text, format!("{n}\n"));
                        seen.push(n);
                    }
                    if finished {
                        return seen;
                    }
                }
            })
        };
        const LINES: u64 = 300_000;
        for n in 0..LINES {
            let line = format!("{n}\n");
            shared.with_owner(|ring| ring.push(line.as_bytes(), 0));
        }
        done.store(true, Ordering::Release);
        let seen = taker.join().expect("taker");
        assert_eq!(seen, (0..LINES).collect::<Vec<_>>());
    }

    #[test]
    fn membarrier_protocol_keeps_lines_whole() {
        // This machine's kind has membarrier; elsewhere the test still runs the fence protocol.
        owner_and_other_thread_never_lose_or_share_a_line(barrier_kind());
    }

    #[test]
    fn fence_protocol_keeps_lines_whole() {
        owner_and_other_thread_never_lose_or_share_a_line(BarrierKind::Fence);
    }

    fn numbers(ring: &Ring) -> Vec<u64> {
        ring.iter()
            .map(|line| {
                let text = String::from_utf8(line.to_vec()).expect("utf8");
                assert!(text.ends_with('\n'), "a whole line: {text:?}");
                text.trim_end().parse().expect("a whole number")
            })
            .collect()
    }

    /// A crash reader on another thread while the owner stores lines at full speed: it never
    /// catches a line half stored, and it says the ring was whole.
    #[test]
    fn a_crash_reader_on_another_thread_waits_for_the_line_being_stored() {
        let shared = Arc::new(SharedRing::new(Ring::new(Limit::Lines(1000))));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shared, done) = (Arc::clone(&shared), Arc::clone(&done));
            thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Acquire) {
                    let (view, seen) = shared.read_in_crash(Duration::from_secs(5), |ring, view| (view, numbers(ring)));
                    assert_eq!(view, CrashView::Whole);
                    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "in order, none missing");
                    reads += 1;
                    thread::sleep(Duration::from_micros(50));
                }
                reads
            })
        };
        for n in 0..50_000u64 {
            let line = format!("{n}\n");
            shared.with_owner(|ring| ring.push(line.as_bytes(), 0));
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().expect("reader") > 0);
    }

    /// A lock held by another thread (or by the crashed thread) is not waited for beyond the
    /// patience: the ring is read anyway, marked.
    #[test]
    fn a_crash_reader_does_not_wait_for_a_held_lock() {
        let shared = Arc::new(SharedRing::new(Ring::new(Limit::Lines(10))));
        shared.with_owner(|ring| ring.push(b"1\n", 0));
        let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let holder = {
            let shared = Arc::clone(&shared);
            let (held, release) = (held.0, release.1);
            thread::spawn(move || {
                shared.with_lock(|_| {
                    held.send(()).expect("send");
                    let _ = release.recv();
                })
            })
        };
        held.1.recv().expect("held");
        let started = Instant::now();
        let (view, seen) = shared.read_in_crash(Duration::from_millis(50), |ring, view| (view, numbers(ring)));
        assert_eq!((view, seen), (CrashView::MayBeIncomplete, vec![1]));
        assert!(started.elapsed() < Duration::from_secs(2));
        release.0.send(()).expect("release");
        holder.join().expect("holder");
        assert_eq!(shared.read_in_crash(Duration::ZERO, |_, view| view), CrashView::Whole);
    }

    /// The owner thread interrupted while storing a line (a signal handler runs on top of it):
    /// the line can never be finished, so the read is marked.
    #[test]
    fn a_crash_on_the_owner_while_it_stores_a_line_is_marked() {
        let shared = SharedRing::new(Ring::new(Limit::Lines(10)));
        shared.with_owner(|ring| ring.push(b"1\n", 0));
        assert_eq!(shared.read_in_crash(Duration::ZERO, |_, view| view), CrashView::Whole);
        // What a handler sees when the signal comes inside the owner's section (the section's
        // ring is not touched again once the "handler" has run).
        let view = shared.with_owner(|_| shared.read_in_crash(Duration::ZERO, |ring, view| (view, numbers(ring))));
        assert_eq!(view, (CrashView::MayBeIncomplete, vec![1]));
        // And inside the lock the owner itself holds (a dump taking the lines).
        let view = shared.with_lock(|_| shared.read_in_crash(Duration::from_millis(20), |_, view| view));
        assert_eq!(view, CrashView::MayBeIncomplete);
    }
}
