//! Following a ring (`ringbuffer:follow`): which of the lines stored since a reader last looked
//! pass its filter, and the bounded outbox they wait in until the shell takes them.
//!
//! Lines are numbered by the ring's count of lines stored, so a reader needs no hook on the
//! per-line path: it remembers the number of the next line it wants and, on its next look at
//! a snapshot, starts there. Lines the ring dropped (or a dump took) before the reader looked,
//! and matching lines beyond the outbox's bound while the shell did not take them, are not
//! kept but counted, for the shell's "lines skipped" notice.
//!
//! Neither allocates once it has run a while: a follower's thread, at the lowest priority,
//! must rarely take its allocator arena's lock, since Prosody's main thread then waits for it
//! (measured: a malloc per matching line stalled the main loop hundreds of times a second).

use std::collections::VecDeque;

use super::query::{self, Filter};
use super::ring::Ring;

/// Where a reader is: the number of the next line it has not looked at, and where that line's
/// record lies in the snapshot it looked at last, so that a look that goes on in the same
/// lines finds it without walking every line before it (see [`Cursor::look`]); and a buffer
/// for a line that spans two chunks, kept from one look to the next.
#[derive(Debug, Clone)]
pub struct Cursor {
    next: u64,
    place: Option<Place>,
    joined: Vec<u8>,
}

/// Line `next` begins `at` bytes after line `first`, the oldest held, in a ring of `rebuilds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    first: u64,
    at: usize,
    rebuilds: u64,
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
        Some((Cursor { next: ring.stored(), place: None, joined: Vec::new() }, found.lines))
    }

    /// Looks at up to `max_lines` lines of `ring` (a snapshot) from the cursor on, giving each
    /// that passes to `passed`, and moves the cursor after them. The cursor's line is found
    /// at once in a snapshot that begins with it ([`Ring::snapshot_since`] the last one's
    /// mark) or holds the same lines as the last one (the next step of a bounded look), else
    /// by walking the lines before it.
    pub fn look(&mut self, ring: &Ring, filter: &Filter, max_lines: usize, mut passed: impl FnMut(&[u8])) -> Looked {
        let stored = ring.stored();
        let first = stored - ring.lines() as u64;
        // (A ring never counts fewer lines stored than before; kept safe all the same.)
        self.next = self.next.min(stored);
        let skipped = first.saturating_sub(self.next);
        self.next = self.next.max(first);
        let index = (self.next - first) as usize;
        let known = self.place.filter(|place| place.first == first && place.rebuilds == ring.rebuilds());
        let mut at =
            known.map_or_else(|| ring.iter().take(index).map(|line| line.record_len()).sum(), |place| place.at);
        let Some(lines) = ring.iter_at(index, at) else {
            // (Not reached: a place lies within the lines held.)
            self.place = None;
            return Looked { skipped, lines: 0, more: false };
        };
        let mut looked = 0;
        for line in lines.take(max_lines) {
            let bytes = query::contiguous(&line, &mut self.joined);
            if filter.passes(bytes, usize::from(line.meta.source_at), line.meta.time) {
                passed(bytes);
            }
            at += line.record_len();
            looked += 1;
        }
        self.next += looked as u64;
        self.place = Some(Place { first, at, rebuilds: ring.rebuilds() });
        Looked { skipped, lines: looked, more: self.next < stored }
    }
}

/// Matching lines waiting for the shell, joined into batches as they come (so that the shell's
/// side takes one buffer a batch), at most `max_bytes` of them, and the count of those that did
/// not fit or were gone before they were looked at.
#[derive(Debug)]
pub struct Outbox {
    batches: VecDeque<Batch>,
    /// Buffers of batches the shell is done with, for the next ones (at most [`SPARE`]).
    spare: Vec<Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
    batch_lines: usize,
    batch_bytes: usize,
    skipped: u64,
    head: &'static [u8],
    tail: &'static [u8],
}

/// How many buffers of taken batches an outbox keeps for new ones: the shell gives each back
/// as soon as it has sent it, so a few go round.
const SPARE: usize = 8;

/// Lines for the shell: joined by newlines (without the last one's), between the outbox's head
/// and tail if it has them (see [`Outbox::framed`]), how many, and how many were skipped
/// before them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub text: Vec<u8>,
    pub lines: usize,
    pub skipped: u64,
}

