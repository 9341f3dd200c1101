//! The admin shell's followers (`ringbuffer:follow`): each is a thread that, whenever the main
//! loop hands it a snapshot of its sink ([`Follower::look`], every 0.1 s from the shell's
//! timer), looks at the lines stored since it last looked and keeps those that pass its filter
//! in a bounded outbox for the shell (see `pure::follow`). The per-line path knows nothing of
//! them. The snapshot is taken on the main loop, as for `tail`, so the thread (at the lowest CPU
//! priority) never holds the ring's lock; the main loop only ever *tries* the follower's own lock
//! (a thread put off the CPU while holding it never holds the main loop up).
//!
//! At most [`MAX_FOLLOWERS`] exist at once, counted from their start until their thread ended;
//! one more is refused with a "busy" answer. Each holds at most [`OUTBOX_BYTES`] of lines, one
//! snapshot waiting and one it looks at, and [`LOOK_LINES`] lines' matches between two locks of
//! its outbox.
//!
//! For a shell on Prosody's admin socket (0.12, 13), the thread also makes each batch the
//! message the shell's `print` would send (`<repl-output>`, the text escaped as `util.stanza`
//! does, see `pure::xml_text`), so that the main loop only hands its bytes to the connection:
//! building that message in Lua was the whole of following's cost to the main loop.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::inspect::Cancel;
use super::places::Places;
use super::sink::Sink;
use crate::pure::follow::{Batch, Cursor, Outbox};
use crate::pure::query::{self, Filter};
use crate::pure::ring::Ring;
use crate::pure::xml_text;

/// How many followers may exist at once.
pub(crate) const MAX_FOLLOWERS: usize = 16;
/// The most bytes of matching lines a follower keeps for a shell that does not take them.
pub(crate) const OUTBOX_BYTES: usize = 256 * 1024;
/// The most lines, and bytes, of one batch for the shell (at most one line more than the
/// bytes): what the shell prints at once; small, as printing text takes the main loop about
/// 0.03 ms a KiB (the shell's XML, made in Lua) and the shell's timer checks its time budget
/// between two prints.
pub(crate) const BATCH_LINES: usize = 32;
pub(crate) const BATCH_BYTES: usize = 4 * 1024;
/// Lines looked at between two checks for cancellation (and two locks of the outbox).
const LOOK_LINES: usize = 4096;
/// How long the thread waits for a snapshot before it checks whether it was cancelled.
const WAIT: Duration = Duration::from_millis(500);

/// One place per follower, given back when its thread ends.
static FOLLOWERS: Places = Places::new(MAX_FOLLOWERS, "followers", "end one first");

/// How long a snapshot handed to one follower is handed to the others of its sink as well
/// (those that look in the same tick of the shell's timer; see [`Follower::look`]).
/// (Less than the 0.1 s between two looks of one follower, which so never gets a snapshot
/// older than its last.)
const SHARED_FOR: Duration = Duration::from_millis(50);

/// The newest snapshot handed to a follower: of which sink (kept at its address while held
/// here), when, and the snapshot while a follower still holds it.
type NewestSnapshot = (Weak<Sink>, Instant, Weak<Ring>);
static NEWEST_SNAPSHOT: Mutex<Option<NewestSnapshot>> = Mutex::new(None);

/// A snapshot of `sink` for a follower: the one handed to another follower of it within
/// [`SHARED_FOR`] if one still holds it, else a new one. A snapshot of a full 64 MiB ring counts
/// references to its 4,096 chunks (and dropping it counts them down), each a cache miss: with
/// ten followers each looking every 0.1 s, that was most of following's main-loop time.
fn snapshot_of(sink: &Arc<Sink>) -> Arc<Ring> {
    let mut newest = NEWEST_SNAPSHOT.lock();
    let fresh =
        newest.as_ref().filter(|(of, at, _)| std::ptr::eq(of.as_ptr(), Arc::as_ptr(sink)) && at.elapsed() < SHARED_FOR);
    if let Some(snapshot) = fresh.and_then(|(_, _, snapshot)| snapshot.upgrade()) {
        return snapshot;
    }
    let snapshot = Arc::new(sink.snapshot());
    *newest = Some((Arc::downgrade(sink), Instant::now(), Arc::downgrade(&snapshot)));
    snapshot
}

/// How many followers exist (their threads running).
pub(crate) fn followers() -> usize {
    FOLLOWERS.taken()
}

