//! Dumps a sink starts by itself when a line at or above its `dump_on` level is logged, or a
//! line whose message matches its `dump_on_match` pattern (either starts a window): the
//! dump is written `dump_after` later (the aftermath window: what followed the error is in the
//! same dump), by the timer thread. A trigger within `dump_cooldown` of the last one that
//! started a dump, or while one is waiting, only counts; the count is reported with the next
//! dump, so an error storm gives one dump and a number, not thousands of files.
//!
//! A window that was opened is always dumped: the timer holds the sink that opened it until it
//! ends, whatever logging reloads happen meanwhile. A reload that makes the sink anew hands the
//! open window to the successor along with the lines ([`LevelTrigger::hand_over`]), and the
//! dump then holds the successor's lines: what came before the reload, and after it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::sink::{DumpOrigin, Sink};
use super::thread::{self, PerProcess};

/// One sink's trigger state.
#[derive(Debug, Default)]
pub(crate) struct LevelTrigger {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last trigger that started a dump happened.
    last: Option<Instant>,
    /// The window whose dump is scheduled and not yet started, if any (see [`WINDOWS`]).
    open: Option<u64>,
    /// Triggers that only counted since the last dump of the sink.
    suppressed: u64,
    /// Stalls (`dump_on_stall`) that only counted since the last dump of the sink.
    suppressed_stalls: u64,
}

/// Numbers the windows of the whole process, so that a window handed to a successor is told
/// apart from one the successor opened itself.
static WINDOWS: AtomicU64 = AtomicU64::new(0);

impl LevelTrigger {
    /// A line at or above the level was logged now: the window that opens, if one should (a
    /// dump is to be scheduled).
    fn fire(&self, now: Instant, cooldown: Duration) -> Option<u64> {
        let mut state = self.state.lock();
        let cooling = state.last.is_some_and(|last| now.duration_since(last) < cooldown);
        if state.open.is_some() || cooling {
            state.suppressed += 1;
            return None;
        }
        state.last = Some(now);
        let window = WINDOWS.fetch_add(1, Ordering::Relaxed);
        state.open = Some(window);
        Some(window)
    }

    /// A dump that starts at once by itself (`dump_on_stall`) is asked for at `now`: true if
    /// it may start. Within `cooldown` of the last trigger that started a dump it only counts.
    pub(crate) fn fire_at_once(&self, now: Instant, cooldown: Duration) -> bool {
        let mut state = self.state.lock();
        if state.last.is_some_and(|last| now.duration_since(last) < cooldown) {
            state.suppressed_stalls += 1;
            return false;
        }
        state.last = Some(now);
        true
    }

    /// The dump of `window` starts now, if that window is still open here (it may have been
    /// handed to a successor).
    fn close(&self, window: u64) -> bool {
        let mut state = self.state.lock();
        let here = state.open == Some(window);
        if here {
            state.open = None;
        }
        here
    }

    /// Whether a dump is scheduled and not yet started.
    pub(crate) fn window_open(&self) -> bool {
        self.state.lock().open.is_some()
    }

    /// A logging reload made this sink anew as `successor`: the open window (if any), the
    /// cooldown and the count of suppressed triggers go on there. If the successor opened a
    /// window of its own meanwhile, the two become one: its dump holds both. Locks this trigger,
    /// then the successor's (a predecessor's always first), so that the timer finds the window
    /// in one of the two, never in neither.
    pub(crate) fn hand_over(&self, successor: &LevelTrigger) {
        let mut from = self.state.lock();
        let mut to = successor.state.lock();
        let window = from.open.take();
        if to.open.is_none() {
            to.open = window;
        }
        to.last = to.last.max(from.last);
        to.suppressed += std::mem::take(&mut from.suppressed);
        to.suppressed_stalls += std::mem::take(&mut from.suppressed_stalls);
    }

