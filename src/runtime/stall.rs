//! `dump_on_stall`: a watchdog thread dumps a sink by itself once Prosody's main loop has not
//! turned for the sink's `dump_on_stall`, appends the main thread's Lua traceback to the dump,
//! and has Prosody log one warning when the loop turns again.
//!
//! **When the loop counts as stalled.** The heartbeat (`heartbeat`) is a Prosody timer: each
//! beat schedules the next one at most [`INTERVAL`] after it (Prosody's timers count from the
//! moment they run, which is before the beat). A loop that turns runs its due timers in each
//! turn, so a beat that is *overdue* by T means no turn has run timers for T: the loop has
//! surely not turned for T, however busy it is (a busy loop turns and runs its timers late by
//! at most one turn). So a sink declares a stall when `since the last beat − INTERVAL ≥
//! dump_on_stall`; timer lateness, load and a slow watchdog thread can only make it later.
//! A sink counts from the last beat if the heartbeat is running when it is armed (a sink a
//! config reload adds), else only once a beat has come after it was armed: a server still
//! starting (no beat yet) and a forked child (Prosody 0.12's `-D`, whose watchdog thread starts
//! with its first beat) are never stalled before their loop has turned.
//!
//! **One dump per stall.** A stall is known by the beat count it began after; each sink dumps
//! once for it (or, within `dump_cooldown` of its last dump by itself, only counts it; see
//! `auto_dump`). Then the main thread's Lua traceback is asked for (`lua_traceback`); what
//! comes within [`TRACEBACK_WAIT`] is appended to each plain dump, or one line saying there is
//! none. Dumps that text after them would break (forwarded, compressed, `json`, `rfc5424`) are
//! started after the answer and carry it as notes. The next beat ends the stall: Prosody logs
//! how long it lasted and the traceback (one that came late too: a loop blocked in C answers
//! when it runs Lua again).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::heartbeat::{self, INTERVAL};
use super::lua_traceback::{self, Ticket};
use super::reports;
use super::sink::{DumpOrigin, Dumped, Sink};
use super::writer::{self, Admission, Lane};
use crate::pure::records::Format;

/// How often the watchdog looks at the heartbeat.
const TICK: Duration = Duration::from_millis(100);
/// A tick this much later than asked for means the process was not running meanwhile.
const FROZEN: Duration = Duration::from_millis(500);
/// How long a stall dump waits for the Lua traceback before it says there is none.
const TRACEBACK_WAIT: Duration = Duration::from_secs(1);
const TRACEBACK_HEADER: &str = "-- Lua traceback of Prosody's main thread --";
const TRACEBACK_FOOTER: &str = "-- End of Lua traceback --";
const NO_TRACEBACK: &str = "-- No Lua traceback: Prosody's main thread ran no Lua code within 1 s of asking \
                            (it is blocked in C, such as a system call, or runs Lua in a coroutine) --";
const CANNOT_ASK: &str = "-- No Lua traceback: Prosody's main thread could not be asked for one --";

/// One sink with `dump_on_stall`.
struct Watch {
    sink: Weak<Sink>,
    after: Duration,
    /// The beat count it counts after (see [`armed_at`]).
    armed_at: u64,
    /// The stall (its beat count) it declared last.
    declared: Option<u64>,
}

/// A stall declared by at least one sink, until the next beat.
#[derive(Default)]
struct Stall {
    /// The beat count it began after.
    beats: u64,
    /// When the loop surely stood still already, and the last beat before the stall: how
    /// long it lasted is between the times since each.
    began: Option<Instant>,
    last_beat: Option<Instant>,
    /// The traceback that came, requests that have not answered yet, and whether the main
    /// thread could be asked at all.
    traceback: Option<String>,
    tickets: Vec<Ticket>,
    asked: bool,
}

#[derive(Default)]
struct Watchdog {
    watches: Vec<Watch>,
    stall: Option<Stall>,
}

