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
fn is_body_element(name: &[u8]) -> bool {
    matches!(name, b"body" | b"subject" | b"thread" | b"payload" | b"openpgp")
}

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
        Redactor { classes, key, triggers, triggers_without_names }
    }

    pub(crate) fn classes(&self) -> Classes {
        self.classes
    }

    /// Redacts `line` from byte `from` on (what comes before, the timestamp, stays). True if
    /// anything was: `out` then holds the whole line redacted. False: `line` stands as it is
    /// (and `out` is left as it was).
    pub(crate) fn redact(&self, line: &[u8], from: usize, out: &mut Vec<u8>) -> bool {
        // A credential's name has a `k` (token, cookie), a `w` (password, passwd) or a `z`
        // (authorization): without them, no `=` or `:` need a look for one.
        let names =
            self.classes.contains(Classes::CREDENTIALS) && holds_a_name_letter(line.get(from..).unwrap_or_default());
        let mask = if names { self.triggers } else { self.triggers_without_names };
        let mut scan =
            Scan { s: line, from, out, copied: 0, changed: false, cut: None, runs_seen_to: 0, names, red: self };
        let mut triggers = Triggers::new(mask);
        let mut i = from;
        loop {
            let at = triggers.next(line, i);
            let end = scan.cut.map_or(line.len(), |(start, _)| start);
            i = if at < end {
                scan.at(at, TRIGGERS[line[at] as usize] & mask).max(at + 1)
            } else {
                match scan.cut.take() {
                    Some((start, stop)) => {
                        scan.replace_with_marker(start, stop);
                        stop
                    }
                    None => break,
                }
            };
        }
        if scan.changed {
            scan.out.extend_from_slice(&line[scan.copied..]);
        }
        scan.changed
    }
}

/// Where the next byte whose [`TRIGGERS`] bits meet `mask` is, from `at` on (the line's length:
/// nowhere).
#[cfg(test)]
fn next_trigger(line: &[u8], at: usize, mask: u8) -> usize {
    Triggers::new(mask).next(line, at)
}

/// Finds the bytes whose [`TRIGGERS`] bits meet a mask, 64 bytes at a time: each block is
/// classified at once (byte comparisons without branches, which the compiler makes vector
/// instructions) into one bit per byte, the scan's stops then taking their turn from the bits.
struct Triggers {
    mask: u8,
    /// The block last classified begins here; `hits` has a bit for each of its bytes that is a
    /// stop.
    block_at: usize,
    hits: u64,
}

impl Triggers {
    fn new(mask: u8) -> Self {
        // No block classified yet: one that ends before any line begins.
        Triggers { mask, block_at: usize::MAX - 64, hits: 0 }
    }

    /// The next trigger at or after `at` (the line's length: none).
    #[inline(always)]
    fn next(&mut self, line: &[u8], mut at: usize) -> usize {
        loop {
            if at >= self.block_at && at - self.block_at < 64 {
                let hits = self.hits & (u64::MAX << (at - self.block_at));
                if hits != 0 {
                    return self.block_at + hits.trailing_zeros() as usize;
                }
                at = self.block_at + 64;
            }
            if at >= line.len() {
                return line.len();
            }
            self.classify(line, at);
        }
    }

    /// Finds the stops among the 64 bytes from `at` (zeros past the line's end: no trigger
    /// is zero).
    fn classify(&mut self, line: &[u8], at: usize) {
        let rest = line.get(at..).unwrap_or_default();
        let block = match rest.first_chunk::<64>() {
            Some(block) => *block,
            None => {
                let mut block = [0u8; 64];
                block[..rest.len()].copy_from_slice(rest);
                block
            }
        };
        // Each byte's `TRIGGERS` bits (a table cannot be looked up sixteen bytes at a time).
        let mut stops = [0u8; 64];
        for (stop, &b) in stops.iter_mut().zip(&block) {
            let bits = ((u8::from(b == b'<') | u8::from(b == b'&')) * AT_XML)
                | (u8::from(b == b'=') * AT_EQUALS)
                | (u8::from(b == b':') * AT_COLON)
                | (u8::from(b == b'.') * AT_DOT)
                | (u8::from(b == b'@') * AT_AT);
            *stop = u8::from(bits & self.mask != 0);
        }
        self.block_at = at;
        self.hits = bit_per_byte(&stops);
    }
}

