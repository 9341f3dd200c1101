//! The ring: the newest whole log lines, bounded by bytes (`size`) or by count (`lines`).
//!
//! Lines are packed back to back into fixed-size chunks, each prefixed by its length (4 bytes).
//! Eviction always drops whole lines from the front, so a dump never starts with a torn line.
//! Chunks are allocated as lines arrive and one emptied chunk is kept for reuse, so a full
//! ring logs without allocating, and memory stays within the limit plus two chunks.

use std::collections::VecDeque;

const CHUNK: usize = 16 * 1024;
const HEADER: usize = 4;

/// What bounds the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Stored bytes, counting 4 bytes of bookkeeping per line.
    Bytes(usize),
    /// The newest N lines.
    Lines(usize),
}

/// The smallest `size` accepted: room for a header and a few bytes of text.
pub const MIN_SIZE: usize = 64;

#[derive(Debug)]
pub struct Ring {
    limit: Limit,
    chunks: VecDeque<Box<[u8]>>,
    /// Offset of the first stored byte in `chunks[0]`.
    head: usize,
    /// Stored bytes, headers included.
    used: usize,
    lines: usize,
    spare: Option<Box<[u8]>>,
}

impl Ring {
    pub fn new(limit: Limit) -> Self {
        Ring { limit, chunks: VecDeque::new(), head: 0, used: 0, lines: 0, spare: None }
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Bytes of line text held (without bookkeeping).
    pub fn text_bytes(&self) -> usize {
        self.used - self.lines * HEADER
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Stores one line, evicting the oldest whole lines as needed. A line larger than a
    /// `Bytes` ring keeps its last bytes.
    pub fn push(&mut self, line: &[u8]) {
        let line = match self.limit {
            Limit::Bytes(size) if HEADER + line.len() > size => {
                self.clear();
                &line[line.len() - (size - HEADER)..]
            }
            _ => line,
        };
        if let Limit::Bytes(size) = self.limit {
            while self.used + HEADER + line.len() > size {
                self.pop_front();
            }
        }
        let len = u32::try_from(line.len()).unwrap_or(u32::MAX) as usize;
        let header = (len as u32).to_le_bytes();
        let end = self.head + self.used;
        let (index, offset) = (end / CHUNK, end % CHUNK);
        if index < self.chunks.len() && offset + HEADER + len <= CHUNK {
            // The usual case: the whole record fits in the current chunk.
            let chunk = &mut self.chunks[index];
            chunk[offset..offset + HEADER].copy_from_slice(&header);
            chunk[offset + HEADER..offset + HEADER + len].copy_from_slice(&line[..len]);
            self.used += HEADER + len;
        } else {
            self.append(&header);
            self.append(&line[..len]);
        }
        self.lines += 1;
        if let Limit::Lines(max) = self.limit {
            while self.lines > max {
                self.pop_front();
            }
        }
    }

    /// Moves every line out, leaving this ring empty with the same limit.
    pub fn take(&mut self) -> Ring {
        let mut taken = Ring::new(self.limit);
        std::mem::swap(&mut taken.chunks, &mut self.chunks);
        taken.head = std::mem::take(&mut self.head);
        taken.used = std::mem::take(&mut self.used);
        taken.lines = std::mem::take(&mut self.lines);
        taken
    }

    /// Puts `older` lines back in front of the current ones (a dump that failed), then
    /// applies the limit, so the newest lines win.
    pub fn restore(&mut self, older: Ring) {
        let newer = std::mem::replace(self, older);
        self.limit = newer.limit;
        for line in newer.iter() {
            self.push(&line.to_vec());
        }
    }

    pub fn clear(&mut self) {
        while !self.is_empty() {
            self.pop_front();
        }
    }

    /// The lines, oldest first.
    pub fn iter(&self) -> Lines<'_> {
        Lines { ring: self, offset: 0, remaining: self.lines }
    }

    fn append(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let end = self.head + self.used;
            let (index, offset) = (end / CHUNK, end % CHUNK);
            if index == self.chunks.len() {
                let chunk = self.spare.take().unwrap_or_else(|| vec![0u8; CHUNK].into_boxed_slice());
                self.chunks.push_back(chunk);
            }
            let n = bytes.len().min(CHUNK - offset);
            self.chunks[index][offset..offset + n].copy_from_slice(&bytes[..n]);
            self.used += n;
            bytes = &bytes[n..];
        }
    }

