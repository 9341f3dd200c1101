//! A dump as records, and how each `format` renders them: plain (the Lua module's bytes), JSON
//! Lines, RFC 5424 and RFC 3164 in files; RFC 5424 (or RFC 3164) messages over the network and
//! syslog(3)'s local form over a unix socket when forwarding.
//!
//! A dump is a begin record (the header), its notes, one record per buffered line and an end
//! record (the footer). Outside plain files every record carries the dump's id and its position
//! in the dump (`seq`, the begin record being 0), so a receiver can order them and tell a resend.

use super::date::DateFormat;
use super::level::Level;
use super::ring::{Line, Meta, Ring};

/// The timestamp format of the dump header and of plain lines by default.
pub(crate) use super::date::DEFAULT_TIMESTAMP;

/// The plain footer.
pub(crate) const FOOTER: &[u8] = b"-- End of dump --\n\n";

/// The line timestamp a `json` or `rfc5424` sink keeps: RFC 3339 in UTC, microseconds.
pub(crate) const PRECISE_STAMP: &str = "!%Y-%m-%dT%H:%M:%S.%6NZ ";

/// The source of the begin, note and end records, and their RFC 5424 MSGID.
const MARKER_SOURCE: &str = "mod_log_ringbuffer";

/// RFC 5424 structured data ID of every record. 32473 is the enterprise number RFC 5612
/// reserves for documentation: the module has none of its own, and receivers only match the name.
const SD_ID: &str = "ringbuffer@32473";

/// The `format` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Lua module's bytes.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
    /// One RFC 5424 syslog message per line.
    Rfc5424,
    /// One BSD syslog message (RFC 3164) per line: `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`,
    /// MSG being what follows RFC 5424's PROCID (MSGID, structured data, the message).
    Rfc3164,
}

impl Format {
    pub(crate) const NAMES: &'static str = "\"plain\", \"json\", \"rfc5424\" or \"rfc3164\"";

    pub(crate) fn from_name(name: &str) -> Option<Format> {
        match name {
            "plain" => Some(Format::Plain),
            "json" => Some(Format::Json),
            "rfc5424" => Some(Format::Rfc5424),
            "rfc3164" => Some(Format::Rfc3164),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Json => "json",
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
        }
    }

    /// Whether lines keep the precise UTC stamp ([`PRECISE_STAMP`]) instead of `timestamps`.
    pub(crate) fn precise_time(self) -> bool {
        matches!(self, Format::Json | Format::Rfc5424)
    }
}

/// Where rendered records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A file: each record ends with a newline.
    File,
    /// A syslog collector over UDP, TCP or TLS: each record is one RFC 5424 message.
    Network,
    /// A local syslog socket (`/dev/log`): each record is one message in syslog(3)'s form.
    Local,
}

/// Who sends, in syslog's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub hostname: String,
    /// APP-NAME (`syslog_name`).
    pub app_name: String,
    pub pid: u32,
    /// `syslog_facility`, as its number.
    pub facility: u8,
}

/// The syslog facilities by name (`syslog_facility`), as syslog(3) numbers them.
pub(crate) const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// One dump's framing: what it writes besides its lines.
#[derive(Debug, Clone)]
pub struct Framing {
    pub format: Format,
    /// When the dump was made (the header's time).
    pub time: i64,
    /// Notices after the header, without the plain form's `-- ` and ` --`.
    pub notes: Vec<String>,
    /// The dump's id and why it was made (not shown in plain files).
    pub id: String,
    pub reason: String,
    pub identity: Identity,
}

/// The fields of a stored line: `<stamp><source>\t<level>\t<message>\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    pub stamp: &'a [u8],
    pub source: &'a [u8],
    pub level: &'a [u8],
    pub message: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Splits a stored line; a line without its fields (cut by the limit) is all message.
    pub fn of(line: &'a [u8], meta: Meta) -> Fields<'a> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let whole = Fields { stamp: b"", source: b"", level: b"", message: line };
        let at = usize::from(meta.source_at);
        if meta.source_at == Meta::NO_SOURCE || at > line.len() {
            return whole;
        }
        let (stamp, rest) = line.split_at(at);
        let mut parts = rest.splitn(3, |&b| b == b'\t');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(source), Some(level), Some(message)) => Fields { stamp, source, level, message },
            _ => whole,
        }
    }
}

