//! `redact`: what of a captured line is personal data, and what it becomes. Lines are redacted
//! before they are stored, so every output (dumps in every format, forwards, the admin shell,
//! crash dumps, the ring file) only ever sees the redacted text.
//!
//! Four classes, each a few exact rules (the tests show each before and after):
//! - **bodies**: the text content of `<body>`, `<subject>`, `<thread>`, `<payload>` (OMEMO)
//!   and `<openpgp>` becomes `[redacted N bytes]`; the element, its attributes and its end tag
//!   stay. Serialized XML and XML escaped once more (`&lt;body&gt;…`) alike. Content that does
//!   not end on the line is redacted to the end of the line.
//! - **credentials**: the same for SASL `<auth>`, `<response>`, `<challenge>`, `<success>`,
//!   SASL2's `<initial-response>`, `<password>` (`jabber:iq:register`, `jabber:iq:auth`, MUC)
//!   and `<digest>` (`jabber:iq:auth`); the value after a name ending in `authorization` or
//!   `cookie` (an HTTP header: to the end of the line) or in `password`, `passwd` or `token`
//!   (a query string, a Lua table, JSON: to the next delimiter or closing quote), followed by
//!   `:` or `=`.
//! - **addresses**: an IPv4 address (four decimal octets 0 to 255, no leading zeros) or an
//!   IPv6 address (RFC 4291's text forms, with at least one group) standing as a word of its own
//!   (not inside a longer run of digits, dots, letters or colons: `0.12.4`, `12:00:00`,
//!   `1.2.3.4.5`, `c2s55d0a8c3e0` stay) becomes `ip:` and 8 hex digits of a keyed hash of the
//!   address (the IPv4 and IPv4-mapped IPv6 forms of one address give the same pseudonym). A
//!   port after it (`:5222`) stays.
//! - **jids**: the localpart before an `@` that a domain follows becomes `u:` and 8 hex digits
//!   of a keyed hash of it (ASCII case folded): `u:8b21e0c4@example.com`.
//!
//! The timestamp (everything before `from`) is never touched. A line none of the rules match
//! is left as it is, byte for byte; the scan looks closer only at the few bytes a rule can start
//! at (`<`, `&`, `=`, `:`, `.`, `@`, as the enabled classes need them).

use super::keyed_hash::{siphash24, Key};

/// Which classes a sink redacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Classes(u8);

impl Classes {
    pub(crate) const NONE: Classes = Classes(0);
    pub(crate) const BODIES: Classes = Classes(1);
    pub(crate) const CREDENTIALS: Classes = Classes(2);
    pub(crate) const ADDRESSES: Classes = Classes(4);
    pub(crate) const JIDS: Classes = Classes(8);
    /// `redact = true`.
    pub(crate) const ALL_BUT_JIDS: Classes = Classes(1 | 2 | 4);
    /// Each class by its name in the config, in this order.
    pub(crate) const NAMED: [(&'static str, Classes); 4] = [
        ("bodies", Classes::BODIES),
        ("credentials", Classes::CREDENTIALS),
        ("addresses", Classes::ADDRESSES),
        ("jids", Classes::JIDS),
    ];

    /// The class called `name`.
    pub(crate) fn from_name(name: &str) -> Option<Classes> {
        Classes::NAMED.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    pub(crate) fn with(self, other: Classes) -> Classes {
        Classes(self.0 | other.0)
    }

    /// These classes but not those of `other`.
    pub(crate) fn without(self, other: Classes) -> Classes {
        Classes(self.0 & !other.0)
    }

    pub(crate) fn contains(self, other: Classes) -> bool {
        self.0 & other.0 == other.0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the classes in this set.
    pub(crate) fn names(self) -> Vec<&'static str> {
        Classes::NAMED.iter().filter(|(_, c)| self.contains(*c)).map(|(n, _)| *n).collect()
    }
}

/// Bytes a rule can start at, by the rules that start there.
const AT_XML: u8 = 1;
const AT_EQUALS: u8 = 2;
const AT_COLON: u8 = 4;
const AT_DOT: u8 = 8;
const AT_AT: u8 = 16;

const TRIGGERS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'<' as usize] = AT_XML;
    t[b'&' as usize] = AT_XML;
    t[b'=' as usize] = AT_EQUALS;
    t[b':' as usize] = AT_COLON;
    t[b'.' as usize] = AT_DOT;
    t[b'@' as usize] = AT_AT;
    t
};

/// Elements whose text content a class redacts.
#[inline(always)]
fn is_body_element(name: &[u8]) -> bool {
    matches!(name, b"body" | b"subject" | b"thread" | b"payload" | b"openpgp")
}

#[inline(always)]
fn is_credential_element(name: &[u8]) -> bool {
    matches!(name, b"auth" | b"response" | b"challenge" | b"success" | b"initial-response" | b"password" | b"digest")
}
/// Names (the end of them, ASCII case ignored) whose value after `:` or `=` is a credential.
/// Headers: the value goes to the end of the line.
const HEADER_NAMES: &[&[u8]] = &[b"authorization", b"cookie"];
const SECRET_NAMES: &[&[u8]] = &[b"password", b"passwd", b"token"];

/// A sink's redaction: its classes and the process's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redactor {
    classes: Classes,
    key: Key,
    /// The [`TRIGGERS`] bits the classes need.
    triggers: u8,
    /// Those bits without `=` (and `:` if only credentials want it), for a line that cannot
    /// hold a credential's name.
    triggers_without_names: u8,
    /// The bytes of both, ready for [`Triggers`].
    stops: StopBytes,
}

impl Redactor {
    pub(crate) fn new(classes: Classes, key: Key) -> Self {
        let mut triggers = 0;
        if classes.contains(Classes::BODIES) {
            triggers |= AT_XML;
        }
        if classes.contains(Classes::CREDENTIALS) {
            triggers |= AT_XML | AT_EQUALS | AT_COLON;
        }
        if classes.contains(Classes::ADDRESSES) {
            triggers |= AT_DOT | AT_COLON;
        }
        if classes.contains(Classes::JIDS) {
            triggers |= AT_AT;
        }
        let mut triggers_without_names = triggers & !AT_EQUALS;
        if !classes.contains(Classes::ADDRESSES) {
            triggers_without_names &= !AT_COLON;
        }
        let stops = StopBytes::new(triggers_without_names, triggers & !triggers_without_names);
        Redactor { classes, key, triggers, triggers_without_names, stops }
    }

    pub(crate) fn classes(&self) -> Classes {
        self.classes
    }

    /// Redacts `line` from byte `from` on (what comes before, the timestamp, stays). True if
    /// anything was: `out` then holds the whole line redacted. False: `line` stands as it is
    /// (and `out` is left as it was).
    pub(crate) fn redact(&self, line: &[u8], from: usize, out: &mut Vec<u8>) -> bool {
        // `=` (and `:` if only credentials want it) matter only after a credential name's
        // letter: see `Triggers::named`.
        self.redact_with(line, from, out, Triggers::named(&self.stops))
    }

    /// [`Redactor::redact`] written straight into `room` (the free space of the ring's chunk):
    /// the whole line, redacted or as it is, and its length; `None` (what is in `room` then
    /// means nothing) if it does not fit.
    pub(crate) fn redact_into(&self, line: &[u8], from: usize, room: &mut [u8]) -> Option<usize> {
        // A line longer than the room rarely fits once redacted: the caller's other way is
        // cheaper than a scan that comes to nothing.
        if line.len() > room.len() {
            return None;
        }
        let mut out = Room { room, len: 0, overflowed: false };
        if !self.redact_with(line, from, &mut out, Triggers::named(&self.stops)) {
            out.put(line);
        }
        (!out.overflowed).then_some(out.len)
    }

    /// [`Redactor::redact`] with the stops of `triggers`.
    #[inline(always)]
    fn redact_with<O: Output>(&self, line: &[u8], from: usize, out: &mut O, mut triggers: Triggers<'_>) -> bool {
        let mut scan = Scan { s: line, from, out, copied: 0, changed: false, cut: None, runs_seen_to: 0, red: self };
        let mask = self.triggers;
        let mut i = from;
        loop {
            let end = scan.cut.map_or(line.len(), |(start, _)| start);
            let at = triggers.next_before(line, i, end);
            i = if at < end {
                scan.at(at, TRIGGERS[line[at] as usize] & mask).max(at + 1)
            } else {
                match scan.cut.take() {
                    Some((start, stop)) => {
                        scan.replace_with_marker(start, stop);
                        // The end tag's `<` (or `&` of `&lt;`) is there, before a `/`: no rule
                        // acts at it.
                        stop + 1
                    }
                    None => break,
                }
            };
        }
        if scan.changed {
            scan.out.put(&line[scan.copied..]);
        }
        scan.changed
    }
}

