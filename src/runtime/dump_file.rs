//! Dump files: one dump is the header, the lines oldest first, the footer, appended to a file.
//!
//! Opening never blocks: a FIFO nobody reads is an error at once (`O_NONBLOCK`), not a frozen
//! main loop. New files are created with mode 0600; an existing *empty* file (such as the one
//! `prosodyctl` creates when it checks that the log files are writable) is given mode 0600 too,
//! a file with contents keeps its mode. A symlink as the last path component is refused, except
//! for `/dev/stdout`, `/dev/stderr` and `/proc/self/fd/1|2`, which mean Prosody's own output.
//!
//! In a regular file a dump first reserves and allocates its exact length at the end of the
//! file, then fills it in, so dumps sharing a file never interleave, whatever is appended
//! later lands after the dump, the filling can happen on another thread, and writing the
//! allocated bytes cannot fail for want of space. A dump that fails all the same leaves no
//! hole: its region is cut off again if nothing follows it, and otherwise filled with a line
//! saying that the dump failed and why. Pipes and devices are written in order, by their own
//! writer lane.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};

use parking_lot::Mutex;

use super::os;
use crate::pure::date::{DateFormat, DEFAULT_TIMESTAMP};
use crate::pure::ring::Ring;

/// Held while a dump's place in its file is settled (not while opening or writing).
static RESERVING: Mutex<()> = Mutex::new(());

/// Why a dump failed.
#[derive(Debug)]
pub(crate) enum DumpError {
    /// The file could not be opened.
    Open { path: String, error: io::Error },
    /// Writing failed (or the room for the dump could not be had).
    Write { path: String, error: io::Error },
    /// Shutdown had begun before this (native) dump could start; nothing was taken.
    ShuttingDown,
}

impl fmt::Display for DumpError {
    /// Worded like the Lua module's messages (`io.open`'s "<path>: <reason>").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Open { path, error } => write!(f, "Unable to open output file: {path}: {}", describe(error)),
            DumpError::Write { path, error } => write!(f, "Unable to write dump: {path}: {}", describe(error)),
            DumpError::ShuttingDown => write!(f, "Not dumping: Prosody is shutting down"),
        }
    }
}

fn describe(error: &io::Error) -> String {
    if error.raw_os_error() == Some(libc::ENXIO) {
        return "no process has this FIFO open for reading".into();
    }
    os::reason(error)
}

/// Names that mean Prosody's own standard output or error (they are symlinks on Linux).
fn standard_stream(path: &str) -> Option<io::Result<File>> {
    let fd = match path {
        "/dev/stdout" | "/proc/self/fd/1" | "/dev/fd/1" => io::stdout().as_fd().try_clone_to_owned(),
        "/dev/stderr" | "/proc/self/fd/2" | "/dev/fd/2" => io::stderr().as_fd().try_clone_to_owned(),
        _ => return None,
    };
    Some(fd.map(File::from))
}

/// Opens `path` for writing without blocking (see the module doc).
fn open(path: &str) -> io::Result<File> {
    if let Some(stream) = standard_stream(path) {
        return stream;
    }
    let mut options = OpenOptions::new();
    options.write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
    let file = match options.clone().create_new(true).mode(0o600).open(path) {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(0o600))?;
            return Ok(file);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path)?,
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() == 0 && meta.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    if !meta.is_file() {
        // Opened without blocking; written by its own lane, where blocking is fine.
        os::set_nonblocking(file.as_fd(), false)?;
    }
    Ok(file)
}

/// The dump header for a dump made at `time`.
pub(crate) fn header(time: i64) -> Vec<u8> {
    let mut stamp = Vec::new();
    if let Ok(format) = DateFormat::new(DEFAULT_TIMESTAMP) {
        format.render(time, &mut stamp);
    }
    let mut header = b"-- Dumping log buffer at ".to_vec();
    header.extend_from_slice(&stamp);
    header.extend_from_slice(b" --\n");
    header
}

pub(crate) const FOOTER: &[u8] = b"-- End of dump --\n\n";

/// Where one dump's bytes go.
#[derive(Debug)]
enum Destination {
    /// A regular file: the dump's exact length is reserved at its end.
    Region { file: File, offset: u64, len: u64 },
    /// Anything else (a pipe, a device, Prosody's stdout): written in order.
    Stream(File),
}

/// A dump whose file is open and whose place in it is settled.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) path: String,
    header: Vec<u8>,
    destination: Destination,
}

