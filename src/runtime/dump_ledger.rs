//! Which dump files this process is writing, and in which order its dumps finished: what
//! `keep_dumps` (see `retention`) needs to never delete a file a dump is still going into, and
//! to keep the newest dumps by the order they finished rather than by file times.
//!
//! A dump's file is *being written* from just before the file is opened ([`writing`], a guard
//! the dump holds) until the guard is dropped, once the dump has been written or has failed and
//! its own `keep_dumps` pass is over. A file is deleted only under this ledger's lock, after
//! checking that no dump is writing it, and a dump registers under the same lock before it
//! opens its file: so no file is deleted while a dump is queued for it or going into it, and
//! none is opened for a dump while it is being deleted.
//!
//! Lock order: `LEDGER` is a leaf. Nothing else is locked while it is held; the one system call
//! made under it is the `unlink` of a file `keep_dumps` deletes.
//!
//! Files are known by their path with repeated slashes and `.` components taken out, so that
//! the path a dump was rendered to (`d.log`, `/data//d.log`) and the one a listing of its
//! folder gives (`./d.log`, `/data/d.log`) are the same key.
//! Everything here is per process: a forked child starts with an empty ledger.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use parking_lot::Mutex;

use super::thread::PerProcess;
use crate::pure::dump_names::Recency;

/// Finished dumps remembered at most; beyond, the earliest are forgotten (such a file then
/// ranks by its modification time, with the other files this process did not write, before
/// every file remembered: still as the oldest).
const REMEMBERED: usize = 4096;

#[derive(Default)]
struct Ledger {
    /// Dumps admitted and not done, by file.
    writing: HashMap<PathBuf, usize>,
    /// For each file, when (in `next`'s order) the latest dump into it finished.
    finished: HashMap<PathBuf, u64>,
    next: u64,
}

static LEDGER: Mutex<PerProcess<Ledger>> = Mutex::new(PerProcess::new());

/// The key of `path` (see the module doc).
fn key(path: &Path) -> PathBuf {
    path.components().filter(|c| *c != Component::CurDir).collect()
}

/// A dump going into a file: the file is not deleted while this lives.
#[derive(Debug)]
pub(crate) struct Writing {
    key: PathBuf,
    pid: u32,
}

/// Registers a dump about to open `path`; drop the guard once the dump is done.
pub(crate) fn writing(path: &str) -> Writing {
    let key = key(Path::new(path));
    let mut ledger = LEDGER.lock();
    if let Ok(ledger) = ledger.get_or_try(|| Ok::<_, ()>(Ledger::default())) {
        *ledger.writing.entry(key.clone()).or_insert(0) += 1;
    }
    Writing { key, pid: std::process::id() }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return;
        }
        let mut ledger = LEDGER.lock();
        let Some(ledger) = ledger.get() else { return };
        if let Some(count) = ledger.writing.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                ledger.writing.remove(&self.key);
            }
        }
    }
}

/// Records that a dump into `path` has just been written (it is now this process's newest).
pub(crate) fn finished(path: &str) {
    let mut ledger = LEDGER.lock();
    if let Ok(ledger) = ledger.get_or_try(|| Ok::<_, ()>(Ledger::default())) {
        ledger.finish(key(Path::new(path)), REMEMBERED);
    }
}

impl Ledger {
    /// Records a dump into `key` as the newest finished, remembering at most `remembered`.
    fn finish(&mut self, key: PathBuf, remembered: usize) {
        self.finished.insert(key, self.next);
        self.next += 1;
        if self.finished.len() > remembered {
            let earliest = self.finished.iter().min_by_key(|(_, n)| **n).map(|(k, _)| k.clone());
            if let Some(earliest) = earliest {
                self.finished.remove(&earliest);
            }
        }
    }
}