/// Where a redacted line is written.
trait Output {
    /// Makes ready for a line of about `len` bytes.
    fn begin(&mut self, len: usize);
    fn put(&mut self, bytes: &[u8]);
}

/// [`Redactor::redact`]'s buffer: emptied first, grown as needed.
impl Output for Vec<u8> {
    #[inline(always)]
    fn begin(&mut self, len: usize) {
        self.clear();
        // Room for the line and a marker or pseudonym or two: one allocation at most.
        self.reserve(len);
    }

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// [`Redactor::redact_into`]'s fixed space: what does not fit is left out, and remembered.
struct Room<'a> {
    room: &'a mut [u8],
    /// `room[..len]` is written.
    len: usize,
    /// Something did not fit: `room` holds no line.
    overflowed: bool,
}

impl Output for Room<'_> {
    #[inline(always)]
    fn begin(&mut self, _: usize) {}

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        match self.room.get_mut(self.len..self.len + bytes.len()) {
            Some(space) => {
                space.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflowed = true,
        }
    }
}

/// Where the next byte whose [`TRIGGERS`] bits meet `mask` is, from `at` on (the line's length:
/// nowhere).
#[cfg(test)]
fn next_trigger(line: &[u8], at: usize, mask: u8) -> usize {
    Triggers::new(mask).next(line, at)
}

/// Finds the bytes whose [`TRIGGERS`] bits meet a mask, 64 bytes at a time: each block is
/// classified at once (on x86-64 with vector compares: AVX2, 32 bytes per compare and up to
/// four blocks per pass, where the processor has it, SSE2 otherwise) into one bit per byte, the
/// scan's stops then taking their turn from the bits, less those no rule acts on.
struct Triggers<'a> {
    stops: &'a StopBytes,
    /// Whether a `k`, `w` or `z` (either case) was among the bytes classified so far.
    name_letter_seen: bool,
    /// The block last classified begins here; `hits` has a bit for each of its bytes that is a
    /// stop.
    block_at: usize,
    hits: u64,
    /// The blocks classified at once (with AVX2: up to four) begin here, `blocks[..count]`
    /// their bits.
    blocks_at: usize,
    blocks: [u64; 4],
    count: usize,
    /// Whether stops no rule acts on are passed over here (see [`no_rule_acts_at`]).
    passes_over: bool,
}

impl<'a> Triggers<'a> {
    /// Stops at every byte of `mask`.
    #[cfg(test)]
    fn new(mask: u8) -> Self {
        Triggers {
            name_letter_seen: true,
            passes_over: false,
            ..Triggers::named(Box::leak(Box::new(StopBytes::new(mask & !AT_EQUALS, mask & AT_EQUALS))))
        }
    }

    /// Stops at the bytes `stops` always stops at, and at its named ones once the line (from
    /// where the scan began) has shown a `k`, `w` or `z`: every credential's name has one
    /// (token, cookie; password, passwd; authorization), and the name comes before its `=` or
    /// `:`, in this block or an earlier one. (What the scan skips between blocks is either
    /// replaced, so no name reaches back into it, or a run of address characters, which has
    /// none.)
    fn named(stops: &'a StopBytes) -> Self {
        // No block classified yet: one that ends before any line begins.
        Triggers {
            stops,
            name_letter_seen: false,
            block_at: usize::MAX - 64,
            hits: 0,
            blocks_at: 0,
            blocks: [0; 4],
            count: 0,
            passes_over: true,
        }
    }

    /// The next trigger at or after `at` (the line's length: none).
    #[cfg(test)]
    fn next(&mut self, line: &[u8], at: usize) -> usize {
        self.next_before(line, at, line.len())
    }

    /// The next trigger at or after `at` if it is before `limit`; otherwise some place at or
    /// after `limit` (the scan goes no further than it needs: it comes back to `limit`).
    #[inline(always)]
    fn next_before(&mut self, line: &[u8], mut at: usize, limit: usize) -> usize {
        loop {
            if at >= limit {
                return at;
            }
            if at >= self.block_at && at - self.block_at < 64 {
                let mut hits = self.hits & (u64::MAX << (at - self.block_at));
                let (passes_over, names) = (self.passes_over, self.name_letter_seen);
                while hits != 0 {
                    let stop = self.block_at + hits.trailing_zeros() as usize;
                    if stop >= limit || !passes_over || !no_rule_acts_at(line, stop, names) {
                        return stop;
                    }
                    hits &= hits - 1;
                }
                at = self.block_at + 64;
            }
            if at >= line.len() {
                return line.len();
            }
            if at >= limit {
                return at;
            }
            // A block classified already, or the next ones.
            let block = at.wrapping_sub(self.blocks_at) / 64;
            if block < self.count {
                self.block_at = self.blocks_at + 64 * block;
                self.hits = self.blocks[block];
            } else {
                self.classify(line, at);
            }
        }
    }

    /// Finds the stops among the (up to) 64 bytes from `at` (within the line). Only a test
    /// here: the work is done out of line ([`Triggers::classify_wide`] or
    /// [`Triggers::classify_narrow`]), so the scan around it keeps its registers.
    #[inline(always)]
    fn classify(&mut self, line: &[u8], at: usize) {
        #[cfg(target_arch = "x86_64")]
        if self.stops.wide && !self.stops.none && line.len() >= 32 {
            // SAFETY: `wide`: the processor has AVX2.
            unsafe { self.classify_wide(line, at) };
            return;
        }
        self.classify_narrow(line, at);
    }

    /// [`Triggers::classify`] a block at a time (SSE2, or no vectors).
    #[inline(never)]
    fn classify_narrow(&mut self, line: &[u8], at: usize) {
        self.block_at = at;
        self.blocks_at = at;
        self.count = 1;
        if self.stops.none {
            self.hits = 0;
            self.blocks[0] = 0;
            return;
        }
        let len = line.len().saturating_sub(at).min(64);
        let (always, letters) = self.stops.find(line, at, len, !self.name_letter_seen);
        self.name_letter_seen |= letters;
        self.hits = always;
        if self.name_letter_seen && self.stops.has_named {
            self.hits |= self.stops.find_named(line, at, len);
        }
        self.blocks[0] = self.hits;
    }

    /// [`Triggers::classify`] for the (up to) 256 bytes from `at`, with AVX2; `line` has 32
    /// bytes at least.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn classify_wide(&mut self, line: &[u8], at: usize) {
        self.block_at = at;
        self.blocks_at = at;
        let len = line.len().saturating_sub(at).min(256);
        let (always, named, letters) = self.stops.find_wide(line, at, len);
        self.count = len.div_ceil(64);
        for block in 0..self.count {
            self.name_letter_seen |= letters[block];
            let named = if self.name_letter_seen && self.stops.has_named { named[block] } else { 0 };
            self.blocks[block] = always[block] | named;
        }
        self.hits = self.blocks[0];
    }
}

/// Whether the stop at `i` is one the scan would pass over anyway, told by its neighbours (and
/// `names`: whether a credential's name may end there): a `<` before no element name a class
/// redacts begins with (an end tag's `/`, a `<message`: see [`element_content`]), a `.` that
/// cannot be inside an address (see [`may_join_address`]), and likewise a `:` where no name
/// may end.
#[inline(always)]
fn no_rule_acts_at(line: &[u8], i: usize, names: bool) -> bool {
    match line[i] {
        b'<' => !line.get(i + 1).is_some_and(|&b| may_begin_element_name(b)),
        b'.' => !may_join_address(line, i),
        b':' => !names && !may_join_address(line, i),
        _ => false,
    }
}

/// The bytes a [`Triggers`] stops at, each spread over a vector register on x86-64: those it
/// always stops at (up to five: `<`, `&`, `:`, `.`, `@`) and those only after a name's letter
/// (up to two: `=`, `:`), each list padded with one of its bytes (an empty list: with one of
/// the other's, which only finds stops found anyway). The AVX2 scan looks each list up by the
/// bytes' low half instead ([`lookup_table`]).
#[derive(Clone, Copy)]
struct StopBytes {
    always: [Splat; 5],
    named: [Splat; 2],
    always_table: Table,
    named_table: Table,
    has_named: bool,
    /// Neither list has a byte.
    none: bool,
    /// Whether the processor has AVX2 (32 bytes per compare), seen when the redactor is made.
    wide: bool,
}

#[cfg(target_arch = "x86_64")]
type Splat = std::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Splat = u8;

#[cfg(target_arch = "x86_64")]
type Table = std::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Table = [u8; 16];

/// For a list of bytes whose low halves (four bits) differ, as the stop bytes' do (`<` C,
/// `&` 6, `=` D, `:` A, `.` E, `@` 0): at each low half, the list's byte with it, or else one
/// with another low half. A byte is in the list exactly if it equals the entry at its low half
/// (AVX2's byte shuffle reads the entries; it gives 0, no byte at or above 0x80, for those).
fn lookup_table(list: &[u8]) -> [u8; 16] {
    let mut table: [u8; 16] = std::array::from_fn(|low| low as u8 ^ 1);
    for &b in list {
        table[usize::from(b & 0xf)] = b;
    }
    table
}

