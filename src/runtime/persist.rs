//! The ring file of a persisted sink (`persist`): finding, locking and checking it, reading back
//! what a process that died left in it, and the journal that every stored line is appended to
//! (a shared mapping: a line is in the page cache the moment it is stored, so it outlives a
//! SIGKILL). The layout is `pure::journal`'s; see docs/persist.md.
//!
//! A file that cannot be trusted (not a regular file, a symbolic link, another owner, readable
//! by others, or contents `journal::read` rejects) is moved aside to `<file>.corrupt` and the
//! sink starts empty. A file locked by another process (a second Prosody on the same data
//! directory) is left alone, and the sink runs without persistence.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::os::{self, Mapping};
use crate::pure::journal::{self, Appended, Writer, BLOCK, HEADER};
use crate::pure::ring::{Limit, Meta, Ring};

/// A journal up to this size stays mapped in whole (it counts in the process's resident memory).
const KEEP_MAPPED: usize = 1 << 20;

/// An open journal, locked for this process.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    map: Mapping,
    writer: Writer,
    path: PathBuf,
    /// The fork count (`os::forks`) its PID was written at.
    forks: u32,
    marks: Marks,
    /// The file could not grow (no space): the oldest block is reused even if the limit still
    /// keeps lines of it.
    stuck: bool,
    /// The blocks of a journal that stays mapped in whole that have been mapped in once (by
    /// block index): they stay mapped, and asking the kernel again costs a walk of their pages.
    mapped_in: Vec<bool>,
}

/// Which lines dumps have written: advanced only when no dump that took lines earlier is still
/// out or failed since, so a line is marked dumped only once it surely was (at least once).
#[derive(Debug, Default)]
struct Marks {
    /// Dumps that took lines and have not ended.
    outstanding: u32,
    /// A dump failed (its lines went back) since the last take with none outstanding.
    gave_back: bool,
    /// The newest line a dump that worked had taken.
    best: u64,
    /// The watermark written to the file.
    through: u64,
}

/// What a dead process left: the lines its sink's limit keeps, and how they were found.
#[derive(Debug)]
pub(crate) struct Recovery {
    pub(crate) pid: u32,
    pub(crate) lines: Ring,
    /// Lines cut off while written (not trusted, left out).
    pub(crate) torn: u32,
    /// Records that failed validation elsewhere (the lines before them were left out).
    pub(crate) damaged: u32,
}

/// The outcome of [`open`].
#[derive(Debug, Default)]
pub(crate) struct Opened {
    pub(crate) journal: Option<Journal>,
    pub(crate) recovery: Option<Recovery>,
    /// What to say in Prosody's log (all warnings).
    pub(crate) warnings: Vec<String>,
}

/// The ring file of the sink called `identity` (its name, or its position) in `dir`.
pub(crate) fn path_for(dir: &Path, identity: &str) -> PathBuf {
    let safe: String =
        identity.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    dir.join(format!("ringbuffer-{safe}.ring"))
}

/// The path with `.corrupt` added, where a file that cannot be trusted is moved.
fn aside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".corrupt");
    PathBuf::from(name)
}

