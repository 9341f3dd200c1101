//! Looking inside a ring without emptying it: the filters of the admin shell's `tail`, `grep`
//! and `dump` (minimum level, source, age, regular expression) and the newest lines that pass.
//!
//! A line is `<timestamp><source>\t<level>\t<message>\n`; the ring keeps where its source begins
//! (see `ring::Meta`), so the timestamp format never matters here.

use std::collections::VecDeque;
use std::time::Duration;

use regex::bytes::Regex;

use super::level::Level;
use super::ring::{Line, Meta, Ring};

/// Which lines a query wants. The default passes every line.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Lines at this level or above.
    pub min_level: Option<Level>,
    /// Lines whose source matches: exactly, or as a glob where `*` stands for any text.
    pub source: Option<String>,
    /// Lines stamped with this unix second or a later one (see [`oldest_second_within`]).
    pub since: Option<u32>,
    /// Lines (without their newline) in which this expression finds a match.
    pub pattern: Option<Regex>,
    /// Lines whose source is none of these (the admin shell's own lines).
    pub not_sources: Vec<Vec<u8>>,
    /// Lines whose source is one of these (the sessions of a JID), if given.
    pub only_sources: Option<Vec<Vec<u8>>>,
}

/// A regular expression for [`Filter::pattern`], or why `text` is not one.
pub fn pattern(text: &str) -> Result<Regex, String> {
    // Limits generous for any pattern a person types, and a bound on the memory a scan can take.
    regex::bytes::RegexBuilder::new(text)
        .size_limit(16 << 20)
        .build()
        .map_err(|e| format!("invalid regular expression: {}", e.to_string().replace('\n', " ")))
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.min_level.is_none()
            && self.source.is_none()
            && self.since.is_none()
            && self.pattern.is_none()
            && self.not_sources.is_empty()
            && self.only_sources.is_none()
    }

    /// Whether `line` (whole, with its newline) passes, given its source's offset and time.
    pub fn passes(&self, line: &[u8], source_at: usize, time: u32) -> bool {
        if self.since.is_some_and(|since| time < since) {
            return false;
        }
        if !self.not_sources.is_empty() || self.only_sources.is_some() {
            let source = fields(line, source_at).map(|(source, _)| source);
            if source.is_some_and(|source| self.not_sources.iter().any(|not| not == source)) {
                return false;
            }
            if let Some(only) = &self.only_sources {
                if !source.is_some_and(|source| only.iter().any(|one| one == source)) {
                    return false;
                }
            }
        }
        if self.min_level.is_some() || self.source.is_some() {
            let Some((source, level)) = fields(line, source_at) else { return false };
            if let Some(min) = self.min_level {
                let level = std::str::from_utf8(level).ok().and_then(Level::from_name);
                if level.is_none_or(|level| level < min) {
                    return false;
                }
            }
            if let Some(glob) = &self.source {
                if !glob_matches(glob.as_bytes(), source) {
                    return false;
                }
            }
        }
        match &self.pattern {
            Some(pattern) => pattern.is_match(line.strip_suffix(b"\n").unwrap_or(line)),
            None => true,
        }
    }

    /// What this filter lets through, in words (for a filtered dump's notice line).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(level) = self.min_level {
            parts.push(format!("level >= {}", level.name()));
        }
        if let Some(source) = &self.source {
            parts.push(format!("source {source}"));
        }
        if let Some(since) = self.since {
            parts.push(format!("logged since unix time {since}"));
        }
        if let Some(pattern) = &self.pattern {
            parts.push(format!("matching /{}/", pattern.as_str()));
        }
        if !self.not_sources.is_empty() {
            parts.push("not of the admin shell".into());
        }
        if let Some(only) = &self.only_sources {
            let names: Vec<_> = only.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
            parts.push(format!("of the sessions {}", names.join(" ")));
        }
        parts.join(", ")
    }
}

