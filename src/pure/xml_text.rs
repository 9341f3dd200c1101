//! Text as the admin shell's wire carries it: XML character data escaped exactly as Prosody's
//! `util.stanza` serializer escapes a text node (0.12 and 13 alike: `& < > ' "` become
//! `&amp; &lt; &gt; &apos; &quot;`, nothing else changes), and made safe where `util.stanza`
//! would refuse the text (invalid UTF-8; C0 controls other than tab, LF and CR, which XML 1.0
//! forbids) or would pass what the client's XML parser rejects (U+FFFE, U+FFFF): each of those
//! becomes U+FFFD, so a log line can never end the shell's connection.

/// The replacement for what may not reach the wire, as UTF-8.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Appends `text` to `out`, escaped as XML character data (see the module's doc).
pub(crate) fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len());
    for chunk in text.utf8_chunks() {
        escape_valid(chunk.valid(), out);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(REPLACEMENT);
        }
    }
}

/// `escape_into` for valid UTF-8: copies runs of plain bytes at once.
fn escape_valid(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let replaced: Option<&[u8]> = match byte {
            b'&' => Some(b"&amp;"),
            b'<' => Some(b"&lt;"),
            b'>' => Some(b"&gt;"),
            b'\'' => Some(b"&apos;"),
            b'"' => Some(b"&quot;"),
            b'\t' | b'\n' | b'\r' => None,
            0..=0x1f => Some(REPLACEMENT),
            // U+FFFE and U+FFFF (EF BF BE, EF BF BF): not XML characters.
            0xef if matches!(bytes.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])) => {
                out.extend_from_slice(&bytes[plain..i]);
                out.extend_from_slice(REPLACEMENT);
                i += 3;
                plain = i;
                continue;
            }
            _ => None,
        };
        if let Some(replaced) = replaced {
            out.extend_from_slice(&bytes[plain..i]);
            out.extend_from_slice(replaced);
            plain = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        escape_into(text, &mut out);
        out
    }

    // The oracle: what Prosody's own serializer makes of these texts, produced with lua5.4 and
    // both 0.12's and 13's util.stanza (the same output from each):
    //   tostring(st.stanza("repl-output"):text(input))
    // less the `<repl-output>` and `</repl-output>` around it.
    const BY_UTIL_STANZA: &[(&[u8], &[u8])] = &[
        (b"plain text, nothing to escape", b"plain text, nothing to escape"),
        (
            b"Dec 07 03:00:00 c2s1\tdebug\t<message to='a@b' type=\"chat\">&amp; x > y</message>",
            b"Dec 07 03:00:00 c2s1\tdebug\t&lt;message to=&apos;a@b&apos; type=&quot;chat&quot;&gt;&amp;amp; x &gt; y&lt;/message&gt;",
        ),
        (b"&&<<>>''\"\"", b"&amp;&amp;&lt;&lt;&gt;&gt;&apos;&apos;&quot;&quot;"),
        (b"tab\tlf\ncr\rend", b"tab\tlf\ncr\rend"),
        ("caf\u{e9} \u{2603} \u{1f600} <\u{e9}>".as_bytes(), "caf\u{e9} \u{2603} \u{1f600} &lt;\u{e9}&gt;".as_bytes()),
        (b"del \x7f stays", b"del \x7f stays"),
    ];

    #[test]
    fn escapes_as_util_stanza_does() {
        for (input, expected) in BY_UTIL_STANZA {
            assert_eq!(escaped(input), *expected, "{}", String::from_utf8_lossy(input));
        }
    }

    // What util.stanza refuses (0.12 and 13: "invalid text value: contains control characters",
    // "... contains invalid utf8") or passes though the client's XML parser rejects it
    // (U+FFFE, U+FFFF): U+FFFD, as many as `String::from_utf8_lossy` puts (one a maximal bad
    // sequence).
    #[test]
    fn replaces_what_may_not_reach_the_wire() {
        let fffd = "\u{FFFD}";
        let cases: &[(&[u8], String)] = &[
            (b"bell \x07 nul \x00 esc \x1b.", format!("bell {fffd} nul {fffd} esc {fffd}.")),
            (b"bad \xff\xfe end", format!("bad {fffd}{fffd} end")),
            (b"cut \xe2\x98", format!("cut {fffd}")),
            (b"overlong \xc0\xaf", format!("overlong {fffd}{fffd}")),
            (b"surrogate \xed\xa0\x80!", format!("surrogate {fffd}{fffd}{fffd}!")),
            (b"\xef\xbf\xbe\xef\xbf\xbf\xef\xbf\xbd<", format!("{fffd}{fffd}{fffd}&lt;")),
            (b"<\x01&\xc3", format!("&lt;{fffd}&amp;{fffd}")),
        ];
        for (input, expected) in cases {
            let out = escaped(input);
            assert_eq!(String::from_utf8_lossy(&out), *expected);
            assert!(std::str::from_utf8(&out).is_ok());
        }
    }

    #[test]
    fn appends_after_what_is_there() {
        let mut out = b"<repl-output>".to_vec();
        escape_into(b"a<b", &mut out);
        assert_eq!(out, b"<repl-output>a&lt;b");
    }
}
