//! The journal of a persisted sink (`persist`): the layout of its ring file, writing lines into
//! it, and reading back the lines a process left in it. Everything works on a byte slice: the
//! runtime maps the file (`runtime::persist`) and hands the mapping in; reading is on any bytes
//! at all (a hostile file), bounds-checked, and trusts a line only after its checksum.
//!
//! Layout (little endian; see docs/persist.md):
//! - a header of [`HEADER`] bytes: magic, layout version, block size, the sink's limit, the
//!   writer's PID, a clean-shutdown flag, the "dumped through line N" watermark, the sink's
//!   identity (its name or position), and a checksum over everything but the flag and the
//!   watermark (which change while the file is in use);
//! - then whole blocks of [`BLOCK`] bytes, used in turn (the oldest is reused; the file grows by
//!   blocks when the oldest still holds lines the ring's limit keeps). A block starts with its
//!   magic, a checksum, its sequence number and the sequence number of its first line.
//! - Records follow back to back inside a block and never straddle one: a commit word (length
//!   plus one; zero: no record), a checksum over the line's number, time, source offset, length
//!   and bytes, the time (u32), the source offset (u16), then the bytes. A line longer than a
//!   block's room keeps its first [`MAX_LINE`] bytes.
//!
//! A record is written in this order: its commit word set to "being written" (all ones), the
//! line and its bookkeeping, a zero commit word after it (the end of the block's records), and
//! its commit word last. So a line cut off by the death of the process leaves the "being
//! written" mark, which reading counts as one torn line and never trusts; bytes after the end
//! mark (older laps) are never read. Nothing is zeroed in bulk: a block costs no more than its
//! records to reuse.

use std::collections::VecDeque;
use std::sync::atomic::{compiler_fence, Ordering};

use super::ring::{Limit, Meta, Ring};

/// The file header's size (one page).
pub(crate) const HEADER: usize = 4096;
/// A block's size: a line is at most this much (less its bookkeeping).
pub(crate) const BLOCK: usize = 64 * 1024;
pub(crate) const MAGIC: [u8; 8] = *b"PRBRING\0";
pub(crate) const VERSION: u32 = 2;
const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"RBLK");
/// A block's own header: magic, checksum, block sequence, first line's sequence.
const BLOCK_HEAD: usize = 24;
/// The commit word of a record being written (its bytes may be incomplete).
const WRITING: u32 = u32::MAX;
/// A record's bookkeeping: commit word, checksum, time, source offset.
pub(crate) const RECORD_HEAD: usize = 14;
/// The longest line a record keeps whole.
pub(crate) const MAX_LINE: usize = BLOCK - BLOCK_HEAD - RECORD_HEAD;
/// The longest identity (a sink's name) the header holds.
pub(crate) const MAX_IDENTITY: usize = 200;

// Header fields' offsets.
const H_VERSION: usize = 8;
const H_BLOCK: usize = 12;
const H_LIMIT_KIND: usize = 16;
const H_LIMIT: usize = 24;
const H_PID: usize = 32;
const H_CLEAN: usize = 36;
const H_DUMPED: usize = 40;
const H_IDENT_LEN: usize = 48;
const H_IDENT: usize = 50;
const H_CHECKSUM: usize = 256;

/// Why a file's contents cannot be trusted as this sink's ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected(pub(crate) String);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A line read back from a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered<'a> {
    pub(crate) seq: u64,
    pub(crate) meta: Meta,
    pub(crate) bytes: &'a [u8],
}

/// What a journal holds, read back.
#[derive(Debug, Default)]
pub(crate) struct Contents<'a> {
    /// The process that wrote it.
    pub(crate) pid: u32,
    /// It was closed by a clean shutdown: nothing to recover.
    pub(crate) clean: bool,
    /// Lines up to this number were dumped already.
    pub(crate) dumped_through: u64,
    /// The validated lines after the watermark, oldest first.
    pub(crate) lines: Vec<Recovered<'a>>,
    /// Lines whose writing the process's end cut off (never trusted): 0 or 1.
    pub(crate) torn: u32,
    /// Records that failed validation elsewhere than at the end (damage; lines before the damage
    /// were left out, as their order with the rest cannot be trusted).
    pub(crate) damaged: u32,
}

impl Contents<'_> {
    /// The lines `limit` keeps, as the ring holds them (the newest within the bound, oldest
    /// first).
    pub(crate) fn to_ring(&self, limit: Limit) -> Ring {
        let mut ring = Ring::new(limit);
        for line in &self.lines {
            ring.push(line.bytes, line.meta);
        }
        ring
    }
}