    /// The triggers that only counted since the last dump, for that dump's notice, as
    /// (`dump_on` triggers, stalls); reset.
    pub(crate) fn take_suppressed(&self) -> (u64, u64) {
        let mut state = self.state.lock();
        (std::mem::take(&mut state.suppressed), std::mem::take(&mut state.suppressed_stalls))
    }
}

/// The dump of `window`, due at `due`. Holds the sink that opened the window (not a weak
/// reference): a reload that drops the sink must not drop its window.
struct Due {
    due: Instant,
    window: u64,
    sink: Arc<Sink>,
    /// What opened the window, for the dump's reason.
    cause: Cause,
}

/// What kind of line opened a window.
#[derive(Debug, Clone, Copy)]
enum Cause {
    /// A line at or above `dump_on`.
    Level,
    /// A line whose message matches `dump_on_match`.
    Match,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.due.cmp(&other.due)
    }
}

enum Message {
    Schedule(Due),
    /// Start every scheduled dump now, from the thread that asks (shutdown), and answer.
    Flush(Sender<Vec<Due>>),
}

static TIMER: Mutex<PerProcess<Sender<Message>>> = Mutex::new(PerProcess::new());

/// Called from the thread that logs, for a line at or above `sink`'s `dump_on` level.
pub(crate) fn line_at_trigger_level(sink: &Arc<Sink>) {
    line_triggered(sink, Cause::Level);
}

/// Called from the thread that logs, for a line whose message matches `sink`'s `dump_on_match`.
#[cold]
pub(crate) fn line_matched(sink: &Arc<Sink>) {
    line_triggered(sink, Cause::Match);
}

fn line_triggered(sink: &Arc<Sink>, cause: Cause) {
    let auto = &sink.options.auto;
    let Some(window) = sink.level_trigger.fire(Instant::now(), auto.cooldown) else { return };
    let due = Due { due: Instant::now() + auto.after, window, sink: Arc::clone(sink), cause };
    let mut timer = TIMER.lock();
    let sent = timer.get_or_try(start).map(|sender| sender.send(Message::Schedule(due)));
    if !matches!(sent, Ok(Ok(()))) {
        // No timer thread: the dump cannot be scheduled; say so rather than lose it silently.
        sink.level_trigger.close(window);
        super::reports::push("error", "Cannot schedule the dump_on dump: the timer thread did not start".into());
    }
}

/// Starts every scheduled dump now (at shutdown, from the Lua thread, so that they are still
/// admitted), instead of at the end of their window.
pub(crate) fn flush() {
    let (answer, answers) = mpsc::channel();
    let sent = TIMER.lock().get().map(|sender| sender.send(Message::Flush(answer)).is_ok());
    if sent != Some(true) {
        return;
    }
    let Ok(due) = answers.recv_timeout(Duration::from_secs(5)) else { return };
    for due in due {
        dump(&due, DumpOrigin::LuaThread);
    }
}

/// The window ended: dumps the sink that holds it now (the one that opened it, or the successor
/// a reload handed it to), unless it was dumped already (merged into a successor's own window).
fn dump(due: &Due, origin: DumpOrigin) {
    let Some(holder) = close_window(&due.sink, due.window) else { return };
    let auto = &due.sink.options.auto;
    let reason = match (due.cause, auto.on_level, &auto.on_match) {
        (Cause::Level, Some(level), _) => format!("dump_on = \"{}\"", level.name()),
        (Cause::Match, _, Some(pattern)) => format!("dump_on_match = {:?}", pattern.source()),
        (Cause::Level, ..) => "dump_on".into(),
        (Cause::Match, ..) => "dump_on_match".into(),
    };
    holder.dump_and_report(origin, &reason);
}

/// Closes `window` where it is now, following the sinks a reload made anew; the sink whose
/// lines the dump takes (the newest successor: a predecessor's lines are all there).
fn close_window(opener: &Arc<Sink>, window: u64) -> Option<Arc<Sink>> {
    let mut holder = Arc::clone(opener);
    while !holder.level_trigger.close(window) {
        holder = holder.successor()?;
    }
    Some(holder.newest())
}

