//! `keep_dumps`: after a successful dump, the sink's older dump files beyond the newest N are
//! deleted. A sink's files are the regular files in its dump folder whose names its
//! `filename_template` makes (see `pure::dump_names`), compressed or not; nothing else is ever
//! touched (no other name, no symlink, no folder, nothing in another folder).
//!
//! The newest N are the files of the N dumps this process finished last, then the other files
//! by modification time (see `dump_names::Recency`). A file a dump is queued for or being
//! written into neither counts nor is deleted (see `dump_ledger`), so a burst of dumps keeps
//! the newest N *finished* dumps, and "Dumped … to X" always names a file that holds the dump
//! until N newer dumps have finished.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{dump_ledger, reports};
use crate::pure::dump_names::{self, NamePattern, Shape};
use crate::pure::options::{SinkOptions, Target};

/// Called after a dump to `written` (the sink's configured file) succeeded: records it as this
/// process's newest dump, deletes what `keep_dumps` says must go and reports it (deleted files
/// at info level, failures as warnings).
pub(crate) fn after_dump(options: &SinkOptions, paths: &[(String, String)], written: &str) {
    dump_ledger::finished(written);
    let Some(keep) = options.retention.keep_dumps else { return };
    let Target::Template(template) = &options.target else { return };
    let Shape::PerDump(pattern) = dump_names::shape(template, paths) else { return };
    match prune(&pattern, written, keep) {
        Ok(pruned) => {
            if !pruned.deleted.is_empty() {
                reports::push(
                    "info",
                    format!(
                        "Deleted {} old dump file(s) (keep_dumps = {keep}): {}",
                        pruned.deleted.len(),
                        pruned.deleted.join(", ")
                    ),
                );
            }
            for (path, error) in pruned.failed {
                reports::push("warn", format!("Unable to delete old dump file: {path}: {}", super::os::reason(&error)));
            }
        }
        Err(error) => {
            let dir = Path::new(written).parent().map_or_else(String::new, |d| d.display().to_string());
            reports::push(
                "warn",
                format!("Unable to list dump folder for keep_dumps: {dir}: {}", super::os::reason(&error)),
            );
        }
    }
}

/// What one pruning did.
#[derive(Debug, Default)]
pub(crate) struct Pruned {
    /// Deleted files, by path, oldest first.
    pub(crate) deleted: Vec<String>,
    /// Files that could not be deleted, and why.
    pub(crate) failed: Vec<(String, io::Error)>,
}

/// Deletes the files of `pattern` in `written`'s folder beyond the newest `keep`, except
/// `written` itself and files being written (see the module doc). Does nothing if `written`
/// itself is not a name the pattern makes.
pub(crate) fn prune(pattern: &NamePattern, written: &str, keep: usize) -> io::Result<Pruned> {
    let written = Path::new(written);
    let mut pruned = Pruned::default();
    let Some(current) = written.file_name().and_then(|n| n.to_str()) else { return Ok(pruned) };
    if !pattern.matches_name(current) {
        return Ok(pruned);
    }
    let dir = match written.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
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
    let ranked: Vec<(String, dump_names::Recency)> = dump_ledger::recency(&files, written)
        .into_iter()
        .zip(&files)
        .filter_map(|(recency, (path, _))| Some((path.file_name()?.to_str()?.to_string(), recency?)))
        .collect();
    for name in dump_names::to_delete(&ranked, keep) {
        if name == current {
            continue; // its own pass keeps it: a later one deletes it once `keep` newer exist
        }
        delete(&dir.join(&name), &mut pruned);
    }
    Ok(pruned)
}

/// Deletes `path` unless a dump is being written into it, and notes how that went.
fn delete(path: &Path, pruned: &mut Pruned) {
    match dump_ledger::delete_unless_writing(path) {
        // A dump for it has been admitted since it was listed.
        None => {}
        Some(Ok(())) => pruned.deleted.push(path.display().to_string()),
        // Gone already (another sink with the same template pruned it).
        Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Some(Err(e)) => pruned.failed.push((path.display().to_string(), e)),
    }
}

