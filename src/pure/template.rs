//! Dump file names: `filename_template` rendered the way Prosody's `util.interpolation` does
//! with the upstream module's variables (`{pid}`, `{count}`, `{time}`, `{paths.*}`) and
//! filters (`|yyyymmdd`, `|hhmmss`, local time).
//!
//! Rendering happens in Rust because native signal triggers dump without the Lua thread.
//! Unknown variables are left as written; an unknown filter leaves the value unfiltered;
//! `{name?default}`, `{name&text}` and `{name~text}` render their sub-templates.

use crate::pure::date::DateFormat;

/// The values a template can refer to at dump time.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// `{pid}`: the process id.
    pub pid: u32,
    /// `{count}`: the dump's number in this process, from 0.
    pub count: u64,
    /// `{time}`: the dump's unix time, for `{time|yyyymmdd}` and `{time|hhmmss}` too.
    pub time: i64,
    /// Prosody's `prosody.paths` (`data`, `config`, ...).
    pub paths: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Int(i64),
    Text(std::borrow::Cow<'a, str>),
    /// The `paths` table itself.
    Paths,
}

impl Values {
    fn lookup(&self, name: &str) -> Option<Value<'_>> {
        let direct = match name {
            "pid" => Some(Value::Int(i64::from(self.pid))),
            "count" => Some(Value::Int(self.count as i64)),
            "time" => Some(Value::Int(self.time)),
            "paths" => Some(Value::Paths),
            _ => None,
        };
        if direct.is_some() || !name[1..].contains('.') {
            return direct;
        }
        // Dotted names walk into tables; only `paths` is a table here.
        let mut words = name.split('.').filter(|w| !w.is_empty());
        match (words.next(), words.next(), words.next()) {
            (Some("paths"), Some(key), None) => {
                self.paths.iter().find(|(k, _)| k == key).map(|(_, v)| Value::Text(v.as_str().into()))
            }
            _ => None,
        }
    }
}

fn apply_filter<'a>(filter: &str, value: Value<'a>) -> Value<'a> {
    let pattern = match filter {
        "yyyymmdd" => "%Y%m%d",
        "hhmmss" => "%H%M%S",
        _ => return value,
    };
    let time = match &value {
        Value::Int(t) => *t,
        Value::Text(s) => match s.trim().parse::<i64>() {
            Ok(t) => t,
            Err(_) => return value,
        },
        Value::Paths => return value,
    };
    let mut out = Vec::new();
    if let Ok(format) = DateFormat::new(pattern) {
        format.render(time, &mut out);
    }
    Value::Text(String::from_utf8_lossy(&out).into_owned().into())
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

/// Matches `^([%a_][%w_.]*)(!?)(%p?)()` at `at`: (name, position after name, option, next).
pub(crate) fn match_name(block: &str, at: usize) -> Option<(&str, Option<u8>, usize)> {
    let bytes = block.as_bytes();
    if !bytes.get(at).copied().is_some_and(is_name_start) {
        return None;
    }
    let mut end = at + 1;
    while bytes.get(end).copied().is_some_and(is_name_char) {
        end += 1;
    }
    let name = &block[at..end];
    let mut pos = end;
    if bytes.get(pos) == Some(&b'!') {
        pos += 1;
    }
    let opt = bytes.get(pos).copied().filter(u8::is_ascii_punctuation);
    if opt.is_some() {
        pos += 1;
    }
    Some((name, opt, pos))
}

/// Finds the `}` that balances the `{` at `open`, like Lua's `%b{}`.
pub(crate) fn balanced_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Renders `template` with `values`.
pub fn render(template: &str, values: &Values) -> String {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len() + 32);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            if let Some(close) = balanced_end(bytes, i) {
                let block = &template[i + 1..close];
                out.push_str(&template[copied..i]);
                match render_block(block, values) {
                    Some(text) => out.push_str(&text),
                    None => out.push_str(&template[i..=close]),
                }
                i = close + 1;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&template[copied..]);
    out
}

/// One `{...}` block; `None` leaves it as written.
fn render_block(block: &str, values: &Values) -> Option<String> {
    let (name, mut opt, mut next) = match_name(block, 0)?;
    let mut value = values.lookup(name);
    while opt == Some(b'|') {
        let (filter, filter_opt, after) = match match_name(block, next) {
            Some(m) => m,
            None => {
                opt = None;
                break;
            }
        };
        if let Some(v) = value {
            value = Some(apply_filter(filter, v));
        }
        opt = filter_opt;
        next = after;
    }
    let truthy = value.is_some();
    let rest = &block[next..];
    match opt {
        Some(b'#') | Some(b'%') => Some(String::new()),
        Some(b'&') => Some(if truthy { render(rest, values) } else { String::new() }),
        Some(b'~') => Some(if truthy { String::new() } else { render(rest, values) }),
        Some(b'?') if !truthy => Some(render(rest, values)),
        _ => match value? {
            Value::Int(n) => Some(n.to_string()),
            Value::Text(s) => Some(s.into_owned()),
            // tostring() of a table: not a useful file name, but what Prosody would print.
            Value::Paths => Some("table".to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values { pid: 4242, count: 7, time: 86_400 * 365, paths: vec![("data".into(), "/var/lib/prosody".into())] }
    }

    #[test]
    fn default_template() {
        assert_eq!(
            render("{paths.data}/ringbuffer-logs-{pid}-{count}.log", &values()),
            "/var/lib/prosody/ringbuffer-logs-4242-7.log"
        );
    }

    #[test]
    fn unknown_names_are_left_as_written() {
        assert_eq!(render("{nope}-{paths.nope}-{}-{1x}-{pid", &values()), "{nope}-{paths.nope}-{}-{1x}-{pid");
    }

    #[test]
    fn filters() {
        std::env::set_var("TZ", "UTC");
        assert_eq!(render("{time}", &values()), "31536000");
        assert_eq!(render("{time|yyyymmdd}-{time|hhmmss}", &values()), "19710101-000000");
        assert_eq!(render("{time|bogus}", &values()), "31536000");
        assert_eq!(render("{nope|yyyymmdd}", &values()), "{nope|yyyymmdd}");
    }

    #[test]
    fn defaults_and_conditionals() {
        assert_eq!(render("{nope?fallback-{pid}}", &values()), "fallback-4242");
        assert_eq!(render("{pid?fallback}", &values()), "4242");
        assert_eq!(render("{pid&yes}{nope&no}{nope~none}", &values()), "yesnone");
    }
}
