//! `dump_on_match`: the regular expression a sink checks each captured line's message against,
//! and that check on a line as the ring stores it.
//!
//! Rust `regex` syntax: matching takes time linear in the message, whatever the pattern, and a
//! pattern with a literal part (`Slow event`, `Traceback`, a JID) is looked for with the crate's
//! literal search before anything else runs. The pattern is compiled once, when the config is
//! read, under a small size limit, so that a costly one is refused quickly rather than built.
//!
//! The module's own lines never match: its report of a dump quotes the pattern (and a report
//! of a failed dump may contain anything), so a dump could otherwise open the next window.

use std::hash::{Hash, Hasher};

use regex::bytes::{Regex, RegexBuilder};

/// Compiled programs larger than this are refused (`(?:\w{40}){20}` is, in a few milliseconds;
/// literal words, a JID or a few alternatives are far below it).
const SIZE_LIMIT: usize = 1 << 20;

/// The source of the lines the module itself logs (it is a global module), and the tab after it.
const OWN_SOURCE: &[u8] = b"mod_log_ringbuffer\t";

/// A compiled `dump_on_match` pattern. Two are equal if their texts are (for the reload key).
#[derive(Debug, Clone)]
pub(crate) struct MessagePattern {
    regex: Regex,
}

impl MessagePattern {
    /// Compiles `text`, or says why it is not a usable pattern (on one line).
    pub(crate) fn new(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty pattern would match every line".into());
        }
        let regex = RegexBuilder::new(text).size_limit(SIZE_LIMIT).build().map_err(|e| one_line(&e.to_string()))?;
        Ok(MessagePattern { regex })
    }

    /// The pattern as the config gave it.
    pub(crate) fn source(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the message of `line` (a line `<timestamp><source>\t<level>\t<message>\n` as it
    /// is stored, its source at `source_at` and its message at `message_at`: the formatting
    /// knows where, no need to look) matches, unless the module logged it.
    pub(crate) fn matches_line(&self, line: &[u8], source_at: usize, message_at: usize) -> bool {
        if line.get(source_at..).is_some_and(|fields| fields.starts_with(OWN_SOURCE)) {
            return false;
        }
        let message = line.get(message_at..).unwrap_or_default();
        self.regex.is_match(message.strip_suffix(b"\n").unwrap_or(message))
    }
}

impl PartialEq for MessagePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source() == other.source()
    }
}

impl Eq for MessagePattern {}

impl Hash for MessagePattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source().hash(state);
    }
}

/// A regex error as one line for Prosody's log. A syntax error's text spans several lines: the
/// pattern, a caret under the fault, then `error: why`; it becomes `why (at character N)`.
fn one_line(error: &str) -> String {
    let lines: Vec<&str> = error.lines().collect();
    let Some(why) = lines.iter().find_map(|line| line.strip_prefix("error: ")) else {
        return error.trim().trim_end_matches('.').to_string();
    };
    // The pattern and the caret line are indented by 4; a pattern of several lines is shown
    // numbered, where a position would mislead.
    let carets: Vec<usize> = lines.iter().filter_map(|line| line.find('^')).collect();
    match (lines.len(), carets.as_slice()) {
        (4, [caret]) if *caret >= 4 => format!("regex parse error: {why} (at character {})", caret - 4 + 1),
        _ => format!("regex parse error: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `line`'s source at `source_at` and its message after the next two tabs.
    fn matches(pattern: &MessagePattern, line: &[u8], source_at: usize) -> bool {
        let tabs: Vec<usize> =
            line.iter().enumerate().filter(|(i, &b)| *i >= source_at && b == b'\t').map(|(i, _)| i).collect();
        pattern.matches_line(line, source_at, tabs[1] + 1)
    }

    #[test]
    fn the_message_alone_is_matched() {
        let pattern = MessagePattern::new("^Slow event").expect("compiles");
        let line = b"Dec 07 03:00:00 general\twarn\tSlow event handler: 1.2s\n";
        assert!(matches(&pattern, line, 16));
        assert!(!matches(&pattern, b"Dec 07 03:00:00 Slow event\twarn\tsomething else\n", 16), "the source is not");
        let level = MessagePattern::new("warn").expect("compiles");
        assert!(!matches(&level, b"general\twarn\tall is well\n", 0), "nor the level");
        let end = MessagePattern::new("1.2s$").expect("compiles");
        assert!(matches(&end, line, 16), "the newline is not part of the message");
        let tab = MessagePattern::new("b\tc").expect("compiles");
        assert!(matches(&tab, b"src\tinfo\ta b\tc\n", 0), "a tab within the message");
        assert!(MessagePattern::new("^$").expect("compiles").matches_line(b"s\tl\t\n", 0, 4), "an empty message");
        assert!(!pattern.matches_line(b"short", 0, 99), "an offset past the end: no message");
    }

    #[test]
    fn the_module_s_own_lines_never_match() {
        let pattern = MessagePattern::new("Slow event").expect("compiles");
        let report = b"mod_log_ringbuffer\tinfo\tDumped 5 buffered lines to x.log (dump_on_match = \"Slow event\")\n";
        assert!(!matches(&pattern, report, 0));
        assert!(matches(&pattern, b"mod_log_ringbuffer2\tinfo\tSlow event\n", 0));
        assert!(matches(&pattern, b"mod_log\tinfo\tSlow event\n", 0));
    }

    #[test]
    fn equal_by_text() {
        let a = MessagePattern::new("alice@example\\.com").expect("compiles");
        assert_eq!(a, MessagePattern::new("alice@example\\.com").expect("compiles"));
        assert_ne!(a, MessagePattern::new("bob@example\\.com").expect("compiles"));
        assert_eq!(a.source(), "alice@example\\.com");
    }

    #[test]
    fn bad_patterns_say_why_on_one_line() {
        let why = MessagePattern::new("Slow (event").expect_err("unclosed group");
        assert_eq!(why, "regex parse error: unclosed group (at character 6)");
        let why = MessagePattern::new(r"a\").expect_err("incomplete escape");
        assert!(why.starts_with("regex parse error: incomplete escape") && !why.contains('\n'), "{why}");
        let why = MessagePattern::new(r"\w{1000}").expect_err("too big");
        assert_eq!(why, "Compiled regex exceeds size limit of 1048576 bytes");
        assert!(MessagePattern::new("").expect_err("empty").contains("every line"));
    }

    #[test]
    fn a_costly_pattern_is_refused() {
        for costly in [r"(?:\w{40}){20}", r"(?i)[\p{L}\p{N}]{300}", r"\w{1000}"] {
            let why = MessagePattern::new(costly).expect_err(costly);
            assert!(why.contains("size limit"), "{costly}: {why}");
        }
    }
}
