//! A sink: its options and its ring, shared by the Lua thread (which logs and dumps) and the
//! native signal thread (which dumps). Pure Rust; the Lua side lives in `lua_sink`.

use parking_lot::Mutex;

use crate::dump::{self, DumpError};
use crate::format::now_seconds;
use crate::options::{SinkOptions, Target};
use crate::ring::Ring;
use crate::template::{self, Values};

#[derive(Debug)]
pub struct Sink {
    pub options: SinkOptions,
    /// Prosody's `prosody.paths`, for `{paths.*}`.
    paths: Vec<(String, String)>,
    ring: Mutex<Ring>,
}

/// What a successful dump did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dumped {
    pub path: String,
    pub lines: usize,
}

impl Sink {
    pub fn new(options: SinkOptions, paths: Vec<(String, String)>) -> Self {
        let ring = Mutex::new(Ring::new(options.limit));
        Sink {
            options,
            paths,
            ring,
        }
    }

    /// Stores one finished line (timestamp, source, level, message, newline).
    pub fn push(&self, line: &[u8]) {
        self.ring.lock().push(line);
    }

    /// (lines, bytes of text) held now.
    pub fn usage(&self) -> (usize, usize) {
        let ring = self.ring.lock();
        (ring.lines(), ring.text_bytes())
    }

    /// The buffered lines, oldest first, without emptying the buffer.
    pub fn peek(&self) -> Vec<u8> {
        let ring = self.ring.lock();
        let mut out = Vec::with_capacity(ring.text_bytes());
        for line in ring.iter() {
            out.extend(line.pieces().flatten());
        }
        out
    }

    /// The file the next dump goes to, given its `{count}` and time.
    pub fn path_for(&self, count: u64, time: i64) -> String {
        match &self.options.target {
            Target::File(name) => name.clone(),
            Target::Template(t) => template::render(
                t,
                &Values {
                    pid: std::process::id(),
                    count,
                    time,
                    paths: self.paths.clone(),
                },
            ),
        }
    }

    /// Writes the buffered lines to the dump file and empties the buffer. If the dump fails,
    /// every line is put back (in front of any logged meanwhile) for the next attempt.
    pub fn dump(&self) -> Result<Dumped, DumpError> {
        let time = now_seconds();
        let path = self.path_for(dump::next_count(), time);
        let lines = self.ring.lock().take();
        match dump::write_dump(&path, time, &lines) {
            Ok(()) => Ok(Dumped {
                path,
                lines: lines.lines(),
            }),
            Err(e) => {
                self.ring.lock().restore(lines);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OptValue;

    fn sink_with(dir: &std::path::Path, template: &str) -> Sink {
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
        Sink::new(
            options,
            vec![("data".into(), dir.to_string_lossy().into_owned())],
        )
    }

    #[test]
    fn dump_empties_and_failed_dump_keeps_lines() {
        let dir = std::env::temp_dir().join(format!("lrb-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");

        let good = sink_with(&dir, "{paths.data}/dump-{pid}.log");
        good.push(b"a\n");
        let done = good.dump().expect("dump");
        assert_eq!(done.lines, 1);
        assert_eq!(
            done.path,
            format!("{}/dump-{}.log", dir.display(), std::process::id())
        );
        assert_eq!(good.usage(), (0, 0));

        let bad = sink_with(&dir, "{paths.data}/missing/dump.log");
        bad.push(b"kept\n");
        assert!(bad.dump().is_err());
        bad.push(b"later\n");
        assert_eq!(bad.usage(), (2, 11));
    }
}