/// Opens the dump file for a dump of `text_bytes` of lines made at `time` and settles where
/// it goes. Quick: the lines themselves are written by [`Prepared::write`].
pub(crate) fn prepare(path: &str, time: i64, text_bytes: usize) -> Result<Prepared, DumpError> {
    let header = header(time);
    let file = open(path).map_err(|error| DumpError::Open { path: path.into(), error })?;
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    let destination = if regular {
        let len = (header.len() + text_bytes + FOOTER.len()) as u64;
        let offset = reserve(&file, len).map_err(|error| DumpError::Write { path: path.into(), error })?;
        Destination::Region { file, offset, len }
    } else {
        Destination::Stream(file)
    };
    Ok(Prepared { path: path.to_string(), header, destination })
}

/// Reserves and allocates `len` bytes at the end of `file`; returns where they start.
fn reserve(file: &File, len: u64) -> io::Result<u64> {
    let _serialised = RESERVING.lock();
    let offset = file.metadata()?.len();
    match os::allocate(file, offset, len) {
        Ok(()) => Ok(offset),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => file.set_len(offset + len).map(|()| offset),
        Err(e) => {
            give_back(file, offset, len);
            Err(e)
        }
    }
}

/// Cuts a reserved region off again if nothing was appended after it.
fn give_back(file: &File, offset: u64, len: u64) -> bool {
    let _serialised = RESERVING.lock();
    let untouched = file.metadata().map(|m| m.len() <= offset + len).unwrap_or(false);
    untouched && file.set_len(offset).is_ok()
}

impl Prepared {
    /// Whether the dump goes into a regular file (else a pipe or device, by path).
    pub(crate) fn is_regular_file(&self) -> bool {
        matches!(self.destination, Destination::Region { .. })
    }

    /// Writes header, lines and footer. On failure the region is cut off or marked as failed
    /// (see the module doc); a stream just stops, without the footer.
    pub(crate) fn write(self, lines: &Ring) -> Result<(), DumpError> {
        let Prepared { path, header, destination } = self;
        let result = match destination {
            Destination::Stream(file) => write_stream(file, &header, lines),
            Destination::Region { file, offset, len } => {
                let written = write_region(&file, offset, &header, lines);
                if let Err(e) = &written {
                    if !give_back(&file, offset, len) {
                        mark_failed(&file, offset, len, e);
                    }
                }
                written
            }
        };
        result.map_err(|error| DumpError::Write { path, error })
    }
}

fn write_stream(file: File, header: &[u8], lines: &Ring) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(256 * 1024, file);
    out.write_all(header)?;
    for line in lines.iter() {
        for piece in line.pieces() {
            out.write_all(piece)?;
        }
    }
    out.write_all(FOOTER)?;
    out.flush()
}

/// Writes the dump at `offset` in large pieces: lines are gathered into a buffer first.
fn write_region(file: &File, offset: u64, header: &[u8], lines: &Ring) -> io::Result<()> {
    const BUFFER: usize = 1024 * 1024;
    let mut buffer = Vec::with_capacity(BUFFER.min(header.len() + FOOTER.len() + lines.text_bytes()));
    let mut at = offset;
    let mut flush = |buffer: &mut Vec<u8>| -> io::Result<()> {
        file.write_all_at(buffer, at)?;
        at += buffer.len() as u64;
        buffer.clear();
        Ok(())
    };
    buffer.extend_from_slice(header);
    for line in lines.iter() {
        for piece in line.pieces() {
            if buffer.len() + piece.len() > BUFFER {
                flush(&mut buffer)?;
            }
            buffer.extend_from_slice(piece);
        }
    }
    buffer.extend_from_slice(FOOTER);
    flush(&mut buffer)
}

