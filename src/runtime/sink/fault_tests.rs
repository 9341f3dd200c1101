//! A sink's dumps against real faults (see `dump_file`): a full disk, a read-only remount, a
//! file that cannot hold a dump, a file-size limit. Each runs under `lock_watch`: a lock left
//! held or taken again fails the test (the old `reserve` -> `give_back` self-deadlock did, on a
//! full disk). Here, above both, so that `dump_file` needs no sink.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pure::options::{Compression, OptValue, SinkOptions};
use crate::runtime::dump_file::prepare;
use crate::runtime::dump_file::tests::{compressed_dump, file_len, noisy_ring, ring_of, write_dump, PATIENCE};
use crate::runtime::lock_watch;
use crate::runtime::sink::{DumpOrigin, DumpRequest, Sink};
use crate::runtime::test_dir::TestDir;
use crate::runtime::writer;

/// A sink dumping to `path` (`compress`: "gzip" or "zstd"), holding up to 100,000 lines.
fn file_sink(path: &str, compress: Option<&str>) -> Arc<Sink> {
    let (path, compress) = (path.to_string(), compress.map(str::to_string));
    let (options, problems) = SinkOptions::parse(
        |k| match (k, &compress) {
            ("filename", _) => OptValue::Str(path.clone()),
            ("lines", _) => OptValue::Int(100_000),
            ("compress", Some(codec)) => OptValue::Str(codec.clone()),
            _ => OptValue::Absent,
        },
        &[],
    );
    assert!(problems.is_empty(), "{problems:?}");
    Arc::new(Sink::new(options, Vec::new()))
}

fn push_numbered(sink: &Sink, from: usize, to: usize) {
    for n in from..to {
        sink.push(format!("c2s{n:x}\tdebug\tline {n:06}\n").as_bytes(), 0);
    }
}

/// The numbers of the `line N` lines of every dump in `path`, in file order, after checking
/// that the file holds whole dumps only and no NUL byte.
fn numbers_in(path: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(!text.contains('\0'), "a NUL byte in {path}");
    assert_eq!(text.matches("-- Dumping log buffer at ").count(), text.matches("-- End of dump --").count());
    text.lines().filter_map(|l| l.rsplit_once("\tline ")).map(|(_, n)| n.parse().expect("a number")).collect()
}

#[test]
fn a_dump_to_a_full_disk_fails_keeps_its_lines_and_the_next_holds_them_once() {
    lock_watch::within(PATIENCE, || {
        let dir = TestDir::tmpfs("full-disk", 512 * 1024);
        let path = dir.file("dump.log");
        let sink = file_sink(&path, None);
        push_numbered(&sink, 0, 1000);
        sink.dump(DumpOrigin::LuaThread, "first").expect("room for the first");
        assert!(writer::wait_idle(PATIENCE));
        let before = std::fs::read(&path).expect("read");
        push_numbered(&sink, 1000, 3000);
        dir.fill();
        for attempt in 0..3 {
            let err = sink.dump(DumpOrigin::LuaThread, "full").expect_err("no room");
            assert_eq!(err.to_string(), format!("Unable to write dump: {path}: No space left on device"), "{attempt}");
            assert_eq!(std::fs::read(&path).expect("read"), before, "the file is as it was");
        }
        assert_eq!(sink.usage().0, 2000, "the lines stay in the buffer");
        assert_eq!(sink.outcomes().failed, 3);
        dir.unfill();
        push_numbered(&sink, 3000, 3010);
        sink.dump(DumpOrigin::LuaThread, "room again").expect("room again");
        assert!(writer::wait_idle(PATIENCE));
        assert_eq!(numbers_in(&path), (0..3010).collect::<Vec<_>>(), "every line once, in order");
        assert_eq!(sink.usage().0, 0);
    });
}

