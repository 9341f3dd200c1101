//! The ring: the newest whole log lines, bounded by bytes (`size`) or by count (`lines`).
//!
//! Lines are packed back to back into fixed-size chunks, each prefixed by its length, the unix
//! time it was logged at (4 bytes each) and where its source begins (2 bytes, after the
//! timestamp), which the admin shell's filters read.
//! Eviction always drops whole lines from the front, so a dump never starts with a torn line.
//! Chunks are allocated as lines arrive and one emptied chunk is kept for reuse, so a full
//! ring logs without allocating. Only the last chunk is ever written ("open"); the full ones
//! before it are sealed and shared, so that [`Ring::snapshot`] copies one chunk and counts
//! references to the rest: a reader can take its time over a copy of a 64 MiB ring while the
//! ring is locked for microseconds. A reader that comes back for the lines stored since
//! ([`Ring::snapshot_since`] a [`Mark`]) shares only the chunks they lie in.
//!
//! Eviction is done in batches: the oldest lines stay stored until they are a chunk's worth
//! (or 1/32 of `lines`) past the limit, and every reader ([`Ring::iter`], [`Ring::lines`],
//! [`Ring::text_bytes`], [`Ring::take`]) leaves them out, so the contents are always exactly the
//! newest lines within the limit. Reading the oldest line's length for every new line would
//! touch memory a whole ring away on the per-line path. Memory stays within the limit plus
//! three chunks.

use std::collections::VecDeque;
use std::sync::Arc;

const CHUNK: usize = 16 * 1024;
/// Per line: its length and the second it was logged (u32), then where its source begins
/// (u16), little endian.
const HEADER: usize = 10;

/// What a line's header keeps besides its length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// The unix time (seconds) the line was logged at.
    pub time: u32,
    /// Bytes of timestamp before the line's source ([`Meta::NO_SOURCE`]: not known).
    pub source_at: u16,
}

impl Meta {
    /// `source_at` of a line whose start was cut off (or whose timestamp is absurdly long).
    pub const NO_SOURCE: u16 = u16::MAX;
}

impl From<u32> for Meta {
    fn from(time: u32) -> Self {
        Meta { time, source_at: 0 }
    }
}

/// Where a ring's stored lines ended when [`Ring::mark`] was taken: its count of lines stored,
/// its bytes written (chunks released and bytes since), and its rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    stored: u64,
    end: u64,
    rebuilds: u64,
}

/// What bounds the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Stored bytes, counting 10 bytes of bookkeeping per line.
    Bytes(usize),
    /// The newest N lines.
    Lines(usize),
}

/// The smallest `size` accepted: room for a header and a few bytes of text.
pub const MIN_SIZE: usize = 64;

#[derive(Debug)]
pub struct Ring {
    limit: Limit,
    /// The full chunks, oldest first; shared with snapshots.
    sealed: VecDeque<Arc<Box<[u8]>>>,
    /// The chunk after them, where lines are written.
    open: Option<Box<[u8]>>,
    /// Offset of the first stored byte in the first chunk.
    head: usize,
    /// Stored bytes, headers included.
    used: usize,
    lines: usize,
    spare: Option<Box<[u8]>>,
    /// Lines dropped from the front so far (the limit, or [`Ring::clear`]).
    evicted: u64,
    /// Lines stored so far (lines given back by [`Ring::insert`] not counted again).
    stored: u64,
    /// How often the lines were moved out or rebuilt ([`Ring::take`], [`Ring::insert`]): a
    /// reader's byte positions from before are void.
    rebuilds: u64,
    /// Chunks released from the front so far: the first chunk begins `released * CHUNK` bytes
    /// into everything written (see [`Mark`]).
    released: u64,
    /// When the newest line was logged.
    newest: u32,
}

impl Ring {
    pub fn new(limit: Limit) -> Self {
        Ring {
            limit,
            sealed: VecDeque::new(),
            open: None,
            head: 0,
            used: 0,
            lines: 0,
            spare: None,
            evicted: 0,
            stored: 0,
            rebuilds: 0,
            released: 0,
            newest: 0,
        }
    }