/// What kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Begin,
    Note,
    Line,
    End,
}

impl Event {
    fn name(self) -> Option<&'static str> {
        match self {
            Event::Begin => Some("begin"),
            Event::Note => Some("note"),
            Event::End => Some("end"),
            Event::Line => None,
        }
    }
}

/// One record about to be rendered.
struct Record<'a> {
    event: Event,
    /// RFC 3339 time.
    time: &'a [u8],
    /// syslog(3)'s local time (`Mmm dd HH:MM:SS`), for [`Wire::Local`] and RFC 3164.
    local_time: &'a [u8],
    source: &'a [u8],
    level: &'a [u8],
    message: &'a [u8],
    /// The plain form, without newline (for plain records on a wire).
    plain: &'a [u8],
}

/// Renders a dump's records one after the other into `emit`: whole records, except that a
/// plain file's lines are given in the pieces the ring holds them in.
pub fn write<E>(
    framing: &Framing,
    wire: Wire,
    lines: &Ring,
    mut emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    if framing.format == Format::Plain && wire == Wire::File {
        emit(&plain_header(framing.time))?;
        for note in &framing.notes {
            emit(format!("-- {note} --\n").as_bytes())?;
        }
        for line in lines.iter() {
            for piece in line.pieces() {
                emit(piece)?;
            }
        }
        return emit(FOOTER);
    }
    let mut renderer = Renderer::new(framing, wire, lines.lines());
    let mut out = Vec::new();
    renderer.begin(&mut out);
    emit(&out)?;
    for note in &framing.notes {
        out.clear();
        renderer.note(note, &mut out);
        emit(&out)?;
    }
    let mut joined = Vec::new();
    for line in lines.iter() {
        out.clear();
        renderer.line(line, &mut joined, &mut out);
        emit(&out)?;
    }
    out.clear();
    renderer.end(&mut out);
    emit(&out)
}

/// The length of [`write`]'s output for a plain file with `text_bytes` of lines.
pub fn plain_len(framing: &Framing, text_bytes: usize) -> usize {
    let notes: usize = framing.notes.iter().map(|note| note.len() + 7).sum();
    plain_header(framing.time).len() + notes + text_bytes + FOOTER.len()
}

/// The plain dump header for a dump made at `time`.
pub fn plain_header(time: i64) -> Vec<u8> {
    let mut header = b"-- Dumping log buffer at ".to_vec();
    if let Ok(format) = DateFormat::new(DEFAULT_TIMESTAMP) {
        format.render(time, &mut header);
    }
    header.extend_from_slice(b" --\n");
    header
}

/// Renders records, keeping the time texts of the current second.
struct Renderer<'a> {
    framing: &'a Framing,
    wire: Wire,
    lines: usize,
    seq: u64,
    utc_second: DateFormat,
    local: DateFormat,
    /// The second the cached texts are for, and the texts.
    second: Option<u32>,
    time: Vec<u8>,
    local_time: Vec<u8>,
}

impl<'a> Renderer<'a> {
    fn new(framing: &'a Framing, wire: Wire, lines: usize) -> Self {
        let fixed = |f: &str| DateFormat::new(f).unwrap_or_else(|_| unreachable!("fixed format"));
        Renderer {
            framing,
            wire,
            lines,
            seq: 0,
            utc_second: fixed("!%Y-%m-%dT%H:%M:%SZ"),
            local: fixed("%b %e %H:%M:%S"),
            second: None,
            time: Vec::new(),
            local_time: Vec::new(),
        }
    }

    fn set_second(&mut self, time: i64) {
        let second = u32::try_from(time).unwrap_or(0);
        if self.second != Some(second) {
            self.second = Some(second);
            self.time.clear();
            self.utc_second.render(time, &mut self.time);
            self.local_time.clear();
            self.local.render(time, &mut self.local_time);
        }
    }

    fn begin(&mut self, out: &mut Vec<u8>) {
        let plain = plain_header(self.framing.time);
        self.marker(Event::Begin, b"Dumping log buffer", trim_newlines(&plain), out);
    }

    fn note(&mut self, note: &str, out: &mut Vec<u8>) {
        self.marker(Event::Note, note.as_bytes(), format!("-- {note} --").as_bytes(), out);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.marker(Event::End, b"End of dump", trim_newlines(FOOTER), out);
    }

