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
//!
//! A compressed dump (`compress`) cannot reserve its region, since its length is known only
//! once it is written. Into a regular file it is written whole or not at all: the file's bytes
//! so far, then the dump as one gzip member or zstd frame, go to a hidden file beside it
//! (`.<name>.<pid>.part`, mode 0600), which is synced and renamed over it. So the file is never
//! seen with a broken member, whatever stops the dump (a failure, a crash, `kill -9`), and it
//! decompresses to the dumps one after the other. A hidden file left by a process that died is
//! deleted by the next compressed dump to the same file. Compressed dumps into regular files
//! are written one at a time, through an encoder with fixed buffers whatever the dump's size;
//! into a pipe or device they are written in order like a stream.
//!
//! Every dump into a regular file is entered in `regions` while it may touch the file, so that a
//! fatal signal's handler can cut it off before it appends the crash dump (see `crash`).
//!
//! A `json` or `rfc5424` dump (see `records`) has no length known in advance either:
//! uncompressed, it is appended at the end of a regular file, one at a time; one that fails is
//! cut back to the file's length before it.
//!
//! A dump that fails (no space left, a read-only file system, a file-size limit, a file that
//! cannot hold a dump such as `/proc/self/mem`) is an error for the caller, who keeps the
//! lines: its room is cut off again or marked as above, no lock stays held (see the lock order
//! in `runtime`), and a file-size limit's SIGXFSZ, which would kill Prosody, is ignored from
//! the first dump into a regular file on (see `os`).

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};

use parking_lot::{Mutex, MutexGuard};

use super::os;
use super::regions::{self, Entry, Kind};
use crate::pure::options::Compression;
use crate::pure::records::{self, Format, Framing, Wire};
use crate::pure::ring::Ring;

/// Held while a dump's place in its file is settled or given back (not while opening or
/// writing). Only taken through [`Settling::begin`], whose guard is what the work done under it
/// needs, so it is never taken again by the thread holding it (see the lock order in `runtime`).
static RESERVING: Mutex<()> = Mutex::new(());

/// Held while a dump of unknown length (compressed, or formatted) is written into a regular
/// file, so that two of them (the files lane's and one written at once during shutdown) never
/// interleave. Taken before [`RESERVING`], never while holding it.
static APPENDING: Mutex<()> = Mutex::new(());

/// zstd's level: its default, several hundred MB/s of log text.
const ZSTD_LEVEL: i32 = 3;
/// gzip's level: the fastest (7 times level 6's speed for 1.4 times its size, see `make bench`).
const GZIP_LEVEL: u32 = 1;
/// Lines are gathered into pieces this large before they are compressed, and the compressed
/// bytes into pieces this large before they are written.
const COMPRESS_BUFFER: usize = 256 * 1024;

/// Why a dump failed.
#[derive(Debug)]
pub(crate) enum DumpError {
    /// The file could not be opened.
    Open { path: String, error: io::Error },
    /// Writing failed (or the room for the dump could not be had).
    Write { path: String, error: io::Error },
    /// Shutdown had begun before this (native) dump could start; nothing was taken.
    ShuttingDown,
    /// The collector of `forward` did not get the whole dump.
    Forward { target: String, id: String, error: io::Error },
}

impl fmt::Display for DumpError {
    /// Worded like the Lua module's messages (`io.open`'s "<path>: <reason>").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Open { path, error } => write!(f, "Unable to open output file: {path}: {}", describe(error)),
            DumpError::Write { path, error } => write!(f, "Unable to write dump: {path}: {}", describe(error)),
            DumpError::ShuttingDown => write!(f, "Not dumping: Prosody is shutting down"),
            DumpError::Forward { target, id, error } => {
                write!(f, "Could not forward dump {id} to {target}: {}", super::forward::describe(error))
            }
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
    settle_blocking(&file, &meta)?;
    Ok(file)
}

/// A pipe or device, opened without blocking, is written by its own lane, where blocking is fine.
fn settle_blocking(file: &File, meta: &std::fs::Metadata) -> io::Result<()> {
    if meta.is_file() {
        Ok(())
    } else {
        os::set_nonblocking(file.as_fd(), false)
    }
}