static WATCHDOG: Mutex<Watchdog> = Mutex::new(Watchdog { watches: Vec::new(), stall: None });
/// The process whose watchdog thread runs (0: none yet); a forked child starts its own.
static THREAD_OF: AtomicU32 = AtomicU32::new(0);

/// Makes `sink` dump once the loop has not turned for `after` (from the Lua thread).
pub(crate) fn watch(sink: &Arc<Sink>, after: Duration) {
    let mut watchdog = WATCHDOG.lock();
    watchdog.watches.retain(|w| w.sink.as_ptr() != Arc::as_ptr(sink) && w.sink.strong_count() > 0);
    let armed_at = armed_at(heartbeat::beats(), heartbeat::since_last_beat());
    watchdog.watches.push(Watch { sink: Arc::downgrade(sink), after, armed_at, declared: None });
}

/// The beat count a new watch counts from, given `beats` and the time `since` the last beat
/// (read in that order). While the heartbeat runs (its next beat is not overdue) the next beat
/// is due an interval after the last at the latest, so the last one counts: a stall that
/// begins right after a config reload made the sink is seen. Otherwise (no beat yet: a server
/// still starting, a forked child; or a heartbeat that had stopped) only the next beat counts.
fn armed_at(beats: u64, since: Option<Duration>) -> u64 {
    match since {
        Some(since) if since <= INTERVAL => beats.saturating_sub(1),
        _ => beats,
    }
}

/// Stops watching `sink`.
pub(crate) fn unwatch(sink: &Arc<Sink>) {
    WATCHDOG.lock().watches.retain(|w| w.sink.as_ptr() != Arc::as_ptr(sink) && w.sink.strong_count() > 0);
}

/// Called on the Lua thread right after each beat: starts the watchdog thread in this process
/// if a sink needs it, and ends a declared stall, giving the warning for Prosody's log.
pub(crate) fn after_beat() -> Option<String> {
    let (watching, stall) = {
        let mut watchdog = WATCHDOG.lock();
        (!watchdog.watches.is_empty(), watchdog.end_stall(heartbeat::beats()))
    };
    if watching && THREAD_OF.load(Ordering::Acquire) != std::process::id() {
        start_thread();
    }
    Some(stall?.end().warning())
}

fn start_thread() {
    let pid = std::process::id();
    if THREAD_OF.swap(pid, Ordering::AcqRel) == pid {
        return;
    }
    // Each tick: since when the process has surely been running (see `check`).
    let mut last_tick = Instant::now();
    let mut running_since = last_tick;
    let ticks = std::iter::repeat_with(move || {
        std::thread::sleep(TICK);
        let now = Instant::now();
        if now.duration_since(last_tick) > TICK + FROZEN {
            running_since = now;
        }
        last_tick = now;
        running_since
    });
    if let Err(e) = super::thread::spawn_worker("log_ringbuffer-stall", ticks, check) {
        THREAD_OF.store(0, Ordering::Release);
        reports::push("error", format!("dump_on_stall cannot work: the watchdog thread did not start: {e}"));
    }
}

/// A stall that ended, for the warning.
struct Ended {
    /// At least and at most.
    lasted: Option<(Duration, Duration)>,
    traceback: Option<String>,
    asked: bool,
}

impl Ended {
    fn warning(&self) -> String {
        let lasted = self.lasted.map_or_else(String::new, |(least, most)| {
            format!(" for {:.1} to {:.1} s", least.as_secs_f64(), most.as_secs_f64())
        });
        let said = "Prosody's main loop did not turn";
        match (&self.traceback, self.asked) {
            (Some(traceback), _) => format!("{said}{lasted} (dump_on_stall); where it was: {traceback}"),
            (None, true) => format!(
                "{said}{lasted} (dump_on_stall); no Lua traceback: it was not running Lua code (blocked in C, or in \
                 a coroutine)"
            ),
            (None, false) => {
                format!("{said}{lasted} (dump_on_stall); no Lua traceback: the main thread could not be asked for one")
            }
        }
    }
}

