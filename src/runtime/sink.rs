//! A sink: its options and its recorder, shared by the Lua thread (which logs and dumps) and
//! the native signal thread (which dumps). The Lua side lives in `lua::sink_call`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::auto_dump::LevelTrigger;
use super::dump_file::{self, DumpError, Prepared};
use super::forward::{self, Forwarder};
use super::reports;
use super::shared_ring::SharedRing;
pub(crate) use super::writer::DumpOrigin;
use super::writer::{self, Admission, InFlight, Lane};
use crate::pure::date::now_seconds;
use crate::pure::options::{SinkOptions, Target};
use crate::pure::query::{self, Filter};
use crate::pure::recorder::{Batch, Recorder};
use crate::pure::records::{Framing, Identity};
use crate::pure::ring::{Meta, Ring};
use crate::pure::template::{self, Values};

#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) options: SinkOptions,
    /// Prosody's `prosody.paths`, for `{paths.*}`.
    paths: Vec<(String, String)>,
    recorder: SharedRing<Recorder>,
    /// `dump_on`'s state (see `auto_dump`).
    pub(crate) level_trigger: LevelTrigger,
    outcomes: Mutex<Outcomes>,
    /// Lines left out of dumps as older than `max_age`.
    aged_out: AtomicU64,
    /// `forward`: where dumps go instead of the file.
    forwarder: Option<Forwarder>,
}

/// How this sink's dumps went, for the admin shell and Prosody's module status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcomes {
    pub(crate) done: u64,
    pub(crate) failed: u64,
    /// The last dump's file, and why it failed (`None`: it worked).
    pub(crate) last: Option<(String, Option<String>)>,
}

/// What the admin shell's `ringbuffer:status()` shows of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) lines: usize,
    pub(crate) bytes: usize,
    /// Lines dropped since the last dump that worked.
    pub(crate) dropped: u64,
    /// Unix times of the oldest and the newest line held.
    pub(crate) oldest: Option<u32>,
    pub(crate) newest: Option<u32>,
    pub(crate) outcomes: Outcomes,
}

/// What Prosody's statistics show of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Lines stored since the sink was made.
    pub(crate) captured: u64,
    /// Lines lost to the limit or to `max_age` since the sink was made.
    pub(crate) dropped: u64,
    pub(crate) lines: usize,
    pub(crate) bytes: usize,
    pub(crate) dumps_done: u64,
    pub(crate) dumps_failed: u64,
}

/// A dump that the admin shell asks for, which keeps the buffer (see [`Sink::dump_copy`]).
#[derive(Debug, Default)]
pub(crate) struct DumpRequest {
    /// Only the lines that pass.
    pub(crate) filter: Filter,
    /// Write to this file instead of the configured one (uncompressed, no `keep_dumps`).
    pub(crate) to: Option<String>,
}

/// A dump that was started: its file, its lines, and whether they are still being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dumped {
    pub(crate) path: String,
    pub(crate) lines: usize,
    pub(crate) in_background: bool,
}

/// `{count}`: dump attempts of the whole process, starting at 0.
static DUMP_COUNT: AtomicU64 = AtomicU64::new(0);

impl Sink {
    pub(crate) fn new(options: SinkOptions, paths: Vec<(String, String)>) -> Self {
        let recorder = SharedRing::new(Recorder::new(options.limit));
        Sink {
            options,
            paths,
            recorder,
            level_trigger: LevelTrigger::default(),
            outcomes: Mutex::default(),
            aged_out: AtomicU64::new(0),
            forwarder: None,
        }
    }

    /// This sink, forwarding its dumps with `forwarder` (see `forward`).
    pub(crate) fn forwarding(mut self, forwarder: Option<Forwarder>) -> Self {
        self.forwarder = forwarder;
        self
    }

    /// Stores one finished line (timestamp, source, level, message, newline). Only for the
    /// thread that made the sink (see `shared_ring`).
    #[inline]
    pub(crate) fn push(&self, line: &[u8], meta: impl Into<Meta>) {
        let meta = meta.into();
        self.recorder.with_owner(|r| r.ring.push(line, meta));
    }

