//! Tests only: a test body run under watch, so that a deadlock fails the test instead of hanging
//! `cargo test`. parking_lot's deadlock detector (on in test builds only, see Cargo.toml's
//! dev-dependency) is asked every few milliseconds whether threads wait on locks in a cycle (a
//! thread waiting for a lock it holds itself is one), and the body must finish in its time.
//!
//! A cycle found anywhere in the test process fails every watched test from then on: whichever
//! test's threads are caught in it, the lock order of `runtime` was broken.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Cycles found so far, described (the detector reports each one once, to whoever asks first).
static FOUND: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Runs `body` on a thread of its own and gives its result; panics if a lock cycle appears in
/// the process meanwhile or the body takes longer than `limit` (the blocked thread is left
/// behind: the failure is reported, not a hung test run).
pub(crate) fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::Builder::new()
        .name("lock-watched".into())
        .spawn(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(body)));
        })
        .expect("a thread for the watched body");
    let deadline = Instant::now() + limit;
    loop {
        match finished.recv_timeout(Duration::from_millis(10)) {
            Ok(Ok(value)) => return value,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("the watched body ended without an answer"),
        }
        if let Some(cycles) = deadlocks() {
            panic!("deadlock: threads wait on locks in a cycle:\n{cycles}");
        }
        assert!(Instant::now() < deadline, "the watched body did not finish within {limit:?} (no lock cycle seen)");
    }
}

/// Every lock cycle found in this process so far, described, or `None`.
fn deadlocks() -> Option<String> {
    let mut found = FOUND.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for cycle in parking_lot::deadlock::check_deadlock() {
        let mut text = String::new();
        for thread in cycle {
            let trace = format!("{:?}", thread.backtrace());
            // Only this crate's frames: enough to see which locks were taken where.
            let ours: Vec<&str> = trace
                .lines()
                .filter(|l| l.contains("log_ringbuffer_native::") || l.trim_start().starts_with("at src/"))
                .collect();
            text.push_str(&format!("thread {:?}:\n{}\n", thread.thread_id(), ours.join("\n")));
        }
        found.push(text);
    }
    (!found.is_empty()).then(|| found.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn a_body_that_finishes_gives_its_result() {
        assert_eq!(within(Duration::from_secs(5), || 42), 42);
    }

    /// Run alone by `a_lock_taken_again_by_its_holder_fails_the_test` (the cycle it makes would
    /// fail every other watched test of the process).
    #[test]
    #[ignore = "run by a_lock_taken_again_by_its_holder_fails_the_test"]
    fn deadlocks_on_purpose() {
        within(Duration::from_secs(30), || {
            let lock = Mutex::new(());
            let _held = lock.lock();
            let _again = lock.lock(); // the old `reserve` -> `give_back` bug, reduced
        });
    }

    #[test]
    fn a_lock_taken_again_by_its_holder_fails_the_test() {
        let test = "runtime::lock_watch::tests::deadlocks_on_purpose";
        let started = Instant::now();
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--ignored", "--test-threads=1"])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("deadlock: threads wait on locks in a cycle"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(20), "found by the detector, not the time limit");
    }
}