impl Outbox {
    /// An outbox of at most `max_bytes`, whose batches hold up to `batch_lines` lines and
    /// `batch_bytes` (or one longer line).
    pub fn new(max_bytes: usize, batch_lines: usize, batch_bytes: usize) -> Self {
        Outbox {
            batches: VecDeque::new(),
            spare: Vec::with_capacity(SPARE),
            bytes: 0,
            max_bytes,
            batch_lines,
            batch_bytes,
            skipped: 0,
            head: b"",
            tail: b"",
        }
    }

    /// The same, whose batches (with lines) begin with `head` and end with `tail`: the bytes
    /// that make a batch a message of the shell's protocol, so that its side sends them as
    /// they are. Neither counts in the bounds.
    pub fn framed(self, head: &'static [u8], tail: &'static [u8]) -> Self {
        Outbox { head, tail, ..self }
    }

    /// Keeps `line` (whole, with its newline) if it fits, else counts it skipped.
    pub fn offer(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if self.bytes + line.len() + 1 > self.max_bytes {
            self.skipped += 1;
            return;
        }
        self.bytes += line.len() + 1;
        let (lines, bytes, head) = (self.batch_lines, self.batch_bytes, self.head);
        let open = match self.batches.back_mut() {
            Some(last) if last.lines < lines && last.text.len() - head.len() + 1 + line.len() <= bytes => last,
            _ => {
                let room = head.len() + bytes.min(line.len().max(256)) + self.tail.len();
                let mut text = self.spare.pop().unwrap_or_default();
                text.reserve(room);
                text.extend_from_slice(head);
                self.batches.push_back(Batch { text, ..Batch::default() });
                self.batches.back_mut().expect("just pushed")
            }
        };
        if open.lines > 0 {
            open.text.push(b'\n');
        }
        open.text.extend_from_slice(line);
        // Room for the tail now: `take` runs on the shell's side, which should not reallocate.
        open.text.reserve(self.tail.len());
        open.lines += 1;
    }

    /// Keeps the buffer of a taken batch for a new one (dropped if enough are kept).
    pub fn recycle(&mut self, mut text: Vec<u8>) {
        if self.spare.len() < SPARE {
            text.clear();
            self.spare.push(text);
        }
    }

    pub fn skip(&mut self, lines: u64) {
        self.skipped += lines;
    }

    /// Bytes of lines it can still take (a newline each).
    pub fn room(&self) -> usize {
        self.max_bytes - self.bytes
    }