    /// Lets `write` put a line straight into the ring's free space, and stores it if `write`
    /// returns its length. Only for the thread that made the sink. False: nothing stored
    /// (no room left in the current chunk, `write` declined, or a line the limit must cut).
    #[inline]
    pub(crate) fn push_in_place(&self, meta: Meta, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        self.recorder.with_owner(|r| r.ring.write_in_place(meta, write))
    }

    /// The collector dumps are forwarded to, if any.
    pub(crate) fn forwards_to(&self) -> Option<String> {
        self.forwarder.as_ref().map(|f| f.target.to_string())
    }

    /// (lines, bytes of text) held now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        self.recorder.with_lock(|r| (r.ring.lines(), r.ring.text_bytes()))
    }

    /// See [`Status`].
    pub(crate) fn status(&self) -> Status {
        let (lines, bytes, dropped, oldest, newest) = self.recorder.with_lock(|r| {
            let oldest = r.ring.iter().next().map(|line| line.meta.time);
            (r.ring.lines(), r.ring.text_bytes(), r.dropped_since_take(), oldest, r.ring.newest_time())
        });
        Status { lines, bytes, dropped, oldest, newest, outcomes: self.outcomes.lock().clone() }
    }

    /// See [`Counters`].
    pub(crate) fn counters(&self) -> Counters {
        let outcomes = self.outcomes();
        self.recorder.with_lock(|r| Counters {
            captured: r.ring.stored(),
            dropped: r.ring.dropped() + self.aged_out.load(Ordering::Relaxed),
            lines: r.ring.lines(),
            bytes: r.ring.text_bytes(),
            dumps_done: outcomes.done,
            dumps_failed: outcomes.failed,
        })
    }

    /// A copy of the lines held, for reading at leisure (see [`Ring::snapshot`]).
    pub(crate) fn snapshot(&self) -> Ring {
        self.recorder.with_lock(|r| r.ring.snapshot())
    }

    /// Empties the buffer without dumping it.
    pub(crate) fn clear(&self) {
        self.recorder.with_lock(|r| drop(r.take()));
    }

    /// How the dumps went so far.
    pub(crate) fn outcomes(&self) -> Outcomes {
        self.outcomes.lock().clone()
    }

    fn record_outcome(&self, path: &str, failure: Option<&DumpError>) {
        let mut outcomes = self.outcomes.lock();
        match failure {
            None => outcomes.done += 1,
            Some(_) => outcomes.failed += 1,
        }
        outcomes.last = Some((path.to_string(), failure.map(|e| e.to_string())));
    }

    /// The buffered lines, oldest first, without emptying the buffer.
    pub(crate) fn text(&self) -> Vec<u8> {
        self.recorder.with_lock(|r| {
            let mut out = Vec::with_capacity(r.ring.text_bytes());
            for line in r.ring.iter() {
                out.extend(line.pieces().flatten());
            }
            out
        })
    }

    /// The file the next dump goes to, given its `{count}` and time.
    fn path_for(&self, count: u64, time: i64) -> String {
        match &self.options.target {
            Target::File(name) => name.clone(),
            Target::Template(t) => {
                template::render(t, &Values { pid: std::process::id(), count, time, paths: self.paths.clone() })
            }
        }
    }

    /// Dumps the buffered lines and empties the buffer. The file is opened and the dump's place
    /// in it settled now; the lines are written on a writer lane (at once while shutting
    /// down). If the dump fails, its lines go back where they belong (see `recorder`). The
    /// outcome of the writing is reported (see `reports`).
    pub(crate) fn dump(self: &Arc<Self>, origin: DumpOrigin, reason: &str) -> Result<Dumped, DumpError> {
        self.dump_to(origin, reason, None)
    }

    /// [`Sink::dump`], to the file `to` (uncompressed, no `keep_dumps`) if given.
    pub(crate) fn dump_to(
        self: &Arc<Self>,
        origin: DumpOrigin,
        reason: &str,
        to: Option<&str>,
    ) -> Result<Dumped, DumpError> {
        let admission = writer::admit(origin).ok_or(DumpError::ShuttingDown)?;
        let time = now_seconds();
        let forwarder = self.forwarder.as_ref().filter(|_| to.is_none());
        let count = count_for(to);
        let (path, compress) = match forwarder {
            Some(forwarder) => (forwarder.target.to_string(), None),
            None => self.target_of(to, count, time),
        };
        let mut batch = self.recorder.with_lock(Recorder::take);
        if let Some(cutoff) = self.max_age_cutoff() {
            let aged = batch.lines.drop_older_than(cutoff) as u64;
            self.aged_out.fetch_add(aged, Ordering::Relaxed);
            batch.dropped += aged;
        }
        let framing = self.framing(time, self.notes(&batch), count, reason);
        let lines = batch.lines.lines();
        if forwarder.is_some() {
            batch.id = Some(framing.id.clone());
            let (lane, sink) = (Lane::Stream(path.clone()), Arc::clone(self));
            let in_background = match admission {
                Admission::Background(flight) => {
                    writer::submit(lane, Box::new(move || sink.finish_forward(framing, batch, flight, false)));
                    true
                }
                Admission::Now(flight) => {
                    self.finish_forward(framing, batch, flight, true);
                    false
                }
            };
            return Ok(Dumped { path, lines, in_background });
        }
        let prepared = match dump_file::prepare_as(&path, framing, batch.lines.text_bytes(), compress) {
            Ok(p) => p,
            Err(e) => {
                self.recorder.with_lock(|r| r.give_back(batch));
                self.record_outcome(&path, Some(&e));
                return Err(e);
            }
        };
        let in_background = match admission {
            Admission::Background(flight) => {
                let lane = if prepared.is_regular_file() { Lane::Files } else { Lane::Stream(path.clone()) };
                let (sink, reason, configured) = (Arc::clone(self), reason.to_string(), to.is_none());
                writer::submit(lane, Box::new(move || sink.finish(prepared, batch, &reason, configured, flight)));
                true
            }
            Admission::Now(flight) => {
                self.finish(prepared, batch, reason, to.is_none(), flight);
                false
            }
        };
        Ok(Dumped { path, lines, in_background })
    }

    /// What a dump numbered `count` ({count}) writes besides its lines.
    fn framing(&self, time: i64, notes: Vec<String>, count: u64, reason: &str) -> Framing {
        let output = &self.options.output;
        let pid = std::process::id();
        Framing {
            format: output.format,
            time,
            notes,
            id: format!("{pid}-{count}"),
            reason: reason.to_string(),
            identity: Identity {
                hostname: forward::hostname(),
                app_name: output.app_name.clone(),
                pid,
                facility: output.facility,
            },
        }
    }

    /// Where a dump made at `time` goes, and how compressed: `to`, as it is, or the configured
    /// file (taking the next `{count}`).
    fn target_of(
        &self,
        to: Option<&str>,
        count: u64,
        time: i64,
    ) -> (String, Option<crate::pure::options::Compression>) {
        if let Some(path) = to {
            return (path.to_string(), None);
        }
        let path = self.path_for(count, time);
        let compress = self.options.retention.compress;
        (crate::pure::dump_names::dump_name(path, compress), compress) // compress: the suffix
    }

    /// The second before which lines may be too old to dump (`max_age`).
    fn max_age_cutoff(&self) -> Option<u32> {
        let max_age = self.options.retention.max_age?;
        Some(query::oldest_second_within(max_age, crate::pure::date::now_precise()))
    }

    /// Writes a copy of the lines that pass `request`'s filter (all of them if it has none),
    /// leaving the buffer as it is. Runs on the calling thread from start to end: for a thread
    /// of its own (see `inspect`), since filtering a large buffer takes a while. With
    /// `request.to`, the copy goes there instead of the configured file.
    pub(crate) fn dump_copy(&self, reason: &str, request: &DumpRequest, flight: InFlight) -> Result<Dumped, DumpError> {
        let time = now_seconds();
        let count = count_for(request.to.as_deref());
        let forwarder = self.forwarder.as_ref().filter(|_| request.to.is_none());
        let (path, compress) = match forwarder {
            Some(forwarder) => (forwarder.target.to_string(), None),
            None => self.target_of(request.to.as_deref(), count, time),
        };
        let mut filter = request.filter.clone();
        if let Some(cutoff) = self.max_age_cutoff() {
            filter.since = Some(filter.since.map_or(cutoff, |since| since.max(cutoff)));
        }
        let lines = query::select(&self.snapshot(), &filter);
        let notes = match request.filter.is_empty() {
            true => Vec::new(),
            false => vec![format!("Only the lines with {}", request.filter.describe())],
        };
        let framing = self.framing(time, notes, count, reason);
        let written = match forwarder {
            Some(forwarder) => forwarder
                .send(&framing, &lines, forward::IO_TIMEOUT)
                .map_err(|error| DumpError::Forward { target: path.clone(), id: framing.id.clone(), error }),
            None => dump_file::prepare_as(&path, framing, lines.text_bytes(), compress)
                .and_then(|prepared| prepared.write(&lines)),
        };
        self.record_outcome(&path, written.as_ref().err());
        let count = lines.lines();
        if written.is_ok() {
            let done = if forwarder.is_some() { "Forwarded" } else { "Dumped" };
            let text =
                format!("{done} a copy of {count} buffered lines to {path} ({reason}); the buffer keeps its lines");
            reports::push("info", text);
            if request.to.is_none() && forwarder.is_none() {
                super::retention::after_dump(&self.options, &self.paths, &path);
            }
        }
        drop(flight); // only now: shutdown waits for the report and the retention too
        written.map(|()| Dumped { path, lines: count, in_background: false })
    }

    /// The notices after the dump header: only when there is something to say, so that a dump
    /// that lost nothing stays byte for byte the Lua module's.
    fn notes(&self, batch: &Batch) -> Vec<String> {
        let mut notes = Vec::new();
        for (id, lines) in &batch.resent {
            notes.push(format!("The first {lines} lines were in dump {id}, which could not be forwarded: sent again"));
        }
        if batch.dropped > 0 {
            notes.push(format!("{} older lines were dropped since the previous dump", batch.dropped));
        }
        match self.level_trigger.take_suppressed() {
            0 => {}
            n => notes
                .push(format!("{n} more dump_on triggers were suppressed by dump_cooldown since the previous dump")),
        }
        notes
    }

    /// [`Sink::dump`] for threads that cannot log: a failure to start is reported too.
    pub(crate) fn dump_and_report(self: &Arc<Self>, origin: DumpOrigin, reason: &str) {
        if let Err(e) = self.dump(origin, reason) {
            report_failure(&e, reason);
        }
    }

    /// Writes a prepared dump and reports how it went; a failed dump's lines go back.
    fn finish(&self, prepared: Prepared, batch: Batch, reason: &str, configured: bool, flight: InFlight) {
        let path = prepared.path.clone();
        match prepared.write(&batch.lines) {
            Ok(()) => {
                let dropped = match batch.dropped {
                    0 => String::new(),
                    n => format!("; {n} older lines had been dropped since the previous dump"),
                };
                let text = format!("Dumped {} buffered lines to {path} ({reason}){dropped}", batch.lines.lines());
                reports::push("info", text);
                self.record_outcome(&path, None);
                // keep_dumps (retention): delete this sink's older dump files.
                if configured {
                    super::retention::after_dump(&self.options, &self.paths, &path);
                }
            }
            Err(e) => {
                report_failure(&e, reason);
                self.recorder.with_lock(|r| r.give_back(batch));
                self.record_outcome(&path, Some(&e));
            }
        }
        drop(flight);
    }

    /// Forwards a dump and reports how it went. A failed dump's lines go back for the next
    /// dump; while shutting down (`last`) they are written to the sink's file instead, since
    /// there will be no next dump.
    fn finish_forward(&self, framing: Framing, batch: Batch, flight: InFlight, last: bool) {
        let Some(forwarder) = &self.forwarder else { return };
        let target = forwarder.target.to_string();
        let reason = framing.reason.clone();
        let timeout = if last { forward::SHUTDOWN_TIMEOUT } else { forward::IO_TIMEOUT };
        match forwarder.send(&framing, &batch.lines, timeout) {
            Ok(()) => {
                let id = &framing.id;
                let text =
                    format!("Forwarded {} buffered lines to {target} ({reason}); dump {id}", batch.lines.lines());
                reports::push("info", text);
                self.record_outcome(&target, None);
            }
            Err(error) => {
                let failure = DumpError::Forward { target: target.clone(), id: framing.id.clone(), error };
                self.record_outcome(&target, Some(&failure));
                if last {
                    reports::push("error", format!("{failure} ({reason}); writing the lines to the sink's file"));
                    let (path, compress) = self.target_of(None, count_for(None), framing.time);
                    match dump_file::prepare_as(&path, framing, batch.lines.text_bytes(), compress) {
                        Ok(prepared) => self.finish(prepared, batch, &reason, true, flight),
                        Err(e) => report_failure(&e, &reason),
                    }
                    return;
                }
                report_failure(&failure, &reason);
                self.recorder.with_lock(|r| r.give_back(batch));
            }
        }
        drop(flight);
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Sink::new(SinkOptions::parse(|_| crate::pure::options::OptValue::Absent, &[]).0, Vec::new())
    }
}