fn start() -> Result<Sender<Message>, ()> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn_worker("log_ringbuffer-timer", [receiver], run).map_err(|_| ())?;
    Ok(sender)
}

/// The timer thread: waits for the earliest due dump, or a message.
fn run(messages: Receiver<Message>) {
    let mut queue: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    loop {
        let message = match queue.peek() {
            Some(Reverse(next)) => match messages.recv_timeout(next.due.saturating_duration_since(Instant::now())) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match messages.recv() {
                Ok(message) => Some(message),
                Err(_) => return,
            },
        };
        match message {
            Some(Message::Schedule(due)) => queue.push(Reverse(due)),
            Some(Message::Flush(answer)) => {
                let _ = answer.send(queue.drain().map(|Reverse(due)| due).collect());
            }
            None => {
                let now = Instant::now();
                while queue.peek().is_some_and(|Reverse(next)| next.due <= now) {
                    if let Some(Reverse(due)) = queue.pop() {
                        dump(&due, DumpOrigin::NativeThread);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_gives_one_dump_and_a_count() {
        let trigger = LevelTrigger::default();
        let start = Instant::now();
        let cooldown = Duration::from_secs(60);
        let window = trigger.fire(start, cooldown).expect("opens");
        for i in 1..100 {
            assert!(trigger.fire(start + Duration::from_millis(i), cooldown).is_none());
        }
        assert!(trigger.close(window));
        assert!(trigger.fire(start + Duration::from_secs(59), cooldown).is_none(), "still cooling down");
        assert_eq!(trigger.take_suppressed(), (100, 0));
        assert_eq!(trigger.take_suppressed(), (0, 0));
        assert!(trigger.fire(start + Duration::from_secs(61), cooldown).is_some());
    }

    #[test]
    fn a_stall_within_the_cooldown_only_counts() {
        let trigger = LevelTrigger::default();
        let start = Instant::now();
        let cooldown = Duration::from_secs(60);
        assert!(trigger.fire_at_once(start, cooldown));
        assert!(!trigger.fire_at_once(start + Duration::from_secs(30), cooldown));
        assert!(trigger.fire(start + Duration::from_secs(31), cooldown).is_none(), "one cooldown for both");
        assert_eq!(trigger.take_suppressed(), (1, 1));
        assert!(trigger.fire_at_once(start + Duration::from_secs(61), cooldown));
    }

    #[test]
    fn nothing_counts_while_the_window_is_open_without_dumping() {
        let trigger = LevelTrigger::default();
        let start = Instant::now();
        let window = trigger.fire(start, Duration::ZERO).expect("opens");
        assert!(trigger.fire(start + Duration::from_secs(5), Duration::ZERO).is_none(), "the dump is still waiting");
        assert!(trigger.close(window));
        assert!(!trigger.close(window), "closed once");
        assert!(trigger.fire(start + Duration::from_secs(6), Duration::ZERO).is_some());
    }

    #[test]
    fn a_window_handed_over_goes_on_in_the_successor_or_merges_with_its_own() {
        let start = Instant::now();
        let (old, new) = (LevelTrigger::default(), LevelTrigger::default());
        let window = old.fire(start, Duration::ZERO).expect("opens");
        assert!(old.fire(start, Duration::ZERO).is_none());
        old.hand_over(&new);
        assert!(!old.window_open() && new.window_open());
        assert!(new.fire(start, Duration::ZERO).is_none(), "the window goes on: only counted");
        assert_eq!(new.take_suppressed(), (2, 0), "the predecessor's count and its own");
        assert!(!old.close(window));
        assert!(new.close(window));

        let (old, new) = (LevelTrigger::default(), LevelTrigger::default());
        let first = old.fire(start, Duration::ZERO).expect("opens");
        let own = new.fire(start, Duration::ZERO).expect("opens");
        old.hand_over(&new);
        assert!(!new.close(first), "merged: the predecessor's window gives no dump of its own");
        assert!(new.close(own), "the successor's window dumps both");
    }
}
