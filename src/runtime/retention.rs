//! `keep_dumps` and `keep_dumps_for`: a sink's old dump files are deleted. After a successful
//! dump, the files beyond the newest N (`keep_dumps`) and those last modified longer ago than
//! the span (`keep_dumps_for`) go; a file goes if either rule says so. `keep_dumps_for` is also
//! applied once an hour (the Lua side's timer, [`prune_aged_later`]), so files age out while no
//! dump is made. A sink's files are the regular files in its dump folder whose names its
//! `filename_template` makes (see `pure::dump_names`), compressed or not; nothing else is ever
//! touched (no other name, no symlink, no folder, nothing in another folder).
//!
//! The newest N are the files of the N dumps this process finished last, then the other files
//! by modification time (see `dump_names::Recency`). A file a dump is queued for or being
//! written into neither counts nor is deleted (see `dump_ledger`), so a burst of dumps keeps
//! the newest N *finished* dumps, and "Dumped … to X" always names a file that holds the dump
//! until N newer dumps have finished (or until it is older than `keep_dumps_for`). The file a
//! dump just went into is never deleted by that dump's own pass.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::writer::{self, DumpOrigin, Lane};
use super::{dump_ledger, reports};
use crate::pure::dump_names::{self, NamePattern, Shape};
use crate::pure::duration;
use crate::pure::options::{SinkOptions, Target};

/// What deletes a sink's dump files.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rules {
    /// `keep_dumps`: all but the newest N.
    pub(crate) keep: Option<usize>,
    /// `keep_dumps_for`: files last modified longer ago than this before `now`.
    pub(crate) keep_for: Option<Duration>,
    pub(crate) now: Option<SystemTime>,
}

impl Rules {
    fn of(options: &SinkOptions) -> Rules {
        let retention = &options.retention;
        Rules { keep: retention.keep_dumps, keep_for: retention.keep_for, now: Some(SystemTime::now()) }
    }

    /// Whether a file last modified at `modified` is older than `keep_dumps_for` allows (a
    /// time in the future is not).
    fn too_old(&self, modified: SystemTime) -> bool {
        match (self.keep_for, self.now) {
            (Some(span), Some(now)) => now.duration_since(modified).is_ok_and(|age| age > span),
            _ => false,
        }
    }
}

/// The pattern of a sink's dump files, if its dumps get files of their own in one folder.
fn pattern_of(options: &SinkOptions, paths: &[(String, String)]) -> Option<NamePattern> {
    let Target::Template(template) = &options.target else { return None };
    match dump_names::shape(template, paths) {
        Shape::PerDump(pattern) => Some(pattern),
        _ => None,
    }
}

/// Called after a dump to `written` (the sink's configured file) succeeded: records it as this
/// process's newest dump, deletes what `keep_dumps` and `keep_dumps_for` say must go and
/// reports it (deleted files at info level, failures as warnings).
pub(crate) fn after_dump(options: &SinkOptions, paths: &[(String, String)], written: &str) {
    dump_ledger::finished(written);
    let rules = Rules::of(options);
    if rules.keep.is_none() && rules.keep_for.is_none() {
        return;
    }
    let Some(pattern) = pattern_of(options, paths) else { return };
    let dir = Path::new(written).parent().map_or_else(String::new, |d| d.display().to_string());
    report(prune(&pattern, written, rules), &rules, &dir);
}

/// `keep_dumps_for`'s pass without a dump (once an hour): deletes the files of a sink (its
/// `options` and `paths`) older than the span, on the files lane (the folder may be slow), as a
/// dump in flight so that the Lua side polls for its report. Returns whether a pass was started
/// (not without `keep_dumps_for` or files of its own, nor once shutdown has begun).
pub(crate) fn prune_aged_later(options: &SinkOptions, paths: &[(String, String)]) -> bool {
    let (Some(keep_for), Some(pattern)) = (options.retention.keep_for, pattern_of(options, paths)) else {
        return false;
    };
    let Some(writer::Admission::Background(flight)) = writer::admit(DumpOrigin::NativeThread) else { return false };
    writer::submit(
        Lane::Files,
        Box::new(move || {
            prune_aged(&pattern, keep_for);
            drop(flight);
        }),
    );
    true
}

