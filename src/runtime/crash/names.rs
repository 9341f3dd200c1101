//! The dump file's name for the handler: rendered when a sink is armed and after every dump
//! (the handler cannot render), kept in a fixed buffer ready for `open(2)` with where `{pid}`
//! put its digits, and given this process's PID in a forked child.

use crate::pure::date::decimal;
use crate::runtime::sink::Sink;

/// Room for a file name and its NUL byte (Linux's PATH_MAX).
pub(super) const NAME_CAP: usize = 4096;

/// Where `{pid}` may be put again in a forked child (more occurrences: the name is kept).
pub(super) const MAX_PID_SPOTS: usize = 4;

/// A dump file name, ready for `open(2)`.
pub(super) struct Name {
    /// The name, then a NUL byte.
    pub(super) bytes: [u8; NAME_CAP],
    /// The name's length without the NUL.
    pub(super) len: usize,
    /// The PID the name was rendered with, and where `{pid}` put its digits.
    pub(super) pid: u32,
    pub(super) pid_spots: [usize; MAX_PID_SPOTS],
    pub(super) pid_spot_count: usize,
}

/// A name as rendered for the handler.
#[derive(Debug, PartialEq)]
pub(super) struct Rendered {
    pub(super) text: String,
    pub(super) pid: u32,
    pub(super) pid_spots: Vec<usize>,
}

/// Renders `sink`'s dump file name for a dump from the handler, without the suffix of
/// `compress` (a dump from a signal handler cannot be compressed).
pub(super) fn render(sink: &Sink, pid: u32, count: u64, time: i64) -> Result<Rendered, String> {
    let (text, pid_positions) = sink.dump_path(pid, count, time);
    let why = if text.len() >= NAME_CAP {
        Some(format!("it is longer than {} bytes", NAME_CAP - 1))
    } else if text.contains('\0') {
        Some("it contains a NUL byte".into())
    } else {
        None
    };
    if let Some(why) = why {
        let shown: String = text.chars().take(80).collect();
        let more = if shown.len() < text.len() { "..." } else { "" };
        return Err(format!(
            "dump_on_crash: cannot dump to {shown:?}{more}: {why}; this sink is not dumped on a crash"
        ));
    }
    // More places than the name keeps (or a PID under a date filter): the name is kept.
    let pid_spots = pid_positions.filter(|spots| spots.len() <= MAX_PID_SPOTS).unwrap_or_default();
    Ok(Rendered { text, pid, pid_spots })
}

/// `name` (NUL-terminated) as this process should open it: with `pid` where `{pid}` was, if
/// the name was rendered in another process (a forked child), built in `scratch`.
pub(super) fn name_for_pid<'a>(name: &'a Name, pid: u32, scratch: &'a mut [u8]) -> Option<&'a [u8]> {
    if name.len == 0 || name.len >= NAME_CAP {
        return None;
    }
    if pid == name.pid || name.pid_spot_count == 0 {
        return name.bytes.get(..=name.len);
    }
    let mut old_digits = [0u8; 20];
    let old_len = decimal(u64::from(name.pid), &mut old_digits).len();
    let mut new_digits = [0u8; 20];
    let new = decimal(u64::from(pid), &mut new_digits);
    let mut at = 0;
    let mut from = 0;
    let mut copy = |bytes: &[u8], at: &mut usize| -> Option<()> {
        scratch.get_mut(*at..*at + bytes.len())?.copy_from_slice(bytes);
        *at += bytes.len();
        Some(())
    };
    for &spot in name.pid_spots.get(..name.pid_spot_count)? {
        copy(name.bytes.get(from..spot)?, &mut at)?;
        copy(new, &mut at)?;
        from = spot + old_len;
    }
    copy(name.bytes.get(from..=name.len)?, &mut at)?;
    scratch.get(..at)
}
