//! The dumps going into regular files right now, in a fixed table that a fatal signal's handler
//! (`crash`) reads without a lock or an allocation: the descriptor each one writes to, the span
//! of the file it may have written (`offset..end`), and the lines it took out of the ring.
//!
//! A dump enters the table before it touches its file (a plain dump when it reserves its region,
//! so a region still waiting for its writer is covered too) and leaves it when it is written or
//! has failed. Every touch of the file (reserving, writing, cutting back, renaming) happens
//! inside [`Entry::guarded`]. The handler first [`freeze`]s the table, then [`abandon_all`] waits
//! for the touches under way: from then on no dump touches its file again (a guarded call finds
//! the table frozen and fails), so the handler can cut each span off or mark it as failed and
//! append its crash dump after it. Why that holds: a guarded call stores `busy` and then loads
//! `FROZEN`; the handler stores `FROZEN` and then loads `busy`, all sequentially consistent, so
//! at least one of them sees the other.
//!
//! An abandoned entry stays the handler's until [`release_all`]: the writer that leaves it waits
//! (its lines, which the handler may be reading, are not freed meanwhile).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::os;
use crate::pure::ring::Ring;

/// Dumps that can be under way at once; one more fails at once and keeps its lines.
pub(crate) const CAPACITY: usize = 256;

/// What a dump does to its file, which says what the handler does with its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A reserved region, `offset..end`, filled in place: cut off, or marked as failed.
    Region = 1,
    /// Bytes appended from `offset` (a dump of unknown length): cut back to `offset`.
    Append = 2,
    /// Written elsewhere and renamed over the file at the end: nothing to cut.
    Replace = 3,
}

// A row's states.
const FREE: u8 = 0;
/// Taken by a writer that is filling in the fields; the handler leaves it alone.
const FILLING: u8 = 1;
const OPEN: u8 = 2;
/// The handler's until released.
const ABANDONED: u8 = 3;
const RELEASED: u8 = 4;

struct RegionRow {
    state: AtomicU8,
    /// A guarded call is under way, on thread `tid`.
    busy: AtomicBool,
    tid: AtomicI32,
    /// The process that made the entry (a forked child leaves its parent's alone).
    pid: AtomicU32,
    /// Order of entering: older batches of a sink come first in its crash dump.
    seq: AtomicU64,
    fd: AtomicI32,
    kind: AtomicU8,
    offset: AtomicU64,
    end: AtomicU64,
    /// The sink whose lines these are (its address), and how many lines it took; 0: a copy.
    owner: AtomicUsize,
    taken: AtomicUsize,
    /// The lines, once their writing has begun.
    lines: AtomicPtr<Ring>,
}

