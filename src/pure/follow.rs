//! Following a ring (`ringbuffer:follow`): which of the lines stored since a reader last looked
//! pass its filter, and the bounded outbox they wait in until the shell takes them.
//!
//! Lines are numbered by the ring's count of lines stored, so a reader needs no hook on the
//! per-line path: it remembers the number of the next line it wants and, on its next look at
//! a snapshot, starts there. Lines the ring dropped (or a dump took) before the reader looked,
//! and matching lines beyond the outbox's bound while the shell did not take them, are not
//! kept but counted, for the shell's "lines skipped" notice.

use std::collections::VecDeque;

use super::query::{self, Filter};
use super::ring::Ring;

/// Where a reader is: the number of the next line it has not looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    next: u64,
}

/// What one look found besides the lines that passed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Looked {
    /// Lines gone from the ring before the reader got to them.
    pub skipped: u64,
    /// Lines looked at.
    pub lines: usize,
    /// Whether stored lines are left to look at (the look stopped at its bound).
    pub more: bool,
}

impl Cursor {
    /// A cursor after every line `ring` holds, and the newest `backlog` of them that pass
    /// (oldest first); `None` once `stop` said stop.
    pub fn after_backlog(
        ring: &Ring,
        filter: &Filter,
        backlog: usize,
        stop: impl Fn() -> bool,
    ) -> Option<(Cursor, VecDeque<Vec<u8>>)> {
        let found = query::newest_unless(ring, filter, backlog, stop)?;
        Some((Cursor { next: ring.stored() }, found.lines))
    }

    /// Looks at up to `max_lines` lines of `ring` (a snapshot) from the cursor on, giving each
    /// that passes to `passed`, and moves the cursor after them.
    pub fn look(&mut self, ring: &Ring, filter: &Filter, max_lines: usize, mut passed: impl FnMut(Vec<u8>)) -> Looked {
        let stored = ring.stored();
        let first = stored - ring.lines() as u64;
        // (A ring never counts fewer lines stored than before; kept safe all the same.)
        self.next = self.next.min(stored);
        let skipped = first.saturating_sub(self.next);
        self.next = self.next.max(first);
        let mut joined = Vec::new();
        let mut lines = 0;
        for line in ring.iter().skip((self.next - first) as usize).take(max_lines) {
            let bytes = query::contiguous(&line, &mut joined);
            if filter.passes(bytes, usize::from(line.meta.source_at), line.meta.time) {
                passed(bytes.to_vec());
            }
            lines += 1;
        }
        self.next += lines as u64;
        Looked { skipped, lines, more: self.next < stored }
    }
}

/// Matching lines waiting for the shell, at most `max_bytes` of them, and the count of those
/// that did not fit or were gone before they were looked at.
#[derive(Debug)]
pub struct Outbox {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
    skipped: u64,
}

/// Lines for the shell: joined by newlines (without the last one's), how many, and how many
/// were skipped before them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub text: Vec<u8>,
    pub lines: usize,
    pub skipped: u64,
}

impl Outbox {
    pub fn new(max_bytes: usize) -> Self {
        Outbox { lines: VecDeque::new(), bytes: 0, max_bytes, skipped: 0 }
    }

    /// Keeps `line` if it fits, else counts it skipped.
    pub fn offer(&mut self, line: Vec<u8>) {
        if self.bytes + line.len() > self.max_bytes {
            self.skipped += 1;
            return;
        }
        self.bytes += line.len();
        self.lines.push_back(line);
    }

    pub fn skip(&mut self, lines: u64) {
        self.skipped += lines;
    }

