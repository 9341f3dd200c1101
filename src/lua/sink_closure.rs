//! The sink closure: the C function `sink_call` over the upvalues that `upvalues` defines, in
//! the order it defines them.

use std::ffi::c_void;
use std::os::raw::c_int;

use mlua::{AnyUserData, Function, LightUserData, Lua, MultiValue, Result, Table, Value};

use super::sink_call::sink_call;
use super::upvalues::Upvalue;

/// What the sink closure is made over.
pub(crate) struct SinkUpvalues {
    /// `Rc::as_ptr` of the `LuaSink` that `handle` owns.
    pub(crate) lua_sink: *const c_void,
    pub(crate) format: Function,
    pub(crate) tostring: Function,
    pub(crate) handle: AnyUserData,
    pub(crate) stanza_mt: Option<Table>,
    /// Room for this many kept formats.
    pub(crate) kept_formats: usize,
}

/// Values a call may anchor before the held table has to grow.
const HELD_ROOM: usize = 16;

/// The sink closure: `sink_call` over the upvalues, in [`Upvalue::ALL`]'s order.
pub(crate) fn sink_closure(lua: &Lua, v: SinkUpvalues) -> Result<Function> {
    let stanza_tostring: Value = match &v.stanza_mt {
        Some(mt) => mt.raw_get("__tostring")?,
        None => Value::Nil,
    };
    let mut values = Vec::with_capacity(Upvalue::ALL.len());
    for upvalue in Upvalue::ALL {
        values.push(match upvalue {
            Upvalue::LuaSinkPointer => Value::LightUserData(LightUserData(v.lua_sink as *mut c_void)),
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