/// Where a compressed dump to `path` goes: a pipe or device to write to, or a regular file to
/// replace (whether it exists or not: read when the dump is written). Creates nothing.
fn open_for_compressed(path: &str, codec: Compression) -> io::Result<Destination> {
    let stream_of = |file| Destination::Appended { file, codec: Some(codec), regular: false };
    if let Some(stream) = standard_stream(path) {
        return stream.map(stream_of);
    }
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let file = match OpenOptions::new().write(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let folder = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty());
            std::fs::metadata(folder.unwrap_or(std::path::Path::new(".")))?;
            return Ok(Destination::Whole { codec });
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        settle_blocking(&file, &meta)?;
        return Ok(stream_of(file));
    }
    Ok(Destination::Whole { codec })
}

/// Where one dump's bytes go.
#[derive(Debug)]
enum Destination {
    /// A regular file: the dump's exact length is reserved at its end.
    /// (`entry` first: it is dropped, and left, before the file is closed.)
    Region { entry: Entry, file: File, offset: u64, len: u64 },
    /// Anything else (a pipe, a device, Prosody's stdout): written in order.
    Stream(File),
    /// A dump of unknown length (compressed, or not plain), written in order; `regular`: into a
    /// regular file, at its end (see the module doc).
    Appended { file: File, codec: Option<Compression>, regular: bool },
    /// A compressed dump into a regular file (or none yet), replacing it whole.
    Whole { codec: Compression },
}

/// A dump whose file is open and whose place in it is settled.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) path: String,
    framing: Framing,
    destination: Destination,
    /// The sink (its address) whose ring the lines were taken from, and how many (see
    /// [`Prepared::taken_from`]).
    taken: Option<(usize, usize)>,
}

/// Opens the dump file for a dump of `text_bytes` of lines made at `time` and settles where
/// it goes; `notes` follow the header. Quick: the lines themselves are written by
/// [`Prepared::write`]. (Sinks use [`prepare_as`].)
#[cfg(test)]
pub(crate) fn prepare(path: &str, time: i64, text_bytes: usize, notes: &[&str]) -> Result<Prepared, DumpError> {
    prepare_as(path, tests::plain(time, notes), text_bytes, None)
}

/// Opens the dump file for the dump `framing` describes, of `text_bytes` of lines, compressed
/// with `compress` (`path` is the name with its suffix), and settles where it goes.
pub(crate) fn prepare_as(
    path: &str,
    framing: Framing,
    text_bytes: usize,
    compress: Option<Compression>,
) -> Result<Prepared, DumpError> {
    let open_error = |error| DumpError::Open { path: path.into(), error };
    let write_error = |error| DumpError::Write { path: path.into(), error };
    if let Some(codec) = compress {
        os::ignore_file_size_signal(); // written into a regular (hidden) file: see below
        let destination = open_for_compressed(path, codec).map_err(open_error)?;
        return Ok(Prepared { path: path.to_string(), framing, destination, taken: None });
    }
    let file = open(path).map_err(open_error)?;
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if regular {
        // Past a file-size limit the dump fails (EFBIG) instead of killing Prosody (see `os`).
        os::ignore_file_size_signal();
    }
    let destination = if regular && framing.format != Format::Plain {
        Destination::Appended { file, codec: None, regular }
    } else if regular {
        let len = records::plain_len(&framing, text_bytes) as u64;
        let (entry, offset) = reserve_entered(&file, len).map_err(write_error)?;
        Destination::Region { entry, file, offset, len }
    } else {
        Destination::Stream(file)
    };
    Ok(Prepared { path: path.to_string(), framing, destination, taken: None })
}

/// Appends `text`, which follows a dump (the Lua traceback after a `dump_on_stall` dump, see
/// `stall`), to the file at `path`, opened as dumps are. In a regular file its room is
/// reserved like a dump's, so it never mixes with one; room that cannot be written is cut off
/// again if nothing follows it.
pub(crate) fn append_text(path: &str, text: &[u8]) -> Result<(), DumpError> {
    let write_error = |error| DumpError::Write { path: path.into(), error };
    let file = open(path).map_err(|error| DumpError::Open { path: path.into(), error })?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return (&file).write_all(text).map_err(write_error);
    }
    os::ignore_file_size_signal();
    let len = text.len() as u64;
    let (entry, offset) = reserve_entered(&file, len).map_err(write_error)?;
    let written = entry.guarded(|| file.write_all_at(text, offset));
    if written.is_err() {
        let _ = entry.guarded(|| Ok(Settling::begin().give_back(&file, offset, len)));
    }
    written.map_err(write_error)
}