/// Opens (or creates) the ring file of the sink `identity` in `dir`, reads back what a process
/// that did not shut down cleanly left in it, and starts a new journal in it for this process.
pub(crate) fn open(dir: &Path, identity: &str, limit: Limit) -> Opened {
    let path = path_for(dir, identity);
    let shown = path.display().to_string();
    let mut opened = Opened::default();
    let without = |why: String| format!("Ring file {shown}: {why}; this sink runs without persistence");
    let mut file = match open_file(&path, false) {
        Ok(file) => file,
        // O_NOFOLLOW: a symbolic link in the file's place.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::EISDIR) => {
            let what = if e.raw_os_error() == Some(libc::ELOOP) { "a symbolic link" } else { "a directory" };
            match move_aside_and_create(&path, what, &mut opened.warnings) {
                Ok(file) => file,
                Err(e) => {
                    opened.warnings.push(without(format!("cannot create it: {}", os::reason(&e))));
                    return opened;
                }
            }
        }
        Err(e) => {
            opened.warnings.push(without(format!("cannot open it: {}", os::reason(&e))));
            return opened;
        }
    };
    if let Err(e) = lock_patiently(&file) {
        let why = match e.kind() {
            io::ErrorKind::WouldBlock => {
                "another process holds it (another Prosody on the same data directory?); it is left as it is".into()
            }
            _ => format!("cannot lock it: {}", os::reason(&e)),
        };
        opened.warnings.push(without(why));
        return opened;
    }
    let untrusted = match file.metadata() {
        Err(e) => Some(format!("cannot read its status: {}", os::reason(&e))),
        Ok(m) if !m.file_type().is_file() => Some("not a regular file".to_string()),
        Ok(m) if m.uid() != os::effective_uid() => Some(format!("owned by user {}, not this process's", m.uid())),
        Ok(m) if m.mode() & 0o077 != 0 => Some(format!("mode {:o}: others may read or write it", m.mode() & 0o777)),
        Ok(_) => None,
    };
    let mut contents = Vec::new();
    let mut rejected = untrusted;
    if rejected.is_none() {
        let max = 4 * Writer::initial_len(limit) as u64 + (256 << 20);
        match file.metadata().map(|m| m.len()) {
            Ok(len) if len > max => rejected = Some(format!("{len} bytes, more than this sink's ring could make")),
            Ok(_) => {
                if let Err(e) = (&file).take(max).read_to_end(&mut contents) {
                    rejected = Some(format!("cannot read it: {}", os::reason(&e)));
                }
            }
            Err(e) => rejected = Some(format!("cannot read its status: {}", os::reason(&e))),
        }
    }
    if rejected.is_none() && !contents.is_empty() {
        match journal::read(&contents, identity) {
            Ok(found) if !found.clean && (!found.lines.is_empty() || found.torn > 0) => {
                opened.recovery = Some(Recovery {
                    pid: found.pid,
                    lines: found.to_ring(limit),
                    torn: found.torn,
                    damaged: found.damaged,
                });
            }
            Ok(_) => {}
            Err(why) => rejected = Some(why.0),
        }
    }
    drop(contents);
    if let Some(why) = rejected {
        file = match move_aside_and_create(&path, &why, &mut opened.warnings) {
            Ok(file) => file,
            Err(e) => {
                opened.warnings.push(without(format!("cannot create it anew: {}", os::reason(&e))));
                return opened;
            }
        };
        if let Err(e) = os::lock_exclusive(&file) {
            opened.warnings.push(without(format!("cannot lock it: {}", os::reason(&e))));
            return opened;
        }
    }
    match Journal::start(file, path, identity, limit) {
        Ok(journal) => opened.journal = Some(journal),
        Err(e) => opened.warnings.push(without(format!("cannot set it up: {}", os::reason(&e)))),
    }
    opened
}

/// How long a held lock is asked for again before it counts as another process's.
const LOCK_PATIENCE: Duration = Duration::from_millis(500);

/// Locks `file` (see [`os::lock_exclusive`]), asking again for up to [`LOCK_PATIENCE`] while it
/// is held: a child this process is forking holds the lock of a ring file closed meanwhile
/// until it execs (its copy of the descriptor shares the lock), so a sink reopened then (a
/// reload) would otherwise find its own file "held by another process". Seen in the tests,
/// which spawn processes from many threads at once.
fn lock_patiently(file: &File) -> io::Result<()> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match os::lock_exclusive(file) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            locked => return locked,
        }
    }
}

fn open_file(path: &Path, new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    if new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    options.open(path)
}

/// Moves the untrusted thing at `path` to `<path>.corrupt` (saying why) and creates a new file.
fn move_aside_and_create(path: &Path, why: &str, warnings: &mut Vec<String>) -> io::Result<File> {
    let to = aside(path);
    std::fs::rename(path, &to)?;
    warnings.push(format!(
        "Ring file {} cannot be trusted ({why}): moved aside to {}; this sink starts empty",
        path.display(),
        to.display()
    ));
    open_file(path, true)
}

