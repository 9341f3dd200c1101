//! Which files are a sink's dumps: `filename_template` read as a pattern, for `keep_dumps`, and
//! the names of compressed dumps (`compress`).
//!
//! The pattern is the template as [`Template::render`] renders it, except that the
//! values that change from dump to dump or from process to process become wildcards of the
//! right kind: `{count}`, `{time}` and `{pid}` any run of digits, `{time|yyyymmdd}` exactly 8
//! digits, `{time|hhmmss}` exactly 6. Everything else is literal and must be there exactly:
//! the text between variables, `{paths.*}` as rendered, unknown variables as written. A
//! name matches if it is such a rendering, optionally followed by `.gz` or `.zst` (the same
//! template's dumps while `compress` was on). Wildcards must all be in the file name: the
//! folder is one fixed folder.
//!
//! The pattern comes from the parsed template itself ([`Template::pattern`]), walked as it is
//! rendered; a test renders many templates with many values and checks that the pattern
//! matches every result.

use std::cmp::Ordering;
use std::time::SystemTime;

use super::options::{Compression, Retention, Target};
use super::template::{Piece, Template};

/// Suffixes a dump file of a template may carry (see the module doc).
const SUFFIXES: [&str; 2] = [".gz", ".zst"];

/// The file names one template makes, in one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamePattern {
    /// The folder, as the template renders it (empty: the current folder).
    pub(crate) dir: String,
    name: Vec<Piece>,
}

/// What a template says about the files it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Each dump gets a file of its own (`{count}` or `{time}` in the file name).
    PerDump(NamePattern),
    /// Every dump of a process goes to the same file (no `{count}` or `{time}`).
    Shared,
    /// A variable is in the folder part: the files are not in one folder.
    VaryingFolder,
}

/// Reads `template` (with Prosody's `paths`) as the pattern of the files it makes.
pub(crate) fn shape(template: &Template, paths: &[(String, String)]) -> Shape {
    let pieces = template.pattern(paths);
    if !pieces.per_dump {
        return Shape::Shared;
    }
    // The folder ends at the last '/', which must come after every wildcard.
    let Some(last) = pieces.pieces.iter().rposition(|p| matches!(p, Piece::Literal(t) if t.contains('/'))) else {
        return Shape::PerDump(NamePattern { dir: String::new(), name: pieces.pieces });
    };
    if pieces.pieces[..last].iter().any(|p| matches!(p, Piece::Digits { .. })) {
        return Shape::VaryingFolder;
    }
    let mut dir = String::new();
    for piece in &pieces.pieces[..last] {
        if let Piece::Literal(text) = piece {
            dir.push_str(text);
        }
    }
    let Piece::Literal(split) = &pieces.pieces[last] else { return Shape::VaryingFolder };
    let slash = split.rfind('/').unwrap_or(0);
    dir.push_str(&split[..slash]);
    if dir.is_empty() {
        dir.push('/');
    }
    let mut name = Vec::new();
    if slash + 1 < split.len() {
        name.push(Piece::Literal(split[slash + 1..].to_string()));
    }
    name.extend(pieces.pieces[last + 1..].iter().cloned());
    Shape::PerDump(NamePattern { dir, name })
}

impl NamePattern {
    /// Whether `name` (a file name, no folder) is one this template makes, compressed or not.
    pub(crate) fn matches_name(&self, name: &str) -> bool {
        matches(&self.name, name.as_bytes())
            || SUFFIXES.iter().any(|s| name.strip_suffix(s).is_some_and(|n| matches(&self.name, n.as_bytes())))
    }
}

/// Whether `pieces` match all of `text`: the positions each piece can end at, piece by piece.
fn matches(pieces: &[Piece], text: &[u8]) -> bool {
    let mut at = vec![false; text.len() + 1];
    at[0] = true;
    for piece in pieces {
        let mut next = vec![false; text.len() + 1];
        for start in (0..=text.len()).filter(|&i| at[i]) {
            match piece {
                Piece::Literal(lit) => {
                    if text[start..].starts_with(lit.as_bytes()) {
                        next[start + lit.len()] = true;
                    }
                }
                Piece::Digits { len } => {
                    let run = text[start..].iter().take_while(|b| b.is_ascii_digit()).count();
                    match len {
                        Some(n) if *n <= run => next[start + n] = true,
                        Some(_) => {}
                        None => (1..=run).for_each(|n| next[start + n] = true),
                    }
                }
            }
        }
        at = next;
    }
    at[text.len()]
}