    fn marker(&mut self, event: Event, message: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        self.set_second(self.framing.time);
        let record = Record {
            event,
            time: &self.time,
            local_time: &self.local_time,
            source: MARKER_SOURCE.as_bytes(),
            level: b"info",
            message,
            plain,
        };
        render(self.framing, self.wire, self.seq, self.lines, &record, out);
        self.seq += 1;
    }

    fn line(&mut self, line: Line<'_>, joined: &mut Vec<u8>, out: &mut Vec<u8>) {
        joined.clear();
        line.pieces().for_each(|piece| joined.extend_from_slice(piece));
        let fields = Fields::of(joined, line.meta);
        self.set_second(i64::from(line.meta.time));
        // A precise sink's stamp is the time (see PRECISE_STAMP); any other keeps its second.
        let stamp = fields.stamp.strip_suffix(b" ").unwrap_or(fields.stamp);
        let time = match self.framing.format.precise_time() && is_rfc3339(stamp) {
            true => stamp,
            false => &self.time[..],
        };
        let record = Record {
            event: Event::Line,
            time,
            local_time: &self.local_time,
            source: fields.source,
            level: fields.level,
            message: fields.message,
            plain: trim_newlines(joined),
        };
        render(self.framing, self.wire, self.seq, self.lines, &record, out);
        self.seq += 1;
    }
}

/// Renders one record of a dump of `lines` lines.
fn render(framing: &Framing, wire: Wire, seq: u64, lines: usize, record: &Record<'_>, out: &mut Vec<u8>) {
    let legacy = framing.format == Format::Rfc3164;
    match wire {
        Wire::File if !legacy => {}
        Wire::Network if !legacy => syslog_header(framing, seq, lines, record, out),
        // syslog(3)'s local form has no HOSTNAME; RFC 3164 elsewhere has.
        _ => legacy_header(framing, record, wire != Wire::Local, out),
    }
    match framing.format {
        Format::Plain => out.extend_from_slice(record.plain),
        Format::Json => json_record(framing, seq, lines, record, out),
        Format::Rfc5424 | Format::Rfc3164 => {
            if wire != Wire::Network || legacy {
                // Files hold whole messages; the legacy forms have their own header (see
                // module doc) and keep what follows RFC 5424's PROCID.
                let start = out.len();
                syslog_header(framing, seq, lines, record, out);
                if wire == Wire::Local || legacy {
                    let after_procid = nth_space(&out[start..], 5).map_or(0, |at| at + 1);
                    out.drain(start..start + after_procid);
                }
            }
            out.extend_from_slice(record.message);
        }
    }
    if wire == Wire::File {
        out.push(b'\n');
    }
}

