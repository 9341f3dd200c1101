//! `keep_dumps` and `keep_dumps_for` (see `retention`) through a sink's own dumps: the pass
//! after a dump, the hourly pass, bursts of dumps, and a read-only or unlistable folder. Here,
//! above both, so that `retention` needs no sink.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pure::dump_names;
use crate::pure::options::{OptValue, SinkOptions};
use crate::runtime::retention::after_dump;
use crate::runtime::retention::tests::{file, names};
use crate::runtime::sink::{DumpOrigin, Sink};
use crate::runtime::test_dir::TestDir;
use crate::runtime::writer;
use crate::runtime::{dump_ledger, reports};

/// [`retention::prune_aged_later`](crate::runtime::retention::prune_aged_later) of `sink`'s
/// options and paths.
fn prune_aged_later(sink: &Sink) -> bool {
    crate::runtime::retention::prune_aged_later(&sink.options, sink.paths())
}
/// A sink with a template and these options besides.
fn sink_with(dir: &TestDir, template: &str, options: &[(&str, OptValue)]) -> Arc<Sink> {
    let template = template.to_string();
    let (options, problems) = SinkOptions::parse(
        |k| match k {
            "filename_template" => OptValue::Str(template.clone()),
            _ => options.iter().find(|(name, _)| *name == k).map_or(OptValue::Absent, |(_, v)| v.clone()),
        },
        &[],
    );
    assert!(problems.is_empty(), "{problems:?}");
    Arc::new(Sink::new(options, vec![("data".into(), dir.path())]))
}

#[test]
fn the_hourly_pass_deletes_aged_files_in_the_background_and_reports_them() {
    let dir = TestDir::new("retention-hourly");
    let aged = sink_with(&dir, "{paths.data}/h-{count}.log", &[("keep_dumps_for", OptValue::Str("1h".into()))]);
    file(&dir, "h-1.log", 7200);
    file(&dir, "h-2.log", 60);
    file(&dir, "other-1.log", 7200);
    assert!(prune_aged_later(&aged));
    wait_until("the hourly pass", || names(&dir).len() == 2);
    assert!(writer::wait_idle(Duration::from_secs(20)));
    assert_eq!(names(&dir), ["h-2.log", "other-1.log"]);
    let reports = reports_about(&dir);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let expected = format!("Deleted 1 dump file(s) older than keep_dumps_for = 1h: {}", dir.file("h-1.log"));
    assert_eq!((reports[0].level, reports[0].text.as_str()), ("info", expected.as_str()));
    // Nothing to do: no keep_dumps_for, or no files of its own.
    assert!(!prune_aged_later(&sink_with(&dir, "{paths.data}/h-{count}.log", &[])));
    let shared = sink_with(&dir, "{paths.data}/h.log", &[("keep_dumps_for", OptValue::Int(60))]);
    assert!(!prune_aged_later(&shared));
    // A folder not made yet: nothing to do. A file in its place: reported.
    let gone = sink_with(&dir, "{paths.data}/gone/h-{count}.log", &[("keep_dumps_for", OptValue::Int(60))]);
    assert!(prune_aged_later(&gone));
    assert!(writer::wait_idle(Duration::from_secs(20)));
    assert_eq!(reports_about(&dir).len(), 0);
    fs::write(dir.file("gone"), "a file").expect("write");
    assert!(prune_aged_later(&gone));
    assert!(writer::wait_idle(Duration::from_secs(20)));
    let reports = reports_about(&dir);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let expected = format!("Unable to list dump folder for keep_dumps_for: {}: ", dir.file("gone"));
    assert!(reports[0].level == "warn" && reports[0].text.starts_with(&expected), "{:?}", reports[0]);
}

#[test]
fn a_dump_applies_keep_dumps_for() {
    let dir = TestDir::new("retention-after-dump");
    let sink = sink_with(&dir, "{paths.data}/a-{count}.log", &[("keep_dumps_for", OptValue::Str("1h".into()))]);
    file(&dir, "a-100.log", 7200);
    file(&dir, "a-101.log", 600);
    sink.push(b"aged\n", 0);
    let path = sink.dump(DumpOrigin::LuaThread, "test").expect("dump").path;
    wait_until("the dump and its pass", || sink.outcomes().done == 1 && names(&dir).len() == 2);
    assert!(writer::wait_idle(Duration::from_secs(20)));
    let mut expected =
        vec!["a-101.log".to_string(), Path::new(&path).file_name().expect("name").to_string_lossy().into()];
    expected.sort_by(|a, b| dump_names::natural_cmp(a, b));
    assert_eq!(names(&dir), expected);
    let reports = reports_about(&dir);
    assert!(
        reports.iter().any(|r| r.text.starts_with("Deleted 1 dump file(s) older than keep_dumps_for = 1h: ")),
        "{reports:?}"
    );
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
fn keep_dumps_for_on_a_read_only_filesystem_is_reported_and_deletes_nothing() {
    let dir = TestDir::tmpfs("retention-aged-ro", 1024 * 1024);
    let options = [("keep_dumps_for", OptValue::Str("1h".into())), ("keep_dumps", OptValue::Int(1))];
    let sink = sink_with(&dir, "{paths.data}/d-{count}.log", &options);
    file(&dir, "d-1.log", 7200);
    file(&dir, "d-2.log", 0);
    dir.read_only(true);
    assert!(prune_aged_later(&sink));
    assert!(writer::wait_idle(Duration::from_secs(20)));
    assert_eq!(names(&dir), ["d-1.log", "d-2.log"]);
    let reports = reports_about(&dir);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let expected = format!("Unable to delete old dump file: {}: ", dir.file("d-1.log"));
    assert!(reports[0].level == "warn" && reports[0].text.starts_with(&expected), "{:?}", reports[0]);
    dir.read_only(false);
    // Unlistable with both rules: the message names both.
    fs::remove_dir_all(dir.file("sub")).ok();
    let paths = [("data".to_string(), dir.file("sub"))];
    after_dump(&sink.options, &paths, &dir.file("sub/d-3.log"));
    let reports = reports_about(&dir);
    let expected = format!("Unable to list dump folder for keep_dumps and keep_dumps_for: {}: ", dir.file("sub"));
    assert!(reports.len() == 1 && reports[0].text.starts_with(&expected), "{reports:?}");
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
