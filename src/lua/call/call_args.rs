//! The running call's arguments for the general path, which may run Lua code: [`CallArgs`]
//! keeps them as the call was given them, whatever that code does.

use std::cell::Cell;
use std::os::raw::c_int;

use mlua::ffi;

use super::lua_call::LuaCall;
use super::scope::{Scope, Value};
use crate::pure::format::{Arg, FormatError};

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