impl Journal {
    /// A new journal in `file` (locked, its old contents read): allocated on disk in full, so
    /// that storing into the mapping can never fail for want of space.
    fn start(file: File, path: PathBuf, identity: &str, limit: Limit) -> io::Result<Journal> {
        os::count_forks();
        let len = Writer::initial_len(limit);
        file.set_len(0)?;
        match os::allocate(&file, 0, len as u64) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => file.set_len(len as u64)?,
            Err(e) => {
                let _ = file.set_len(0);
                return Err(e);
            }
        }
        let mut map = Mapping::new(&file, len)?;
        journal::write_header(map.bytes(), identity, limit, std::process::id());
        map.release(0..len);
        Ok(Journal {
            file,
            map,
            writer: Writer::new(limit, len, os::journal_copy_checksum()),
            path,
            forks: os::forks(),
            marks: Marks::default(),
            stuck: false,
            mapped_in: Vec::new(),
        })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line as the ring stores it. The common case (no fork since the last line, the
    /// record fits the current block) is a short straight path; the rest is out of line.
    #[inline(always)]
    pub(crate) fn append(&mut self, line: &[u8], meta: Meta) {
        if self.forks != os::forks() || !self.writer.append_in_block(self.map.bytes(), line, meta) {
            self.append_otherwise(line, meta);
        }
    }

    /// [`Journal::append`] after a fork (the child's PID goes into the header) or when the line
    /// does not fit the current block: start a new block (releasing a completed one), or grow
    /// the file and store the line then.
    #[cold]
    #[inline(never)]
    fn append_otherwise(&mut self, line: &[u8], meta: Meta) {
        if self.forks != os::forks() {
            self.forks = os::forks();
            journal::set_pid(self.map.bytes(), std::process::id());
        }
        let mut outcome = self.writer.append(self.map.bytes(), line, meta);
        loop {
            match outcome {
                Appended::Stored => return,
                Appended::Started { done, started } => {
                    // A small journal stays mapped: its pages are written again soon, and each
                    // page mapped in anew costs a page fault (several microseconds on a disk
                    // file system). A large one keeps about one block mapped (see docs/persist.md).
                    if self.map.len() > KEEP_MAPPED {
                        if let Some(done) = done {
                            self.map.release(done);
                        }
                    } else if !self.first_mapping_in(started.start) {
                        return;
                    }
                    // The new block's pages mapped in with one call, not one fault each.
                    return self.map.populate(started);
                }
                Appended::Grow => {
                    if self.grow().is_err() {
                        // No room: keep the newest lines the file can hold.
                        self.stuck = true;
                        self.writer.stop_growing();
                    }
                    outcome = self.writer.append(self.map.bytes(), line, meta);
                }
            }
        }
    }

    /// Whether the block at `start` of a journal that stays mapped in whole is mapped in for the
    /// first time (and notes that it now is).
    fn first_mapping_in(&mut self, start: usize) -> bool {
        let index = start.saturating_sub(HEADER) / BLOCK;
        if self.mapped_in.len() <= index {
            self.mapped_in.resize(index + 1, false);
        }
        !std::mem::replace(&mut self.mapped_in[index], true)
    }

    /// Adds an eighth (at least a block) to the file.
    #[cold]
    fn grow(&mut self) -> io::Result<()> {
        if self.stuck {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let len = self.map.bytes().len();
        let more = ((len - HEADER) / 8).div_ceil(BLOCK).max(1) * BLOCK;
        match os::allocate(&self.file, len as u64, more as u64) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => self.file.set_len((len + more) as u64)?,
            Err(e) => return Err(e),
        }
        self.map.grow(len + more)?;
        self.writer.grown(len + more);
        Ok(())
    }

    /// The sink that owns it now has `limit` (a logging reload with another `size` or `lines`):
    /// the file keeps what that limit keeps from now on, growing if it must. (The header keeps
    /// the first limit: a recovery uses the limit of the sink that opens the file.)
    pub(crate) fn set_limit(&mut self, limit: Limit) {
        self.writer.set_limit(limit);
    }

    /// A dump took every line stored so far: the mark to give [`Journal::dump_ended`].
    pub(crate) fn dump_took(&mut self) -> u64 {
        if self.marks.outstanding == 0 {
            // Lines given back by failed dumps are all in the ring again: this take has them.
            self.marks.gave_back = false;
        }
        self.marks.outstanding += 1;
        self.writer.next_seq() - 1
    }

    /// The dump that took lines at `mark` ended; `written`: it wrote them all.
    pub(crate) fn dump_ended(&mut self, mark: u64, written: bool) {
        self.marks.outstanding = self.marks.outstanding.saturating_sub(1);
        if written {
            self.marks.best = self.marks.best.max(mark);
        } else {
            self.marks.gave_back = true;
        }
        if self.marks.outstanding == 0 && !self.marks.gave_back && self.marks.best > self.marks.through {
            self.marks.through = self.marks.best;
            journal::set_dumped_through(self.map.bytes(), self.marks.through);
        }
    }

    /// The lines held were thrown away (the shell's `clear()`): they are not recovered.
    pub(crate) fn cleared(&mut self) {
        let mark = self.dump_took();
        self.dump_ended(mark, true);
    }

    /// Marks the file as closed by a clean shutdown: no recovery at the next start. The lock
    /// goes with the file when the journal is dropped.
    pub(crate) fn close_cleanly(mut self) {
        journal::set_clean(self.map.bytes(), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_dir::TestDir;
    use std::os::unix::fs::PermissionsExt;

    fn texts(ring: &Ring) -> Vec<String> {
        ring.iter().map(|l| String::from_utf8_lossy(&l.to_vec()).into_owned()).collect()
    }

    #[test]
    fn a_new_file_is_private_and_a_clean_close_leaves_nothing_to_recover() {
        let dir = TestDir::new("persist-new");
        let opened = open(Path::new(&dir.path()), "main", Limit::Lines(100));
        assert!(opened.warnings.is_empty(), "{:?}", opened.warnings);
        let mut journal = opened.journal.expect("a journal");
        let meta = std::fs::metadata(journal.path()).expect("the file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        journal.append(b"one\n", Meta::default());
        journal.close_cleanly();
        let again = open(Path::new(&dir.path()), "main", Limit::Lines(100));
        assert!(again.recovery.is_none() && again.warnings.is_empty());
    }

    #[test]
    fn lines_of_a_journal_never_closed_are_recovered_within_the_limit() {
        let dir = TestDir::new("persist-recover");
        let mut journal = open(Path::new(&dir.path()), "7", Limit::Lines(3)).journal.expect("a journal");
        for i in 0..10 {
            journal.append(format!("{i}\n").as_bytes(), Meta { time: i, source_at: 0 });
        }
        let mark = journal.dump_took();
        journal.append(b"10\n", Meta::default());
        journal.dump_ended(mark, true);
        journal.append(b"11\n", Meta::default());
        drop(journal); // the process ends without a clean shutdown
        let opened = open(Path::new(&dir.path()), "7", Limit::Lines(3));
        let recovery = opened.recovery.expect("recovered");
        assert_eq!(texts(&recovery.lines), ["10\n", "11\n"], "dumped lines are not recovered again");
        assert_eq!(recovery.pid, std::process::id());
        assert!(open(Path::new(&dir.path()), "8", Limit::Lines(3)).recovery.is_none(), "another sink's file");
    }

    #[test]
    fn a_journal_given_a_larger_limit_keeps_what_the_new_limit_keeps() {
        let dir = TestDir::new("persist-new-limit");
        let line = |i: usize| format!("{i:0>999}\n").into_bytes();
        let mut journal = open(Path::new(&dir.path()), "n", Limit::Lines(10)).journal.expect("a journal");
        for i in 0..300 {
            journal.append(&line(i), Meta::default());
        }
        journal.set_limit(Limit::Lines(200)); // a reload with `lines = 200`
        for i in 300..600 {
            journal.append(&line(i), Meta::default());
        }
        drop(journal);
        let recovery = open(Path::new(&dir.path()), "n", Limit::Lines(200)).recovery.expect("recovered");
        let wanted: Vec<Vec<u8>> = (400..600).map(line).collect();
        assert_eq!(recovery.lines.iter().map(|l| l.to_vec()).collect::<Vec<_>>(), wanted);
    }

    #[test]
    fn a_failed_dump_keeps_its_lines_recoverable() {
        let dir = TestDir::new("persist-marks");
        let mut journal = open(Path::new(&dir.path()), "m", Limit::Lines(100)).journal.expect("a journal");
        journal.append(b"a\n", Meta::default());
        let first = journal.dump_took();
        journal.append(b"b\n", Meta::default());
        let second = journal.dump_took();
        journal.dump_ended(second, true); // the later dump worked, the earlier is still out
        journal.dump_ended(first, false); // and failed: its lines went back
        drop(journal);
        let recovery = open(Path::new(&dir.path()), "m", Limit::Lines(100)).recovery.expect("recovered");
        assert_eq!(texts(&recovery.lines), ["a\n", "b\n"]);
    }

    #[test]
    fn hostile_files_are_moved_aside_and_the_sink_starts_empty() {
        let dir = TestDir::new("persist-hostile");
        let base = PathBuf::from(dir.path());
        let limit = Limit::Lines(10);
        let private = |p: &Path, bytes: &[u8]| {
            std::fs::write(p, bytes).expect("write");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        };
        type Make = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Make, &str)> = vec![
            ("truncated", Box::new(move |p| private(p, b"PRBRING\0abc")), "truncated"),
            ("zeroes", Box::new(move |p| private(p, &[0u8; 8192])), "zero-filled"),
            (
                "random",
                Box::new(move |p| private(p, &(0..70_000).map(|i| (i * 31 % 256) as u8).collect::<Vec<_>>())),
                "magic",
            ),
            (
                "other",
                Box::new(|p| {
                    let other = p.with_file_name("ringbuffer-someone.ring");
                    drop(open(p.parent().expect("dir"), "someone", Limit::Lines(10)));
                    std::fs::rename(other, p).expect("rename");
                }),
                "another sink's file",
            ),
            ("link", Box::new(|p| std::os::unix::fs::symlink("/etc/passwd", p).expect("symlink")), "symbolic link"),
            ("dir", Box::new(|p| std::fs::create_dir(p).expect("mkdir")), "a directory"),
            (
                "mode",
                Box::new(|p| {
                    std::fs::write(p, b"x").expect("write");
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
                }),
                "mode 644",
            ),
            (
                "owner",
                Box::new(|p| {
                    std::fs::write(p, b"x").expect("write");
                    std::os::unix::fs::chown(p, Some(65534), None).expect("chown (tests run as root)");
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
                }),
                "owned by user 65534",
            ),
            (
                "fifo",
                Box::new(|p| {
                    let status = std::process::Command::new("mkfifo").arg(p).status().expect("mkfifo");
                    assert!(status.success());
                }),
                "not a regular file",
            ),
        ];
        for (name, make, why) in cases {
            let path = path_for(&base, name);
            make(&path);
            let opened = open(&base, name, limit);
            assert!(opened.journal.is_some(), "{name}: runs persisted, anew");
            assert!(opened.recovery.is_none(), "{name}");
            assert!(
                opened.warnings.len() == 1
                    && opened.warnings[0].contains(why)
                    && opened.warnings[0].contains(".corrupt"),
                "{name}: {:?}",
                opened.warnings
            );
            assert!(aside(&path).symlink_metadata().is_ok(), "{name}: moved aside");
            assert!(std::fs::symlink_metadata(&path).expect("new file").file_type().is_file(), "{name}");
        }
        assert!(std::fs::read("/etc/passwd").is_ok_and(|b| !b.starts_with(b"PRBRING")), "a link's target untouched");
    }

    #[test]
    fn a_file_locked_by_another_process_is_left_alone() {
        let dir = TestDir::new("persist-locked");
        let base = PathBuf::from(dir.path());
        let path = path_for(&base, "main");
        drop(open(&base, "main", Limit::Lines(10)));
        let before = std::fs::read(&path).expect("the file");
        // Another process holds the lock (flock(1) on the file, kept open while it sleeps).
        let mut holder = std::process::Command::new("flock")
            .arg(&path)
            .args(["-c", "echo locked; exec sleep 30"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flock(1)");
        let mut said = [0u8; 7];
        holder.stdout.take().expect("stdout").read_exact(&mut said).expect("the holder says it has the lock");
        let opened = open(&base, "main", Limit::Lines(10));
        let _ = holder.kill();
        let _ = holder.wait();
        assert!(opened.journal.is_none() && opened.recovery.is_none());
        assert!(opened.warnings[0].contains("another process holds it"), "{:?}", opened.warnings);
        assert_eq!(std::fs::read(&path).expect("the file"), before, "not touched");
        assert!(!aside(&path).exists());
    }

    #[test]
    fn a_full_file_system_leaves_the_sink_without_persistence() {
        let dir = TestDir::tmpfs("persist-full", 2 << 20);
        dir.fill();
        let opened = open(Path::new(&dir.path()), "main", Limit::Bytes(1 << 20));
        assert!(opened.journal.is_none());
        assert!(opened.warnings[0].contains("without persistence"), "{:?}", opened.warnings);
        dir.unfill();
        let opened = open(Path::new(&dir.path()), "main", Limit::Bytes(1 << 20));
        assert!(opened.journal.is_some(), "{:?}", opened.warnings);
    }

    /// Run as a child process by the test below: logs numbered lines into a journal until it
    /// is killed.
    #[test]
    #[ignore = "a child process of lines_stored_before_a_sigkill_are_recovered"]
    fn journal_writer_child() {
        let Ok(base) = std::env::var("LRB_JOURNAL_DIR") else { return };
        let base = PathBuf::from(base);
        let mut journal = open(&base, "kill", Limit::Lines(50_000)).journal.expect("journal");
        for i in 1..=u64::MAX {
            journal.append(format!("line {i:09} {}\n", "x".repeat((i % 50) as usize)).as_bytes(), Meta::default());
            if i == 1000 {
                std::fs::write(base.join("progress"), b"1000").expect("progress");
            }
        }
    }

    /// A child process logs into a journal and is killed with SIGKILL at a random moment: every
    /// line it stored before is recovered, in order, each once.
    #[test]
    fn lines_stored_before_a_sigkill_are_recovered() {
        let dir = TestDir::new("persist-kill");
        let base = PathBuf::from(dir.path());
        for round in 0..5u64 {
            let progress = base.join("progress");
            let _ = std::fs::remove_file(&progress);
            // (Its output kept, and shown if it fails: a child that ended early says why.)
            let output = base.join("child.out");
            let out = std::fs::File::create(&output).expect("the child's output file");
            let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "runtime::persist::tests::journal_writer_child", "--ignored", "--test-threads=1"])
                .arg("--nocapture")
                .env("LRB_JOURNAL_DIR", &base)
                .stdout(out.try_clone().expect("the output file again"))
                .stderr(out)
                .spawn()
                .expect("the child");
            let said = || std::fs::read_to_string(&output).unwrap_or_default();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !progress.exists() {
                if let Some(status) = child.try_wait().expect("the child's status") {
                    panic!("round {round}: the child ended ({status}) before it logged 1000 lines: {}", said());
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: the child never logged 1000 lines: {}",
                    said()
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::thread::sleep(std::time::Duration::from_millis(round * 37));
            child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
            child.wait().expect("reaped");
            let opened = open(&base, "kill", Limit::Lines(50_000));
            let recovery = opened.recovery.expect("recovered");
            assert_eq!(recovery.pid, child.id());
            assert!(recovery.torn <= 1 && recovery.damaged == 0, "{recovery:?}");
            let lines = texts(&recovery.lines);
            assert!(lines.len() >= 1000, "{}", lines.len());
            let numbers: Vec<u64> = lines.iter().map(|l| l[5..14].parse().expect("number")).collect();
            let first = numbers[0];
            assert!(numbers.iter().enumerate().all(|(i, &n)| n == first + i as u64), "in order, none missing");
            assert!(first == 1 || lines.len() == 50_000, "exactly what the limit keeps");
            opened.journal.expect("anew").close_cleanly();
        }
    }
}