/// What the main loop and the follower's thread hand each other.
#[derive(Debug)]
struct Shared {
    outbox: Outbox,
    /// Why it stopped (a bad pattern), once.
    error: Option<String>,
    /// New sessions for the filter's `only_sources` (a JID's sessions), taken at the next look.
    sources: Option<Vec<Vec<u8>>>,
    /// The newest snapshot, until the thread takes it.
    snapshot: Option<Arc<Ring>>,
    /// The snapshot the thread looked at, for the main loop to drop: its memory came from the
    /// main thread's allocator arena, whose lock a thread at the lowest priority must not hold
    /// (freeing many chunks) while the CPU is busy elsewhere, since the main loop then waits.
    spent: Option<Arc<Ring>>,
    /// Batches' buffers the shell is done with, for the thread to free: they came from its
    /// allocator arena, whose lock the main loop must not wait for (as with `spent`).
    sent: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Channel {
    shared: Mutex<Shared>,
    /// A snapshot came, or the follower was cancelled.
    woken: Condvar,
}

/// A running follower; dropping it ends it.
#[derive(Debug)]
pub(crate) struct Follower {
    sink: Arc<Sink>,
    channel: Arc<Channel>,
    cancel: Cancel,
}

/// What a follower's batches are: the lines as text, or the admin socket's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Text,
    ReplOutput,
}

/// Starts following `sink`: the newest `backlog` lines that pass first, then each new one.
/// `pattern` is compiled on the follower's thread (a costly one takes a while).
pub(crate) fn start(
    sink: Arc<Sink>,
    filter: Filter,
    pattern: Option<String>,
    backlog: usize,
    shape: Shape,
) -> Result<Follower, String> {
    let place = FOLLOWERS.take()?;
    let outbox = match shape {
        Shape::Text => Outbox::new(OUTBOX_BYTES, BATCH_LINES, BATCH_BYTES),
        Shape::ReplOutput => {
            Outbox::new(OUTBOX_BYTES, BATCH_LINES, BATCH_BYTES).framed(b"<repl-output>", b"</repl-output>")
        }
    };
    let shared = Shared { outbox, error: None, sources: None, snapshot: None, spent: None, sent: Vec::new() };
    let channel = Arc::new(Channel { shared: Mutex::new(shared), woken: Condvar::new() });
    let cancel = Cancel::default();
    let work = (place, sink.snapshot(), filter, pattern, Arc::clone(&channel), cancel.clone());
    super::thread::spawn_worker("ringbuffer-follow", std::iter::once(work), move |work| {
        let (_place, first, filter, pattern, channel, cancelled) = work;
        super::os::lowest_priority_for_this_thread();
        follow(first, filter, pattern, backlog, shape, &channel, &cancelled);
    })
    .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(Follower { sink, channel, cancel })
}

/// The follower's thread: the backlog from the `first` snapshot, then a look at each snapshot
/// handed to it, until cancelled.
fn follow(
    first: Ring,
    mut filter: Filter,
    pattern: Option<String>,
    backlog: usize,
    shape: Shape,
    channel: &Channel,
    cancelled: &Cancel,
) {
    if let Some(pattern) = pattern {
        match query::pattern(&pattern) {
            Ok(compiled) => filter.pattern = Some(compiled),
            Err(e) => {
                channel.shared.lock().error = Some(e);
                return;
            }
        }
    }
    let stop = || cancelled.is_cancelled();
    let Some((mut cursor, lines)) = Cursor::after_backlog(&first, &filter, backlog, stop) else {
        return;
    };
    let lines: Vec<_> = lines.into_iter().map(|line| shaped(shape, line)).collect();
    {
        let mut shared = channel.shared.lock();
        for line in lines {
            shared.outbox.offer(&line);
        }
        shared.spent = Some(Arc::new(first));
    }
    let mut previous: Option<Arc<Ring>> = None;
    loop {
        let mut sent = Vec::new();
        let snapshot = {
            let mut shared = channel.shared.lock();
            loop {
                sent.append(&mut shared.sent);
                if cancelled.is_cancelled() {
                    return;
                }
                if let Some(sources) = shared.sources.take() {
                    filter.only_sources = Some(sources);
                }
                if let Some(snapshot) = shared.snapshot.take() {
                    break snapshot;
                }
                channel.woken.wait_for(&mut shared, WAIT);
            }
        };
        drop(sent);
        look(&mut cursor, previous.as_deref(), &snapshot, &filter, shape, &channel.shared, cancelled);
        // Kept for the next look (see Cursor::look); the one before goes back to the main loop
        // (and only if the main loop did not take the last one is it dropped here).
        if let Some(older) = previous.replace(snapshot) {
            let _oldest = channel.shared.lock().spent.replace(older);
        }
    }
}