    /// A copy of the lines held, made without copying more than one chunk: the full chunks are
    /// shared until the copy is dropped (chunks the ring frees meanwhile stay allocated till then).
    pub fn snapshot(&self) -> Ring {
        Ring { sealed: self.sealed.clone(), open: self.open.clone(), spare: None, ..*self }
    }

    /// Where the stored lines end now: what [`Ring::snapshot_since`] starts from.
    pub fn mark(&self) -> Mark {
        Mark { stored: self.stored, end: self.position(self.used), rebuilds: self.rebuilds }
    }

    /// A snapshot of the lines stored since `mark` (taken of this ring), sharing only the chunks
    /// they lie in: as cheap for a 64 MiB ring as for a small one. Where some of them are gone
    /// (or the ring was rebuilt since), it holds every line there is.
    pub fn snapshot_since(&self, mark: Mark) -> Ring {
        let (excess, _) = self.excess();
        let first = self.stored - (self.lines - excess) as u64;
        // Line `first` is held, so no line since the mark was dropped, and nothing cleared the
        // ring (whose positions then jump to a new chunk).
        if mark.rebuilds != self.rebuilds || mark.stored <= first || mark.stored > self.stored {
            return self.snapshot();
        }
        let Some(skipped) = mark.end.checked_sub(self.position(0)).and_then(|n| usize::try_from(n).ok()) else {
            return self.snapshot();
        };
        let (chunk, head) = ((self.head + skipped) / CHUNK, (self.head + skipped) % CHUNK);
        let lines = (self.stored - mark.stored) as usize;
        Ring {
            sealed: self.sealed.iter().skip(chunk).cloned().collect(),
            open: self.open.clone(),
            spare: None,
            head,
            used: self.used - skipped,
            lines,
            evicted: self.evicted + (self.lines - lines) as u64,
            released: self.released + chunk as u64,
            ..*self
        }
    }

    /// Where the byte `offset` bytes after the head lies in everything written to this ring.
    fn position(&self, offset: usize) -> u64 {
        self.released * CHUNK as u64 + (self.head + offset) as u64
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Lines stored since the ring was made.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// See `rebuilds` (a follower's positions hold while this stays the same).
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// The lines from the `index`-th held one on, given that its record begins `at` bytes
    /// after the oldest held line's (the sum of the [`Line::record_len`] of the lines before
    /// it); `None` if that lies beyond the lines held.
    pub fn iter_at(&self, index: usize, at: usize) -> Option<Lines<'_>> {
        let (lines, bytes) = self.excess();
        let held = self.lines - lines;
        (index <= held && bytes + at <= self.used).then_some(Lines {
            ring: self,
            offset: bytes + at,
            remaining: held - index,
        })
    }

    /// When the newest line held was logged.
    pub fn newest_time(&self) -> Option<u32> {
        (!self.is_empty()).then_some(self.newest)
    }

    fn chunk_count(&self) -> usize {
        self.sealed.len() + usize::from(self.open.is_some())
    }

    /// Chunk `index`: a sealed one, or the open one after them.
    fn chunk(&self, index: usize) -> &[u8] {
        match self.sealed.get(index) {
            Some(chunk) => chunk,
            None => self.open.as_deref().unwrap_or(&[]),
        }
    }

    /// The lines held.
    pub fn lines(&self) -> usize {
        self.lines - self.excess().0
    }

