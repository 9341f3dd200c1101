//! The tests of `dump_on_crash`: the output, the names, arming, and real crashes, each in a
//! process of its own (this test binary, run again).

use std::ffi::c_void;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::arming::{unwatch, watch, STATE};
use super::handler::on_fatal;
use super::in_flight::stop_dumps_in_flight;
use super::names::{name_for_pid, render, NAME_CAP};
use super::output::{write_dump, write_lines, Crash, CrashFile, Out, Sender, OUT_CAP};
use super::previous::{raise, set_default, FATAL};
use super::shared::{ArmedSink, ARMED};
use super::watchdog::WATCHDOG_SECONDS;
use crate::pure::options::{OptValue, SinkOptions};
use crate::pure::records::FOOTER;
use crate::pure::ring::Limit;
use crate::pure::ring::Ring;
use crate::runtime::os;
use crate::runtime::regions;
use crate::runtime::shared_ring::CrashView;
use crate::runtime::sink::Sink;
use crate::runtime::test_dir::TestDir;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;

fn sink_with(dir: &str, template: &str, extra: &[(&'static str, OptValue)]) -> Arc<Sink> {
    let template = template.to_string();
    let (options, problems) = SinkOptions::parse(
        |k| match extra.iter().find(|(name, _)| *name == k) {
            Some((_, value)) => value.clone(),
            None if k == "filename_template" => OptValue::Str(template.clone()),
            None if k == "lines" => OptValue::Int(100),
            None => OptValue::Absent,
        },
        &[],
    );
    assert!(problems.is_empty(), "{problems:?}");
    Arc::new(Sink::new(options, vec![("data".into(), dir.to_string())]))
}

fn crash(sender: Sender) -> Crash {
    Crash { signal_name: "SIGSEGV", sender, time: 1_700_000_000, utc_offset: 3600 }
}

/// The dump `write_dump` makes of `ring`, as text.
fn dump_text(ring: &Ring, view: CrashView, crash: &Crash, cutoff: Option<u32>, buffer: usize) -> String {
    let dir = TestDir::new("crash-text");
    let path = dir.file("d.log");
    let file = std::fs::File::create(&path).expect("create");
    let mut buf = vec![0u8; buffer];
    let mut out = Out::new(file.as_raw_fd(), &mut buf);
    assert!(write_dump(&mut out, crash, |out| write_lines(out, ring, view, cutoff)));
    std::fs::read_to_string(&path).expect("read")
}

fn ring_of(lines: &[(&str, u32)]) -> Ring {
    let mut ring = Ring::new(Limit::Lines(100));
    for (line, time) in lines {
        ring.push(line.as_bytes(), *time);
    }
    ring
}

#[test]
fn a_dump_is_the_header_the_lines_the_signal_and_the_footer() {
    let ring = ring_of(&[("one\n", 5), ("two\n", 6)]);
    // 16 bytes of buffer: many writes, same bytes.
    for buffer in [16, OUT_CAP] {
        let text = dump_text(&ring, CrashView::Whole, &crash(Sender::Kernel), None, buffer);
        assert_eq!(
            text,
            "-- Dumping log buffer at Nov 14 23:13:20  --\none\ntwo\n-- Fatal signal SIGSEGV --\n-- End of dump --\n\n"
        );
    }
    let text = dump_text(&ring, CrashView::Whole, &crash(Sender::Process(4321)), Some(6), 64);
    assert!(text.ends_with("\ntwo\n-- Fatal signal SIGSEGV, sent by PID 4321 --\n-- End of dump --\n\n"), "{text}");
    assert!(!text.contains("one"), "max_age leaves older lines out");
    let text = dump_text(&Ring::new(Limit::Lines(1)), CrashView::Whole, &crash(Sender::ThisProcess), None, 64);
    assert!(text.ends_with("  --\n-- Fatal signal SIGSEGV, raised by this process --\n-- End of dump --\n\n"));
}

#[test]
fn a_read_that_may_be_torn_is_marked_and_writes_no_nul_bytes() {
    let ring = ring_of(&[("one\n", 0), ("t\0rn\n", 0)]);
    let text = dump_text(&ring, CrashView::MayBeIncomplete, &crash(Sender::Kernel), None, 64);
    assert!(text.contains("\none\nt\u{2400}rn\n-- may be incomplete --\n-- Fatal signal SIGSEGV --\n"), "{text}");
}

#[test]
fn a_forked_child_puts_its_pid_where_pid_was() {
    let dir = TestDir::new("crash-pid");
    let sink = sink_with(&dir.path(), "{paths.data}/{pid}/x-{pid}-{count}.log", &[]);
    let rendered = render(&sink, 4711, 3, 0).expect("render");
    let root = dir.path();
    assert_eq!(rendered.text, format!("{root}/4711/x-4711-3.log"));
    assert_eq!(rendered.pid_spots, vec![root.len() + 1, root.len() + 8]);
    let slot = ArmedSink::new(Arc::clone(&sink));
    slot.store(Some(&rendered));
    // SAFETY: nothing else uses this slot.
    let name = unsafe { &*slot.names[usize::from(slot.current.load(Ordering::SeqCst))].get() };
    let mut scratch = [0u8; NAME_CAP + 40];
    let same = name_for_pid(name, 4711, &mut scratch).expect("name").to_vec();
    assert_eq!(same, format!("{root}/4711/x-4711-3.log\0").into_bytes());
    let forked = name_for_pid(name, 1_234_567, &mut scratch).expect("name");
    assert_eq!(forked, format!("{root}/1234567/x-1234567-3.log\0").as_bytes());
    // No {pid}, or one under a filter: the name stays as rendered.
    let plain = sink_with(&root, "{paths.data}/x.log", &[]);
    assert_eq!(render(&plain, 4711, 0, 0).expect("render").pid_spots, Vec::<usize>::new());
    let filtered = sink_with(&root, "{paths.data}/{pid|hhmmss}-{pid}.log", &[]);
    assert_eq!(render(&filtered, 4711, 0, 0).expect("render").pid_spots, Vec::<usize>::new());
    // Unusable names are refused at arming.
    let long = sink_with(&root, &"x".repeat(NAME_CAP), &[]);
    assert!(render(&long, 1, 0, 0).expect_err("too long").contains("longer than 4095 bytes"));
}

#[test]
fn files_are_opened_like_normal_dumps() {
    let dir = TestDir::new("crash-open");
    let nul = |p: &str| format!("{p}\0").into_bytes();
    let fifo = dir.file("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    assert!(CrashFile::open(&nul(&fifo)).is_none(), "a FIFO without reader fails at once");
    let (target, link) = (dir.file("target"), dir.file("link"));
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    assert!(CrashFile::open(&nul(&link)).is_none(), "a symlink is refused");
    let new = dir.file("new.log");
    drop(CrashFile::open(&nul(&new)).expect("created"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&new).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(CrashFile::open(b"/dev/stderr\0").map(|f| (f.fd, f.close)), Some((2, false)));
    assert!(CrashFile::open(b"no-nul").is_none());
}

/// The one test that arms in this process (arming is process-wide).
#[test]
fn the_first_sink_installs_the_handler_and_the_last_one_puts_back_what_was_there() {
    let dir = TestDir::new("crash-arm");
    let before: Vec<_> = FATAL.iter().map(|&(s, _)| os::current_handler(s)).collect();
    let ours = on_fatal as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t;
    let long = sink_with(&dir.path(), &"x".repeat(NAME_CAP), &[]);
    assert!(watch(&long).is_err());
    assert_eq!(FATAL.iter().map(|&(s, _)| os::current_handler(s)).collect::<Vec<_>>(), before);

    let (a, b) = (sink_with(&dir.path(), "{paths.data}/a-{count}.log", &[]), sink_with(&dir.path(), "b", &[]));
    watch(&a).expect("watch");
    watch(&b).expect("watch");
    watch(&a).expect("again");
    assert_eq!(STATE.lock().slots.len(), 2);
    assert!(FATAL.iter().all(|&(s, _)| os::current_handler(s) == ours));

    // After a dump, the name has the next dump's {count}.
    let count_in_name = || {
        let state = STATE.lock();
        let slot = state.slots.iter().find(|s| Arc::ptr_eq(&s.sink, &a)).expect("slot");
        // SAFETY: names are written only under STATE, which is held.
        let name = unsafe { &*slot.names[usize::from(slot.current.load(Ordering::SeqCst))].get() };
        let text = std::str::from_utf8(&name.bytes[..name.len]).expect("utf8").to_string();
        text.rsplit('-').next().and_then(|c| c.strip_suffix(".log")).and_then(|c| c.parse::<u64>().ok())
    };
    let first = count_in_name().expect("a count");
    a.push(b"line\n", 0);
    let dumped = a.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
    assert!(super::super::writer::wait_idle(Duration::from_secs(5)));
    let dumped_count: u64 =
        dumped.path.rsplit('-').next().and_then(|c| c.strip_suffix(".log")).expect("count").parse().expect("n");
    assert!(dumped_count >= first);
    assert!(count_in_name().expect("a count") > dumped_count);

    unwatch(&a);
    assert!(FATAL.iter().all(|&(s, _)| os::current_handler(s) == ours), "still used by b");
    unwatch(&b);
    unwatch(&b);
    assert_eq!(FATAL.iter().map(|&(s, _)| os::current_handler(s)).collect::<Vec<_>>(), before);
    assert!(ARMED.load(Ordering::SeqCst).is_null());
}

// ---- Real crashes, each in a process of its own (this test binary, run again) ----

/// Runs the ignored test `name` in a new process with `dir` as its folder.
fn run_child(name: &str, dir: &TestDir) -> std::process::ExitStatus {
    std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", &format!("runtime::crash::tests::{name}"), "--ignored", "--test-threads=1"])
        .env("CRASH_TEST_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run")
}

/// In a child: no core files, the default action for the faults (the test harness has
/// Rust's stack overflow handler there), a sink holding two lines, armed.
fn child_sink() -> Arc<Sink> {
    child_sink_to("crash-{pid}.log")
}

fn child_sink_to(name: &str) -> Arc<Sink> {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads the local.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    set_default(libc::SIGSEGV);
    set_default(libc::SIGBUS);
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    let sink = sink_with(&dir, &format!("{{paths.data}}/{name}"), &[]);
    sink.push(b"one\n", 0);
    sink.push(b"two\n", 0);
    watch(&sink).expect("watch");
    sink
}

/// Waits to be killed; exits with 3 if that does not happen.
fn linger() -> ! {
    std::thread::sleep(Duration::from_secs(5));
    std::process::exit(3)
}

/// The one dump in the crash file of `pid` in `dir`: its lines after the header.
fn dumped_lines(dir: &TestDir, pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(dir.file(&format!("crash-{pid}.log"))).expect("a dump file");
    let body = text.strip_suffix("\n-- End of dump --\n\n").unwrap_or_else(|| panic!("unfinished: {text}"));
    let lines: Vec<String> = body.lines().map(String::from).collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("-- Dumping log buffer at ")).count(), 1, "{text}");
    assert!(lines[0].starts_with("-- Dumping log buffer at ") && lines[0].ends_with("  --"), "{text}");
    lines[1..].to_vec()
}

fn child_pid_of(dir: &TestDir) -> u32 {
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("crash-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].trim_start_matches("crash-").trim_end_matches(".log").parse().expect("pid")
}

#[test]
#[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
fn child_kill() {
    let _sink = child_sink();
    // SAFETY: kill with our own PID.
    unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
    linger();
}

#[test]
#[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
fn child_fault() {
    let _sink = child_sink();
    // SAFETY: not safe at all: a write to an unmapped page, the fault this test is about.
    unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u8>(8), 1) };
    linger();
}

#[test]
#[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
fn child_abort() {
    let _sink = child_sink();
    std::process::abort();
}

#[test]
#[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
fn child_mid_push() {
    let sink = child_sink();
    // The signal comes while this (the owner) thread is storing a line.
    sink.push_in_place(0.into(), |_| {
        raise(libc::SIGSEGV);
        None
    });
    linger();
}

static CHAINED_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn earlier_handler(_: c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: write and _exit are async-signal-safe; info comes from the kernel.
    unsafe {
        let text: &[u8] = if (*info).si_code <= 0 { b"chained, sent\n" } else { b"chained\n" };
        libc::write(CHAINED_FD.load(Ordering::SeqCst), text.as_ptr().cast(), text.len());
        libc::_exit(42);
    }
}

#[test]
#[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
fn child_chained() {
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    let marker = std::fs::File::create(format!("{dir}/chained")).expect("marker");
    CHAINED_FD.store(marker.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(marker);
    // SAFETY: installs a three-argument handler with SA_SIGINFO, from zeroed plain data.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = earlier_handler as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
    }
    let _sink = child_sink();
    raise(libc::SIGABRT);
    linger();
}

#[test]
#[ignore = "run by real_crashes_dump_and_die_by_their_signal"]
fn child_forked() {
    let _sink = child_sink();
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    std::fs::write(format!("{dir}/forker"), std::process::id().to_string()).expect("write");
    // SAFETY: the grandchild only raises a signal (its handler is async-signal-safe) or
    // _exits; this process waits for it.
    unsafe {
        let grandchild = libc::fork();
        if grandchild == 0 {
            libc::kill(libc::getpid(), libc::SIGBUS);
            libc::_exit(3);
        }
        let mut status = 0;
        libc::waitpid(grandchild, &mut status, 0);
        let ok = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS;
        libc::_exit(if ok { 0 } else { 4 });
    }
}

#[test]
#[ignore = "run by a_dump_that_cannot_finish_is_cut_off_by_the_watchdog"]
fn child_stuck_reader() {
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    let fifo = format!("{dir}/fifo\0");
    // SAFETY: mkfifo and open read the NUL-terminated path; the read end is kept open and
    // never read, so writing blocks once the pipe is full.
    unsafe {
        libc::mkfifo(fifo.as_ptr().cast(), 0o600);
        libc::open(fifo.as_ptr().cast(), libc::O_RDONLY | libc::O_NONBLOCK);
    }
    let sink = child_sink_to("fifo");
    for _ in 0..100 {
        sink.push(&[b'x'; 2000], 0); // far more than a pipe holds
    }
    raise(libc::SIGSEGV);
    linger();
}

#[test]
fn a_dump_that_cannot_finish_is_cut_off_by_the_watchdog() {
    let dir = TestDir::new("child_stuck_reader");
    let started = Instant::now();
    let status = run_child("child_stuck_reader", &dir);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(u64::from(WATCHDOG_SECONDS)) && took < Duration::from_secs(8), "{took:?}");
}

