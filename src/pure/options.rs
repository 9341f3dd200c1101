//! Sink options: the user's `log = { { to = "ringbuffer", ... } }` entry, checked and normalised.
//!
//! A bad value never stops Prosody and never loses capture: the option falls back to its
//! default (or the trigger is left out) and a problem is reported for Prosody's log, naming the
//! option, the value and what is accepted. Each option has one small reader below.

use std::time::Duration;

use super::date::{DateFormat, DEFAULT_TIMESTAMP};
use super::duration;
use super::forward_target::{self, ForwardTarget, Transport};
use super::level::Level;
use super::message_framing::{self, StreamFraming};
use super::message_match::MessagePattern;
use super::pacing::{self, Pace};
use super::records::{Format, FACILITIES, PRECISE_STAMP};
use super::redact::Classes;
use super::ring::{Limit, MIN_SIZE};
use super::signal_names::{self, Trigger};
use super::template::Template;

pub(crate) const DEFAULT_SIZE: usize = 100 * 1024;
/// Larger rings are almost certainly a typo (memory is only used as lines arrive, but still).
pub(crate) const MAX_SIZE: usize = 1 << 36;
pub(crate) const MAX_LINES: usize = 1 << 28;
pub(crate) const DEFAULT_TEMPLATE: &str = "{paths.data}/ringbuffer-logs-{pid}-{count}.log";
/// "name" and "filter" are read by the Lua side (the admin shell and the statistics name sinks by
/// the first; the second is run on each line before the native sink).
const KNOWN: &[&str] = &[
    "to",
    "level",
    "levels",
    "size",
    "lines",
    "filename",
    "filename_template",
    "signal",
    "event",
    "timestamps",
    "dump_on",
    "dump_on_match",
    "dump_after",
    "dump_cooldown",
    "dump_on_exit",
    "dump_on_crash",
    "dump_on_stall",
    "keep_dumps",
    "compress",
    "max_age",
    "name",
    "format",
    "forward",
    "forward_ca_file",
    "forward_timeout",
    "forward_framing",
    "forward_max_message",
    "forward_rate",
    "syslog_name",
    "syslog_facility",
    "persist",
    "filter",
    "keep_dumps_for",
    "redact",
];
/// `dump_cooldown` when not given: an error storm gives one dump a minute.
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// `dump_after` at most: the aftermath window is for the seconds after an error.
pub(crate) const MAX_DUMP_AFTER: Duration = Duration::from_secs(3600);
pub(crate) const MAX_KEEP_DUMPS: i64 = 100_000;
/// `dump_on_stall` at least: the heartbeat turns once a second, a shorter stall cannot be told.
pub(crate) const MIN_DUMP_ON_STALL: Duration = Duration::from_secs(1);
/// `dump_on_stall` at most.
pub(crate) const MAX_DUMP_ON_STALL: Duration = Duration::from_secs(3600);
/// `forward_timeout` when not given: the longest a forward may take, from connecting to the
/// collector's close (a full 64 MiB ring needs about 0.6 MB/s to make it).
pub(crate) const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(120);
/// `forward_timeout` at most.
pub(crate) const MAX_FORWARD_TIMEOUT: Duration = Duration::from_secs(3600);

/// An option's value as the config file gave it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OptValue {
    Absent,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A table: its array part (`{ "bodies", "credentials" }`), each entry as a value of its
    /// own (tables in it as `Other`).
    List(Vec<OptValue>),
    /// Any other Lua type, by name (`function`, ...).
    Other(&'static str),
}

impl OptValue {
    /// How the value reads in an error message.
    fn shown(&self) -> String {
        match self {
            OptValue::Absent => "nil".into(),
            OptValue::Bool(b) => b.to_string(),
            OptValue::Int(n) => n.to_string(),
            OptValue::Float(n) => {
                let mut text = Vec::new();
                super::format::push_float(*n, &mut text);
                String::from_utf8_lossy(&text).into_owned()
            }
            OptValue::Str(s) => format!("{s:?}"),
            // Named only, as any other table: most options take none.
            OptValue::List(_) => "a table".into(),
            OptValue::Other(t) => format!("a {t}"),
        }
    }

    /// As [`OptValue::shown`], a list with its items: for an option that takes a list.
    fn listed(&self) -> String {
        match self {
            OptValue::List(items) => {
                format!("{{ {} }}", items.iter().map(OptValue::shown).collect::<Vec<_>>().join(", "))
            }
            other => other.shown(),
        }
    }

    fn as_count(&self) -> Option<i64> {
        match *self {
            OptValue::Int(n) => Some(n),
            OptValue::Float(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(n as i64),
            _ => None,
        }
    }
}

/// Where dumps go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// `filename`: used as written.
    File(String),
    /// `filename_template`, rendered at each dump.
    Template(Template),
}

/// `persist`: where the sink's ring file lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Persist {
    /// `persist = true`: Prosody's data directory (`paths.data`).
    DataDir,
    /// `persist = "/path/dir"`.
    Dir(String),
}

/// How bad a config problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// A value was replaced or dropped.
    Error,
    /// Something was ignored.
    Warning,
}

/// A problem with the config, for Prosody's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) severity: Severity,
    pub(crate) text: String,
}

/// When a sink dumps by itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AutoDump {
    /// `dump_on`: a line at or above this level triggers a dump.
    pub(crate) on_level: Option<Level>,
    /// `dump_on_match`: a line whose message matches this triggers a dump, whatever its level.
    pub(crate) on_match: Option<MessagePattern>,
    /// `dump_after`: capture goes on this long after the trigger, then the dump is written.
    pub(crate) after: Duration,
    /// `dump_cooldown`: a trigger this soon after the last one that dumped is only counted.
    pub(crate) cooldown: Duration,
    /// `dump_on_exit`: dump at clean shutdown.
    pub(crate) on_exit: bool,
    /// `dump_on_crash`: dump from the handler of a fatal signal.
    pub(crate) on_crash: bool,
    /// `dump_on_stall`: dump from a native thread once Prosody's main loop has not turned
    /// for this long (see `runtime::stall`).
    pub(crate) on_stall: Option<Duration>,
}

