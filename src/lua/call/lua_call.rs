//! The running call's context, [`LuaCall`] (see the folder's documentation for what it
//! guarantees), and the probe that checks its direct reads against the C API's.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

use mlua::ffi;

use crate::lua::raw_stack::{self, Frame, Running};
use crate::lua::stack_path;
use crate::pure::format::{Arg, ArgValues, INTEGER_SUBTYPE};

/// Free slots Lua guarantees a C function on entry (`LUA_MINSTACK`, lua.h).
const MIN_STACK: c_int = ffi::LUA_MINSTACK;
/// Upvalue pseudo-indices the Lua accepts (`MAXUPVAL`, lfunc.h, in 5.2 to 5.4;
/// `LUAI_MAXUPVALUES`, luaconf.h, in 5.1 and LuaJIT), past the last a closure has reading as nil.
const MAX_UPVALUES: c_int = if cfg!(any(feature = "lua51", feature = "luajit")) { 60 } else { 255 };

/// The running call: see the `call` module's documentation.
pub(crate) struct LuaCall<'call> {
    pub(super) state: NonNull<ffi::lua_State>,
    /// `lua_gettop` as this context left it.
    pub(super) top: c_int,
    /// Indices up to this one can be pushed to without `lua_checkstack`.
    pub(super) capacity: c_int,
    /// The running function as read directly at entry, where [`stack_path::direct`] allows;
    /// forgotten by every operation after which the stack may have moved: growing it, and
    /// anything that may run Lua code or the collector (which may shrink it). Pushing within
    /// the room does not move it.
    pub(super) running: Option<Running>,
    /// Invariant in `'call`, so contexts of two calls never unify; not `Send`, not `Sync`.
    _call: PhantomData<fn(&'call ()) -> &'call ()>,
}

impl LuaCall<'_> {
    /// Runs `f` with the context of the running call.
    ///
    /// # Safety
    /// `state` must be the state Lua passed to the C function now running, with nothing pushed
    /// or popped since, and that function must not return to Lua before `with` does. Lua must
    /// be the one this library was built for.
    #[inline(always)]
    pub(crate) unsafe fn with<R>(state: *mut ffi::lua_State, f: impl for<'call> FnOnce(LuaCall<'call>) -> R) -> R {
        let (top, running) = if stack_path::direct() {
            // SAFETY: `direct` only once the running Lua was identified (raw_stack); the caller
            // vouches that `state` is running this C function.
            let (running, top) = unsafe { Running::read(state) };
            (top as c_int, Some(running))
        } else {
            // SAFETY: as the caller vouches.
            (unsafe { ffi::lua_gettop(state) }, None)
        };
        // SAFETY: Lua never runs a C function with a null state.
        let state = unsafe { NonNull::new_unchecked(state) };
        f(LuaCall { state, top, capacity: top + MIN_STACK, running, _call: PhantomData })
    }
}

impl<'call> LuaCall<'call> {
    #[inline(always)]
    fn l(&self) -> *mut ffi::lua_State {
        self.state.as_ptr()
    }

    /// The number of values on the stack: the call's arguments and whatever it pushed.
    #[inline(always)]
    pub(crate) fn top(&self) -> c_int {
        self.top
    }

    /// `index` as an index the C API accepts now, absolute for a stack slot (so that it stays
    /// put as values are pushed): a stack slot in use (positive or relative), the registry, or
    /// an upvalue pseudo-index. `None` for anything else.
    #[inline(always)]
    fn checked(&self, index: c_int) -> Option<c_int> {
        if index > 0 {
            (index <= self.top).then_some(index)
        } else if index > ffi::LUA_REGISTRYINDEX {
            (index < 0 && -index <= self.top).then_some(self.top + 1 + index)
        } else {
            (index == ffi::LUA_REGISTRYINDEX || is_upvalue_index(index)).then_some(index)
        }
    }

    /// Room for `n` more values; false if the stack cannot grow that far.
    #[inline(always)]
    pub(crate) fn ensure(&mut self, n: c_int) -> bool {
        self.top + n <= self.capacity || self.grow(n)
    }

