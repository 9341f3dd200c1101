//! Writing dumps off the Lua thread, and the count of dumps in flight that lets shutdown wait
//! for every one of them.
//!
//! A dump is *in flight* from the moment it is admitted (before its lines are taken) until its
//! bytes are written or it has failed. Shutdown first closes the door (native threads may not
//! start new dumps after that; the Lua thread then writes its own dumps at once), then waits
//! for the count to reach zero, so no dump is ever cut off by the exit. The one kind of dump
//! that can take unbounded time, a forward to a collector that stalls, is cut short
//! [`FORWARD_GRACE`] after shutdown begins (see [`shutdown_cut_off`]) and then writes its lines
//! to the sink's file, well within that wait.
//!
//! Writing happens on *lanes*, one thread each: every dump into a regular file goes through
//! the files lane (those writes never block for long), while each pipe or device gets a lane of
//! its own, so a FIFO nobody reads stalls only the dumps to that FIFO.
//!
//! Everything here is per process: a forked child starts with no lanes and nothing in flight.

use std::collections::HashMap;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::thread::{self, PerProcess};

/// Who asks for a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DumpOrigin {
    /// Prosody's thread (an event, the admin shell): may always dump, at once while shutting down.
    LuaThread,
    /// The native signal thread: may not start a dump once shutdown has begun.
    NativeThread,
}

/// How an admitted dump is to be written.
#[derive(Debug)]
pub(crate) enum Admission {
    /// On a lane, in the background.
    Background(InFlight),
    /// Now, on the calling thread (shutdown has begun).
    Now(InFlight),
}

/// One dump in flight; dropping it (when the dump is written or has failed) counts it done.
#[derive(Debug)]
pub(crate) struct InFlight {
    pid: u32,
}

#[derive(Default)]
struct Flights {
    count: usize,
    /// When shutdown began.
    closing_since: Option<Instant>,
}

/// How long a forward may go on once shutdown has begun; then it gives up and writes its lines
/// to the sink's file. Half of the wait for dumps in flight at exit (10 s, `lua::binding`), so
/// the file has the other half.
pub(crate) const FORWARD_GRACE: Duration = Duration::from_secs(5);

static FLIGHTS: Mutex<PerProcess<Flights>> = Mutex::new(PerProcess::new());
static LANDED: Condvar = Condvar::new();

/// Admits a dump, or refuses it (`None`) for a native thread once shutdown has begun.
pub(crate) fn admit(origin: DumpOrigin) -> Option<Admission> {
    let mut flights = FLIGHTS.lock();
    let flights = flights.get_or_try(|| Ok::<_, ()>(Flights::default())).ok()?;
    let closing = flights.closing_since.is_some();
    if closing && origin == DumpOrigin::NativeThread {
        return None;
    }
    flights.count += 1;
    let ticket = InFlight { pid: std::process::id() };
    Some(if closing { Admission::Now(ticket) } else { Admission::Background(ticket) })
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return;
        }
        let mut flights = FLIGHTS.lock();
        if let Some(flights) = flights.get() {
            flights.count = flights.count.saturating_sub(1);
            if flights.count == 0 {
                LANDED.notify_all();
            }
        }
    }
}

/// Dumps admitted and not yet written.
pub(crate) fn in_flight() -> usize {
    FLIGHTS.lock().get().map_or(0, |f| f.count)
}

/// Waits until no dump is in flight, or `timeout` passes. True if none is left.
pub(crate) fn wait_idle(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut flights = FLIGHTS.lock();
    loop {
        if flights.get().map_or(0, |f| f.count) == 0 {
            return true;
        }
        if LANDED.wait_until(&mut flights, deadline).timed_out() {
            return flights.get().map_or(0, |f| f.count) == 0;
        }
    }
}

/// Begins shutdown (see the module doc) and waits up to `timeout` for the dumps in flight.
/// True if every one was written.
pub(crate) fn shut_down(timeout: Duration) -> bool {
    if let Ok(flights) = FLIGHTS.lock().get_or_try(|| Ok::<_, ()>(Flights::default())) {
        flights.closing_since.get_or_insert_with(Instant::now);
    }
    wait_idle(timeout)
}