/// How dump files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// What is appended to the dump file's name.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

/// What bounds the disk and the age of what is dumped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Retention {
    /// `keep_dumps`: the newest N files this sink's template made are kept, older ones deleted.
    pub(crate) keep_dumps: Option<usize>,
    /// `compress`.
    pub(crate) compress: Option<Compression>,
    /// `max_age`: older lines are left out of dumps (and counted as dropped).
    pub(crate) max_age: Option<Duration>,
    /// `keep_dumps_for`: files this sink's template made that were last modified longer ago
    /// are deleted (see `runtime::retention`).
    pub(crate) keep_for: Option<Duration>,
}

/// How dumps are written and where they are forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Output {
    /// `format`.
    pub(crate) format: Format,
    /// `forward`: dumps go there instead of the file.
    pub(crate) forward: Option<ForwardTarget>,
    /// `forward_ca_file`: the CA certificates a `tls://` collector is checked against.
    pub(crate) ca_file: Option<String>,
    /// `forward_timeout`: a forward that has not ended by then fails.
    pub(crate) forward_timeout: Duration,
    /// `forward_framing`: how messages are framed on a stream (`None`: the target's default).
    pub(crate) framing: Option<StreamFraming>,
    /// `forward_max_message`: longer messages are cut to this many bytes.
    pub(crate) max_message: usize,
    /// `forward_rate`.
    pub(crate) pace: Pace,
    /// `syslog_name`: RFC 5424's APP-NAME.
    pub(crate) app_name: String,
    /// `syslog_facility`, as its number.
    pub(crate) facility: u8,
}

/// The system's CA certificates on Debian, for `tls://` without `forward_ca_file`.
pub(crate) const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What identifies "the same sink" across a logging reload: two sinks whose options give equal
/// keys can hand their buffered lines over. Every option is part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReloadKey {
    limit: Limit,
    timestamps: Option<String>,
    target: Target,
    min_level: Option<Level>,
    triggers: Vec<Trigger>,
    auto: AutoDump,
    retention: Retention,
    output: Output,
    persist: Option<Persist>,
    redact: Classes,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SinkOptions {
    pub(crate) limit: Limit,
    /// `None`: no timestamps. Otherwise the `os.date` format, with the trailing space added.
    pub(crate) timestamps: Option<DateFormat>,
    pub(crate) target: Target,
    pub(crate) min_level: Option<Level>,
    /// Each trigger once (`signal = "SIGUSR2"` with `event = "signal/SIGUSR2"` is one trigger).
    pub(crate) triggers: Vec<Trigger>,
    pub(crate) auto: AutoDump,
    pub(crate) retention: Retention,
    pub(crate) output: Output,
    /// `persist`: the ring also goes to a file that outlives the process (see `runtime::persist`).
    pub(crate) persist: Option<Persist>,
    /// `redact`: what is redacted from each line before it is stored (see `pure::redact`).
    pub(crate) redact: Classes,
}

/// Collects problems while the options are read.
struct Reader<G> {
    get: G,
    problems: Vec<Problem>,
}

impl<G: Fn(&str) -> OptValue> Reader<G> {
    fn bad(&mut self, option: &str, value: &OptValue, accepted: &str, fallback: &str) {
        let text = format!("Invalid value for option '{option}': {}; expected {accepted}; {fallback}", value.shown());
        self.problems.push(Problem { severity: Severity::Error, text });
    }

    fn size(&mut self) -> usize {
        let value = (self.get)("size");
        if value == OptValue::Absent {
            return DEFAULT_SIZE;
        }
        match value.as_count() {
            Some(n) if (MIN_SIZE as i64..=MAX_SIZE as i64).contains(&n) => n as usize,
            _ => {
                let accepted = format!("a whole number of bytes from {MIN_SIZE} to {MAX_SIZE}");
                self.bad("size", &value, &accepted, &format!("using the default of {DEFAULT_SIZE}"));
                DEFAULT_SIZE
            }
        }
    }

    fn limit(&mut self) -> Limit {
        let size = self.size();
        let value = (self.get)("lines");
        if value == OptValue::Absent {
            return Limit::Bytes(size);
        }
        match value.as_count() {
            Some(n) if (1..=MAX_LINES as i64).contains(&n) => Limit::Lines(n as usize),
            _ => {
                let accepted = format!("a whole number from 1 to {MAX_LINES}");
                self.bad("lines", &value, &accepted, "keeping lines by 'size' instead");
                Limit::Bytes(size)
            }
        }
    }

    fn timestamps(&mut self) -> Option<DateFormat> {
        const ACCEPTED: &str = "true, false or an os.date format";
        let default = || DateFormat::new(DEFAULT_TIMESTAMP).ok();
        match (self.get)("timestamps") {
            OptValue::Absent | OptValue::Bool(true) => default(),
            OptValue::Bool(false) => None,
            // Line timestamps alone may show fractions of a second (`%3N`).
            OptValue::Str(s) => match DateFormat::with_fractions(&format!("{s} ")) {
                Ok(f) => Some(f),
                Err(why) => {
                    self.bad("timestamps", &OptValue::Str(s), ACCEPTED, &format!("{why}; using the default format"));
                    default()
                }
            },
            v => {
                self.bad("timestamps", &v, ACCEPTED, "using the default format");
                default()
            }
        }
    }

    fn path(&mut self, name: &str) -> Option<String> {
        match (self.get)(name) {
            OptValue::Absent => None,
            OptValue::Str(s) if !s.is_empty() => Some(s),
            v => {
                self.bad(name, &v, "a file name (string)", "ignoring it");
                None
            }
        }
    }

