//! The admin shell's followers (`ringbuffer:follow`): each is a thread that, whenever the main
//! loop hands it a snapshot of the lines its sink stored since the last one
//! ([`Follower::look`], every 0.1 s from the shell's timer), keeps those that pass its filter
//! in a bounded outbox for the shell (see `pure::follow`). The per-line path knows nothing of
//! them. The snapshot is taken on the main loop, as for `tail`, so the thread (at the lowest CPU
//! priority) never holds the ring's lock; it shares only the chunks the new lines lie in
//! (`Ring::snapshot_since`), so it costs the same for a full 64 MiB ring as for a small one.
//! The main loop only ever *tries* the follower's own lock (a thread put off the CPU while
//! holding it never holds the main loop up).
//!
//! At most [`MAX_FOLLOWERS`] exist at once, counted from their start until their thread ended;
//! one more is refused with a "busy" answer. Each holds at most [`OUTBOX_BYTES`] of lines, one
//! snapshot waiting, one it looks at and one spent, and [`LOOK_LINES`] lines' matches between
//! two locks of its outbox.
//!
//! For a shell on Prosody's admin socket (0.12, 13), the thread also makes each batch the
//! message the shell's `print` would send (`<repl-output>`, the text escaped as `util.stanza`
//! does, see `pure::xml_text`), so that the main loop only hands its bytes to the connection:
//! building that message in Lua was the whole of following's cost to the main loop. Where it
//! can, the main loop writes them straight to the shell's socket, keeping what the socket does
//! not take for the next turn ([`Follower::turn`]), so that they never become Lua strings.
//!
//! Memory crosses between the two threads only as far as needed, and each side frees what it
//! allocated: glibc's allocator locks an arena to free into it, and a thread at the lowest
//! priority holding the main thread's arena (or the main thread waiting for the thread's)
//! held Prosody's main loop up hundreds of times a second under load (seen with `perf`). So
//! snapshots and session lists go back to the main loop to be dropped, and batches' buffers
//! go back to the thread to be filled again; the thread's own buffers are kept from one look
//! to the next.

use std::io::ErrorKind;
use std::os::raw::c_int;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::inspect::Cancel;
use super::os;
use super::places::Places;
use super::sink::Sink;
use crate::pure::follow::{Cursor, Outbox};
use crate::pure::query::{self, Filter};
use crate::pure::ring::{Mark, Ring};
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
/// Lines looked at between two checks for cancellation (and two locks of the outbox), and
/// with one hold of [`WORKING`].
const LOOK_LINES: usize = 256;
/// How long the thread waits for a snapshot before it checks whether it was cancelled.
const WAIT: Duration = Duration::from_millis(500);

/// One place per follower, given back when its thread ends.
static FOLLOWERS: Places = Places::new(MAX_FOLLOWERS, "followers", "end one first");

/// Held by the follower looking at lines: one at a time, so that all of them together keep
/// at most one CPU busy. Ten followers each on a CPU of their own kept a 2-CPU machine so busy
/// that Prosody's main thread, ready to run, waited for them up to 10 ms (whole scheduler
/// ticks, nice 19 notwithstanding; `SCHED_IDLE` and a short time slice did no better).
static WORKING: Mutex<()> = Mutex::new(());

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
    snapshot: Option<Ring>,
    /// Where the newest snapshot ends: the next one starts there.
    mark: Mark,
    /// Snapshots the thread looked at, and the sessions it followed before, for the main loop
    /// to drop (their memory is the main thread's; see the module's doc).
    spent: Vec<Ring>,
    spent_sources: Option<Vec<Vec<u8>>>,
}

/// Snapshots the thread can hand back before the main loop took the last: it looks at most at
/// two between two of the main loop's turns. (A third would be dropped on the thread.)
const SPENT: usize = 4;

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
    /// A batch the shell's socket did not take all of: the rest goes before any other byte.
    unsent: Option<Unsent>,
}

/// A batch's bytes from `at` on, not sent yet.
#[derive(Debug)]
struct Unsent {
    text: Vec<u8>,
    at: usize,
}

