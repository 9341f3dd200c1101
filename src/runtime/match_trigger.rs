//! `dump_on_match`: which lines a sink stored since the last look have a message that matches
//! its regular expression; such a line starts the sink's `dump_on` window (see `auto_dump`).
//!
//! The logging thread does nothing more per line: the Lua side calls [`MatchTrigger::check`]
//! from a timer every 50 ms, which reads the new lines from a snapshot. A line pushed out of
//! the ring before the next look is not seen (a ring of N lines turning over in under 50 ms).
//! This module's own lines (source `mod_log_ringbuffer`) are left out.

use std::sync::Arc;

use regex::bytes::Regex;

use super::sink::Sink;
use crate::pure::query;

/// This module's own lines never match: a dump's report (`Dumped … (dump_on_match = "…")`)
/// would start the next dump.
const OWN_SOURCE: &[u8] = b"mod_log_ringbuffer";

#[derive(Debug)]
pub(crate) struct MatchTrigger {
    pattern: Regex,
    /// How many lines the sink had stored at the last look.
    seen: u64,
}

impl MatchTrigger {
    /// The trigger of `sink`, if it has `dump_on_match` (already checked valid by the options);
    /// only lines stored from now on are looked at.
    pub(crate) fn of(sink: &Sink) -> Option<MatchTrigger> {
        let pattern = query::pattern(sink.options.auto.on_match.as_deref()?).ok()?;
        Some(MatchTrigger { pattern, seen: sink.snapshot().stored() })
    }

    /// Looks at the lines stored since the last look; true if one matched (the window opened,
    /// or the trigger was counted within the cooldown).
    pub(crate) fn check(&mut self, sink: &Arc<Sink>) -> bool {
        let snapshot = sink.snapshot();
        let stored = snapshot.stored();
        if stored == self.seen {
            return false;
        }
        let new = usize::try_from(stored.saturating_sub(self.seen)).unwrap_or(usize::MAX);
        self.seen = stored;
        let old = snapshot.lines().saturating_sub(new);
        let mut joined = Vec::new();
        let matched = snapshot.iter().skip(old).any(|line| {
            let bytes = query::contiguous(&line, &mut joined);
            // Most lines do not match at all: the whole line first, the message only then.
            self.pattern.is_match(bytes) && {
                let (source, message) = query::source_and_message(bytes, usize::from(line.meta.source_at));
                source != Some(OWN_SOURCE) && self.pattern.is_match(message)
            }
        });
        if matched {
            super::auto_dump::line_matched(sink);
        }
        matched
    }
}