// ---- For runtime::crash (`dump_on_crash`): what a fatal signal's handler needs ----
impl Sink {
    /// The file a dump would go to with these `{pid}`, `{count}` and `{time}`, without the
    /// suffix of `compress` (a dump from a signal handler cannot be compressed).
    pub(crate) fn crash_path(&self, pid: u32, count: u64, time: i64) -> String {
        match &self.options.target {
            Target::File(name) => name.clone(),
            Target::Template(t) => template::render(t, &Values { pid, count, time, paths: self.paths.clone() }),
        }
    }

    /// Reads the buffered lines from a fatal signal's handler, never blocking (see
    /// [`SharedRing::read_in_crash`]).
    pub(crate) fn read_in_crash<R>(
        &self,
        patience: std::time::Duration,
        f: impl FnOnce(&crate::pure::ring::Ring, super::shared_ring::CrashView) -> R,
    ) -> R {
        self.recorder.read_in_crash(patience, |r, view| f(&r.ring, view))
    }
}

/// The `{count}` of a dump to the configured file or collector (taking it), or to the one-off
/// file `to` (which takes none).
fn count_for(to: Option<&str>) -> u64 {
    if to.is_some() {
        return next_count();
    }
    let count = DUMP_COUNT.fetch_add(1, Ordering::Relaxed);
    super::crash::refresh(); // dump_on_crash: the next dump's {count} (see runtime::crash)
    count
}

