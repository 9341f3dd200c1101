//! Dump file names: `filename_template` parsed once, rendered the way Prosody's
//! `util.interpolation` does with the upstream module's variables (`{pid}`, `{count}`, `{time}`,
//! `{paths.*}`) and filters (`|yyyymmdd`, `|hhmmss`, local time); also read as the pattern of the
//! names it makes (for `keep_dumps`, see `dump_names`) and with the places `{pid}` put its digits
//! (for a forked child's crash dump, see `runtime::crash`).
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

/// A `filename_template`, parsed.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

/// One part of a (sub-)template.
#[derive(Debug, Clone)]
enum Node {
    /// Text written as it is (including blocks that are not variables).
    Text(String),
    /// A `{...}` block naming a variable.
    Block(Block),
}

#[derive(Debug, Clone)]
struct Block {
    var: Var,
    /// The date filters, in order (unknown filters change nothing and are left out).
    filters: Vec<DateFilter>,
    then: Then,
    /// The block as written, for a variable that is not set.
    written: String,
}

/// What a block renders, by the punctuation after its name (and filters).
#[derive(Debug, Clone)]
enum Then {
    /// `{name}`: the value, or the block as written if the variable is not set.
    Value,
    /// `{name?default}`: the value, or the sub-template if the variable is not set.
    Default(Vec<Node>),
    /// `{name&text}`: the sub-template if the variable is set.
    IfSet(Vec<Node>),
    /// `{name~text}`: the sub-template if the variable is not set.
    IfUnset(Vec<Node>),
}

/// What a name refers to.
#[derive(Debug, Clone, PartialEq)]
enum Var {
    Number(Number),
    /// `{paths}`: the table itself.
    Paths,
    /// `{paths.key}`.
    Path(String),
    /// Anything else: never set.
    Unknown,
}

/// The variables that are numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Pid,
    Count,
    Time,
}

/// The filters that change a value: a date in local time, as `os.date` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateFilter {
    /// `|yyyymmdd`
    Date,
    /// `|hhmmss`
    Time,
}

impl DateFilter {
    fn of(name: &str) -> Option<Self> {
        match name {
            "yyyymmdd" => Some(DateFilter::Date),
            "hhmmss" => Some(DateFilter::Time),
            _ => None,
        }
    }

    /// The `os.date` format, in `zone`.
    fn format(self, zone: Zone) -> &'static str {
        match (self, zone) {
            (DateFilter::Date, Zone::Local) => "%Y%m%d",
            (DateFilter::Time, Zone::Local) => "%H%M%S",
            #[cfg(test)]
            (DateFilter::Date, Zone::Utc) => "!%Y%m%d",
            #[cfg(test)]
            (DateFilter::Time, Zone::Utc) => "!%H%M%S",
        }
    }

    /// How many digits it writes (for a year from 1000 to 9999).
    fn digits(self) -> usize {
        match self {
            DateFilter::Date => 8,
            DateFilter::Time => 6,
        }
    }
}

/// The time zone the date filters write in: local time (`TZ`) for dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    Local,
    /// Lets tests render dates without setting `TZ` (which races with other threads).
    #[cfg(test)]
    Utc,
}

/// One part of a template's [`Template::pattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text that must be there exactly.
    Literal(String),
    /// ASCII digits: exactly `len` of them, or at least one.
    Digits { len: Option<usize> },
}

/// A template read as a pattern: its pieces, and whether the name changes from dump to dump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Pattern {
    /// In order, adjacent literals joined.
    pub(crate) pieces: Vec<Piece>,
    /// Whether `{count}` or `{time}` is among them.
    pub(crate) per_dump: bool,
}