    /// Reads `buf.len()` bytes starting `offset` bytes after the head.
    fn read_at(&self, offset: usize, buf: &mut [u8]) {
        let mut pos = self.head + offset;
        let mut done = 0;
        while done < buf.len() {
            let (index, at) = (pos / CHUNK, pos % CHUNK);
            let n = (buf.len() - done).min(CHUNK - at);
            buf[done..done + n].copy_from_slice(&self.chunks[index][at..at + n]);
            done += n;
            pos += n;
        }
    }

    fn line_len_at(&self, offset: usize) -> usize {
        let mut header = [0u8; HEADER];
        let pos = self.head + offset;
        let (index, at) = (pos / CHUNK, pos % CHUNK);
        match self.chunks.get(index).and_then(|chunk| chunk.get(at..at + HEADER)) {
            Some(bytes) => header.copy_from_slice(bytes),
            None => self.read_at(offset, &mut header),
        }
        u32::from_le_bytes(header) as usize
    }

    fn pop_front(&mut self) {
        if self.lines == 0 {
            return;
        }
        let total = HEADER + self.line_len_at(0);
        self.head += total;
        self.used -= total;
        self.lines -= 1;
        while self.head >= CHUNK || (self.used == 0 && !self.chunks.is_empty()) {
            let Some(chunk) = self.chunks.pop_front() else {
                break;
            };
            self.spare = Some(chunk);
            self.head = self.head.saturating_sub(CHUNK);
        }
        if self.used == 0 {
            self.head = 0;
        }
    }
}

/// Iterator over the stored lines; each item is one or two slices (a line may span chunks).
pub struct Lines<'a> {
    ring: &'a Ring,
    offset: usize,
    remaining: usize,
}

/// A stored line: its bytes, in at most a few contiguous pieces.
pub struct Line<'a> {
    ring: &'a Ring,
    start: usize,
    len: usize,
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
            Some(&ring.chunks[index][at..at + n])
        })
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces().flat_map(|p| p.iter().copied()).collect()
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let len = self.ring.line_len_at(self.offset);
        let line = Line { ring: self.ring, start: self.offset + HEADER, len };
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
            ring.push(format!("line number {i:03}\n").as_bytes());
        }
        let lines = contents(&ring);
        assert_eq!(lines.last().map(String::as_str), Some("line number 099\n"));
        assert!(lines.iter().all(|l| l.starts_with("line number ")));
        // 16 bytes + 4 of header each: three lines fit in 64.
        assert_eq!(lines.len(), 3);
        assert!(ring.used <= 64);
    }

    #[test]
    fn lines_mode_keeps_exactly_n() {
        let mut ring = Ring::new(Limit::Lines(5));
        for i in 0..1000 {
            ring.push(format!("{i}\n").as_bytes());
        }
        assert_eq!(contents(&ring), vec!["995\n", "996\n", "997\n", "998\n", "999\n"]);
    }

    #[test]
    fn oversized_line_keeps_its_tail() {
        let mut ring = Ring::new(Limit::Bytes(64));
        ring.push(b"short\n");
        let long: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
        ring.push(&long);
        assert_eq!(contents(&ring), vec![String::from_utf8(long[long.len() - 60..].to_vec()).expect("utf8")]);
        ring.push(b"next\n");
        assert_eq!(contents(&ring), vec!["next\n"]);
    }

    #[test]
    fn lines_span_chunks() {
        let mut ring = Ring::new(Limit::Bytes(5 * CHUNK));
        let line = vec![b'x'; CHUNK / 3 + 7];
        for _ in 0..100 {
            ring.push(&line);
        }
        assert!(ring.iter().all(|l| l.to_vec() == line));
        assert!(ring.chunks.len() <= 6);
        assert!(ring.iter().any(|l| l.pieces().count() == 2));
    }

    #[test]
    fn take_and_restore_keep_order_and_limit() {
        let mut ring = Ring::new(Limit::Lines(4));
        for s in ["a", "b", "c"] {
            ring.push(s.as_bytes());
        }
        let taken = ring.take();
        assert!(ring.is_empty());
        ring.push(b"d");
        ring.push(b"e");
        ring.restore(taken);
        assert_eq!(contents(&ring), vec!["b", "c", "d", "e"]);
    }

    #[test]
    fn full_ring_reuses_its_chunks() {
        let mut ring = Ring::new(Limit::Bytes(4 * CHUNK));
        for i in 0..100_000 {
            ring.push(format!("{i:>40}\n").as_bytes());
        }
        assert!(ring.chunks.len() <= 5);
        assert!(ring.used <= 4 * CHUNK);
        ring.clear();
        assert_eq!((ring.used, ring.lines, ring.chunks.len()), (0, 0, 0));
    }
}