    fn target(&mut self) -> Target {
        let filename = self.path("filename");
        let template = self.path("filename_template");
        match (filename, template) {
            (Some(f), _) => Target::File(f),
            (None, Some(t)) => Target::Template(t.into()),
            (None, None) => Target::Template(DEFAULT_TEMPLATE.into()),
        }
    }

    fn min_level(&mut self) -> Option<Level> {
        let value = (self.get)("level");
        match &value {
            OptValue::Absent => None,
            OptValue::Str(s) if Level::from_name(s).is_some() => Level::from_name(s),
            _ => {
                let accepted = "one of \"debug\", \"info\", \"warn\", \"error\"";
                self.bad("level", &value, accepted, "capturing every level");
                None
            }
        }
    }

    fn signal(&mut self) -> Option<Trigger> {
        const FALLBACK: &str = "no signal will dump this buffer";
        match (self.get)("signal") {
            OptValue::Absent => None,
            OptValue::Str(name) => match signal_names::parse_signal(&name) {
                Ok(t) => Some(t),
                Err(why) => {
                    self.bad("signal", &OptValue::Str(name), &why, FALLBACK);
                    None
                }
            },
            v => {
                self.bad("signal", &v, "a signal name such as \"SIGUSR2\"", FALLBACK);
                None
            }
        }
    }

    fn event(&mut self) -> Option<Trigger> {
        match (self.get)("event") {
            OptValue::Absent => None,
            OptValue::Str(name) if !name.is_empty() => Some(Trigger::Event(name)),
            v => {
                self.bad("event", &v, "the name of a Prosody global event", "no event will dump this buffer");
                None
            }
        }
    }

    fn triggers(&mut self) -> Vec<Trigger> {
        let mut triggers: Vec<Trigger> = Vec::new();
        for trigger in [self.signal(), self.event()].into_iter().flatten() {
            if !triggers.contains(&trigger) {
                triggers.push(trigger);
            }
        }
        triggers
    }

    /// A span of time: seconds, or text such as `"2s"` or `"15m"`.
    fn duration(&mut self, name: &str, default: Duration, max: Duration) -> Duration {
        let value = (self.get)(name);
        let parsed = match &value {
            OptValue::Absent => return default,
            OptValue::Int(n) => duration::from_seconds(*n as f64),
            OptValue::Float(n) => duration::from_seconds(*n),
            OptValue::Str(s) => duration::from_text(s),
            _ => None,
        };
        match parsed {
            Some(d) if d <= max => d,
            _ => {
                let accepted =
                    format!("seconds from 0 to {}, or text such as \"2s\", \"500ms\" or \"15m\"", max.as_secs());
                self.bad(name, &value, &accepted, &format!("using {}", shown_duration(default)));
                default
            }
        }
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match (self.get)(name) {
            OptValue::Absent => default,
            OptValue::Bool(b) => b,
            v => {
                self.bad(name, &v, "true or false", &format!("using {default}"));
                default
            }
        }
    }

    fn auto_dump(&mut self) -> AutoDump {
        let value = (self.get)("dump_on");
        let on_level = match &value {
            OptValue::Absent => None,
            OptValue::Str(s) if Level::from_name(s).is_some() => Level::from_name(s),
            _ => {
                let accepted = "one of \"debug\", \"info\", \"warn\", \"error\"";
                self.bad("dump_on", &value, accepted, "no level will dump this buffer");
                None
            }
        };
        AutoDump {
            on_level,
            on_match: self.match_pattern(),
            after: self.duration("dump_after", Duration::ZERO, MAX_DUMP_AFTER),
            cooldown: self.duration("dump_cooldown", DEFAULT_COOLDOWN, duration::MAX),
            on_exit: self.flag("dump_on_exit", false),
            on_crash: self.flag("dump_on_crash", true),
            on_stall: self.stall(),
        }
    }

    /// `dump_on_match`: a regular expression; a bad one leaves the trigger out.
    fn match_pattern(&mut self) -> Option<MessagePattern> {
        const ACCEPTED: &str = "a regular expression (Rust regex syntax)";
        const FALLBACK: &str = "no message will dump this buffer";
        match (self.get)("dump_on_match") {
            OptValue::Absent => None,
            OptValue::Str(text) => match MessagePattern::new(&text) {
                Ok(pattern) => Some(pattern),
                Err(why) => {
                    self.bad("dump_on_match", &OptValue::Str(text), ACCEPTED, &format!("{why}; {FALLBACK}"));
                    None
                }
            },
            v => {
                self.bad("dump_on_match", &v, ACCEPTED, FALLBACK);
                None
            }
        }
    }

    /// `dump_on_stall`: seconds or text, from [`MIN_DUMP_ON_STALL`] to [`MAX_DUMP_ON_STALL`];
    /// `false` is off, like no value.
    fn stall(&mut self) -> Option<Duration> {
        let value = (self.get)("dump_on_stall");
        let parsed = match &value {
            OptValue::Absent | OptValue::Bool(false) => return None,
            OptValue::Int(n) => duration::from_seconds(*n as f64),
            OptValue::Float(n) => duration::from_seconds(*n),
            OptValue::Str(s) => duration::from_text(s),
            _ => None,
        };
        match parsed {
            Some(d) if (MIN_DUMP_ON_STALL..=MAX_DUMP_ON_STALL).contains(&d) => Some(d),
            _ => {
                let accepted = format!(
                    "seconds from {} to {}, or text such as \"5s\" or \"2m\"",
                    MIN_DUMP_ON_STALL.as_secs(),
                    MAX_DUMP_ON_STALL.as_secs()
                );
                self.bad("dump_on_stall", &value, &accepted, "no stall will dump this buffer");
                None
            }
        }
    }