    /// Whether there is anything to tell the shell.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.skipped == 0
    }

    /// Lines skipped and not yet told.
    #[cfg(test)]
    pub fn skipped_so_far(&self) -> u64 {
        self.skipped
    }

    /// Bytes of the lines held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest lines held, up to `max_lines` and `max_bytes` (at least one line), with the
    /// skipped count (then reset); `None` if there is nothing to tell.
    pub fn take(&mut self, max_lines: usize, max_bytes: usize) -> Option<Batch> {
        if self.is_empty() {
            return None;
        }
        let mut batch = Batch { skipped: std::mem::take(&mut self.skipped), ..Batch::default() };
        while let Some(line) = self.lines.front() {
            if batch.lines == max_lines || (batch.lines > 0 && batch.text.len() + line.len() > max_bytes) {
                break;
            }
            if batch.lines > 0 {
                batch.text.push(b'\n');
            }
            batch.text.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
            self.bytes -= line.len();
            self.lines.pop_front();
            batch.lines += 1;
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::level::Level;
    use crate::pure::ring::{Limit, Meta};

    const STAMP: &str = "Dec 07 03:00:00 ";

    fn push(ring: &mut Ring, source: &str, level: &str, message: &str) {
        let line = format!("{STAMP}{source}\t{level}\t{message}\n");
        ring.push(line.as_bytes(), Meta { time: 100, source_at: STAMP.len() as u16 });
    }

    fn messages(lines: &[Vec<u8>]) -> Vec<String> {
        lines.iter().map(|l| String::from_utf8_lossy(l).rsplit('\t').next().unwrap_or("").trim_end().into()).collect()
    }

    fn look_all(cursor: &mut Cursor, ring: &Ring, filter: &Filter) -> (Vec<Vec<u8>>, Looked) {
        let mut found = Vec::new();
        let looked = cursor.look(ring, filter, usize::MAX, |line| found.push(line));
        (found, looked)
    }

    #[test]
    fn shows_the_backlog_then_only_the_lines_stored_since() {
        let mut ring = Ring::new(Limit::Lines(100));
        for i in 0..5 {
            push(&mut ring, "c2s1", "debug", &format!("old {i}"));
        }
        let filter = Filter::default();
        let (mut cursor, backlog) = Cursor::after_backlog(&ring.snapshot(), &filter, 2, || false).expect("done");
        assert_eq!(messages(&backlog.into_iter().collect::<Vec<_>>()), ["old 3", "old 4"]);
        assert_eq!(look_all(&mut cursor, &ring, &filter).0.len(), 0, "nothing new yet");
        push(&mut ring, "c2s1", "debug", "new 1");
        push(&mut ring, "c2s1", "debug", "new 2");
        let (found, looked) = look_all(&mut cursor, &ring, &filter);
        assert_eq!(messages(&found), ["new 1", "new 2"]);
        assert_eq!(looked, Looked { skipped: 0, lines: 2, more: false });
        assert!(look_all(&mut cursor, &ring, &filter).0.is_empty());
    }

    #[test]
    fn obeys_the_filter() {
        let mut ring = Ring::new(Limit::Lines(100));
        let filter = Filter {
            min_level: Some(Level::Info),
            pattern: Some(query::pattern("alice").expect("pattern")),
            not_sources: vec![b"admin1".to_vec()],
            ..Filter::default()
        };
        let (mut cursor, _) = Cursor::after_backlog(&ring, &filter, 10, || false).expect("done");
        push(&mut ring, "c2s1", "debug", "alice debug");
        push(&mut ring, "c2s1", "info", "alice info");
        push(&mut ring, "c2s1", "warn", "bob warn");
        push(&mut ring, "admin1", "warn", "alice of the shell");
        assert_eq!(messages(&look_all(&mut cursor, &ring, &filter).0), ["alice info"]);
    }

    #[test]
    fn counts_lines_dropped_or_taken_before_it_looked() {
        let mut ring = Ring::new(Limit::Lines(10));
        let filter = Filter::default();
        let (mut cursor, _) = Cursor::after_backlog(&ring, &filter, 10, || false).expect("done");
        for i in 0..1000 {
            push(&mut ring, "c2s1", "debug", &format!("line {i}"));
        }
        let (found, looked) = look_all(&mut cursor, &ring, &filter);
        assert_eq!(found.len(), ring.lines());
        assert_eq!(looked.skipped, 1000 - ring.lines() as u64);
        assert_eq!(messages(&found).last().map(String::as_str), Some("line 999"));
        // A dump takes the lines the reader has not looked at yet.
        push(&mut ring, "c2s1", "debug", "taken");
        drop(ring.take());
        push(&mut ring, "c2s1", "debug", "after the dump");
        let (found, looked) = look_all(&mut cursor, &ring, &filter);
        assert_eq!((messages(&found), looked.skipped), (vec!["after the dump".to_string()], 1));
    }

    #[test]
    fn looks_in_bounded_steps() {
        let mut ring = Ring::new(Limit::Lines(100));
        let filter = Filter::default();
        let (mut cursor, _) = Cursor::after_backlog(&ring, &filter, 10, || false).expect("done");
        for i in 0..7 {
            push(&mut ring, "c2s1", "debug", &format!("line {i}"));
        }
        let mut found = Vec::new();
        assert!(cursor.look(&ring, &filter, 3, |l| found.push(l)).more);
        assert!(cursor.look(&ring, &filter, 3, |l| found.push(l)).more);
        assert!(!cursor.look(&ring, &filter, 3, |l| found.push(l)).more);
        assert_eq!(messages(&found), (0..7).map(|i| format!("line {i}")).collect::<Vec<_>>());
    }

    #[test]
    fn a_stopped_backlog_scan_gives_nothing() {
        let mut ring = Ring::new(Limit::Lines(100_000));
        for i in 0..10_000 {
            push(&mut ring, "c2s1", "debug", &format!("line {i}"));
        }
        assert!(Cursor::after_backlog(&ring, &Filter::default(), 10, || true).is_none());
    }

    #[test]
    fn the_outbox_is_bounded_counts_what_did_not_fit_and_gives_batches() {
        let mut outbox = Outbox::new(10);
        assert!(outbox.take(5, 100).is_none());
        for line in ["aaaa\n", "bbbb\n", "cccc\n"] {
            outbox.offer(line.as_bytes().to_vec());
        }
        assert_eq!(outbox.bytes(), 10);
        outbox.skip(4);
        let batch = outbox.take(1, 100).expect("a batch");
        assert_eq!(batch, Batch { text: b"aaaa".to_vec(), lines: 1, skipped: 5 });
        outbox.offer(b"dd\n".to_vec());
        let batch = outbox.take(5, 100).expect("a batch");
        assert_eq!(batch, Batch { text: b"bbbb\ndd".to_vec(), lines: 2, skipped: 0 });
        assert!(outbox.is_empty());
        // A batch's bytes are bounded, but it always carries one line.
        for line in ["eeee\n", "ffff\n"] {
            outbox.offer(line.as_bytes().to_vec());
        }
        assert_eq!(outbox.take(5, 2).expect("a batch").lines, 1);
        assert_eq!(outbox.take(5, 2).expect("a batch").lines, 1);
        assert_eq!(outbox.bytes(), 0);
    }
}