/// Looks at every line of `snapshot` stored since the cursor, in steps of [`LOOK_LINES`].
fn look(
    cursor: &mut Cursor,
    previous: Option<&Ring>,
    snapshot: &Ring,
    filter: &Filter,
    shape: Shape,
    shared: &Mutex<Shared>,
    cancelled: &Cancel,
) {
    let mut passed = Vec::new();
    let mut previous = previous;
    loop {
        // (Shaped here, before the outbox's lock: the main loop only tries it.)
        let looked = cursor.look(previous, snapshot, filter, LOOK_LINES, |line| passed.push(shaped(shape, line)));
        // The next step goes on in this same snapshot.
        previous = Some(snapshot);
        let mut shared = shared.lock();
        shared.outbox.skip(looked.skipped);
        for line in passed.drain(..) {
            shared.outbox.offer(&line);
        }
        drop(shared);
        if !looked.more || cancelled.is_cancelled() {
            return;
        }
    }
}

/// A line as the outbox takes it: as stored, or escaped for the admin socket's message.
fn shaped(shape: Shape, line: Vec<u8>) -> Vec<u8> {
    match shape {
        Shape::Text => line,
        Shape::ReplOutput => xml_text::escaped(&line),
    }
}

impl Follower {
    /// Hands the thread a snapshot of the sink to look at, unless it has one it did not take
    /// yet. Called on the main loop (the snapshot takes the ring's lock for microseconds).
    /// Followers of one sink that look within [`SHARED_FOR`] of each other share a snapshot.
    pub(crate) fn look(&self) {
        let snapshot = snapshot_of(&self.sink);
        let Some(mut shared) = self.channel.shared.try_lock() else { return };
        let spent = shared.spent.take();
        if shared.snapshot.is_none() {
            shared.snapshot = Some(snapshot);
            self.channel.woken.notify_one();
        }
        drop(shared);
        drop(spent);
    }

    /// The next batch of lines for the shell (see [`Outbox::take`]) and whether more wait;
    /// `None` also while the thread holds the outbox.
    pub(crate) fn take(&self) -> Option<(Batch, bool)> {
        let mut shared = self.channel.shared.try_lock()?;
        let batch = shared.outbox.take()?;
        Some((batch, !shared.outbox.is_empty()))
    }

    /// Gives back the buffer of a batch the shell is done with (see `Shared::sent`); dropped
    /// here only if the thread held its lock.
    pub(crate) fn give_back(&self, text: Vec<u8>) {
        if let Some(mut shared) = self.channel.shared.try_lock() {
            shared.sent.push(text);
        }
    }

    /// Why the follower stopped, if it failed.
    pub(crate) fn error(&self) -> Option<String> {
        self.channel.shared.try_lock()?.error.clone()
    }

    /// The sessions whose lines pass from now on (a JID's, with sessions new since the start);
    /// false if the thread held its lock (ask again).
    pub(crate) fn set_sources(&self, sources: Vec<Vec<u8>>) -> bool {
        let Some(mut shared) = self.channel.shared.try_lock() else { return false };
        shared.sources = Some(sources);
        true
    }

    /// Ends the follower: its thread stops at once, or after the look it is in (its next
    /// [`LOOK_LINES`] lines), and frees what it held.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        self.channel.woken.notify_one();
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

    // (Waiting for the lock, which the main loop's `take` only tries.)
    fn taken(follower: &Follower) -> Batch {
        follower.channel.shared.lock().outbox.take().unwrap_or_default()
    }

    fn has_lines(follower: &Follower) -> bool {
        !follower.channel.shared.lock().outbox.is_empty()
    }

    // What the shell's timer does: hand a snapshot, until `done`.
    fn looking_until(follower: &Follower, done: impl Fn() -> bool) {
        wait_until(|| {
            let done = done();
            follower.look();
            done
        });
    }