    fn persist(&mut self) -> Option<Persist> {
        match (self.get)("persist") {
            OptValue::Absent | OptValue::Bool(false) => None,
            OptValue::Bool(true) => Some(Persist::DataDir),
            OptValue::Str(dir) if dir.starts_with('/') => Some(Persist::Dir(dir)),
            v => {
                self.bad("persist", &v, "true, false or an absolute folder path", "not persisting this sink");
                None
            }
        }
    }

    /// `redact`: `true` (every class but "jids"), a class name, or a list of them. Failing
    /// safe: an unknown name is a config error that leaves the names it knows in force, and a
    /// value of another kind is one that redacts what `true` does.
    fn redact(&mut self) -> Classes {
        const ACCEPTED: &str = "true, false or a list of \"bodies\", \"credentials\", \"addresses\", \"jids\"";
        let value = (self.get)("redact");
        let names = match &value {
            OptValue::Absent | OptValue::Bool(false) => return Classes::NONE,
            OptValue::Bool(true) => return Classes::ALL_BUT_JIDS,
            OptValue::Str(name) => vec![OptValue::Str(name.clone())],
            OptValue::List(items) => items.clone(),
            _ => {
                self.bad("redact", &value, ACCEPTED, "redacting what redact = true does");
                return Classes::ALL_BUT_JIDS;
            }
        };
        let mut classes = Classes::NONE;
        let mut unknown = Vec::new();
        for name in &names {
            match name {
                OptValue::Str(name) if Classes::from_name(name).is_some() => {
                    classes = classes.with(Classes::from_name(name).unwrap_or_default());
                }
                other => unknown.push(other.shown()),
            }
        }
        if !unknown.is_empty() {
            let known = classes.names();
            let fallback = if known.is_empty() {
                "redacting nothing else".to_string()
            } else {
                format!("redacting {} only", known.join(", "))
            };
            let text = format!(
                "Invalid value for option 'redact': {}; unknown {}; expected {ACCEPTED}; {fallback}",
                value.listed(),
                unknown.join(", ")
            );
            self.problems.push(Problem { severity: Severity::Error, text });
        }
        classes
    }

    fn retention(&mut self) -> Retention {
        let value = (self.get)("keep_dumps");
        let keep_dumps = match value.as_count() {
            _ if value == OptValue::Absent => None,
            Some(n) if (1..=MAX_KEEP_DUMPS).contains(&n) => Some(n as usize),
            _ => {
                let accepted = format!("a whole number from 1 to {MAX_KEEP_DUMPS}");
                self.bad("keep_dumps", &value, &accepted, "keeping every dump file");
                None
            }
        };
        let value = (self.get)("compress");
        let compress = match &value {
            OptValue::Absent | OptValue::Bool(false) => None,
            OptValue::Str(s) if s == "gzip" => Some(Compression::Gzip),
            OptValue::Str(s) if s == "zstd" => Some(Compression::Zstd),
            _ => {
                self.bad("compress", &value, "\"zstd\", \"gzip\" or false", "writing uncompressed dumps");
                None
            }
        };
        let max_age = match (self.get)("max_age") {
            OptValue::Absent => None,
            _ => Some(self.duration("max_age", duration::MAX, duration::MAX)),
        };
        Retention { keep_dumps, compress, max_age, keep_for: self.keep_dumps_for() }
    }

    /// `keep_dumps_for`: a span of more than 0 s, up to [`duration::MAX`].
    fn keep_dumps_for(&mut self) -> Option<Duration> {
        let value = (self.get)("keep_dumps_for");
        let parsed = match &value {
            OptValue::Absent => return None,
            OptValue::Int(n) => duration::from_seconds(*n as f64),
            OptValue::Float(n) => duration::from_seconds(*n),
            OptValue::Str(s) => duration::from_text(s),
            _ => None,
        };
        match parsed {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                let accepted = format!(
                    "a span of more than 0 s and up to {}, such as \"14d\" or \"12h\" (or seconds)",
                    duration::shown(duration::MAX)
                );
                self.bad("keep_dumps_for", &value, &accepted, "keeping dump files whatever their age");
                None
            }
        }
    }

    fn unknown_keys(&mut self, keys: &[String]) {
        for key in keys.iter().filter(|key| !KNOWN.contains(&key.as_str())) {
            let text = format!("Unknown option '{key}' ignored; known options are: {}", KNOWN[1..].join(", "));
            self.problems.push(Problem { severity: Severity::Warning, text });
        }
    }
}

impl<G: Fn(&str) -> OptValue> Reader<G> {
    fn format(&mut self) -> Format {
        match (self.get)("format") {
            OptValue::Absent => Format::Plain,
            OptValue::Str(name) if Format::from_name(&name).is_some() => Format::from_name(&name).unwrap_or_default(),
            v => {
                self.bad("format", &v, Format::NAMES, "writing plain lines");
                Format::Plain
            }
        }
    }

    fn forward(&mut self) -> Option<ForwardTarget> {
        const FALLBACK: &str = "dumps go to the file instead";
        match (self.get)("forward") {
            OptValue::Absent => None,
            OptValue::Str(text) => match ForwardTarget::parse(&text) {
                Ok(target) => Some(target),
                Err(why) => {
                    self.bad("forward", &OptValue::Str(text), forward_target::ACCEPTED, &format!("{why}; {FALLBACK}"));
                    None
                }
            },
            v => {
                self.bad("forward", &v, forward_target::ACCEPTED, FALLBACK);
                None
            }
        }
    }