/// A sink that declared a stall now, and how long the loop has surely not turned.
struct Declared {
    sink: Arc<Sink>,
    stalled: Duration,
}

impl Watchdog {
    /// The sinks that declare a stall now, given `beats` and the time `since` the last beat
    /// (read in that order, see `heartbeat`); `now` is when the stall is recorded. Also an
    /// older stall this one replaces (never ended by a beat), to be dropped once the lock is
    /// let go (its requests are cancelled then).
    fn declare(&mut self, beats: u64, since: Option<Duration>, now: Instant) -> (Vec<Declared>, Option<Stall>) {
        let Some(since) = since else { return (Vec::new(), None) };
        // The next beat was due one interval after the last one at the latest.
        let stalled = since.saturating_sub(INTERVAL);
        let mut declared = Vec::new();
        for watch in &mut self.watches {
            if beats <= watch.armed_at || watch.declared == Some(beats) || stalled < watch.after {
                continue;
            }
            watch.declared = Some(beats);
            if let Some(sink) = watch.sink.upgrade() {
                declared.push(Declared { sink, stalled });
            }
        }
        let mut replaced = None;
        if !declared.is_empty() && self.stall.as_ref().is_none_or(|s| s.beats != beats) {
            let (began, last_beat) = (now.checked_sub(stalled), now.checked_sub(since));
            replaced = self.stall.replace(Stall { beats, began, last_beat, ..Stall::default() });
        }
        (declared, replaced)
    }

    /// The stall, taken, if the loop turned since it began (`beats` now); see [`Stall::end`].
    fn end_stall(&mut self, beats: u64) -> Option<Stall> {
        if self.stall.as_ref().is_none_or(|s| s.beats >= beats) {
            return None;
        }
        self.stall.take()
    }

    /// Keeps what the traceback request of the stall at `beats` gave; gives back a request
    /// it has no stall for, to be cancelled once the lock is let go.
    fn keep_traceback(&mut self, beats: u64, traceback: Option<String>, ticket: Option<Ticket>) -> Option<Ticket> {
        let Some(stall) = self.stall.as_mut().filter(|s| s.beats == beats) else { return ticket };
        stall.asked |= traceback.is_some() || ticket.is_some();
        if stall.traceback.is_none() {
            stall.traceback = traceback;
        }
        stall.tickets.extend(ticket);
        None
    }
}

impl Stall {
    /// The stall ended (without the watchdog's lock held: its requests are taken, one that
    /// answered late gives the traceback, and all are cancelled).
    fn end(self) -> Ended {
        let mut traceback = self.traceback;
        for ticket in self.tickets {
            if traceback.is_none() {
                traceback = lua_traceback::take(&ticket);
            }
            lua_traceback::cancel(ticket);
        }
        let lasted = self.began.zip(self.last_beat).map(|(began, last)| (began.elapsed(), last.elapsed()));
        Ended { lasted, traceback, asked: self.asked }
    }
}

/// One look at the heartbeat (the watchdog thread): dumps the sinks that declare a stall.
/// `running_since`: when this thread last woke far too late, a sign that the whole process
/// (or machine) was not running (`SIGSTOP`, a frozen VM, a debugger): the loop could not turn
/// then either, so only the time since counts towards a stall.
fn check(running_since: Instant) {
    if writer::is_closing() {
        return; // Prosody is stopping: its loop has ended, which is no stall
    }
    let beats = heartbeat::beats();
    let since = heartbeat::since_last_beat();
    let now = Instant::now();
    let (declared, replaced) = WATCHDOG.lock().declare(beats, counted(since, now, running_since), now);
    drop(replaced);
    if declared.is_empty() {
        return;
    }
    // Within dump_cooldown a stall only counts (see `auto_dump`); the traceback is asked for
    // all the same, for the warning when the loop turns again.
    let (plain, others): (Vec<Declared>, Vec<Declared>) = declared
        .into_iter()
        .filter(|d| d.sink.level_trigger.fire_at_once(Instant::now(), d.sink.options.auto.cooldown))
        .partition(|d| takes_traceback_after(&d.sink));
    // Plain dumps first: their lines are safe before the main thread is disturbed.
    let mut dumped = Vec::new();
    for Declared { sink, stalled } in plain {
        if let Some(done) = dump(&sink, vec![stall_note(stalled)]) {
            dumped.push(done);
        }
    }
    let traceback = ask_for_traceback();
    for done in dumped {
        append(done, traceback.appended());
    }
    for Declared { sink, stalled } in others {
        let mut notes = vec![stall_note(stalled)];
        notes.extend(traceback.notes());
        dump(&sink, notes);
    }
    let unkept = WATCHDOG.lock().keep_traceback(beats, traceback.text, traceback.unanswered);
    unkept.into_iter().for_each(lua_traceback::cancel);
}

