//! One running C function call, as safe operations: the only place (with `raw_stack`) where
//! the Lua C API is called on a `lua_State` that Lua handed to a C function.
//!
//! [`LuaCall::with`] is the one unsafe entry: given the state Lua passed to the running C
//! function, it builds a context whose methods are safe. The context keeps its own count of the
//! stack (`top`) and of the room Lua guarantees (`capacity`), so every index is checked in Rust
//! (no C API call) before it reaches Lua, and every push has a slot. Values read off the stack
//! borrow the context: [`Frame`], [`ApiArgs`] and the strings they hand out live only while the
//! context is borrowed shared, and every operation that may move the stack or run Lua code
//! (a push, a call, anything that may step the garbage collector and so run a finalizer) needs
//! it mutably. Safe code therefore cannot read a reallocated stack, nor a string that Lua code
//! may have let go of. The context carries a `'call` lifetime that `with` picks afresh for each
//! call, so nothing taken from it can outlive the call.
//!
//! Lua errors: every operation here either cannot raise or runs protected, except on memory
//! exhaustion (a table or the stack failing to grow, a string failing to be made), where Lua
//! unwinds with `longjmp` past the Rust frames, which then leak whatever they own.

use std::cell::Cell;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

use mlua::ffi;

use super::raw_stack::{self, Frame, Running};
use super::stack_path;
use crate::pure::format::{Arg, ArgValues, FormatError, INTEGER_SUBTYPE};

/// Free slots Lua guarantees a C function on entry (`LUA_MINSTACK`, lua.h).
const MIN_STACK: c_int = ffi::LUA_MINSTACK;
/// Upvalue pseudo-indices the Lua accepts (`MAXUPVAL`, lfunc.h, in 5.2 to 5.4;
/// `LUAI_MAXUPVALUES`, luaconf.h, in 5.1 and LuaJIT), past the last a closure has reading as nil.
const MAX_UPVALUES: c_int = if cfg!(any(feature = "lua51", feature = "luajit")) { 60 } else { 255 };

/// The running call: see the module documentation.
pub(crate) struct LuaCall<'call> {
    state: NonNull<ffi::lua_State>,
    /// `lua_gettop` as this context left it.
    top: c_int,
    /// Indices up to this one can be pushed to without `lua_checkstack`.
    capacity: c_int,
    /// The running function as read directly at entry, where [`stack_path::direct`] allows;
    /// forgotten by every operation after which the stack may have moved: growing it, and
    /// anything that may run Lua code or the collector (which may shrink it). Pushing within
    /// the room does not move it.
    running: Option<Running>,
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

    /// The arguments from stack index `first` on, read through the C API.
    #[inline(always)]
    pub(crate) fn api_args(&self, first: c_int) -> ApiArgs<'_, 'call> {
        ApiArgs { call: self, first, count: (self.top - first + 1).max(0) as usize }
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

/// Walking tables without running Lua: values pushed in a [`Scope`] stay on the stack until it
/// ends, and a scope offers nothing that could run Lua code or pop them sooner. So a token it
/// hands out ([`Table`], [`Str`]) names a slot that holds that very value for as long as the
/// token can be used, and a string's bytes stay alive as long: the token's lifetime is the
/// scope's, which the closure passed to [`LuaCall::scope`] (or [`Scope::scope`]) cannot let
/// escape. No index or type needs checking again.
pub(crate) struct Scope<'s> {
    state: NonNull<ffi::lua_State>,
    /// The top when the scope began: values at or below it stay put while it lives.
    base: c_int,
    top: c_int,
    /// Pushes may go up to here without `lua_checkstack`.
    room_end: c_int,
    /// Invariant: scopes of two calls never unify.
    _scope: PhantomData<fn(&'s ()) -> &'s ()>,
}

/// A table on the stack, valid for `'s` (see [`Scope`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table<'s> {
    at: c_int,
    _scope: PhantomData<&'s ()>,
}

/// A string on the stack, valid for `'s` (see [`Scope`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Str<'s> {
    at: c_int,
    _scope: PhantomData<&'s ()>,
}