impl Template {
    /// Parses `source`. Every text is a template: what is not a variable is written as it is.
    pub fn parse(source: &str) -> Template {
        Template { source: source.to_string(), nodes: parse_nodes(source) }
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template with `values`.
    pub fn render(&self, values: &Values) -> String {
        self.render_in(values, Zone::Local)
    }

    /// [`Template::render`], with the date filters in `zone`.
    pub(crate) fn render_in(&self, values: &Values, zone: Zone) -> String {
        let mut out = Rendering::new(values, zone, self.source.len());
        walk(&self.nodes, &values.paths, zone, &mut out);
        out.text
    }

    /// [`Template::render`], and where `{pid}` put its digits in the name, in order (a forked
    /// child puts its own PID there); `None` when the PID also shapes the name in another way
    /// (under a date filter).
    pub(crate) fn render_with_pid_positions(&self, values: &Values) -> (String, Option<Vec<usize>>) {
        let mut out = Rendering::new(values, Zone::Local, self.source.len());
        walk(&self.nodes, &values.paths, Zone::Local, &mut out);
        (out.text, out.pid_positions)
    }

    /// The names the template makes with Prosody's `paths`, whatever the PID, count and time:
    /// the text it renders, with each `{pid}`, `{count}` and `{time}` a run of digits (of
    /// fixed length under a date filter).
    pub(crate) fn pattern(&self, paths: &[(String, String)]) -> Pattern {
        let mut out = Pattern::default();
        walk(&self.nodes, paths, Zone::Local, &mut out);
        out
    }
}

impl From<&str> for Template {
    fn from(source: &str) -> Self {
        Template::parse(source)
    }
}

impl From<String> for Template {
    fn from(source: String) -> Self {
        Template::parse(&source)
    }
}

/// Templates are the same if they are written the same.
impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

impl std::hash::Hash for Template {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

// ---- Parsing ----

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

/// Matches `^([%a_][%w_.]*)(!?)(%p?)()` at `at`: (name, position after name, option, next).
fn match_name(block: &str, at: usize) -> Option<(&str, Option<u8>, usize)> {
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
fn balanced_end(bytes: &[u8], open: usize) -> Option<usize> {
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

/// Appends `node`, joining adjacent texts.
fn push(nodes: &mut Vec<Node>, node: Node) {
    match (nodes.last_mut(), node) {
        (_, Node::Text(text)) if text.is_empty() => {}
        (Some(Node::Text(last)), Node::Text(text)) => last.push_str(&text),
        (_, node) => nodes.push(node),
    }
}

fn parse_nodes(template: &str) -> Vec<Node> {
    let bytes = template.as_bytes();
    let mut nodes = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            if let Some(close) = balanced_end(bytes, i) {
                push(&mut nodes, Node::Text(template[copied..i].to_string()));
                let written = &template[i..=close];
                match parse_block(&template[i + 1..close], written) {
                    Parsed::Block(block) => push(&mut nodes, Node::Block(block)),
                    Parsed::Nothing => {}
                    Parsed::AsWritten => push(&mut nodes, Node::Text(written.to_string())),
                }
                i = close + 1;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    push(&mut nodes, Node::Text(template[copied..].to_string()));
    nodes
}

/// What a `{...}` block is.
enum Parsed {
    Block(Block),
    /// `{name#...}` and `{name%...}`: it renders nothing.
    Nothing,
    /// Not a variable: it is written as it is.
    AsWritten,
}

/// One `{...}` block (`block` is what is between the braces).
fn parse_block(block: &str, written: &str) -> Parsed {
    let Some((name, mut opt, mut next)) = match_name(block, 0) else { return Parsed::AsWritten };
    let mut filters = Vec::new();
    while opt == Some(b'|') {
        let Some((filter, filter_opt, after)) = match_name(block, next) else {
            opt = None;
            break;
        };
        filters.extend(DateFilter::of(filter));
        opt = filter_opt;
        next = after;
    }
    let rest = &block[next..];
    let then = match opt {
        Some(b'#') | Some(b'%') => return Parsed::Nothing,
        Some(b'&') => Then::IfSet(parse_nodes(rest)),
        Some(b'~') => Then::IfUnset(parse_nodes(rest)),
        Some(b'?') => Then::Default(parse_nodes(rest)),
        _ => Then::Value,
    };
    Parsed::Block(Block { var: Var::of(name), filters, then, written: written.to_string() })
}

impl Var {
    fn of(name: &str) -> Var {
        match name {
            "pid" => return Var::Number(Number::Pid),
            "count" => return Var::Number(Number::Count),
            "time" => return Var::Number(Number::Time),
            "paths" => return Var::Paths,
            _ if !name[1..].contains('.') => return Var::Unknown,
            _ => {}
        }
        // Dotted names walk into tables; only `paths` is a table here.
        let mut words = name.split('.').filter(|w| !w.is_empty());
        match (words.next(), words.next(), words.next()) {
            (Some("paths"), Some(key), None) => Var::Path(key.to_string()),
            _ => Var::Unknown,
        }
    }

    /// The variable's value with Prosody's `paths`; `None`: not set.
    fn lookup<'a>(&self, paths: &'a [(String, String)]) -> Option<Value<'a>> {
        match self {
            Var::Number(number) => Some(Value::Number(*number)),
            Var::Paths => Some(Value::Paths),
            Var::Path(key) => paths.iter().find(|(k, _)| k == key).map(|(_, v)| Value::Text(v)),
            Var::Unknown => None,
        }
    }
}

// ---- Rendering ----

/// A set variable's value.
enum Value<'a> {
    Number(Number),
    Text(&'a str),
    /// The `paths` table itself.
    Paths,
}

/// What a walk over a template writes to.
trait Output {
    fn text(&mut self, text: &str);
    /// `{pid}`, `{count}` or `{time}` through `filters`.
    fn number(&mut self, number: Number, filters: &[DateFilter]);
}

/// Renders `nodes` into `out`; only `{pid}`, `{count}` and `{time}` are left to `out`.
fn walk(nodes: &[Node], paths: &[(String, String)], zone: Zone, out: &mut impl Output) {
    for node in nodes {
        let block = match node {
            Node::Text(text) => {
                out.text(text);
                continue;
            }
            Node::Block(block) => block,
        };
        let value = block.var.lookup(paths);
        match (&block.then, value) {
            (Then::IfSet(sub), Some(_)) | (Then::IfUnset(sub), None) | (Then::Default(sub), None) => {
                walk(sub, paths, zone, out)
            }
            (Then::IfSet(_) | Then::IfUnset(_), _) => {}
            (Then::Value, None) => out.text(&block.written),
            (Then::Value | Then::Default(_), Some(Value::Number(number))) => out.number(number, &block.filters),
            (Then::Value | Then::Default(_), Some(Value::Text(text))) => {
                out.text(&filtered(text.to_string(), &block.filters, zone))
            }
            // tostring() of a table: not a useful file name, but what Prosody would print.
            (Then::Value | Then::Default(_), Some(Value::Paths)) => out.text("table"),
        }
    }
}

/// `text` through the date filters: each reads it as a unix time; text that is not one stays.
fn filtered(mut text: String, filters: &[DateFilter], zone: Zone) -> String {
    for filter in filters {
        let Ok(time) = text.trim().parse::<i64>() else { continue };
        let mut out = Vec::new();
        if let Ok(format) = DateFormat::new(filter.format(zone)) {
            format.render(time, &mut out);
        }
        text = String::from_utf8_lossy(&out).into_owned();
    }
    text
}

/// A rendering, with where `{pid}` went.
struct Rendering<'a> {
    values: &'a Values,
    zone: Zone,
    text: String,
    pid_positions: Option<Vec<usize>>,
}

impl<'a> Rendering<'a> {
    fn new(values: &'a Values, zone: Zone, size: usize) -> Self {
        Rendering { values, zone, text: String::with_capacity(size + 32), pid_positions: Some(Vec::new()) }
    }
}

impl Output for Rendering<'_> {
    fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn number(&mut self, number: Number, filters: &[DateFilter]) {
        let value = match number {
            Number::Pid => i64::from(self.values.pid),
            Number::Count => self.values.count as i64,
            Number::Time => self.values.time,
        };
        if number == Number::Pid {
            match (&mut self.pid_positions, filters.is_empty()) {
                (Some(positions), true) => positions.push(self.text.len()),
                _ => self.pid_positions = None,
            }
        }
        self.text.push_str(&filtered(value.to_string(), filters, self.zone));
    }
}

impl Output for Pattern {
    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(Piece::Literal(last)) = self.pieces.last_mut() {
            last.push_str(text);
        } else {
            self.pieces.push(Piece::Literal(text.to_string()));
        }
    }

