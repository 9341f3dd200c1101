//! When Prosody's main loop last turned: a Lua timer calls [`beat`] once every [`INTERVAL`]
//! while a sink wants it (`dump_on_stall`, `dump_on_exit`), and native threads read it
//! without a lock (see `stall`).
//!
//! The values belong to the process and carry over into a forked child, whose loop goes on
//! beating where its parent's left off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often the Lua timer beats: at most once a second, so the heartbeat costs nothing.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// What `LAST` counts from.
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Nanoseconds from `EPOCH` to the last beat.
static LAST: AtomicU64 = AtomicU64::new(0);
/// Beats so far. Stored after `LAST` (release) and read before it (acquire): a reader that
/// sees a beat's count also sees its time.
static BEATS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// The main loop turned now (the Lua thread, via `native.heartbeat()`).
pub(crate) fn beat() {
    let nanos = Instant::now().saturating_duration_since(epoch()).as_nanos();
    LAST.store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    BEATS.fetch_add(1, Ordering::AcqRel);
}

/// How long ago the last beat was; `None`: no beat yet. The clock is read before the beat,
/// so a beat that comes meanwhile makes the answer shorter, never longer.
pub(crate) fn since_last_beat() -> Option<Duration> {
    let now = Instant::now();
    if BEATS.load(Ordering::Acquire) == 0 {
        return None;
    }
    let last = epoch() + Duration::from_nanos(LAST.load(Ordering::Acquire));
    Some(now.saturating_duration_since(last))
}

/// Beats so far ("turned since": a count that changed means the loop turned in between).
pub(crate) fn beats() -> u64 {
    BEATS.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_is_counted_and_timed() {
        let before = beats();
        beat();
        assert!(beats() > before);
        let since = since_last_beat().expect("a beat");
        assert!(since < Duration::from_secs(5), "{since:?}");
    }
}
