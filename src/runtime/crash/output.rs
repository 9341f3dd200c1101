//! What the handler writes, and where: the dump file opened as the normal dumps open it
//! (`CrashFile`), a fixed buffer written out when full (`Out`), and one dump: the header, the
//! lines, the `-- may be incomplete --` marker, the signal and the footer. Async-signal-safe:
//! nothing here allocates or locks.

use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::pure::date::{decimal, header_stamp};
use crate::pure::records::FOOTER;
use crate::pure::ring::Ring;
use crate::runtime::shared_ring::CrashView;

/// The lines are written in pieces this large (a default 100 KiB ring in one `write`).
pub(super) const OUT_CAP: usize = 1 << 20;

const INCOMPLETE: &[u8] = b"-- may be incomplete --\n";

pub(super) fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Prosody's own standard output or error, by the names `dump_file` knows them by.
fn standard_stream(name: &[u8]) -> Option<c_int> {
    match name {
        b"/dev/stdout" | b"/proc/self/fd/1" | b"/dev/fd/1" => Some(1),
        b"/dev/stderr" | b"/proc/self/fd/2" | b"/dev/fd/2" => Some(2),
        _ => None,
    }
}

/// A dump file opened by the handler.
pub(super) struct CrashFile {
    pub(super) fd: c_int,
    pub(super) close: bool,
}

impl CrashFile {
    /// Opens `path` (NUL-terminated) as the normal dumps do: appending, without following a
    /// symlink or blocking on a FIFO; a new or empty file gets mode 0600; a pipe or device is
    /// then written blocking (the watchdog bounds that).
    pub(super) fn open(path: &[u8]) -> Option<CrashFile> {
        let (&0, name) = path.split_last()? else { return None };
        if let Some(fd) = standard_stream(name) {
            return Some(CrashFile { fd, close: false });
        }
        let flags =
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: open, fstat, fchmod and fcntl are async-signal-safe; `path` ends with a NUL
        // byte (checked above) and the stat buffer is a zeroed local.
        unsafe {
            let fd = libc::open(path.as_ptr().cast::<c_char>(), flags, 0o600 as libc::c_uint);
            if fd < 0 {
                return None;
            }
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut stat) == 0 {
                if stat.st_mode & libc::S_IFMT == libc::S_IFREG {
                    if stat.st_size == 0 && stat.st_mode & 0o777 != 0o600 {
                        libc::fchmod(fd, 0o600);
                    }
                } else {
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                    }
                }
            }
            Some(CrashFile { fd, close: true })
        }
    }
}

impl Drop for CrashFile {
    fn drop(&mut self) {
        if self.close {
            // SAFETY: close is async-signal-safe; the descriptor is ours.
            unsafe { libc::close(self.fd) };
        }
    }
}

/// Bytes gathered into a fixed buffer and written to a descriptor when it is full.
pub(super) struct Out<'a> {
    fd: c_int,
    buf: &'a mut [u8],
    len: usize,
    failed: bool,
}

impl<'a> Out<'a> {
    pub(super) fn new(fd: c_int, buf: &'a mut [u8]) -> Self {
        debug_assert!(!buf.is_empty());
        Out { fd, buf, len: 0, failed: false }
    }

    pub(super) fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.failed {
            if self.len == self.buf.len() {
                self.flush();
                continue;
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }

    /// Writes what is gathered; false once anything failed.
    fn flush(&mut self) -> bool {
        let mut left = &self.buf[..self.len];
        while !left.is_empty() && !self.failed {
            // SAFETY: write is async-signal-safe and reads `left.len()` bytes of the buffer.
            let n = unsafe { libc::write(self.fd, left.as_ptr().cast(), left.len()) };
            if n > 0 {
                left = &left[n as usize..];
            } else if n < 0 && errno() == libc::EINTR {
                continue;
            } else {
                self.failed = true;
            }
        }
        self.len = 0;
        !self.failed
    }
}

/// Who sent the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sender {
    /// The kernel: a fault.
    Kernel,
    /// This process (`abort()`, `raise`, `kill` of itself).
    ThisProcess,
    /// Another process (`kill`, a supervisor's watchdog).
    Process(i32),
}

/// The crash being dumped.
pub(super) struct Crash {
    pub(super) signal_name: &'static str,
    pub(super) sender: Sender,
    /// Unix time, and the local time's offset from UTC.
    pub(super) time: i64,
    pub(super) utc_offset: i64,
}

/// One dump: the header, the lines `lines` writes (it says how far they can be trusted), the
/// marker if they cannot, the signal, the footer.
pub(super) fn write_dump(out: &mut Out<'_>, crash: &Crash, lines: impl FnOnce(&mut Out<'_>) -> CrashView) -> bool {
    out.put(b"-- Dumping log buffer at ");
    out.put(&header_stamp(crash.time.saturating_add(crash.utc_offset)));
    out.put(b"  --\n");
    if lines(out) == CrashView::MayBeIncomplete {
        out.put(INCOMPLETE);
    }
    out.put(b"-- Fatal signal ");
    out.put(crash.signal_name.as_bytes());
    let mut digits = [0u8; 20];
    match crash.sender {
        Sender::Kernel => {}
        Sender::ThisProcess => out.put(b", raised by this process"),
        Sender::Process(pid) => {
            out.put(b", sent by PID ");
            out.put(decimal(u64::try_from(pid).unwrap_or(0), &mut digits));
        }
    }
    out.put(b" --\n");
    out.put(FOOTER);
    out.flush()
}

/// Writes the ring's lines, oldest first, leaving out those logged before `cutoff`
/// (`max_age`). A torn ring's bytes may be anything: NUL bytes are written as U+2400, and a
/// panic while walking it ends the lines.
pub(super) fn write_lines(out: &mut Out<'_>, ring: &Ring, view: CrashView, cutoff: Option<u32>) -> CrashView {
    let torn = view == CrashView::MayBeIncomplete;
    let walked = catch_unwind(AssertUnwindSafe(|| {
        for line in ring.iter() {
            if out.failed {
                return;
            }
            if cutoff.is_some_and(|cutoff| line.meta.time < cutoff) {
                continue;
            }
            for piece in line.pieces() {
                if torn {
                    for (i, part) in piece.split(|&b| b == 0).enumerate() {
                        if i > 0 {
                            out.put("\u{2400}".as_bytes());
                        }
                        out.put(part);
                    }
                } else {
                    out.put(piece);
                }
            }
        }
    }));
    if walked.is_ok() {
        view
    } else {
        CrashView::MayBeIncomplete
    }
}