    /// [`Self::ensure`] past the room known so far.
    #[cold]
    fn grow(&mut self, n: c_int) -> bool {
        // SAFETY: a valid state (`with`'s contract); lua_checkstack does not raise.
        if unsafe { ffi::lua_checkstack(self.l(), n) } == 0 {
            return false;
        }
        // The stack may have moved.
        self.running = None;
        self.capacity = self.top + n;
        true
    }

    /// The values on the stack (the call's arguments, and whatever it pushed), read in place,
    /// when [`stack_path::direct`] allows and the stack has not moved since the call began.
    #[inline(always)]
    pub(crate) fn frame(&self) -> Option<Frame<'_>> {
        // SAFETY: `running` was read on the direct path (the running Lua was identified and the
        // probe passed) and is forgotten whenever the stack may have moved, so it still points
        // at the running function's slot, and `top` counts the values above it. The frame
        // borrows this context, so it cannot be used after anything that changes the stack
        // (that needs `&mut self`), nor after the call returns.
        self.running.map(|running| unsafe { running.frame(self.top as usize) })
    }

    /// The running call's arguments in place for the probe, which runs before the decision:
    /// only if the running Lua was identified. With the pointer [`Self::first_upvalue_pointer`]
    /// reads directly.
    fn probe_frame(&self) -> Option<(Frame<'_>, *mut c_void)> {
        if !raw_stack::identified() {
            return None;
        }
        // SAFETY: as in `frame`, with the identification (checked here) standing in for the
        // decision that the probe is there to help make; the state is running this function and
        // nothing was pushed.
        unsafe {
            let (running, top) = Running::read(self.l());
            Some((running.frame(top), running.first_upvalue_pointer()))
        }
    }

    /// The pointer in the running closure's first upvalue if that is a light userdata, null
    /// otherwise. Never dereferenced here.
    #[inline(always)]
    pub(crate) fn first_upvalue_pointer(&self) -> *mut c_void {
        if let Some(running) = self.running {
            // SAFETY: as in `frame`.
            let pointer = unsafe { running.first_upvalue_pointer() };
            if !pointer.is_null() {
                return pointer;
            }
        }
        let first = ffi::lua_upvalueindex(1);
        if self.type_of(first) != ffi::LUA_TLIGHTUSERDATA {
            return std::ptr::null_mut();
        }
        // SAFETY: a valid state and pseudo-index, holding a light userdata.
        unsafe { ffi::lua_touserdata(self.l(), first) }
    }

    /// `lua_type` of `index`; `LUA_TNONE` for an index not valid now.
    #[inline(always)]
    pub(crate) fn type_of(&self, index: c_int) -> c_int {
        match self.checked(index) {
            // SAFETY: a valid state and a valid index.
            Some(at) => unsafe { ffi::lua_type(self.l(), at) },
            None => ffi::LUA_TNONE,
        }
    }

    /// The value at `index` as the formatter sees it. Strings borrow this context.
    #[inline(always)]
    pub(crate) fn arg(&self, index: c_int) -> Arg<'_> {
        let l = self.l();
        match self.type_of(index) {
            ffi::LUA_TNIL | ffi::LUA_TNONE => Arg::Nil,
            ffi::LUA_TBOOLEAN => {
                // SAFETY: a valid state, a valid index holding a boolean.
                Arg::Bool(unsafe { ffi::lua_toboolean(l, index) } != 0)
            }
            ffi::LUA_TNUMBER => {
                // SAFETY: a valid state, a valid index holding a number; these convert nothing.
                // Only 5.3 and 5.4 have integers: mlua's `lua_isinteger` for the others says
                // whether a float holds a whole number, which is not what the formatter asks.
                unsafe {
                    if INTEGER_SUBTYPE && ffi::lua_isinteger(l, index) != 0 {
                        Arg::Int(ffi::lua_tointegerx(l, index, std::ptr::null_mut()))
                    } else {
                        Arg::Float(ffi::lua_tonumberx(l, index, std::ptr::null_mut()))
                    }
                }
            }
            ffi::LUA_TSTRING => self.string_bytes(index).map_or(Arg::Other, Arg::Str),
            _ => Arg::Other,
        }
    }

    /// The bytes of the string at `index`, known to be valid and to hold a string.
    #[inline(always)]
    fn string_bytes(&self, index: c_int) -> Option<&[u8]> {
        let mut len = 0usize;
        // SAFETY: a valid index holding a string (the callers checked both; a relative index
        // means the same slot as its absolute one until something is pushed), so lua_tolstring
        // converts nothing, allocates nothing and returns its bytes (NUL-terminated, `len`
        // long).
        let ptr = unsafe { ffi::lua_tolstring(self.l(), index, &mut len) };
        // SAFETY: `len` bytes at `ptr` belong to the string, which stays put while this
        // context is borrowed shared (see `string_at`).
        (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    }

    /// The bytes of the string at `index`, borrowed from this context: the slot keeps the
    /// string alive, and nothing can change the slot (or run Lua) while the borrow lasts.
    #[inline(always)]
    pub(crate) fn string_at(&self, index: c_int) -> Option<&[u8]> {
        if self.type_of(index) != ffi::LUA_TSTRING {
            return None;
        }
        self.string_bytes(index)
    }

    /// `lua_touserdata`: the pointer of a (light or full) userdata, null otherwise; never
    /// dereferenced here.
    pub(crate) fn userdata_pointer(&self, index: c_int) -> *mut c_void {
        match self.checked(index) {
            // SAFETY: a valid state and index.
            Some(at) => unsafe { ffi::lua_touserdata(self.l(), at) },
            None => std::ptr::null_mut(),
        }
    }

    /// `index` (made absolute) if it holds a table.
    #[inline(always)]
    fn table_at(&self, index: c_int) -> Option<c_int> {
        let at = self.checked(index)?;
        // SAFETY: a valid state and a valid index.
        (unsafe { ffi::lua_type(self.l(), at) } == ffi::LUA_TTABLE).then_some(at)
    }

    /// A value was pushed (within the room: the stack did not move).
    #[inline(always)]
    fn pushed(&mut self) {
        self.top += 1;
    }

    /// Lua code may have run: the stack may have moved.
    #[inline(always)]
    fn forget(&mut self) {
        self.running = None;
    }

    /// Pushes a copy of the value at `index`. False (nothing pushed) if `index` is not valid
    /// or the stack cannot grow.
    #[inline(always)]
    pub(crate) fn push_value(&mut self, index: c_int) -> bool {
        let Some(at) = self.checked(index) else {
            return false;
        };
        if !self.ensure(1) {
            return false;
        }
        // SAFETY: a valid index, and room for one value.
        unsafe { ffi::lua_pushvalue(self.l(), at) };
        self.pushed();
        true
    }

    /// Pushes nil.
    #[inline(always)]
    pub(crate) fn push_nil(&mut self) -> bool {
        if !self.ensure(1) {
            return false;
        }
        // SAFETY: room for one value.
        unsafe { ffi::lua_pushnil(self.l()) };
        self.pushed();
        true
    }

    /// Pushes a new string with these bytes. This may step the garbage collector, which may run
    /// finalizers (Lua code) before it returns.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> bool {
        if !self.ensure(1) {
            return false;
        }
        // SAFETY: room for one value; lua_pushlstring copies `bytes` before anything else.
        unsafe { ffi::lua_pushlstring(self.l(), bytes.as_ptr() as *const c_char, bytes.len()) };
        self.pushed();
        self.forget();
        true
    }

    /// `t[n]` without metamethods for the table at `table`: pushed, and its type returned.
    /// `LUA_TNONE` (nothing pushed) if `table` holds no table or the stack cannot grow.
    #[inline(always)]
    pub(crate) fn raw_get_index(&mut self, table: c_int, n: i64) -> c_int {
        let Some(table) = self.table_at(table) else {
            return ffi::LUA_TNONE;
        };
        if !self.ensure(1) {
            return ffi::LUA_TNONE;
        }
        // SAFETY: a table at `table` and room for the value pushed.
        let kind = unsafe { ffi::lua_rawgeti(self.l(), table, n) };
        self.pushed();
        kind
    }

    /// `t[n] = v` without metamethods, for the table at `table` and the value on top (popped
    /// either way). False if `table` holds no table or nothing was pushed. Growing the table
    /// may raise on memory exhaustion; it runs no Lua code.
    pub(crate) fn raw_set_index(&mut self, table: c_int, n: i64) -> bool {
        if self.top < 1 {
            return false;
        }
        let Some(table) = self.table_at(table) else {
            self.pop(1);
            return false;
        };
        // SAFETY: a table at `table` and a value on top, which lua_rawseti pops.
        unsafe { ffi::lua_rawseti(self.l(), table, n) };
        self.top -= 1;
        true
    }

    /// Removes the top `n` values (all of them if there are fewer).
    #[inline(always)]
    pub(crate) fn pop(&mut self, n: c_int) {
        self.truncate(self.top - n.clamp(0, self.top));
    }

    /// Removes the values above index `top` (none if `top` is above the top).
    #[inline(always)]
    pub(crate) fn truncate(&mut self, top: c_int) {
        let top = top.max(0);
        if top < self.top {
            // SAFETY: shrinking to a non-negative index below the top.
            unsafe { ffi::lua_settop(self.l(), top) };
            self.top = top;
        }
    }

    /// `lua_pcall(nargs, 1)` on the function and `nargs` arguments at the top: runs Lua code,
    /// protected; leaves one value (the result or the error) in their place. `None` (nothing
    /// called, nothing popped) if fewer than `nargs + 1` values are on the stack.
    pub(crate) fn pcall(&mut self, nargs: c_int) -> Option<c_int> {
        if nargs < 0 || self.top < nargs + 1 {
            return None;
        }
        // SAFETY: the function and its arguments are on the stack; lua_pcall catches every Lua
        // error and leaves exactly one value (result or error) in their place, for which the
        // function's slot makes room.
        let status = unsafe { ffi::lua_pcall(self.l(), nargs, 1, 0) };
        self.top -= nargs;
        self.forget();
        Some(status)
    }
}