/// Any other value on the stack, valid for `'s` (see [`Scope`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<'s> {
    at: c_int,
    _scope: PhantomData<&'s ()>,
}

/// A value a [`Scope`] pushed, by kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'s> {
    /// A table.
    Table(Table<'s>),
    /// A string.
    Str(Str<'s>),
    /// Nil.
    Nil(Slot<'s>),
    /// Anything else.
    Other(Slot<'s>),
}

impl<'s> Value<'s> {
    #[inline(always)]
    fn of(kind: c_int, at: c_int) -> Value<'s> {
        match kind {
            ffi::LUA_TTABLE => Value::Table(Table { at, _scope: PhantomData }),
            ffi::LUA_TSTRING => Value::Str(Str { at, _scope: PhantomData }),
            ffi::LUA_TNIL => Value::Nil(Slot { at, _scope: PhantomData }),
            _ => Value::Other(Slot { at, _scope: PhantomData }),
        }
    }

    #[inline(always)]
    fn at(self) -> c_int {
        match self {
            Value::Table(Table { at, .. })
            | Value::Str(Str { at, .. })
            | Value::Nil(Slot { at, .. })
            | Value::Other(Slot { at, .. }) => at,
        }
    }
}

/// Whether `index` is an upvalue pseudo-index (always acceptable to the C API). 5.1 and LuaJIT
/// have two other pseudo-indices (`LUA_ENVIRONINDEX`, `LUA_GLOBALSINDEX`) between the registry
/// and the first upvalue.
#[inline(always)]
fn is_upvalue_index(index: c_int) -> bool {
    (ffi::lua_upvalueindex(MAX_UPVALUES)..=ffi::lua_upvalueindex(1)).contains(&index)
}

impl LuaCall<'_> {
    /// Runs `f` in a [`Scope`] with room for `room` values; pops what it pushed afterwards.
    /// `None` if the stack cannot grow that far.
    pub(crate) fn scope<R>(&mut self, room: c_int, f: impl for<'s> FnOnce(&mut Scope<'s>) -> R) -> Option<R> {
        if !self.ensure(room) {
            return None;
        }
        let mut scope =
            Scope { state: self.state, base: self.top, top: self.top, room_end: self.capacity, _scope: PhantomData };
        // A nested scope may grow the stack, which may move it.
        self.running = None;
        let result = f(&mut scope);
        self.capacity = self.capacity.max(scope.room_end);
        Some(result)
    }
}

impl Drop for Scope<'_> {
    /// Drops the values the scope pushed, down to where it began (on a panic too, so that the
    /// enclosing count of the stack stays right).
    #[inline(always)]
    fn drop(&mut self) {
        if self.top > self.base {
            // SAFETY: a valid state; shrinks the stack to a height it had.
            unsafe { ffi::lua_settop(self.l(), self.base) };
        }
    }
}

impl<'s> Scope<'s> {
    #[inline(always)]
    fn l(&self) -> *mut ffi::lua_State {
        self.state.as_ptr()
    }

    /// Room for one more value.
    #[inline(always)]
    fn room(&self) -> bool {
        self.top < self.room_end
    }

