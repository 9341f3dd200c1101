//! Dumps being written into regular files when the crash comes (see `regions`): stopped and
//! taken off their files (cut off, or filled with a failure line and spaces) before the crash
//! dump is appended, and the lines they had taken out of the ring written first in it.
//! Async-signal-safe.

use std::os::raw::c_int;
use std::time::Duration;

use super::output::{errno, write_lines, Out};
use crate::pure::date::decimal;
use crate::runtime::os;
use crate::runtime::regions::{self, Abandoned, Kind};
use crate::runtime::shared_ring::CrashView;

/// How long the ring's lock is tried, and the owner waited for (see `read_in_crash`).
pub(super) const PATIENCE: Duration = Duration::from_millis(500);

/// Stops the dumps of process `pid` being written into regular files and takes each off its
/// file (see the module doc). `spaces`: a buffer to fill with spaces.
pub(super) fn stop_dumps_in_flight(pid: u32, spaces: &mut [u8]) {
    regions::freeze();
    regions::abandon_all(pid, os::thread_id(), PATIENCE);
    // Newest first: a region cut off leaves the one before it last in its file, to be cut too.
    regions::for_each_abandoned(true, |dump| cut_off(dump, spaces));
}

/// The line a region cut off by a crash begins with (then spaces, as `dump_file` marks a
/// failed dump).
const CUT_OFF: &[u8] = b"-- Dump failed: cut off by a fatal signal --\n";

/// Takes a dump that was being written off its file, so that what follows is whole text and
/// the crash dump can be appended: a span with nothing after it is cut off; a region with
/// something after it (another dump's region) is filled with [`CUT_OFF`] and spaces up to a
/// final newline, never NUL bytes; an append followed by something else is left (it cannot be
/// told apart). `spaces`: a buffer to fill with spaces.
fn cut_off(dump: &Abandoned, spaces: &mut [u8]) {
    let Some(kind @ (Kind::Region | Kind::Append)) = dump.kind else { return };
    let (Ok(offset), Ok(end)) = (libc::off_t::try_from(dump.offset), libc::off_t::try_from(dump.end)) else {
        return;
    };
    // SAFETY: fstat and ftruncate are async-signal-safe; the descriptor stays open while the
    // dump is abandoned (its writer waits for `regions::release_all` before it closes it); the
    // stat buffer is a zeroed local.
    let size = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(dump.fd, &mut stat) != 0 {
            return;
        }
        if stat.st_size <= end {
            libc::ftruncate(dump.fd, offset);
            return;
        }
        stat.st_size
    };
    if kind != Kind::Region || size <= offset || end <= offset || spaces.is_empty() {
        return;
    }
    let head = &CUT_OFF[..CUT_OFF.len().min((end - offset) as usize)];
    let mut at = offset;
    if !write_at(dump.fd, head, at) {
        return;
    }
    at += head.len() as libc::off_t;
    spaces.fill(b' ');
    while at < end {
        let n = spaces.len().min((end - at) as usize);
        if !write_at(dump.fd, &spaces[..n], at) {
            return;
        }
        at += n as libc::off_t;
    }
    write_at(dump.fd, b"\n", end - 1);
}

/// Writes all of `bytes` at `at` of `fd`.
fn write_at(fd: c_int, mut bytes: &[u8], mut at: libc::off_t) -> bool {
    while !bytes.is_empty() {
        // SAFETY: pwrite is async-signal-safe and reads `bytes.len()` bytes of the slice.
        let n = unsafe { libc::pwrite(fd, bytes.as_ptr().cast(), bytes.len(), at) };
        if n > 0 {
            bytes = &bytes[n as usize..];
            at += n as libc::off_t;
        } else if !(n < 0 && errno() == libc::EINTR) {
            return false;
        }
    }
    true
}

/// Writes the lines the dumps of `owner` that a crash cut off had taken out of its ring, oldest
/// first, each after a line that says so; a dump that had not begun writing says how many lines
/// it took (they cannot be reached).
pub(super) fn write_abandoned_lines(out: &mut Out<'_>, owner: usize, cutoff: Option<u32>) -> CrashView {
    let mut view = CrashView::Whole;
    let mut digits = [0u8; 20];
    regions::for_each_abandoned(false, |dump| {
        if dump.owner != owner || dump.taken == 0 {
            return;
        }
        // SAFETY: the lines stay alive and unchanged while the dump is abandoned: its writer
        // keeps them until it has left `regions`, which waits for `regions::release_all`.
        match unsafe { dump.lines.as_ref() } {
            Some(ring) => {
                out.put(b"-- The next ");
                out.put(decimal(ring.lines() as u64, &mut digits));
                out.put(b" lines were being dumped when the crash came: that dump was cut off --\n");
                if write_lines(out, ring, CrashView::Whole, cutoff) == CrashView::MayBeIncomplete {
                    view = CrashView::MayBeIncomplete;
                }
            }
            None => {
                out.put(b"-- ");
                out.put(decimal(dump.taken as u64, &mut digits));
                out.put(b" lines taken for a dump that was waiting to be written are missing --\n");
            }
        }
    });
    view
}