#[cfg(target_arch = "x86_64")]
fn table(bytes: [u8; 16]) -> Table {
    // SAFETY: SSE2 is part of every x86-64; an unaligned load of the sixteen bytes of `bytes`.
    unsafe { std::arch::x86_64::_mm_loadu_si128(bytes.as_ptr().cast()) }
}
#[cfg(not(target_arch = "x86_64"))]
fn table(bytes: [u8; 16]) -> Table {
    bytes
}

/// [`lookup_table`] for a name's letters, folded to lower case (`k` B, `w` 7, `z` A).
const LETTER_TABLE: [u8; 16] = {
    let mut table = [0u8; 16];
    let mut low = 0;
    while low < 16 {
        table[low] = low as u8 ^ 1;
        low += 1;
    }
    table[0xb] = b'k';
    table[0x7] = b'w';
    table[0xa] = b'z';
    table
};

#[cfg(target_arch = "x86_64")]
fn splat(b: u8) -> Splat {
    // SAFETY: SSE2 is part of every x86-64; this only builds a register.
    unsafe { std::arch::x86_64::_mm_set1_epi8(b as i8) }
}
#[cfg(not(target_arch = "x86_64"))]
fn splat(b: u8) -> Splat {
    b
}

/// Made from a [`Redactor`]'s classes: equal when they are.
impl PartialEq for StopBytes {
    fn eq(&self, _: &StopBytes) -> bool {
        true
    }
}

impl Eq for StopBytes {}

impl std::fmt::Debug for StopBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopBytes")
    }
}

impl StopBytes {
    /// The bytes of the [`TRIGGERS`] bits `always` and `named` (none in both).
    fn new(always: u8, named: u8) -> Self {
        let bytes = |mask: u8| {
            [b'<', b'&', b'=', b':', b'.', b'@']
                .into_iter()
                .filter(|&b| TRIGGERS[b as usize] & mask != 0)
                .collect::<Vec<u8>>()
        };
        let (always, named) = (bytes(always), bytes(named));
        let pad = always.first().or(named.first()).copied().unwrap_or(0);
        let fill = |list: &[u8], out: &mut [Splat]| {
            let first = list.first().copied().unwrap_or(pad);
            for (k, slot) in out.iter_mut().enumerate() {
                *slot = splat(list.get(k).copied().unwrap_or(first));
            }
        };
        // The lists as the padding leaves them.
        let padded = |list: &[u8]| if list.is_empty() { vec![pad] } else { list.to_vec() };
        let mut stops = StopBytes {
            always: [splat(pad); 5],
            named: [splat(pad); 2],
            always_table: table(lookup_table(&padded(&always))),
            named_table: table(lookup_table(&padded(&named))),
            has_named: !named.is_empty(),
            none: always.is_empty() && named.is_empty(),
            wide: has_avx2(),
        };
        fill(&always, &mut stops.always);
        fill(&named, &mut stops.named);
        stops
    }

    /// In `block` (64 bytes at most): a bit per byte that is one of `always`, and (if
    /// `letters`) whether a `k`, `w` or `z`, either case, is among them.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn find(&self, line: &[u8], at: usize, len: usize, letters: bool) -> (u64, bool) {
        // SAFETY: SSE2 is part of every x86-64.
        unsafe { self.find_sse2(line, at, len, letters) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn find_sse2(&self, line: &[u8], at: usize, len: usize, letters: bool) -> (u64, bool) {
        use std::arch::x86_64::*;
        let s = &self.always;
        let (mut bits, mut found) = (0u64, _mm_setzero_si128());
        for_each_sixteen(line, at, len, |n, v, drop| {
            let hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, s[0]), _mm_cmpeq_epi8(v, s[1])),
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, s[2]), _mm_cmpeq_epi8(v, s[3])), _mm_cmpeq_epi8(v, s[4])),
            );
            bits |= (u64::from(_mm_movemask_epi8(hit) as u16) >> drop) << (16 * n);
            if letters {
                let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
                found = _mm_or_si128(
                    found,
                    _mm_or_si128(
                        _mm_cmpeq_epi8(folded, _mm_set1_epi8(b'k' as i8)),
                        _mm_or_si128(
                            _mm_cmpeq_epi8(folded, _mm_set1_epi8(b'w' as i8)),
                            _mm_cmpeq_epi8(folded, _mm_set1_epi8(b'z' as i8)),
                        ),
                    ),
                );
            }
        });
        (bits, _mm_movemask_epi8(found) != 0)
    }

    /// The `len` bytes (256 at most) of `line` from `at`, 32 bytes at a time (AVX2), as four
    /// blocks of 64: for each, a bit per byte that is one of `always`, likewise for `named`,
    /// and whether a `k`, `w` or `z` (either case) is among them. `line` has 32 bytes at least.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn find_wide(&self, line: &[u8], at: usize, len: usize) -> ([u64; 4], [u64; 4], [bool; 4]) {
        use std::arch::x86_64::*;
        // Each list looked up by the bytes' low halves: see `lookup_table`.
        let always = _mm256_broadcastsi128_si256(self.always_table);
        let named = _mm256_broadcastsi128_si256(self.named_table);
        let letter_table = _mm256_broadcastsi128_si256(table(LETTER_TABLE));
        let (mut always_bits, mut named_bits, mut letters) = ([0u64; 4], [0u64; 4], [false; 4]);
        for_each_thirty_two(line, at, len, |n, v, drop| {
            let hit = _mm256_cmpeq_epi8(v, _mm256_shuffle_epi8(always, v));
            let (word, shift) = (n / 2, 32 * (n % 2));
            always_bits[word] |= (u64::from(_mm256_movemask_epi8(hit) as u32) >> drop) << shift;
            let named_hit = _mm256_cmpeq_epi8(v, _mm256_shuffle_epi8(named, v));
            named_bits[word] |= (u64::from(_mm256_movemask_epi8(named_hit) as u32) >> drop) << shift;
            let folded = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
            let letter = _mm256_cmpeq_epi8(folded, _mm256_shuffle_epi8(letter_table, folded));
            letters[word] |= _mm256_movemask_epi8(letter) != 0;
        });
        (always_bits, named_bits, letters)
    }

    /// In `block` (64 bytes at most): a bit per byte that is one of `named`.
    #[cfg(target_arch = "x86_64")]
    fn find_named(&self, line: &[u8], at: usize, len: usize) -> u64 {
        // SAFETY: SSE2 is part of every x86-64.
        unsafe { self.find_named_sse2(line, at, len) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn find_named_sse2(&self, line: &[u8], at: usize, len: usize) -> u64 {
        use std::arch::x86_64::*;
        let s = &self.named;
        let mut bits = 0u64;
        for_each_sixteen(line, at, len, |n, v, drop| {
            let hit = _mm_or_si128(_mm_cmpeq_epi8(v, s[0]), _mm_cmpeq_epi8(v, s[1]));
            bits |= (u64::from(_mm_movemask_epi8(hit) as u16) >> drop) << (16 * n);
        });
        bits
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn find(&self, line: &[u8], at: usize, len: usize, letters: bool) -> (u64, bool) {
        let block = &line[at..at + len];
        let found = letters && block.iter().any(|&b| matches!(b | 0x20, b'k' | b'w' | b'z'));
        (bits_of(block, &self.always), found)
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn find_named(&self, line: &[u8], at: usize, len: usize) -> u64 {
        bits_of(&line[at..at + len], &self.named)
    }
}

/// A bit per byte of `block` that is in `set`.
#[cfg(not(target_arch = "x86_64"))]
fn bits_of(block: &[u8], set: &[u8]) -> u64 {
    block.iter().enumerate().fold(0u64, |bits, (k, b)| bits | u64::from(set.contains(b)) << k)
}

/// Calls `f` with each sixteen bytes of the `len` (64 at most) of `line` from `at`, loaded,
/// their number, and how many of their first bytes to leave out: the last ones are the
/// line's last sixteen bytes, which overlap those before (a line shorter than that: padded with
/// zeros, which are no stop byte nor a name's letter).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn for_each_sixteen(line: &[u8], at: usize, len: usize, mut f: impl FnMut(usize, std::arch::x86_64::__m128i, u32)) {
    use std::arch::x86_64::*;
    let block = &line[at..at + len];
    let (whole, tail) = block.as_chunks::<16>();
    for (n, sixteen) in whole.iter().enumerate() {
        // SAFETY: an unaligned load of the sixteen bytes `sixteen` refers to.
        f(n, unsafe { _mm_loadu_si128(sixteen.as_ptr().cast()) }, 0);
    }
    if tail.is_empty() {
        return;
    }
    if let Some(last) = line.last_chunk::<16>() {
        // SAFETY: as above, of `last`.
        f(whole.len(), unsafe { _mm_loadu_si128(last.as_ptr().cast()) }, (16 - tail.len()) as u32);
    } else {
        let mut padded = [0u8; 16];
        padded[..tail.len()].copy_from_slice(tail);
        // SAFETY: as above, of `padded`.
        f(whole.len(), unsafe { _mm_loadu_si128(padded.as_ptr().cast()) }, 0);
    }
}

/// [`for_each_sixteen`] 32 bytes at a time (AVX2); `line` has 32 bytes at least.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn for_each_thirty_two(line: &[u8], at: usize, len: usize, mut f: impl FnMut(usize, std::arch::x86_64::__m256i, u32)) {
    use std::arch::x86_64::*;
    let block = &line[at..at + len];
    let (whole, tail) = block.as_chunks::<32>();
    for (n, thirty_two) in whole.iter().enumerate() {
        // SAFETY: an unaligned load of the 32 bytes `thirty_two` refers to.
        f(n, unsafe { _mm256_loadu_si256(thirty_two.as_ptr().cast()) }, 0);
    }
    if let (false, Some(last)) = (tail.is_empty(), line.last_chunk::<32>()) {
        // SAFETY: as above, of `last`.
        f(whole.len(), unsafe { _mm256_loadu_si256(last.as_ptr().cast()) }, (32 - tail.len()) as u32);
    }
}

/// Whether the processor has AVX2.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

/// One line being redacted: what of it was copied to `out` so far.
struct Scan<'a, O: Output> {
    s: &'a [u8],
    from: usize,
    out: &'a mut O,
    /// `s[..copied]` is in `out` (redacted) once `changed`.
    copied: usize,
    changed: bool,
    /// Element content found ahead, to become a marker once the scan reaches it (the start
    /// tag's attributes before it are scanned first).
    cut: Option<(usize, usize)>,
    /// Runs of address characters before this were judged already.
    runs_seen_to: usize,
    red: &'a Redactor,
}

