//! Sink options: the user's `log = { { to = "ringbuffer", ... } }` entry, checked and normalised.
//!
//! A bad value never stops Prosody and never loses capture: the option falls back to its
//! default (or the trigger is left out) and a problem is reported for Prosody's log, naming the
//! option, the value and what is accepted.

use crate::format::DateFormat;
use crate::ring::{Limit, MIN_SIZE};
use crate::triggers::{self, Trigger};

pub const DEFAULT_SIZE: usize = 100 * 1024;
/// Larger rings are almost certainly a typo (memory is only used as lines arrive, but still).
pub const MAX_SIZE: usize = 1 << 36;
pub const MAX_LINES: usize = 1 << 28;
pub const DEFAULT_TEMPLATE: &str = "{paths.data}/ringbuffer-logs-{pid}-{count}.log";
const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const KNOWN: [&str; 10] =
    ["to", "level", "levels", "size", "lines", "filename", "filename_template", "signal", "event", "timestamps"];

/// An option's value as the config file gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum OptValue {
    Absent,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Any other Lua type, by name (`table`, `function`, ...).
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
                crate::format::push_float(*n, &mut text);
                String::from_utf8_lossy(&text).into_owned()
            }
            OptValue::Str(s) => format!("{s:?}"),
            OptValue::Other(t) => format!("a {t}"),
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
pub enum Target {
    /// `filename`: used as written.
    File(String),
    /// `filename_template`, rendered at each dump.
    Template(String),
}

/// A problem with the config, for Prosody's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `"error"` for a value that was replaced or dropped, `"warn"` for something ignored.
    pub level: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkOptions {
    pub limit: Limit,
    /// `None`: no timestamps. Otherwise the `os.date` format, with the trailing space added.
    pub timestamps: Option<DateFormat>,
    pub target: Target,
    pub min_level: Option<&'static str>,
    pub triggers: Vec<Trigger>,
}

impl SinkOptions {
    /// Reads the options through `get`; reports problems and uses defaults for bad values.
    pub fn parse(get: impl Fn(&str) -> OptValue, keys: &[String]) -> (SinkOptions, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut bad = |option: &str, value: &OptValue, accepted: &str, fallback: &str| {
            problems.push(Problem {
                level: "error",
                text: format!(
                    "Invalid value for option '{option}': {}; expected {accepted}; {fallback}",
                    value.shown()
                ),
            });
        };

        let size_value = get("size");
        let size = match &size_value {
            OptValue::Absent => DEFAULT_SIZE,
            v => match v.as_count() {
                Some(n) if (MIN_SIZE as i64..=MAX_SIZE as i64).contains(&n) => n as usize,
                _ => {
                    bad(
                        "size",
                        v,
                        &format!("a whole number of bytes from {MIN_SIZE} to {MAX_SIZE}"),
                        &format!("using the default of {DEFAULT_SIZE}"),
                    );
                    DEFAULT_SIZE
                }
            },
        };
        let lines_value = get("lines");
        let limit = match &lines_value {
            OptValue::Absent => Limit::Bytes(size),
            v => match v.as_count() {
                Some(n) if (1..=MAX_LINES as i64).contains(&n) => Limit::Lines(n as usize),
                _ => {
                    bad(
                        "lines",
                        v,
                        &format!("a whole number from 1 to {MAX_LINES}"),
                        "keeping lines by 'size' instead",
                    );
                    Limit::Bytes(size)
                }
            },
        };

        let timestamps_value = get("timestamps");
        let default_stamp = || DateFormat::new(crate::dump::DEFAULT_TIMESTAMP).ok();
        let timestamps = match &timestamps_value {
            OptValue::Absent | OptValue::Bool(true) => default_stamp(),
            OptValue::Bool(false) => None,
            OptValue::Str(s) => match DateFormat::new(&format!("{s} ")) {
                Ok(f) => Some(f),
                Err(why) => {
                    bad(
                        "timestamps",
                        &timestamps_value,
                        "true, false or an os.date format",
                        &format!("{why}; using the default format"),
                    );
                    default_stamp()
                }
            },
            v => {
                bad("timestamps", v, "true, false or an os.date format", "using the default format");
                default_stamp()
            }
        };

        let mut path_option = |name: &str| match get(name) {
            OptValue::Absent => None,
            OptValue::Str(s) if !s.is_empty() => Some(s),
            v => {
                bad(name, &v, "a file name (string)", "ignoring it");
                None
            }
        };
        let filename = path_option("filename");
        let template = path_option("filename_template");
        let target = match (filename, template) {
            (Some(f), _) => Target::File(f),
            (None, Some(t)) => Target::Template(t),
            (None, None) => Target::Template(DEFAULT_TEMPLATE.into()),
        };

        let min_level = match get("level") {
            OptValue::Absent => None,
            OptValue::Str(s) if LEVELS.contains(&s.as_str()) => LEVELS.iter().copied().find(|l| *l == s),
            v => {
                bad("level", &v, "one of \"debug\", \"info\", \"warn\", \"error\"", "capturing every level");
                None
            }
        };

        let mut triggers = Vec::new();
        match get("signal") {
            OptValue::Absent => {}
            OptValue::Str(name) => match triggers::parse_signal(&name) {
                Ok(t) => triggers.push(t),
                Err(why) => bad("signal", &OptValue::Str(name.clone()), &why, "no signal will dump this buffer"),
            },
            v => bad("signal", &v, "a signal name such as \"SIGUSR2\"", "no signal will dump this buffer"),
        }
        match get("event") {
            OptValue::Absent => {}
            OptValue::Str(name) if !name.is_empty() => triggers.push(Trigger::Event(name)),
            v => bad("event", &v, "the name of a Prosody global event", "no event will dump this buffer"),
        }

        for key in keys {
            if !KNOWN.contains(&key.as_str()) {
                problems.push(Problem {
                    level: "warn",
                    text: format!("Unknown option '{key}' ignored; known options are: {}", KNOWN[1..].join(", ")),
                });
            }
        }

        (SinkOptions { limit, timestamps, target, min_level, triggers }, problems)
    }

    /// A text that is equal for two sinks exactly when their buffers can be shared across a
    /// logging reload.
    pub fn key(&self) -> String {
        format!("{self:?}")
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
        assert_eq!(o.min_level, Some("info"));
        assert_eq!(
            o.triggers,
            vec![Trigger::Event("signal/SIGUSR2".into()), Trigger::Event("debug_traceback/triggered".into())]
        );
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
        ] {
            let (o, p) = parse(&[(name, value.clone())]);
            assert_eq!(p.len(), 1, "{name} = {value:?}");
            assert!(p[0].text.contains(name) && p[0].text.contains(&value.shown()), "{}", p[0].text);
            assert_eq!(o.limit, Limit::Bytes(DEFAULT_SIZE));
            assert!(o.triggers.is_empty());
        }
        let (_, p) = parse(&[("colour", OptValue::Bool(true))]);
        assert_eq!(p[0].level, "warn");
    }

    #[test]
    fn key_tells_equal_options_apart() {
        let a = parse(&[("size", OptValue::Int(1000))]).0.key();
        assert_eq!(a, parse(&[("size", OptValue::Float(1000.0))]).0.key());
        assert_ne!(a, parse(&[("size", OptValue::Int(1001))]).0.key());
    }
}