/// `<PRI>Mmm dd hh:mm:ss [HOSTNAME ]APP-NAME[PID]: ` (RFC 3164; syslog(3) leaves out HOSTNAME).
fn legacy_header(framing: &Framing, record: &Record<'_>, with_hostname: bool, out: &mut Vec<u8>) {
    let identity = &framing.identity;
    out.push(b'<');
    out.extend_from_slice(priority(identity.facility, record.level).to_string().as_bytes());
    out.push(b'>');
    out.extend_from_slice(record.local_time);
    out.push(b' ');
    if with_hostname {
        printable(identity.hostname.as_bytes(), 255, out);
        out.push(b' ');
    }
    printable(identity.app_name.as_bytes(), 48, out);
    out.extend_from_slice(format!("[{}]: ", identity.pid).as_bytes());
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] ` (RFC 5424, with the space before MSG).
fn syslog_header(framing: &Framing, seq: u64, lines: usize, record: &Record<'_>, out: &mut Vec<u8>) {
    let identity = &framing.identity;
    out.push(b'<');
    out.extend_from_slice(priority(identity.facility, record.level).to_string().as_bytes());
    out.extend_from_slice(b">1 ");
    out.extend_from_slice(record.time);
    out.push(b' ');
    printable(identity.hostname.as_bytes(), 255, out);
    out.push(b' ');
    printable(identity.app_name.as_bytes(), 48, out);
    out.extend_from_slice(format!(" {} ", identity.pid).as_bytes());
    let msgid_start = out.len();
    printable(record.source, 32, out);
    let msgid_is_source = &out[msgid_start..] == record.source;
    out.extend_from_slice(format!(" [{SD_ID} dump=\"").as_bytes());
    param_value(framing.id.as_bytes(), out);
    out.extend_from_slice(format!("\" seq=\"{seq}\"").as_bytes());
    if let Some(event) = record.event.name() {
        out.extend_from_slice(format!(" event=\"{event}\"").as_bytes());
    }
    if record.event == Event::Begin {
        out.extend_from_slice(b" reason=\"");
        param_value(framing.reason.as_bytes(), out);
        out.extend_from_slice(format!("\" lines=\"{lines}\"").as_bytes());
    }
    if !msgid_is_source {
        out.extend_from_slice(b" source=\"");
        param_value(record.source, out);
        out.push(b'"');
    }
    out.extend_from_slice(b"] ");
}

/// `{"time":…,"source":…,"level":…,"message":…,"dump":…,"seq":…}` plus a marker's fields.
fn json_record(framing: &Framing, seq: u64, lines: usize, record: &Record<'_>, out: &mut Vec<u8>) {
    let field = |name: &str, value: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(format!("\"{name}\":").as_bytes());
        json_string(value, out);
        out.push(b',');
    };
    out.push(b'{');
    field("time", record.time, out);
    field("source", record.source, out);
    field("level", record.level, out);
    field("message", record.message, out);
    field("dump", framing.id.as_bytes(), out);
    if let Some(event) = record.event.name() {
        field("event", event.as_bytes(), out);
    }
    if record.event == Event::Begin {
        field("reason", framing.reason.as_bytes(), out);
        out.extend_from_slice(format!("\"lines\":{lines},").as_bytes());
    }
    out.extend_from_slice(format!("\"seq\":{seq}}}").as_bytes());
}

/// A JSON string: invalid UTF-8 becomes U+FFFD, control characters are escaped.
pub fn json_string(value: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for c in String::from_utf8_lossy(value).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// PRI: facility × 8 + the level's severity (RFC 5424 6.2.1).
fn priority(facility: u8, level: &[u8]) -> u16 {
    let severity = match std::str::from_utf8(level).ok().and_then(Level::from_name) {
        Some(Level::Error) => 3,
        Some(Level::Warn) => 4,
        Some(Level::Info) => 6,
        Some(Level::Debug) => 7,
        None => 5, // notice: a level Prosody does not have
    };
    u16::from(facility) * 8 + severity
}

/// A header field: printable US-ASCII only (others become `_`), at most `max` bytes, `-` if empty.
fn printable(value: &[u8], max: usize, out: &mut Vec<u8>) {
    if value.is_empty() {
        out.push(b'-');
        return;
    }
    out.extend(value.iter().take(max).map(|&b| if (33..=126).contains(&b) { b } else { b'_' }));
}

/// An SD-PARAM value: `"`, `\` and `]` escaped; invalid UTF-8 replaced.
fn param_value(value: &[u8], out: &mut Vec<u8>) {
    for c in String::from_utf8_lossy(value).chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push(b'\\');
        }
        let mut utf8 = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

fn trim_newlines(text: &[u8]) -> &[u8] {
    let end = text.iter().rposition(|&b| b != b'\n').map_or(0, |at| at + 1);
    &text[..end]
}

