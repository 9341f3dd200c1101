//! The background dump writer: one thread that fills in prepared dumps, so a dump triggered
//! from Lua blocks the Lua thread only for taking the ring and opening the file.
//!
//! The thread starts on first use and again if the process has forked since (threads do not
//! survive `fork`). Outcomes are reported through `reports`.

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::dump::Prepared;
use crate::ring::Ring;
use crate::sink::Sink;

/// One dump to fill in.
pub struct Job {
    pub sink: Arc<Sink>,
    pub prepared: Prepared,
    pub lines: Ring,
    /// What triggered it, for the report.
    pub reason: String,
}

struct Writer {
    /// The process that started the thread, and the way to reach it.
    owner: Option<(u32, Sender<Job>)>,
    pending: usize,
}

static WRITER: Mutex<Writer> = Mutex::new(Writer { owner: None, pending: 0 });
static IDLE: Condvar = Condvar::new();

/// Hands a job to the writer thread (started if needed). If no thread can be started, the
/// job is written on the calling thread.
pub fn submit(job: Job) {
    let mut writer = WRITER.lock();
    let pid = std::process::id();
    if writer.owner.as_ref().map(|(owner, _)| *owner) != Some(pid) {
        writer.owner = start().map(|sender| (pid, sender));
    }
    let job = match &writer.owner {
        Some((_, sender)) => match sender.send(job) {
            Ok(()) => {
                writer.pending += 1;
                return;
            }
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    drop(writer);
    run(job);
}

/// Dumps submitted and not yet written.
pub fn pending() -> usize {
    WRITER.lock().pending
}

/// Waits until every submitted dump is written, or `timeout` passes. True if idle.
pub fn wait_idle(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut writer = WRITER.lock();
    while writer.pending > 0 {
        if IDLE.wait_until(&mut writer, deadline).timed_out() {
            return writer.pending == 0;
        }
    }
    true
}

fn start() -> Option<Sender<Job>> {
    let (sender, receiver) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("log_ringbuffer-writer".into())
        .spawn(move || {
            crate::triggers::block_all_signals();
            for job in receiver {
                // A panic would leave `pending` wrong forever; count the job as done regardless.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(job)));
                let mut writer = WRITER.lock();
                writer.pending = writer.pending.saturating_sub(1);
                if writer.pending == 0 {
                    IDLE.notify_all();
                }
            }
        })
        .ok()?;
    Some(sender)
}

fn run(job: Job) {
    let Job { sink, prepared, lines, reason } = job;
    sink.finish(prepared, lines, &reason);
}
