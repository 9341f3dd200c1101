//! What stands in for `raw_stack.rs` in a build for any Lua but 5.4: the same names, and no
//! reader. The direct stack reader knows only Lua 5.4's internal layout, so here the running Lua
//! is never identified, [`Running`] and [`Frame`] cannot exist (they have no values), and every
//! line is read through the C API.

use std::ffi::c_void;
use std::marker::PhantomData;

use mlua::ffi;

use crate::pure::format::{Arg, ArgValues, LUA_NAME};

/// No value: nothing here can read a running function's slot.
#[derive(Clone, Copy)]
enum Never {}

/// The running function's slot, which only the Lua 5.4 reader can read: never made here.
#[derive(Clone, Copy)]
pub(super) struct Running(Never);

impl Running {
    /// Only for an identified Lua, which this build never has: its contract cannot be met, so
    /// it is never called (`call` asks `stack_path::direct` and `identified` first).
    ///
    /// # Safety
    /// None can be met: do not call.
    pub(super) unsafe fn read(_state: *mut ffi::lua_State) -> (Running, usize) {
        unreachable!("the direct stack reader is built for Lua 5.4 only")
    }

    pub(super) unsafe fn first_upvalue_pointer(self) -> *mut c_void {
        match self.0 {}
    }

    pub(super) unsafe fn frame<'call>(self, _count: usize) -> Frame<'call> {
        match self.0 {}
    }
}

/// Arguments read in place, which only the Lua 5.4 reader can do: never made here.
pub(crate) struct Frame<'call> {
    never: Never,
    _call: PhantomData<&'call ()>,
}

impl<'call> Frame<'call> {
    pub(crate) fn skip(&self, _n: usize) -> Frame<'call> {
        match self.never {}
    }
}

impl<'call> ArgValues<'call> for Frame<'call> {
    fn count(&self) -> usize {
        match self.never {}
    }

    fn get(&self, _i: usize) -> Arg<'call> {
        match self.never {}
    }
}

/// The running Lua, as far as the direct reader is concerned.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    /// The Lua this library was built for.
    pub(super) release: Option<String>,
    /// Never: there is no reader to verify.
    pub(super) verified: bool,
    pub(super) why_not: String,
}

/// The Lua this build is for, never verified for the direct reader.
pub(super) fn identity() -> &'static Identity {
    static IDENTITY: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| Identity {
        release: Some(LUA_NAME.to_string()),
        verified: false,
        why_not: format!("the direct stack reader is built for Lua 5.4 only, not {LUA_NAME}"),
    })
}

/// Never: nothing in this build reads Lua's memory directly.
pub(super) fn identified() -> bool {
    false
}
