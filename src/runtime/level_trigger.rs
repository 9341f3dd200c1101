//! One sink's `dump_on` trigger state (see `auto_dump`, which schedules the dumps): when the
//! last trigger that started a dump happened (`dump_cooldown`), the window whose dump is
//! waiting, and the triggers that only counted since the last dump. A logging reload hands it
//! to the sink made anew ([`LevelTrigger::hand_over`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One sink's trigger state.
#[derive(Debug, Default)]
pub(crate) struct LevelTrigger {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last trigger that started a dump happened.
    last: Option<Instant>,
    /// The window whose dump is scheduled and not yet started, if any (see [`WINDOWS`]).
    open: Option<u64>,
    /// Triggers that only counted since the last dump of the sink.
    suppressed: u64,
    /// Stalls (`dump_on_stall`) that only counted since the last dump of the sink.
    suppressed_stalls: u64,
}

/// Numbers the windows of the whole process, so that a window handed to a successor is told
/// apart from one the successor opened itself.
static WINDOWS: AtomicU64 = AtomicU64::new(0);

impl LevelTrigger {
    /// A line at or above the level was logged now: the window that opens, if one should (a
    /// dump is to be scheduled).
    pub(crate) fn fire(&self, now: Instant, cooldown: Duration) -> Option<u64> {
        let mut state = self.state.lock();
        let cooling = state.last.is_some_and(|last| now.duration_since(last) < cooldown);
        if state.open.is_some() || cooling {
            state.suppressed += 1;
            return None;
        }
        state.last = Some(now);
        let window = WINDOWS.fetch_add(1, Ordering::Relaxed);
        state.open = Some(window);
        Some(window)
    }

    /// A dump that starts at once by itself (`dump_on_stall`) is asked for at `now`: true if
    /// it may start. Within `cooldown` of the last trigger that started a dump it only counts.
    pub(crate) fn fire_at_once(&self, now: Instant, cooldown: Duration) -> bool {
        let mut state = self.state.lock();
        if state.last.is_some_and(|last| now.duration_since(last) < cooldown) {
            state.suppressed_stalls += 1;
            return false;
        }
        state.last = Some(now);
        true
    }

    /// The dump of `window` starts now, if that window is still open here (it may have been
    /// handed to a successor).
    pub(crate) fn close(&self, window: u64) -> bool {
        let mut state = self.state.lock();
        let here = state.open == Some(window);
        if here {
            state.open = None;
        }
        here
    }

    /// Whether a dump is scheduled and not yet started.
    pub(crate) fn window_open(&self) -> bool {
        self.state.lock().open.is_some()
    }

    /// A logging reload made this sink anew as `successor`: the open window (if any), the
    /// cooldown and the count of suppressed triggers go on there. If the successor opened a
    /// window of its own meanwhile, the two become one: its dump holds both. Locks this trigger,
    /// then the successor's (a predecessor's always first), so that the timer finds the window
    /// in one of the two, never in neither.
    pub(crate) fn hand_over(&self, successor: &LevelTrigger) {
        let mut from = self.state.lock();
        let mut to = successor.state.lock();
        let window = from.open.take();
        if to.open.is_none() {
            to.open = window;
        }
        to.last = to.last.max(from.last);
        to.suppressed += std::mem::take(&mut from.suppressed);
        to.suppressed_stalls += std::mem::take(&mut from.suppressed_stalls);
    }

    /// The triggers that only counted since the last dump, for that dump's notice, as
    /// (`dump_on` triggers, stalls); reset.
    pub(crate) fn take_suppressed(&self) -> (u64, u64) {
        let mut state = self.state.lock();
        (std::mem::take(&mut state.suppressed), std::mem::take(&mut state.suppressed_stalls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_gives_one_dump_and_a_count() {
        let trigger = LevelTrigger::default();
        let start = Instant::now();
        let cooldown = Duration::from_secs(60);
        let window = trigger.fire(start, cooldown).expect("opens");
        for i in 1..100 {
            assert!(trigger.fire(start + Duration::from_millis(i), cooldown).is_none());
        }
        assert!(trigger.close(window));
        assert!(trigger.fire(start + Duration::from_secs(59), cooldown).is_none(), "still cooling down");
        assert_eq!(trigger.take_suppressed(), (100, 0));
        assert_eq!(trigger.take_suppressed(), (0, 0));
        assert!(trigger.fire(start + Duration::from_secs(61), cooldown).is_some());
    }

    #[test]
    fn a_stall_within_the_cooldown_only_counts() {
        let trigger = LevelTrigger::default();
        let start = Instant::now();
        let cooldown = Duration::from_secs(60);
        assert!(trigger.fire_at_once(start, cooldown));
        assert!(!trigger.fire_at_once(start + Duration::from_secs(30), cooldown));
        assert!(trigger.fire(start + Duration::from_secs(31), cooldown).is_none(), "one cooldown for both");
        assert_eq!(trigger.take_suppressed(), (1, 1));
        assert!(trigger.fire_at_once(start + Duration::from_secs(61), cooldown));
    }

    #[test]
    fn nothing_counts_while_the_window_is_open_without_dumping() {
        let trigger = LevelTrigger::default();
        let start = Instant::now();
        let window = trigger.fire(start, Duration::ZERO).expect("opens");
        assert!(trigger.fire(start + Duration::from_secs(5), Duration::ZERO).is_none(), "the dump is still waiting");
        assert!(trigger.close(window));
        assert!(!trigger.close(window), "closed once");
        assert!(trigger.fire(start + Duration::from_secs(6), Duration::ZERO).is_some());
    }

    #[test]
    fn a_window_handed_over_goes_on_in_the_successor_or_merges_with_its_own() {
        let start = Instant::now();
        let (old, new) = (LevelTrigger::default(), LevelTrigger::default());
        let window = old.fire(start, Duration::ZERO).expect("opens");
        assert!(old.fire(start, Duration::ZERO).is_none());
        old.hand_over(&new);
        assert!(!old.window_open() && new.window_open());
        assert!(new.fire(start, Duration::ZERO).is_none(), "the window goes on: only counted");
        assert_eq!(new.take_suppressed(), (2, 0), "the predecessor's count and its own");
        assert!(!old.close(window));
        assert!(new.close(window));

        let (old, new) = (LevelTrigger::default(), LevelTrigger::default());
        let first = old.fire(start, Duration::ZERO).expect("opens");
        let own = new.fire(start, Duration::ZERO).expect("opens");
        old.hand_over(&new);
        assert!(!new.close(first), "merged: the predecessor's window gives no dump of its own");
        assert!(new.close(own), "the successor's window dumps both");
    }
}