/// What one turn gives the shell: how many lines, and lines skipped before them, whether more
/// wait for another turn at once, whether bytes wait for its socket to take them (another turn
/// soon), how many bytes went to its socket, and the bytes for it to send itself.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    pub lines: usize,
    pub skipped: u64,
    pub more: bool,
    pub blocked: bool,
    pub sent: usize,
    pub text: Vec<u8>,
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
    let first = sink.snapshot();
    let mark = first.mark();
    let spent = Vec::with_capacity(SPENT);
    let shared = Shared { outbox, error: None, sources: None, snapshot: None, mark, spent, spent_sources: None };
    let channel = Arc::new(Channel { shared: Mutex::new(shared), woken: Condvar::new() });
    let cancel = Cancel::default();
    let work = (place, first, filter, pattern, Arc::clone(&channel), cancel.clone());
    super::thread::spawn_worker("ringbuffer-follow", std::iter::once(work), move |work| {
        let (_place, first, filter, pattern, channel, cancelled) = work;
        super::os::lowest_priority_for_this_thread();
        follow(first, filter, pattern, backlog, shape, &channel, &cancelled);
    })
    .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(Follower { sink, channel, cancel, unsent: None })
}

/// The follower's thread: the backlog from the `first` snapshot, then a look at each snapshot
/// handed to it (the lines since the one before), until cancelled.
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
    let permit = WORKING.lock();
    let Some((mut cursor, lines)) = Cursor::after_backlog(&first, &filter, backlog, stop) else {
        return;
    };
    drop(permit);
    let mut passed = Passed::default();
    for line in &lines {
        passed.add(shape, line);
    }
    {
        let mut shared = channel.shared.lock();
        passed.offer_to(&mut shared.outbox);
        hand_back(&mut shared, first);
    }
    drop(lines);
    loop {
        let snapshot = {
            let mut shared = channel.shared.lock();
            loop {
                if cancelled.is_cancelled() {
                    return;
                }
                if let Some(sources) = shared.sources.take() {
                    shared.spent_sources = filter.only_sources.replace(sources);
                }
                if let Some(snapshot) = shared.snapshot.take() {
                    break snapshot;
                }
                channel.woken.wait_for(&mut shared, WAIT);
            }
        };
        look(&mut cursor, &snapshot, &filter, shape, &channel.shared, cancelled, &mut passed);
        hand_back(&mut channel.shared.lock(), snapshot);
    }
}

/// Gives a snapshot the thread is done with back to the main loop, to be dropped there (here
/// only if [`SPENT`] of them are waiting already).
fn hand_back(shared: &mut Shared, snapshot: Ring) {
    if shared.spent.len() < shared.spent.capacity() {
        shared.spent.push(snapshot);
    }
}

/// The lines of one step that passed, shaped, back to back: kept from one step to the next,
/// so that the thread does not allocate for them.
#[derive(Debug, Default)]
struct Passed {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Passed {
    /// Adds `line` as the outbox takes it: as stored, or escaped for the admin socket's
    /// message; returns its shaped length.
    fn add(&mut self, shape: Shape, line: &[u8]) -> usize {
        let start = self.text.len();
        match shape {
            Shape::Text => self.text.extend_from_slice(line),
            Shape::ReplOutput => xml_text::escape_into(line, &mut self.text),
        }
        self.ends.push(self.text.len());
        self.text.len() - start
    }