/// Deletes the files of `pattern` older than `keep_for` (`keep_dumps_for`), and reports it.
fn prune_aged(pattern: &NamePattern, keep_for: Duration) {
    let rules = Rules { keep: None, keep_for: Some(keep_for), now: Some(SystemTime::now()) };
    let dir = match pattern.dir.as_str() {
        "" => Path::new("."),
        dir => Path::new(dir),
    };
    match prune_in(pattern, dir, None, rules) {
        // No folder yet: no dump was made into it, nothing to delete.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        outcome => report(outcome, &rules, &pattern.dir),
    }
}

/// Reports a pass's outcome for Prosody's log.
fn report(outcome: io::Result<Pruned>, rules: &Rules, dir: &str) {
    let pruned = match outcome {
        Ok(pruned) => pruned,
        Err(error) => {
            let options = match (rules.keep, rules.keep_for) {
                (Some(_), Some(_)) => "keep_dumps and keep_dumps_for",
                (Some(_), None) => "keep_dumps",
                _ => "keep_dumps_for",
            };
            let text = format!("Unable to list dump folder for {options}: {dir}: {}", super::os::reason(&error));
            reports::push("warn", text);
            return;
        }
    };
    if let (false, Some(keep)) = (pruned.deleted.is_empty(), rules.keep) {
        let text = format!(
            "Deleted {} old dump file(s) (keep_dumps = {keep}): {}",
            pruned.deleted.len(),
            pruned.deleted.join(", ")
        );
        reports::push("info", text);
    }
    if let (false, Some(span)) = (pruned.aged.is_empty(), rules.keep_for) {
        let text = format!(
            "Deleted {} dump file(s) older than keep_dumps_for = {}: {}",
            pruned.aged.len(),
            duration::shown(span),
            pruned.aged.join(", ")
        );
        reports::push("info", text);
    }
    for (path, error) in pruned.failed {
        reports::push("warn", format!("Unable to delete old dump file: {path}: {}", super::os::reason(&error)));
    }
}

/// What one pruning did.
#[derive(Debug, Default)]
pub(crate) struct Pruned {
    /// Files `keep_dumps` deleted, by path, oldest first.
    pub(crate) deleted: Vec<String>,
    /// Files `keep_dumps_for` deleted (that `keep_dumps` left), by path, oldest first.
    pub(crate) aged: Vec<String>,
    /// Files that could not be deleted, and why.
    pub(crate) failed: Vec<(String, io::Error)>,
}

/// Deletes the files of `pattern` in `written`'s folder that `rules` say must go, except
/// `written` itself and files being written (see the module doc). Does nothing if `written`
/// itself is not a name the pattern makes.
pub(crate) fn prune(pattern: &NamePattern, written: &str, rules: Rules) -> io::Result<Pruned> {
    let written = Path::new(written);
    let Some(current) = written.file_name().and_then(|n| n.to_str()) else { return Ok(Pruned::default()) };
    if !pattern.matches_name(current) {
        return Ok(Pruned::default());
    }
    let dir = match written.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    prune_in(pattern, dir, Some(current), rules)
}

/// Deletes the files of `pattern` in `dir` that `rules` say must go, except `current` (the file
/// a dump just went into) and files being written.
fn prune_in(pattern: &NamePattern, dir: &Path, current: Option<&str>, rules: Rules) -> io::Result<Pruned> {
    let mut pruned = Pruned::default();
    let mut files: Vec<(PathBuf, SystemTime)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        // An entry that cannot be read (gone since) is no file to delete.
        let Ok(entry) = entry else { continue };
        // A name that is not UTF-8 cannot be one the template makes (literals and digits).
        let Ok(name) = entry.file_name().into_string() else { continue };
        if pattern.matches_name(&name) {
            if let Some(modified) = dump_file_time(entry.metadata()) {
                files.push((dir.join(name), modified));
            }
        }
    }
    let current_path = dir.join(current.unwrap_or_default());
    let recency = dump_ledger::recency(&files, &current_path);
    let mut doomed: Vec<String> = Vec::new();
    if let Some(keep) = rules.keep {
        let ranked: Vec<(String, dump_names::Recency)> = recency
            .iter()
            .zip(&files)
            .filter_map(|(recency, (path, _))| Some((path.file_name()?.to_str()?.to_string(), (*recency)?)))
            .collect();
        doomed = dump_names::to_delete(&ranked, keep);
    }
    let mut aged: Vec<(SystemTime, String)> = recency
        .iter()
        .zip(&files)
        .filter(|(recency, (_, modified))| recency.is_some() && rules.too_old(*modified))
        .filter_map(|(_, (path, modified))| Some((*modified, path.file_name()?.to_str()?.to_string())))
        .filter(|(_, name)| !doomed.contains(name))
        .collect();
    aged.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| dump_names::natural_cmp(x, y)));
    for name in doomed {
        if Some(name.as_str()) == current {
            continue; // its own pass keeps it: a later one deletes it once `keep` newer exist
        }
        delete(&dir.join(&name), &mut pruned.deleted, &mut pruned.failed);
    }
    for (_, name) in aged {
        if Some(name.as_str()) != current {
            delete(&dir.join(&name), &mut pruned.aged, &mut pruned.failed);
        }
    }
    Ok(pruned)
}

