//! The native side of the `ringbuffer/dumped` event: the dump outcomes `runtime::dumped`
//! queued, as Lua tables, and each handle's `sink_id` that tells whose they are.

use mlua::{Lua, Result, Table, UserDataMethods};

use super::handle::Handle;
use crate::runtime::dumped;

pub(crate) fn add_methods<M: UserDataMethods<Handle>>(methods: &mut M) {
    methods.add_method("sink_id", |_, this, ()| Ok(this.sink().address()));
}

/// `{ sink_id =, path =, lines =, reason =, ok =, error = }` for each dump finished since the
/// last call, oldest first.
pub(crate) fn take(lua: &Lua, (): ()) -> Result<Table> {
    let list = lua.create_table()?;
    for outcome in dumped::take() {
        let t = lua.create_table()?;
        t.set("sink_id", outcome.sink)?;
        t.set("path", outcome.path)?;
        t.set("lines", outcome.lines)?;
        t.set("reason", outcome.reason)?;
        t.set("ok", outcome.error.is_none())?;
        t.set("error", outcome.error)?;
        list.push(t)?;
    }
    Ok(list)
}