    /// Offers every line to `outbox`, and forgets them.
    fn offer_to(&mut self, outbox: &mut Outbox) {
        let mut start = 0;
        for &end in &self.ends {
            outbox.offer(&self.text[start..end]);
            start = end;
        }
        self.text.clear();
        self.ends.clear();
    }
}

/// Looks at every line of `snapshot` from the cursor on, in steps of [`LOOK_LINES`], each
/// with the [`WORKING`] permit.
fn look(
    cursor: &mut Cursor,
    snapshot: &Ring,
    filter: &Filter,
    shape: Shape,
    shared: &Mutex<Shared>,
    cancelled: &Cancel,
    passed: &mut Passed,
) {
    loop {
        let permit = WORKING.lock();
        let began = Instant::now();
        let mut room = shared.lock().outbox.room();
        let mut unfit = 0;
        // (Shaped here, before the outbox's lock: the main loop only tries it.)
        let looked = cursor.look(snapshot, filter, LOOK_LINES, |line| {
            // A line longer than the room left is skipped unshaped (escaping never shortens
            // it): a stuck shell's follower does little more than count.
            if line.len() > room {
                unfit += 1;
                return;
            }
            room = room.saturating_sub(passed.add(shape, line));
        });
        // As long again off the CPU (others wait for the permit meanwhile): all followers
        // together then keep at most half a CPU busy, in bursts short enough that Prosody's
        // main thread, ready to run, never waits long for the CPU.
        std::thread::sleep(began.elapsed());
        drop(permit);
        let mut shared = shared.lock();
        shared.outbox.skip(looked.skipped + unfit);
        passed.offer_to(&mut shared.outbox);
        drop(shared);
        if !looked.more || cancelled.is_cancelled() {
            return;
        }
    }
}

impl Follower {
    /// Hands the thread a snapshot of the lines the sink stored since the last one, unless it
    /// has one it did not take yet. Called on the main loop (the snapshot takes the ring's lock
    /// for microseconds).
    pub(crate) fn look(&self) {
        let Some(mut shared) = self.channel.shared.try_lock() else { return };
        // (Dropped under the lock, keeping the list's room: the thread only waits meanwhile.)
        shared.spent.clear();
        shared.spent_sources = None;
        if shared.snapshot.is_none() {
            let snapshot = self.sink.snapshot_since(shared.mark);
            shared.mark = snapshot.mark();
            shared.snapshot = Some(snapshot);
            self.channel.woken.notify_one();
        }
    }

    /// The shell's next turn: the next batch (see [`Outbox::take`]), and whether more wait;
    /// `None` if there is nothing to tell now (or the thread holds the outbox).
    ///
    /// Given the shell's `socket` (when nothing else waits to be written to it), the batch
    /// goes there at once and what the socket does not take is kept and sent first at the next
    /// turn: batches then never become Lua strings, whose making (the collector's work, and
    /// the collector's steps it set off) was most of what following cost the main loop. A
    /// batch after skipped lines waits for the next turn, as the shell tells of those first.
    /// Without a socket, or if the socket failed, the bytes to send are the turn's `text`
    /// (give its buffer back once done with it).
    pub(crate) fn turn(&mut self, socket: Option<c_int>) -> Option<Turn> {
        let mut turn = Turn::default();
        if let Some(unsent) = self.unsent.take() {
            self.send(socket, unsent, &mut turn);
            if self.unsent.is_some() || !turn.text.is_empty() {
                (turn.more, turn.blocked) = (!turn.text.is_empty(), self.unsent.is_some());
                return Some(turn);
            }
        }
        let taken = self.channel.shared.try_lock().and_then(|mut shared| {
            let batch = shared.outbox.take()?;
            Some((batch, !shared.outbox.is_empty()))
        });
        let Some((batch, more)) = taken else {
            return (turn.sent > 0).then_some(turn);
        };
        (turn.lines, turn.skipped, turn.more) = (batch.lines, batch.skipped, more);
        if batch.lines == 0 {
            self.give_back(batch.text);
            return Some(turn);
        }
        let unsent = Unsent { text: batch.text, at: 0 };
        match socket {
            Some(_) if batch.skipped > 0 => self.unsent = Some(unsent),
            _ => self.send(socket, unsent, &mut turn),
        }
        turn.blocked = self.unsent.is_some();
        turn.more &= !turn.blocked;
        Some(turn)
    }

    /// Sends what `socket` takes of `unsent` and keeps the rest for the next turn; without a
    /// socket, or if it failed (the shell's end, noticed apart), the rest is the turn's text.
    fn send(&mut self, socket: Option<c_int>, mut unsent: Unsent, turn: &mut Turn) {
        if let Some(fd) = socket {
            match os::send_now(fd, &unsent.text[unsent.at..]) {
                Ok(sent) => {
                    turn.sent += sent;
                    unsent.at += sent;
                    if unsent.at == unsent.text.len() {
                        self.give_back(unsent.text);
                    } else {
                        self.unsent = Some(unsent);
                    }
                    return;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    self.unsent = Some(unsent);
                    return;
                }
                Err(_) => {}
            }
        }
        self.unsent = Some(unsent);
        turn.text = self.take_unsent().unwrap_or_default();
    }

    /// The rest of a batch the shell's socket took part of, if any: for the shell to send
    /// before anything else when it ends.
    pub(crate) fn take_unsent(&mut self) -> Option<Vec<u8>> {
        let mut unsent = self.unsent.take()?;
        unsent.text.drain(..unsent.at);
        Some(unsent.text)
    }

