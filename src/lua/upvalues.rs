//! The sink closure's upvalues: their one definition. [`Upvalue`] names each by its index;
//! `sink_closure` builds the closure with them in that order ([`Upvalue::ALL`]), and nothing
//! else knows either.

use std::os::raw::c_int;

/// The sink closure's upvalues, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upvalue {
    /// A light userdata pointing to the sink's `LuaSink` (kept alive by [`Upvalue::Handle`]).
    LuaSinkPointer = 1,
    /// Prosody's `util.format.format`.
    Format,
    /// Lua's `tostring`.
    Tostring,
    /// The handle userdata, which owns the `LuaSink`.
    Handle,
    /// util.stanza's metatable (or nil).
    StanzaMt,
    /// Its original `__tostring` (or nil).
    StanzaTostring,
    /// The string "__tostring", for native stanza printing (interned: cheap to push).
    KeyTostring,
    /// The string "name".
    KeyName,
    /// The string "attr".
    KeyAttr,
    /// The string "xmlns".
    KeyXmlns,
    /// A table with one entry per `FormatCache` slot, which keeps each cached format string
    /// alive (see `Args::keep_format`).
    KeptFormats,
    /// A table that anchors the values of a call that runs Lua code, until its line is done
    /// (see `sink_call`'s `LineArgs`).
    Held,
}

impl Upvalue {
    /// Every upvalue, in order.
    pub(crate) const ALL: [Upvalue; 12] = [
        Upvalue::LuaSinkPointer,
        Upvalue::Format,
        Upvalue::Tostring,
        Upvalue::Handle,
        Upvalue::StanzaMt,
        Upvalue::StanzaTostring,
        Upvalue::KeyTostring,
        Upvalue::KeyName,
        Upvalue::KeyAttr,
        Upvalue::KeyXmlns,
        Upvalue::KeptFormats,
        Upvalue::Held,
    ];

    /// Its pseudo-index in the running sink closure.
    #[inline(always)]
    pub(crate) fn index(self) -> c_int {
        mlua::ffi::lua_upvalueindex(self as c_int)
    }
}

const _: () = {
    let mut i = 0;
    while i < Upvalue::ALL.len() {
        assert!(Upvalue::ALL[i] as usize == i + 1);
        i += 1;
    }
};
