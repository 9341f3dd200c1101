//! Dumps a sink starts by itself when a line at or above its `dump_on` level is logged: the
//! dump is written `dump_after` later (the aftermath window: what followed the error is in the
//! same dump), by the timer thread. A trigger within `dump_cooldown` of the last one that
//! started a dump, or while one is waiting, only counts; the count is reported with the next
//! dump, so an error storm gives one dump and a number, not thousands of files.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
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
    /// A dump is scheduled and not yet started.
    waiting: bool,
    /// Triggers that only counted since the last dump of the sink.
    suppressed: u64,
}

impl LevelTrigger {
    /// A line at or above the level was logged now: true if a dump should be scheduled.
    fn fire(&self, now: Instant, cooldown: Duration) -> bool {
        let mut state = self.state.lock();
        let cooling = state.last.is_some_and(|last| now.duration_since(last) < cooldown);
        if state.waiting || cooling {
            state.suppressed += 1;
            return false;
        }
        state.last = Some(now);
        state.waiting = true;
        true
    }

    /// The scheduled dump starts now.
    fn started(&self) {
        self.state.lock().waiting = false;
    }

    /// The triggers that only counted since the last dump, for that dump's notice; reset.
    pub(crate) fn take_suppressed(&self) -> u64 {
        std::mem::take(&mut self.state.lock().suppressed)
    }
}

/// A dump due at `due`.
struct Due {
    due: Instant,
    sink: Weak<Sink>,
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
    Flush(Sender<Vec<Weak<Sink>>>),
}

static TIMER: Mutex<PerProcess<Sender<Message>>> = Mutex::new(PerProcess::new());

/// Called from the thread that logs, for a line at or above `sink`'s `dump_on` level.
pub(crate) fn line_at_trigger_level(sink: &Arc<Sink>) {
    let auto = &sink.options.auto;
    if !sink.level_trigger.fire(Instant::now(), auto.cooldown) {
        return;
    }
    let due = Due { due: Instant::now() + auto.after, sink: Arc::downgrade(sink) };
    let mut timer = TIMER.lock();
    let sent = timer.get_or_try(start).map(|sender| sender.send(Message::Schedule(due)));
    if !matches!(sent, Ok(Ok(()))) {
        // No timer thread: the dump cannot be scheduled; say so rather than lose it silently.
        sink.level_trigger.started();
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
    let Ok(sinks) = answers.recv_timeout(Duration::from_secs(5)) else { return };
    for sink in sinks.iter().filter_map(Weak::upgrade) {
        dump(&sink, DumpOrigin::LuaThread);
    }
}

fn dump(sink: &Arc<Sink>, origin: DumpOrigin) {
    sink.level_trigger.started();
    let reason = match sink.options.auto.on_level {
        Some(level) => format!("dump_on = \"{}\"", level.name()),
        None => "dump_on".into(),
    };
    sink.dump_and_report(origin, &reason);
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
                let _ = answer.send(queue.drain().map(|Reverse(due)| due.sink).collect());
            }
            None => {
                let now = Instant::now();
                while queue.peek().is_some_and(|Reverse(next)| next.due <= now) {
                    if let Some(Reverse(due)) = queue.pop() {
                        if let Some(sink) = due.sink.upgrade() {
                            dump(&sink, DumpOrigin::NativeThread);
                        }
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
        assert!(trigger.fire(start, cooldown));
        for i in 1..100 {
            assert!(!trigger.fire(start + Duration::from_millis(i), cooldown));
        }
        trigger.started();
        assert!(!trigger.fire(start + Duration::from_secs(59), cooldown), "still cooling down");
        assert_eq!(trigger.take_suppressed(), 100);
        assert_eq!(trigger.take_suppressed(), 0);
        assert!(trigger.fire(start + Duration::from_secs(61), cooldown));
    }

    #[test]
    fn nothing_counts_while_the_window_is_open_without_dumping() {
        let trigger = LevelTrigger::default();
        let start = Instant::now();
        assert!(trigger.fire(start, Duration::ZERO));
        assert!(!trigger.fire(start + Duration::from_secs(5), Duration::ZERO), "the dump is still waiting");
        trigger.started();
        assert!(trigger.fire(start + Duration::from_secs(6), Duration::ZERO));
    }
}
