//! `forward_rate`: how fast a forward may send its messages, so that a receiver that drops what
//! comes over a rate limit (journald) gets a whole dump.
//!
//! journald limits each service to `RateLimitBurst` messages per `RateLimitIntervalSec`
//! (journald.conf's defaults: 10,000 per 30 s; the burst is scaled up with free disk space) and
//! drops the rest without a word, while every datagram is accepted. A forward to journald's
//! socket therefore sends at most [`JOURNALD_RATE`] messages a second: 7,500 in any 30 s, a
//! quarter of the burst left for the service's other messages (Prosody's own log among them).

use std::path::Path;
use std::time::Duration;

/// `forward_rate` as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pace {
    /// Not given: [`JOURNALD_RATE`] to journald's socket, no limit otherwise.
    Auto,
    /// `false`: as fast as the receiver takes them.
    Unlimited,
    /// `n`: at most n messages a second.
    PerSecond(u32),
}

/// Messages per second sent to journald when `forward_rate` is not given.
pub const JOURNALD_RATE: u32 = 250;
/// `forward_rate` at most.
pub const MAX_RATE: i64 = 1_000_000;
/// Where journald's sockets are (`/dev/log` is a link to `dev-log` there on systemd hosts), and
/// those of a journald namespace (`/run/systemd/journal.<namespace>/`).
const JOURNALD_RUN_DIR: &str = "/run/systemd";

impl Pace {
    /// The messages per second a forward to a unix socket whose path resolves to `resolved`
    /// (`None` for network targets) may send, or `None` for no limit.
    pub fn rate(self, resolved: Option<&Path>) -> Option<u32> {
        match self {
            Pace::Unlimited => None,
            Pace::PerSecond(n) => Some(n),
            Pace::Auto => resolved.filter(|path| is_journald(path)).map(|_| JOURNALD_RATE),
        }
    }
}

/// Whether `resolved` is a socket of journald's: in `/run/systemd/journal/` or
/// `/run/systemd/journal.<namespace>/`.
fn is_journald(resolved: &Path) -> bool {
    let Some(dir) = resolved.parent() else { return false };
    let in_run_dir = dir.parent() == Some(Path::new(JOURNALD_RUN_DIR));
    let name = dir.file_name().and_then(|name| name.to_str()).unwrap_or("");
    in_run_dir && (name == "journal" || name.starts_with("journal."))
}

/// When the message numbered `index` (from 0) is due, counted from the forward's start, at
/// `rate` messages a second: evenly spaced, never in bursts.
pub fn due(rate: u32, index: u64) -> Duration {
    let rate = u64::from(rate.max(1));
    Duration::from_secs(index / rate) + Duration::from_nanos((index % rate) * 1_000_000_000 / rate)
}

/// How long `messages` take at `rate` a second.
pub fn duration_of(rate: u32, messages: u64) -> Duration {
    due(rate, messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_is_paced_by_default_and_nothing_else_is() {
        let journal = Path::new("/run/systemd/journal/dev-log");
        assert_eq!(Pace::Auto.rate(Some(journal)), Some(JOURNALD_RATE));
        assert_eq!(Pace::Auto.rate(Some(Path::new("/run/systemd/journal.ns1/dev-log"))), Some(JOURNALD_RATE));
        assert_eq!(Pace::Auto.rate(Some(Path::new("/run/rsyslog/log.sock"))), None);
        assert_eq!(Pace::Auto.rate(Some(Path::new("/run/systemd/journalx/dev-log"))), None);
        assert_eq!(Pace::Auto.rate(Some(Path::new("/tmp/run/systemd/journal/dev-log"))), None);
        assert_eq!(Pace::Auto.rate(None), None);
        assert_eq!(Pace::Unlimited.rate(Some(journal)), None);
        assert_eq!(Pace::PerSecond(40).rate(None), Some(40));
    }

    #[test]
    fn the_default_rate_stays_under_journalds_default_burst_with_a_margin() {
        // 10,000 per 30 s: any 30 s window of a paced forward holds at most 7,501 messages.
        let in_window = (0..).take_while(|&i| due(JOURNALD_RATE, i) <= Duration::from_secs(30)).count();
        assert!(in_window <= 7_501, "{in_window}");
        // A 2 MiB ring holds about 15,000 lines: a minute.
        assert_eq!(duration_of(JOURNALD_RATE, 15_000), Duration::from_secs(60));
    }

    #[test]
    fn messages_are_evenly_spaced() {
        assert_eq!(due(4, 0), Duration::ZERO);
        assert_eq!(due(4, 1), Duration::from_millis(250));
        assert_eq!(due(4, 5), Duration::from_millis(1250));
        assert_eq!(due(3, 1), Duration::from_nanos(333_333_333));
    }
}