/// The time `since` the last beat that counts towards a stall: none of the time before
/// `running_since` (the loop's next beat was due an interval after it at the latest).
fn counted(since: Option<Duration>, now: Instant, running_since: Instant) -> Option<Duration> {
    since.map(|since| since.min(now.saturating_duration_since(running_since) + INTERVAL))
}

fn stall_note(stalled: Duration) -> String {
    format!("Prosody's main loop has not turned for {} s", stalled.as_secs())
}

/// Starts a stall dump of `sink` with `notes` after its header.
fn dump(sink: &Arc<Sink>, notes: Vec<String>) -> Option<Dumped> {
    match sink.dump_noted(DumpOrigin::NativeThread, "dump_on_stall", None, notes) {
        Ok(done) => Some(done),
        Err(e) => {
            reports::push("error", format!("{e} (dump_on_stall); the lines are kept for the next dump"));
            None
        }
    }
}

/// What asking the main thread for its Lua traceback gave.
struct Traceback {
    /// `None`: no answer within [`TRACEBACK_WAIT`], or no way to ask.
    text: Option<String>,
    /// Whether a request could be made at all.
    asked: bool,
    /// The request, if it has not answered (it may answer when the loop runs Lua again).
    unanswered: Option<Ticket>,
}

impl Traceback {
    /// The text appended after a plain dump.
    fn appended(&self) -> String {
        match (&self.text, self.asked) {
            (Some(text), _) => format!("{TRACEBACK_HEADER}\n{}\n{TRACEBACK_FOOTER}\n", text.trim_end()),
            (None, true) => format!("{NO_TRACEBACK}\n"),
            (None, false) => format!("{CANNOT_ASK}\n"),
        }
    }

    /// The same as notes after a dump's header, one per line (for dumps that cannot take text
    /// after them).
    fn notes(&self) -> Vec<String> {
        let unwrap = |line: &str| line.trim_start_matches("-- ").trim_end_matches(" --").to_string();
        match (&self.text, self.asked) {
            (Some(text), _) => std::iter::once(unwrap(TRACEBACK_HEADER))
                .chain(text.trim_end().lines().map(str::to_string))
                .chain(std::iter::once(unwrap(TRACEBACK_FOOTER)))
                .collect(),
            (None, true) => vec![unwrap(NO_TRACEBACK)],
            (None, false) => vec![unwrap(CANNOT_ASK)],
        }
    }
}

/// Asks for the main thread's Lua traceback and waits up to [`TRACEBACK_WAIT`] for it.
fn ask_for_traceback() -> Traceback {
    let Some(ticket) = lua_traceback::request() else {
        return Traceback { text: None, asked: false, unanswered: None };
    };
    match lua_traceback::wait(&ticket, Instant::now() + TRACEBACK_WAIT) {
        Some(text) => {
            lua_traceback::cancel(ticket);
            Traceback { text: Some(text), asked: true, unanswered: None }
        }
        None => Traceback { text: None, asked: true, unanswered: Some(ticket) },
    }
}

