//! Dumps a sink starts by itself when a line at or above its `dump_on` level is logged, or a
//! line whose message matches its `dump_on_match` pattern (either starts a window): the
//! dump is written `dump_after` later (the aftermath window: what followed the error is in the
//! same dump), by the timer thread. A trigger within `dump_cooldown` of the last one that
//! started a dump, or while one is waiting, only counts; the count is reported with the next
//! dump, so an error storm gives one dump and a number, not thousands of files.
//!
//! A window that was opened is always dumped: the timer holds the sink that opened it until it
//! ends, whatever logging reloads happen meanwhile. A reload that makes the sink anew hands the
//! open window to the successor along with the lines (see `level_trigger`), and the
//! dump then holds the successor's lines: what came before the reload, and after it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::sink::{DumpOrigin, Sink};
use super::thread::{self, PerProcess};

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
    use crate::pure::options::OptValue;
    use crate::runtime::sink::tests::{dumped_lines, sink_from, wait_for_dump};
    use crate::runtime::test_dir::TestDir;

    #[test]
    fn an_open_window_is_dumped_by_the_successor_after_a_reload() {
        let dir = TestDir::new("sink-window");
        let window = [
            ("dump_on", OptValue::Str("error".into())),
            ("dump_after", OptValue::Float(0.3)),
            ("filename_template", OptValue::Str("{paths.data}/window-old.log".into())),
            ("lines", OptValue::Int(1000)),
        ];
        let old = sink_from(&dir, &window);
        for n in 1..=500 {
            old.push(format!("line {n}\n").as_bytes(), 0);
        }
        old.push(b"the error\n", 0);
        line_at_trigger_level(&old);
        old.push(b"after 1\n", 0);
        // The reload: other options (a smaller limit, another file); the old sink is dropped.
        let new = sink_from(
            &dir,
            &[
                ("dump_on", OptValue::Str("error".into())),
                ("dump_after", OptValue::Float(60.0)),
                ("filename_template", OptValue::Str("{paths.data}/window-new.log".into())),
                ("lines", OptValue::Int(600)),
            ],
        );
        new.adopt(&old);
        assert!(new.level_trigger.window_open());
        assert!(!old.level_trigger.window_open());
        drop(old);
        new.push(b"after 2\n", 0);
        line_at_trigger_level(&new); // within the window: only counted
        let text = wait_for_dump(&dir.file("window-new.log"));
        let mut expected: Vec<String> = (1..=500).map(|n| format!("line {n}")).collect();
        expected.extend(["the error", "after 1", "after 2"].map(String::from));
        assert_eq!(dumped_lines(&text), expected);
        assert!(!std::path::Path::new(&dir.file("window-old.log")).exists());
        assert!(!new.level_trigger.window_open());
        assert!(text.contains("\n-- 1 more dump_on triggers were suppressed by dump_cooldown"), "{text}");
    }

    #[test]
    fn an_open_window_of_a_sink_dropped_without_successor_is_still_dumped() {
        let dir = TestDir::new("sink-window-removed");
        let old = sink_from(
            &dir,
            &[
                ("dump_on", OptValue::Str("error".into())),
                ("dump_after", OptValue::Float(0.2)),
                ("filename_template", OptValue::Str("{paths.data}/removed.log".into())),
            ],
        );
        old.push(b"before\n", 0);
        old.push(b"the error\n", 0);
        line_at_trigger_level(&old);
        old.push(b"after\n", 0);
        drop(old); // a reload removed the sink, and Lua collected its handle
        let text = wait_for_dump(&dir.file("removed.log"));
        assert_eq!(dumped_lines(&text), ["before", "the error", "after"]);
    }

    #[test]
    fn a_window_merged_into_the_successors_own_gives_one_dump() {
        let dir = TestDir::new("sink-window-merged");
        let options = |after: f64| {
            [
                ("dump_on", OptValue::Str("error".into())),
                ("dump_after", OptValue::Float(after)),
                ("filename_template", OptValue::Str("{paths.data}/merged.log".into())),
            ]
        };
        let old = sink_from(&dir, &options(0.1));
        old.push(b"old error\n", 0);
        line_at_trigger_level(&old);
        let new = sink_from(&dir, &options(0.5));
        new.push(b"new error\n", 0);
        line_at_trigger_level(&new);
        new.adopt(&old);
        drop(old);
        // The predecessor's window ends first (the timer handles it first) and gives no dump.
        let text = wait_for_dump(&dir.file("merged.log"));
        assert_eq!(dumped_lines(&text), ["old error", "new error"]);
        assert_eq!(text.matches("-- End of dump --").count(), 1, "{text}");
    }
}