/// The part of `line` a ring bounded by `limit` keeps, with its meta: a line larger than a
/// `Bytes` ring keeps its end and loses its source offset (as `Ring::push` stores it).
#[inline]
pub(crate) fn as_ring_keeps(limit: Limit, line: &[u8], meta: Meta) -> (&[u8], Meta) {
    let line = &line[..line.len().min(u32::MAX as usize)];
    match limit {
        Limit::Bytes(size) if RING_HEAD + line.len() > size => {
            let kept = size.saturating_sub(RING_HEAD);
            (&line[line.len() - kept..], Meta { source_at: Meta::NO_SOURCE, ..meta })
        }
        _ => (line, meta),
    }
}

/// A record's checksum: CRC32C (Castagnoli) in three interleaved streams, so that a CPU's CRC32C
/// instruction runs three at a time (one stream waits on each instruction's latency): the
/// bytes' 8-byte words go to streams 0, 1, 2 in turn, the seed's 8 bytes (little endian) first
/// into stream 0 and the last bytes (less than 24) into stream 0 too; the result is stream 0's
/// register run on by streams 1 and 2 (4 bytes each), inverted. Every bit counts: a change in
/// one stream changes the result. The writer computes it with the CPU's instruction where there
/// is one ([`CopyChecksum`]); all implementations give the same value, so a file written on one
/// machine is read on any other.
///
/// This is the portable code (tables, 8 bytes a step): for reading, and for writing on a CPU
/// without a CRC32C instruction.
pub(crate) fn checksum(seed: u64, bytes: &[u8]) -> u32 {
    let mut streams = [crc32c(!0, &seed.to_le_bytes()), !0, !0];
    let mut triples = bytes.chunks_exact(24);
    for triple in triples.by_ref() {
        for (stream, word) in streams.iter_mut().zip(triple.chunks_exact(8)) {
            *stream = crc32c(*stream, word);
        }
    }
    let first = crc32c(streams[0], triples.remainder());
    !crc32c(crc32c(first, &streams[1].to_le_bytes()), &streams[2].to_le_bytes())
}

/// Copies a line into its record (`line` into `body`, of the same length) and returns the
/// line's [`checksum`], in one pass where the CPU allows (the line is read once). The writer
/// takes the fastest implementation the runtime found ([`Writer::new`]); all give the same value.
pub(crate) type CopyChecksum = fn(u64, &[u8], &mut [u8]) -> u32;

/// [`CopyChecksum`] in portable code: a copy, then [`checksum`].
pub(crate) fn copy_checksum(seed: u64, line: &[u8], body: &mut [u8]) -> u32 {
    let n = line.len().min(body.len());
    body[..n].copy_from_slice(&line[..n]);
    checksum(seed, &line[..n])
}

/// The reflected CRC32C polynomial.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// Tables for CRC32C 8 bytes at a time ("slicing by 8"): `[0]` is the byte-wise table; `[k]`
/// advances a byte's contribution by `k` more bytes.
const CRC32C_TABLES: [[u32; 256]; 8] = crc32c_tables();

const fn crc32c_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ CRC32C_POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

/// Runs the CRC32C register `crc` over `bytes` (no inversions: the caller's).
fn crc32c(mut crc: u32, bytes: &[u8]) -> u32 {
    let t: &[[u32; 256]; 8] = &CRC32C_TABLES;
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w) ^ u64::from(crc);
        let byte = |i: u32| ((w >> (8 * i)) & 0xff) as usize;
        crc = t[7][byte(0)]
            ^ t[6][byte(1)]
            ^ t[5][byte(2)]
            ^ t[4][byte(3)]
            ^ t[3][byte(4)]
            ^ t[2][byte(5)]
            ^ t[1][byte(6)]
            ^ t[0][byte(7)];
    }
    for &b in words.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    crc
}

fn record_seed(seq: u64, meta: Meta, len: usize) -> u64 {
    seq ^ (u64::from(meta.time) << 17) ^ (u64::from(meta.source_at) << 49) ^ ((len as u64).rotate_left(31))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(at..at + v.len()) {
        dst.copy_from_slice(v);
    }
}

fn limit_fields(limit: Limit) -> (u32, u64) {
    match limit {
        Limit::Bytes(n) => (1, n as u64),
        Limit::Lines(n) => (2, n as u64),
    }
}