/// The oldest second a line may be stamped with to be at most `span` old at `now` (seconds,
/// nanoseconds): the cutoff of `since` and `max_age`.
///
/// A line keeps only the whole second it was logged in, rounded down (`time()`, which may lag the
/// precise clock by a tick but is never ahead of it), so a line stamped `t` was logged at `t` or
/// later. It is certainly no older than `span` only if `t >= now - span`: the cutoff is
/// `now - span` rounded up to a whole second. So no line older than `span` passes, every line
/// at most `span - 1 s` old does (less that tick), and one logged in between may be left out:
/// it shares its second with lines that are older.
pub fn oldest_second_within(span: Duration, now: (i64, u32)) -> u32 {
    const NANOS: i128 = 1_000_000_000;
    let (seconds, nanos) = now;
    let now = i128::from(seconds) * NANOS + i128::from(nanos);
    // A Duration's nanoseconds (< 2^94) always fit.
    let oldest = now - i128::try_from(span.as_nanos()).unwrap_or(i128::MAX);
    let rounded_up = oldest.div_euclid(NANOS) + i128::from(oldest.rem_euclid(NANOS) > 0);
    u32::try_from(rounded_up.max(0)).unwrap_or(u32::MAX)
}

/// The source and level fields of a line, if it has them.
fn fields(line: &[u8], source_at: usize) -> Option<(&[u8], &[u8])> {
    if source_at == usize::from(Meta::NO_SOURCE) {
        return None;
    }
    let rest = line.get(source_at..)?;
    let tab = rest.iter().position(|&b| b == b'\t')?;
    let (source, rest) = (&rest[..tab], &rest[tab + 1..]);
    let level = &rest[..rest.iter().position(|&b| b == b'\t')?];
    Some((source, level))
}