    fn number(&mut self, number: Number, filters: &[DateFilter]) {
        self.per_dump |= number != Number::Pid;
        self.pieces.push(Piece::Digits { len: filters.last().map(|f| f.digits()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values { pid: 4242, count: 7, time: 86_400 * 365, paths: vec![("data".into(), "/var/lib/prosody".into())] }
    }

    /// Renders in UTC: the test needs no `TZ`.
    fn render(template: &str, values: &Values) -> String {
        Template::parse(template).render_in(values, Zone::Utc)
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

    #[test]
    fn the_pid_positions_are_where_its_digits_went() {
        let values = values();
        let at = |template: &str| Template::parse(template).render_with_pid_positions(&values);
        let root = "/var/lib/prosody";
        assert_eq!(
            at("{paths.data}/{pid}/x-{pid}-{count}.log"),
            (format!("{root}/4242/x-4242-7.log"), Some(vec![root.len() + 1, root.len() + 8]))
        );
        assert_eq!(at("{paths.data}/x.log"), (format!("{root}/x.log"), Some(vec![])));
        assert_eq!(at("{pid|bogus}{nope?-{pid}}{pid&-{pid}}{pid#x}"), ("4242-4242-4242".into(), Some(vec![0, 5, 10])));
        // Under a date filter the PID is not where its digits are.
        assert_eq!(at("a-{pid}-{pid|hhmmss}").1, None);
        // Putting another PID at the positions is rendering with it.
        for template in ["{pid}", "x{pid}{pid}y-{count}", "{nope~{pid}}/{time}-{pid?z}", "{count}-{pid}"] {
            let (text, positions) = at(template);
            let other = Values { pid: 1_234_567, ..values.clone() };
            let mut moved = text.clone();
            for &p in positions.expect("positions").iter().rev() {
                assert_eq!(&text[p..p + 4], "4242");
                moved.replace_range(p..p + 4, "1234567");
            }
            assert_eq!(moved, Template::parse(template).render(&other), "{template}");
        }
    }

    #[test]
    fn a_template_is_what_it_says() {
        let template = Template::parse("{paths.data}/d-{count}.log");
        assert_eq!(template.source(), "{paths.data}/d-{count}.log");
        assert_eq!(template, Template::from("{paths.data}/d-{count}.log".to_string()));
        assert_ne!(template, Template::from("{paths.data}/d-{pid}.log"));
    }
}