fn header_checksum(header: &[u8]) -> u32 {
    let static_part = header.get(..H_CLEAN).unwrap_or(&[]);
    let ident = header.get(H_IDENT_LEN..H_CHECKSUM).unwrap_or(&[]);
    checksum(u64::from(checksum(0, static_part)), ident)
}

/// Writes a new header for the sink `identity` bounded by `limit`, written by `pid`: not clean,
/// nothing dumped.
pub(crate) fn write_header(file: &mut [u8], identity: &str, limit: Limit, pid: u32) {
    let Some(header) = file.get_mut(..HEADER) else { return };
    header.fill(0);
    put(header, 0, &MAGIC);
    put(header, H_VERSION, &VERSION.to_le_bytes());
    put(header, H_BLOCK, &(BLOCK as u32).to_le_bytes());
    let (kind, value) = limit_fields(limit);
    put(header, H_LIMIT_KIND, &kind.to_le_bytes());
    put(header, H_LIMIT, &value.to_le_bytes());
    let ident = &identity.as_bytes()[..identity.len().min(MAX_IDENTITY)];
    put(header, H_IDENT_LEN, &(ident.len() as u16).to_le_bytes());
    put(header, H_IDENT, ident);
    set_pid(file, pid);
}

/// Records that `pid` writes the file now (a fork's child).
pub(crate) fn set_pid(file: &mut [u8], pid: u32) {
    put(file, H_PID, &pid.to_le_bytes());
    let sum = header_checksum(file.get(..HEADER).unwrap_or(&[]));
    put(file, H_CHECKSUM, &sum.to_le_bytes());
}

/// Marks the file as closed by a clean shutdown (or not).
pub(crate) fn set_clean(file: &mut [u8], clean: bool) {
    put(file, H_CLEAN, &u32::from(clean).to_le_bytes());
}

/// Records that every line up to number `seq` was dumped.
pub(crate) fn set_dumped_through(file: &mut [u8], seq: u64) {
    put(file, H_DUMPED, &seq.to_le_bytes());
}

/// A block's validated header: (block sequence, first line's sequence).
fn block_head(block: &[u8]) -> Option<(u64, u64)> {
    if u32_at(block, 0)? != BLOCK_MAGIC {
        return None;
    }
    let (seq, first) = (u64_at(block, 8)?, u64_at(block, 16)?);
    let sum = checksum(seq, block.get(8..BLOCK_HEAD)?);
    (sum == u32_at(block, 4)? && seq != 0).then_some((seq, first))
}