impl<O: Output> Scan<'_, O> {
    /// Looks at the trigger byte at `i`; returns where to go on.
    fn at(&mut self, i: usize, kind: u8) -> usize {
        let s = self.s;
        let classes = self.red.classes;
        match s[i] {
            b'<' | b'&' => {
                if self.cut.is_none() {
                    self.cut = element_content(s, i, classes);
                }
                i + 1
            }
            b'@' => self.jid(i),
            _ => {
                if kind & (AT_EQUALS | AT_COLON) != 0 {
                    if let Some((start, stop)) = named_value(s, i, self.floor()) {
                        self.replace_with_marker(start, stop);
                        return stop;
                    }
                }
                if kind & (AT_DOT | AT_COLON) != 0 && classes.contains(Classes::ADDRESSES) && may_join_address(s, i) {
                    return self.address(i);
                }
                i + 1
            }
        }
    }

    /// Nothing before this may be replaced any more.
    fn floor(&self) -> usize {
        self.copied.max(self.from)
    }

    /// Puts `s[copied..start]` and then `with`'s text into `out`, leaving out `s[start..stop]`.
    fn replace(&mut self, start: usize, stop: usize, with: impl FnOnce(&mut O)) {
        if !self.changed {
            self.out.begin(self.s.len() + 64);
            self.changed = true;
        }
        self.out.put(&self.s[self.copied..start]);
        with(self.out);
        self.copied = stop;
    }

    /// `s[start..stop]` becomes `[redacted N bytes]`. A value that reaches into the element
    /// content found ahead takes that in too.
    fn replace_with_marker(&mut self, start: usize, mut stop: usize) {
        if let Some((cut_start, cut_stop)) = self.cut {
            if stop > cut_start {
                stop = stop.max(cut_stop);
                self.cut = None;
            }
        }
        let len = stop - start;
        self.replace(start, stop, |out| push_marker(len, out));
    }

    fn pseudonym(&mut self, start: usize, stop: usize, prefix: &[u8], hashed: &[u8]) {
        let hash = siphash24(self.red.key, hashed);
        self.replace(start, stop, |out| {
            out.put(prefix);
            push_hex32((hash >> 32) as u32, out);
        });
    }

    /// A JID's localpart before the `@` at `i`.
    fn jid(&mut self, i: usize) -> usize {
        let s = self.s;
        let floor = self.floor();
        let mut start = i;
        while start > floor && is_localpart_byte(s[start - 1]) {
            start -= 1;
        }
        let domain_follows = s.get(i + 1).is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'[' || b >= 0x80);
        if start == i || !domain_follows {
            return i + 1;
        }
        let mut folded = [0u8; 64];
        let local = &s[start..i];
        if local.len() <= folded.len() {
            let folded = &mut folded[..local.len()];
            for (f, b) in folded.iter_mut().zip(local) {
                *f = b.to_ascii_lowercase();
            }
            self.pseudonym(start, i, b"u:", folded);
        } else {
            let folded = local.to_ascii_lowercase();
            self.pseudonym(start, i, b"u:", &folded);
        }
        i + 1
    }

    /// An IP address in the run of address characters around the `.` or `:` at `i`.
    fn address(&mut self, i: usize) -> usize {
        if i < self.runs_seen_to {
            return i + 1;
        }
        let s = self.s;
        let mut start = i;
        while start > self.floor() && is_address_byte(s[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < s.len() && is_address_byte(s[end]) {
            end += 1;
        }
        self.runs_seen_to = end;
        // The shortest addresses: `::1` and `0.0.0.0`.
        if end - start < 3 {
            return end;
        }
        let word_before = start > self.from && is_word_byte(s[start - 1]);
        let word_after = end < s.len() && is_word_byte(s[end]);
        if word_before || word_after {
            return end;
        }
        match address_in_run(&s[start..end]) {
            Some((len, canonical)) => {
                self.pseudonym(start, start + len, b"ip:", &canonical);
                start + len
            }
            None => end,
        }
    }
}

/// The content of the element (of a name the classes redact) whose start tag begins at `i`
/// (`<name` or, escaped, `&lt;name`): from after its start tag to its end tag, or to the end of
/// the line if it has none. `None` for anything else, an empty element and one without content.
fn element_content(s: &[u8], i: usize, classes: Classes) -> Option<(usize, usize)> {
    if s[i] == b'<' {
        element_content_in::<false>(s, i + 1, classes)
    } else if s[i..].starts_with(b"&lt;") {
        element_content_in::<true>(s, i + 4, classes)
    } else {
        None
    }
}

/// [`element_content`] for the name at `name_at`, after `<` or (`ESCAPED`) `&lt;`.
#[inline(always)]
fn element_content_in<const ESCAPED: bool>(s: &[u8], name_at: usize, classes: Classes) -> Option<(usize, usize)> {
    let (open, close): (&[u8], &[u8]) = if ESCAPED { (b"&lt;", b"&gt;") } else { (b"<", b">") };
    // The most common of them, a `<body>` without attributes, at once.
    let (name, content) = if !ESCAPED && classes.contains(Classes::BODIES) && s[name_at..].starts_with(b"body>") {
        (&b"body"[..], name_at + b"body>".len())
    } else {
        start_tag_in(s, name_at, classes, close)?
    };
    // The end tag: `open`, `/`, the name, `close`.
    let mut from = content;
    let stop = loop {
        let Some(at) = find_tag_mark(&s[from..], open) else {
            break line_end(s);
        };
        let tag = &s[from + at + open.len()..];
        if tag.first() == Some(&b'/') && starts_with_name(&tag[1..], name) && tag[1 + name.len()..].starts_with(close) {
            break from + at;
        }
        from += at + open.len();
    };
    (stop > content).then_some((content, stop))
}

/// The start tag whose name is at `name_at`, if it is one of an element the classes redact,
/// not empty (`/` before its `close`): the name, and where its content begins.
#[inline(always)]
fn start_tag_in<'s>(s: &'s [u8], name_at: usize, classes: Classes, close: &[u8]) -> Option<(&'s [u8], usize)> {
    // An end tag's `/`, a `<message`, a `<presence` go no further.
    if !s.get(name_at).is_some_and(|&b| may_begin_element_name(b)) {
        return None;
    }
    let name_len = s[name_at..].iter().position(|&b| !NAME_BYTES[b as usize]).unwrap_or(s.len() - name_at);
    let name = &s[name_at..name_at + name_len];
    let wanted = (classes.contains(Classes::BODIES) && is_body_element(name))
        || (classes.contains(Classes::CREDENTIALS) && is_credential_element(name));
    if !wanted {
        return None;
    }
    let after_name = name_at + name_len;
    let tag_goes_on =
        s.get(after_name).is_some_and(|&b| b == b' ' || b == b'\t' || b == b'/') || s[after_name..].starts_with(close);
    if !tag_goes_on {
        return None;
    }
    let tag_end = after_name + find_tag_mark(&s[after_name..], close)?;
    if s[..tag_end].ends_with(b"/") {
        return None;
    }
    Some((name, tag_end + close.len()))
}

