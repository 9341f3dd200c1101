//! What became of each dump, for the `ringbuffer/dumped` event: queued by whichever thread
//! finished the dump (a writer lane, the timer, the Lua thread), taken by the Lua side, which
//! fires the event on Prosody's main loop. At most [`MAX_WAITING`] wait; past that the oldest
//! is dropped (nobody took them: the module was unloaded, say).

use std::collections::VecDeque;

use parking_lot::Mutex;

/// One dump's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The sink's address (`Sink::address`), which the Lua side maps to the sink's name.
    pub sink: usize,
    /// The file written, or the collector forwarded to.
    pub path: String,
    pub lines: usize,
    pub reason: String,
    /// Why the dump failed; `None` if it was written.
    pub error: Option<String>,
}

pub const MAX_WAITING: usize = 1024;

static WAITING: Mutex<VecDeque<Outcome>> = Mutex::new(VecDeque::new());

pub fn push(outcome: Outcome) {
    let mut waiting = WAITING.lock();
    if waiting.len() == MAX_WAITING {
        waiting.pop_front();
    }
    waiting.push_back(outcome);
}

/// The outcomes queued since the last call, oldest first.
pub fn take() -> Vec<Outcome> {
    WAITING.lock().drain(..).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_when_nobody_takes_them() {
        // The queue is global: other tests' dumps may add outcomes meanwhile; only ours count.
        let ours =
            |i: usize| Outcome { sink: 1, path: format!("dumped-test-{i}"), lines: i, reason: "t".into(), error: None };
        for i in 0..MAX_WAITING + 10 {
            push(ours(i));
        }
        let taken: Vec<_> = take().into_iter().filter(|o| o.path.starts_with("dumped-test-")).collect();
        assert!(taken.len() <= MAX_WAITING);
        assert_eq!(taken.last(), Some(&ours(MAX_WAITING + 9)));
        assert!(!taken.contains(&ours(0)), "the oldest was dropped");
    }
}