    /// Bytes of line text held (without bookkeeping).
    pub fn text_bytes(&self) -> usize {
        let (lines, bytes) = self.excess();
        (self.used - bytes) - (self.lines - lines) * HEADER
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Stores one line, evicting the oldest whole lines as needed. A line larger than a `Bytes`
    /// ring keeps its last bytes.
    #[inline]
    pub fn push(&mut self, line: &[u8], meta: impl Into<Meta>) {
        let meta = meta.into();
        let len = line.len().min(u32::MAX as usize);
        let line = &line[..len];
        if let Limit::Bytes(size) = self.limit {
            if HEADER + len > size {
                return self.push_tail_of(line, size, meta);
            }
        }
        // The usual case: the record fits in the open chunk, where the stored bytes end.
        let in_place = self.write_in_place(meta, |room| {
            room.get_mut(..len)?.copy_from_slice(line);
            Some(len)
        });
        if !in_place {
            self.append(&header(len, meta));
            self.append(line);
            self.stored_one(meta);
        }
    }

    /// Lets `write` put a line straight into the free bytes at the end of the open chunk (empty
    /// when a new chunk would be needed), and stores it if `write` returns its length. False
    /// (nothing stored) if `write` declined, or for a line the limit says must be cut: use
    /// [`Ring::push`] then.
    #[inline]
    pub fn write_in_place(&mut self, meta: impl Into<Meta>, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        let offset = (self.head + self.used) % CHUNK;
        let (room, header) = match self.open.as_deref_mut() {
            Some(chunk) if offset != 0 && offset + HEADER < CHUNK => {
                let (header, room) = chunk[offset..].split_at_mut(HEADER);
                (room, Some(header))
            }
            _ => (&mut [][..], None),
        };
        let fits = |len: usize| match self.limit {
            Limit::Bytes(size) => HEADER + len <= size,
            Limit::Lines(_) => true,
        };
        let room_len = room.len();
        let Some(len) = write(room) else { return false };
        let Some(header) = header else { return false };
        if len > room_len || !fits(len) {
            return false;
        }
        let meta = meta.into();
        header.copy_from_slice(&self::header(len, meta));
        self.used += HEADER + len;
        self.stored_one(meta);
        true
    }

    #[inline]
    fn stored_one(&mut self, meta: Meta) {
        self.lines += 1;
        self.stored += 1;
        self.newest = meta.time;
        self.evict_in_batches();
    }

    /// Whether the oldest line is beyond the limit, given the lines and bytes left out so far.
    #[inline]
    fn over_limit(&self, lines_out: usize, bytes_out: usize) -> bool {
        match self.limit {
            Limit::Bytes(size) => self.used - bytes_out > size,
            Limit::Lines(max) => self.lines - lines_out > max,
        }
    }

    /// Evicts once the lines beyond the limit are a batch's worth (see the module doc).
    #[inline]
    fn evict_in_batches(&mut self) {
        let far_over = match self.limit {
            Limit::Bytes(size) => self.used > size + CHUNK,
            Limit::Lines(max) => self.lines > max + max / 32,
        };
        if far_over {
            self.evict();
        }
    }

    /// Drops every line beyond the limit. The newest line always fits, so one stays.
    fn evict(&mut self) {
        while self.over_limit(0, 0) {
            self.pop_front();
        }
    }

    /// The (lines, bytes with headers) at the front that are beyond the limit, still stored.
    fn excess(&self) -> (usize, usize) {
        let (mut lines, mut bytes) = (0, 0);
        while self.over_limit(lines, bytes) {
            bytes += HEADER + self.line_len_at(bytes);
            lines += 1;
        }
        (lines, bytes)
    }

    /// A line longer than the whole `Bytes` ring: it replaces everything, keeping its end.
    #[cold]
    fn push_tail_of(&mut self, line: &[u8], size: usize, meta: Meta) {
        self.clear();
        let meta = Meta { source_at: Meta::NO_SOURCE, ..meta };
        self.push(&line[line.len() - (size - HEADER)..], meta);
    }

    /// Moves every line out, leaving this ring empty with the same limit.
    pub fn take(&mut self) -> Ring {
        self.evict();
        self.rebuilds += 1;
        let mut taken = Ring::new(self.limit);
        std::mem::swap(&mut taken.sealed, &mut self.sealed);
        std::mem::swap(&mut taken.open, &mut self.open);
        taken.newest = self.newest;
        taken.head = std::mem::take(&mut self.head);
        taken.used = std::mem::take(&mut self.used);
        taken.lines = std::mem::take(&mut self.lines);
        taken
    }

    /// Puts `batch` back after the first `position` lines (a dump that failed), then applies
    /// the limit, so the newest lines win.
    pub fn insert(&mut self, position: usize, batch: &Ring) {
        let (stored, newest) = (self.stored, self.newest);
        let current = self.take();
        let mut lines = current.iter();
        for line in lines.by_ref().take(position).chain(batch.iter()) {
            self.push(&line.to_vec(), line.meta);
        }
        for line in lines {
            self.push(&line.to_vec(), line.meta);
        }
        (self.stored, self.newest) = (stored, newest.max(batch.newest));
        self.rebuilds += 1;
    }

    /// Lines dropped from the front since the ring was made, to respect the limit.
    pub fn dropped(&self) -> u64 {
        self.evicted + self.excess().0 as u64
    }

    pub fn clear(&mut self) {
        while !self.is_empty() {
            self.pop_front();
        }
    }

    /// The lines, oldest first.
    pub fn iter(&self) -> Lines<'_> {
        let (lines, bytes) = self.excess();
        Lines { ring: self, offset: bytes, remaining: self.lines - lines }
    }