/// The warning for Prosody's log when `keep_dumps` or `keep_dumps_for` is set but can have no
/// effect, because the dumps do not get files of their own; `None` when both are unset or work.
/// For the sink's config problems (a warning), where Prosody's `paths` are known
/// (`lua::binding::new_sink`).
pub(crate) fn keep_dumps_warning(target: &Target, retention: &Retention, paths: &[(String, String)]) -> Option<String> {
    let keep = retention.keep_dumps.map(|n| format!("'keep_dumps' ({n})"));
    let keep_for = retention.keep_for.map(|d| format!("'keep_dumps_for' ({})", super::duration::shown(d)));
    let subject = match (keep, keep_for) {
        (None, None) => return None,
        (Some(one), None) | (None, Some(one)) => format!("Option {one} has"),
        (Some(keep), Some(keep_for)) => format!("Options {keep} and {keep_for} have"),
    };
    let why = match target {
        Target::File(name) => format!("'filename' ({name:?}) sends every dump to the same file"),
        Target::Template(template) => match (shape(template, paths), template.source()) {
            (Shape::PerDump(_), _) => return None,
            (Shape::Shared, template) => format!(
                "filename_template {template:?} gives every dump of a process the same file (it has no {{count}} or {{time}})"
            ),
            (Shape::VaryingFolder, template) => format!(
                "filename_template {template:?} has variables in its folder part (only the file name may vary)"
            ),
        },
    };
    Some(format!(
        "{subject} no effect: {why}; use a filename_template whose file name has {{count}} or {{time}}, such as \"{{paths.data}}/ringbuffer-logs-{{pid}}-{{count}}.log\""
    ))
}

/// Names that mean Prosody's own standard output or error (no file is made for them).
pub(crate) fn is_standard_stream(path: &str) -> bool {
    matches!(path, "/dev/stdout" | "/proc/self/fd/1" | "/dev/fd/1" | "/dev/stderr" | "/proc/self/fd/2" | "/dev/fd/2")
}

/// The name a dump is written to: the rendered name, plus `.gz` or `.zst` when compressed
/// (standard streams keep their names).
pub(crate) fn dump_name(rendered: String, compress: Option<Compression>) -> String {
    match compress {
        Some(codec) if !is_standard_stream(&rendered) => rendered + codec.suffix(),
        _ => rendered,
    }
}

/// Compares names with runs of digits compared by value (`d-9` before `d-10`), then bytewise.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let run = |s: &[u8], k: usize| k + s[k..].iter().take_while(|c| c.is_ascii_digit()).count();
            let (ei, ej) = (run(x, i), run(y, j));
            let trim = |s: &[u8]| {
                let zeros = s.iter().take_while(|&&c| c == b'0').count();
                s[zeros..].to_vec()
            };
            let (p, q) = (trim(&x[i..ei]), trim(&y[j..ej]));
            let by_value = p.len().cmp(&q.len()).then_with(|| p.cmp(&q));
            if by_value != Ordering::Equal {
                return by_value;
            }
            (i, j) = (ei, ej);
        } else {
            if x[i] != y[j] {
                return x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| x.cmp(y))
}

/// How recent a dump file is, for `keep_dumps`. Files this process finished dumping to rank by
/// the order those dumps finished, and after (newer than) every other file; other files (an
/// earlier process's dumps, say) rank by modification time. File times alone cannot order the
/// dumps: a burst of dumps leaves them equal, and a clock set back leaves them wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Recency {
    /// Not a dump this process finished: the file's modification time.
    Modified(SystemTime),
    /// The file of the n-th dump this process finished (its latest one, if several).
    Finished(u64),
}

