//! The sink closure's upvalues: their one definition. [`Upvalue`] names each by its index,
//! [`sink_closure`] builds the closure with them in that order, and nothing else knows either.

use std::ffi::c_void;
use std::os::raw::c_int;

use mlua::{AnyUserData, Function, LightUserData, Lua, MultiValue, Result, Table, Value};

use super::sink_call::sink_call;
use super::stanza::Anchors;

/// The sink closure's upvalues, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upvalue {
    /// A light userdata pointing to the sink's `LuaSink` (kept alive by [`Upvalue::Handle`]).
    Sink = 1,
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
    /// (see `sink_call`'s `Line`).
    Held,
}

impl Upvalue {
    /// Every upvalue, in order.
    const ALL: [Upvalue; 12] = [
        Upvalue::Sink,
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

/// Where native stanza printing finds what it compares with.
pub(crate) const STANZA_ANCHORS: Anchors = Anchors {
    stanza_mt: Upvalue::StanzaMt,
    original_tostring: Upvalue::StanzaTostring,
    key_tostring: Upvalue::KeyTostring,
    key_name: Upvalue::KeyName,
    key_attr: Upvalue::KeyAttr,
    key_xmlns: Upvalue::KeyXmlns,
};

/// What the sink closure is made over.
pub(crate) struct SinkUpvalues {
    /// `Rc::as_ptr` of the `LuaSink` that `handle` owns.
    pub(crate) sink: *const c_void,
    pub(crate) format: Function,
    pub(crate) tostring: Function,
    pub(crate) handle: AnyUserData,
    pub(crate) stanza_mt: Option<Table>,
    /// Room for this many kept formats.
    pub(crate) kept_formats: usize,
}

/// Values a call may anchor before the held table has to grow.
const HELD_ROOM: usize = 16;

/// The sink closure: `sink_call` over the upvalues above.
pub(crate) fn sink_closure(lua: &Lua, v: SinkUpvalues) -> Result<Function> {
    let stanza_tostring: Value = match &v.stanza_mt {
        Some(mt) => mt.raw_get("__tostring")?,
        None => Value::Nil,
    };
    let mut values = Vec::with_capacity(Upvalue::ALL.len());
    for upvalue in Upvalue::ALL {
        values.push(match upvalue {
            Upvalue::Sink => Value::LightUserData(LightUserData(v.sink as *mut c_void)),
            Upvalue::Format => Value::Function(v.format.clone()),
            Upvalue::Tostring => Value::Function(v.tostring.clone()),
            Upvalue::Handle => Value::UserData(v.handle.clone()),
            Upvalue::StanzaMt => v.stanza_mt.clone().map_or(Value::Nil, Value::Table),
            Upvalue::StanzaTostring => stanza_tostring.clone(),
            Upvalue::KeyTostring => Value::String(lua.create_string("__tostring")?),
            Upvalue::KeyName => Value::String(lua.create_string("name")?),
            Upvalue::KeyAttr => Value::String(lua.create_string("attr")?),
            Upvalue::KeyXmlns => Value::String(lua.create_string("xmlns")?),
            Upvalue::KeptFormats => Value::Table(lua.create_table_with_capacity(v.kept_formats, 0)?),
            Upvalue::Held => Value::Table(lua.create_table_with_capacity(HELD_ROOM, 0)?),
        });
    }
    let count = values.len() as c_int;
    // SAFETY: exec_raw places the values on the stack in `Upvalue::ALL` order, and
    // lua_pushcclosure makes a C closure over all of them: the layout `Upvalue` states, which
    // is what sink_call requires. The handle upvalue owns the LuaSink behind the light userdata.
    unsafe {
        lua.exec_raw(MultiValue::from_vec(values), |state| {
            mlua::ffi::lua_pushcclosure(state, sink_call, count);
        })
    }
}
