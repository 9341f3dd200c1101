//! Dump writing: one dump is the header, the lines oldest first, the footer, appended to a file.
//!
//! Files are created with mode 0600, and a symlink as the final path component is refused.
//! A dump first reserves its exact length at the end of the file (under a process-wide lock),
//! then fills it in, so dumps sharing a file never interleave, and the filling can happen on
//! another thread while later appends still land after the dump.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::format::DateFormat;
use crate::ring::Ring;

/// The timestamp format of the dump header (and of the default line timestamps).
pub const DEFAULT_TIMESTAMP: &str = "%b %d %H:%M:%S ";

/// `{count}`: dump attempts of the whole process, starting at 0.
static DUMP_COUNT: AtomicU64 = AtomicU64::new(0);

/// Held while a dump's place in its file is settled.
static DUMP_LOCK: Mutex<()> = Mutex::new(());

/// Takes the next `{count}` value.
pub fn next_count() -> u64 {
    DUMP_COUNT.fetch_add(1, Ordering::Relaxed)
}

/// Why a dump failed, worded for Prosody's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpError {
    /// The file could not be opened: `"<path>: <reason>"`, as Lua's `io.open` words it.
    Open(String),
    /// Writing failed part way: path and reason.
    Write(String),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Open(why) => write!(f, "Unable to open output file: {why}"),
            DumpError::Write(why) => write!(f, "Unable to write dump: {why}"),
        }
    }
}

/// The C library's text for an OS error, without Rust's "(os error N)" suffix.
pub fn os_reason(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    // SAFETY: strerror returns a pointer to a static or thread-local NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) };
    text.to_string_lossy().into_owned()
}

/// Opens `path` for writing, creating it with mode 0600 whatever the umask (an existing file
/// keeps its mode). A symlink as the last component is refused (O_NOFOLLOW).
fn open(path: &str) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    match options.clone().create_new(true).mode(0o600).open(path) {
        Ok(file) => {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path),
        Err(e) => Err(e),
    }
}

/// The dump header for a dump made at `time`.
pub fn header(time: i64) -> Vec<u8> {
    let mut stamp = Vec::new();
    if let Ok(format) = DateFormat::new(DEFAULT_TIMESTAMP) {
        format.render(time, &mut stamp);
    }
    let mut header = b"-- Dumping log buffer at ".to_vec();
    header.extend_from_slice(&stamp);
    header.extend_from_slice(b" --\n");
    header
}

pub const FOOTER: &[u8] = b"-- End of dump --\n\n";

/// Where one dump's bytes go.
#[derive(Debug)]
enum Destination {
    /// A regular file: the dump's exact length is reserved at its end, so whatever is appended
    /// later (another dump, mod_debug_traceback's traceback) lands after it, and the bytes can
    /// be written later, from another thread.
    Region { file: File, offset: u64, len: u64 },
    /// Anything else (a pipe, a device): written in order, at once.
    Stream(File),
}

/// A dump whose file is open and whose place in it is settled.
#[derive(Debug)]
pub struct Prepared {
    pub path: String,
    header: Vec<u8>,
    destination: Destination,
}

impl Prepared {
    /// Whether writing may be left to another thread without changing the file's order.
    pub fn is_region(&self) -> bool {
        matches!(self.destination, Destination::Region { .. })
    }

    /// Writes header, lines and footer. On failure the reserved space is given back if nothing
    /// was appended after it; otherwise the dump stays without its footer (visibly incomplete).
    pub fn write(self, lines: &Ring) -> Result<(), DumpError> {
        let path = self.path;
        let failed = |e: io::Error| DumpError::Write(format!("{path}: {}", os_reason(&e)));
        match self.destination {
            Destination::Stream(file) => {
                let mut out = io::BufWriter::with_capacity(256 * 1024, file);
                out.write_all(&self.header).map_err(failed)?;
                for line in lines.iter() {
                    for piece in line.pieces() {
                        out.write_all(piece).map_err(failed)?;
                    }
                }
                out.write_all(FOOTER).map_err(failed)?;
                out.flush().map_err(failed)
            }
            Destination::Region { file, offset, len } => {
                let written = write_region(&file, offset, &self.header, lines);
                if let Err(e) = written {
                    if file.metadata().map(|m| m.len() == offset + len).unwrap_or(false) {
                        let _ = file.set_len(offset);
                    }
                    return Err(failed(e));
                }
                Ok(())
            }
        }
    }
}

/// Writes the dump at `offset` in large pieces: lines are gathered into a buffer first.
fn write_region(file: &File, offset: u64, header: &[u8], lines: &Ring) -> io::Result<()> {
    const BUFFER: usize = 1024 * 1024;
    let mut buffer = Vec::with_capacity(BUFFER);
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

/// Opens the dump file for a dump of `text_bytes` of lines made at `time` and settles where
/// it goes. Quick: the lines themselves are written by [`Prepared::write`].
pub fn prepare(path: &str, time: i64, text_bytes: usize) -> Result<Prepared, DumpError> {
    let header = header(time);
    let open_failed = |e: io::Error| DumpError::Open(format!("{path}: {}", os_reason(&e)));
    let _serialised = DUMP_LOCK.lock();
    let file = open(path).map_err(open_failed)?;
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    let destination = if regular {
        let len = (header.len() + text_bytes + FOOTER.len()) as u64;
        let offset = file.metadata().map_err(open_failed)?.len();
        file.set_len(offset + len).map_err(open_failed)?;
        Destination::Region { file, offset, len }
    } else {
        Destination::Stream(file)
    };
    Ok(Prepared { path: path.to_string(), header, destination })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends one dump of `lines` to `path`, now.
    fn write_dump(path: &str, time: i64, lines: &Ring) -> Result<(), DumpError> {
        prepare(path, time, lines.text_bytes())?.write(lines)
    }
    use crate::ring::Limit;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lrb-dump-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn writes_header_lines_footer_and_appends() {
        let dir = temp_dir("append");
        let path = dir.join("d.log");
        let path = path.to_str().expect("utf8 path");
        let mut ring = Ring::new(Limit::Lines(10));
        ring.push(b"one\n");
        ring.push(b"two\n");
        write_dump(path, 0, &ring).expect("dump");
        write_dump(path, 0, &Ring::new(Limit::Lines(1))).expect("dump");
        let text = std::fs::read_to_string(path).expect("read");
        let h = String::from_utf8(header(0)).expect("utf8");
        assert_eq!(text, format!("{h}one\ntwo\n-- End of dump --\n\n{h}-- End of dump --\n\n"));
        assert!(h.starts_with("-- Dumping log buffer at ") && h.ends_with("  --\n"));
        let mode = std::fs::metadata(path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn open_errors_read_like_io_open() {
        let err = write_dump("/nonexistent-dir/x.log", 0, &Ring::new(Limit::Lines(1))).expect_err("must fail");
        assert_eq!(err.to_string(), "Unable to open output file: /nonexistent-dir/x.log: No such file or directory");
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = temp_dir("symlink");
        let target = dir.join("target");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = write_dump(link.to_str().expect("utf8"), 0, &Ring::new(Limit::Lines(1)));
        assert!(matches!(err, Err(DumpError::Open(_))));
        assert!(!target.exists());
    }

    #[test]
    fn full_disk_is_a_write_error() {
        let mut ring = Ring::new(Limit::Lines(10));
        ring.push(&[b'x'; 1000]);
        assert!(matches!(write_dump("/dev/full", 0, &ring), Err(DumpError::Write(_))));
    }
}