/// Whether shutdown has begun: a dump that fails now has no next dump to go into.
pub(crate) fn is_closing() -> bool {
    FLIGHTS.lock().get().is_some_and(|f| f.closing_since.is_some())
}

/// When forwards must give up: [`FORWARD_GRACE`] after shutdown began; `None` before.
pub(crate) fn shutdown_cut_off() -> Option<Instant> {
    FLIGHTS.lock().get().and_then(|f| f.closing_since).map(|since| since + FORWARD_GRACE)
}

/// Where a dump is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// Regular files.
    Files,
    /// One pipe or device, by path.
    Stream(String),
}

/// Work for a lane.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

static LANES: Mutex<PerProcess<HashMap<Lane, Sender<Job>>>> = Mutex::new(PerProcess::new());

/// Runs `job` on `lane`'s thread (started if needed); on the calling thread if no thread can
/// be started.
/// (`LANES` is let go before the job runs: a job takes the dump path's locks.)
pub(crate) fn submit(lane: Lane, job: Job) {
    match lane_sender(lane) {
        Some(sender) => {
            if let Err(mpsc::SendError(job)) = sender.send(job) {
                job();
            }
        }
        None => job(),
    }
}

/// The sender of `lane`'s thread, started if needed; `None` if no thread can be started.
fn lane_sender(lane: Lane) -> Option<Sender<Job>> {
    let mut lanes = LANES.lock();
    let lanes = lanes.get_or_try(|| Ok::<_, ()>(HashMap::new())).ok()?;
    match lanes.get(&lane) {
        Some(sender) => Some(sender.clone()),
        None => Some(lanes.entry(lane.clone()).or_insert(start_lane(&lane)?).clone()),
    }
}

fn start_lane(lane: &Lane) -> Option<Sender<Job>> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let name = match lane {
        Lane::Files => "log_ringbuffer-writer",
        Lane::Stream(_) => "log_ringbuffer-stream",
    };
    thread::spawn_worker(name, receiver, |job: Job| job()).ok()?;
    Some(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_stuck_lane_does_not_hold_up_another() {
        let release = Arc::new(AtomicBool::new(false));
        let stuck = Arc::clone(&release);
        let Some(Admission::Background(first)) = admit(DumpOrigin::LuaThread) else { panic!("admitted") };
        submit(
            Lane::Stream("/test/stuck".into()),
            Box::new(move || {
                while !stuck.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                drop(first);
            }),
        );
        let (done, landed) = mpsc::channel();
        submit(Lane::Files, Box::new(move || done.send(()).unwrap_or(())));
        assert!(landed.recv_timeout(Duration::from_secs(5)).is_ok(), "files lane went on");
        assert!(!wait_idle(Duration::from_millis(50)), "the stuck dump is still in flight");
        release.store(true, Ordering::Release);
        assert!(wait_idle(Duration::from_secs(5)));
    }

    /// Run alone (single-threaded, so `fork` is safe) by `a_forked_child_has_nothing_in_flight`.
    #[test]
    #[ignore = "run by a_forked_child_has_nothing_in_flight"]
    fn fork_child_starts_with_nothing_in_flight() {
        let Some(Admission::Background(flight)) = admit(DumpOrigin::LuaThread) else { panic!("admitted") };
        assert_eq!(in_flight(), 1);
        // SAFETY: this test runs alone in its process (see the caller), so no lock is held by
        // another thread at the fork; the child only reads per-process state and exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let clean = in_flight() == 0 && wait_idle(Duration::ZERO);
            // SAFETY: _exit ends the child at once, without running the parent's destructors.
            unsafe { libc::_exit(if clean { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is a local.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child saw a dump in flight");
        drop(flight);
        assert_eq!(in_flight(), 0);
    }

    #[test]
    fn a_forked_child_has_nothing_in_flight() {
        let test = "runtime::writer::tests::fork_child_starts_with_nothing_in_flight";
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--ignored", "--test-threads=1"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run");
        assert!(status.success());
    }
}
