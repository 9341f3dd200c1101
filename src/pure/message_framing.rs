//! How one forwarded message goes on the wire: cut to `forward_max_message` with a visible
//! marker, and on a stream (`tcp://`, `tls://`, a unix stream socket) framed as
//! `forward_framing` says: RFC 6587's octet counting (`LEN SP MSG`), or the message followed by a
//! newline (`lf`) or a NUL byte (`nul`).
//!
//! With `lf` a newline inside a message would end it early (util.format keeps `\n\t` in plain
//! lines, and rfc5424 and rfc3164 messages carry the message as logged), so every newline is
//! written as `␤` (U+2424, SYMBOL FOR NEWLINE), the control picture util.format uses for the
//! other control characters; with `nul` every NUL byte is written as `␀` (U+2400). JSON records
//! never hold either (JSON escapes them). Octet counting sends every byte as it is.

/// `forward_framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamFraming {
    /// RFC 6587 3.4.1: `LEN SP MSG`.
    OctetCounting,
    /// RFC 6587 3.4.2 with LF as the trailer.
    Lf,
    /// RFC 6587 3.4.2 with NUL as the trailer.
    Nul,
}

impl StreamFraming {
    pub(crate) const NAMES: &'static str = "\"octet-counting\", \"lf\" or \"nul\"";

    pub(crate) fn from_name(name: &str) -> Option<StreamFraming> {
        match name {
            "octet-counting" => Some(StreamFraming::OctetCounting),
            "lf" => Some(StreamFraming::Lf),
            "nul" => Some(StreamFraming::Nul),
            _ => None,
        }
    }

    /// The byte that ends a message, and what it is written as inside one.
    fn trailer(self) -> Option<(u8, &'static str)> {
        match self {
            StreamFraming::OctetCounting => None,
            StreamFraming::Lf => Some((b'\n', "\u{2424}")),
            StreamFraming::Nul => Some((0, "\u{2400}")),
        }
    }
}

/// `forward_max_message` when not given: what most receivers take whole (rsyslog's default
/// `maxMessageSize`, Promtail/Alloy, OpenTelemetry's `max_octets`).
pub const DEFAULT_MAX_MESSAGE: usize = 8192;
/// `forward_max_message` at least: an RFC 5424 header and the cut marker fit with room to spare
/// (RFC 5426 requires receivers to take 480 bytes).
pub const MIN_MAX_MESSAGE: usize = 480;
/// The largest UDP datagram, so `forward_max_message` at most for `udp://` (and the cap on a
/// unix datagram).
pub const MAX_DATAGRAM: usize = 65_507;
/// `forward_max_message` at most for streams.
pub const MAX_STREAM_MESSAGE: usize = 1 << 20;

/// Writes `message` into `out` (cleared first) as it goes on the wire: the trailer escaped
/// inside it (see the module doc), cut to `max` bytes (see [`cut`]), then framed. `framing` is
/// `None` for a datagram, which is its own frame.
pub fn wire_message(message: &[u8], framing: Option<StreamFraming>, max: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut escaped = Vec::new();
    let body = match framing.and_then(StreamFraming::trailer) {
        Some((trailer, picture)) if message.contains(&trailer) => {
            escaped.reserve(message.len() + 16);
            for &b in message {
                match b == trailer {
                    true => escaped.extend_from_slice(picture.as_bytes()),
                    false => escaped.push(b),
                }
            }
            &escaped[..]
        }
        _ => message,
    };
    let mut cut_body = Vec::new();
    let body = match body.len() > max {
        true => {
            cut(body, max, &mut cut_body);
            &cut_body[..]
        }
        false => body,
    };
    match framing {
        Some(StreamFraming::OctetCounting) => {
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(body);
        }
        Some(StreamFraming::Lf) => {
            out.extend_from_slice(body);
            out.push(b'\n');
        }
        Some(StreamFraming::Nul) => {
            out.extend_from_slice(body);
            out.push(0);
        }
        None => out.extend_from_slice(body),
    }
}

/// `message` (longer than `max`) cut to at most `max` bytes: its start, on a UTF-8 character's
/// boundary, then `… [cut N bytes]` saying how many bytes of the message were left out.
pub fn cut(message: &[u8], max: usize, out: &mut Vec<u8>) {
    // The marker's length depends on N, N on where the cut falls: the longest marker first.
    let longest = marker(message.len()).len();
    let mut keep = max.saturating_sub(longest).min(message.len());
    // Back to a character's start, so no character is torn.
    while keep > 0 && keep < message.len() && message[keep] & 0xC0 == 0x80 {
        keep -= 1;
    }
    out.extend_from_slice(&message[..keep]);
    out.extend_from_slice(marker(message.len() - keep).as_bytes());
}

fn marker(left_out: usize) -> String {
    format!("\u{2026} [cut {left_out} bytes]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(message: &str, framing: Option<StreamFraming>, max: usize) -> String {
        let mut out = Vec::new();
        wire_message(message.as_bytes(), framing, max, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn each_framing_ends_a_message_its_way() {
        assert_eq!(wire("a b\n\tc", Some(StreamFraming::OctetCounting), 100), "6 a b\n\tc");
        assert_eq!(wire("a b\n\tc", Some(StreamFraming::Lf), 100), "a b\u{2424}\tc\n");
        assert_eq!(wire("a\0b\nc", Some(StreamFraming::Nul), 100), "a\u{2400}b\nc\0");
        assert_eq!(wire("a\nb", None, 100), "a\nb");
    }

    #[test]
    fn names_read_back() {
        assert_eq!(StreamFraming::from_name("octet-counting"), Some(StreamFraming::OctetCounting));
        assert_eq!(StreamFraming::from_name("lf"), Some(StreamFraming::Lf));
        assert_eq!(StreamFraming::from_name("nul"), Some(StreamFraming::Nul));
        assert_eq!(StreamFraming::from_name("crlf"), None);
    }

    #[test]
    fn a_long_message_is_cut_to_the_limit_with_a_marker_saying_how_much() {
        let message = "x".repeat(10_000);
        let sent = wire(&message, None, 8192);
        assert!(sent.len() <= 8192, "{}", sent.len());
        let (kept, marker) = sent.split_once('\u{2026}').expect("marker");
        assert_eq!(marker, format!(" [cut {} bytes]", 10_000 - kept.len()));
        assert!(8192 - sent.len() < 4, "uses the room: {}", sent.len());
        // Framed, the limit is on the message, not on its frame.
        let counted = wire(&message, Some(StreamFraming::OctetCounting), 8192);
        assert!(counted.starts_with(&format!("{} x", sent.len())), "{}", &counted[..10]);
        assert_eq!(wire(&"y".repeat(8192), None, 8192).len(), 8192, "a message at the limit is whole");
    }

    #[test]
    fn a_cut_never_tears_a_character() {
        for offset in 0..4 {
            let message = format!("{}{}", "a".repeat(offset), "\u{e9}\u{20ac}\u{1f600}".repeat(400));
            let sent = wire(&message, None, 600);
            assert!(sent.len() <= 600, "{}", sent.len());
            let (kept, marker) = sent.split_once('\u{2026}').expect("marker");
            assert!(message.starts_with(kept));
            assert_eq!(marker, format!(" [cut {} bytes]", message.len() - kept.len()));
        }
    }

    #[test]
    fn escapes_count_toward_the_limit() {
        let message = "\n".repeat(1000);
        let sent = wire(&message, Some(StreamFraming::Lf), 600);
        assert!(sent.len() <= 601 && sent.ends_with(" bytes]\n") && sent.matches('\n').count() == 1, "{sent}");
    }
}