/// Whether `index` is an upvalue pseudo-index (always acceptable to the C API). 5.1 and LuaJIT
/// have two other pseudo-indices (`LUA_ENVIRONINDEX`, `LUA_GLOBALSINDEX`) between the registry
/// and the first upvalue.
#[inline(always)]
pub(super) fn is_upvalue_index(index: c_int) -> bool {
    (ffi::lua_upvalueindex(MAX_UPVALUES)..=ffi::lua_upvalueindex(1)).contains(&index)
}

/// A C closure (with a light userdata as its one upvalue) that reads that upvalue and each of
/// its arguments both ways, directly and through the C API, and returns whether the two
/// readings agree for all of them (and that there was at least one argument of each kind).
/// It reads nothing directly unless the running Lua was identified.
///
/// # Safety
/// Only for Lua to call.
pub(crate) unsafe extern "C-unwind" fn probe_call(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua passes the state running this function, which returns after `with` does.
    let agree = std::panic::catch_unwind(|| unsafe { LuaCall::with(state, |call| agrees(&call)) }).unwrap_or(false);
    // SAFETY: Lua guarantees a C function room for LUA_MINSTACK values; one is pushed.
    unsafe { ffi::lua_pushboolean(state, agree as c_int) };
    1
}

fn agrees(call: &LuaCall<'_>) -> bool {
    let Some((frame, direct_upvalue)) = call.probe_frame() else {
        return false;
    };
    let upvalue = call.userdata_pointer(ffi::lua_upvalueindex(1));
    if upvalue.is_null() || direct_upvalue != upvalue {
        return false;
    }
    if frame.count() != call.top() as usize {
        return false;
    }
    let mut kinds = [false; 6];
    for i in 0..frame.count() {
        let (direct, api) = (frame.get(i), call.arg(i as c_int + 1));
        let kind = match (direct, api) {
            (Arg::Str(d), Arg::Str(a)) if d.as_ptr() == a.as_ptr() && d.len() == a.len() => {
                // Short strings are at most 40 bytes (LUAI_MAXSHORTLEN), longer ones long.
                if a.len() > 40 {
                    1
                } else {
                    0
                }
            }
            (Arg::Int(d), Arg::Int(a)) if d == a => 2,
            (Arg::Float(d), Arg::Float(a)) if d.to_bits() == a.to_bits() => 3,
            (Arg::Bool(d), Arg::Bool(a)) if d == a => 4,
            (Arg::Nil, Arg::Nil) => 5,
            (Arg::Other, Arg::Other) => continue,
            _ => return false,
        };
        kinds[kind] = true;
    }
    kinds.iter().all(|&k| k)
}