    fn append(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let end = self.head + self.used;
            let offset = end % CHUNK;
            if end / CHUNK == self.chunk_count() {
                self.open_new_chunk();
            }
            // The stored bytes always end in the open chunk.
            let Some(open) = self.open.as_deref_mut() else { return };
            let n = bytes.len().min(CHUNK - offset);
            open[offset..offset + n].copy_from_slice(&bytes[..n]);
            self.used += n;
            bytes = &bytes[n..];
        }
    }

    /// Seals the open chunk and opens a new one after it.
    #[cold]
    fn open_new_chunk(&mut self) {
        let chunk = self.spare.take().unwrap_or_else(|| vec![0u8; CHUNK].into_boxed_slice());
        if let Some(full) = self.open.replace(chunk) {
            self.sealed.push_back(Arc::new(full));
        }
    }

    /// Reads `buf.len()` bytes starting `offset` bytes after the head.
    fn read_at(&self, offset: usize, buf: &mut [u8]) {
        let mut pos = self.head + offset;
        let mut done = 0;
        while done < buf.len() {
            let (index, at) = (pos / CHUNK, pos % CHUNK);
            let n = (buf.len() - done).min(CHUNK - at);
            buf[done..done + n].copy_from_slice(&self.chunk(index)[at..at + n]);
            done += n;
            pos += n;
        }
    }

    fn line_len_at(&self, offset: usize) -> usize {
        self.header_at(offset).0 as usize
    }

    /// The length and meta of the line whose header starts `offset` bytes after the head.
    fn header_at(&self, offset: usize) -> (u32, Meta) {
        let mut header = [0u8; HEADER];
        let pos = self.head + offset;
        let (index, at) = (pos / CHUNK, pos % CHUNK);
        match self.chunk(index).get(at..at + HEADER) {
            Some(bytes) => header.copy_from_slice(bytes),
            None => self.read_at(offset, &mut header),
        }
        let [a, b, c, d, e, f, g, h, i, j] = header;
        let meta = Meta { time: u32::from_le_bytes([e, f, g, h]), source_at: u16::from_le_bytes([i, j]) };
        (u32::from_le_bytes([a, b, c, d]), meta)
    }

    /// Drops the lines logged before `time` from the front (lines are stored in the order they
    /// were logged); returns how many.
    pub fn drop_older_than(&mut self, time: u32) -> usize {
        self.evict();
        let mut dropped = 0;
        while self.lines > 0 && self.header_at(0).1.time < time {
            self.pop_front();
            dropped += 1;
        }
        dropped
    }

    #[inline]
    fn pop_front(&mut self) {
        if self.lines == 0 {
            return;
        }
        // The head is always inside the first chunk.
        let len = match self.chunk(0).get(self.head..self.head + HEADER) {
            Some(bytes) => u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize,
            None => self.line_len_at(0),
        };
        let total = HEADER + len;
        self.evicted += 1;
        self.head += total;
        self.used -= total;
        self.lines -= 1;
        if self.head >= CHUNK || self.used == 0 {
            self.release_front_chunks();
        }
    }

    /// Recycles the chunks the head has moved past.
    #[cold]
    fn release_front_chunks(&mut self) {
        while self.head >= CHUNK || (self.used == 0 && self.chunk_count() > 0) {
            // A sealed chunk a snapshot still shares is left to it.
            let freed = match self.sealed.pop_front() {
                Some(sealed) => Arc::try_unwrap(sealed).ok(),
                None => self.open.take(),
            };
            if freed.is_some() {
                self.spare = freed;
            }
            self.released += 1;
            self.head = self.head.saturating_sub(CHUNK);
        }
        if self.used == 0 {
            self.head = 0;
        }
    }
}