/// Whether `text` has a `k`, `w` or `z`, either case (all of it looked at, without branches:
/// vector instructions).
fn holds_a_name_letter(text: &[u8]) -> bool {
    text.iter().fold(0u8, |any, &b| {
        let folded = b | 0x20;
        any | u8::from(folded == b'k') | u8::from(folded == b'w') | u8::from(folded == b'z')
    }) != 0
}

/// 64 bytes, each 0 or 1, as 64 bits (bit k: byte k).
#[inline(always)]
fn bit_per_byte(bytes: &[u8; 64]) -> u64 {
    let mut bits = 0u64;
    for (n, eight) in bytes.as_chunks::<8>().0.iter().enumerate() {
        // The multiplication moves byte k's bit (0 or 1) to bit 56 + k.
        bits |= (u64::from_le_bytes(*eight).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * n);
    }
    bits
}

/// One line being redacted: what of it was copied to `out` so far.
struct Scan<'a> {
    s: &'a [u8],
    from: usize,
    out: &'a mut Vec<u8>,
    /// `s[..copied]` is in `out` (redacted) once `changed`.
    copied: usize,
    changed: bool,
    /// Element content found ahead, to become a marker once the scan reaches it (the start
    /// tag's attributes before it are scanned first).
    cut: Option<(usize, usize)>,
    /// Runs of address characters before this were judged already.
    runs_seen_to: usize,
    /// Whether the line may hold a credential's name (see `Redactor::redact`).
    names: bool,
    red: &'a Redactor,
}

impl Scan<'_> {
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
                if kind & (AT_EQUALS | AT_COLON) != 0 && self.names {
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
    fn replace(&mut self, start: usize, stop: usize, with: impl FnOnce(&mut Vec<u8>)) {
        if !self.changed {
            self.out.clear();
            self.changed = true;
        }
        self.out.extend_from_slice(&self.s[self.copied..start]);
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
        self.replace(start, stop, |out| {
            out.extend_from_slice(b"[redacted ");
            push_decimal(len, out);
            out.extend_from_slice(if len == 1 { b" byte]" } else { b" bytes]" });
        });
    }

    fn pseudonym(&mut self, start: usize, stop: usize, prefix: &[u8], hashed: &[u8]) {
        let hash = siphash24(self.red.key, hashed);
        self.replace(start, stop, |out| {
            out.extend_from_slice(prefix);
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
    let (open, close, name_at) = if s[i] == b'<' {
        (&b"<"[..], &b">"[..], i + 1)
    } else if s[i..].starts_with(b"&lt;") {
        (&b"&lt;"[..], &b"&gt;"[..], i + 4)
    } else {
        return None;
    };
    // The names' first letters (an end tag's `/`, a `<message`, a `<presence` go no further).
    if !matches!(s.get(name_at), Some(b'a' | b'b' | b'c' | b'd' | b'i' | b'o' | b'p' | b'r' | b's' | b't')) {
        return None;
    }
    let name_len = s[name_at..].iter().take_while(|&&b| b.is_ascii_alphanumeric() || b == b'-').count();
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
    let tag_end = after_name + find(&s[after_name..], close)?;
    if s[..tag_end].ends_with(b"/") {
        return None;
    }
    let content = tag_end + close.len();
    // The end tag: `open`, `/`, the name, `close`.
    let mut from = content;
    let stop = loop {
        let Some(at) = find(&s[from..], open) else {
            break line_end(s);
        };
        let tag = &s[from + at + open.len()..];
        if tag.first() == Some(&b'/') && tag[1..].starts_with(name) && tag[1 + name_len..].starts_with(close) {
            break from + at;
        }
        from += at + open.len();
    };
    (stop > content).then_some((content, stop))
}

/// Where `needle` (not empty) first is in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(at) = memchr::memchr(first, &haystack[from..]) {
        let at = from + at;
        if haystack[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
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

fn push_decimal(n: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_hex32(n: u32, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        out.push(HEX[(n >> (shift * 4)) as usize & 0xf]);
    }
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
        let rest = result.strip_prefix(STAMP).unwrap().strip_prefix("c2s55d0a8c3e0\tdebug\t").unwrap();
        rest.strip_suffix('\n').unwrap().to_string()
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
            r.redact(line, 0, &mut out);
            let with_newline = [line, b"\n"].concat();
            r.redact(&with_newline, 0, &mut out);
        }
        let long_local = format!("{}@example.com\n", "a".repeat(200));
        assert!(r.redact(long_local.as_bytes(), 0, &mut out));
        assert!(out.starts_with(b"u:"));
    }
}