    /// Classifies the value just pushed.
    #[inline(always)]
    fn pushed(&mut self, kind: c_int) -> Value<'s> {
        self.top += 1;
        Value::of(kind, self.top)
    }

    /// Runs `f` in a scope within this one (whose tokens stay valid in it), with room for
    /// `room` more values; pops what it pushed afterwards.
    pub(crate) fn scope<R>(&mut self, room: c_int, f: impl for<'i> FnOnce(&mut Scope<'i>) -> R) -> Option<R> {
        if self.top + room > self.room_end {
            // SAFETY: a valid state; lua_checkstack does not raise. The stack may move, which
            // tokens (indices) do not mind, and the values they name stay on it.
            if unsafe { ffi::lua_checkstack(self.l(), room) } == 0 {
                return None;
            }
            self.room_end = self.top + room;
        }
        let mut inner =
            Scope { state: self.state, base: self.top, top: self.top, room_end: self.room_end, _scope: PhantomData };
        let result = f(&mut inner);
        self.room_end = self.room_end.max(inner.room_end);
        Some(result)
    }

    /// The value at stack index `index`, one of the values below the scope (which stay put
    /// while it lives).
    fn below(&self, index: c_int) -> Option<Value<'s>> {
        if !(1..=self.base).contains(&index) {
            return None;
        }
        // SAFETY: a valid state and a stack index in use.
        Some(Value::of(unsafe { ffi::lua_type(self.l(), index) }, index))
    }

    /// Pushes the running closure's upvalue at pseudo-index `upvalue`. `None` if it is no
    /// upvalue pseudo-index or there is no room.
    fn upvalue(&mut self, upvalue: c_int) -> Option<Value<'s>> {
        if !is_upvalue_index(upvalue) || !self.room() {
            return None;
        }
        // SAFETY: a valid pseudo-index and room for the value.
        unsafe { ffi::lua_pushvalue(self.l(), upvalue) };
        // SAFETY: the value just pushed.
        let kind = unsafe { ffi::lua_type(self.l(), -1) };
        Some(self.pushed(kind))
    }

    /// Pushes `t[upvalue]` (the key being the running closure's upvalue at that pseudo-index),
    /// without metamethods. `None` if `key` is no upvalue pseudo-index or there is no room.
    #[inline(always)]
    pub(crate) fn field(&mut self, t: Table<'_>, key: c_int) -> Option<Value<'s>> {
        if !is_upvalue_index(key) || !self.room() {
            return None;
        }
        // SAFETY: `t` names a table (a token), the key a valid pseudo-index, and there is
        // room for the one value: lua_pushvalue pushes the key, lua_rawget replaces it with the
        // value, calling no metamethod.
        let kind = unsafe {
            ffi::lua_pushvalue(self.l(), key);
            ffi::lua_rawget(self.l(), t.at)
        };
        Some(self.pushed(kind))
    }

    /// Pushes `t[n]` without metamethods. `None` if there is no room.
    #[inline(always)]
    pub(crate) fn index(&mut self, t: Table<'_>, n: i64) -> Option<Value<'s>> {
        if !self.room() {
            return None;
        }
        // SAFETY: `t` names a table and there is room for the value pushed.
        let kind = unsafe { ffi::lua_rawgeti(self.l(), t.at, n) };
        Some(self.pushed(kind))
    }

    /// Pushes the metatable of `t`, if it has one (and there is room).
    #[inline(always)]
    pub(crate) fn metatable(&mut self, t: Table<'_>) -> Option<Table<'s>> {
        if !self.room() {
            return None;
        }
        // SAFETY: `t` names a value and there is room for the metatable pushed (if any).
        if unsafe { ffi::lua_getmetatable(self.l(), t.at) } == 0 {
            return None;
        }
        match self.pushed(ffi::LUA_TTABLE) {
            Value::Table(t) => Some(t),
            _ => None,
        }
    }

    /// Whether `v` is (raw-equal to) the running closure's upvalue at pseudo-index `upvalue`.
    #[inline(always)]
    pub(crate) fn is_upvalue(&self, v: Value<'_>, upvalue: c_int) -> bool {
        let at = v.at();
        // SAFETY: `at` names a value (a token's) and `upvalue` a valid pseudo-index; raw
        // equality calls no metamethod.
        is_upvalue_index(upvalue) && unsafe { ffi::lua_rawequal(self.l(), at, upvalue) } != 0
    }

    /// `#t` without metamethods.
    #[inline(always)]
    pub(crate) fn len(&self, t: Table<'_>) -> u64 {
        // SAFETY: `t` names a table; the border search calls no metamethod.
        unsafe { ffi::lua_rawlen(self.l(), t.at) as u64 }
    }

    /// The bytes of `s`, alive as long as the token is usable.
    #[inline(always)]
    pub(crate) fn bytes<'t>(&self, s: Str<'t>) -> &'t [u8] {
        let mut len = 0usize;
        // SAFETY: `s` names a string, so lua_tolstring converts nothing and returns its bytes.
        let ptr = unsafe { ffi::lua_tolstring(self.l(), s.at, &mut len) };
        if ptr.is_null() {
            return &[];
        }
        // SAFETY: `len` bytes at `ptr` belong to the string, which its slot keeps alive, and
        // unchanged, for as long as the token is usable (see `Scope`).
        unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }
    }

    /// Calls `f(key, value)` for each pair of `t` in `lua_next` order (what `pairs` uses) until
    /// it returns false. True if it saw every pair. `f` gets the scope shared, so the traversal
    /// stays valid; the tokens it gets are for that call only.
    pub(crate) fn pairs(
        &mut self,
        t: Table<'_>,
        mut f: impl for<'p> FnMut(&'p Self, Value<'p>, Value<'p>) -> bool,
    ) -> bool {
        if self.top + 2 > self.room_end {
            return false;
        }
        // SAFETY: room for the nil key pushed here and the value lua_next pushes.
        unsafe { ffi::lua_pushnil(self.l()) };
        let key_at = self.top + 1;
        // SAFETY: `t` names a table and the key on top is nil or the key lua_next gave last
        // (`f` cannot touch the stack); lua_next pops it and pushes the next key and value.
        while unsafe { ffi::lua_next(self.l(), t.at) } != 0 {
            // SAFETY: the key and value just pushed are at key_at and key_at + 1.
            let (key_kind, value_kind) =
                unsafe { (ffi::lua_type(self.l(), key_at), ffi::lua_type(self.l(), key_at + 1)) };
            let more = f(self, Value::of(key_kind, key_at), Value::of(value_kind, key_at + 1));
            // SAFETY: drops the value, keeping the key for the next round (or to be dropped).
            unsafe { ffi::lua_settop(self.l(), if more { -2 } else { -3 }) };
            if !more {
                return false;
            }
        }
        // lua_next popped the last key.
        true
    }
}