/// Reads what a journal holds, trusting nothing: `Err` if the bytes are not a ring file of the
/// sink `identity` in this layout.
pub(crate) fn read<'a>(file: &'a [u8], identity: &str) -> Result<Contents<'a>, Rejected> {
    let reject = |why: &str| Err(Rejected(why.to_string()));
    let Some(header) = file.get(..HEADER) else {
        return reject(&format!("truncated: {} bytes, shorter than its header", file.len()));
    };
    if header.iter().all(|&b| b == 0) {
        return reject("zero-filled");
    }
    if header[..8] != MAGIC {
        return reject("not a ring file (no magic number)");
    }
    let version = u32_at(header, H_VERSION).unwrap_or(0);
    if version != VERSION {
        return reject(&format!("layout version {version}; this module reads version {VERSION}"));
    }
    if u32_at(header, H_CHECKSUM) != Some(header_checksum(header)) {
        return reject("its header's checksum does not match");
    }
    if u32_at(header, H_BLOCK) != Some(BLOCK as u32) {
        return reject("another block size");
    }
    let ident_len = usize::from(u16_at(header, H_IDENT_LEN).unwrap_or(0));
    let ident = header.get(H_IDENT..H_IDENT + ident_len.min(MAX_IDENTITY)).unwrap_or(&[]);
    let wanted = &identity.as_bytes()[..identity.len().min(MAX_IDENTITY)];
    if ident != wanted {
        return reject(&format!("another sink's file (sink {:?})", String::from_utf8_lossy(ident)));
    }
    let clean = match u32_at(header, H_CLEAN) {
        Some(0) => false,
        Some(1) => true,
        _ => return reject("its clean-shutdown flag is neither 0 nor 1"),
    };
    let body = &file[HEADER..];
    if !body.len().is_multiple_of(BLOCK) {
        return reject("truncated: not a whole number of blocks");
    }
    let mut contents = Contents {
        pid: u32_at(header, H_PID).unwrap_or(0),
        clean,
        dumped_through: u64_at(header, H_DUMPED).unwrap_or(0),
        ..Contents::default()
    };
    let mut blocks: Vec<(u64, u64, &[u8])> =
        body.chunks_exact(BLOCK).filter_map(|b| block_head(b).map(|(seq, first)| (seq, first, b))).collect();
    blocks.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
    // The newest block and those contiguous before it, oldest first.
    let run = blocks.windows(2).position(|w| w[1].0 + 1 != w[0].0).map_or(blocks.len(), |i| i + 1);
    blocks.truncate(run);
    blocks.reverse();
    let newest = blocks.len().saturating_sub(1);
    let mut expected: Option<u64> = None;
    for (index, &(_, first, block)) in blocks.iter().enumerate() {
        if expected.is_some_and(|e| e != first) {
            // A gap between blocks: what came before cannot be put in order with what follows.
            contents.lines.clear();
            contents.damaged += 1;
        }
        let mut seq = first;
        let mut at = BLOCK_HEAD;
        while let Some(commit) = u32_at(block, at).filter(|_| at + RECORD_HEAD <= BLOCK) {
            if commit == 0 {
                break; // the end of the block's records
            }
            if commit == WRITING {
                // A line cut off while it was written: counted, never trusted.
                if index == newest {
                    contents.torn += 1;
                } else {
                    contents.lines.clear();
                    contents.damaged += 1;
                }
                break;
            }
            let len = (commit - 1) as usize;
            let record = block.get(at..at + RECORD_HEAD + len);
            let meta =
                Meta { time: u32_at(block, at + 8).unwrap_or(0), source_at: u16_at(block, at + 12).unwrap_or(0) };
            let valid =
                record.filter(|r| u32_at(r, 4) == Some(checksum(record_seed(seq, meta, len), &r[RECORD_HEAD..])));
            let Some(record) = valid else {
                if index == newest {
                    contents.torn += 1;
                } else {
                    contents.lines.clear();
                    contents.damaged += 1;
                }
                break;
            };
            if seq > contents.dumped_through {
                contents.lines.push(Recovered { seq, meta, bytes: &record[RECORD_HEAD..] });
            }
            seq += 1;
            at += RECORD_HEAD + len;
        }
        expected = Some(seq);
    }
    Ok(contents)
}

/// What a writer needs from the runtime after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Stored; nothing else to do.
    Stored,
    /// Stored in a new block (`started`, a byte range of the file); the block before it
    /// (`done`), if any, is complete, and the process need not keep its pages.
    Started { done: Option<std::ops::Range<usize>>, started: std::ops::Range<usize> },
    /// Not stored: the file needs another block first (the oldest still holds lines the limit
    /// keeps). Call again after growing it.
    Grow,
}

/// A block in use: where it is, and what its lines count for the limit.
#[derive(Debug, Clone, Copy)]
struct Used {
    index: usize,
    lines: usize,
    /// Bytes as the ring counts them (text plus the ring's bookkeeping per line).
    ring_bytes: usize,
}

/// Writes lines into a journal, blocks in turn.
#[derive(Debug)]
pub(crate) struct Writer {
    limit: Limit,
    blocks: usize,
    /// Blocks in use, oldest first; the last one is written.
    used: VecDeque<Used>,
    /// Blocks never used yet.
    fresh: Vec<usize>,
    /// Where the next record goes in the file, and where the current block ends.
    pos: usize,
    block_end: usize,
    /// Where the current block's records start and its first line's number: what it holds (see
    /// [`Used`]) follows from them when it is complete, at no cost per line.
    records_start: usize,
    block_first_seq: u64,
    next_seq: u64,
    next_block_seq: u64,
    /// The file cannot grow: reuse the oldest block whatever it holds.
    fixed: bool,
    /// How lines are copied into records and checksummed (the runtime's fastest [`CopyChecksum`]).
    copy_checksum: CopyChecksum,
}

/// The ring's bookkeeping per line (see `ring`), for counting bytes as the limit does.
pub(crate) const RING_HEAD: usize = 10;