#[test]
fn real_crashes_dump_and_die_by_their_signal() {
    for (child, signal, last) in [
        ("child_kill", libc::SIGSEGV, "-- Fatal signal SIGSEGV, raised by this process --"),
        ("child_fault", libc::SIGSEGV, "-- Fatal signal SIGSEGV --"),
        ("child_abort", libc::SIGABRT, "-- Fatal signal SIGABRT, raised by this process --"),
    ] {
        let dir = TestDir::new(child);
        let status = run_child(child, &dir);
        assert_eq!(status.signal(), Some(signal), "{child}: {status:?}");
        assert_eq!(dumped_lines(&dir, child_pid_of(&dir)), ["one", "two", last], "{child}");
    }
}

#[test]
fn a_crash_while_a_line_is_stored_is_marked() {
    let dir = TestDir::new("child_mid_push");
    let status = run_child("child_mid_push", &dir);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    assert_eq!(
        dumped_lines(&dir, child_pid_of(&dir)),
        ["one", "two", "-- may be incomplete --", "-- Fatal signal SIGSEGV, raised by this process --"]
    );
}

#[test]
fn an_earlier_handler_is_called_after_the_dump() {
    let dir = TestDir::new("child_chained");
    let status = run_child("child_chained", &dir);
    assert_eq!(status.code(), Some(42), "{status:?}");
    assert_eq!(std::fs::read_to_string(dir.file("chained")).expect("marker"), "chained, sent\n");
    assert_eq!(dumped_lines(&dir, child_pid_of(&dir)).len(), 3);
}

