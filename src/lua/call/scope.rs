//! Walking tables without running Lua: [`Scope`], the tokens it hands out ([`Table`], [`Str`],
//! [`OpaqueValue`]) and [`Value`], which sorts them by kind.

use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;

use mlua::ffi;

use super::lua_call::{is_upvalue_index, LuaCall};

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

/// Nil or any other value on the stack that a scope does not look into (no table, no string),
/// valid for `'s` (see [`Scope`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpaqueValue<'s> {
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
    Nil(OpaqueValue<'s>),
    /// Anything else.
    Other(OpaqueValue<'s>),
}

impl<'s> Value<'s> {
    #[inline(always)]
    fn of(kind: c_int, at: c_int) -> Value<'s> {
        match kind {
            ffi::LUA_TTABLE => Value::Table(Table { at, _scope: PhantomData }),
            ffi::LUA_TSTRING => Value::Str(Str { at, _scope: PhantomData }),
            ffi::LUA_TNIL => Value::Nil(OpaqueValue { at, _scope: PhantomData }),
            _ => Value::Other(OpaqueValue { at, _scope: PhantomData }),
        }
    }

    #[inline(always)]
    fn at(self) -> c_int {
        match self {
            Value::Table(Table { at, .. })
            | Value::Str(Str { at, .. })
            | Value::Nil(OpaqueValue { at, .. })
            | Value::Other(OpaqueValue { at, .. }) => at,
        }
    }
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
    pub(super) fn below(&self, index: c_int) -> Option<Value<'s>> {
        if !(1..=self.base).contains(&index) {
            return None;
        }
        // SAFETY: a valid state and a stack index in use.
        Some(Value::of(unsafe { ffi::lua_type(self.l(), index) }, index))
    }

    /// Pushes the running closure's upvalue at pseudo-index `upvalue`. `None` if it is no
    /// upvalue pseudo-index or there is no room.
    pub(super) fn upvalue(&mut self, upvalue: c_int) -> Option<Value<'s>> {
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