/// A listed entry's modification time if it is a regular file (a symlink is not followed, and
/// is no dump file; nor is an entry gone since it was listed).
fn dump_file_time(metadata: io::Result<Metadata>) -> Option<SystemTime> {
    let metadata = metadata.ok().filter(Metadata::is_file)?;
    Some(metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::options::OptValue;
    use crate::runtime::sink::{DumpOrigin, Sink};
    use crate::runtime::test_dir::TestDir;
    use crate::runtime::writer;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn pattern(template: &str) -> NamePattern {
        match dump_names::shape(template, &[]) {
            Shape::PerDump(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn names(dir: &TestDir) -> Vec<String> {
        let mut list: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        list.sort_by(|a, b| dump_names::natural_cmp(a, b));
        list
    }

    /// Creates `name` with a modification time `age` seconds before now.
    fn file(dir: &TestDir, name: &str, age: u64) {
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
        let pruned = prune(&pattern(&template), &dir.file("dump-7-9.log"), 3).expect("prune");
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
    fn a_file_the_pattern_does_not_make_prunes_nothing() {
        let dir = TestDir::new("prune-foreign");
        for n in 0..5 {
            file(&dir, &format!("d-{n}.log"), 10 - n);
        }
        let p = pattern(&format!("{}/d-{{count}}.log", dir.path()));
        let pruned = prune(&p, &dir.file("other.log"), 1).expect("prune");
        assert!(pruned.deleted.is_empty());
        assert_eq!(names(&dir).len(), 5);
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let p = pattern("/nonexistent-lrb/d-{count}.log");
        assert!(prune(&p, "/nonexistent-lrb/d-1.log", 1).is_err());
    }

    /// A sink dumping to `template` (`{paths.data}` is `dir`) with these `keep_dumps`.
    fn sink(dir: &TestDir, template: &str, keep: i64) -> Arc<Sink> {
        let template = template.to_string();
        let (options, problems) = SinkOptions::parse(
            |k| match k {
                "filename_template" => OptValue::Str(template.clone()),
                "keep_dumps" => OptValue::Int(keep),
                _ => OptValue::Absent,
            },
            &[],
        );
        assert!(problems.is_empty(), "{problems:?}");
        Arc::new(Sink::new(options, vec![("data".into(), dir.path())]))
    }

    /// Waits (up to 20 s) until `check` holds.
    fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The numbers of the `burst N` lines in `text`.
    fn burst_lines(text: &str) -> Vec<usize> {
        text.lines().filter_map(|l| l.strip_prefix("burst ")?.parse().ok()).collect()
    }

    #[test]
    fn a_burst_of_dumps_keeps_the_newest_finished_dumps_whole() {
        let dir = TestDir::new("retention-burst");
        let sink = sink(&dir, "{paths.data}/b-{pid}-{count}.log", 5);
        let mut paths = Vec::new();
        // 40 dumps queued at once, as in one tick of Prosody's main loop.
        for n in 0..40 {
            sink.push(format!("burst {n}\n").as_bytes(), 0);
            paths.push(sink.dump(DumpOrigin::LuaThread, "test").expect("dump").path);
        }
        wait_until("40 dumps and their keep_dumps passes", || {
            sink.outcomes().done == 40 && names(&dir).len() == 5 && !paths.iter().any(|p| dump_ledger::is_writing(p))
        });
        assert_eq!(sink.outcomes().failed, 0);
        // The newest five: each holds its own line, whole.
        for (n, path) in paths.iter().enumerate() {
            match fs::read_to_string(path) {
                Ok(text) => {
                    assert!(n >= 35, "dump {n} was kept");
                    assert_eq!(burst_lines(&text), [n], "{path}: {text}");
                    assert!(text.ends_with("-- End of dump --\n\n"), "{text}");
                }
                Err(e) => assert!(n < 35 && e.kind() == io::ErrorKind::NotFound, "dump {n}: {e}"),
            }
        }
    }

    #[test]
    fn dumps_into_one_file_for_all_delete_nothing() {
        let dir = TestDir::new("retention-shared");
        let sink = sink(&dir, "{paths.data}/same-{pid}.log", 1);
        file(&dir, "same-1.log", 100);
        for n in 0..20 {
            sink.push(format!("burst {n}\n").as_bytes(), 0);
            sink.dump(DumpOrigin::LuaThread, "test").expect("dump");
        }
        wait_until("20 dumps", || sink.outcomes().done == 20);
        assert!(writer::wait_idle(Duration::from_secs(20)));
        let text = fs::read_to_string(dir.file(&format!("same-{}.log", std::process::id()))).expect("read");
        assert_eq!(burst_lines(&text), (0..20).collect::<Vec<_>>());
        assert_eq!(fs::read_to_string(dir.file("same-1.log")).expect("untouched"), "same-1.log");
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
        let pruned = prune(&p, &dir.file("d-12.log"), 3).expect("prune");
        assert!(pruned.failed.is_empty(), "{:?}", pruned.failed);
        assert_eq!(pruned.deleted, (0..8).map(|n| dir.file(&format!("d-{n}.log"))).collect::<Vec<_>>());
        assert_eq!(names(&dir), ["d-8.log", "d-9.log", "d-10.log", "d-12.log"]);
        drop(queued);
        // Once its dump is done (failed here: not finished), 10 is an ordinary old file.
        let pruned = prune(&p, &dir.file("d-12.log"), 3).expect("prune");
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
        assert!(prune(&p, &dir.file("d-2.log"), 1).expect("prune").deleted.is_empty());
        assert_eq!(prune(&p, &dir.file("d-1.log"), 1).expect("prune").deleted, [dir.file("d-2.log")]);
        // A name the pattern cannot make, or no name at all: nothing.
        assert!(prune(&p, &format!("{}/..", dir.path()), 0).expect("prune").deleted.is_empty());
        assert_eq!(names(&dir), ["d-1.log"]);
    }

    #[test]
    fn a_file_admitted_since_it_was_listed_or_gone_since_is_left_alone() {
        let dir = TestDir::new("retention-race");
        let path = dir.file("d-1.log");
        file(&dir, "d-1.log", 0);
        let mut pruned = Pruned::default();
        let admitted = dump_ledger::writing(&path);
        delete(Path::new(&path), &mut pruned);
        assert!(Path::new(&path).exists());
        drop(admitted);
        fs::remove_file(&path).expect("gone since");
        delete(Path::new(&path), &mut pruned);
        assert!(pruned.deleted.is_empty() && pruned.failed.is_empty());
        // A folder under a matching name, made since it was listed: a failure, reported.
        fs::create_dir(&path).expect("a folder");
        delete(Path::new(&path), &mut pruned);
        assert_eq!(pruned.failed.len(), 1);
        // An entry gone between the listing and its metadata, and one that is no file.
        assert_eq!(dump_file_time(fs::symlink_metadata(dir.file("gone"))), None);
        assert_eq!(dump_file_time(fs::symlink_metadata(&path)), None);
    }

    /// The reports that mention `dir` (other reports stay queued). Only these tests read them.
    fn reports_about(dir: &TestDir) -> Vec<reports::Report> {
        static READING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
        let _one_at_a_time = READING.lock();
        let (ours, others): (Vec<_>, Vec<_>) = reports::take().into_iter().partition(|r| r.text.contains(&dir.path()));
        for other in others {
            reports::push(other.level, other.text);
        }
        ours
    }

    #[test]
    fn a_read_only_filesystem_is_reported_and_deletes_nothing() {
        let dir = TestDir::tmpfs("retention-ro", 1024 * 1024);
        let sink = sink(&dir, "{paths.data}/d-{count}.log", 2);
        for n in 0..4 {
            file(&dir, &format!("d-{n}.log"), 10 - n);
        }
        dir.read_only(true);
        after_dump(&sink.options, &[("data".into(), dir.path())], &dir.file("d-3.log"));
        assert_eq!(names(&dir).len(), 4);
        let reports = reports_about(&dir);
        assert_eq!(reports.len(), 2, "{reports:?}");
        for (report, n) in reports.iter().zip([0, 1]) {
            assert_eq!(report.level, "warn");
            let expected = format!("Unable to delete old dump file: {}: ", dir.file(&format!("d-{n}.log")));
            assert!(report.text.starts_with(&expected) && report.text.contains("ead-only"), "{}", report.text);
        }
        dir.read_only(false);
        after_dump(&sink.options, &[("data".into(), dir.path())], &dir.file("d-3.log"));
        assert_eq!(names(&dir), ["d-2.log", "d-3.log"]);
        let reports = reports_about(&dir);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(reports[0].text.starts_with("Deleted 2 old dump file(s) (keep_dumps = 2): "), "{:?}", reports[0]);
    }

    #[test]
    fn a_folder_that_cannot_be_listed_is_reported() {
        let dir = TestDir::new("retention-unlisted");
        let paths = [("data".to_string(), dir.file("gone"))];
        let sink = sink(&dir, "{paths.data}/d-{count}.log", 2);
        // The folder was removed since the dump; then replaced by a file.
        after_dump(&sink.options, &paths, &dir.file("gone/d-1.log"));
        fs::write(dir.file("gone"), "a file").expect("write");
        after_dump(&sink.options, &paths, &dir.file("gone/d-1.log"));
        let reports = reports_about(&dir);
        assert_eq!(reports.len(), 2, "{reports:?}");
        let expected = format!("Unable to list dump folder for keep_dumps: {}: ", dir.file("gone"));
        for report in reports {
            assert!(report.level == "warn" && report.text.starts_with(&expected), "{report:?}");
        }
    }

    #[test]
    fn without_keep_dumps_or_a_template_with_count_nothing_is_pruned() {
        let dir = TestDir::new("retention-off");
        for n in 0..3 {
            file(&dir, &format!("d-{n}.log"), 10 - n);
        }
        let paths = [("data".to_string(), dir.path())];
        let unset = SinkOptions::parse(
            |k| match k {
                "filename_template" => OptValue::Str("{paths.data}/d-{count}.log".into()),
                _ => OptValue::Absent,
            },
            &[],
        )
        .0;
        after_dump(&unset, &paths, &dir.file("d-2.log"));
        let fixed = SinkOptions::parse(
            |k| match k {
                "filename" => OptValue::Str(dir.file("d-2.log")),
                "keep_dumps" => OptValue::Int(1),
                _ => OptValue::Absent,
            },
            &[],
        )
        .0;
        after_dump(&fixed, &paths, &dir.file("d-2.log"));
        let varying = sink(&dir, "{paths.data}/{count}/d-1.log", 1);
        after_dump(&varying.options, &paths, &dir.file("d-2.log"));
        assert_eq!(names(&dir), ["d-0.log", "d-1.log", "d-2.log"]);
    }
}
