//! The admin shell's followers (`ringbuffer:follow`): each is a thread that looks at a snapshot
//! of its sink every [`LOOK_EVERY`] for the lines stored since it last looked, and keeps those
//! that pass its filter in a bounded outbox for the shell (see `pure::follow`). The per-line
//! path knows nothing of them; the main loop only takes the outbox's lines in batches.
//!
//! At most [`MAX_FOLLOWERS`] exist at once, counted from their start until their thread ended;
//! one more is refused with a "busy" answer. Each holds at most [`OUTBOX_BYTES`] of lines, a
//! snapshot while it looks, and [`LOOK_LINES`] lines' matches between two locks of its outbox.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::inspect::Cancel;
use super::sink::Sink;
use crate::pure::follow::{Batch, Cursor, Outbox};
use crate::pure::query::{self, Filter};

/// How many followers may exist at once.
pub(crate) const MAX_FOLLOWERS: usize = 16;
/// How often a follower looks for new lines: with the shell's own poll, lines reach it well
/// within half a second.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(100);
/// The most bytes of matching lines a follower keeps for a shell that does not take them.
pub(crate) const OUTBOX_BYTES: usize = 256 * 1024;
/// Lines looked at between two checks for cancellation (and two locks of the outbox).
const LOOK_LINES: usize = 4096;

static FOLLOWERS: AtomicUsize = AtomicUsize::new(0);

/// How many followers exist (their threads running).
pub(crate) fn followers() -> usize {
    FOLLOWERS.load(Ordering::Acquire)
}

/// One of the [`MAX_FOLLOWERS`] places; given back when its thread ends.
struct Place(());

impl Place {
    fn take() -> Result<Self, String> {
        FOLLOWERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_FOLLOWERS).then_some(n + 1))
            .map(|_| Place(()))
            .map_err(|_| {
                format!(
                    "busy: {MAX_FOLLOWERS} ringbuffer followers are running already (the most at once); end one first"
                )
            })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        FOLLOWERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the follower's thread hands the shell.
#[derive(Debug)]
struct Shared {
    outbox: Outbox,
    /// Why it stopped (a bad pattern), once.
    error: Option<String>,
    /// New sessions for the filter's `only_sources` (a JID's sessions), taken at the next look.
    sources: Option<Vec<Vec<u8>>>,
}

/// A running follower; dropping it ends it.
#[derive(Debug)]
pub(crate) struct Follower {
    shared: Arc<Mutex<Shared>>,
    cancel: Cancel,
}

/// Starts following `sink`: the newest `backlog` lines that pass first, then each new one.
/// `pattern` is compiled on the follower's thread (a costly one takes a while).
pub(crate) fn start(
    sink: Arc<Sink>,
    filter: Filter,
    pattern: Option<String>,
    backlog: usize,
) -> Result<Follower, String> {
    let place = Place::take()?;
    let shared = Arc::new(Mutex::new(Shared { outbox: Outbox::new(OUTBOX_BYTES), error: None, sources: None }));
    let cancel = Cancel::default();
    let work = (place, sink, filter, pattern, Arc::clone(&shared), cancel.clone());
    super::thread::spawn_worker("ringbuffer-follow", std::iter::once(work), move |work| {
        let (_place, sink, filter, pattern, to_shell, cancelled) = work;
        super::os::lowest_priority_for_this_thread();
        follow(&sink, filter, pattern, backlog, &to_shell, &cancelled);
    })
    .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(Follower { shared, cancel })
}

/// The follower's thread: the backlog, then a look every [`LOOK_EVERY`] until cancelled.
fn follow(
    sink: &Sink,
    mut filter: Filter,
    pattern: Option<String>,
    backlog: usize,
    to_shell: &Mutex<Shared>,
    cancelled: &Cancel,
) {
    if let Some(pattern) = pattern {
        match query::pattern(&pattern) {
            Ok(compiled) => filter.pattern = Some(compiled),
            Err(e) => {
                to_shell.lock().error = Some(e);
                return;
            }
        }
    }
    let stop = || cancelled.is_cancelled();
    let Some((mut cursor, lines)) = Cursor::after_backlog(&sink.snapshot(), &filter, backlog, stop) else {
        return;
    };
    {
        let mut shared = to_shell.lock();
        for line in lines {
            shared.outbox.offer(line);
        }
    }
    while !cancelled.is_cancelled() {
        std::thread::sleep(LOOK_EVERY);
        if let Some(sources) = to_shell.lock().sources.take() {
            filter.only_sources = Some(sources);
        }
        look(&mut cursor, sink, &filter, to_shell, cancelled);
    }
}