/// Which of a sink's files (`files`: name and how recent) to delete so that the newest `keep`
/// remain: all but the newest `keep`, by recency, then name (numbers by value); oldest first.
pub(crate) fn to_delete(files: &[(String, Recency)], keep: usize) -> Vec<String> {
    let mut files: Vec<&(String, Recency)> = files.iter().collect();
    files.sort_by(|(a, ra), (b, rb)| ra.cmp(rb).then_with(|| natural_cmp(a, b)));
    let doomed = files.len().saturating_sub(keep);
    files[..doomed].iter().map(|(name, _)| name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::template::{Values, Zone};
    use std::time::Duration;

    fn shape(template: &str, paths: &[(String, String)]) -> Shape {
        super::shape(&Template::parse(template), paths)
    }

    /// Renders in UTC: the test needs no `TZ`.
    fn render(template: &str, values: &Values) -> String {
        Template::parse(template).render_in(values, Zone::Utc)
    }

    fn paths() -> Vec<(String, String)> {
        vec![("data".into(), "/var/lib/prosody".into()), ("config".into(), "/etc/prosody".into())]
    }

    fn pattern(template: &str) -> NamePattern {
        match shape(template, &paths()) {
            Shape::PerDump(p) => p,
            other => panic!("{template}: {other:?}"),
        }
    }

    /// Whether the full `path` is one the pattern makes.
    fn matches_path(p: &NamePattern, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = if dir.is_empty() && path.starts_with('/') { "/" } else { dir };
        dir == p.dir && p.matches_name(name)
    }

    #[test]
    fn the_default_template() {
        let p = pattern("{paths.data}/ringbuffer-logs-{pid}-{count}.log");
        assert_eq!(p.dir, "/var/lib/prosody");
        for name in ["ringbuffer-logs-1-0.log", "ringbuffer-logs-4242-17.log", "ringbuffer-logs-1-0.log.zst"] {
            assert!(p.matches_name(name), "{name}");
        }
        for name in [
            "ringbuffer-logs-1-0.log.bak",
            "ringbuffer-logs--0.log",
            "ringbuffer-logs-1-0.txt",
            "ringbuffer-logs-1-x.log",
            "ringbuffer-logs-1-0.log.gz.gz",
            "ringbuffer-logs-1-0-1.log",
            "xringbuffer-logs-1-0.log",
            "ringbuffer-logs-1-0.log.xz",
            "traceback-1-0.log",
            "ringbuffer-logs-1- 0.log",
            "ringbuffer-logs-1-+0.log",
        ] {
            assert!(!p.matches_name(name), "{name}");
        }
    }

    #[test]
    fn date_filters_are_fixed_width_digits() {
        let p = pattern("{paths.data}/dump-{time|yyyymmdd}-{time|hhmmss}.log");
        assert!(p.matches_name("dump-20261122-101500.log"));
        assert!(!p.matches_name("dump-2026112-101500.log"));
        assert!(!p.matches_name("dump-20261122-1015000.log"));
        assert!(!p.matches_name("dump-2026-11-22-101500.log"));
    }

    #[test]
    fn literal_parts_are_exact_and_special_characters_are_plain() {
        let p = pattern("/tmp/a*b?[c] (d)-{count}.log");
        assert!(p.matches_name("a*b?[c] (d)-3.log"));
        assert!(!p.matches_name("aXb?[c] (d)-3.log"));
        assert!(!p.matches_name("a*bX[c] (d)-3.log"));
        let p = pattern("/tmp/{nope}-{count}-{paths.nope}");
        assert!(p.matches_name("{nope}-3-{paths.nope}"));
        assert!(!p.matches_name("x-3-{paths.nope}"));
    }

    #[test]
    fn adjacent_wildcards_and_no_folder() {
        let p = pattern("{pid}{count}");
        assert_eq!(p.dir, "");
        assert!(p.matches_name("12") && p.matches_name("1234.gz"));
        assert!(!p.matches_name("1") && !p.matches_name("1a2"));
        assert_eq!(pattern("/{count}").dir, "/");
    }

    #[test]
    fn shapes() {
        for shared in ["{paths.data}/fixed.log", "{paths.data}/d-{pid}.log", "{count#}x.log", "/t/{count~{count}}"] {
            assert_eq!(shape(shared, &paths()), Shape::Shared, "{shared}");
        }
        assert_eq!(shape("/t/{count}/x.log", &paths()), Shape::VaryingFolder);
        assert_eq!(shape("/t/{time|yyyymmdd}/{count}.log", &paths()), Shape::VaryingFolder);
        assert!(matches!(shape("/t/{nope?{count}}.log", &paths()), Shape::PerDump(_)));
        assert!(matches!(shape("/t/{paths.data&{count}}.log", &paths()), Shape::PerDump(_)));
        // A '/' inside a literal path value is folder, not file name.
        let p = pattern("{paths.data}-{count}");
        assert_eq!(p.dir, "/var/lib");
        assert!(p.matches_name("prosody-5"));
    }

    /// The pattern matches whatever `Template::render` makes, with any values.
    #[test]
    fn every_rendering_matches_its_pattern() {
        let templates = [
            "{paths.data}/ringbuffer-logs-{pid}-{count}.log",
            "{paths.data}/traceback-{pid}-{count}.log",
            "/tmp/d-{time}.log",
            "/tmp/d-{time|yyyymmdd}-{time|hhmmss}-{count}.log",
            "/tmp/d-{time|yyyymmdd|hhmmss}-{count|bogus}.log",
            "/tmp/{count|yyyymmdd}{pid|hhmmss}",
            "/tmp/d-{nope?x{count}y}-{pid&p{pid}}-{count~never}-{count#gone}-{count%gone}.log",
            "/tmp/{paths}-{paths.config}-{paths.}-{paths.data.x}-{count!}-{count!?z}.log",
            "/tmp/{count}{pid}{time}",
            "/tmp/{{count}}-{count}-{-}{ 1}-{count",
            "/tmp/{paths.config|yyyymmdd}-{count}",
            "relative-{count}.log",
            "{count}",
        ];
        let values = [(1, 0, 0), (4242, 7, 1_790_000_000), (4_194_304, 123_456_789, 253_402_300_799)];
        for template in templates {
            let p = pattern(template);
            for (pid, count, time) in values {
                let rendered = render(template, &Values { pid, count, time, paths: paths() });
                assert!(matches_path(&p, &rendered), "{template} -> {rendered}: {p:?}");
                for suffix in SUFFIXES {
                    assert!(matches_path(&p, &format!("{rendered}{suffix}")));
                }
                assert!(!matches_path(&p, &format!("{rendered}.1")), "{rendered}");
                assert!(!matches_path(&p, &format!("x{rendered}")), "{rendered}");
            }
        }
    }

    #[test]
    fn keep_dumps_warns_when_it_cannot_work() {
        let retention = |keep| Retention { keep_dumps: keep, compress: None, max_age: None, keep_for: None };
        let template = |t: &str| Target::Template(t.into());
        assert_eq!(keep_dumps_warning(&template("/t/{pid}.log"), &retention(None), &[]), None);
        assert_eq!(keep_dumps_warning(&template("/t/{count}.log"), &retention(Some(3)), &[]), None);
        for target in [Target::File("/t/x.log".into()), template("/t/{pid}.log"), template("/t/{count}/x.log")] {
            let text = keep_dumps_warning(&target, &retention(Some(3)), &[]).expect("a warning");
            assert!(text.starts_with("Option 'keep_dumps' (3) has no effect: "), "{text}");
            let aged = Retention { keep_for: Some(Duration::from_secs(14 * 86_400)), ..retention(None) };
            let text = keep_dumps_warning(&target, &aged, &[]).expect("a warning");
            assert!(text.starts_with("Option 'keep_dumps_for' (14d) has no effect: "), "{text}");
            let both = Retention { keep_dumps: Some(3), ..aged };
            let text = keep_dumps_warning(&target, &both, &[]).expect("a warning");
            assert!(text.starts_with("Options 'keep_dumps' (3) and 'keep_dumps_for' (14d) have no effect: "), "{text}");
        }
        let aged = Retention { keep_for: Some(Duration::from_secs(60)), ..retention(None) };
        assert_eq!(keep_dumps_warning(&template("/t/{count}.log"), &aged, &[]), None);
    }

    #[test]
    fn compressed_names() {
        assert_eq!(dump_name("/t/x.log".into(), Some(Compression::Zstd)), "/t/x.log.zst");
        assert_eq!(dump_name("/t/x.log".into(), Some(Compression::Gzip)), "/t/x.log.gz");
        assert_eq!(dump_name("/t/x.log".into(), None), "/t/x.log");
        assert_eq!(dump_name("/dev/stderr".into(), Some(Compression::Gzip)), "/dev/stderr");
    }

    #[test]
    fn natural_order() {
        let mut names = vec!["d-10.log", "d-9.log", "d-010.log.gz", "d-1.log", "d-a.log", "d-2.log.zst"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["d-1.log", "d-2.log.zst", "d-9.log", "d-10.log", "d-010.log.gz", "d-a.log"]);
        assert_eq!(natural_cmp("d-010.log", "d-10.log"), Ordering::Less);
    }

    #[test]
    fn deletes_all_but_the_newest() {
        let at = |s: u64| Recency::Modified(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let files: Vec<(String, Recency)> = (0..10).map(|n| (format!("d-{n}.log"), at(100 + n))).collect();
        assert_eq!(to_delete(&files, 3), (0..7).map(|n| format!("d-{n}.log")).collect::<Vec<_>>());
        // Same time: by name, numbers by value.
        let tied: Vec<(String, Recency)> = (8..12).map(|n| (format!("d-{n}.log"), at(5))).collect();
        assert_eq!(to_delete(&tied, 2), ["d-8.log", "d-9.log"]);
        assert!(to_delete(&files, 100).is_empty());
        assert_eq!(to_delete(&files, 0).len(), 10);
    }

    #[test]
    fn finished_dumps_rank_by_the_order_they_finished_after_every_other_file() {
        let at = |s: u64| Recency::Modified(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let files = vec![
            // Finished in the order c, a, b, whatever their names and times say.
            ("d-1.log".to_string(), Recency::Finished(7)),
            ("d-2.log".to_string(), Recency::Finished(8)),
            ("d-3.log".to_string(), Recency::Finished(6)),
            // An earlier process's file with a time in the future (a clock set back since).
            ("d-0.log".to_string(), at(u32::MAX.into())),
            ("d-9.log".to_string(), at(1)),
        ];
        assert_eq!(to_delete(&files, 3), ["d-9.log", "d-0.log"]);
        assert_eq!(to_delete(&files, 1), ["d-9.log", "d-0.log", "d-3.log", "d-1.log"]);
    }
}
