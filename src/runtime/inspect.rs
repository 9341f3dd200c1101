//! The admin shell's slow reads (`tail`, `grep`, a dump that keeps the buffer) run on a thread
//! of their own, so Prosody's main loop is held only for the moment a snapshot takes; the
//! shell polls for the answer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::Mutex;

/// The answer of work running elsewhere: `None` until it is done.
#[derive(Debug)]
pub(crate) struct Pending<T>(Arc<Mutex<Option<Result<T, String>>>>);

impl<T> Pending<T> {
    /// An answer that is already there.
    pub(crate) fn ready(answer: Result<T, String>) -> Self {
        Pending(Arc::new(Mutex::new(Some(answer))))
    }

    /// The answer, once (`None` while the work runs, and after the answer was taken).
    pub(crate) fn take(&self) -> Option<Result<T, String>> {
        self.0.lock().take()
    }
}

/// Runs `work` on a new thread (signals blocked, see `thread`). A panic in it is an error
/// answer, so a waiting shell is never left hanging.
pub(crate) fn run<T, W>(name: &str, work: W) -> Result<Pending<T>, String>
where
    T: Send + 'static,
    W: FnOnce() -> Result<T, String> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(None));
    let answer = Arc::clone(&slot);
    super::thread::spawn_worker(name, std::iter::once(work), move |work| {
        let result = catch_unwind(AssertUnwindSafe(work))
            .unwrap_or_else(|_| Err("internal error: the scan panicked (a bug; please report it)".into()));
        *answer.lock() = Some(result);
    })
    .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(Pending(slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait<T>(pending: &Pending<T>) -> Result<T, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(answer) = pending.take() {
                return answer;
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn answers_once_and_a_panic_is_an_error() {
        let pending = run("test-inspect", || Ok(42)).expect("started");
        assert_eq!(wait(&pending), Ok(42));
        assert!(pending.take().is_none());
        let broken = run::<u8, _>("test-inspect", || panic!("bug")).expect("started");
        assert!(wait(&broken).expect_err("error").contains("internal error"));
    }
}