/// Looks at every line stored since the cursor, in steps of [`LOOK_LINES`].
fn look(cursor: &mut Cursor, sink: &Sink, filter: &Filter, to_shell: &Mutex<Shared>, cancelled: &Cancel) {
    let snapshot = sink.snapshot();
    let mut passed = Vec::new();
    loop {
        let looked = cursor.look(&snapshot, filter, LOOK_LINES, |line| passed.push(line));
        let mut shared = to_shell.lock();
        shared.outbox.skip(looked.skipped);
        for line in passed.drain(..) {
            shared.outbox.offer(line);
        }
        drop(shared);
        if !looked.more || cancelled.is_cancelled() {
            return;
        }
    }
}

impl Follower {
    /// The next batch of lines for the shell (see [`Outbox::take`]).
    pub(crate) fn take(&self, max_lines: usize, max_bytes: usize) -> Option<Batch> {
        self.shared.lock().outbox.take(max_lines, max_bytes)
    }

    pub(crate) fn has_lines(&self) -> bool {
        !self.shared.lock().outbox.is_empty()
    }

    /// Why the follower stopped, if it failed.
    pub(crate) fn error(&self) -> Option<String> {
        self.shared.lock().error.clone()
    }

    /// The sessions whose lines pass from now on (a JID's, with sessions new since the start).
    pub(crate) fn set_sources(&self, sources: Vec<Vec<u8>>) {
        self.shared.lock().sources = Some(sources);
    }

    /// Ends the follower: its thread stops within [`LOOK_EVERY`] and frees what it held.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::level::Level;
    use crate::pure::options::{OptValue, SinkOptions};
    use crate::pure::ring::Meta;
    use std::time::Instant;

    const STAMP: &str = "Dec 07 03:00:00 ";

    fn wait_until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "not in time");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log(sink: &Sink, level: &str, message: &str) {
        let line = format!("{STAMP}c2s1\t{level}\t{message}\n");
        sink.push(line.as_bytes(), Meta { time: 100, source_at: STAMP.len() as u16 });
    }

    fn taken(follower: &Follower) -> Batch {
        follower.take(500, 64 * 1024).unwrap_or_default()
    }

    // One test for everything that counts followers: the count is global to the process.
    #[test]
    fn follows_new_lines_skips_what_the_shell_leaves_is_bounded_and_ends() {
        // Room for every line of the test: what is skipped, the outbox could not keep.
        let size = |name: &str| if name == "size" { OptValue::Int(4 << 20) } else { OptValue::Absent };
        let sink = Arc::new(Sink::new(SinkOptions::parse(size, &[]).0, Vec::new()));
        log(&sink, "info", "before 1");
        log(&sink, "debug", "before 2");
        let before = followers();
        let filter = Filter { min_level: Some(Level::Info), ..Filter::default() };
        let follower = start(Arc::clone(&sink), filter, Some("before|after|fill".into()), 10).expect("started");
        assert_eq!(followers(), before + 1);
        wait_until(|| follower.has_lines());
        assert_eq!(taken(&follower).text, format!("{STAMP}c2s1\tinfo\tbefore 1").into_bytes());
        log(&sink, "info", "after");
        log(&sink, "info", "not matching");
        wait_until(|| follower.has_lines());
        assert_eq!(taken(&follower).text, format!("{STAMP}c2s1\tinfo\tafter").into_bytes());

        // A shell that takes nothing: the outbox stays bounded and the rest is counted.
        let filler = "x".repeat(1000);
        for _ in 0..1000 {
            log(&sink, "info", &format!("fill {filler}"));
        }
        wait_until(|| follower.shared.lock().outbox.skipped_so_far() > 0);
        let mut batch = taken(&follower);
        let (mut lines, skipped) = (batch.lines, batch.skipped);
        while batch.lines > 0 {
            batch = taken(&follower);
            lines += batch.lines;
        }
        assert!(lines * 1000 <= OUTBOX_BYTES && skipped > 0, "{lines} lines kept, {skipped} skipped");
        assert_eq!(lines as u64 + skipped, 1000);

        // Past the bound, one more is refused; dropping one ends its thread.
        let extra: Vec<_> = std::iter::from_fn(|| start(Arc::clone(&sink), Filter::default(), None, 1).ok()).collect();
        assert_eq!(extra.len(), MAX_FOLLOWERS - before - 1);
        let busy = start(Arc::clone(&sink), Filter::default(), None, 1).expect_err("busy");
        assert!(busy.starts_with("busy: "), "{busy}");
        drop(extra);
        drop(follower);
        wait_until(|| followers() == before);

        // A bad pattern is an error, and the follower's place is given back.
        let bad = start(Arc::clone(&sink), Filter::default(), Some("(unclosed".into()), 1).expect("started");
        wait_until(|| bad.error().is_some());
        assert!(bad.error().unwrap_or_default().starts_with("invalid regular expression"));
        wait_until(|| followers() == before);
    }
}