    /// Gives back the buffer of a batch the shell is done with, for the thread's next batch
    /// (see the module's doc); dropped here only if the thread held its lock.
    pub(crate) fn give_back(&self, text: Vec<u8>) {
        if text.capacity() == 0 {
            return;
        }
        if let Some(mut shared) = self.channel.shared.try_lock() {
            shared.outbox.recycle(text);
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
    use crate::pure::follow::Batch;
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

        turns_through_a_socket(&sink);
        wait_until(|| followers() == before);
    }

    // A shell's turns with its socket (see `Follower::turn`), a real socket pair: what the
    // socket does not take goes first at the next turn; a batch after skipped lines waits a
    // turn; a peer gone gives the rest back as text.
    fn turns_through_a_socket(sink: &Arc<Sink>) {
        use std::io::Read;
        use std::os::unix::io::AsRawFd;
        use std::os::unix::net::UnixStream;
        let (ours, mut theirs) = UnixStream::pair().expect("a socket pair");
        theirs.set_nonblocking(true).expect("non-blocking");
        let fd = ours.as_raw_fd();
        let mut received = Vec::new();
        let mut read_all = |theirs: &mut UnixStream| {
            let mut buffer = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = theirs.read(&mut buffer) {
                received.extend_from_slice(&buffer[..n]);
            }
        };
        // A shell that reads nothing for now: its socket is full.
        let (filler, mut filled) = (vec![b'.'; 64 * 1024], 0);
        while let Ok(n) = os::send_now(fd, &filler) {
            filled += n;
        }
        let mut follower =
            start(Arc::clone(sink), Filter::default(), Some("sock".into()), 0, Shape::Text).expect("started");
        let line = |name: &str| format!("{STAMP}c2s1\tinfo\tsock {name} {}", "y".repeat(100 * 1024));
        log(sink, "info", &format!("sock a {}", "y".repeat(100 * 1024)));
        looking_until(&follower, || has_lines(&follower));
        let turn = next_turn(&mut follower, fd);
        assert_eq!((turn.lines, turn.skipped, turn.sent, turn.text.len()), (1, 0, 0, 0));
        assert_eq!((turn.more, turn.blocked), (false, true));

        // Lines that the outbox cannot all hold meanwhile: the third is skipped.
        for name in ["b", "c", "d"] {
            log(sink, "info", &format!("sock {name} {}", "y".repeat(100 * 1024)));
        }
        looking_until(&follower, || follower.channel.shared.lock().outbox.skipped_so_far() > 0);
        // The shell reads again: the first line goes out whole, in order, before any other;
        // the batch after the skipped line is held for the next turn (the shell tells first).
        let mut sent = 0;
        let held = loop {
            read_all(&mut theirs);
            let turn = next_turn(&mut follower, fd);
            sent += turn.sent;
            if turn.lines > 0 {
                break turn;
            }
            assert_eq!((turn.skipped, turn.text.len(), turn.blocked), (0, 0, sent < line("a").len()));
        };
        assert_eq!((held.lines, held.skipped, held.more, held.blocked, held.text.len()), (1, 1, false, true, 0));
        assert_eq!(sent, line("a").len());
        read_all(&mut theirs);
        assert_eq!(received.len(), filled + line("a").len());
        assert!(received[..filled].iter().all(|&b| b == b'.'));
        assert_eq!(String::from_utf8_lossy(&received[filled..]), line("a"));
        // Its last words: what the socket did not take, for the shell to send.
        assert_eq!(follower.take_unsent().map(String::from_utf8), Some(Ok(line("b"))));
        assert!(follower.take_unsent().is_none());
        // A peer gone: the batch comes back as text.
        drop(theirs);
        let turn = next_turn(&mut follower, fd);
        assert_eq!((turn.lines, turn.skipped, turn.sent), (1, 0, 0));
        assert_eq!(String::from_utf8_lossy(&turn.text), line("c"));
        assert!(!has_lines(&follower));
    }

    // The follower's next turn, once the thread does not hold its outbox.
    fn next_turn(follower: &mut Follower, fd: c_int) -> Turn {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(turn) = follower.turn(Some(fd)) {
                return turn;
            }
            assert!(Instant::now() < deadline, "no turn in time");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
