//! A sink: its options and its ring, shared by the Lua thread (which logs and dumps) and the
//! native signal thread (which dumps). Pure Rust; the Lua side lives in `lua_sink`.

use std::sync::Arc;

use crate::dump::{self, DumpError, Prepared};
use crate::format::now_seconds;
use crate::options::{SinkOptions, Target};
use crate::reports;
use crate::ring::Ring;
use crate::shared_ring::SharedRing;
use crate::template::{self, Values};
use crate::writer::{self, Job};

#[derive(Debug)]
pub struct Sink {
    pub options: SinkOptions,
    /// Prosody's `prosody.paths`, for `{paths.*}`.
    paths: Vec<(String, String)>,
    ring: SharedRing,
}

/// A dump that was started: its file, its lines, and whether they are still being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dumped {
    pub path: String,
    pub lines: usize,
    pub in_background: bool,
}

impl Sink {
    pub fn new(options: SinkOptions, paths: Vec<(String, String)>) -> Self {
        let ring = SharedRing::new(Ring::new(options.limit));
        Sink { options, paths, ring }
    }

    /// Stores one finished line (timestamp, source, level, message, newline). Only for the
    /// thread that made the sink (see `shared_ring`).
    #[inline]
    pub fn push(&self, line: &[u8]) {
        self.ring.with_owner(|ring| ring.push(line));
    }

    /// Lets `write` put a line straight into the ring's free space, and stores it if `write`
    /// returns its length. Only for the thread that made the sink. False: nothing stored
    /// (no room left in the current chunk, `write` declined, or a line the limit must cut).
    #[inline]
    pub fn push_in_place(&self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        self.ring.with_owner(|ring| ring.write_in_place(write))
    }

    /// (lines, bytes of text) held now.
    pub fn usage(&self) -> (usize, usize) {
        self.ring.with_lock(|ring| (ring.lines(), ring.text_bytes()))
    }

    /// The buffered lines, oldest first, without emptying the buffer.
    pub fn peek(&self) -> Vec<u8> {
        self.ring.with_lock(|ring| {
            let mut out = Vec::with_capacity(ring.text_bytes());
            for line in ring.iter() {
                out.extend(line.pieces().flatten());
            }
            out
        })
    }

    /// The file the next dump goes to, given its `{count}` and time.
    pub fn path_for(&self, count: u64, time: i64) -> String {
        match &self.options.target {
            Target::File(name) => name.clone(),
            Target::Template(t) => {
                template::render(t, &Values { pid: std::process::id(), count, time, paths: self.paths.clone() })
            }
        }
    }

    /// Dumps the buffered lines and empties the buffer. The file is opened and the dump's place
    /// in it settled now; with `background`, the lines are written by the writer thread.
    /// If the dump fails, every line is put back (in front of any logged meanwhile) for the
    /// next attempt. The outcome of the writing is reported (see `reports`).
    pub fn dump(self: &Arc<Self>, background: bool, reason: &str) -> Result<Dumped, DumpError> {
        let time = now_seconds();
        let path = self.path_for(dump::next_count(), time);
        let lines = self.ring.with_lock(Ring::take);
        let prepared = match dump::prepare(&path, time, lines.text_bytes()) {
            Ok(p) => p,
            Err(e) => {
                self.ring.with_lock(|ring| ring.restore(lines));
                return Err(e);
            }
        };
        let count = lines.lines();
        let in_background = background && prepared.is_region();
        if in_background {
            writer::submit(Job { sink: Arc::clone(self), prepared, lines, reason: reason.to_string() });
        } else {
            self.finish(prepared, lines, reason);
        }
        Ok(Dumped { path, lines: count, in_background })
    }

    /// Writes a prepared dump and reports how it went; failed lines go back into the ring.
    pub fn finish(&self, prepared: Prepared, lines: Ring, reason: &str) {
        let path = prepared.path.clone();
        match prepared.write(&lines) {
            Ok(()) => reports::push("info", format!("Dumped {} buffered lines to {path} ({reason})", lines.lines())),
            Err(e) => {
                report_failure(&e, reason);
                self.ring.with_lock(|ring| ring.restore(lines));
            }
        }
    }
}

/// Reports a dump that failed where Lua cannot be told directly.
pub fn report_failure(error: &DumpError, reason: &str) {
    reports::push("error", format!("{error} ({reason}); the lines are kept for the next dump"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OptValue;

    fn sink_with(dir: &std::path::Path, template: &str) -> Arc<Sink> {
        let t = template.to_string();
        let (options, problems) = SinkOptions::parse(
            |k| match k {
                "filename_template" => OptValue::Str(t.clone()),
                "lines" => OptValue::Int(100),
                _ => OptValue::Absent,
            },
            &[],
        );
        assert!(problems.is_empty());
        Arc::new(Sink::new(options, vec![("data".into(), dir.to_string_lossy().into_owned())]))
    }

    #[test]
    fn dump_empties_and_failed_dump_keeps_lines() {
        let dir = std::env::temp_dir().join(format!("lrb-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");

        let good = sink_with(&dir, "{paths.data}/dump-{pid}.log");
        good.push(b"a\n");
        let done = good.dump(true, "test").expect("dump");
        assert!(done.in_background);
        assert!(writer::wait_idle(std::time::Duration::from_secs(5)));
        assert_eq!(done.lines, 1);
        assert_eq!(done.path, format!("{}/dump-{}.log", dir.display(), std::process::id()));
        assert_eq!(good.usage(), (0, 0));

        let bad = sink_with(&dir, "{paths.data}/missing/dump.log");
        bad.push(b"kept\n");
        assert!(bad.dump(false, "test").is_err());
        bad.push(b"later\n");
        assert_eq!(bad.usage(), (2, 11));
    }
}
