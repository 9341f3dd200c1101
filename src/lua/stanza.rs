//! Native `tostring` of Prosody's `util.stanza` objects, byte-identical to `stanza_mt.__tostring`
//! (the same in Prosody 0.12 and 13).
//!
//! Stanzas are the most common non-string log argument, and serialising one in Lua costs
//! microseconds. This walks the table with the Lua C API instead: attributes in `lua_next`
//! order (which is what Lua's `pairs` uses), children in array order, text XML-escaped.
//! Anything unusual (a replaced `__tostring`, non-string names or attributes, odd children,
//! very deep nesting) returns `false`, and the caller falls back to Lua's own `tostring`.

use std::os::raw::c_int;

use super::call::{Scope, Table, Value};
use super::upvalues::Upvalue;

/// Deeper stanzas are left to Lua.
const MAX_DEPTH: usize = 32;

/// Appends `s` with `'&<>"` escaped the way `util.stanza.xml_escape` does.
pub(crate) fn xml_escape_into(s: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let entity: &[u8] = match b {
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(entity);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Where the values the serialiser compares with live: upvalues of the running closure.
/// Interned key strings are pushed from there, which is much cheaper than making them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchors {
    /// util.stanza's metatable.
    pub(crate) stanza_mt: Upvalue,
    /// Its original `__tostring`.
    pub(crate) original_tostring: Upvalue,
    /// The string "__tostring".
    pub(crate) key_tostring: Upvalue,
    /// The string "name".
    pub(crate) key_name: Upvalue,
    /// The string "attr".
    pub(crate) key_attr: Upvalue,
    /// The string "xmlns".
    pub(crate) key_xmlns: Upvalue,
}

/// Serialises `value` if it is a stanza: a table whose metatable is `stanza_mt`, whose
/// `__tostring` is still the original one. Runs no Lua code (it works in a [`Scope`]). False,
/// with nothing appended, for anything it does not print exactly as `util.stanza` would.
pub(crate) fn serialize(scope: &mut Scope<'_>, value: Value<'_>, anchors: &Anchors, out: &mut Vec<u8>) -> bool {
    let Value::Table(stanza) = value else {
        return false;
    };
    let Some(mt) = scope.metatable(stanza) else {
        return false;
    };
    if !scope.is_upvalue(Value::Table(mt), anchors.stanza_mt.index()) {
        return false;
    }
    match scope.field(mt, anchors.key_tostring.index()) {
        Some(tostring) if scope.is_upvalue(tostring, anchors.original_tostring.index()) => {}
        _ => return false,
    }
    let start = out.len();
    let printed = element(scope, stanza, anchors, None, 0, out);
    if !printed {
        out.truncate(start);
    }
    printed
}

/// Values one element pushes: its name, attr, attr's metatable (if any), xmlns, a child.
const ELEMENT_ROOM: c_int = 8;

/// `_dostring(t, buf, ..., parentns)` for the table `t`.
fn element(
    scope: &mut Scope<'_>,
    t: Table<'_>,
    anchors: &Anchors,
    parent_ns: Option<&[u8]>,
    depth: usize,
    out: &mut Vec<u8>,
) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let printed = scope.scope(ELEMENT_ROOM, |scope| {
        let Some(Value::Str(name)) = scope.field(t, anchors.key_name.index()) else {
            return false;
        };
        let Some(Value::Table(attr)) = scope.field(t, anchors.key_attr.index()) else {
            return false;
        };
        // An attr table with a metatable might iterate differently under `pairs`.
        if scope.metatable(attr).is_some() {
            return false;
        }
        let name = scope.bytes(name);
        out.push(b'<');
        out.extend_from_slice(name);

        let mut nsid = 0;
        let complete = scope.pairs(attr, |scope, k, v| {
            let (Value::Str(k), Value::Str(v)) = (k, v) else {
                return false;
            };
            let (k, v) = (scope.bytes(k), scope.bytes(v));
            if let Some(sep) = k.iter().position(|&b| b == 1) {
                // "ns\1name": Prosody declares a fresh prefix per namespaced attribute.
                let (ns, attr_name) = (&k[..sep], &k[sep + 1..]);
                nsid += 1;
                out.extend_from_slice(format!(" xmlns:ns{nsid}='").as_bytes());
                xml_escape_into(ns, out);
                out.extend_from_slice(format!("' ns{nsid}:").as_bytes());
                out.extend_from_slice(attr_name);
                out.extend_from_slice(b"='");
                xml_escape_into(v, out);
                out.push(b'\'');
            } else if !(k == b"xmlns" && Some(v) == parent_ns) {
                out.push(b' ');
                out.extend_from_slice(k);
                out.extend_from_slice(b"='");
                xml_escape_into(v, out);
                out.push(b'\'');
            }
            true
        });
        if !complete {
            return false;
        }

        let len = scope.len(t);
        if len == 0 {
            out.extend_from_slice(b"/>");
            return true;
        }
        out.push(b'>');
        let own_ns = match scope.field(attr, anchors.key_xmlns.index()) {
            Some(Value::Str(ns)) => Some(scope.bytes(ns)),
            Some(Value::Nil(_)) => None,
            _ => return false,
        };
        for n in 1..=len {
            let Ok(n) = i64::try_from(n) else {
                return false;
            };
            let child = scope.scope(1, |scope| match scope.index(t, n) {
                Some(Value::Str(text)) => {
                    xml_escape_into(scope.bytes(text), out);
                    true
                }
                Some(Value::Table(child)) => element(scope, child, anchors, own_ns, depth + 1, out),
                _ => false,
            });
            if child != Some(true) {
                return false;
            }
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(name);
        out.push(b'>');
        true
    });
    printed == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_util_stanza() {
        let mut out = Vec::new();
        xml_escape_into(b"a<b>&'c\"d", &mut out);
        assert_eq!(out, b"a&lt;b&gt;&amp;&apos;c&quot;d");
    }
}