/// The running call's arguments for code that may run Lua (a `__tostring`, a function it calls,
/// a finalizer the collector runs while a string is made). Such code can replace any slot of
/// the call's frame with `debug.setlocal` (for a C function it reaches every slot, "(C
/// temporary)") and collect what was there. So before anything that may run Lua, [`Self::lua`]
/// anchors every argument in a table that `debug.setlocal` cannot reach (an upvalue of the
/// running closure) and keeps a snapshot of them; from then on [`Self::value`] answers from the
/// snapshot and [`Self::push_original`] pushes from that table. The anchors are cleared when
/// this is dropped.
///
/// So values are always the ones the call was given, and the strings handed out live for
/// `'line`: in their slot (which nothing can change before Lua runs), then in the table; once
/// this is dropped, nothing can run Lua while `'line` lasts, since the call stays borrowed.
pub(crate) struct CallArgs<'line, 'call> {
    call: &'line mut LuaCall<'call>,
    /// The anchoring table, an upvalue (pseudo-index) of the running closure.
    table: c_int,
    /// Its entries in use by calls in progress (a call within a call stacks on top; they end
    /// in reverse order).
    in_use: &'line Cell<i64>,
    /// The call's arguments.
    count: c_int,
    held: Option<Held<'line>>,
}

/// Arguments once anchored: at `base + 1 ..= base + count` in the table, and as read.
struct Held<'line> {
    base: i64,
    values: Vec<Arg<'line>>,
}

impl<'line, 'call> CallArgs<'line, 'call> {
    /// The arguments of `call` (all values on its stack now), to be anchored in the table at
    /// upvalue pseudo-index `table` whose entries in use `in_use` counts.
    pub(crate) fn new(call: &'line mut LuaCall<'call>, table: c_int, in_use: &'line Cell<i64>) -> Self {
        let count = call.top();
        CallArgs { call, table, in_use, count, held: None }
    }

    /// The number of arguments.
    pub(crate) fn count(&self) -> c_int {
        self.count
    }

