//! The testing entry point, `luaopen_log_ringbuffer_native_testing`, in the same library: what
//! specs and benchmarks look at, kept out of the table `require "log_ringbuffer_native"` gives
//! Prosody. Loaded with `package.loadlib(path, "luaopen_log_ringbuffer_native_testing")` (or
//! `require "log_ringbuffer_native.testing"`, which Lua's all-in-one loader resolves to it).

use mlua::{Lua, Result, Table, UserDataRef};

use super::binding::{settle_stack_path, Handle};
use super::stack_path::FORCE_VARIABLE;
use crate::pure::format::LUA_NAME;
use crate::runtime::shared_ring;

/// The testing table: `peek(handle)`, `version`, `built_for`, `per_line()`.
pub(crate) fn exports(lua: &Lua) -> Result<Table> {
    let module = lua.create_table()?;
    // The buffered text of a sink, left in place.
    module.set(
        "peek",
        lua.create_function(|lua, handle: UserDataRef<Handle>| lua.create_string(handle.sink().text()))?,
    )?;
    module.set("version", env!("CARGO_PKG_VERSION"))?;
    // The Lua the library was built for ("Lua 5.3", "LuaJIT"): the one whose printing it follows.
    module.set("built_for", LUA_NAME)?;
    // How the per-line path runs here (the benchmark prints it): how arguments are read (settled
    // here if no sink did yet) and whether the ring lock uses membarrier.
    module.set(
        "per_line",
        lua.create_function(|lua, ()| {
            let decision = settle_stack_path(lua);
            let t = lua.create_table()?;
            t.set("direct_stack", decision.direct)?;
            t.set("stack_path", if decision.direct { "direct" } else { "api" })?;
            t.set("forced", decision.forced)?;
            t.set("force_variable", FORCE_VARIABLE)?;
            t.set("lua", decision.lua.clone())?;
            t.set("reason", decision.reason.clone())?;
            t.set("membarrier", shared_ring::uses_membarrier())?;
            Ok(t)
        })?,
    )?;
    Ok(module)
}

#[cfg(feature = "module")]
#[mlua::lua_module(name = "log_ringbuffer_native_testing")]
fn luaopen_testing(lua: &Lua) -> Result<Table> {
    exports(lua)
}