/// Deletes `path` unless a dump is being written into it, and notes how that went.
fn delete(path: &Path, deleted: &mut Vec<String>, failed: &mut Vec<(String, io::Error)>) {
    match dump_ledger::delete_unless_writing(path) {
        // A dump for it has been admitted since it was listed.
        None => {}
        Some(Ok(())) => deleted.push(path.display().to_string()),
        // Gone already (another sink with the same template pruned it).
        Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Some(Err(e)) => failed.push((path.display().to_string(), e)),
    }
}

/// A listed entry's modification time if it is a regular file (a symlink is not followed, and
/// is no dump file; nor is an entry gone since it was listed).
fn dump_file_time(metadata: io::Result<Metadata>) -> Option<SystemTime> {
    let metadata = metadata.ok().filter(Metadata::is_file)?;
    Some(metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime::test_dir::TestDir;
    use std::os::unix::ffi::OsStrExt;
    use std::time::Duration;

    fn keep(n: usize) -> Rules {
        Rules { keep: Some(n), ..Rules::default() }
    }

    fn pattern(template: &str) -> NamePattern {
        match dump_names::shape(&template.into(), &[]) {
            Shape::PerDump(p) => p,
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn names(dir: &TestDir) -> Vec<String> {
        let mut list: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        list.sort_by(|a, b| dump_names::natural_cmp(a, b));
        list
    }

    /// Creates `name` with a modification time `age` seconds before now.
    pub(crate) fn file(dir: &TestDir, name: &str, age: u64) {
        let path = dir.file(name);
        fs::write(&path, name).expect("write");
        let time = SystemTime::now() - Duration::from_secs(age);
        fs::File::options().write(true).open(&path).expect("open").set_modified(time).expect("mtime");
    }

    #[test]
    fn keeps_the_newest_and_never_touches_anything_else() {
        let dir = TestDir::new("prune");
        let template = format!("{}/dump-{{pid}}-{{count}}.log", dir.path());
        for n in 0..10 {
            file(&dir, &format!("dump-7-{n}.log"), 100 - n);
        }
        file(&dir, "dump-6-99.log.zst", 200); // an older process's compressed dump: one of ours
        let decoys = [
            "dump-7-1.log.bak",
            "dump-7-x.log",
            "dump-7-2.txt",
            "dump--3.log",
            "traceback-7-1.log",
            "Dump-7-1.log",
            "dump-7-1.log.xz",
            "dump-7-1-2.log",
        ];
        for decoy in decoys {
            file(&dir, decoy, 1000);
        }
        // A name that is not UTF-8 (but for that byte, one the pattern makes).
        let not_utf8 = std::ffi::OsStr::from_bytes(b"dump-7-\xff1.log");
        fs::write(Path::new(&dir.path()).join(not_utf8), "x").expect("a name that is not UTF-8");
        fs::create_dir(dir.file("dump-8-1.log")).expect("a folder that matches");
        std::os::unix::fs::symlink("/etc/hostname", dir.file("dump-8-2.log")).expect("a symlink that matches");
        let pruned = prune(&pattern(&template), &dir.file("dump-7-9.log"), keep(3)).expect("prune");
        assert!(pruned.failed.is_empty());
        assert_eq!(pruned.deleted.len(), 8);
        let mut expected: Vec<String> = decoys.iter().map(|d| d.to_string()).collect();
        expected
            .extend(["dump-7-7.log", "dump-7-8.log", "dump-7-9.log", "dump-8-1.log", "dump-8-2.log"].map(String::from));
        expected.push(not_utf8.to_string_lossy().into_owned());
        expected.sort_by(|a, b| dump_names::natural_cmp(a, b));
        assert_eq!(names(&dir), expected);
    }

    #[test]
    fn keep_dumps_for_deletes_older_files_of_the_template_only_and_either_rule_deletes() {
        let dir = TestDir::new("prune-aged");
        let template = format!("{}/d-{{pid}}-{{count}}.log", dir.path());
        let hour = 3600;
        // Ages in hours: 0 to 5.
        for n in 0..6 {
            file(&dir, &format!("d-7-{n}.log"), (5 - n) * hour);
        }
        file(&dir, "d-6-1.log.gz", 30 * hour); // compressed, of an earlier process: one of ours
        file(&dir, "d-7-9.log", 0);
        let decoys = ["d-7-1.log.bak", "x-7-1.log", "d-7-x.log"];
        for decoy in decoys {
            file(&dir, decoy, 100 * hour);
        }
        fs::create_dir(dir.file("d-8-1.log")).expect("a folder that matches");
        std::os::unix::fs::symlink(dir.file("x-7-1.log"), dir.file("d-8-2.log")).expect("a symlink that matches");
        filetime_of_symlink_is_old(&dir.file("d-8-2.log"));
        let span = Some(Duration::from_secs(2 * hour + 60));
        let rules = Rules { keep: None, keep_for: span, now: Some(SystemTime::now()) };
        let pruned = prune(&pattern(&template), &dir.file("d-7-9.log"), rules).expect("prune");
        assert!(pruned.failed.is_empty() && pruned.deleted.is_empty(), "{pruned:?}");
        // Oldest first.
        let expected: Vec<String> = ["d-6-1.log.gz", "d-7-0.log", "d-7-1.log", "d-7-2.log"].map(|n| dir.file(n)).into();
        assert_eq!(pruned.aged, expected);
        let mut left: Vec<String> = decoys.iter().map(|d| d.to_string()).collect();
        left.extend(["d-7-3.log", "d-7-4.log", "d-7-5.log", "d-7-9.log", "d-8-1.log", "d-8-2.log"].map(String::from));
        left.sort_by(|a, b| dump_names::natural_cmp(a, b));
        assert_eq!(names(&dir), left);
        // With keep_dumps too: each rule deletes what it says, each file once.
        let rules =
            Rules { keep: Some(3), keep_for: Some(Duration::from_secs(hour / 2)), now: Some(SystemTime::now()) };
        let pruned = prune(&pattern(&template), &dir.file("d-7-9.log"), rules).expect("prune");
        assert_eq!(pruned.deleted, [dir.file("d-7-3.log")]);
        assert_eq!(pruned.aged, [dir.file("d-7-4.log")]);
        assert!(names(&dir).contains(&"d-7-9.log".to_string()), "the file just written stays");
    }

    /// Sets a symlink's own modification time far in the past (it must be left alone whatever
    /// its age).
    fn filetime_of_symlink_is_old(path: &str) {
        let status =
            std::process::Command::new("touch").args(["-h", "-d", "2000-01-01", path]).status().expect("touch");
        assert!(status.success());
    }

    #[test]
    fn the_file_just_written_and_files_being_written_are_kept_whatever_their_age() {
        let dir = TestDir::new("prune-aged-writing");
        let p = pattern(&format!("{}/d-{{count}}.log", dir.path()));
        for n in 0..3 {
            file(&dir, &format!("d-{n}.log"), 1000);
        }
        let being_written = dump_ledger::writing(&dir.file("d-1.log"));
        let rules = Rules { keep: None, keep_for: Some(Duration::from_secs(10)), now: Some(SystemTime::now()) };
        let pruned = prune(&p, &dir.file("d-2.log"), rules).expect("prune");
        assert_eq!(pruned.aged, [dir.file("d-0.log")]);
        assert_eq!(names(&dir), ["d-1.log", "d-2.log"]);
        drop(being_written);
        // A time in the future is no age.
        let future = dir.file("d-5.log");
        fs::write(&future, "x").expect("write");
        let later = SystemTime::now() + Duration::from_secs(1000);
        fs::File::options().write(true).open(&future).expect("open").set_modified(later).expect("mtime");
        let pruned = prune_in(&p, Path::new(&dir.path()), None, rules).expect("prune");
        assert_eq!(pruned.aged, [dir.file("d-1.log"), dir.file("d-2.log")]);
        assert_eq!(names(&dir), ["d-5.log"]);
    }

    #[test]
    fn a_file_the_pattern_does_not_make_prunes_nothing() {
        let dir = TestDir::new("prune-foreign");
        for n in 0..5 {
            file(&dir, &format!("d-{n}.log"), 10 - n);
        }
        let p = pattern(&format!("{}/d-{{count}}.log", dir.path()));
        let pruned = prune(&p, &dir.file("other.log"), keep(1)).expect("prune");
        assert!(pruned.deleted.is_empty());
        assert_eq!(names(&dir).len(), 5);
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let p = pattern("/nonexistent-lrb/d-{count}.log");
        assert!(prune(&p, "/nonexistent-lrb/d-1.log", keep(1)).is_err());
    }

    #[test]
    fn files_being_written_are_neither_deleted_nor_counted_and_the_order_dumps_finished_wins() {
        let dir = TestDir::new("retention-writing");
        let p = pattern(&format!("{}/d-{{count}}.log", dir.path()));
        // Finished in the order 0..=9, with times that say the opposite.
        for n in 0..10 {
            file(&dir, &format!("d-{n}.log"), n + 1);
            dump_ledger::finished(&dir.file(&format!("d-{n}.log")));
        }
        // Queued or being written: 10 exists already (opened), 11 not yet.
        let queued: Vec<_> = [10, 11].iter().map(|n| dump_ledger::writing(&dir.file(&format!("d-{n}.log")))).collect();
        file(&dir, "d-10.log", 100);
        file(&dir, "d-12.log", 0);
        dump_ledger::finished(&dir.file("d-12.log"));
        let pruned = prune(&p, &dir.file("d-12.log"), keep(3)).expect("prune");
        assert!(pruned.failed.is_empty(), "{:?}", pruned.failed);
        assert_eq!(pruned.deleted, (0..8).map(|n| dir.file(&format!("d-{n}.log"))).collect::<Vec<_>>());
        assert_eq!(names(&dir), ["d-8.log", "d-9.log", "d-10.log", "d-12.log"]);
        drop(queued);
        // Once its dump is done (failed here: not finished), 10 is an ordinary old file.
        let pruned = prune(&p, &dir.file("d-12.log"), keep(3)).expect("prune");
        assert_eq!(pruned.deleted, [dir.file("d-10.log")]);
    }

    #[test]
    fn the_current_file_stays_in_its_own_pass_and_goes_once_enough_newer_dumps_finished() {
        let dir = TestDir::new("retention-current");
        let p = pattern(&format!("{}/d-{{count}}.log", dir.path()));
        for n in [2, 1] {
            file(&dir, &format!("d-{n}.log"), 0);
            dump_ledger::finished(&dir.file(&format!("d-{n}.log")));
        }
        // 1 finished last, but 2's pass comes now (two threads): 2 stays, 1 too.
        assert!(prune(&p, &dir.file("d-2.log"), keep(1)).expect("prune").deleted.is_empty());
        assert_eq!(prune(&p, &dir.file("d-1.log"), keep(1)).expect("prune").deleted, [dir.file("d-2.log")]);
        // A name the pattern cannot make, or no name at all: nothing.
        assert!(prune(&p, &format!("{}/..", dir.path()), keep(0)).expect("prune").deleted.is_empty());
        assert_eq!(names(&dir), ["d-1.log"]);
    }

    #[test]
    fn a_file_admitted_since_it_was_listed_or_gone_since_is_left_alone() {
        let dir = TestDir::new("retention-race");
        let path = dir.file("d-1.log");
        file(&dir, "d-1.log", 0);
        let mut pruned = Pruned::default();
        let admitted = dump_ledger::writing(&path);
        delete(Path::new(&path), &mut pruned.deleted, &mut pruned.failed);
        assert!(Path::new(&path).exists());
        drop(admitted);
        fs::remove_file(&path).expect("gone since");
        delete(Path::new(&path), &mut pruned.deleted, &mut pruned.failed);
        assert!(pruned.deleted.is_empty() && pruned.failed.is_empty());
        // A folder under a matching name, made since it was listed: a failure, reported.
        fs::create_dir(&path).expect("a folder");
        delete(Path::new(&path), &mut pruned.deleted, &mut pruned.failed);
        assert_eq!(pruned.failed.len(), 1);
        // An entry gone between the listing and its metadata, and one that is no file.
        assert_eq!(dump_file_time(fs::symlink_metadata(dir.file("gone"))), None);
        assert_eq!(dump_file_time(fs::symlink_metadata(&path)), None);
    }
}
