//! Native `tostring` of Prosody's `util.stanza` objects, byte-identical to `stanza_mt.__tostring`
//! (the same in Prosody 0.12 and 13).
//!
//! Stanzas are the most common non-string log argument, and serialising one in Lua costs
//! microseconds. This walks the table with the Lua C API instead: attributes in `lua_next`
//! order (which is what Lua's `pairs` uses), children in array order, text XML-escaped.
//! Anything unusual (a replaced `__tostring`, non-string names or attributes, odd children,
//! very deep nesting) returns `false`, and the caller falls back to Lua's own `tostring`.

use std::os::raw::c_int;

use mlua::ffi;

/// Deeper stanzas are left to Lua.
const MAX_DEPTH: usize = 32;

/// Appends `s` with `'&<>"` escaped the way `util.stanza.xml_escape` does.
pub fn xml_escape_into(s: &[u8], out: &mut Vec<u8>) {
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

/// Where the values the serialiser compares with live (upvalue indices, usually): interned key
/// strings are pushed from there, which is much cheaper than `lua_pushstring` each time.
#[derive(Debug, Clone, Copy)]
pub struct Anchors {
    /// util.stanza's metatable and its original `__tostring`.
    pub stanza_mt: c_int,
    pub original_tostring: c_int,
    /// The strings "__tostring", "name", "attr" and "xmlns".
    pub key_tostring: c_int,
    pub key_name: c_int,
    pub key_attr: c_int,
    pub key_xmlns: c_int,
}

/// Serialises the stanza at stack `index` if its metatable is `stanza_mt` and that
/// metatable's `__tostring` is still the original one.
///
/// # Safety
/// `state` must be a valid Lua state, `index` and the anchors valid indices.
pub unsafe fn serialize(state: *mut ffi::lua_State, index: c_int, anchors: &Anchors, out: &mut Vec<u8>) -> bool {
    let mt_index = anchors.stanza_mt;
    if ffi::lua_type(state, index) != ffi::LUA_TTABLE
        || ffi::lua_type(state, mt_index) != ffi::LUA_TTABLE
        || ffi::lua_checkstack(state, 8) == 0
    {
        return false;
    }
    if ffi::lua_getmetatable(state, index) == 0 {
        return false;
    }
    let is_stanza = ffi::lua_rawequal(state, -1, mt_index) != 0;
    ffi::lua_pushvalue(state, anchors.key_tostring);
    ffi::lua_rawget(state, -2);
    let original = ffi::lua_rawequal(state, -1, anchors.original_tostring) != 0;
    ffi::lua_settop(state, -3);
    if !(is_stanza && original) {
        return false;
    }
    let start = out.len();
    let index = ffi::lua_absindex(state, index);
    let top = ffi::lua_gettop(state);
    let ok = element(state, index, anchors, None, 0, out);
    ffi::lua_settop(state, top);
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Borrows the string at stack `index` (valid while it stays on the stack).
unsafe fn string_at<'a>(state: *mut ffi::lua_State, index: c_int) -> Option<&'a [u8]> {
    if ffi::lua_type(state, index) != ffi::LUA_TSTRING {
        return None;
    }
    let mut len = 0usize;
    let ptr = ffi::lua_tolstring(state, index, &mut len);
    (!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr as *const u8, len))
}

/// Pushes `t[key]` (raw) for the table at `index`, the key being at stack index `key`.
unsafe fn push_field(state: *mut ffi::lua_State, index: c_int, key: c_int) -> c_int {
    ffi::lua_pushvalue(state, key);
    ffi::lua_rawget(state, index)
}

/// `_dostring(t, buf, ..., parentns)` for the table at absolute `index`.
unsafe fn element(
    state: *mut ffi::lua_State,
    index: c_int,
    anchors: &Anchors,
    parent_ns: Option<&[u8]>,
    depth: usize,
    out: &mut Vec<u8>,
) -> bool {
    if depth > MAX_DEPTH || ffi::lua_checkstack(state, 8) == 0 {
        return false;
    }
    let base = ffi::lua_gettop(state);
    push_field(state, index, anchors.key_name);
    let name_index = base + 1;
    let Some(name) = string_at(state, name_index) else {
        return false;
    };
    if push_field(state, index, anchors.key_attr) != ffi::LUA_TTABLE {
        return false;
    }
    let attr_index = base + 2;
    // An attr table with a metatable might iterate differently under `pairs`.
    if ffi::lua_getmetatable(state, attr_index) != 0 {
        return false;
    }
    out.push(b'<');
    out.extend_from_slice(name);

    let mut nsid = 0;
    ffi::lua_pushnil(state);
    while ffi::lua_next(state, attr_index) != 0 {
        let (Some(k), Some(v)) = (string_at(state, -2), string_at(state, -1)) else {
            return false;
        };
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
        ffi::lua_settop(state, -2);
    }

    let len = ffi::lua_rawlen(state, index);
    if len == 0 {
        out.extend_from_slice(b"/>");
        return true;
    }
    out.push(b'>');
    push_field(state, attr_index, anchors.key_xmlns);
    let own_ns = string_at(state, -1);
    if own_ns.is_none() && ffi::lua_type(state, -1) != ffi::LUA_TNIL {
        return false;
    }
    for n in 1..=len {
        ffi::lua_rawgeti(state, index, n as ffi::lua_Integer);
        let child = ffi::lua_gettop(state);
        match ffi::lua_type(state, child) {
            ffi::LUA_TSTRING => match string_at(state, child) {
                Some(text) => xml_escape_into(text, out),
                None => return false,
            },
            ffi::LUA_TTABLE => {
                if !element(state, child, anchors, own_ns, depth + 1, out) {
                    return false;
                }
            }
            _ => return false,
        }
        ffi::lua_settop(state, child - 1);
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(name);
    out.push(b'>');
    true
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