/// Whether a stall dump of `sink` takes the traceback as text after it: plain text,
/// uncompressed, into a file or pipe. Any other dump (forwarded, compressed, `json`,
/// `rfc5424`) would be broken by text after it: it waits for the traceback (up to
/// [`TRACEBACK_WAIT`]) and carries it as notes after its header instead.
fn takes_traceback_after(sink: &Sink) -> bool {
    let options = &sink.options;
    sink.forwards_to().is_none() && options.retention.compress.is_none() && options.output.format == Format::Plain
}

/// Appends `text` to the file or pipe a dump went to, on the same lane, so after its lines.
fn append(done: Dumped, text: String) {
    let Some(Admission::Background(flight) | Admission::Now(flight)) = writer::admit(DumpOrigin::NativeThread) else {
        return;
    };
    let regular = std::fs::metadata(&done.path).map(|m| m.is_file()).unwrap_or(true);
    let lane = if regular { Lane::Files } else { Lane::Stream(done.path.clone()) };
    writer::submit(
        lane,
        Box::new(move || {
            if let Err(e) = super::dump_file::append_text(&done.path, text.as_bytes()) {
                reports::push("error", format!("{e} (the Lua traceback after a dump_on_stall dump)"));
            }
            drop(flight);
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::options::{OptValue, SinkOptions};
    use crate::runtime::test_dir::TestDir;

    fn watchdog_of(sinks: &[(&Arc<Sink>, u64)], armed_at: u64) -> Watchdog {
        let watches = sinks
            .iter()
            .map(|(sink, secs)| Watch {
                sink: Arc::downgrade(sink),
                after: Duration::from_secs(*secs),
                armed_at,
                declared: None,
            })
            .collect();
        Watchdog { watches, stall: None }
    }

    fn secs(s: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(s))
    }

    #[test]
    fn a_late_beat_is_no_stall_until_it_is_overdue_by_the_threshold() {
        let sink = Arc::new(Sink::for_tests());
        let mut dog = watchdog_of(&[(&sink, 2)], 0);
        let now = Instant::now();
        // A busy loop: the beat due one interval after the last comes late, but within 2 s.
        for since in [0.0, 1.0, 1.9, 2.5, 2.99] {
            assert!(dog.declare(5, secs(since), now).0.is_empty(), "{since} s since the last beat");
        }
        let declared = dog.declare(5, secs(3.0), now).0;
        assert_eq!(declared.len(), 1);
        assert_eq!(declared[0].stalled, Duration::from_secs(2));
        assert!(dog.declare(5, secs(30.0), now).0.is_empty(), "one dump per stall");
        assert!(dog.end_stall(5).is_none(), "no beat yet: the stall goes on");
        let ended = dog.end_stall(6).expect("the loop turned").end();
        assert!(ended.traceback.is_none());
        assert!(ended.warning().contains("no Lua traceback"), "{}", ended.warning());
        assert!(dog.end_stall(7).is_none(), "one warning per stall");
        assert_eq!(dog.declare(6, secs(3.0), now).0.len(), 1, "the next stall dumps again");
    }

    #[test]
    fn nothing_counts_before_a_beat_after_arming() {
        let sink = Arc::new(Sink::for_tests());
        let mut dog = watchdog_of(&[(&sink, 1)], 4);
        let now = Instant::now();
        assert!(dog.declare(0, None, now).0.is_empty(), "a server still starting: no beat at all");
        assert!(dog.declare(4, secs(3600.0), now).0.is_empty(), "armed after the last beat (reload, fork)");
        assert_eq!(dog.declare(5, secs(2.0), now).0.len(), 1);
    }

    #[test]
    fn time_the_process_was_not_running_does_not_count() {
        let now = Instant::now();
        let woke_late = now - Duration::from_millis(300);
        let since = counted(secs(5.0), now, woke_late).expect("a beat");
        assert_eq!(since, Duration::from_millis(1300), "0.3 s running since, plus the interval");
        let sink = Arc::new(Sink::for_tests());
        let mut dog = watchdog_of(&[(&sink, 1)], 0);
        assert!(dog.declare(1, Some(since), now).0.is_empty());
        let running = now - Duration::from_secs(60);
        assert_eq!(counted(secs(5.0), now, running), secs(5.0));
        assert_eq!(counted(None, now, running), None);
    }

    #[test]
    fn a_sink_armed_while_the_heartbeat_runs_counts_from_the_last_beat() {
        assert_eq!(armed_at(7, secs(0.4)), 6, "a reload between two beats: the last one counts");
        assert_eq!(armed_at(7, secs(1.0)), 6);
        assert_eq!(armed_at(7, secs(1.5)), 7, "an overdue beat (a heartbeat that had stopped): the next");
        assert_eq!(armed_at(0, None), 0, "a server still starting: the first beat");
    }

    #[test]
    fn each_sink_has_its_threshold_and_a_dropped_sink_none() {
        let (short, long) = (Arc::new(Sink::for_tests()), Arc::new(Sink::for_tests()));
        let gone = Arc::new(Sink::for_tests());
        let mut dog = watchdog_of(&[(&short, 1), (&long, 5), (&gone, 1)], 0);
        drop(gone);
        let now = Instant::now();
        let first = dog.declare(1, secs(2.5), now).0;
        assert_eq!(first.len(), 1);
        assert!(Arc::ptr_eq(&first[0].sink, &short));
        let later = dog.declare(1, secs(6.0), now).0;
        assert!(later.len() == 1 && Arc::ptr_eq(&later[0].sink, &long));
        let ended = dog.end_stall(2).expect("ended").end();
        let (least, most) = ended.lasted.expect("how long");
        assert!(least >= Duration::from_millis(1500) && most >= least + INTERVAL, "{least:?} {most:?}");
    }

    #[test]
    fn a_traceback_goes_into_the_warning() {
        let sink = Arc::new(Sink::for_tests());
        let mut dog = watchdog_of(&[(&sink, 1)], 0);
        assert_eq!(dog.declare(1, secs(2.0), Instant::now()).0.len(), 1);
        assert!(dog.keep_traceback(1, Some("stack traceback:\n\tspin".into()), None).is_none());
        assert!(dog.keep_traceback(0, Some("another stall's".into()), None).is_none());
        let warning = dog.end_stall(2).expect("ended").end().warning();
        assert!(warning.starts_with("Prosody's main loop did not turn for 1."), "{warning}");
        assert!(warning.ends_with("where it was: stack traceback:\n\tspin"), "{warning}");
    }

    fn stall_sink(file: &str, format: &str) -> Arc<Sink> {
        let (options, problems) = SinkOptions::parse(
            |k| match k {
                "filename" => OptValue::Str(file.to_string()),
                "dump_on_stall" => OptValue::Int(1),
                "format" => OptValue::Str(format.to_string()),
                _ => OptValue::Absent,
            },
            &[],
        );
        assert!(problems.is_empty(), "{problems:?}");
        let sink = Arc::new(Sink::new(options, Vec::new()));
        watch(&sink, Duration::from_secs(1));
        sink
    }

    /// The whole path on a real thread with the real heartbeat: a loop that beats is never
    /// dumped; one that stops beating is dumped once, with the note and the line that says
    /// there is no traceback (after a plain dump; as a note of a json one); the next beat ends
    /// it with one warning. In a process of its own (the heartbeat and the traceback desk are
    /// the process's), by `a_loop_that_stops_beating_is_dumped_once`.
    #[test]
    #[ignore = "run by a_loop_that_stops_beating_is_dumped_once"]
    fn stopped_heartbeat_alone() {
        let dir = TestDir::new("stall");
        let (file, json_file) = (dir.file("stall.log"), dir.file("stall.json"));
        let sink = stall_sink(&file, "plain");
        let json = stall_sink(&json_file, "json");
        // A dump that cannot be written (its folder is missing) keeps its lines and says so.
        let failing = stall_sink(&dir.file("missing/stall.log"), "plain");
        failing.push(b"c2s1\tdebug\tkept\n", 0);
        // A FIFO: the traceback line follows the dump on the same stream.
        let fifo = dir.file("stall.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let piped = stall_sink(&fifo, "plain");
        piped.push(b"c2s1\tdebug\tpiped\n", 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                // Opened once and kept open: each dump and each appended text opens the FIFO
                // anew, and a writer finds no reader (ENXIO) in the moment between a reader's
                // end of file and its next open. Until the writer comes, reads give 0 bytes.
                let mut stream = std::fs::File::open(&fifo).expect("open the FIFO");
                let (mut bytes, mut chunk) = (Vec::new(), [0u8; 4096]);
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let text = String::from_utf8_lossy(&bytes);
                    if text.contains(NO_TRACEBACK) || text.contains(CANNOT_ASK) || Instant::now() > deadline {
                        break text.into_owned();
                    }
                    match std::io::Read::read(&mut stream, &mut chunk).expect("read") {
                        0 => std::thread::sleep(Duration::from_millis(10)),
                        n => bytes.extend_from_slice(&chunk[..n]),
                    }
                }
            })
        };
        let healthy_until = Instant::now() + Duration::from_millis(2500);
        let mut last_beat = Instant::now();
        while Instant::now() < healthy_until {
            last_beat = Instant::now();
            heartbeat::beat();
            assert!(after_beat().is_none());
            sink.push(b"c2s1\tdebug\tbeating\n", 0);
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(!std::path::Path::new(&file).exists(), "a loop that beats is not stalled");
        assert!(!std::path::Path::new(&json_file).exists(), "a loop that beats is not stalled");
        sink.push(b"c2s1\tdebug\tthe last line\n", 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.contains(NO_TRACEBACK) || text.contains(CANNOT_ASK) {
                break text;
            }
            assert!(Instant::now() < deadline, "no stall dump: {text:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = last_beat.elapsed();
        eprintln!("stall dump with its traceback line {took:?} after the last beat");
        assert!(took >= Duration::from_secs(2), "1 s interval + 1 s threshold: {took:?}");
        assert!(text.contains("\n-- Prosody's main loop has not turned for 1 s --\n"), "{text}");
        assert!(text.contains("\tthe last line\n-- End of dump --\n\n-- No Lua traceback"), "{text}");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), text, "one dump per stall");
        let json_text = loop {
            let text = std::fs::read_to_string(&json_file).unwrap_or_default();
            if text.contains("No Lua traceback: ") {
                break text;
            }
            assert!(Instant::now() < deadline, "no json stall dump: {text:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(json_text.contains("Prosody's main loop has not turned for 1 s"), "{json_text}");
        assert!(json_text.contains("No Lua traceback: ") && !json_text.contains("-- No Lua"), "{json_text}");
        let piped_text = reader.join().expect("the FIFO's reader");
        assert!(piped_text.contains("\tpiped\n-- End of dump --\n\n-- No Lua traceback"), "{piped_text}");
        assert_eq!(failing.usage().0, 1, "the failed dump's line is kept");
        let reports = super::reports::take();
        let said = reports.iter().any(|r| r.text.contains("(dump_on_stall); the lines are kept for the next dump"));
        assert!(said, "{reports:?}");
        heartbeat::beat();
        let warning = after_beat().expect("the stall ended");
        assert!(warning.starts_with("Prosody's main loop did not turn for "), "{warning}");
        assert!(after_beat().is_none());
        for watched in [&sink, &json, &failing, &piped] {
            unwatch(watched);
        }
        assert!(WATCHDOG.lock().watches.is_empty());
    }

    #[test]
    fn a_loop_that_stops_beating_is_dumped_once() {
        crate::runtime::test_process::run_alone("runtime::stall::tests::stopped_heartbeat_alone");
    }
}
