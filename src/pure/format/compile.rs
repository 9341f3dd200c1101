//! A format string split into its pieces once, so that a format logged again and again is not
//! parsed again (the cache keeps the split), and so that the fast path can tell whether it can
//! take the format at all (and in which form: [`Simple`]).

use super::copy::needs_care;
use super::FormatError;

/// The conversion letters `util.format`'s pattern recognises (`%%[^...]*[...]`).
fn is_conversion(b: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut table = [false; 256];
        let letters = b"cdiouxXaAeEfgGpqs%";
        let mut i = 0;
        while i < letters.len() {
            table[letters[i] as usize] = true;
            i += 1;
        }
        table
    };
    TABLE[b as usize]
}

/// One piece of a format string.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    /// Text copied as written (a byte range of the format string).
    Literal(usize, usize),
    /// `%%`.
    Percent,
    /// A conversion consuming the next argument (a byte range of the format string).
    Conversion(usize, usize),
}

/// A format string split the way `util.format`'s pattern splits it. It holds byte ranges of
/// the format, not the bytes: it is used with the string it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub(super) pieces: Vec<Piece>,
    /// No literal piece holds control or non-ASCII bytes.
    pub(super) plain_literals: bool,
    /// Set for plain literals and only bare `%s`, `%d` and `%i`: the fast path takes it.
    pub(super) simple: Option<Simple>,
}

impl Compiled {
    /// Splits `fmt` the way `util.format`'s pattern does. A `%` that starts no conversion makes
    /// `string.format` reject the whole format.
    pub fn new(fmt: &[u8]) -> Result<Compiled, FormatError> {
        let mut pieces = Vec::new();
        let mut plain_literals = true;
        let mut literal = |pieces: &mut Vec<Piece>, from: usize, to: usize| {
            if from < to {
                plain_literals &= !needs_care(&fmt[from..to]);
                pieces.push(Piece::Literal(from, to));
            }
        };
        let mut i = 0;
        while let Some(pct) = fmt[i..].iter().position(|&b| b == b'%') {
            let start = i + pct;
            literal(&mut pieces, i, start);
            let Some(len) = fmt[start + 1..].iter().position(|&b| is_conversion(b)) else {
                return Err("invalid conversion at end of format string".into());
            };
            i = start + len + 2;
            pieces.push(if &fmt[start..i] == b"%%" { Piece::Percent } else { Piece::Conversion(start, i) });
        }
        literal(&mut pieces, i, fmt.len());
        let simple = if plain_literals { Simple::new(fmt, &pieces) } else { None };
        Ok(Compiled { pieces, plain_literals, simple })
    }
}

/// A format in the form the fast path's `format_simple` runs: its literal text (`%%` already
/// made `%`) and, for each conversion, where the text before it ends and whether it is `%s`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Simple {
    pub(super) text: Box<[u8]>,
    pub(super) conversions: Box<[(usize, bool)]>,
}

impl Simple {
    /// The fast form of a format of plain literals (split into `pieces`), if it has no other
    /// conversions than bare `%s`, `%d` and `%i`.
    pub(super) fn new(fmt: &[u8], pieces: &[Piece]) -> Option<Simple> {
        let mut text = Vec::new();
        let mut conversions = Vec::new();
        for piece in pieces {
            match *piece {
                Piece::Literal(from, to) => text.extend_from_slice(&fmt[from..to]),
                Piece::Percent => text.push(b'%'),
                Piece::Conversion(from, to) => {
                    let string = match &fmt[from..to] {
                        b"%s" => true,
                        b"%d" | b"%i" => false,
                        _ => return None,
                    };
                    conversions.push((text.len(), string));
                }
            }
        }
        Some(Simple { text: text.into(), conversions: conversions.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_util_format() {
        let c = Compiled::new(b"a %5.2s%%b %d").expect("split");
        assert_eq!(
            c.pieces,
            vec![
                Piece::Literal(0, 2),
                Piece::Conversion(2, 7),
                Piece::Percent,
                Piece::Literal(9, 11),
                Piece::Conversion(11, 13)
            ]
        );
        assert!(c.plain_literals);
        assert!(c.simple.is_none(), "%5.2s is not for the fast path");
        assert!(Compiled::new(b"x %s %d %i").expect("split").simple.is_some());
        assert!(Compiled::new(b"tab\t%s").expect("split").simple.is_none());
    }

    #[test]
    fn dangling_percent_is_an_error() {
        assert!(Compiled::new(b"100%").is_err());
        assert!(Compiled::new(b"%5").is_err());
    }
}