    /// Argument `index` (1-based) as the call was given it; nil past the last.
    pub(crate) fn value(&self, index: c_int) -> Arg<'line> {
        if index < 1 || index > self.count {
            return Arg::Nil;
        }
        if let Some(held) = &self.held {
            return held.values[(index - 1) as usize];
        }
        let arg = self.call.arg(index);
        // SAFETY: not held yet, so no Lua code has run since this began (all that may run Lua
        // goes through `lua`, which holds first) and the value is the one the call was given.
        // A string lives in its slot until `hold` anchors it in the table, which keeps it until
        // this is dropped; after that nothing can run Lua while `'line` lasts (see above).
        unsafe { std::mem::transmute::<Arg<'_>, Arg<'line>>(arg) }
    }

    /// The call, for anything, Lua code included: the arguments are anchored first. `Err` if
    /// they cannot be (then nothing may run Lua).
    pub(crate) fn lua(&mut self) -> Result<&mut LuaCall<'call>, FormatError> {
        if self.held.is_none() {
            self.hold()?;
        }
        Ok(self.call)
    }

    fn hold(&mut self) -> Result<(), FormatError> {
        let call = &mut *self.call;
        if call.type_of(self.table) != ffi::LUA_TTABLE || !call.ensure(1) {
            return Err("cannot keep the arguments while calling Lua".into());
        }
        let values: Vec<Arg<'line>> = (1..=self.count).map(|i| self.value(i)).collect();
        let base = self.in_use.get();
        for i in 1..=self.count {
            if !(self.call.push_value(i) && self.call.raw_set_index(self.table, base + i64::from(i))) {
                self.release(base, i - 1);
                return Err("cannot keep the arguments while calling Lua".into());
            }
        }
        self.in_use.set(base + i64::from(self.count));
        self.held = Some(Held { base, values });
        Ok(())
    }

    /// Clears entries `base + 1 ..= base + n` and gives them back.
    fn release(&mut self, base: i64, n: c_int) {
        for i in 1..=n {
            if self.call.push_nil() {
                self.call.raw_set_index(self.table, base + i64::from(i));
            }
        }
        self.in_use.set(base);
    }

    /// Pushes argument `index` as the call was given it (from the table once held). Runs no
    /// Lua code.
    pub(crate) fn push_original(&mut self, index: c_int) -> bool {
        match &self.held {
            Some(held) if (1..=self.count).contains(&index) => {
                self.call.raw_get_index(self.table, held.base + i64::from(index)) != ffi::LUA_TNONE
            }
            _ => self.call.push_value(index),
        }
    }

    /// Runs `f` on argument `index` as the call was given it, in a [`Scope`] with room for
    /// `room` more values (no Lua code runs in it).
    pub(crate) fn with_original<R>(
        &mut self,
        index: c_int,
        room: c_int,
        f: impl for<'s> FnOnce(&mut Scope<'s>, Value<'s>) -> R,
    ) -> Option<R> {
        if !(1..=self.count).contains(&index) {
            return None;
        }
        let held = self.held.as_ref().map(|h| h.base + i64::from(index));
        let table = self.table;
        self.call.scope(room + 2, |scope| {
            let value = match held {
                Some(at) => match scope.upvalue(table)? {
                    Value::Table(t) => scope.index(t, at)?,
                    _ => return None,
                },
                None => scope.below(index)?,
            };
            Some(f(scope, value))
        })?
    }

    /// Stores argument `index` (as the call was given it) at `t[n]` for the table at upvalue
    /// pseudo-index `t`, if it is the very string `bytes` belong to. Runs no Lua code.
    pub(crate) fn keep_original(&mut self, index: c_int, bytes: &[u8], t: c_int, n: i64) -> bool {
        let top = self.call.top();
        if !self.push_original(index) {
            return false;
        }
        if !self.call.string_at(-1).is_some_and(|s| std::ptr::eq(s, bytes)) {
            self.call.truncate(top);
            return false;
        }
        self.call.raw_set_index(t, n)
    }
}

impl Drop for CallArgs<'_, '_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.release(held.base, self.count);
        }
    }
}

/// Arguments read through the C API, from stack index `first` on: the per-line path's reader
/// where [`Frame`] is not used.
pub(crate) struct ApiArgs<'a, 'call> {
    call: &'a LuaCall<'call>,
    first: c_int,
    count: usize,
}

impl<'a> ArgValues<'a> for ApiArgs<'a, '_> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.count
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Arg<'a> {
        if i >= self.count {
            return Arg::Nil;
        }
        self.call.arg(self.first + i as c_int)
    }
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