    /// Whether there is anything to tell the shell.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.skipped == 0
    }

    /// Lines skipped and not yet told.
    #[cfg(test)]
    pub fn skipped_so_far(&self) -> u64 {
        self.skipped
    }

    /// Bytes of the lines held (a newline each).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest batch, with the skipped count (then reset); `None` if there is nothing to tell.
    pub fn take(&mut self) -> Option<Batch> {
        if self.is_empty() {
            return None;
        }
        let mut batch = self.batches.pop_front().unwrap_or_default();
        if batch.lines > 0 {
            self.bytes -= batch.text.len() - self.head.len() + 1;
            batch.text.extend_from_slice(self.tail);
        }
        batch.skipped = std::mem::take(&mut self.skipped);
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
        let looked = cursor.look(ring, filter, usize::MAX, |line| found.push(line.to_vec()));
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
        assert!(cursor.look(&ring, &filter, 3, |l| found.push(l.to_vec())).more);
        assert!(cursor.look(&ring, &filter, 3, |l| found.push(l.to_vec())).more);
        assert!(!cursor.look(&ring, &filter, 3, |l| found.push(l.to_vec())).more);
        assert_eq!(messages(&found), (0..7).map(|i| format!("line {i}")).collect::<Vec<_>>());
    }

    #[test]
    fn following_snapshots_since_marks_in_bounded_steps_sees_what_a_walk_would() {
        // Lines of many lengths through a small ring that evicts, a dump that takes them all,
        // and looks of a few lines a step at snapshots since the last one's mark (as a
        // follower does): the lines seen are those a reader of whole snapshots sees.
        let mut ring = Ring::new(Limit::Bytes(4096));
        let filter = Filter::default();
        let (mut fast, _) = Cursor::after_backlog(&ring, &filter, 0, || false).expect("done");
        let mut slow = fast.clone();
        let (mut seen_fast, mut seen_slow) = (Vec::new(), Vec::new());
        let (mut skipped_fast, mut skipped_slow) = (0, 0);
        let mut mark = ring.mark();
        for round in 0..300 {
            for i in 0..(round % 7) * 3 {
                push(&mut ring, "c2s1", "debug", &format!("{round}.{i} {}", "x".repeat((round * 13 + i * 7) % 90)));
            }
            if round == 150 {
                drop(ring.take());
            }
            let since = ring.snapshot_since(mark);
            mark = since.mark();
            let max = 1 + round % 5;
            while {
                let looked = fast.look(&since, &filter, max, |l| seen_fast.push(l.to_vec()));
                skipped_fast += looked.skipped;
                looked.more
            } {}
            skipped_slow += slow.look(&ring.snapshot(), &filter, usize::MAX, |l| seen_slow.push(l.to_vec())).skipped;
        }
        assert_eq!(messages(&seen_fast), messages(&seen_slow));
        assert_eq!(skipped_fast, skipped_slow);
        assert!(seen_fast.len() > 300 && skipped_fast > 0, "{} seen, {skipped_fast} skipped", seen_fast.len());
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
        let mut outbox = Outbox::new(15, 2, 100);
        assert!(outbox.take().is_none());
        for line in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n"] {
            outbox.offer(line.as_bytes());
        }
        assert_eq!(outbox.bytes(), 15, "three lines fit");
        outbox.skip(4);
        assert_eq!(outbox.take(), Some(Batch { text: b"aaaa\nbbbb".to_vec(), lines: 2, skipped: 5 }));
        outbox.offer(b"ee\n");
        assert_eq!(outbox.take(), Some(Batch { text: b"cccc\nee".to_vec(), lines: 2, skipped: 0 }));
        assert!(outbox.is_empty() && outbox.bytes() == 0);
        // A batch's bytes are bounded, but it always carries one line.
        let mut outbox = Outbox::new(100, 10, 6);
        for line in ["ffff\n", "gg\n", "a much longer line\n"] {
            outbox.offer(line.as_bytes());
        }
        assert_eq!(outbox.take().map(|b| b.lines), Some(1));
        assert_eq!(outbox.take().map(|b| b.lines), Some(1));
        assert_eq!(outbox.take().map(|b| b.text), Some(b"a much longer line".to_vec()));
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn the_outbox_makes_new_batches_in_the_buffers_given_back() {
        let mut outbox = Outbox::new(1000, 2, 100).framed(b"<o>", b"</o>");
        outbox.offer(b"aaa\n");
        let taken = outbox.take().expect("a batch").text;
        let (buffer, capacity) = (taken.as_ptr(), taken.capacity());
        outbox.recycle(taken);
        outbox.offer(b"bbb\n");
        outbox.offer(b"ccc\n");
        let batch = outbox.take().expect("a batch");
        assert_eq!(batch.text, b"<o>bbb\nccc</o>");
        assert_eq!((batch.text.as_ptr(), batch.text.capacity()), (buffer, capacity), "the same buffer, not grown");
        // Only a few are kept.
        for _ in 0..SPARE + 5 {
            outbox.recycle(Vec::with_capacity(10));
        }
        assert_eq!(outbox.spare.len(), SPARE);
    }

    #[test]
    fn a_framed_outbox_puts_each_batch_between_its_head_and_tail() {
        // Bounds as unframed: two lines a batch, 10 bytes, 12 held.
        let mut outbox = Outbox::new(12, 2, 10).framed(b"<o>", b"</o>");
        for line in ["aaa\n", "bbb\n", "ccc\n", "ddd\n"] {
            outbox.offer(line.as_bytes());
        }
        assert_eq!(outbox.bytes(), 12, "three lines fit");
        assert_eq!(outbox.take(), Some(Batch { text: b"<o>aaa\nbbb</o>".to_vec(), lines: 2, skipped: 1 }));
        assert_eq!(outbox.bytes(), 4);
        outbox.offer(b"eeeeeee\n");
        assert_eq!(outbox.take().map(|b| b.text), Some(b"<o>ccc</o>".to_vec()), "7 more bytes did not fit in 10");
        assert_eq!(outbox.take().map(|b| b.text), Some(b"<o>eeeeeee</o>".to_vec()));
        assert_eq!(outbox.bytes(), 0);
        // Only a count to tell: no frame.
        outbox.skip(3);
        assert_eq!(outbox.take(), Some(Batch { text: Vec::new(), lines: 0, skipped: 3 }));
    }
}