/// The `{count}` the next dump will have.
pub(crate) fn next_count() -> u64 {
    DUMP_COUNT.load(Ordering::Relaxed)
}

/// Reports a dump that failed where Lua cannot be told directly.
fn report_failure(error: &DumpError, reason: &str) {
    let kept = if matches!(error, DumpError::ShuttingDown) { "" } else { "; the lines are kept for the next dump" };
    reports::push("error", format!("{error} ({reason}){kept}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::options::OptValue;
    use crate::runtime::test_dir::TestDir;
    use std::time::Duration;

    fn sink_with(dir: &TestDir, template: &str, lines: i64) -> Arc<Sink> {
        let t = template.to_string();
        let (options, problems) = SinkOptions::parse(
            |k| match k {
                "filename_template" => OptValue::Str(t.clone()),
                "lines" => OptValue::Int(lines),
                _ => OptValue::Absent,
            },
            &[],
        );
        assert!(problems.is_empty());
        Arc::new(Sink::new(options, vec![("data".into(), dir.path())]))
    }

    #[test]
    fn dump_empties_and_failed_dump_keeps_lines() {
        let dir = TestDir::new("sink");
        let good = sink_with(&dir, "{paths.data}/dump-{pid}.log", 100);
        good.push(b"a\n", 0);
        let done = good.dump(DumpOrigin::LuaThread, "test").expect("dump");
        assert!(done.in_background);
        assert!(writer::wait_idle(Duration::from_secs(5)));
        assert_eq!(done.lines, 1);
        assert_eq!(done.path, dir.file(&format!("dump-{}.log", std::process::id())));
        assert_eq!(good.usage(), (0, 0));

        let bad = sink_with(&dir, "{paths.data}/missing/dump.log", 100);
        bad.push(b"kept\n", 0);
        assert!(bad.dump(DumpOrigin::LuaThread, "test").is_err());
        bad.push(b"later\n", 0);
        assert_eq!(bad.text(), b"kept\nlater\n");
    }

    #[test]
    fn a_filtered_copy_keeps_the_buffer_and_counters_add_up() {
        let dir = TestDir::new("sink-copy");
        let sink = sink_with(&dir, "{paths.data}/dump.log", 3);
        for (source, level) in [("c2s1", "debug"), ("mod_s2s", "error"), ("c2s1", "info"), ("c2s2", "warn")] {
            sink.push(format!("{source}\t{level}\tmsg\n").as_bytes(), Meta { time: 7, source_at: 0 });
        }
        let request = DumpRequest {
            filter: Filter { source: Some("c2s*".into()), ..Filter::default() },
            to: Some(dir.file("copy.log")),
        };
        let flight = match writer::admit(DumpOrigin::LuaThread) {
            Some(Admission::Background(f) | Admission::Now(f)) => f,
            None => panic!("not admitted"),
        };
        let done = sink.dump_copy("test", &request, flight).expect("copy");
        assert_eq!((done.path.as_str(), done.lines), (dir.file("copy.log").as_str(), 2));
        let text = std::fs::read_to_string(dir.file("copy.log")).expect("read");
        assert!(
            text.contains(" --\n-- Only the lines with source c2s* --\nc2s1\tinfo\tmsg\nc2s2\twarn\tmsg\n-- End"),
            "{text}"
        );
        assert_eq!(sink.usage().0, 3, "the buffer keeps its lines");
        let counters = sink.counters();
        assert_eq!((counters.captured, counters.dropped, counters.lines), (4, 1, 3));
        assert_eq!((counters.dumps_done, counters.dumps_failed), (1, 0));
        sink.clear();
        assert_eq!(sink.usage(), (0, 0));
        assert_eq!(sink.status().dropped, 0, "cleared lines are not counted as dropped");
    }

    #[test]
    fn dumps_failing_while_others_are_written_come_back_in_order_within_the_limit() {
        let dir = TestDir::new("sink-order");
        let failing = sink_with(&dir, "/dev/full", 4);
        for n in 1..=5 {
            failing.push(format!("{n}\n").as_bytes(), 0);
            let _ = failing.dump(DumpOrigin::LuaThread, "test");
        }
        failing.push(b"6\n", 0);
        assert!(writer::wait_idle(Duration::from_secs(5)));
        assert_eq!(failing.text(), b"3\n4\n5\n6\n");
    }

    #[test]
    fn a_failed_forward_keeps_the_lines_and_the_next_dump_sends_them_again() {
        use std::io::Read;
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let target = format!("tcp://127.0.0.1:{port}");
        let (options, problems) = SinkOptions::parse(
            |k| match k {
                "forward" => OptValue::Str(target.clone()),
                "format" => OptValue::Str("rfc5424".into()),
                _ => OptValue::Absent,
            },
            &[],
        );
        assert!(problems.is_empty(), "{problems:?}");
        let forwarder = Forwarder::new(&options.output).expect("valid");
        let sink = Arc::new(Sink::new(options, Vec::new()).forwarding(forwarder));
        sink.push(b"c2s1\tdebug\tfirst\n", Meta { time: 7, source_at: 0 });
        let failed = sink.dump(DumpOrigin::LuaThread, "test").expect("started");
        assert_eq!((failed.path.as_str(), failed.lines), (target.as_str(), 1));
        assert!(writer::wait_idle(Duration::from_secs(10)));
        assert_eq!(sink.usage().0, 1, "nobody listened: the line is kept");
        assert_eq!(sink.outcomes().failed, 1);

        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind again");
        let reader = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut text = String::new();
            stream.read_to_string(&mut text).expect("read");
            text
        });
        sink.push(b"c2s1\tdebug\tsecond\n", Meta { time: 8, source_at: 0 });
        sink.dump(DumpOrigin::LuaThread, "test").expect("started");
        assert!(writer::wait_idle(Duration::from_secs(10)));
        let text = reader.join().expect("reader");
        let first_id = format!("{}-", std::process::id());
        assert!(text.contains(&format!("] The first 1 lines were in dump {first_id}")), "{text}");
        let (first, second) = (text.find("] first").expect("first"), text.find("] second").expect("second"));
        assert!(first < second, "{text}");
        assert_eq!(sink.usage().0, 0);
        assert_eq!(sink.outcomes().done, 1);
    }
}