#[test]
fn a_forked_child_dumps_to_its_own_pid() {
    let dir = TestDir::new("child_forked");
    let status = run_child("child_forked", &dir);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let pid = child_pid_of(&dir);
    assert_ne!(pid.to_string(), std::fs::read_to_string(dir.file("forker")).expect("forker"));
    assert_eq!(
        dumped_lines(&dir, pid),
        ["one", "two", "-- Fatal signal SIGBUS, raised by this process --"],
        "the grandchild's dump, under its own PID"
    );
}

// ---- Dumps in flight when the crash comes ----

/// Every dump in `text`: (its lines, how it ends: "footer" or the failure line).
fn dumps_in(text: &str) -> Vec<(Vec<String>, String)> {
    assert!(!text.contains('\0'), "NUL bytes in the file");
    let mut found = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        if line.starts_with("-- Dumping log buffer at ") {
            assert!(current.is_none(), "a header without a footer or a failure mark: {line}");
            current = Some(Vec::new());
        } else if line == "-- End of dump --" || line.starts_with("-- Dump failed: ") {
            let end = if line.starts_with("-- End") { "footer".to_string() } else { line.trim_end().to_string() };
            found.push((current.take().unwrap_or_default(), end));
        } else if let Some(lines) = current.as_mut() {
            lines.push(line.to_string());
        }
    }
    assert!(current.is_none(), "the last dump has no footer");
    found
}