/// Whether `text` matches `glob`, in which `*` stands for any run of bytes (also none).
pub fn glob_matches(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    // Where the last `*` was, and the text position it now covers up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if g < glob.len() && glob[g] == text[t] {
            g += 1;
            t += 1;
        } else if let Some((star_g, star_t)) = star {
            // Let the last `*` take one byte more and try again after it.
            g = star_g + 1;
            t = star_t + 1;
            star = Some((star_g, star_t + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

/// The newest lines that pass, at most `limit` of them, oldest first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub lines: VecDeque<Vec<u8>>,
    /// Lines that passed, `lines` included.
    pub matched: u64,
    /// Lines looked at.
    pub scanned: u64,
}

/// Scans every line of `ring` (a snapshot: this takes a while for a large ring).
#[cfg(test)]
pub fn newest(ring: &Ring, filter: &Filter, limit: usize) -> Found {
    newest_unless(ring, filter, limit, || false).unwrap_or_default()
}

/// [`newest`], asking `stop` every [`STOP_EVERY`] lines: `None` once it says stop.
pub fn newest_unless(ring: &Ring, filter: &Filter, limit: usize, stop: impl Fn() -> bool) -> Option<Found> {
    let mut newest: VecDeque<Line<'_>> = VecDeque::with_capacity(limit.min(1024));
    let mut matched = 0;
    let finished = each_passing(ring, filter, stop, |line, _| {
        matched += 1;
        if newest.len() == limit {
            newest.pop_front();
        }
        if limit > 0 {
            newest.push_back(line);
        }
    });
    finished.then(|| Found {
        lines: newest.into_iter().map(Line::to_vec).collect(),
        matched,
        scanned: ring.lines() as u64,
    })
}

/// How often a scan asks whether to stop, in lines.
pub const STOP_EVERY: usize = 4096;

/// A ring holding only the lines of `ring` that pass, for a filtered dump.
pub fn select(ring: &Ring, filter: &Filter) -> Ring {
    let mut out = Ring::new(ring.limit());
    each_passing(ring, filter, || false, |line, bytes| out.push(bytes, line.meta));
    out
}

/// Calls `passed` with each line that passes, and its bytes in one piece; false if `stop`
/// said stop before the end.
fn each_passing<'a>(
    ring: &'a Ring,
    filter: &Filter,
    stop: impl Fn() -> bool,
    mut passed: impl FnMut(Line<'a>, &[u8]),
) -> bool {
    let mut joined = Vec::new();
    for (i, line) in ring.iter().enumerate() {
        if i % STOP_EVERY == STOP_EVERY - 1 && stop() {
            return false;
        }
        let bytes = contiguous(&line, &mut joined);
        if filter.passes(bytes, usize::from(line.meta.source_at), line.meta.time) {
            passed(line, bytes);
        }
    }
    true
}

/// The line's bytes: borrowed when it lies in one chunk, joined into `buffer` otherwise.
pub(crate) fn contiguous<'a>(line: &Line<'a>, buffer: &'a mut Vec<u8>) -> &'a [u8] {
    let mut pieces = line.pieces();
    let first = pieces.next().unwrap_or(&[]);
    let Some(second) = pieces.next() else { return first };
    buffer.clear();
    buffer.extend_from_slice(first);
    buffer.extend_from_slice(second);
    for piece in pieces {
        buffer.extend_from_slice(piece);
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::ring::Limit;

    const STAMP: &str = "Nov 22 12:00:00 ";

    fn ring_of(lines: &[(&str, &str, &str, u32)]) -> Ring {
        let mut ring = Ring::new(Limit::Lines(100_000));
        for (source, level, message, time) in lines {
            let line = format!("{STAMP}{source}\t{level}\t{message}\n");
            ring.push(line.as_bytes(), Meta { time: *time, source_at: STAMP.len() as u16 });
        }
        ring
    }

    fn messages(found: &Found) -> Vec<String> {
        found
            .lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).rsplit('\t').next().unwrap_or("").trim_end().to_string())
            .collect()
    }

    fn sample() -> Ring {
        ring_of(&[
            ("c2s55d0a8c3e7f0", "debug", "one", 100),
            ("mod_s2s", "error", "two", 110),
            ("c2s55d0a8c3e7f0", "info", "three", 120),
            ("s2sout4f2", "warn", "four\twith a tab", 130),
            ("general", "debug", "five", 140),
        ])
    }

    #[test]
    fn globs_match_whole_sources() {
        assert!(glob_matches(b"mod_s2s", b"mod_s2s"));
        assert!(!glob_matches(b"mod_s2s", b"mod_s2s_auth"));
        assert!(glob_matches(b"c2s*", b"c2s55d0a8c3e7f0"));
        assert!(glob_matches(b"*s2s*", b"s2sout4f2"));
        assert!(glob_matches(b"*", b""));
        assert!(glob_matches(b"a*b*c", b"axxbyybzc"));
        assert!(!glob_matches(b"a*b*c", b"axxbyybz"));
        assert!(!glob_matches(b"", b"x"));
    }

    #[test]
    fn each_filter_and_their_combination() {
        let ring = sample();
        let all = newest(&ring, &Filter::default(), 10);
        assert_eq!(messages(&all), ["one", "two", "three", "with a tab", "five"]);
        assert_eq!((all.matched, all.scanned), (5, 5));

        let warn = Filter { min_level: Some(Level::Warn), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &warn, 10)), ["two", "with a tab"]);

        let session = Filter { source: Some("c2s55d0a8c3e7f0".into()), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &session, 10)), ["one", "three"]);

        let s2s = Filter { source: Some("*s2s*".into()), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &s2s, 10)), ["two", "with a tab"]);

        let recent = Filter { since: Some(120), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &recent, 10)), ["three", "with a tab", "five"]);

        let grep = Filter { pattern: Some(pattern("t[wh]").expect("valid")), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &grep, 10)), ["two", "three", "with a tab"]);

        let both = Filter { source: Some("c2s*".into()), min_level: Some(Level::Info), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &both, 10)), ["three"]);

        let not_these =
            Filter { not_sources: vec![b"c2s55d0a8c3e7f0".to_vec(), b"general".to_vec()], ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &not_these, 10)), ["two", "with a tab"]);
        let only = Filter { only_sources: Some(vec![b"c2s55d0a8c3e7f0".to_vec()]), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &only, 10)), ["one", "three"]);
        let none = Filter { only_sources: Some(Vec::new()), ..Filter::default() };
        assert_eq!(newest(&ring, &none, 10).matched, 0);
    }

    #[test]
    fn the_newest_within_the_limit_and_how_many_more() {
        let ring = sample();
        let found = newest(&ring, &Filter::default(), 2);
        assert_eq!(messages(&found), ["with a tab", "five"]);
        assert_eq!(found.matched, 5);
        assert!(newest(&ring, &Filter::default(), 0).lines.is_empty());
    }

    #[test]
    fn anchors_apply_to_the_line_without_its_newline() {
        let ring = sample();
        let end = Filter { pattern: Some(pattern("five$").expect("valid")), ..Filter::default() };
        assert_eq!(messages(&newest(&ring, &end, 10)), ["five"]);
        let start = Filter { pattern: Some(pattern("^Nov 22").expect("valid")), ..Filter::default() };
        assert_eq!(newest(&ring, &start, 10).matched, 5);
    }

    #[test]
    fn a_scan_told_to_stop_gives_nothing() {
        let lines: Vec<_> = (0..STOP_EVERY as u32 * 3).map(|i| ("a", "debug", "x", i)).collect();
        let ring = ring_of(&lines);
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() == 2
        };
        assert_eq!(newest_unless(&ring, &Filter::default(), 10, stop), None);
        assert_eq!(asked.get(), 2, "asked every STOP_EVERY lines, and no more after stop");
        assert_eq!(newest_unless(&ring, &Filter::default(), 10, || false).map(|f| f.matched), Some(lines.len() as u64));
    }

    #[test]
    fn bad_patterns_say_why() {
        let error = pattern("(unclosed").expect_err("invalid");
        assert!(error.starts_with("invalid regular expression: "), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn lines_without_fields_pass_only_filters_that_need_none() {
        let mut ring = Ring::new(Limit::Lines(10));
        ring.push(b"no tabs at all\n", Meta { time: 5, source_at: 0 });
        let level = Filter { min_level: Some(Level::Debug), ..Filter::default() };
        assert_eq!(newest(&ring, &level, 10).matched, 0);
        let word = Filter { pattern: Some(pattern("tabs").expect("valid")), ..Filter::default() };
        assert_eq!(newest(&ring, &word, 10).matched, 1);
    }

    #[test]
    fn lines_across_chunks_are_read_whole() {
        let mut ring = Ring::new(Limit::Lines(100_000));
        let long = "x".repeat(5000);
        for i in 0..40 {
            let line = format!("{STAMP}src{i}\tinfo\t{long} end{i}\n");
            ring.push(line.as_bytes(), Meta { time: i, source_at: STAMP.len() as u16 });
        }
        let filter = Filter {
            source: Some("src3*".into()),
            pattern: Some(pattern("end3\\d$").expect("v")),
            ..Filter::default()
        };
        assert_eq!(newest(&ring, &filter, 100).matched, 10);
        let selected = select(&ring, &filter);
        assert_eq!(selected.lines(), 10);
        assert!(selected.iter().all(|l| l.to_vec().ends_with(b"\n") && l.meta.time >= 30));
    }

    #[test]
    fn since_leaves_out_every_line_older_than_the_span() {
        let span = Duration::from_secs(2);
        // At 102.5 s, a line stamped 100 may have been logged at 100.0 (2.5 s ago): out. One
        // stamped 101 was logged at 101.0 or later (at most 1.5 s ago): in.
        assert_eq!(oldest_second_within(span, (102, 500_000_000)), 101);
        // On the second itself, a line stamped 100 is exactly 2 s old at most.
        assert_eq!(oldest_second_within(span, (102, 0)), 100);
        assert_eq!(oldest_second_within(span, (102, 1)), 101);
        assert_eq!(oldest_second_within(Duration::from_millis(500), (102, 400_000_000)), 102);
        assert_eq!(oldest_second_within(Duration::from_millis(500), (102, 600_000_000)), 103);
        assert_eq!(oldest_second_within(Duration::ZERO, (102, 0)), 102);
        assert_eq!(oldest_second_within(Duration::from_secs(1000), (102, 0)), 0, "before 1970: every line");
        assert_eq!(oldest_second_within(Duration::MAX, (i64::MAX, 999_999_999)), 0);
        assert_eq!(oldest_second_within(span, (i64::MAX, 0)), u32::MAX);

        // Whatever the fraction of the second: a line passes exactly when it cannot have been
        // logged more than `span` ago (which takes in every line logged at most `span - 1 s` ago).
        let ring = ring_of(&[("a", "debug", "older", 99), ("a", "debug", "old", 100), ("a", "debug", "new", 101)]);
        for nanos in (0..1_000_000_000).step_by(50_000_000) {
            let since = Some(oldest_second_within(span, (102, nanos)));
            let passed = messages(&newest(&ring, &Filter { since, ..Filter::default() }, 10));
            for (stamp, message) in [(99, "older"), (100, "old"), (101, "new")] {
                // Logged in [stamp, stamp + 1): at most this old.
                let oldest_possible = 102.0 + f64::from(nanos) / 1e9 - f64::from(stamp);
                assert_eq!(passed.contains(&message.to_string()), oldest_possible <= 2.0, "{message} at .{nanos}");
            }
        }
    }

    #[test]
    fn describes_itself() {
        let filter = Filter {
            min_level: Some(Level::Warn),
            source: Some("mod_s2s".into()),
            since: None,
            pattern: Some(pattern("fail").expect("valid")),
            not_sources: Vec::new(),
            only_sources: None,
        };
        assert_eq!(filter.describe(), "level >= warn, source mod_s2s, matching /fail/");
        assert!(Filter::default().is_empty());
    }
}