    fn output(&mut self) -> Output {
        let format = self.format();
        let mut forward = self.forward();
        let ca_file = self.path("forward_ca_file");
        let forward_timeout = match self.duration("forward_timeout", DEFAULT_FORWARD_TIMEOUT, MAX_FORWARD_TIMEOUT) {
            Duration::ZERO => {
                let accepted = "more than 0 seconds";
                self.bad("forward_timeout", &(self.get)("forward_timeout"), accepted, "using 120s");
                DEFAULT_FORWARD_TIMEOUT
            }
            d => d,
        };
        if let Some(target) = forward.as_ref().filter(|t| t.transport == Transport::Tls) {
            if ca_file.is_none() && !std::path::Path::new(SYSTEM_CA_FILE).exists() {
                let value = OptValue::Str(target.to_string());
                let why = format!("no 'forward_ca_file' given and no {SYSTEM_CA_FILE}; dumps go to the file instead");
                self.bad("forward", &value, "a tls:// collector with CA certificates to check it", &why);
                forward = None;
            }
        }
        let app_name = match (self.get)("syslog_name") {
            OptValue::Absent => "prosody".to_string(),
            OptValue::Str(s) if !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b)) && s.len() <= 48 => s,
            v => {
                self.bad("syslog_name", &v, "a name of up to 48 printable ASCII characters", "using \"prosody\"");
                "prosody".to_string()
            }
        };
        let facility = match (self.get)("syslog_facility") {
            OptValue::Absent => 3,
            OptValue::Str(s) if FACILITIES.iter().any(|(name, _)| *name == s) => {
                FACILITIES.iter().find(|(name, _)| *name == s).map_or(3, |(_, n)| *n)
            }
            v => {
                self.bad(
                    "syslog_facility",
                    &v,
                    "a syslog facility such as \"daemon\" or \"local0\"",
                    "using \"daemon\"",
                );
                3
            }
        };
        let (framing, max_message, pace) = self.forward_settings(&mut forward);
        Output { format, forward, ca_file, forward_timeout, framing, max_message, pace, app_name, facility }
    }

    /// `forward_framing`, `forward_max_message` and `forward_rate`. A bad value is a config
    /// error that leaves `forward` out: the sink dumps to its file, as for a bad `forward`.
    fn forward_settings(&mut self, forward: &mut Option<ForwardTarget>) -> (Option<StreamFraming>, usize, Pace) {
        const FALLBACK: &str = "dumps go to the file instead";
        let mut bad = false;
        let value = (self.get)("forward_framing");
        let framing = match &value {
            OptValue::Absent => None,
            OptValue::Str(name) if StreamFraming::from_name(name).is_some() => StreamFraming::from_name(name),
            _ => {
                self.bad("forward_framing", &value, StreamFraming::NAMES, FALLBACK);
                bad = true;
                None
            }
        };
        let udp = forward.as_ref().is_some_and(|t| t.transport == Transport::Udp);
        let max = if udp { message_framing::MAX_DATAGRAM } else { message_framing::MAX_STREAM_MESSAGE };
        let value = (self.get)("forward_max_message");
        let max_message = match value.as_count() {
            _ if value == OptValue::Absent => message_framing::DEFAULT_MAX_MESSAGE,
            Some(n) if (message_framing::MIN_MAX_MESSAGE as i64..=max as i64).contains(&n) => n as usize,
            _ => {
                let accepted = format!(
                    "a whole number of bytes from {} to {max}{}",
                    message_framing::MIN_MAX_MESSAGE,
                    if udp { " (udp://)" } else { "" }
                );
                self.bad("forward_max_message", &value, &accepted, FALLBACK);
                bad = true;
                message_framing::DEFAULT_MAX_MESSAGE
            }
        };
        let value = (self.get)("forward_rate");
        let pace = match value.as_count() {
            _ if value == OptValue::Absent => Pace::Auto,
            _ if value == OptValue::Bool(false) => Pace::Unlimited,
            Some(n) if (1..=pacing::MAX_RATE).contains(&n) => Pace::PerSecond(n as u32),
            _ => {
                let accepted = format!("messages per second from 1 to {}, or false for no limit", pacing::MAX_RATE);
                self.bad("forward_rate", &value, &accepted, FALLBACK);
                bad = true;
                Pace::Auto
            }
        };
        if bad {
            *forward = None;
        }
        (framing, max_message, pace)
    }
}

impl SinkOptions {
    /// Reads the options through `get` (`keys`: every key the entry has); reports problems and
    /// uses defaults for bad values.
    pub(crate) fn parse(get: impl Fn(&str) -> OptValue, keys: &[String]) -> (SinkOptions, Vec<Problem>) {
        let mut reader = Reader { get, problems: Vec::new() };
        let mut options = SinkOptions {
            limit: reader.limit(),
            timestamps: reader.timestamps(),
            target: reader.target(),
            min_level: reader.min_level(),
            triggers: reader.triggers(),
            auto: reader.auto_dump(),
            retention: reader.retention(),
            output: reader.output(),
            persist: reader.persist(),
            redact: reader.redact(),
        };
        if options.output.format.precise_time() && (reader.get)("timestamps") != OptValue::Absent {
            let text = format!(
                "Option 'timestamps' is not used with format = \"{}\": lines keep their time in UTC with microseconds",
                options.output.format.name()
            );
            reader.problems.push(Problem { severity: Severity::Warning, text });
        }
        if options.output.format.precise_time() {
            options.timestamps = DateFormat::with_fractions(PRECISE_STAMP).ok();
        }
        reader.unknown_keys(keys);
        (options, reader.problems)
    }

    /// See [`ReloadKey`].
    pub(crate) fn reload_key(&self) -> ReloadKey {
        ReloadKey {
            limit: self.limit,
            timestamps: self.timestamps.as_ref().map(DateFormat::source),
            target: self.target.clone(),
            min_level: self.min_level,
            triggers: self.triggers.clone(),
            auto: self.auto.clone(),
            retention: self.retention.clone(),
            output: self.output.clone(),
            persist: self.persist.clone(),
            redact: self.redact,
        }
    }
}