/// The bytes an element name is taken to be made of: ASCII letters and digits, `-`.
const NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric() || b == b'-' as usize;
        b += 1;
    }
    t
};

/// Whether an element name [`element_content`] looks for may begin with `b`: the names' first
/// letters.
#[inline(always)]
fn may_begin_element_name(b: u8) -> bool {
    matches!(b, b'a' | b'b' | b'c' | b'd' | b'i' | b'o' | b'p' | b'r' | b's' | b't')
}

/// Whether `text` begins with `name` (a few bytes: compared here, not by a library call).
#[inline(always)]
fn starts_with_name(text: &[u8], name: &[u8]) -> bool {
    text.len() >= name.len() && text.iter().zip(name).all(|(a, b)| a == b)
}

/// Where `mark` (`<`, `>`, `&lt;` or `&gt;`) first is in `haystack`.
#[inline(always)]
fn find_tag_mark(haystack: &[u8], mark: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + find_byte(mark[0], &haystack[from..])?;
        if mark.len() == 1 || haystack[at + 1..].starts_with(&mark[1..]) {
            return Some(at);
        }
        from = at + 1;
    }
}

/// Where `needle` (not empty) first is in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(at) = find_byte(first, &haystack[from..]) {
        let at = from + at;
        if haystack[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where `byte` first is in `haystack`. What is sought here (a start tag's end, an end tag) is
/// mostly a few bytes on: the first sixteen are looked at with one compare (one by one if the
/// haystack is shorter), before `memchr` is called.
#[inline(always)]
fn find_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    const NEAR: usize = 16;
    let Some(near) = haystack.first_chunk::<NEAR>() else {
        return haystack.iter().position(|&b| b == byte);
    };
    let found = near_bits(byte, near);
    if found != 0 {
        return Some(found.trailing_zeros() as usize);
    }
    memchr::memchr(byte, &haystack[NEAR..]).map(|at| NEAR + at)
}

/// A bit for each of the sixteen bytes of `near` that is `byte`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn near_bits(byte: u8, near: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of every x86-64; an unaligned load of the sixteen bytes `near`
    // refers to.
    unsafe {
        let bytes = _mm_loadu_si128(near.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(byte as i8))) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn near_bits(byte: u8, near: &[u8; 16]) -> u32 {
    near.iter().enumerate().fold(0, |bits, (k, &b)| bits | u32::from(b == byte) << k)
}

/// Where the line's text ends: before its final newline.
fn line_end(s: &[u8]) -> usize {
    s.len() - usize::from(s.ends_with(b"\n"))
}

/// The value after the `:` or `=` at `i` if the name before it is one of a credential's, not
/// reaching back before `floor`.
fn named_value(s: &[u8], i: usize, floor: usize) -> Option<(usize, usize)> {
    // The name: before any spaces and a closing quote or bracket (`["password"] = "x"`, JSON).
    let mut name_end = i;
    while name_end > floor && s[name_end - 1] == b' ' {
        name_end -= 1;
    }
    for _ in 0..2 {
        if name_end > floor && matches!(s[name_end - 1], b'"' | b'\'' | b']') {
            name_end -= 1;
        }
    }
    let before = &s[floor..name_end];
    // Most names end in none of the letters these do.
    if !before.last().is_some_and(|&b| matches!(b | 0x20, b'n' | b'e' | b'd')) {
        return None;
    }
    // The next to last letter first: few names get further.
    let ends_with = |name: &&[u8]| {
        before.len() >= name.len()
            && before[before.len() - 2] | 0x20 == name[name.len() - 2]
            && before[before.len() - name.len()..].eq_ignore_ascii_case(name)
    };
    let header = HEADER_NAMES.iter().any(ends_with);
    if !header && !SECRET_NAMES.iter().any(ends_with) {
        return None;
    }
    let mut start = i + 1;
    while start < s.len() && s[start] == b' ' {
        start += 1;
    }
    let stop = match s.get(start) {
        Some(&quote @ (b'"' | b'\'')) => {
            start += 1;
            s[start..].iter().position(|&b| b == quote || b == b'\n').map_or(line_end(s), |at| start + at)
        }
        _ if header => {
            let stop = s[start..].iter().position(|&b| b == b'\n').map_or(s.len(), |at| start + at);
            // Not a carriage return's picture (U+240D) at the end of a header line.
            if s[start..stop].ends_with("\u{240d}".as_bytes()) {
                stop - 3
            } else {
                stop
            }
        }
        _ => s[start..].iter().position(|&b| ends_plain_value(b)).map_or(s.len(), |at| start + at),
    };
    (stop > start).then_some((start, stop))
}

/// Where a value without quotes ends (a query string's `&`, a word's end).
fn ends_plain_value(b: u8) -> bool {
    b <= b' ' || matches!(b, b'&' | b'#' | b';' | b',' | b'"' | b'\'' | b'<' | b'>' | b')' | b']' | b'}')
}

/// Whether the `.` or `:` at `i` can be inside an address: a dot has digits on both sides, a
/// colon a hex digit or a colon after it and no letter past `f` before it.
fn may_join_address(s: &[u8], i: usize) -> bool {
    let (Some(&before), Some(&after)) = (i.checked_sub(1).and_then(|b| s.get(b)), s.get(i + 1)) else {
        // `::1` at the start of the text, `1.2.3.4:` at its end.
        return true;
    };
    if s[i] == b'.' {
        before.is_ascii_digit() && after.is_ascii_digit()
    } else {
        (before.is_ascii_hexdigit() || !is_word_byte(before)) && (after.is_ascii_hexdigit() || after == b':')
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_address_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// Bytes a localpart is taken to be made of: not space, and none of the bytes a JID's
/// localpart may not hold (`"&'/:<>@`), nor the ones that end a word in running text.
fn is_localpart_byte(b: u8) -> bool {
    b > b' '
        && b != 0x7f
        && !matches!(b, b'"' | b'&' | b'\'' | b'/' | b':' | b'<' | b'>' | b'@')
        && !matches!(b, b'=' | b',' | b';' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'\\')
}

/// The address at the start of a run of address characters, if there is one: its length and
/// its 16 bytes (IPv4 as IPv4-mapped IPv6). What may follow it in the run: an IPv4 address, a
/// port (`:5222`) or a sentence's full stop; an IPv6 address, full stops.
fn address_in_run(run: &[u8]) -> Option<(usize, [u8; 16])> {
    if let Some((len, v4)) = ipv4_prefix(run) {
        let rest = &run[len..];
        let fits = match rest.first() {
            None | Some(b':') => true,
            Some(b'.') => !rest.get(1).is_some_and(u8::is_ascii_digit),
            _ => false,
        };
        return fits.then(|| (len, mapped(v4)));
    }
    if !run.contains(&b':') {
        return None;
    }
    let mut candidate = run;
    while let Some(shorter) = candidate.strip_suffix(b".") {
        candidate = shorter;
    }
    if let Some(bytes) = ipv6(candidate) {
        return Some((candidate.len(), bytes));
    }
    let shorter = candidate.strip_suffix(b":").filter(|c| !c.ends_with(b":"))?;
    ipv6(shorter).map(|bytes| (shorter.len(), bytes))
}

fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    bytes[12..].copy_from_slice(&v4);
    bytes
}

/// A dotted quad at the start of `s`: its length and octets.
fn ipv4_prefix(s: &[u8]) -> Option<(usize, [u8; 4])> {
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if s.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let digits = s[at..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 3 || (digits > 1 && s[at] == b'0') {
            return None;
        }
        let value = s[at..at + digits].iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
        *octet = u8::try_from(value).ok()?;
        at += digits;
    }
    Some((at, octets))
}

/// `s`, all of it, as an IPv6 address in any of RFC 4291's text forms (with at least one group).
fn ipv6(s: &[u8]) -> Option<[u8; 16]> {
    let (head, tail, compressed) = match find(s, b"::") {
        Some(at) => (&s[..at], &s[at + 2..], true),
        None => (s, &b""[..], false),
    };
    let mut groups = [0u16; 8];
    let head_count = ipv6_groups(head, &mut groups, !compressed)?;
    let mut tail_groups = [0u16; 8];
    let tail_count = if compressed { ipv6_groups(tail, &mut tail_groups, true)? } else { 0 };
    let total = head_count + tail_count;
    let complete = if compressed { (1..=7).contains(&total) } else { total == 8 };
    if !complete {
        return None;
    }
    groups[8 - tail_count..].copy_from_slice(&tail_groups[..tail_count]);
    let mut bytes = [0u8; 16];
    for (pair, group) in bytes.chunks_exact_mut(2).zip(groups) {
        pair.copy_from_slice(&group.to_be_bytes());
    }
    Some(bytes)
}

/// Colon-separated groups of 1 to 4 hex digits (the last may be a dotted quad if
/// `v4_last`) into `out`; their count.
fn ipv6_groups(part: &[u8], out: &mut [u16; 8], v4_last: bool) -> Option<usize> {
    if part.is_empty() {
        return Some(0);
    }
    let mut count = 0;
    let mut pieces = part.split(|&b| b == b':').peekable();
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        if last && v4_last && piece.contains(&b'.') {
            let (len, v4) = ipv4_prefix(piece)?;
            if len != piece.len() || count + 2 > 8 {
                return None;
            }
            out[count] = u16::from_be_bytes([v4[0], v4[1]]);
            out[count + 1] = u16::from_be_bytes([v4[2], v4[3]]);
            return Some(count + 2);
        }
        if piece.is_empty() || piece.len() > 4 || count == 8 || !piece.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        out[count] = piece.iter().fold(0u16, |v, &d| v << 4 | (char::from(d).to_digit(16).unwrap_or(0) as u16));
        count += 1;
    }
    Some(count)
}

/// `[redacted N bytes]`.
fn push_marker(len: usize, out: &mut impl Output) {
    // The common marker (fewer than ten bytes) in one piece.
    if len == 1 {
        out.put(b"[redacted 1 byte]");
        return;
    }
    if len < 10 {
        let mut marker = *b"[redacted 0 bytes]";
        marker[10] = b'0' + len as u8;
        out.put(&marker);
        return;
    }
    out.put(b"[redacted ");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = len;
    while n > 0 {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.put(&digits[at..]);
    out.put(b" bytes]");
}

fn push_hex32(n: u32, out: &mut impl Output) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 8];
    for (k, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[(n >> (28 - 4 * k)) as usize & 0xf];
    }
    out.put(&digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
    const STAMP: &str = "Dec 07 03:04:05 ";

    /// The message as a stored line (timestamp, source, level) redacted with `classes`; the
    /// message part of the result.
    fn redact(classes: Classes, message: &str) -> String {
        let line = format!("{STAMP}c2s55d0a8c3e0\tdebug\t{message}\n");
        let mut out = b"junk".to_vec();
        let changed = Redactor::new(classes, KEY).redact(line.as_bytes(), STAMP.len(), &mut out);
        let result = if changed { String::from_utf8(out).unwrap() } else { line.clone() };
        assert_eq!(changed, result != line, "the answer says whether anything changed");
        agrees_in_place(&Redactor::new(classes, KEY), line.as_bytes(), STAMP.len(), result.as_bytes());
        let rest = result.strip_prefix(STAMP).unwrap().strip_prefix("c2s55d0a8c3e0\tdebug\t").unwrap();
        rest.strip_suffix('\n').unwrap().to_string()
    }

    /// `redact_into`, in a room of every size up to a little more than the line needs, writes
    /// `expected` (the line as `redact` gives it) or says it does not fit; one in a room too
    /// small leaves nothing past the room.
    fn agrees_in_place(r: &Redactor, line: &[u8], from: usize, expected: &[u8]) {
        let needs = line.len().max(expected.len());
        for size in 0..=needs + 20 {
            let mut space = vec![b'#'; size + 8];
            let written = r.redact_into(line, from, &mut space[..size]);
            assert!(space[size..].iter().all(|&b| b == b'#'), "{size}: {line:?}");
            match written {
                Some(len) => assert_eq!(&space[..len], expected, "{size}: {line:?}"),
                None => assert!(size < needs, "fits in {size}: {line:?}"),
            }
        }
    }

    fn all(message: &str) -> String {
        redact(Classes::ALL_BUT_JIDS.with(Classes::JIDS), message)
    }

    fn ip(address: &str) -> String {
        let line = format!("{address}\n");
        let mut out = Vec::new();
        assert!(Redactor::new(Classes::ADDRESSES, KEY).redact(line.as_bytes(), 0, &mut out), "{address}");
        String::from_utf8(out).unwrap().trim_end().to_string()
    }

    #[test]
    fn class_names() {
        assert_eq!(Classes::from_name("bodies"), Some(Classes::BODIES));
        assert_eq!(Classes::from_name("jid"), None);
        assert_eq!(Classes::ALL_BUT_JIDS.names(), ["bodies", "credentials", "addresses"]);
        assert!(Classes::NONE.is_empty() && !Classes::JIDS.is_empty());
    }

    #[test]
    fn bodies_of_serialized_stanzas() {
        let c = Classes::BODIES;
        assert_eq!(
            redact(c, "Received[c2s]: <message to='romeo@example.net' type='chat' id='x1'><body>hi there</body></message>"),
            "Received[c2s]: <message to='romeo@example.net' type='chat' id='x1'><body>[redacted 8 bytes]</body></message>"
        );
        assert_eq!(
            redact(
                c,
                "<message><subject>s</subject><thread parent='p'>t1</thread><body xml:lang='en'>b</body></message>"
            ),
            "<message><subject>[redacted 1 byte]</subject><thread parent='p'>[redacted 2 bytes]</thread>\
             <body xml:lang='en'>[redacted 1 byte]</body></message>"
        );
        assert_eq!(
            redact(c, "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>a2V5</key></header><payload>cGF5</payload></encrypted>"),
            "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>a2V5</key></header><payload>[redacted 4 bytes]</payload></encrypted>"
        );
        assert_eq!(
            redact(c, "<openpgp xmlns='urn:xmpp:openpgp:0'>BASE64</openpgp>"),
            "<openpgp xmlns='urn:xmpp:openpgp:0'>[redacted 6 bytes]</openpgp>"
        );
        // XML-escaped text inside counts as its bytes as stored; the body's own markup stays.
        assert_eq!(redact(c, "<body>a &lt;b&gt; &amp; c</body>"), "<body>[redacted 19 bytes]</body>");
    }

    #[test]
    fn bodies_escaped_once_more_and_unterminated() {
        let c = Classes::BODIES;
        assert_eq!(
            redact(c, "queued &lt;message&gt;&lt;body&gt;secret&lt;/body&gt;&lt;/message&gt;"),
            "queued &lt;message&gt;&lt;body&gt;[redacted 6 bytes]&lt;/body&gt;&lt;/message&gt;"
        );
        // mod_stanza_debug may log a stanza cut across two reads: the rest of the line goes.
        assert_eq!(redact(c, "RECV: <message><body>the first half"), "RECV: <message><body>[redacted 14 bytes]");
        // A body spread over lines (continuation lines begin with a tab).
        assert_eq!(redact(c, "<body>one\n\ttwo</body>"), "<body>[redacted 8 bytes]</body>");
    }

    #[test]
    fn bodies_leave_other_elements_and_empty_ones() {
        let c = Classes::BODIES;
        for same in [
            "<message><body/></message>",
            "<message><body></body></message>",
            "<bodyguard>x</bodyguard> <bodies>x</bodies>",
            "<presence><status>away</status></presence>",
            "a < b and c & d",
            "&lt; &amp;",
        ] {
            assert_eq!(redact(c, same), same);
        }
    }

    #[test]
    fn sasl_and_passwords() {
        let c = Classes::CREDENTIALS;
        assert_eq!(
            redact(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABzM2NyM3Q=</auth>"),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>[redacted 20 bytes]</auth>"
        );
        assert_eq!(
            redact(c, "<challenge xmlns='x'>cj1h</challenge>"),
            "<challenge xmlns='x'>[redacted 4 bytes]</challenge>"
        );
        assert_eq!(
            redact(c, "<response xmlns='x'>Yz1i</response>"),
            "<response xmlns='x'>[redacted 4 bytes]</response>"
        );
        assert_eq!(redact(c, "<success xmlns='x'>dj1k</success>"), "<success xmlns='x'>[redacted 4 bytes]</success>");
        assert_eq!(redact(c, "<success xmlns='x'/>"), "<success xmlns='x'/>");
        assert_eq!(
            redact(c, "<iq type='set'><query xmlns='jabber:iq:register'><username>bill</username><password>Calliope</password></query></iq>"),
            "<iq type='set'><query xmlns='jabber:iq:register'><username>bill</username><password>[redacted 8 bytes]</password></query></iq>"
        );
        assert_eq!(
            redact(c, "<query xmlns='jabber:iq:auth'><username>bill</username><digest>48fc78be</digest></query>"),
            "<query xmlns='jabber:iq:auth'><username>bill</username><digest>[redacted 8 bytes]</digest></query>"
        );
        // Bodies are another class.
        assert_eq!(redact(c, "<body>hi</body>"), "<body>hi</body>");
    }

    #[test]
    fn http_headers() {
        let c = Classes::CREDENTIALS;
        assert_eq!(redact(c, "Authorization: Bearer abc.def"), "Authorization: [redacted 14 bytes]");
        assert_eq!(redact(c, "authorization:Basic dXNlcjpwYXNz"), "authorization:[redacted 18 bytes]");
        assert_eq!(
            redact(
                c,
                "GET /x HTTP/1.1\r\nCookie: sid=1; t=2\r\nHost: a"
                    .replace('\r', "\u{240d}")
                    .replace('\n', "\n\t")
                    .as_str()
            ),
            "GET /x HTTP/1.1\u{240d}\n\tCookie: [redacted 10 bytes]\u{240d}\n\tHost: a"
        );
        assert_eq!(redact(c, "Proxy-Authorization: Basic eA=="), "Proxy-Authorization: [redacted 10 bytes]");
        assert_eq!(
            redact(c, "headers: { [\"authorization\"] = \"Bearer t\" }"),
            "headers: { [\"authorization\"] = \"[redacted 8 bytes]\" }"
        );
        assert_eq!(redact(c, "Set-Cookie: a=b"), "Set-Cookie: [redacted 3 bytes]");
    }

    #[test]
    fn query_strings_and_named_values() {
        let c = Classes::CREDENTIALS;
        assert_eq!(redact(c, "GET /upload?token=s3cr3t&name=a.png"), "GET /upload?token=[redacted 6 bytes]&name=a.png");
        assert_eq!(
            redact(c, "POST /x?user=a&password=hunter2 HTTP/1.1"),
            "POST /x?user=a&password=[redacted 7 bytes] HTTP/1.1"
        );
        assert_eq!(redact(c, "access_token=abc#frag"), "access_token=[redacted 3 bytes]#frag");
        assert_eq!(redact(c, "{\"password\":\"p w\"}"), "{\"password\":\"[redacted 3 bytes]\"}");
        assert_eq!(redact(c, "config: password = 'x y'"), "config: password = '[redacted 3 bytes]'");
        assert_eq!(redact(c, "PASSWD=abc"), "PASSWD=[redacted 3 bytes]");
        for same in ["tokens=3 password_policy=strong", "password=", "token= ", "id=12345 name=x"] {
            assert_eq!(redact(c, same), same);
        }
    }

    #[test]
    fn ipv4_addresses() {
        let c = Classes::ADDRESSES;
        let a = ip("192.0.2.1");
        assert!(a.starts_with("ip:") && a.len() == 11 && a[3..].bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        assert_eq!(redact(c, "Client connected from 192.0.2.1"), format!("Client connected from {a}"));
        assert_eq!(redact(c, "conn 192.0.2.1:5222 up"), format!("conn {a}:5222 up"));
        assert_eq!(redact(c, "from 192.0.2.1."), format!("from {a}."));
        assert_eq!(redact(c, "ip='192.0.2.1'"), format!("ip='{a}'"));
        assert_eq!(redact(c, "[192.0.2.1]"), format!("[{a}]"));
        assert_ne!(ip("192.0.2.2"), a);
        assert_eq!(ip("0.0.0.0").len(), 11);
        assert_eq!(ip("255.255.255.255").len(), 11);
    }

    #[test]
    fn ipv6_addresses() {
        let c = Classes::ADDRESSES;
        let a = ip("2001:db8::1");
        assert_eq!(ip("2001:0db8:0:0:0:0:0:0001"), a, "one address, one pseudonym");
        assert_eq!(ip("2001:DB8::1"), a);
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"), "IPv4-mapped is the IPv4 address");
        assert_eq!(redact(c, "from [2001:db8::1]:5222"), format!("from [{a}]:5222"));
        assert_eq!(redact(c, "fe80::1%eth0 up"), format!("{}%eth0 up", ip("fe80::1")));
        assert_eq!(redact(c, "peer 2001:db8::1."), format!("peer {a}."));
        assert_eq!(redact(c, "peer 2001:db8::1: gone"), format!("peer {a}: gone"));
        for form in ["::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4", "a:b::c:d"] {
            assert!(ip(form).starts_with("ip:"), "{form}");
        }
    }

    #[test]
    fn what_is_not_an_address() {
        let c = Classes::ADDRESSES;
        for same in [
            "Prosody 0.12.4 (Lua 5.4) at 12:00:00.123 and 2026-12-07T03:04:05Z",
            "version 1.2.3.4.5, 01.02.03.04, 256.1.1.1, 1.2.3, 1.2.3.4a",
            "session c2s55d0a8c3e0: closed; s2sin7f00:ab",
            "mod_s2s.lua:123: in function; example.com:saslauth",
            "mac aa:bb:cc:dd:ee:ff, 1:2:3:4:5:6:7, 1::2::3, 1:::2, :: and 12345:1::",
            "deadbeef.cafe 4.3.2.1.in-addr.arpa",
            "x1.2.3.4 1.2.3.4_b",
        ] {
            assert_eq!(redact(c, same), same);
        }
    }

    #[test]
    fn jids_keep_the_domain() {
        let c = Classes::JIDS;
        let line = redact(c, "to='romeo@example.net' from juliet@example.com/balcony and Juliet@example.com");
        let parts: Vec<&str> = line.split(['\'', ' ']).collect();
        let romeo = parts[1];
        let juliet = parts[4];
        assert!(romeo.starts_with("u:") && romeo.ends_with("@example.net") && romeo.len() == 22, "{line}");
        assert!(juliet.starts_with("u:") && juliet.ends_with("@example.com/balcony"), "{line}");
        assert_eq!(parts[6], juliet.strip_suffix("/balcony").unwrap(), "case folded: one user, one pseudonym");
        assert_ne!(romeo[..10], juliet[..10]);
        for same in ["@example.com", "a@ b", "x@", "user@/x", "no jid here"] {
            assert_eq!(redact(c, same), same);
        }
        assert!(redact(c, "jid=user@example.com").starts_with("jid=u:"));
        assert!(!redact(c, "mailto:ünï@example.com").contains("ünï"));
    }

    #[test]
    fn true_leaves_jids_and_redacts_the_rest() {
        let c = Classes::ALL_BUT_JIDS;
        let line = redact(c, "<auth>AHU=</auth> from 192.0.2.1 user@example.com <body>x</body>");
        assert_eq!(
            line,
            format!(
                "<auth>[redacted 4 bytes]</auth> from {} user@example.com <body>[redacted 1 byte]</body>",
                ip("192.0.2.1")
            )
        );
    }

    #[test]
    fn the_start_tag_is_scanned_before_the_content_goes() {
        let line = all("<message from='juliet@example.com/b' to='192.0.2.1'><body>192.0.2.9 romeo@x</body></message>");
        assert!(line.starts_with("<message from='u:") && line.contains("to='ip:"), "{line}");
        assert!(line.ends_with("<body>[redacted 17 bytes]</body></message>"), "{line}");
        // A header value takes the rest of the line, elements in it too.
        assert_eq!(all("Authorization: x <body>secret</body>"), "Authorization: [redacted 21 bytes]");
        // Also when it stands in a start tag, with the element's content found already.
        assert_eq!(all("<body authorization: x>secret</body> 1"), "<body authorization: [redacted 17 bytes]");
    }

    #[test]
    fn nothing_to_redact_is_left_byte_for_byte() {
        let c = Classes::ALL_BUT_JIDS.with(Classes::JIDS);
        let mut out = b"untouched".to_vec();
        for line in [
            "Dec 07 03:04:05 c2s55d0a8c3e0\tdebug\tClient disconnected: connection closed\n",
            "Dec 07 03:04:05 example.com:saslauth\tinfo\tAuthenticated as someone at 12:00:00 (Prosody 13.0.2)\n",
            "\u{2400}\u{1f600} ünïcödé <presence/> id=42 a.b:c\n",
            "",
            "Dec 07 03:04:05 ",
        ] {
            assert!(!Redactor::new(c, KEY).redact(line.as_bytes(), STAMP.len().min(line.len()), &mut out), "{line}");
            assert_eq!(out, b"untouched");
        }
        // The timestamp is never looked at.
        let stamped = "1.2.3.4 x@y\tdebug\tm\n";
        assert!(!Redactor::new(c, KEY).redact(stamped.as_bytes(), 12, &mut out));
        assert!(!Redactor::new(Classes::NONE, KEY).redact(b"a 1.2.3.4 <body>x</body>\n", 0, &mut out));
    }

    #[test]
    fn pseudonyms_are_stable_within_a_key_and_differ_across_keys() {
        let r = Redactor::new(Classes::ADDRESSES, KEY);
        let other = Redactor::new(Classes::ADDRESSES, [1, 2]);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        r.redact(b"1.2.3.4\n", 0, &mut a);
        r.redact(b"1.2.3.4\n", 0, &mut b);
        other.redact(b"1.2.3.4\n", 0, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn the_eight_byte_scan_finds_what_a_byte_scan_finds() {
        let r = Redactor::new(Classes::ALL_BUT_JIDS.with(Classes::JIDS), KEY);
        let naive = |line: &[u8], at: usize, mask: u8| {
            (at..line.len()).find(|&i| TRIGGERS[line[i] as usize] & mask != 0).unwrap_or(line.len())
        };
        let alphabet = b"a<&=:.@\x00\x01\x7f\x80\xff\xc3\xa9<>;-";
        let mut seed = 12345u32;
        for len in 0..40 {
            for _ in 0..50 {
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        // Mostly plain letters, like a log line.
                        let pick = (seed >> 16) as usize % (alphabet.len() * 4);
                        if pick < alphabet.len() {
                            alphabet[pick]
                        } else {
                            b'x'
                        }
                    })
                    .collect();
                for mask in [r.triggers, r.triggers_without_names] {
                    for at in 0..=len {
                        assert_eq!(next_trigger(&line, at, mask), naive(&line, at, mask), "{line:?} {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_block_scan_finds_every_trigger_across_blocks_and_where_the_scan_goes_on() {
        let r = Redactor::new(Classes::ALL_BUT_JIDS.with(Classes::JIDS), KEY);
        let naive = |line: &[u8], at: usize, mask: u8| {
            (at..line.len()).find(|&i| TRIGGERS[line[i] as usize] & mask != 0).unwrap_or(line.len())
        };
        let alphabet = b"a<&=:.@\x00\x80\xff";
        let mut seed = 777u32;
        for len in [63, 64, 65, 127, 128, 129, 200, 300] {
            for _ in 0..20 {
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        let pick = (seed >> 16) as usize % (alphabet.len() * 8);
                        alphabet.get(pick).copied().unwrap_or(b'x')
                    })
                    .collect();
                for mask in [r.triggers, r.triggers_without_names, AT_DOT, AT_AT] {
                    // One cursor, as a line's scan uses it: on from each stop, and on from
                    // places further ahead (the scan skips what it replaced).
                    let mut triggers = Triggers::new(mask);
                    let mut at = 0;
                    while at < len {
                        let found = triggers.next(&line, at);
                        assert_eq!(found, naive(&line, at, mask), "{line:?} {at}");
                        at = found + 1 + (found % 3) * 17;
                    }
                }
            }
        }
    }

    #[test]
    fn the_scan_passes_over_only_stops_no_rule_acts_on() {
        // The scan leaves out stops: `=` and (without `addresses`) `:` until a credential name's
        // letter was seen, `</`, and a `.` without a digit on both sides. Lines made of what the
        // rules look at redact the same as with every stop looked at.
        let pieces = [
            "1",
            "9",
            "25",
            "0",
            ".",
            ".",
            ":",
            "::",
            "<",
            "/",
            "</",
            ">",
            "body",
            "<body>",
            "</body>",
            "<auth>",
            "&lt;",
            "&gt;",
            "&lt;body&gt;",
            "password",
            "Token",
            "cookie:",
            "=",
            " ",
            " ",
            "a",
            "k",
            "W",
            "z",
            "x",
            "ff",
            "@",
            "user@example.com",
            "'",
            "\"",
            "]",
            "\n",
            "192.0.2.1",
            "1.2",
            ".3",
            "2001:db8::1",
            "::1",
            "Authorization",
            "id=",
            "0.12.4",
            "12:00:00",
        ];
        let all = Classes::ALL_BUT_JIDS.with(Classes::JIDS);
        let mut seed = 4242u32;
        let mut random = |below: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as usize % below
        };
        let (mut fast, mut full) = (Vec::new(), Vec::new());
        for classes in [all, Classes::ALL_BUT_JIDS, Classes::ADDRESSES, Classes::CREDENTIALS, Classes::BODIES] {
            let r = Redactor::new(classes, KEY);
            for _ in 0..3000 {
                let count = 1 + random(45);
                let line: String = (0..count).map(|_| pieces[random(pieces.len())]).collect();
                let line = line.as_bytes();
                for from in [0, line.len().min(5)] {
                    let changed = r.redact(line, from, &mut fast);
                    let changed_with_every_stop = r.redact_with(line, from, &mut full, Triggers::new(r.triggers));
                    assert_eq!(changed, changed_with_every_stop, "{}", String::from_utf8_lossy(line));
                    if changed {
                        assert_eq!(
                            String::from_utf8_lossy(&fast),
                            String::from_utf8_lossy(&full),
                            "{}",
                            String::from_utf8_lossy(line)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_wide_and_narrow_block_scans_agree() {
        // With AVX2 (if this processor has it: four blocks at once) and SSE2 alone (a block at a
        // time): the same stops, and a name's letter seen where there is one, for lines around
        // 32, 64 and 256 bytes, from every place.
        if !has_avx2() {
            return;
        }
        let alphabet = b"a<&=:.@\x00\x80\xffkWz";
        let is_letter = |b: &u8| matches!(b | 0x20, b'k' | b'w' | b'z');
        let mut seed = 99u32;
        for len in [32, 33, 63, 64, 65, 95, 96, 97, 130, 255, 256, 257, 300] {
            for _ in 0..6 {
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        let pick = (seed >> 16) as usize % (alphabet.len() * 3);
                        alphabet.get(pick).copied().unwrap_or(b'x')
                    })
                    .collect();
                for (always, named) in [
                    (AT_XML | AT_COLON | AT_DOT | AT_AT, AT_EQUALS),
                    (AT_DOT, AT_EQUALS | AT_COLON),
                    (AT_XML, 0),
                    (0, AT_EQUALS),
                    (AT_AT | AT_EQUALS, AT_COLON),
                ] {
                    let stops = StopBytes::new(always, named);
                    for at in 0..len {
                        let wide_len = (len - at).min(256);
                        // SAFETY: this processor has AVX2 (checked above); the line has 32 bytes.
                        let (wide, wide_named, letters) = unsafe { stops.find_wide(&line, at, wide_len) };
                        for block in 0..wide_len.div_ceil(64) {
                            let from = at + 64 * block;
                            let narrow_len = (len - from).min(64);
                            let (narrow, letter) = stops.find(&line, from, narrow_len, true);
                            assert_eq!(wide[block], narrow, "{line:?} {at} {block}");
                            assert_eq!(wide_named[block], stops.find_named(&line, from, narrow_len), "{line:?} {at}");
                            // A letter in the block is seen; one seen is in the line up to the
                            // block's end (the last loads overlap the bytes before).
                            let end = from + narrow_len;
                            for seen in [letters[block], letter] {
                                assert!(seen || !line[from..end].iter().any(is_letter), "{line:?} {at}");
                                assert!(!seen || line[..end].iter().any(is_letter), "{line:?} {at}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_body_without_attributes_is_redacted_only_for_bodies() {
        // `<body>` is looked for before any other element name: the same rules hold for it.
        let c = Classes::CREDENTIALS.with(Classes::ADDRESSES);
        assert_eq!(redact(c, "<message><body>hi</body></message>"), "<message><body>hi</body></message>");
        let c = Classes::BODIES;
        assert_eq!(redact(c, "<body>hi</body>"), "<body>[redacted 2 bytes]</body>");
        assert_eq!(redact(c, "<body></body><body>"), "<body></body><body>");
        assert_eq!(redact(c, "<body>a</bodyx>b</body>"), "<body>[redacted 10 bytes]</body>");
        assert_eq!(redact(c, "<bodyx>hi</bodyx>"), "<bodyx>hi</bodyx>");
    }

    #[test]
    fn find_byte_finds_the_first_at_every_place_and_length() {
        for len in 0..48 {
            for at in 0..=len {
                let mut haystack = vec![b'x'; len];
                if at < len {
                    haystack[at] = b'>';
                    // A later one is not the first.
                    if at + 1 < len {
                        haystack[len - 1] = b'>';
                    }
                }
                let expected = (at < len).then_some(at);
                assert_eq!(find_byte(b'>', &haystack), expected, "{len} {at}");
            }
        }
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        let r = Redactor::new(Classes::ALL_BUT_JIDS.with(Classes::JIDS), KEY);
        let mut out = Vec::new();
        for line in [
            &b"<"[..],
            b"&",
            b"&lt;",
            b"<body",
            b"<body>",
            b"&lt;body&gt;",
            b"=",
            b"password=",
            b"token=\"",
            b"Authorization:",
            b"@",
            b"a@",
            b":",
            b".",
            b"::::::::::::::::::::",
            b"1.1.1.1.1.1.1.1.1.1:1:1:1:1:1:1:1:1:1:1:1",
            b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            b"\xff\xfe<body>\xff</body>@\xff",
        ] {
            for line in [line, &[line, b"\n"].concat()] {
                let expected = if r.redact(line, 0, &mut out) { out.clone() } else { line.to_vec() };
                agrees_in_place(&r, line, 0, &expected);
            }
        }
        let long_local = format!("{}@example.com\n", "a".repeat(200));
        assert!(r.redact(long_local.as_bytes(), 0, &mut out));
        assert!(out.starts_with(b"u:"));
    }
}
