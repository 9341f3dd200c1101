//! `keep_dumps`: after a successful dump, the sink's older dump files beyond the newest N are
//! deleted. A sink's files are the regular files in its dump folder whose names its
//! `filename_template` makes (see `pure::dump_names`), compressed or not; nothing else is ever
//! touched (no other name, no symlink, no folder, nothing in another folder).

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::reports;
use crate::pure::dump_names::{self, NamePattern, Shape};
use crate::pure::options::{SinkOptions, Target};

/// Called after a dump to `written` succeeded: deletes what `keep_dumps` says must go and
/// reports it (deleted files at info level, failures as warnings).
pub(crate) fn after_dump(options: &SinkOptions, paths: &[(String, String)], written: &str) {
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

/// Deletes the files of `pattern` in `written`'s folder beyond the newest `keep` (`written`
/// counting as the newest, and never deleted). Does nothing if `written` itself is not a name
/// the pattern makes.
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
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        // A name that is not UTF-8 cannot be one the template makes (literals and digits).
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !pattern.matches_name(&name) {
            continue;
        }
        // Not followed: a symlink is not a dump file.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            files.push((name, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        }
    }
    for name in dump_names::to_delete(&files, current, keep) {
        let path = dir.join(&name);
        match fs::remove_file(&path) {
            Ok(()) => pruned.deleted.push(path.display().to_string()),
            // Gone already (another sink with the same template pruned it).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => pruned.failed.push((path.display().to_string(), e)),
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_dir::TestDir;
    use std::time::Duration;

    fn pattern(template: &str) -> NamePattern {
        match dump_names::shape(template, &[]) {
            Shape::PerDump(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn names(dir: &TestDir) -> Vec<String> {
        let mut list: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
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
        fs::create_dir(dir.file("dump-8-1.log")).expect("a folder that matches");
        std::os::unix::fs::symlink("/etc/hostname", dir.file("dump-8-2.log")).expect("a symlink that matches");
        let pruned = prune(&pattern(&template), &dir.file("dump-7-9.log"), 3).expect("prune");
        assert!(pruned.failed.is_empty());
        assert_eq!(pruned.deleted.len(), 8);
        let mut expected: Vec<String> = decoys.iter().map(|d| d.to_string()).collect();
        expected
            .extend(["dump-7-7.log", "dump-7-8.log", "dump-7-9.log", "dump-8-1.log", "dump-8-2.log"].map(String::from));
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
}
