//! The runtime: threads, files and process state around the pure core. `unsafe` here is
//! confined to `os` (the system calls the standard library lacks), `shared_ring` (the lock) and
//! `crash` (the async-signal-safe dump from a fatal signal's handler).
//!
//! # Lock order
//!
//! Every lock of the runtime and the binding, and which may be taken while holding which. A
//! lock may only be taken while holding locks listed *above* it here, never one listed below it
//! or itself (no lock is re-entrant: a thread taking a lock it holds waits for ever). Most are
//! leaves: nothing at all is taken while holding them.
//!
//! 1. `auto_dump::TIMER` (the timer thread's sender): held while scheduling; may take 2 and 11
//!    (a schedule that fails marks the trigger and reports it).
//! 2. `level_trigger::LevelTrigger::state` (per sink): taken alone, or, when a reload hands an open
//!    window over, a predecessor's and then its successor's (never the other way round, and a
//!    sink never adopts itself); nothing else is taken while holding it.
//! 3. `signals::NATIVE` (watched signals, the signal pipe): leaf; the dumps a signal starts run
//!    after it is let go. Likewise `stop_signal::STATE` (the stop signals watched, the decision
//!    whether the main loop is hung): leaf; its dumps run after it is let go.
//! 4. `crash::arming::STATE` (the sinks armed for `dump_on_crash`): leaf. (The fatal signal's
//!    handler only ever *tries* a lock, see `shared_ring`; the table of dumps in flight it cuts
//!    off, `regions`, has no lock at all.)
//! 5. `writer::LANES`: leaf; a job is sent, or run inline, after it is let go.
//! 6. `dump_file::APPENDING` (appends of unknown length, one at a time): may take 7.
//! 7. `dump_file::RESERVING` (settling or giving back the end of a file): leaf; taken only
//!    through `dump_file::Settling`, whose guard the giving back needs, so it cannot be taken
//!    again by the thread holding it.
//! 8. `sink::Sink::queued_forward` (per sink: the one forward waiting behind a running one):
//!    may take 9 (its lines go back into the ring).
//! 9. `shared_ring::SharedRing::lock` (per sink: taking lines, giving them back, a snapshot):
//!    may take 10 (a failed dump's lines go to the sink a reload made in its place). A
//!    persisted sink's journal lives under this same lock (`persist`: no lock of its own).
//! 10. `sink::Sink::successor` (per sink): leaf.
//! 11. Leaves that guard one value each: `sink::Sink::outcomes`, `reports::REPORTS`,
//!     `dumped::WAITING`,
//!     `inspect::Pending`'s answer slot, a follower's outbox (`follow::Shared`; its thread takes
//!     9 for a snapshot only while not holding it), `dump_ledger::LEDGER` (an unlink runs under it, nothing
//!     else), `writer::FLIGHTS` (with the `LANDED` condition variable), `lua_traceback::DESK`
//!     (with the `ANSWERED` condition variable; the requester it calls only sends a signal),
//!     `stall::WATCHDOG` (the dumps it starts and the traceback it waits for come after it is
//!     let go).
//!
//! Waiting that is not a lock follows the same rule: no thread waits for dumps (`writer::
//! wait_idle`, `shut_down`), for the timer thread (`auto_dump::flush`) or for a shell answer
//! while holding any lock, and a dump's `InFlight` is dropped (which takes `FLIGHTS`) with no
//! lock held. So a dump that fails, however it fails, holds nothing once its error is returned,
//! and shutdown's wait never depends on a lock.
//!
//! The tests check the order as they run: parking_lot's deadlock detector is on in test builds,
//! and tests of the dump path's faults run under `lock_watch`, which fails a test whose threads
//! wait on locks in a cycle.

pub(crate) mod auto_dump;
pub(crate) mod crash;
pub(crate) mod dump_count;
pub(crate) mod dump_file;
pub(crate) mod dump_ledger;
pub(crate) mod dumped;
pub(crate) mod follow;
pub(crate) mod forward;
pub(crate) mod heartbeat;
pub(crate) mod inspect;
pub(crate) mod level_trigger;
#[cfg(test)]
pub(crate) mod lock_watch;
pub(crate) mod lua_traceback;
pub(crate) mod os;
pub(crate) mod persist;
pub(crate) mod places;
pub(crate) mod redact_key;
pub(crate) mod regions;
pub(crate) mod reports;
pub(crate) mod retention;
pub(crate) mod shared_ring;
pub(crate) mod signals;
pub(crate) mod sink;
pub(crate) mod stall;
pub(crate) mod stop_signal;
#[cfg(test)]
pub(crate) mod test_dir;
#[cfg(test)]
pub(crate) mod test_process;
pub(crate) mod thread;
pub(crate) mod writer;