/// Enters the dump in `regions` and reserves its region there (see `regions`).
fn reserve_entered(file: &File, len: u64) -> io::Result<(Entry, u64)> {
    let entry = regions::enter(file, Kind::Region)?;
    let offset = entry.guarded(|| {
        let offset = reserve(file, len)?;
        entry.set_span(offset, offset + len);
        Ok(offset)
    })?;
    Ok((entry, offset))
}

/// Reserves and allocates `len` bytes at the end of `file`; returns where they start. On
/// failure nothing is left reserved: what the allocation may have added is cut off again.
fn reserve(file: &File, len: u64) -> io::Result<u64> {
    let settling = Settling::begin();
    let offset = file.metadata()?.len();
    let allocated = match os::allocate(file, offset, len) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => file.set_len(offset + len),
        allocated => allocated,
    };
    match allocated {
        Ok(()) => Ok(offset),
        Err(e) => {
            settling.give_back(file, offset, len);
            Err(e)
        }
    }
}

/// [`RESERVING`] held: what settles the end of a file is done through this guard, so none of
/// it can take the lock a second time.
struct Settling {
    _held: MutexGuard<'static, ()>,
}

impl Settling {
    fn begin() -> Self {
        Settling { _held: RESERVING.lock() }
    }

    /// Cuts a reserved region off again if nothing was appended after it. True if it was.
    fn give_back(&self, file: &File, offset: u64, len: u64) -> bool {
        self.cut_back(file, offset, offset + len)
    }

    /// Cuts `file` back to `start` if it does not reach past `end` (nothing was appended after
    /// the writing that failed); never makes it longer. True if it ends at `start` or before.
    fn cut_back(&self, file: &File, start: u64, end: u64) -> bool {
        match file.metadata().map(|m| m.len()) {
            Ok(now) if now <= start => true,
            Ok(now) if now <= end => file.set_len(start).is_ok(),
            _ => false,
        }
    }
}

impl Prepared {
    /// Whether the dump goes into a regular file (else a pipe or device, by path).
    pub(crate) fn is_regular_file(&self) -> bool {
        matches!(
            self.destination,
            Destination::Region { .. } | Destination::Appended { regular: true, .. } | Destination::Whole { .. }
        )
    }

    /// Says that the lines this dump will write were taken out of the ring of the sink at
    /// `owner`, `lines` of them: a crash dump of that sink then holds them, or says that they
    /// are missing (see `crash`).
    pub(crate) fn taken_from(&mut self, owner: usize, lines: usize) {
        self.taken = Some((owner, lines));
        if let Destination::Region { entry, .. } = &self.destination {
            entry.taken(owner, lines);
        }
    }

    /// Writes header, lines and footer. On failure the region is cut off or marked as failed
    /// (see the module doc); a stream just stops, without the footer; a compressed dump in a
    /// regular file leaves the file as it was.
    pub(crate) fn write(self, lines: &Ring) -> Result<(), DumpError> {
        let Prepared { path, framing, destination, taken } = self;
        let result = match destination {
            Destination::Stream(file) => write_stream(file, &framing, lines),
            Destination::Region { entry, file, offset, len } => {
                if taken.is_some() {
                    entry.writing(lines);
                }
                let written = write_region(&file, offset, &framing, lines, &entry);
                if let Err(e) = &written {
                    // Refused only while a crash is dumped: the handler cuts the region then.
                    let _ = entry.guarded(|| {
                        if !Settling::begin().give_back(&file, offset, len) {
                            mark_failed(&file, offset, len, e);
                        }
                        Ok(())
                    });
                }
                drop(entry); // left before the file is closed
                written
            }
            Destination::Appended { file, regular: true, .. } => append(&file, &framing, lines, u64::MAX, taken),
            Destination::Appended { file, codec: None, regular: false } => write_stream(file, &framing, lines),
            Destination::Appended { file, codec: Some(codec), regular: false } => encode(codec, file, &framing, lines),
            Destination::Whole { codec } => write_whole(&path, codec, &framing, lines, taken),
        };
        result.map_err(|error| DumpError::Write { path, error })
    }
}

