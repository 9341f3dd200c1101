//! The admin shell's slow reads (`tail`, `grep`, a dump that keeps the buffer) run on a thread
//! of their own, so Prosody's main loop is held only for the moment a snapshot takes; the
//! shell polls for the answer and takes it in batches.
//!
//! At most [`MAX_READS`] reads exist at once, from their start until their answer was taken
//! whole or they were cancelled: each holds a snapshot (whose chunks outlive the ring's), a
//! compiled pattern and its answer, so this bounds the memory reads hold. One more is refused
//! with a "busy" answer. A read can be cancelled (its shell went away): the scan stops soon
//! after, and what it held is freed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::places::{Place, Places};

/// How many reads may exist at once (running, or with an answer not yet taken).
pub(crate) const MAX_READS: usize = 4;

static READS: Places = Places::new(MAX_READS, "reads", "try again in a moment");

/// One of the [`MAX_READS`] places; given back when dropped.
pub(crate) type ReadPermit = Place;

/// A place for one more read, or the "busy" answer.
pub(crate) fn read_permit() -> Result<ReadPermit, String> {
    READS.take()
}

/// How many reads hold a place now.
#[cfg(test)]
pub(crate) fn reads() -> usize {
    READS.taken()
}

/// Set when the read's shell went away: the work should stop.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub(crate) fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A finished read: its answer and the place it still holds.
pub(crate) type Finished<T> = (Result<T, String>, ReadPermit);

/// The answer of work running elsewhere: `None` until it is done.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    slot: Arc<Mutex<Option<Finished<T>>>>,
    cancel: Cancel,
}

impl<T> Pending<T> {
    /// An answer that is already there.
    pub(crate) fn ready(answer: Result<T, String>, permit: ReadPermit) -> Self {
        Pending { slot: Arc::new(Mutex::new(Some((answer, permit)))), cancel: Cancel::default() }
    }

    /// The answer with its place, once (`None` while the work runs, after the answer was taken,
    /// and once cancelled).
    pub(crate) fn take(&self) -> Option<Finished<T>> {
        self.slot.lock().take()
    }

    /// Asks the work to stop and drops its answer if it is there.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
        drop(self.slot.lock().take());
    }
}

/// Runs `work` on a new thread (signals blocked, see `thread`; at the lowest CPU priority), holding `permit` until its
/// answer is taken. A panic in it is an error answer, so a waiting shell is never left hanging.
pub(crate) fn run<T, W>(name: &str, permit: ReadPermit, work: W) -> Result<Pending<T>, String>
where
    T: Send + 'static,
    W: FnOnce(&Cancel) -> Result<T, String> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(None));
    let answer = Arc::clone(&slot);
    let cancel = Cancel::default();
    let cancelled = cancel.clone();
    super::thread::spawn_worker(name, std::iter::once((work, permit)), move |(work, permit)| {
        // A scan competes for the CPU with Prosody's main loop, which must win.
        super::os::lowest_priority_for_this_thread();
        let result = catch_unwind(AssertUnwindSafe(|| work(&cancelled)))
            .unwrap_or_else(|_| Err("internal error: the scan panicked (a bug; please report it)".into()));
        if !cancelled.is_cancelled() {
            *answer.lock() = Some((result, permit));
        }
    })
    .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(Pending { slot, cancel })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait<T>(pending: &Pending<T>) -> Finished<T> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(answer) = pending.take() {
                return answer;
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "not in time");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    // One test for everything that counts places: the count is global to the process.
    #[test]
    fn answers_once_a_panic_is_an_error_places_are_bounded_and_cancel_frees() {
        let before = reads();
        let pending = run("test-inspect", read_permit().expect("place"), |_| Ok(42)).expect("started");
        let (answer, permit) = wait(&pending);
        assert_eq!(answer, Ok(42));
        assert!(pending.take().is_none());
        assert_eq!(reads(), before + 1, "the place is held until the answer is dropped");
        drop(permit);
        assert_eq!(reads(), before);

        let broken = run::<u8, _>("test-inspect", read_permit().expect("place"), |_| panic!("bug")).expect("started");
        assert!(wait(&broken).0.expect_err("error").contains("internal error"));

        // Every place taken: the next read is told the server is busy.
        let held: Vec<_> = std::iter::from_fn(|| read_permit().ok()).collect();
        assert_eq!(held.len(), MAX_READS - before);
        assert!(read_permit().expect_err("busy").starts_with("busy: "));
        drop(held);

        // A cancelled read stops and gives its place back; its answer is dropped.
        let endless = run::<u8, _>("test-inspect", read_permit().expect("place"), |cancel| {
            while !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(1)
        })
        .expect("started");
        assert_eq!(reads(), before + 1);
        endless.cancel();
        wait_until(|| reads() == before);
        assert!(endless.take().is_none());
    }
}