/// How recent each of `files` (path, modification time) is; `None` for a file a dump is being
/// written into, except `current` (the file whose dump's pass asks: its own dump is done).
pub(crate) fn recency(files: &[(PathBuf, std::time::SystemTime)], current: &Path) -> Vec<Option<Recency>> {
    let current = key(current);
    let mut ledger = LEDGER.lock();
    let ledger = ledger.get();
    files
        .iter()
        .map(|(path, modified)| {
            let key = key(path);
            let Some(ledger) = ledger.as_ref() else { return Some(Recency::Modified(*modified)) };
            if key != current && ledger.writing.contains_key(&key) {
                return None;
            }
            Some(ledger.finished.get(&key).map_or(Recency::Modified(*modified), |n| Recency::Finished(*n)))
        })
        .collect()
}

/// Whether a dump is being written into `path`.
#[cfg(test)]
pub(crate) fn is_writing(path: &str) -> bool {
    LEDGER.lock().get().is_some_and(|l| l.writing.contains_key(&key(Path::new(path))))
}

/// Deletes `path` unless a dump is being written into it now (`None`: left alone).
pub(crate) fn delete_unless_writing(path: &Path) -> Option<io::Result<()>> {
    let key = key(path);
    let mut ledger = LEDGER.lock();
    let ledger = ledger.get_or_try(|| Ok::<_, ()>(Ledger::default())).ok()?;
    if ledger.writing.contains_key(&key) {
        return None;
    }
    let deleted = fs::remove_file(path);
    if deleted.as_ref().map_or_else(|e| e.kind() == io::ErrorKind::NotFound, |()| true) {
        ledger.finished.remove(&key);
    }
    Some(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_dir::TestDir;
    use std::time::SystemTime;

    #[test]
    fn a_file_being_written_is_not_deleted_and_ranks_by_when_its_dump_finished() {
        let dir = TestDir::new("ledger");
        let (a, b) = (dir.file("a.log"), dir.file("b.log"));
        fs::write(&a, "a").expect("write");
        fs::write(&b, "b").expect("write");
        let guard = writing(&a);
        // The same file spelled another way is the same file.
        let spelled = format!("{}//./a.log", dir.path());
        assert!(delete_unless_writing(Path::new(&spelled)).is_none());
        let t = SystemTime::UNIX_EPOCH;
        let files = [(PathBuf::from(&a), t), (PathBuf::from(&b), t)];
        assert_eq!(recency(&files, Path::new(&b)), [None, Some(Recency::Modified(t))]);
        // Its own pass sees the current file, as finished.
        finished(&a);
        let ranks = recency(&files, Path::new(&spelled));
        assert!(matches!(ranks[0], Some(Recency::Finished(_))), "{ranks:?}");
        drop(guard);
        finished(&b);
        let ranks = recency(&files, Path::new(&b));
        assert!(ranks[0] < ranks[1], "{ranks:?}");
        assert!(delete_unless_writing(Path::new(&a)).is_some_and(|r| r.is_ok()));
        assert!(!Path::new(&a).exists());
        // Already gone: NotFound, and forgotten.
        let gone = delete_unless_writing(Path::new(&a)).expect("not being written");
        assert_eq!(gone.expect_err("gone").kind(), io::ErrorKind::NotFound);
        assert_eq!(recency(&files[..1], Path::new(&b)), [Some(Recency::Modified(t))]);
    }

    #[test]
    fn a_path_and_its_folder_listing_are_the_same_file() {
        assert_eq!(key(Path::new("d-1.log")), key(&Path::new(".").join("d-1.log")));
        assert_eq!(key(Path::new("/data//./d-1.log")), key(&Path::new("/data").join("d-1.log")));
        assert_eq!(key(Path::new("a/./b/d.log")), PathBuf::from("a/b/d.log"));
    }

    #[test]
    fn only_so_many_finished_dumps_are_remembered() {
        let mut ledger = Ledger::default();
        for n in 0..=3 {
            ledger.finish(PathBuf::from(format!("/d-{n}.log")), 3);
        }
        ledger.finish(PathBuf::from("/d-2.log"), 3);
        let mut kept: Vec<(&PathBuf, &u64)> = ledger.finished.iter().collect();
        kept.sort_by_key(|(_, n)| **n);
        let kept: Vec<String> = kept.iter().map(|(k, _)| k.display().to_string()).collect();
        assert_eq!(kept, ["/d-1.log", "/d-3.log", "/d-2.log"], "the earliest is forgotten, a repeat is the newest");
    }
}