impl Writer {
    /// A writer for a file of `file_len` bytes just given a new header: its first line is
    /// number 1. `copy_checksum` copies lines into records and checksums them (any implementation
    /// of [`CopyChecksum`]).
    pub(crate) fn new(limit: Limit, file_len: usize, copy_checksum: CopyChecksum) -> Self {
        let blocks = file_len.saturating_sub(HEADER) / BLOCK;
        Writer {
            limit,
            blocks,
            used: VecDeque::new(),
            fresh: (0..blocks).rev().collect(),
            pos: 0,
            block_end: 0,
            records_start: 0,
            block_first_seq: 1,
            next_seq: 1,
            next_block_seq: 1,
            fixed: false,
            copy_checksum,
        }
    }

    /// The file size a new journal for `limit` starts with: room for the limit's lines in
    /// typical lengths; it grows when the lines are shorter.
    pub(crate) fn initial_len(limit: Limit) -> usize {
        let bytes = match limit {
            Limit::Bytes(n) => n + n / 8,
            Limit::Lines(n) => n.saturating_mul(160),
        };
        HEADER + (bytes.div_ceil(BLOCK - BLOCK_HEAD) + 2) * BLOCK
    }

    /// The number the next line gets; every line before it was written.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The file cannot grow (no space left): from now on the oldest block is reused even if the
    /// limit still keeps some of its lines.
    pub(crate) fn stop_growing(&mut self) {
        self.fixed = true;
    }

    /// The sink's limit changed (a logging reload kept the file): blocks are kept and reused by
    /// the new one from now on.
    pub(crate) fn set_limit(&mut self, limit: Limit) {
        self.limit = limit;
    }

    /// The file grew to `file_len` bytes: new blocks to use.
    pub(crate) fn grown(&mut self, file_len: usize) {
        let blocks = file_len.saturating_sub(HEADER) / BLOCK;
        self.fresh.extend((self.blocks..blocks).rev());
        self.blocks = self.blocks.max(blocks);
    }

    /// Appends one line (as the ring stores it) to `file` if it fits the current block with room
    /// for the end mark after it: the common case, a short straight path. False: nothing was
    /// written; [`Writer::append`] does the rest.
    #[inline(always)]
    pub(crate) fn append_in_block(&mut self, file: &mut [u8], line: &[u8], meta: Meta) -> bool {
        let end = self.pos + RECORD_HEAD + line.len();
        if end + RECORD_HEAD > self.block_end {
            return false;
        }
        let Some(record) = file.get_mut(self.pos..end + 4) else { return false };
        self.write_record(record, line, meta, end);
        true
    }

    /// Appends one line (as the ring stores it) to `file`, starting a new block if it must.
    #[cold]
    #[inline(never)]
    pub(crate) fn append(&mut self, file: &mut [u8], line: &[u8], meta: Meta) -> Appended {
        let line = &line[..line.len().min(MAX_LINE)];
        if self.append_in_block(file, line, meta) {
            return Appended::Stored;
        }
        let mut outcome = Appended::Stored;
        if self.pos + RECORD_HEAD + line.len() > self.block_end {
            match self.next_block(file, line.len()) {
                Some(completed) => outcome = completed,
                None => return Appended::Grow,
            }
        }
        let end = self.pos + RECORD_HEAD + line.len();
        // The next record's commit word (the end mark) too, if the block has room for another
        // record: reading stops there and never looks at older bytes beyond it.
        let terminator = if end + RECORD_HEAD <= self.block_end { 4 } else { 0 };
        let Some(record) = file.get_mut(self.pos..end + terminator) else { return Appended::Grow };
        self.write_record(record, line, meta, end);
        outcome
    }

    /// Writes a record into `record` (its bytes, and the end mark's if it has room for one),
    /// which ends at `end` in the file.
    #[inline(always)]
    fn write_record(&mut self, record: &mut [u8], line: &[u8], meta: Meta, end: usize) {
        let Some((head, rest)) = record.split_at_mut_checked(RECORD_HEAD) else { return };
        let Some((body, next)) = rest.split_at_mut_checked(line.len()) else { return };
        // The intent first: a line cut off after this is seen, counted, and never trusted.
        head[..4].copy_from_slice(&WRITING.to_le_bytes());
        compiler_fence(Ordering::Release);
        // (Each value written as soon as it is known, and the writer's own state updated before
        // the copy: fewer values to keep across the two calls.)
        head[8..12].copy_from_slice(&meta.time.to_le_bytes());
        head[12..14].copy_from_slice(&meta.source_at.to_le_bytes());
        let sum = (self.copy_checksum)(record_seed(self.next_seq, meta, line.len()), line, body);
        head[4..8].copy_from_slice(&sum.to_le_bytes());
        self.pos = end;
        self.next_seq += 1;
        if let Some(terminator) = next.get_mut(..4) {
            terminator.copy_from_slice(&[0; 4]);
        }
        // The commit word last.
        compiler_fence(Ordering::Release);
        head[..4].copy_from_slice(&(line.len() as u32 + 1).to_le_bytes());
    }