#[test]
fn a_dump_to_a_read_only_file_system_fails_keeps_its_lines_and_the_next_holds_them_once() {
    lock_watch::within(PATIENCE, || {
        let dir = TestDir::tmpfs("read-only", 512 * 1024);
        let path = dir.file("dump.log");
        let sink = file_sink(&path, None);
        push_numbered(&sink, 0, 100);
        sink.dump(DumpOrigin::LuaThread, "first").expect("writable");
        assert!(writer::wait_idle(PATIENCE));
        push_numbered(&sink, 100, 300);
        dir.read_only(true);
        let err = sink.dump(DumpOrigin::LuaThread, "read-only").expect_err("read-only");
        assert_eq!(err.to_string(), format!("Unable to open output file: {path}: Read-only file system"));
        let fresh = dir.file("new.log");
        let err = prepare(&fresh, 0, 10, &[]).expect_err("read-only");
        assert!(err.to_string().ends_with("new.log: Read-only file system"), "{err}");
        assert_eq!(sink.usage().0, 200);
        dir.read_only(false);
        sink.dump(DumpOrigin::LuaThread, "writable again").expect("writable again");
        assert!(writer::wait_idle(PATIENCE));
        assert_eq!(numbers_in(&path), (0..300).collect::<Vec<_>>());
    });
}

#[test]
fn a_file_that_cannot_hold_a_dump_fails_at_once_and_holds_no_lock() {
    lock_watch::within(PATIENCE, || {
        let sink = file_sink("/nonexistent-lrb/unused.log", None);
        push_numbered(&sink, 0, 10);
        let started = Instant::now();
        for _ in 0..3 {
            let flight = match writer::admit(DumpOrigin::LuaThread) {
                Some(writer::Admission::Background(f) | writer::Admission::Now(f)) => f,
                None => panic!("not admitted"),
            };
            let request = DumpRequest { to: Some("/proc/self/mem".into()), ..DumpRequest::default() };
            let err = sink.dump_copy("test", &request, flight).expect_err("not a file for dumps");
            assert!(err.to_string().starts_with("Unable to write dump: /proc/self/mem: "), "{err}");
        }
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        let dir = TestDir::new("after-proc-mem");
        write_dump(&dir.file("d.log"), 0, &ring_of(&["fine\n"])).expect("nothing is left locked");
        assert_eq!(sink.usage().0, 10);
    });
}

/// Run by `a_file_size_limit_fails_the_dump_and_does_not_kill_the_process` under a 64 KiB
/// limit (`RLIMIT_FSIZE` is per process: the test binary runs itself under `prlimit`).
#[test]
#[ignore = "run by a_file_size_limit_fails_the_dump_and_does_not_kill_the_process"]
fn past_a_file_size_limit() {
    lock_watch::within(PATIENCE, || {
        let dir = TestDir::tmpfs("file-size", 1024 * 1024);
        let path = dir.file("dump.log");
        let sink = file_sink(&path, None);
        push_numbered(&sink, 0, 4000); // 112 KB
        let err = sink.dump(DumpOrigin::LuaThread, "limit").expect_err("past the limit");
        assert_eq!(err.to_string(), format!("Unable to write dump: {path}: File too large"));
        assert_eq!((sink.usage().0, file_len(&path)), (4000, 0));
        let zst = dir.file("dump.log.zst");
        let err = compressed_dump(&zst, Compression::Zstd, &[], &noisy_ring(1000)).expect_err("past the limit");
        assert!(err.to_string().ends_with("dump.log.zst: File too large"), "{err}");
        assert_eq!(file_len(&zst), 0, "cut back");
        sink.clear();
        push_numbered(&sink, 0, 10);
        sink.dump(DumpOrigin::LuaThread, "within the limit").expect("within the limit");
        assert!(writer::wait_idle(PATIENCE));
        assert_eq!(numbers_in(&path), (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn a_file_size_limit_fails_the_dump_and_does_not_kill_the_process() {
    let test = "runtime::sink::fault_tests::past_a_file_size_limit";
    let out = std::process::Command::new("prlimit")
        .args(["--fsize=65536", "--"])
        .arg(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--ignored", "--test-threads=1"])
        .output()
        .expect("prlimit");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} (signal {:?}): {text}", out.status, out.status.signal());
    assert!(text.contains("1 passed"), "{text}");
}