/// A line's header: its length and meta.
#[inline(always)]
fn header(len: usize, meta: Meta) -> [u8; HEADER] {
    let [a, b, c, d] = (len as u32).to_le_bytes();
    let [e, f, g, h] = meta.time.to_le_bytes();
    let [i, j] = meta.source_at.to_le_bytes();
    [a, b, c, d, e, f, g, h, i, j]
}

/// Iterator over the stored lines; each item is one or two slices (a line may span chunks).
pub struct Lines<'a> {
    ring: &'a Ring,
    offset: usize,
    remaining: usize,
}

/// A stored line: its bytes, in at most a few contiguous pieces.
#[derive(Clone, Copy)]
pub struct Line<'a> {
    ring: &'a Ring,
    start: usize,
    len: usize,
    pub meta: Meta,
}

impl<'a> Line<'a> {
    /// The contiguous pieces of this line, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let ring = self.ring;
        let mut pos = ring.head + self.start;
        let mut left = self.len;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let (index, at) = (pos / CHUNK, pos % CHUNK);
            let n = left.min(CHUNK - at);
            pos += n;
            left -= n;
            Some(&ring.chunk(index)[at..at + n])
        })
    }

    /// The bytes its record takes in the ring (its text and header).
    pub fn record_len(&self) -> usize {
        HEADER + self.len
    }

    pub fn to_vec(self) -> Vec<u8> {
        self.pieces().flat_map(|p| p.iter().copied()).collect()
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let (len, meta) = self.ring.header_at(self.offset);
        let len = len as usize;
        let line = Line { ring: self.ring, start: self.offset + HEADER, len, meta };
        self.offset += HEADER + len;
        self.remaining -= 1;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(ring: &Ring) -> Vec<String> {
        ring.iter().map(|l| String::from_utf8(l.to_vec()).expect("utf8")).collect()
    }

    #[test]
    fn keeps_newest_whole_lines_within_size() {
        let mut ring = Ring::new(Limit::Bytes(64));
        for i in 0..100 {
            ring.push(format!("line number {i:03}\n").as_bytes(), 0);
        }
        let lines = contents(&ring);
        assert_eq!(lines.last().map(String::as_str), Some("line number 099\n"));
        assert!(lines.iter().all(|l| l.starts_with("line number ")));
        // 16 bytes + 10 of header each: two lines fit in 64.
        assert_eq!(lines.len(), 2);
        assert_eq!((ring.lines(), ring.text_bytes()), (2, 32));
        // Stored but left out until a batch is due: a chunk's worth at most.
        assert!(ring.used <= 64 + CHUNK + 20);
    }

    #[test]
    fn lines_keep_their_time_and_old_ones_can_be_dropped() {
        let mut ring = Ring::new(Limit::Lines(10));
        for (text, time) in [("a\n", 100), ("b\n", 200), ("c\n", 300)] {
            ring.push(text.as_bytes(), time);
        }
        assert_eq!(ring.iter().map(|l| l.meta.time).collect::<Vec<_>>(), [100, 200, 300]);
        assert_eq!(ring.drop_older_than(250), 2);
        assert_eq!(contents(&ring), ["c\n"]);
        assert_eq!(ring.dropped(), 2);
        let mut other = Ring::new(Limit::Lines(10));
        other.push(b"z\n", 50);
        ring.insert(0, &other);
        assert_eq!(ring.iter().map(|l| l.meta.time).collect::<Vec<_>>(), [50, 300], "kept through a give-back");
    }

    #[test]
    fn lines_mode_keeps_exactly_n() {
        let mut ring = Ring::new(Limit::Lines(5));
        for i in 0..1000 {
            ring.push(format!("{i}\n").as_bytes(), 0);
        }
        assert_eq!(contents(&ring), vec!["995\n", "996\n", "997\n", "998\n", "999\n"]);
    }

    #[test]
    fn oversized_line_keeps_its_tail() {
        let mut ring = Ring::new(Limit::Bytes(64));
        ring.push(b"short\n", 0);
        let long: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
        ring.push(&long, 0);
        assert_eq!(contents(&ring), vec![String::from_utf8(long[long.len() - 54..].to_vec()).expect("utf8")]);
        ring.push(b"next\n", 0);
        assert_eq!(contents(&ring), vec!["next\n"]);
    }

    #[test]
    fn lines_span_chunks() {
        let mut ring = Ring::new(Limit::Bytes(5 * CHUNK));
        let line = vec![b'x'; CHUNK / 3 + 7];
        for _ in 0..100 {
            ring.push(&line, 0);
        }
        assert!(ring.iter().all(|l| l.to_vec() == line));
        assert!(ring.chunk_count() <= 7);
        assert!(ring.iter().any(|l| l.pieces().count() == 2));
    }

    #[test]
    fn lines_written_in_place_are_stored_and_evict_like_pushed_ones() {
        let mut ring = Ring::new(Limit::Bytes(64));
        assert!(!ring.write_in_place(0, |room| room.is_empty().then_some(0)), "no chunk yet");
        ring.push(b"first line\n", 0);
        for i in 0..20 {
            let text = format!("in place {i:02}\n");
            assert!(ring.write_in_place(0, |room| {
                room[..text.len()].copy_from_slice(text.as_bytes());
                Some(text.len())
            }));
        }
        // 12 bytes and a 10-byte header each: two fit in 64.
        assert_eq!(contents(&ring), vec!["in place 18\n", "in place 19\n"]);
        // Too long for the limit: refused, for push to cut; declined: nothing stored.
        assert!(!ring.write_in_place(0, |_| Some(55)));
        assert!(!ring.write_in_place(0, |_| None));
        assert_eq!(ring.lines(), 2);
    }

    #[test]
    fn take_and_insert_keep_order_and_limit() {
        let mut ring = Ring::new(Limit::Lines(4));
        for s in ["a", "b", "c"] {
            ring.push(s.as_bytes(), 0);
        }
        let taken = ring.take();
        assert!(ring.is_empty());
        ring.push(b"d", 0);
        ring.push(b"e", 0);
        ring.insert(0, &taken);
        assert_eq!(contents(&ring), vec!["b", "c", "d", "e"]);
    }

    #[test]
    fn a_snapshot_stays_as_it_was_while_the_ring_moves_on() {
        let mut ring = Ring::new(Limit::Bytes(4 * CHUNK));
        let line = |i: u32| format!("{i:>60}\n");
        for i in 0..2000 {
            ring.push(line(i).as_bytes(), i);
        }
        let before = contents(&ring);
        let snapshot = ring.snapshot();
        for i in 2000..10_000 {
            ring.push(line(i).as_bytes(), Meta { time: i, source_at: 3 });
        }
        assert_eq!(contents(&snapshot), before);
        assert_eq!(snapshot.newest_time(), Some(1999));
        let now = contents(&ring);
        assert_eq!(now.last(), Some(&line(9999)));
        assert!(now.iter().zip(now.iter().skip(1)).all(|(a, b)| a.trim() < b.trim() || a.len() < b.len()));
        assert_eq!((ring.stored(), ring.newest_time()), (10_000, Some(9999)));
        assert!(ring.iter().all(|l| l.meta.source_at == 3));
        assert!(ring.chunk_count() <= 6, "chunks the snapshot shares are not counted as the ring's");
    }

    #[test]
    fn a_snapshot_since_a_mark_holds_the_lines_stored_since_and_only_their_chunks() {
        // Lines of many lengths through rings that evict (by bytes and by count), are cleared,
        // dumped and given back, with snapshots since marks taken at every step between.
        for limit in [Limit::Bytes(8 * CHUNK), Limit::Lines(500)] {
            let mut ring = Ring::new(limit);
            let mut mark = ring.mark();
            let mut expected: Vec<String> = Vec::new();
            let mut partial = 0;
            for round in 0..400u32 {
                for i in 0..(round % 11) * 7 {
                    let line = format!("{round}.{i} {}\n", "x".repeat(((round * 13 + i * 7) % 300) as usize));
                    ring.push(line.as_bytes(), round);
                    expected.push(line);
                }
                match round % 97 {
                    40 => ring.clear(),
                    60 => drop(ring.take()),
                    80 => {
                        let taken = ring.take();
                        ring.insert(0, &taken);
                    }
                    _ => {}
                }
                let since = ring.snapshot_since(mark);
                let all = contents(&ring);
                let new = all.len().min(expected.len()).min((ring.stored() - mark.stored) as usize);
                let (got, held_since) = (contents(&since), &all[all.len() - new..]);
                if got.len() == new {
                    assert_eq!(got, held_since, "round {round}");
                    partial += usize::from(new > 0 && since.sealed.len() < ring.sealed.len());
                } else {
                    // Lines since the mark were dropped, or the ring rebuilt: every line held.
                    assert_eq!(got, all, "round {round}");
                }
                assert_eq!(
                    (since.stored(), since.dropped() + since.lines() as u64),
                    (ring.stored(), ring.dropped() + ring.lines() as u64)
                );
                assert!(since.is_empty() || since.newest_time() == ring.newest_time());
                expected.clear();
                mark = ring.mark();
                assert_eq!(since.mark(), mark, "a snapshot ends where its ring does");
            }
            assert!(partial > 200, "{partial} snapshots shared fewer chunks than the ring");
        }
    }

    #[test]
    fn a_snapshot_since_a_recent_mark_shares_few_chunks() {
        let mut ring = Ring::new(Limit::Bytes(64 * CHUNK));
        let line = |i: u32| format!("{i:>200}\n");
        for i in 0..20_000 {
            ring.push(line(i).as_bytes(), i);
        }
        let mark = ring.mark();
        for i in 20_000..20_100 {
            ring.push(line(i).as_bytes(), i);
        }
        let since = ring.snapshot_since(mark);
        assert_eq!(contents(&since), (20_000..20_100).map(line).collect::<Vec<_>>());
        assert!(ring.sealed.len() > 60 && since.sealed.len() <= 2, "{} chunks shared", since.sealed.len());
        // The ring keeps recycling its chunks: the snapshot holds none it is about to free.
        for i in 20_100..40_000 {
            ring.push(line(i).as_bytes(), i);
        }
        assert_eq!(contents(&since).len(), 100);
    }

    #[test]
    fn full_ring_reuses_its_chunks() {
        let mut ring = Ring::new(Limit::Bytes(4 * CHUNK));
        for i in 0..100_000 {
            ring.push(format!("{i:>40}\n").as_bytes(), 0);
        }
        assert!(ring.chunk_count() <= 6);
        assert!(ring.used <= 5 * CHUNK + 45);
        assert!(ring.text_bytes() + ring.lines() * HEADER <= 4 * CHUNK);
        ring.clear();
        assert_eq!((ring.used, ring.lines, ring.chunk_count()), (0, 0, 0));
    }
}