/// Fills a failed dump's region with text: a line saying that the dump failed and why, then
/// spaces up to a final newline, so the file never holds NUL bytes, nor a dump that looks whole.
/// (The smallest region, an empty dump's header and footer, holds 63 bytes.)
fn mark_failed(file: &File, offset: u64, len: u64, error: &io::Error) {
    let Ok(len) = usize::try_from(len) else { return };
    let mut record = format!("-- Dump failed: {} --\n", os::reason(error)).into_bytes();
    record.truncate(len);
    let mut at = offset;
    let mut left = len;
    let mut piece = record;
    while left > 0 {
        if piece.is_empty() {
            piece = vec![b' '; left.min(64 * 1024)];
        }
        let n = piece.len().min(left);
        if left == n {
            piece[n - 1] = b'\n';
        }
        if file.write_all_at(&piece[..n], at).is_err() {
            return;
        }
        at += n as u64;
        left -= n;
        piece.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::ring::Limit;
    use crate::runtime::test_dir::TestDir;

    /// Appends one dump of `lines` to `path`, now.
    fn write_dump(path: &str, time: i64, lines: &Ring) -> Result<(), DumpError> {
        prepare(path, time, lines.text_bytes())?.write(lines)
    }

    fn ring_of(lines: &[&str]) -> Ring {
        let mut ring = Ring::new(Limit::Lines(100));
        for line in lines {
            ring.push(line.as_bytes());
        }
        ring
    }

    #[test]
    fn writes_header_lines_footer_and_appends() {
        let dir = TestDir::new("append");
        let path = dir.file("d.log");
        write_dump(&path, 0, &ring_of(&["one\n", "two\n"])).expect("dump");
        write_dump(&path, 0, &Ring::new(Limit::Lines(1))).expect("dump");
        let text = std::fs::read_to_string(&path).expect("read");
        let h = String::from_utf8(header(0)).expect("utf8");
        assert_eq!(text, format!("{h}one\ntwo\n-- End of dump --\n\n{h}-- End of dump --\n\n"));
        assert!(h.starts_with("-- Dumping log buffer at ") && h.ends_with("  --\n"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_empty_file_gets_mode_0600_and_a_file_with_contents_keeps_its_mode() {
        let dir = TestDir::new("modes");
        let (empty, full) = (dir.file("empty.log"), dir.file("full.log"));
        std::fs::write(&empty, "").expect("create");
        std::fs::write(&full, "kept\n").expect("create");
        for path in [&empty, &full] {
            std::fs::set_permissions(path, Permissions::from_mode(0o640)).expect("chmod");
            write_dump(path, 0, &ring_of(&["x\n"])).expect("dump");
        }
        let mode = |p: &str| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!((mode(&empty), mode(&full)), (0o600, 0o640));
    }

    #[test]
    fn open_errors_read_like_io_open() {
        let err = write_dump("/nonexistent-dir/x.log", 0, &Ring::new(Limit::Lines(1))).expect_err("must fail");
        assert_eq!(err.to_string(), "Unable to open output file: /nonexistent-dir/x.log: No such file or directory");
    }

    #[test]
    fn symlinks_are_refused_but_standard_streams_are_not() {
        let dir = TestDir::new("symlink");
        let (target, link) = (dir.file("target"), dir.file("link"));
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = write_dump(&link, 0, &Ring::new(Limit::Lines(1)));
        assert!(matches!(err, Err(DumpError::Open { .. })));
        assert!(!std::path::Path::new(&target).exists());
        for path in ["/dev/stderr", "/proc/self/fd/2"] {
            assert!(prepare(path, 0, 0).expect(path).is_regular_file() == is_regular("/proc/self/fd/2"));
        }
    }

    fn is_regular(path: &str) -> bool {
        std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
    }

    #[test]
    fn a_fifo_without_reader_fails_at_once() {
        let dir = TestDir::new("fifo");
        let fifo = dir.file("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let err = prepare(&fifo, 0, 0).expect_err("no reader");
        assert_eq!(
            err.to_string(),
            format!("Unable to open output file: {fifo}: no process has this FIFO open for reading")
        );
    }

    #[test]
    fn full_disk_is_a_write_error() {
        let ring = ring_of(&[&"x".repeat(1000)]);
        assert!(matches!(write_dump("/dev/full", 0, &ring), Err(DumpError::Write { .. })));
    }

    #[test]
    fn a_failed_region_followed_by_another_dump_is_marked_not_left_as_nul_bytes() {
        let dir = TestDir::new("marked");
        let path = dir.file("d.log");
        let lines = ring_of(&["one\n", "two\n"]);
        let failing = prepare(&path, 0, lines.text_bytes()).expect("prepare");
        write_dump(&path, 0, &ring_of(&["later\n"])).expect("second dump");
        let Destination::Region { file, offset, len } = &failing.destination else { panic!("a region") };
        mark_failed(file, *offset, *len, &io::Error::from_raw_os_error(libc::EIO));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains('\0'));
        let failed_line = text.lines().next().expect("a line");
        assert_eq!(failed_line.trim_end(), "-- Dump failed: Input/output error --", "{text}");
        assert!(text.ends_with("later\n-- End of dump --\n\n"));
    }
}