impl RegionRow {
    const fn new() -> Self {
        RegionRow {
            state: AtomicU8::new(FREE),
            busy: AtomicBool::new(false),
            tid: AtomicI32::new(0),
            pid: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            fd: AtomicI32::new(-1),
            kind: AtomicU8::new(0),
            offset: AtomicU64::new(0),
            end: AtomicU64::new(0),
            owner: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            lines: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

static SLOTS: [RegionRow; CAPACITY] = [const { RegionRow::new() }; CAPACITY];
static FROZEN: AtomicBool = AtomicBool::new(false);
static SEQ: AtomicU64 = AtomicU64::new(0);

/// One dump in the table; leaving it (drop) waits while the handler has it.
#[derive(Debug)]
pub(crate) struct Entry {
    index: usize,
}

/// The error of a touch refused because a crash is being dumped.
fn cut_off_by_crash() -> io::Error {
    io::Error::other("cut off by a fatal signal")
}

/// Enters a dump that writes to `file` as `kind`.
pub(crate) fn enter(file: &File, kind: Kind) -> io::Result<Entry> {
    let pid = std::process::id();
    for (index, slot) in SLOTS.iter().enumerate() {
        let state = slot.state.load(Ordering::SeqCst);
        // A slot of another process (this one is its forked child) has no writer here.
        let free = state == FREE || (state != FILLING && slot.pid.load(Ordering::SeqCst) != pid);
        if !free || slot.state.compare_exchange(state, FILLING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            continue;
        }
        slot.pid.store(pid, Ordering::SeqCst);
        slot.busy.store(false, Ordering::SeqCst);
        slot.seq.store(SEQ.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
        slot.fd.store(file.as_raw_fd(), Ordering::SeqCst);
        slot.kind.store(kind as u8, Ordering::SeqCst);
        slot.offset.store(0, Ordering::SeqCst);
        slot.end.store(0, Ordering::SeqCst);
        slot.owner.store(0, Ordering::SeqCst);
        slot.taken.store(0, Ordering::SeqCst);
        slot.lines.store(std::ptr::null_mut(), Ordering::SeqCst);
        slot.state.store(OPEN, Ordering::SeqCst);
        return Ok(Entry { index });
    }
    Err(io::Error::other(format!("more than {CAPACITY} dumps are waiting to be written")))
}

impl Entry {
    fn slot(&self) -> &'static RegionRow {
        &SLOTS[self.index]
    }

    /// Runs `touch` (a touch of the file) unless a crash is being dumped; the handler waits for
    /// a touch under way before it cuts.
    pub(crate) fn guarded<R>(&self, touch: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        let slot = self.slot();
        slot.tid.store(os::thread_id(), Ordering::SeqCst);
        slot.busy.store(true, Ordering::SeqCst);
        if FROZEN.load(Ordering::SeqCst) || slot.state.load(Ordering::SeqCst) != OPEN {
            slot.busy.store(false, Ordering::SeqCst);
            return Err(cut_off_by_crash());
        }
        let result = touch();
        slot.busy.store(false, Ordering::SeqCst);
        result
    }

    /// The span of the file this dump may have written, from `offset` to `end`. Call it inside
    /// [`Entry::guarded`], before the bytes are written.
    pub(crate) fn set_span(&self, offset: u64, end: u64) {
        self.slot().offset.store(offset, Ordering::SeqCst);
        self.slot().end.store(end, Ordering::SeqCst);
    }

    /// The span now reaches `end` (inside [`Entry::guarded`], before the bytes are written).
    pub(crate) fn reach(&self, end: u64) {
        self.slot().end.fetch_max(end, Ordering::SeqCst);
    }

    /// The dump's lines were taken out of the ring of the sink at `owner` (`taken` of them).
    pub(crate) fn taken(&self, owner: usize, taken: usize) {
        self.slot().owner.store(owner, Ordering::SeqCst);
        self.slot().taken.store(taken, Ordering::SeqCst);
    }

    /// The lines are being written now: the handler may read `lines` until this entry is left,
    /// so the caller keeps them alive (and unchanged) until then.
    pub(crate) fn writing(&self, lines: &Ring) {
        self.slot().lines.store(std::ptr::from_ref(lines).cast_mut(), Ordering::SeqCst);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let slot = self.slot();
        loop {
            match slot.state.compare_exchange(OPEN, FREE, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(RELEASED) => {
                    slot.state.store(FREE, Ordering::SeqCst);
                    return;
                }
                Err(ABANDONED) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => return,
            }
        }
    }
}

// ---- For the handler (`crash`): atomics only ----

/// What the handler needs of an abandoned dump.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Abandoned {
    pub(crate) fd: i32,
    pub(crate) kind: Option<Kind>,
    pub(crate) offset: u64,
    pub(crate) end: u64,
    pub(crate) owner: usize,
    pub(crate) taken: usize,
    /// Null if the writing had not begun (the dump was waiting for its writer).
    pub(crate) lines: *const Ring,
    seq: u64,
}

/// Stops every dump from touching its file from the next guarded call on.
pub(crate) fn freeze() {
    FROZEN.store(true, Ordering::SeqCst);
}

/// Takes every open entry of this process (`pid`) for the handler and waits up to `patience` in
/// all for the touches under way, except one of the calling thread (`tid`, which the signal
/// interrupted: it cannot go on). Call [`freeze`] first.
pub(crate) fn abandon_all(pid: u32, tid: i32, patience: Duration) {
    let deadline = Instant::now() + patience;
    for slot in &SLOTS {
        if slot.pid.load(Ordering::SeqCst) != pid
            || slot.state.compare_exchange(OPEN, ABANDONED, Ordering::SeqCst, Ordering::SeqCst).is_err()
        {
            continue;
        }
        while slot.busy.load(Ordering::SeqCst) && slot.tid.load(Ordering::SeqCst) != tid && Instant::now() < deadline {
            os::pause_in_handler(Duration::from_millis(1));
        }
    }
}

fn abandoned(slot: &RegionRow) -> Option<Abandoned> {
    if slot.state.load(Ordering::SeqCst) != ABANDONED {
        return None;
    }
    let kind = match slot.kind.load(Ordering::SeqCst) {
        1 => Some(Kind::Region),
        2 => Some(Kind::Append),
        3 => Some(Kind::Replace),
        _ => None,
    };
    Some(Abandoned {
        fd: slot.fd.load(Ordering::SeqCst),
        kind,
        offset: slot.offset.load(Ordering::SeqCst),
        end: slot.end.load(Ordering::SeqCst),
        owner: slot.owner.load(Ordering::SeqCst),
        taken: slot.taken.load(Ordering::SeqCst),
        lines: slot.lines.load(Ordering::SeqCst),
        seq: slot.seq.load(Ordering::SeqCst),
    })
}

/// Calls `f` with every abandoned dump, oldest first, or newest first.
pub(crate) fn for_each_abandoned(newest_first: bool, mut f: impl FnMut(&Abandoned)) {
    let mut last = None;
    loop {
        let after_last = |a: &Abandoned| last.is_none_or(|s| if newest_first { a.seq < s } else { a.seq > s });
        let candidates = SLOTS.iter().filter_map(abandoned).filter(after_last);
        let next = if newest_first { candidates.max_by_key(|a| a.seq) } else { candidates.min_by_key(|a| a.seq) };
        let Some(next) = next else { return };
        last = Some(next.seq);
        f(&next);
    }
}

/// Gives every abandoned entry back to its writer, and lets dumps touch their files again (a
/// previous handler let the process go on). The abandoned dumps stay cut off.
pub(crate) fn release_all() {
    for slot in &SLOTS {
        let _ = slot.state.compare_exchange(ABANDONED, RELEASED, Ordering::SeqCst, Ordering::SeqCst);
    }
    FROZEN.store(false, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_dir::TestDir;

    /// Runs the ignored test `name` alone in a new process: freezing or filling the table would
    /// make the dumps of tests running beside it fail.
    fn run_alone(name: &str) {
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", &format!("runtime::regions::tests::{name}"), "--ignored", "--test-threads=1"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run");
        assert!(status.success(), "{name}: {status:?}");
    }

    #[test]
    fn a_frozen_table_refuses_touches_and_the_handler_sees_the_spans() {
        run_alone("frozen_table");
    }

    #[test]
    fn a_full_table_refuses_one_more() {
        run_alone("full_table");
    }

    #[test]
    #[ignore = "run by a_frozen_table_refuses_touches_and_the_handler_sees_the_spans"]
    fn frozen_table() {
        let dir = TestDir::new("regions");
        let file = File::create(dir.file("f")).expect("create");
        let entry = enter(&file, Kind::Region).expect("entered");
        entry
            .guarded(|| {
                entry.set_span(10, 20);
                Ok(())
            })
            .expect("not frozen");
        entry.taken(0x1000, 3);
        let ring = Ring::new(crate::pure::ring::Limit::Lines(1));
        entry.writing(&ring);
        let later = enter(&file, Kind::Append).expect("entered");
        later
            .guarded(|| {
                later.set_span(20, 20);
                Ok(())
            })
            .expect("not frozen");
        later.reach(25);
        later.reach(22);

        freeze();
        abandon_all(std::process::id(), os::thread_id(), Duration::from_millis(100));
        let refused = entry.guarded(|| Ok(())).expect_err("frozen");
        assert_eq!(refused.to_string(), "cut off by a fatal signal");
        let mut seen = Vec::new();
        for_each_abandoned(false, |a| seen.push((a.kind, a.offset, a.end, a.owner, a.taken, a.lines.is_null())));
        assert_eq!(seen, [(Some(Kind::Region), 10, 20, 0x1000, 3, false), (Some(Kind::Append), 20, 25, 0, 0, true)]);
        let leaving = std::thread::spawn(move || drop(entry));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!leaving.is_finished(), "the writer waits while the handler has its entry");
        release_all();
        leaving.join().expect("left");
        drop(later);
        assert!(enter(&file, Kind::Region).expect("entered").guarded(|| Ok(())).is_ok());
    }

    #[test]
    #[ignore = "run by a_full_table_refuses_one_more"]
    fn full_table() {
        let dir = TestDir::new("regions-full");
        let file = File::create(dir.file("f")).expect("create");
        let mut held = Vec::new();
        while let Ok(entry) = enter(&file, Kind::Region) {
            held.push(entry);
        }
        assert!(held.len() <= CAPACITY);
        let err = enter(&file, Kind::Region).expect_err("full");
        assert_eq!(err.to_string(), format!("more than {CAPACITY} dumps are waiting to be written"));
        drop(held);
        assert!(enter(&file, Kind::Region).is_ok());
    }
}