/// Where the `n`th space (1-based) of `text` is.
fn nth_space(text: &[u8], n: usize) -> Option<usize> {
    text.iter().enumerate().filter(|(_, &b)| b == b' ').nth(n - 1).map(|(at, _)| at)
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as [`PRECISE_STAMP`] writes it.
fn is_rfc3339(stamp: &[u8]) -> bool {
    stamp.len() == 27 && stamp[4] == b'-' && stamp[10] == b'T' && stamp[19] == b'.' && stamp[26] == b'Z'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::ring::Limit;

    fn framing(format: Format) -> Framing {
        Framing {
            format,
            time: 1_700_000_000,
            notes: vec!["3 older lines were dropped since the previous dump".into()],
            id: "42-7".into(),
            reason: "signal SIGUSR2".into(),
            identity: Identity { hostname: "host".into(), app_name: "prosody".into(), pid: 42, facility: 3 },
        }
    }

    fn ring(lines: &[(&str, u16)]) -> Ring {
        let mut ring = Ring::new(Limit::Lines(100));
        for (line, source_at) in lines {
            ring.push(line.as_bytes(), Meta { time: 1_700_000_001, source_at: *source_at });
        }
        ring
    }

    fn records(framing: &Framing, wire: Wire, lines: &Ring) -> Vec<String> {
        let mut out = Vec::new();
        write(framing, wire, lines, |r| {
            out.push(String::from_utf8(r.to_vec()).expect("utf8"));
            Ok::<_, ()>(())
        })
        .expect("written");
        out
    }

    const STAMP: &str = "2023-11-14T22:13:21.250000Z ";

    #[test]
    fn plain_files_are_the_lua_modules_bytes() {
        let lines = ring(&[("Nov 14 22:13:21 c2s1\tdebug\thello\n", 16)]);
        let f = framing(Format::Plain);
        let text = records(&f, Wire::File, &lines).concat();
        let header = String::from_utf8(plain_header(f.time)).expect("utf8");
        assert_eq!(
            text,
            format!(
                "{header}-- 3 older lines were dropped since the previous dump --\nNov 14 22:13:21 c2s1\tdebug\thello\n-- End of dump --\n\n"
            )
        );
        assert_eq!(plain_len(&f, lines.text_bytes()), text.len());
    }

    #[test]
    fn json_lines_hold_the_fields_and_escape_what_json_must() {
        let line = format!("{STAMP}c2s1\twarn\tsaid \"hi\"\\\u{1}\ttab \u{e9}\n");
        let mut bytes = line.into_bytes();
        bytes.insert(bytes.len() - 1, 0xff);
        let mut r = Ring::new(Limit::Lines(10));
        r.push(&bytes, Meta { time: 1_700_000_001, source_at: STAMP.len() as u16 });
        let out = records(&framing(Format::Json), Wire::File, &r);
        assert_eq!(out.len(), 4);
        assert_eq!(
            out[0],
            "{\"time\":\"2023-11-14T22:13:20Z\",\"source\":\"mod_log_ringbuffer\",\"level\":\"info\",\"message\":\"Dumping log buffer\",\"dump\":\"42-7\",\"event\":\"begin\",\"reason\":\"signal SIGUSR2\",\"lines\":1,\"seq\":0}\n"
        );
        assert!(out[1].contains("\"event\":\"note\"") && out[1].contains("\"seq\":1}"), "{}", out[1]);
        assert_eq!(
            out[2],
            "{\"time\":\"2023-11-14T22:13:21.250000Z\",\"source\":\"c2s1\",\"level\":\"warn\",\"message\":\"said \\\"hi\\\"\\\\\\u0001\\ttab \u{e9}\u{fffd}\",\"dump\":\"42-7\",\"seq\":2}\n"
        );
        assert!(out[3].contains("\"event\":\"end\"") && out[3].ends_with("\"seq\":3}\n"));
    }

    #[test]
    fn rfc5424_lines_have_priority_header_and_structured_data() {
        let lines = ring(&[(&format!("{STAMP}c2s1\tdebug\thello world\n"), STAMP.len() as u16)]);
        let out = records(&framing(Format::Rfc5424), Wire::File, &lines);
        assert_eq!(
            out[0],
            "<30>1 2023-11-14T22:13:20Z host prosody 42 mod_log_ringbuffer [ringbuffer@32473 dump=\"42-7\" seq=\"0\" event=\"begin\" reason=\"signal SIGUSR2\" lines=\"1\"] Dumping log buffer\n"
        );
        assert_eq!(
            out[2],
            "<31>1 2023-11-14T22:13:21.250000Z host prosody 42 c2s1 [ringbuffer@32473 dump=\"42-7\" seq=\"2\"] hello world\n"
        );
        // Forwarded, the message is the file's line without its newline.
        let sent = records(&framing(Format::Rfc5424), Wire::Network, &lines);
        assert_eq!(sent[2], out[2].trim_end_matches('\n'));
    }

    #[test]
    fn a_long_or_odd_source_keeps_its_full_name_in_structured_data() {
        let source = "conference.example.org:some-very-long-room\u{e9}";
        let lines = ring(&[(&format!("{STAMP}{source}\terror\tx\n"), STAMP.len() as u16)]);
        let out = records(&framing(Format::Rfc5424), Wire::File, &lines);
        assert!(
            out[2].starts_with("<27>1 2023-11-14T22:13:21.250000Z host prosody 42 conference.example.org:some-very "),
            "{}",
            out[2]
        );
        assert!(out[2].contains(&format!(" source=\"{source}\"] x\n")), "{}", out[2]);
    }

    #[test]
    fn plain_and_json_on_a_wire_get_a_syslog_header() {
        let lines = ring(&[("Nov 14 22:13:21 c2s1\tinfo\thello\n", 16)]);
        let sent = records(&framing(Format::Plain), Wire::Network, &lines);
        assert_eq!(
            sent[2],
            "<30>1 2023-11-14T22:13:21Z host prosody 42 c2s1 [ringbuffer@32473 dump=\"42-7\" seq=\"2\"] Nov 14 22:13:21 c2s1\tinfo\thello"
        );
        assert!(sent[3].ends_with("] -- End of dump --"), "{}", sent[3]);
        let local = records(&framing(Format::Json), Wire::Local, &lines);
        assert!(local[2].starts_with("<30>"), "{}", local[2]);
        assert!(
            local[2].contains(" prosody[42]: {\"time\":\"2023-11-14T22:13:21Z\",\"source\":\"c2s1\""),
            "{}",
            local[2]
        );
    }

    #[test]
    fn rfc5424_on_the_local_socket_keeps_msgid_and_structured_data() {
        let lines = ring(&[(&format!("{STAMP}c2s1\tdebug\thello\n"), STAMP.len() as u16)]);
        let local = records(&framing(Format::Rfc5424), Wire::Local, &lines);
        let (header, rest) = local[2].split_once(": ").expect("tag");
        assert!(header.starts_with("<31>") && header.ends_with(" prosody[42]"), "{header}");
        assert_eq!(rest, "c2s1 [ringbuffer@32473 dump=\"42-7\" seq=\"2\"] hello");
    }

    #[test]
    fn rfc3164_has_the_bsd_header_and_the_rfc5424_body_in_files_and_forwards() {
        let lines = ring(&[(&format!("{STAMP}c2s1\tdebug\thello\n"), STAMP.len() as u16)]);
        let file = records(&framing(Format::Rfc3164), Wire::File, &lines);
        let network = records(&framing(Format::Rfc3164), Wire::Network, &lines);
        let local = records(&framing(Format::Rfc3164), Wire::Local, &lines);
        assert_eq!(file[2].trim_end_matches('\n'), network[2]);
        let (header, body) = network[2].split_once(": ").expect("tag");
        assert_eq!(body, "c2s1 [ringbuffer@32473 dump=\"42-7\" seq=\"2\"] hello");
        // <PRI>Mmm dd hh:mm:ss HOST TAG[PID], the day padded with a space.
        let stamp = &header[4..19];
        assert!(header.starts_with("<31>") && header.ends_with(" host prosody[42]"), "{header}");
        assert!(stamp.as_bytes()[3] == b' ' && stamp.as_bytes()[6] == b' ' && &stamp[9..10] == ":", "{stamp}");
        assert_eq!(local[2], network[2].replacen(" host ", " ", 1));
        assert!(file[0].contains(" event=\"begin\"") && file[0].ends_with("] Dumping log buffer\n"), "{}", file[0]);
        assert!(!Format::Rfc3164.precise_time() && Format::from_name("rfc3164") == Some(Format::Rfc3164));
    }

    #[test]
    fn fields_of_a_cut_line_are_all_message() {
        let cut = Fields::of(b"tail of a long line\n", Meta { time: 0, source_at: Meta::NO_SOURCE });
        assert_eq!((cut.source, cut.message), (&b""[..], &b"tail of a long line"[..]));
        let whole = Fields::of(b"S src\tdebug\tmsg\twith tab\n", Meta { time: 0, source_at: 2 });
        assert_eq!((whole.stamp, whole.source, whole.level), (&b"S "[..], &b"src"[..], &b"debug"[..]));
        assert_eq!(whole.message, b"msg\twith tab");
    }

    #[test]
    fn structured_data_values_are_escaped() {
        let mut out = Vec::new();
        param_value(b"a\"b\\c]d", &mut out);
        assert_eq!(out, b"a\\\"b\\\\c\\]d");
    }
}