    /// Starts the next block: a fresh one, or the oldest if the lines the limit keeps are all
    /// in the others (counting the line about to be written). None: the file must grow.
    #[cold]
    fn next_block(&mut self, file: &mut [u8], line_len: usize) -> Option<Appended> {
        if let Some(current) = self.used.back_mut() {
            // Each record is its bookkeeping and its line; the ring counts its own per line.
            let lines = (self.next_seq - self.block_first_seq) as usize;
            let line_bytes = self.pos - self.records_start - lines * RECORD_HEAD;
            (current.lines, current.ring_bytes) = (lines, line_bytes + lines * RING_HEAD);
        }
        let index = match self.fresh.pop() {
            Some(index) => index,
            None => {
                let oldest = *self.used.front()?;
                let (lines, bytes) = self
                    .used
                    .iter()
                    .skip(1)
                    .fold((1, RING_HEAD + line_len), |(l, b), u| (l + u.lines, b + u.ring_bytes));
                let beyond_limit = match self.limit {
                    Limit::Bytes(size) => bytes >= size,
                    Limit::Lines(max) => lines >= max,
                };
                if (!beyond_limit && !self.fixed) || self.used.len() < 2 {
                    return None;
                }
                self.used.pop_front();
                oldest.index
            }
        };
        let start = HEADER + index * BLOCK;
        let block = file.get_mut(start..start + BLOCK)?;
        // The magic first, so a block cut off while being set up is never read as valid; then no
        // record yet (a terminator: older bytes after it are never read).
        block[..4].fill(0);
        compiler_fence(Ordering::Release);
        block[BLOCK_HEAD..BLOCK_HEAD + 4].fill(0);
        let seq = self.next_block_seq;
        block[8..16].copy_from_slice(&seq.to_le_bytes());
        block[16..24].copy_from_slice(&self.next_seq.to_le_bytes());
        let sum = checksum(seq, &block[8..BLOCK_HEAD]);
        block[4..8].copy_from_slice(&sum.to_le_bytes());
        compiler_fence(Ordering::Release);
        block[..4].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
        self.next_block_seq += 1;
        let done = self.used.back().map(|u| HEADER + u.index * BLOCK..HEADER + (u.index + 1) * BLOCK);
        self.used.push_back(Used { index, lines: 0, ring_bytes: 0 });
        (self.records_start, self.block_first_seq) = (start + BLOCK_HEAD, self.next_seq);
        (self.pos, self.block_end) = (start + BLOCK_HEAD, start + BLOCK);
        Some(Appended::Started { done, started: start..start + BLOCK })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct File {
        bytes: Vec<u8>,
        writer: Writer,
    }

    impl File {
        fn new(limit: Limit, len: usize) -> Self {
            let mut bytes = vec![0u8; len];
            write_header(&mut bytes, "main", limit, 1234);
            File { bytes, writer: Writer::new(limit, len, copy_checksum) }
        }

        fn log(&mut self, line: &[u8], time: u32) {
            loop {
                match self.writer.append(&mut self.bytes, line, Meta { time, source_at: 3 }) {
                    Appended::Grow => {
                        let len = self.bytes.len() + BLOCK;
                        self.bytes.resize(len, 0);
                        self.writer.grown(len);
                    }
                    _ => return,
                }
            }
        }
    }

    fn texts(contents: &Contents<'_>) -> Vec<String> {
        contents.lines.iter().map(|l| String::from_utf8_lossy(l.bytes).into_owned()).collect()
    }

    #[test]
    fn lines_written_are_read_back_in_order_with_their_meta() {
        let mut file = File::new(Limit::Lines(1000), Writer::initial_len(Limit::Lines(1000)));
        for i in 0..500 {
            file.log(format!("line {i}\n").as_bytes(), i);
        }
        let contents = read(&file.bytes, "main").expect("valid");
        assert_eq!((contents.pid, contents.clean, contents.torn), (1234, false, 0));
        let expected: Vec<String> = (0..500).map(|i| format!("line {i}\n")).collect();
        assert_eq!(texts(&contents), expected);
        assert!(contents.lines.iter().enumerate().all(|(i, l)| l.meta.time == i as u32 && l.meta.source_at == 3));
        assert_eq!(contents.lines.last().map(|l| l.seq), Some(500));
    }

    #[test]
    fn the_newest_lines_the_limit_keeps_are_always_there() {
        for limit in [Limit::Bytes(200_000), Limit::Lines(3000), Limit::Bytes(64)] {
            let mut file = File::new(limit, HEADER + 2 * BLOCK);
            let mut all = Ring::new(limit);
            for i in 0..40_000u32 {
                let line = format!("{i:>width$}\n", width = 5 + (i as usize * 7919) % 90);
                file.log(line.as_bytes(), i);
                all.push(line.as_bytes(), i);
            }
            let contents = read(&file.bytes, "main").expect("valid");
            let wanted: Vec<Vec<u8>> = all.iter().map(|l| l.to_vec()).collect();
            let got: Vec<Vec<u8>> = contents.to_ring(limit).iter().map(|l| l.to_vec()).collect();
            assert_eq!(got, wanted, "{limit:?}");
            assert!(file.bytes.len() < HEADER + 8 * BLOCK + 3 * 200_000, "{limit:?}: grew to {}", file.bytes.len());
        }
    }

    #[test]
    fn the_watermark_leaves_dumped_lines_out_and_the_clean_flag_is_read() {
        let mut file = File::new(Limit::Lines(100), HEADER + 4 * BLOCK);
        for i in 0..10 {
            file.log(format!("{i}\n").as_bytes(), 0);
        }
        set_dumped_through(&mut file.bytes, 7);
        assert_eq!(texts(&read(&file.bytes, "main").expect("valid")), ["7\n", "8\n", "9\n"]);
        set_clean(&mut file.bytes, true);
        assert!(read(&file.bytes, "main").expect("valid").clean);
        set_pid(&mut file.bytes, 99);
        assert_eq!(read(&file.bytes, "main").expect("valid").pid, 99, "the checksum follows the PID");
    }

    #[test]
    fn a_line_cut_off_while_written_is_counted_and_not_trusted() {
        let mut file = File::new(Limit::Lines(100), HEADER + 4 * BLOCK);
        file.log(b"whole\n", 0);
        let before = file.bytes.clone();
        file.log(b"cut off while written\n", 0);
        let commit = HEADER + BLOCK_HEAD + RECORD_HEAD + 6;
        let written: Vec<usize> = (0..file.bytes.len())
            .filter(|&i| before[i] != file.bytes[i] && !(commit..commit + 4).contains(&i))
            .collect();
        assert!(!written.is_empty());
        // The process died after the "being written" mark, with any part of the rest written.
        for cut in 0..=written.len() {
            let mut torn = before.clone();
            torn[commit..commit + 4].copy_from_slice(&WRITING.to_le_bytes());
            for &i in written.iter().take(cut) {
                torn[i] = file.bytes[i];
            }
            let contents = read(&torn, "main").expect("valid");
            assert_eq!(texts(&contents), ["whole\n"]);
            assert_eq!(contents.torn, 1);
        }
        // Before the mark: nothing of it was written, nothing is torn.
        assert_eq!(read(&before, "main").expect("valid").torn, 0);
        // A committed line that does not match its checksum: counted as torn too, never trusted.
        let mut bad = file.bytes.clone();
        bad[commit + RECORD_HEAD + 2] ^= 1;
        let contents = read(&bad, "main").expect("valid");
        assert_eq!((texts(&contents), contents.torn), (vec!["whole\n".to_string()], 1));
    }

    #[test]
    fn the_checksum_is_crc32c() {
        // The standard check value of CRC32C; a short line is one stream after its seed.
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
        let one_stream = crc32c(crc32c(crc32c(!0, b"123456789"), &[0xff; 4]), &[0xff; 4]);
        assert_eq!(checksum(0x3837_3635_3433_3231, b"9"), !one_stream);
    }

    #[test]
    fn every_bit_of_a_line_counts_in_its_checksum() {
        for len in 0..100usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a).collect();
            let sum = checksum(7, &bytes);
            for i in 0..len {
                for bit in 0..8 {
                    let mut changed = bytes.clone();
                    changed[i] ^= 1 << bit;
                    assert_ne!(checksum(7, &changed), sum, "length {len}, byte {i}, bit {bit}");
                }
            }
            assert_ne!(checksum(8, &bytes), sum, "the seed (line number, time, length) counts");
        }
    }

    #[test]
    fn a_reused_block_never_shows_older_lines() {
        let mut file = File::new(Limit::Lines(10), HEADER + 2 * BLOCK);
        for i in 0..5000u32 {
            file.log(format!("line {i:05} {}\n", "y".repeat((i % 300) as usize)).as_bytes(), i);
        }
        let contents = read(&file.bytes, "main").expect("valid");
        assert_eq!((contents.torn, contents.damaged), (0, 0));
        let seqs: Vec<u64> = contents.lines.iter().map(|l| l.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(seqs.last(), Some(&5000));
    }

    #[test]
    fn hostile_headers_are_rejected() {
        let file = File::new(Limit::Lines(10), HEADER + BLOCK);
        let good = file.bytes;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("truncated", good[..100].to_vec(), "truncated"),
            ("empty", Vec::new(), "truncated"),
            ("zeroes", vec![0; good.len()], "zero-filled"),
            ("random", (0..good.len()).map(|i| (i * 7919 % 251) as u8).collect(), "magic"),
            (
                "version",
                {
                    let mut b = good.clone();
                    b[H_VERSION] = 1;
                    b
                },
                "layout version 1",
            ),
            (
                "checksum",
                {
                    let mut b = good.clone();
                    b[H_LIMIT] ^= 1;
                    b
                },
                "checksum",
            ),
            ("half block", good[..HEADER + 100].to_vec(), "whole number of blocks"),
            (
                "clean flag",
                {
                    let mut b = good.clone();
                    b[H_CLEAN] = 7;
                    b
                },
                "clean-shutdown",
            ),
        ];
        for (name, bytes, why) in cases {
            let err = read(&bytes, "main").expect_err(name);
            assert!(err.0.contains(why), "{name}: {err}");
        }
        let err = read(&good, "other").expect_err("another sink");
        assert!(err.0.contains("another sink's file (sink \"main\")"), "{err}");
    }

    /// Property: whatever bytes a file holds, reading it never panics or reads out of bounds,
    /// and yields only lines that were written (in order, each once).
    #[test]
    fn any_damage_yields_only_lines_that_were_written() {
        let mut file = File::new(Limit::Lines(5000), HEADER + 3 * BLOCK);
        let line = |i: u64| format!("line {i:06} {}\n", "x".repeat((i % 70) as usize));
        for i in 1..=4000 {
            file.log(line(i).as_bytes(), 0);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..400 {
            let mut bytes = file.bytes.clone();
            match round % 4 {
                0 => {
                    for _ in 0..1 + next() % 20 {
                        let i = (next() as usize) % bytes.len();
                        bytes[i] = next() as u8;
                    }
                }
                1 => {
                    let start = HEADER + (next() as usize) % (bytes.len() - HEADER);
                    let end = (start + (next() as usize) % 5000).min(bytes.len());
                    bytes[start..end].fill(0);
                }
                2 => {
                    let cut = HEADER + (next() as usize % 3) * BLOCK;
                    bytes.truncate(cut);
                }
                _ => {
                    let start = HEADER + (next() as usize) % (bytes.len() - HEADER);
                    let end = (start + (next() as usize) % 300).min(bytes.len());
                    for b in &mut bytes[start..end] {
                        *b = next() as u8;
                    }
                }
            }
            let Ok(contents) = read(&bytes, "main") else { continue };
            let mut last = 0;
            for l in &contents.lines {
                assert!(l.seq > last, "round {round}: in order, each once");
                assert_eq!(l.bytes, line(l.seq).as_bytes(), "round {round}: only lines written");
                last = l.seq;
            }
            assert!(contents.torn <= 1);
        }
    }

    #[test]
    fn a_line_longer_than_a_block_keeps_its_start() {
        let mut file = File::new(Limit::Bytes(1 << 20), Writer::initial_len(Limit::Bytes(1 << 20)));
        let long = vec![b'y'; 2 * BLOCK];
        file.log(b"before\n", 0);
        file.log(&long, 0);
        file.log(b"after\n", 0);
        let contents = read(&file.bytes, "main").expect("valid");
        assert_eq!(contents.lines.len(), 3);
        assert_eq!(contents.lines[1].bytes.len(), MAX_LINE);
        assert_eq!(contents.lines[2].bytes, b"after\n");
    }
}