fn write_stream(file: File, framing: &Framing, lines: &Ring) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(256 * 1024, file);
    records::write(framing, Wire::File, lines, |bytes| out.write_all(bytes))?;
    out.flush()
}

/// Writes the dump at `offset` in large pieces: lines are gathered into a buffer first.
fn write_region(file: &File, offset: u64, framing: &Framing, lines: &Ring, entry: &Entry) -> io::Result<()> {
    const BUFFER: usize = 1024 * 1024;
    let mut buffer = Vec::with_capacity(BUFFER.min(records::plain_len(framing, lines.text_bytes())));
    let mut at = offset;
    let mut flush = |buffer: &mut Vec<u8>| -> io::Result<()> {
        entry.guarded(|| file.write_all_at(buffer, at))?;
        at += buffer.len() as u64;
        buffer.clear();
        Ok(())
    };
    records::write(framing, Wire::File, lines, |piece| {
        if buffer.len() + piece.len() > BUFFER {
            flush(&mut buffer)?;
        }
        buffer.extend_from_slice(piece);
        Ok::<_, io::Error>(())
    })?;
    flush(&mut buffer)
}

/// Appends a dump (uncompressed, of unknown length) at the end of a regular file; on failure
/// cuts the file back to its length before (unless something else was appended meanwhile).
/// `limit`: the offset writing may not pass (tests make writes fail with it). `taken`: see
/// [`Prepared::taken_from`].
fn append(file: &File, framing: &Framing, lines: &Ring, limit: u64, taken: Option<(usize, usize)>) -> io::Result<()> {
    let _one_at_a_time = APPENDING.lock();
    let entry = regions::enter(file, Kind::Append)?;
    if let Some((owner, count)) = taken {
        entry.taken(owner, count);
        entry.writing(lines);
    }
    let start = entry.guarded(|| {
        let start = file.metadata()?.len();
        entry.set_span(start, start);
        Ok(start)
    })?;
    let mut out = Appender { file, entry: &entry, at: start, reached: start, limit };
    let mut buffered = io::BufWriter::with_capacity(COMPRESS_BUFFER, &mut out);
    let result =
        records::write(framing, Wire::File, lines, |bytes| buffered.write_all(bytes)).and_then(|()| buffered.flush());
    drop(buffered);
    if result.is_err() {
        let reached = out.reached;
        let _ = entry.guarded(|| {
            Settling::begin().cut_back(file, start, reached);
            Ok(())
        });
    }
    result
}

/// Writes at a moving offset of a file, and remembers how far writing reached.
struct Appender<'a> {
    file: &'a File,
    entry: &'a Entry,
    at: u64,
    /// The end of the furthest write tried, whole or not.
    reached: u64,
    limit: u64,
}

impl Write for Appender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = usize::try_from(self.limit.saturating_sub(self.at)).unwrap_or(usize::MAX);
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        let buf = &buf[..buf.len().min(room)];
        self.reached = self.reached.max(self.at + buf.len() as u64);
        let n = self.entry.guarded(|| {
            self.entry.reach(self.reached);
            self.file.write_at(buf, self.at)
        })?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a compressed dump into the regular file `path` whole (see the module doc): the bytes