    #[test]
    fn followers_looking_in_one_tick_share_a_snapshot() {
        let size = |name: &str| if name == "size" { OptValue::Int(1 << 20) } else { OptValue::Absent };
        let sink = Arc::new(Sink::new(SinkOptions::parse(size, &[]).0, Vec::new()));
        let other = Arc::new(Sink::new(SinkOptions::parse(size, &[]).0, Vec::new()));
        log(&sink, "info", "a line");
        // (Retried: another test's follower may look in between, or the machine be slow.)
        wait_until(|| {
            let (first, second) = (snapshot_of(&sink), snapshot_of(&sink));
            Arc::ptr_eq(&first, &second)
        });
        let held = snapshot_of(&sink);
        assert!(!Arc::ptr_eq(&held, &snapshot_of(&other)), "another sink's");
        drop(held);
        // Once no follower holds it, the next look takes a new one, with the lines since.
        let lines = snapshot_of(&sink).lines();
        log(&sink, "info", "another line");
        assert_eq!(snapshot_of(&sink).lines(), lines + 1);
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
        let follower =
            start(Arc::clone(&sink), filter, Some("before|after|fill".into()), 10, Shape::Text).expect("started");
        assert_eq!(followers(), before + 1);
        wait_until(|| has_lines(&follower));
        assert_eq!(taken(&follower).text, format!("{STAMP}c2s1\tinfo\tbefore 1").into_bytes());
        log(&sink, "info", "after");
        log(&sink, "info", "not matching");
        looking_until(&follower, || has_lines(&follower));
        assert_eq!(taken(&follower).text, format!("{STAMP}c2s1\tinfo\tafter").into_bytes());

        // A shell that takes nothing: the outbox stays bounded and the rest is counted.
        let filler = "x".repeat(1000);
        for _ in 0..1000 {
            log(&sink, "info", &format!("fill {filler}"));
        }
        looking_until(&follower, || follower.channel.shared.lock().outbox.skipped_so_far() > 0);
        follower.look();
        // (Its last look is done once the outbox holds every line that fitted.)
        wait_until(|| follower.channel.shared.lock().snapshot.is_none());
        let mut batch = taken(&follower);
        let (mut lines, skipped) = (batch.lines, batch.skipped);
        while batch.lines > 0 {
            batch = taken(&follower);
            lines += batch.lines;
        }
        assert!(lines * 1000 <= OUTBOX_BYTES && skipped > 0, "{lines} lines kept, {skipped} skipped");
        assert_eq!(lines as u64 + skipped, 1000);

        // Past the bound, one more is refused; dropping one ends its thread.
        let extra: Vec<_> =
            std::iter::from_fn(|| start(Arc::clone(&sink), Filter::default(), None, 1, Shape::Text).ok()).collect();
        assert_eq!(extra.len(), MAX_FOLLOWERS - before - 1);
        let busy = start(Arc::clone(&sink), Filter::default(), None, 1, Shape::Text).expect_err("busy");
        assert!(busy.starts_with("busy: "), "{busy}");
        drop(extra);
        drop(follower);
        wait_until(|| followers() == before);

        // A bad pattern is an error, and the follower's place is given back.
        let bad =
            start(Arc::clone(&sink), Filter::default(), Some("(unclosed".into()), 1, Shape::Text).expect("started");
        wait_until(|| bad.error().is_some());
        assert!(bad.error().unwrap_or_default().starts_with("invalid regular expression"));
        wait_until(|| followers() == before);

        // For the admin socket: each batch is the shell's message, its text escaped, and what
        // the shell's XML may not carry replaced.
        let wire =
            start(Arc::clone(&sink), Filter::default(), Some("wire".into()), 0, Shape::ReplOutput).expect("started");
        sink.push(format!("{STAMP}c2s1\tinfo\twire <a href='x'>&\x07\n").as_bytes(), Meta { time: 100, source_at: 16 });
        sink.push(b"Dec 07 03:00:00 c2s1\tinfo\twire \xff\xc3!\n", Meta { time: 100, source_at: 16 });
        looking_until(&wire, || has_lines(&wire));
        let expected = format!(
            "<repl-output>{STAMP}c2s1\tinfo\twire &lt;a href=&apos;x&apos;&gt;&amp;\u{FFFD}\n\
             {STAMP}c2s1\tinfo\twire \u{FFFD}\u{FFFD}!</repl-output>"
        );
        let mut text = taken(&wire).text;
        if text.len() < expected.len() {
            // (The second line came in a look of its own.)
            looking_until(&wire, || has_lines(&wire));
            let second = taken(&wire).text;
            text.truncate(text.len() - b"</repl-output>".len());
            text.extend_from_slice(b"\n");
            text.extend_from_slice(&second[b"<repl-output>".len()..]);
        }
        assert_eq!(String::from_utf8_lossy(&text), expected);
        drop(wire);
        wait_until(|| followers() == before);
    }
}