#[test]
#[ignore = "run by regions_in_flight_are_cut_off_or_marked"]
fn child_cut_regions() {
    use crate::runtime::dump_file;
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    let path = format!("{dir}/d.log");
    let whole = ring_of(&[("whole\n", 0)]);
    dump_file::prepare(&path, 0, whole.text_bytes(), &[]).expect("prepare").write(&whole).expect("dump");
    // A region waiting for its writer, another module's line after it, then two more
    // regions, the last one half written.
    let waiting = dump_file::prepare(&path, 0, 100, &[]).expect("prepare");
    let mut other = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
    std::io::Write::write_all(&mut other, b"another module's line\n").expect("write");
    let second = dump_file::prepare(&path, 0, 200, &[]).expect("prepare");
    let last = dump_file::prepare(&path, 0, 300, &[]).expect("prepare");
    let len = std::fs::metadata(&path).expect("meta").len();
    let writer = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    std::os::unix::fs::FileExt::write_all_at(&writer, b"-- Dumping log buffer at Jan 01 00:00:00  --\nhalf", len - 300)
        .expect("half written");
    let mut spaces = vec![0u8; 64];
    stop_dumps_in_flight(std::process::id(), &mut spaces);
    regions::release_all();
    let text = std::fs::read_to_string(&path).expect("read");
    let dumps = dumps_in(&text);
    assert_eq!(dumps.len(), 2, "{text}");
    assert_eq!(dumps[0], (vec!["whole".to_string()], "footer".to_string()));
    assert_eq!(dumps[1].1, "-- Dump failed: cut off by a fatal signal --");
    assert!(text.ends_with("  \nanother module's line\n"), "the later regions are cut off: {text:?}");
    let framing = crate::pure::records::plain_header(0).len() + FOOTER.len();
    assert_eq!(text.len(), len as usize - (200 + framing) - (300 + framing));
    drop((waiting, second, last));
}