/// of the file as it is now (if there is one; read only now, since an earlier dump may have
/// replaced it since this one was prepared), then the dump, into a hidden file beside it, which
/// is synced and renamed over it. On failure the hidden file is deleted. `taken`: see
/// [`Prepared::taken_from`].
fn write_whole(
    path: &str,
    codec: Compression,
    framing: &Framing,
    lines: &Ring,
    taken: Option<(usize, usize)>,
) -> io::Result<()> {
    let _one_at_a_time = APPENDING.lock();
    sweep_hidden(path);
    let hidden = hidden_name(path, std::process::id());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&hidden)?;
    let written = (|| {
        let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        let earlier = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
            Ok(earlier) if earlier.metadata()?.is_file() => Some(earlier),
            Ok(_) => return Err(io::Error::other("no longer a regular file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let entry = regions::enter(&file, Kind::Replace)?;
        if let Some((owner, count)) = taken {
            entry.taken(owner, count);
            entry.writing(lines);
        }
        if let Some(earlier) = &earlier {
            let meta = earlier.metadata()?;
            if meta.len() > 0 {
                // A file with contents keeps its mode (see `open`).
                file.set_permissions(meta.permissions())?;
            }
            io::copy(&mut io::Read::take(earlier, meta.len()), &mut &file)?;
        }
        encode(codec, &file, framing, lines)?;
        file.sync_all()?;
        entry.guarded(|| std::fs::rename(&hidden, path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&hidden);
    }
    written
}

/// The hidden file a compressed dump to `path` is written into first by the process `pid`.
fn hidden_name(path: &str, pid: u32) -> String {
    let (folder, name) = match path.rfind('/') {
        Some(at) => path.split_at(at + 1),
        None => ("", path),
    };
    format!("{folder}.{name}.{pid}.part")
}

/// Deletes the hidden files of compressed dumps to `path` left by processes that are gone (or
/// by this one: its own are written one at a time, under `APPENDING`).
fn sweep_hidden(path: &str) {
    let (folder, name) = match path.rfind('/') {
        Some(at) => (&path[..at + 1], &path[at + 1..]),
        None => ("", path),
    };
    let Ok(entries) = std::fs::read_dir(if folder.is_empty() { "." } else { folder }) else { return };
    let prefix = format!(".{name}.");
    for found in entries.flatten() {
        let file_name = found.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)?.strip_suffix(".part")) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let gone = pid == std::process::id() || !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if gone {
            let _ = std::fs::remove_file(found.path());
        }
    }
}

/// Compresses the dump into `out` as one gzip member or zstd frame, with fixed buffers
/// whatever the dump's size.
fn encode<W: Write>(codec: Compression, out: W, framing: &Framing, lines: &Ring) -> io::Result<()> {
    let out = io::BufWriter::with_capacity(COMPRESS_BUFFER, out);
    match codec {
        Compression::Gzip => {
            let encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            feed(encoder, framing, lines)?.finish()?.flush()
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            encoder.include_checksum(true)?;
            if framing.format == Format::Plain {
                encoder.set_pledged_src_size(Some(records::plain_len(framing, lines.text_bytes()) as u64))?;
            }
            feed(encoder, framing, lines)?.finish()?.flush()
        }
    }
}

/// Writes the dump into `encoder` in large pieces; gives it back to be finished.
fn feed<E: Write>(encoder: E, framing: &Framing, lines: &Ring) -> io::Result<E> {
    let mut input = io::BufWriter::with_capacity(COMPRESS_BUFFER, encoder);
    records::write(framing, Wire::File, lines, |bytes| input.write_all(bytes))?;
    input.into_inner().map_err(io::IntoInnerError::into_error)
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
pub(crate) mod tests {
    use super::*;
    use crate::pure::records::{Identity, FOOTER};
    use crate::pure::ring::Limit;
    use crate::runtime::test_dir::TestDir;

    /// A plain dump's framing.
    pub(crate) fn plain(time: i64, notes: &[&str]) -> Framing {
        Framing {
            format: Format::Plain,
            time,
            notes: notes.iter().map(|n| n.to_string()).collect(),
            id: String::new(),
            reason: String::new(),
            identity: Identity { hostname: String::new(), app_name: String::new(), pid: 0, facility: 3 },
        }
    }

    fn header(time: i64) -> Vec<u8> {
        records::plain_header(time)
    }

    /// Appends one dump of `lines` to `path`, now.
    pub(crate) fn write_dump(path: &str, time: i64, lines: &Ring) -> Result<(), DumpError> {
        prepare(path, time, lines.text_bytes(), &[])?.write(lines)
    }

    pub(crate) fn ring_of(lines: &[&str]) -> Ring {
        let mut ring = Ring::new(Limit::Lines(100));
        for line in lines {
            ring.push(line.as_bytes(), 0);
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
            assert!(prepare(path, 0, 0, &[]).expect(path).is_regular_file() == is_regular("/proc/self/fd/2"));
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
        let err = prepare(&fifo, 0, 0, &[]).expect_err("no reader");
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
        let failing = prepare(&path, 0, lines.text_bytes(), &[]).expect("prepare");
        write_dump(&path, 0, &ring_of(&["later\n"])).expect("second dump");
        let Destination::Region { file, offset, len, .. } = &failing.destination else { panic!("a region") };
        mark_failed(file, *offset, *len, &io::Error::from_raw_os_error(libc::EIO));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains('\0'));
        let failed_line = text.lines().next().expect("a line");
        assert_eq!(failed_line.trim_end(), "-- Dump failed: Input/output error --", "{text}");
        assert!(text.ends_with("later\n-- End of dump --\n\n"));
    }

    /// Decompresses a whole file: every gzip member or zstd frame, one after the other.
    fn decompress(codec: Compression, bytes: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        match codec {
            Compression::Gzip => flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out),
            Compression::Zstd => zstd::stream::read::Decoder::new(bytes).expect("decoder").read_to_end(&mut out),
        }
        .expect("decompress");
        out
    }

    /// Lines that do not compress much (so that compressed bytes reach the file mid-dump).
    pub(crate) fn noisy_ring(count: usize) -> Ring {
        let mut ring = Ring::new(Limit::Lines(count));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for n in 0..count {
            let mut line = format!("Nov 22 10:00:00 c2s{n:x}\tdebug\t");
            for _ in 0..12 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                line.push_str(&format!("{state:016x}"));
            }
            line.push('\n');
            ring.push(line.as_bytes(), 0);
        }
        ring
    }

    pub(crate) fn compressed_dump(
        path: &str,
        codec: Compression,
        notes: &[&str],
        lines: &Ring,
    ) -> Result<(), DumpError> {
        prepare_as(path, plain(0, notes), lines.text_bytes(), Some(codec))?.write(lines)
    }

    #[test]
    fn a_compressed_dump_decompresses_to_the_plain_bytes_and_appends_a_member() {
        let dir = TestDir::new("compressed");
        let plain_path = dir.file("plain.log");
        let first = ring_of(&["one\n", "two\n"]);
        let second = noisy_ring(3000);
        write_dump(&plain_path, 0, &first).expect("plain dump");
        prepare(&plain_path, 0, second.text_bytes(), &["a notice"])
            .expect("prepare")
            .write(&second)
            .expect("plain dump");
        let expected = std::fs::read(&plain_path).expect("read");
        for codec in [Compression::Gzip, Compression::Zstd] {
            let path = dir.file(&format!("c.log{}", codec.suffix()));
            let prepared = prepare_as(&path, plain(0, &[]), first.text_bytes(), Some(codec)).expect("prepare");
            assert!(prepared.is_regular_file(), "written on the files lane");
            prepared.write(&first).expect("first dump");
            let once = std::fs::read(&path).expect("read");
            assert_eq!(decompress(codec, &once), expected[..header(0).len() + 8 + FOOTER.len()]);
            compressed_dump(&path, codec, &["a notice"], &second).expect("second dump");
            let twice = std::fs::read(&path).expect("read");
            assert!(twice.starts_with(&once), "the second dump is appended");
            assert!(twice.len() < expected.len(), "{codec:?} compresses");
            assert_eq!(decompress(codec, &twice), expected, "{codec:?}");
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_compressed_stream_is_one_member_too() {
        let lines = ring_of(&["streamed\n"]);
        for codec in [Compression::Gzip, Compression::Zstd] {
            let mut out = Vec::new();
            encode(codec, &mut out, &plain(0, &[]), &lines).expect("encode");
            let mut expected = header(0);
            expected.extend_from_slice(b"streamed\n");
            expected.extend_from_slice(FOOTER);
            assert_eq!(decompress(codec, &out), expected);
        }
    }

    /// The names in `dir`.
    fn names_in(dir: &TestDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_compressed_dump_that_runs_out_of_room_leaves_the_file_as_it_was() {
        let dir = TestDir::tmpfs("compressed-full", 256 * 1024);
        let lines = noisy_ring(4000); // about 0.9 MB, about half of it left after compression
        for codec in [Compression::Gzip, Compression::Zstd] {
            let path = dir.file(&format!("f.log{}", codec.suffix()));
            compressed_dump(&path, codec, &[], &ring_of(&["before\n"])).expect("first dump");
            let before = std::fs::read(&path).expect("read");
            let err = compressed_dump(&path, codec, &[], &lines).expect_err("no room");
            assert!(err.to_string().ends_with("No space left on device"), "{err}");
            assert_eq!(std::fs::read(&path).expect("read"), before, "{codec:?}");
            assert_eq!(names_in(&dir).len(), 1, "no hidden file is left: {:?}", names_in(&dir));
            std::fs::remove_file(&path).expect("rm");
            let err = compressed_dump(&path, codec, &[], &lines).expect_err("no room");
            assert!(err.to_string().ends_with("No space left on device"), "{err}");
            assert!(names_in(&dir).is_empty(), "a new file appears only whole: {:?}", names_in(&dir));
        }
    }

    #[test]
    fn compressed_dumps_prepared_together_are_both_kept() {
        let dir = TestDir::new("compressed-queued");
        let path = dir.file("q.log.zst");
        let (first, second) = (ring_of(&["first\n"]), ring_of(&["second\n"]));
        let one = prepare_as(&path, plain(0, &[]), first.text_bytes(), Some(Compression::Zstd)).expect("prepare");
        let two = prepare_as(&path, plain(0, &[]), second.text_bytes(), Some(Compression::Zstd)).expect("prepare");
        one.write(&first).expect("first");
        two.write(&second).expect("second");
        let text = decompress(Compression::Zstd, &std::fs::read(&path).expect("read"));
        let mut expected = header(0);
        expected.extend_from_slice(b"first\n");
        expected.extend_from_slice(FOOTER);
        expected.extend_from_slice(&header(0));
        expected.extend_from_slice(b"second\n");
        expected.extend_from_slice(FOOTER);
        assert_eq!(String::from_utf8_lossy(&text), String::from_utf8_lossy(&expected));
    }

    #[test]
    fn hidden_files_of_processes_that_are_gone_are_swept() {
        let dir = TestDir::new("compressed-sweep");
        let path = dir.file("s.log.zst");
        let gone = (400_000..).find(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()).expect("a pid");
        std::fs::write(hidden_name(&path, gone), b"partial").expect("write");
        std::fs::write(hidden_name(&path, 1), b"pid 1 is alive").expect("write");
        std::fs::write(dir.file(".other.log.zst.5.part"), b"another file's").expect("write");
        compressed_dump(&path, Compression::Zstd, &[], &ring_of(&["x\n"])).expect("dump");
        assert_eq!(names_in(&dir), [".other.log.zst.5.part", ".s.log.zst.1.part", "s.log.zst"]);
        assert_eq!(hidden_name("x.zst", 7), ".x.zst.7.part");
    }

    #[test]
    fn a_failed_append_is_cut_back() {
        let dir = TestDir::new("append-fail");
        let lines = noisy_ring(400);
        let path = dir.file("a.log");
        write_dump(&path, 0, &ring_of(&["before\n"])).expect("first dump");
        let before = std::fs::read(&path).expect("read");
        let start = before.len() as u64;
        let full = records::plain_len(&plain(0, &[]), lines.text_bytes()) as u64;
        for room in [0, 1, 4096, full / 3, full - 1] {
            let file = OpenOptions::new().write(true).open(&path).expect("open");
            let err = append(&file, &plain(0, &[]), &lines, start + room, None).expect_err("past the limit");
            assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{room}");
            assert_eq!(std::fs::read(&path).expect("read"), before, "with room for {room} bytes");
        }
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        append(&file, &plain(0, &[]), &lines, start + full, None).expect("exactly enough room");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), start + full);
    }

    // ---- Real faults: a full disk, a read-only remount, a file-size limit, a file that cannot
    // hold a dump. Each runs under `lock_watch`: a lock left held or taken again fails the test
    // (the old `reserve` -> `give_back` self-deadlock did, on a full disk).

    use crate::runtime::lock_watch;
    use std::time::Duration;

    pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

    pub(crate) fn file_len(path: &str) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    #[test]
    fn a_compressed_dump_to_a_full_disk_is_cut_back_and_its_lines_kept() {
        lock_watch::within(PATIENCE, || {
            let dir = TestDir::tmpfs("full-disk-zstd", 512 * 1024);
            for codec in [Compression::Gzip, Compression::Zstd] {
                let path = dir.file(&format!("dump.log{}", codec.suffix()));
                let before = {
                    compressed_dump(&path, codec, &[], &ring_of(&["before\n"])).expect("first dump");
                    std::fs::read(&path).expect("read")
                };
                dir.fill();
                let lines = noisy_ring(4000); // 1.6 MB that compress little: the disk fills mid-dump
                let err = compressed_dump(&path, codec, &[], &lines).expect_err("no room");
                assert!(err.to_string().ends_with(": No space left on device"), "{err}");
                assert_eq!(std::fs::read(&path).expect("read"), before, "{codec:?}: cut back");
                dir.unfill();
            }
        });
    }

    #[test]
    fn a_formatted_dump_to_a_full_disk_is_cut_back_and_a_failing_device_is_an_error() {
        lock_watch::within(PATIENCE, || {
            let dir = TestDir::tmpfs("full-disk-json", 512 * 1024);
            let path = dir.file("dump.json");
            let json = |notes: &[&str]| Framing { format: Format::Json, ..plain(0, notes) };
            let lines = noisy_ring(4000);
            let small = ring_of(&["before\n"]);
            prepare_as(&path, json(&[]), small.text_bytes(), None).expect("prepare").write(&small).expect("room");
            let before = std::fs::read(&path).expect("read");
            dir.fill();
            let err = prepare_as(&path, json(&[]), lines.text_bytes(), None).expect("prepare").write(&lines);
            assert!(err.expect_err("no room").to_string().ends_with(": No space left on device"));
            assert_eq!(std::fs::read(&path).expect("read"), before, "cut back");
            // A device (written in order, not cut back): compressed, and formatted.
            for (framing, codec) in [(plain(0, &[]), Some(Compression::Gzip)), (json(&[]), None)] {
                let prepared = prepare_as("/dev/full", framing, lines.text_bytes(), codec).expect("prepare");
                assert!(matches!(prepared.write(&lines), Err(DumpError::Write { .. })));
            }
        });
    }

    #[test]
    fn a_region_whose_write_fails_is_cut_off_or_marked() {
        lock_watch::within(PATIENCE, || {
            let dir = TestDir::tmpfs("region-fails", 512 * 1024);
            let path = dir.file("dump.log");
            let lines = noisy_ring(100);
            // The region is allocated, then its room taken away again (a hole punched in it) and
            // the disk filled: writing it fails for real.
            let punch = |offset: u64, len: u64| {
                let status = std::process::Command::new("fallocate")
                    .args(["-p", "-o", &offset.to_string(), "-l", &len.to_string(), &path])
                    .status()
                    .expect("fallocate");
                assert!(status.success());
            };
            let last = prepare(&path, 0, lines.text_bytes(), &[]).expect("prepare");
            let Destination::Region { offset, len, .. } = last.destination else { panic!("a region") };
            punch(offset, len);
            dir.fill();
            let err = last.write(&lines).expect_err("no room");
            assert!(err.to_string().ends_with("No space left on device"), "{err}");
            assert_eq!(file_len(&path), 0, "the last region is cut off");
            dir.unfill();

            let failing = prepare(&path, 0, lines.text_bytes(), &[]).expect("prepare");
            let Destination::Region { offset, len, .. } = failing.destination else { panic!("a region") };
            write_dump(&path, 0, &ring_of(&["later\n"])).expect("a dump after it");
            let after = file_len(&path);
            // Room for the line saying the dump failed, not for the dump.
            let mark_room = 4096;
            punch(offset + mark_room, len - mark_room);
            dir.fill();
            failing.write(&lines).expect_err("no room");
            dir.unfill();
            let bytes = std::fs::read(&path).expect("read");
            assert_eq!(bytes.len() as u64, after);
            let text = String::from_utf8_lossy(&bytes[..mark_room as usize]);
            assert!(text.starts_with("-- Dump failed: No space left on device --\n"), "{text}");
            assert!(bytes.ends_with(b"later\n-- End of dump --\n\n"));
        });
    }
}