/// A span as an error message shows it.
fn shown_duration(d: Duration) -> String {
    if d == duration::MAX {
        "no limit".into()
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, OptValue)]) -> (SinkOptions, Vec<Problem>) {
        let keys: Vec<String> = pairs.iter().map(|(k, _)| k.to_string()).collect();
        SinkOptions::parse(
            |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap_or(OptValue::Absent),
            &keys,
        )
    }

    #[test]
    fn defaults() {
        let (o, p) = parse(&[("to", OptValue::Str("ringbuffer".into()))]);
        assert!(p.is_empty());
        assert_eq!(o.limit, Limit::Bytes(DEFAULT_SIZE));
        assert_eq!(o.target, Target::Template(DEFAULT_TEMPLATE.into()));
        assert!(o.timestamps.is_some() && o.triggers.is_empty() && o.min_level.is_none());
    }

    #[test]
    fn documented_options() {
        let (o, p) = parse(&[
            ("size", OptValue::Int(2 * 1024 * 1024)),
            ("lines", OptValue::Float(50.0)),
            ("filename", OptValue::Str("a.log".into())),
            ("filename_template", OptValue::Str("b.log".into())),
            ("signal", OptValue::Str("SIGUSR2".into())),
            ("event", OptValue::Str("debug_traceback/triggered".into())),
            ("timestamps", OptValue::Bool(false)),
            ("level", OptValue::Str("info".into())),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.limit, Limit::Lines(50));
        assert_eq!(o.target, Target::File("a.log".into()));
        assert_eq!(o.timestamps, None);
        assert_eq!(o.min_level, Some(Level::Info));
        assert_eq!(
            o.triggers,
            vec![Trigger::Event("signal/SIGUSR2".into()), Trigger::Event("debug_traceback/triggered".into())]
        );
    }

    #[test]
    fn dumping_by_itself_and_retention() {
        let (o, p) = parse(&[]);
        assert!(p.is_empty());
        assert_eq!(
            o.auto,
            AutoDump {
                on_level: None,
                on_match: None,
                after: Duration::ZERO,
                cooldown: DEFAULT_COOLDOWN,
                on_exit: false,
                on_crash: true,
                on_stall: None
            }
        );
        assert_eq!(o.retention, Retention { keep_dumps: None, compress: None, max_age: None, keep_for: None });
        let (o, p) = parse(&[
            ("dump_on", OptValue::Str("warn".into())),
            ("dump_after", OptValue::Str("2s".into())),
            ("dump_cooldown", OptValue::Float(0.5)),
            ("dump_on_exit", OptValue::Bool(true)),
            ("dump_on_crash", OptValue::Bool(false)),
            ("dump_on_stall", OptValue::Str("5s".into())),
            ("keep_dumps", OptValue::Int(3)),
            ("compress", OptValue::Str("zstd".into())),
            ("max_age", OptValue::Str("15m".into())),
            ("keep_dumps_for", OptValue::Str("14d".into())),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.auto.on_level, Some(Level::Warn));
        assert_eq!((o.auto.after, o.auto.cooldown), (Duration::from_secs(2), Duration::from_millis(500)));
        assert!(o.auto.on_exit && !o.auto.on_crash);
        assert_eq!(o.auto.on_stall, Some(Duration::from_secs(5)));
        assert_eq!(
            o.retention,
            Retention {
                keep_dumps: Some(3),
                compress: Some(Compression::Zstd),
                max_age: Some(Duration::from_secs(900)),
                keep_for: Some(Duration::from_secs(14 * 86_400))
            }
        );
    }

    #[test]
    fn dump_on_stall_takes_seconds_or_text_and_is_off_by_default() {
        assert_eq!(parse(&[]).0.auto.on_stall, None);
        for (value, expected) in [
            (OptValue::Int(5), Some(5)),
            (OptValue::Float(1.0), Some(1)),
            (OptValue::Str("5s".into()), Some(5)),
            (OptValue::Str("1h".into()), Some(3600)),
            (OptValue::Bool(false), None),
        ] {
            let (o, p) = parse(&[("dump_on_stall", value.clone())]);
            assert!(p.is_empty(), "{value:?}: {p:?}");
            assert_eq!(o.auto.on_stall, expected.map(Duration::from_secs), "{value:?}");
        }
        let (o, p) = parse(&[("dump_on_stall", OptValue::Int(3601))]);
        assert_eq!(o.auto.on_stall, None);
        assert!(p[0].text.contains("no stall will dump this buffer"), "{}", p[0].text);
    }

    #[test]
    fn dump_on_match_takes_a_regular_expression_and_a_bad_one_is_left_out() {
        assert_eq!(parse(&[]).0.auto.on_match, None);
        let (o, p) = parse(&[("dump_on_match", OptValue::Str("Slow event|Traceback".into()))]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.auto.on_match.as_ref().map(MessagePattern::source), Some("Slow event|Traceback"));
        assert_eq!(o.auto.on_level, None, "dump_on stays unset");
        for value in [OptValue::Str("Slow (event".into()), OptValue::Str(r"(?:\w{40}){20}".into()), OptValue::Int(1)] {
            let (o, p) = parse(&[("dump_on_match", value.clone())]);
            assert_eq!(o.auto.on_match, None, "{value:?}");
            assert_eq!(p.len(), 1, "{value:?}: {p:?}");
            let text = &p[0].text;
            assert!(text.starts_with("Invalid value for option 'dump_on_match'"), "{text}");
            assert!(text.ends_with("no message will dump this buffer") && !text.contains('\n'), "{text}");
        }
        let (_, p) = parse(&[("dump_on_match", OptValue::Str("Slow (event".into()))]);
        assert!(p[0].text.contains("unclosed group"), "{}", p[0].text);
        let (_, p) = parse(&[("dump_on_match", OptValue::Str(r"(?:\w{40}){20}".into()))]);
        assert!(p[0].text.contains("size limit"), "{}", p[0].text);
    }

    #[test]
    fn forward_timeout_bounds_a_forward() {
        assert_eq!(parse(&[]).0.output.forward_timeout, DEFAULT_FORWARD_TIMEOUT);
        let (o, p) = parse(&[("forward_timeout", OptValue::Str("500ms".into()))]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.output.forward_timeout, Duration::from_millis(500));
        let (o, p) = parse(&[("forward_timeout", OptValue::Int(0))]);
        assert_eq!((o.output.forward_timeout, p[0].text.contains("using 120s")), (DEFAULT_FORWARD_TIMEOUT, true));
    }

    #[test]
    fn forward_framing_max_message_and_rate() {
        let forward = ("forward", OptValue::Str("tcp://127.0.0.1:514".into()));
        let (o, p) = parse(std::slice::from_ref(&forward));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!((o.output.framing, o.output.max_message, o.output.pace), (None, 8192, Pace::Auto));
        let (o, p) = parse(&[
            forward.clone(),
            ("forward_framing", OptValue::Str("lf".into())),
            ("forward_max_message", OptValue::Int(1 << 20)),
            ("forward_rate", OptValue::Bool(false)),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            (o.output.framing, o.output.max_message, o.output.pace),
            (Some(StreamFraming::Lf), 1 << 20, Pace::Unlimited)
        );
        let (o, _) = parse(&[forward.clone(), ("forward_rate", OptValue::Float(200.0))]);
        assert_eq!(o.output.pace, Pace::PerSecond(200));
        let (o, _) = parse(&[("format", OptValue::Str("rfc3164".into()))]);
        assert_eq!(o.output.format, Format::Rfc3164);
    }

    #[test]
    fn a_bad_forward_setting_is_an_error_and_dumps_go_to_the_file() {
        let udp = ("forward", OptValue::Str("udp://127.0.0.1:514".into()));
        let tcp = ("forward", OptValue::Str("tcp://127.0.0.1:514".into()));
        for (forward, name, value, says) in [
            (&tcp, "forward_framing", OptValue::Str("crlf".into()), "expected \"octet-counting\", \"lf\" or \"nul\""),
            (&tcp, "forward_max_message", OptValue::Int(10), "from 480 to 1048576"),
            (&tcp, "forward_max_message", OptValue::Int((1 << 20) + 1), "from 480 to 1048576"),
            (&udp, "forward_max_message", OptValue::Int(65_508), "from 480 to 65507 (udp://)"),
            (&tcp, "forward_rate", OptValue::Int(0), "or false for no limit"),
            (&tcp, "forward_rate", OptValue::Bool(true), "or false for no limit"),
        ] {
            let (o, p) = parse(&[(*forward).clone(), (name, value.clone())]);
            assert_eq!(p.len(), 1, "{name} = {value:?}: {p:?}");
            assert_eq!(p[0].severity, Severity::Error);
            assert!(p[0].text.contains(name) && p[0].text.contains(&value.shown()), "{}", p[0].text);
            assert!(p[0].text.contains(says) && p[0].text.ends_with("dumps go to the file instead"), "{}", p[0].text);
            assert_eq!(o.output.forward, None, "{name}");
        }
    }

    #[test]
    fn keep_dumps_for_takes_spans() {
        for (value, seconds) in [
            (OptValue::Str("14d".into()), 14 * 86_400),
            (OptValue::Str("12h".into()), 43_200),
            (OptValue::Int(60), 60),
            (OptValue::Float(1.0), 1),
        ] {
            let (o, p) = parse(&[("keep_dumps_for", value.clone())]);
            assert!(p.is_empty(), "{value:?}: {p:?}");
            assert_eq!(o.retention.keep_for, Some(Duration::from_secs(seconds)), "{value:?}");
        }
        let (o, p) = parse(&[("keep_dumps_for", OptValue::Str("soon".into()))]);
        assert_eq!(o.retention.keep_for, None);
        assert_eq!(
            p[0].text,
            "Invalid value for option 'keep_dumps_for': \"soon\"; expected a span of more than 0 s and up to 366d, \
             such as \"14d\" or \"12h\" (or seconds); keeping dump files whatever their age"
        );
        // `filter` is the Lua side's: known here, checked there.
        assert!(parse(&[("filter", OptValue::Other("function"))]).1.is_empty());
        let key = |value: &str| parse(&[("keep_dumps_for", OptValue::Str(value.into()))]).0.reload_key();
        assert_ne!(key("14d"), key("12h"));
    }

    #[test]
    fn one_signal_given_twice_is_one_trigger() {
        let (o, _) =
            parse(&[("signal", OptValue::Str("SIGUSR2".into())), ("event", OptValue::Str("signal/SIGUSR2".into()))]);
        assert_eq!(o.triggers, vec![Trigger::Event("signal/SIGUSR2".into())]);
    }

    #[test]
    fn bad_values_fall_back_and_say_why() {
        for (name, value) in [
            ("size", OptValue::Int(0)),
            ("size", OptValue::Int(-1)),
            ("size", OptValue::Str("big".into())),
            ("size", OptValue::Float(2f64.powi(62))),
            ("lines", OptValue::Int(0)),
            ("lines", OptValue::Float(1.5)),
            ("filename", OptValue::Int(42)),
            ("filename_template", OptValue::Other("table")),
            ("signal", OptValue::Str("SIGFOO".into())),
            ("signal", OptValue::Str("USR2".into())),
            ("signal", OptValue::Int(9)),
            ("event", OptValue::Str(String::new())),
            ("timestamps", OptValue::Int(5)),
            ("timestamps", OptValue::Str("%Q".into())),
            ("level", OptValue::Str("verbose".into())),
            ("dump_on", OptValue::Str("fatal".into())),
            ("dump_after", OptValue::Str("2d".into())),
            ("dump_after", OptValue::Int(-1)),
            ("dump_after", OptValue::Int(7200)),
            ("dump_cooldown", OptValue::Other("table")),
            ("dump_on_exit", OptValue::Str("yes".into())),
            ("dump_on_crash", OptValue::Int(1)),
            ("dump_on_stall", OptValue::Int(0)),
            ("dump_on_stall", OptValue::Float(0.5)),
            ("dump_on_stall", OptValue::Str("2h".into())),
            ("dump_on_stall", OptValue::Str("soon".into())),
            ("dump_on_stall", OptValue::Bool(true)),
            ("keep_dumps", OptValue::Int(0)),
            ("keep_dumps", OptValue::Float(2.5)),
            ("compress", OptValue::Str("lz4".into())),
            ("max_age", OptValue::Str("soon".into())),
            ("forward_timeout", OptValue::Int(0)),
            ("forward_timeout", OptValue::Str("2h".into())),
            ("forward_timeout", OptValue::Bool(true)),
            ("keep_dumps_for", OptValue::Int(0)),
            ("keep_dumps_for", OptValue::Str("0d".into())),
            ("keep_dumps_for", OptValue::Str("367d".into())),
            ("keep_dumps_for", OptValue::Str("2 weeks".into())),
            ("keep_dumps_for", OptValue::Bool(true)),
        ] {
            let (o, p) = parse(&[(name, value.clone())]);
            assert_eq!(p.len(), 1, "{name} = {value:?}");
            assert!(p[0].text.contains(name) && p[0].text.contains(&value.shown()), "{}", p[0].text);
            assert_eq!(o.limit, Limit::Bytes(DEFAULT_SIZE));
            assert!(o.triggers.is_empty());
        }
        let (_, p) = parse(&[("colour", OptValue::Bool(true))]);
        assert_eq!(p[0].severity, Severity::Warning);
    }

    #[test]
    fn persist_is_true_false_or_an_absolute_folder() {
        assert_eq!(parse(&[]).0.persist, None);
        assert_eq!(parse(&[("persist", OptValue::Bool(false))]).0.persist, None);
        assert_eq!(parse(&[("persist", OptValue::Bool(true))]).0.persist, Some(Persist::DataDir));
        let dir = parse(&[("persist", OptValue::Str("/run/prosody".into()))]);
        assert_eq!(dir.0.persist, Some(Persist::Dir("/run/prosody".into())));
        for bad in [OptValue::Str("relative".into()), OptValue::Int(1)] {
            let (options, problems) = parse(&[("persist", bad)]);
            assert_eq!(options.persist, None);
            assert!(problems[0].text.contains("Invalid value for option 'persist'"), "{problems:?}");
        }
        let a = parse(&[("persist", OptValue::Bool(true))]).0.reload_key();
        assert_ne!(a, parse(&[]).0.reload_key());
    }

    #[test]
    fn redact_takes_true_a_name_or_a_list() {
        let str = |s: &str| OptValue::Str(s.into());
        assert_eq!(parse(&[]).0.redact, Classes::NONE);
        assert_eq!(parse(&[("redact", OptValue::Bool(false))]).0.redact, Classes::NONE);
        assert_eq!(parse(&[("redact", OptValue::Bool(true))]).0.redact, Classes::ALL_BUT_JIDS);
        assert_eq!(parse(&[("redact", str("jids"))]).0.redact, Classes::JIDS);
        let (o, p) = parse(&[("redact", OptValue::List(vec![str("bodies"), str("jids")]))]);
        assert!(p.is_empty());
        assert_eq!(o.redact, Classes::BODIES.with(Classes::JIDS));
        assert_eq!(parse(&[("redact", OptValue::List(vec![]))]).0.redact, Classes::NONE);
        assert_ne!(o.reload_key(), parse(&[("redact", str("bodies"))]).0.reload_key());
    }

    #[test]
    fn redact_with_an_unknown_class_keeps_the_known_ones_and_says_so() {
        let str = |s: &str| OptValue::Str(s.into());
        let (o, p) = parse(&[("redact", OptValue::List(vec![str("bodys"), str("addresses"), OptValue::Int(3)]))]);
        assert_eq!(o.redact, Classes::ADDRESSES);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].severity, Severity::Error);
        assert!(
            p[0].text.contains("Invalid value for option 'redact': { \"bodys\", \"addresses\", 3 }"),
            "{}",
            p[0].text
        );
        assert!(
            p[0].text.contains("unknown \"bodys\", 3") && p[0].text.ends_with("redacting addresses only"),
            "{}",
            p[0].text
        );
        let (o, p) = parse(&[("redact", str("everything"))]);
        assert_eq!(o.redact, Classes::NONE);
        assert!(p[0].text.ends_with("redacting nothing else"), "{}", p[0].text);
        // A value of the wrong kind: the admin meant to redact; what true does is done.
        for wrong in [OptValue::Int(1), OptValue::Other("function")] {
            let (o, p) = parse(&[("redact", wrong)]);
            assert_eq!(o.redact, Classes::ALL_BUT_JIDS);
            assert!(p[0].text.contains("redacting what redact = true does"), "{}", p[0].text);
        }
    }

    #[test]
    fn reload_key_tells_equal_options_apart() {
        let a = parse(&[("size", OptValue::Int(1000))]).0.reload_key();
        assert_eq!(a, parse(&[("size", OptValue::Float(1000.0))]).0.reload_key());
        assert_ne!(a, parse(&[("size", OptValue::Int(1001))]).0.reload_key());
        assert_ne!(
            a,
            parse(&[("size", OptValue::Int(1000)), ("timestamps", OptValue::Str("%H".into()))]).0.reload_key()
        );
    }
}
