//! Deciding whether a stop signal (SIGTERM, SIGINT) met a hung main loop: Prosody handles the
//! signal on its main loop, so when that loop is stuck nothing runs the exit dump. The caller
//! reports the signal, each sign of life of the main loop (the Lua side calls in while it runs)
//! and whether the exit dump has begun; the time is passed in.
//!
//! A signal opens an *episode*. If neither the exit dump begins nor the loop shows a sign of
//! life for [`GRACE`] after the later of the signal and the last sign of life, the loop counts
//! as hung and the episode asks for one dump. A signal during an episode still undecided joins
//! it; a signal after its dump opens a new episode. Once the exit dump has begun there is
//! nothing left to decide: it writes what is left.

use std::time::{Duration, Instant};

/// How long after a stop signal (or the loop's last sign of life) the loop counts as hung.
/// Short enough for the dump to be written within 2 s of the signal, long enough for a healthy
/// loop to take the signal and begin shutting down.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No stop signal waits for a decision.
    Idle,
    /// Ask again at this moment (or at the next event).
    WaitUntil(Instant),
    /// The loop is hung: dump now (once; the episode is decided).
    Dump { signal: i32 },
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    since: Instant,
    signal: i32,
    dumped: bool,
}

/// The decision's state (one per process).
#[derive(Debug, Default)]
pub(crate) struct StopWatch {
    episode: Option<Episode>,
    last_alive: Option<Instant>,
    exiting: bool,
}

impl StopWatch {
    /// A stop signal arrived at `now`.
    pub(crate) fn signalled(&mut self, signal: i32, now: Instant) {
        if self.exiting {
            return;
        }
        match self.episode {
            Some(Episode { dumped: false, .. }) => {}
            _ => self.episode = Some(Episode { since: now, signal, dumped: false }),
        }
    }

    /// The main loop ran at `now`.
    pub(crate) fn alive(&mut self, now: Instant) {
        if self.last_alive.is_none_or(|last| last < now) {
            self.last_alive = Some(now);
        }
    }

    /// The exit dump has begun: nothing is left to decide, for good.
    pub(crate) fn exit_began(&mut self) {
        self.exiting = true;
        self.episode = None;
    }

    /// What to do at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Verdict {
        let last_alive = self.last_alive;
        let Some(episode) = self.episode.as_mut().filter(|e| !e.dumped && !self.exiting) else {
            return Verdict::Idle;
        };
        let from = last_alive.map_or(episode.since, |alive| alive.max(episode.since));
        let deadline = from + GRACE;
        if now < deadline {
            return Verdict::WaitUntil(deadline);
        }
        episode.dumped = true;
        Verdict::Dump { signal: episode.signal }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: i32 = 15;
    const INT: i32 = 2;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_happens_without_a_signal() {
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.alive(t0);
        assert_eq!(watch.poll(t0 + ms(10_000)), Verdict::Idle);
    }

    #[test]
    fn a_loop_that_never_answers_is_dumped_once_after_the_grace() {
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.signalled(TERM, t0);
        assert_eq!(watch.poll(t0), Verdict::WaitUntil(t0 + GRACE));
        assert_eq!(watch.poll(t0 + GRACE - ms(1)), Verdict::WaitUntil(t0 + GRACE));
        assert_eq!(watch.poll(t0 + GRACE), Verdict::Dump { signal: TERM });
        assert_eq!(watch.poll(t0 + GRACE * 5), Verdict::Idle, "one dump per episode");
    }

    #[test]
    fn a_healthy_shutdown_dumps_only_at_exit() {
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.signalled(TERM, t0);
        watch.alive(t0 + ms(2)); // server-stopping
        watch.exit_began(); // server-stopped
        assert_eq!(watch.poll(t0 + GRACE * 10), Verdict::Idle);
        watch.signalled(TERM, t0 + GRACE * 11);
        assert_eq!(watch.poll(t0 + GRACE * 20), Verdict::Idle, "nothing after the exit dump");
    }

    #[test]
    fn a_slow_shutdown_whose_loop_turns_is_not_hung() {
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.signalled(TERM, t0);
        for k in 0..20 {
            let now = t0 + ms(250 * k);
            watch.alive(now);
            assert!(matches!(watch.poll(now), Verdict::WaitUntil(_)));
        }
        let last = t0 + ms(250 * 19);
        assert_eq!(watch.poll(last + GRACE), Verdict::Dump { signal: TERM }, "then it stops turning");
    }

    #[test]
    fn a_sign_of_life_before_the_signal_is_noticed_still_counts_from_the_signal() {
        // 0.12, loop spinning in Lua: Prosody's hook runs server-stopping (alive) before the
        // native thread has read the signal's byte, then the spin goes on.
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.alive(t0);
        watch.signalled(TERM, t0 + ms(5));
        assert_eq!(watch.poll(t0 + ms(5) + GRACE), Verdict::Dump { signal: TERM });
        // And an old sign of life does not delay a later episode.
        let mut watch = StopWatch::default();
        watch.alive(t0);
        watch.signalled(TERM, t0 + ms(60_000));
        assert_eq!(watch.poll(t0 + ms(60_000) + GRACE), Verdict::Dump { signal: TERM });
    }

    #[test]
    fn a_second_signal_joins_an_open_episode_and_opens_a_new_one_after_its_dump() {
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.signalled(TERM, t0);
        watch.signalled(INT, t0 + ms(500));
        assert_eq!(watch.poll(t0 + GRACE), Verdict::Dump { signal: TERM }, "not pushed back by the second");
        let later = t0 + ms(10_000);
        watch.signalled(INT, later);
        assert_eq!(watch.poll(later + ms(1)), Verdict::WaitUntil(later + GRACE));
        assert_eq!(watch.poll(later + GRACE), Verdict::Dump { signal: INT });
    }

    #[test]
    fn the_exit_dump_beginning_during_the_grace_cancels_the_dump() {
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.signalled(TERM, t0);
        watch.exit_began();
        assert_eq!(watch.poll(t0 + GRACE), Verdict::Idle);
    }

    #[test]
    fn time_never_goes_back_for_signs_of_life() {
        let t0 = Instant::now();
        let mut watch = StopWatch::default();
        watch.signalled(TERM, t0);
        watch.alive(t0 + ms(1000));
        watch.alive(t0 + ms(10)); // a late caller with an older reading
        assert_eq!(watch.poll(t0 + ms(1001)), Verdict::WaitUntil(t0 + ms(1000) + GRACE));
    }
}