#[test]
fn regions_in_flight_are_cut_off_or_marked() {
    let dir = TestDir::new("child_cut_regions");
    let status = run_child("child_cut_regions", &dir);
    assert!(status.success(), "{status:?}");
}

/// A sink of `dir` holding `count` numbered lines of about 100 bytes, armed.
fn big_sink(dir: &str, name: &str, count: usize, extra: &[(&'static str, OptValue)]) -> Arc<Sink> {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads the local.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    set_default(libc::SIGSEGV);
    let mut options = vec![("lines", OptValue::Int(count as i64 + 10))];
    options.extend_from_slice(extra);
    let sink = sink_with(dir, &format!("{{paths.data}}/{name}"), &options);
    let filler = "x".repeat(90);
    for n in 0..count {
        sink.push(format!("line {n:08} {filler}\n").as_bytes(), 0);
    }
    watch(&sink).expect("watch");
    sink
}

#[test]
#[ignore = "run by a_crash_during_a_background_dump_leaves_text_and_loses_no_line"]
fn child_crash_mid_dump() {
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    let sink = big_sink(&dir, "d.log", 400_000, &[]); // 40 MB: tens of ms to write
    sink.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
    if let Some(delay) = std::env::var("CRASH_DELAY_US").ok().and_then(|d| d.parse().ok()) {
        // From when the writer has begun (the region reads as NUL bytes until then).
        let file = std::fs::File::open(format!("{dir}/d.log")).expect("open");
        let mut first = [0u8];
        while std::os::unix::fs::FileExt::read_at(&file, &mut first, 0).ok() != Some(1) || first[0] == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(Duration::from_micros(delay));
    }
    // SAFETY: kill with our own PID.
    unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
    linger();
}

/// Checks the file of a child that crashed while it dumped 400,000 lines: text only, every
/// dump ended, and every line in a dump that ended with its footer, once.
fn check_nothing_lost(text: &str, count: usize) {
    let dumps = dumps_in(text);
    let mut seen = vec![0u32; count];
    for (lines, end) in &dumps {
        if end != "footer" {
            continue;
        }
        for line in lines {
            if let Some(n) = line.strip_prefix("line ").and_then(|l| l.get(..8)).and_then(|n| n.parse::<usize>().ok()) {
                seen[n] += 1;
            }
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    assert_eq!(
        missing,
        0,
        "{missing} lines are in no whole dump; dumps: {:?}",
        dumps.iter().map(|d| (d.0.len(), &d.1)).collect::<Vec<_>>()
    );
}

#[test]
fn a_crash_during_a_background_dump_leaves_text_and_loses_no_line() {
    // None: at once, while the dump may still wait for its writer.
    for delay in [None, Some(0), Some(2_000), Some(5_000), Some(10_000)] {
        let dir = TestDir::new("child_crash_mid_dump");
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
        child
            .args(["--exact", "runtime::crash::tests::child_crash_mid_dump", "--ignored", "--test-threads=1"])
            .env("CRASH_TEST_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(delay) = delay {
            child.env("CRASH_DELAY_US", delay.to_string());
        }
        let status = child.status().expect("run");
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
        let text = std::fs::read_to_string(dir.file("d.log")).expect("a dump file");
        assert!(text.ends_with("-- Fatal signal SIGSEGV, raised by this process --\n-- End of dump --\n\n"));
        let missing = "-- 400000 lines taken for a dump that was waiting to be written are missing --\n";
        if delay.is_none() && text.contains(missing) {
            assert_eq!(dumps_in(&text).len(), 1, "the waiting region is cut off");
        } else {
            check_nothing_lost(&text, 400_000);
        }
    }
}

#[test]
#[ignore = "run by a_crash_during_a_compressed_dump_leaves_the_file_whole_and_dumps_its_lines"]
fn child_crash_mid_compressed() {
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    let sink = big_sink(&dir, "c.log", 100_000, &[("compress", OptValue::Str("zstd".into()))]);
    sink.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
    // The hidden file is made as the dump begins, and gets its first bytes (the earlier
    // dump, copied) once the dump is in the table the handler reads (see `regions`).
    let hidden = format!("{dir}/.c.log.zst.{}.part", std::process::id());
    while std::fs::metadata(&hidden).map_or(true, |m| m.len() == 0) {
        std::thread::sleep(Duration::from_micros(200));
    }
    raise(libc::SIGSEGV);
    linger();
}

#[test]
fn a_crash_during_a_compressed_dump_leaves_the_file_whole_and_dumps_its_lines() {
    let dir = TestDir::new("child_crash_mid_compressed");
    std::fs::write(dir.file("c.log.zst"), zstd::encode_all(&b"earlier\n"[..], 3).expect("zstd")).expect("write");
    let status = run_child("child_crash_mid_compressed", &dir);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let compressed = std::fs::read(dir.file("c.log.zst")).expect("the file");
    let text = zstd::decode_all(&compressed[..]).expect("whole frames");
    assert!(text == b"earlier\n" || text.ends_with(b"-- End of dump --\n\n"), "as before, or with the whole dump");
    if text == b"earlier\n" {
        let crash = std::fs::read_to_string(dir.file("c.log")).expect("the crash dump");
        check_nothing_lost(&crash, 100_000);
        assert!(
            crash.contains("\n-- The next 100000 lines were being dumped when the crash came"),
            "{}",
            &crash[..200]
        );
    }
}

#[test]
#[ignore = "run by a_kill_during_a_compressed_dump_leaves_the_file_as_it_was"]
fn child_compressing() {
    let dir = std::env::var("CRASH_TEST_DIR").expect("CRASH_TEST_DIR");
    let sink = big_sink(&dir, "k.log", 200_000, &[("compress", OptValue::Str("gzip".into()))]);
    sink.dump(crate::runtime::sink::DumpOrigin::LuaThread, "test").expect("dump");
    linger();
}

#[test]
fn a_kill_during_a_compressed_dump_leaves_the_file_as_it_was() {
    use std::io::Read;
    let dir = TestDir::new("child_compressing");
    let earlier = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, b"earlier\n").expect("gzip");
        encoder.finish().expect("gzip")
    };
    std::fs::write(dir.file("k.log.gz"), &earlier).expect("write");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "runtime::crash::tests::child_compressing", "--ignored", "--test-threads=1"])
        .env("CRASH_TEST_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    let hidden = dir.file(&format!(".k.log.gz.{}.part", child.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&hidden).map_or(true, |m| m.len() <= earlier.len() as u64) {
        assert!(Instant::now() < deadline, "the dump did not begin");
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().expect("SIGKILL");
    assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
    let now = std::fs::read(dir.file("k.log.gz")).expect("the file");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&now[..]).read_to_string(&mut text).expect("whole members");
    assert!(text == "earlier\n" || text.ends_with("-- End of dump --\n\n"), "as before, or with the whole dump");
}
