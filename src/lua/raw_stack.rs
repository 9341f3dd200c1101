//! The raw layer under the per-line path: reads the arguments of the running C function
//! straight out of Lua 5.4's internal structures, and tells whether the running Lua is one it
//! may be used with.
//!
//! The sink reads six or so values for every log line. Through the C API (`lua_type`, then
//! `lua_tolstring` or `lua_tointegerx`: an out-of-line call each) that alone costs about 0.7
//! times what Prosody's logger spends on a whole call to an empty sink, more than formatting and
//! storing the line together. Read here, a value costs a few loads.
//!
//! Built for Lua 5.4 only (`raw_stack_none.rs` stands in for any other Lua). The structures are
//! not a public interface, so nothing here touches them unless
//! [`stack_path::decide`](super::stack_path::decide) has settled on it, in this order, each step
//! before any dereference of Lua's memory:
//! 1. `LOG_RINGBUFFER_STACK=api` in the environment (read once) forces the C API;
//! 2. the target must have 64-bit pointers;
//! 3. the running Lua must be one of the releases in [`VERIFIED`], told by its exported
//!    `lua_ident` string, which must come from the same object as the `lua_gettop` this library
//!    calls (so it names the Lua actually running);
//! 4. only then does the probe ([`probe_call`](super::call::probe_call)) compare this reader
//!    with the C API once, for every kind of value it returns; it is used only if they agree.
//!
//! Anything else takes the C API, which works with any Lua 5.4.

use std::ffi::{c_void, CStr};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::OnceLock;

use mlua::ffi;

use crate::pure::format::{Arg, ArgValues};

/// The `lua_ident` strings (`"$LuaVersion: " LUA_COPYRIGHT " $"`, lapi.c) of the releases whose
/// layout was checked field by field against the constants below: lstate.h, lobject.h and
/// lstate.c at the tags v5.4.0 to v5.4.8 of github.com/lua/lua, and Debian bookworm's
/// lua5.4 5.4.4-3+deb12u1 (its patches leave those files untouched).
const VERIFIED: [&str; 9] = [
    "Lua 5.4.0  Copyright (C) 1994-2020 Lua.org, PUC-Rio",
    "Lua 5.4.1  Copyright (C) 1994-2020 Lua.org, PUC-Rio",
    "Lua 5.4.2  Copyright (C) 1994-2020 Lua.org, PUC-Rio",
    "Lua 5.4.3  Copyright (C) 1994-2021 Lua.org, PUC-Rio",
    "Lua 5.4.4  Copyright (C) 1994-2022 Lua.org, PUC-Rio",
    "Lua 5.4.5  Copyright (C) 1994-2023 Lua.org, PUC-Rio",
    "Lua 5.4.6  Copyright (C) 1994-2023 Lua.org, PUC-Rio",
    "Lua 5.4.7  Copyright (C) 1994-2024 Lua.org, PUC-Rio",
    "Lua 5.4.8  Copyright (C) 1994-2025 Lua.org, PUC-Rio",
];

// The layout, in bytes on a 64-bit target, the same in every release above. `CommonHeader`
// (lobject.h) is `GCObject *next` (0), `lu_byte tt` (8), `lu_byte marked` (9).

/// `lua_State.top` (lstate.h): after `CommonHeader`, `lu_byte status` (10), `lu_byte allowhook`
/// (11) and `unsigned short nci` (12). `StkId` up to 5.4.4, then `StkIdRel`, a union whose
/// pointer member `p` is what it holds while a function runs.
const STATE_TOP: usize = 16;
/// `lua_State.ci` (lstate.h): `CallInfo *ci`, after `top` and `global_State *l_G` (24).
const STATE_CI: usize = 32;
/// `CallInfo.func` (lstate.h): its first member (`StkId`, later `StkIdRel` as above).
const CALLINFO_FUNC: usize = 0;
/// `TValue.tt_` (lobject.h, `TValuefields`): after `Value value_`, a union of 8 bytes.
const TVALUE_TT: usize = 8;
/// `sizeof(StackValue)` (lobject.h): a `TValue` padded to 16; the `tbclist` member of 5.4.3 on
/// (`TValuefields` and an `unsigned short delta` at 10) fits in the same 16.
const STACK_VALUE_SIZE: usize = 16;
/// `TString.shrlen` (lobject.h): `lu_byte`, after `CommonHeader` and `lu_byte extra` (10).
const TSTRING_SHRLEN: usize = 11;
/// `TString.u.lnglen` (lobject.h): `size_t`, after `unsigned int hash` (12).
const TSTRING_LNGLEN: usize = 16;
/// `TString.contents` (lobject.h): after the union `u`.
const TSTRING_CONTENTS: usize = 24;
/// `CClosure.upvalue[0]` (lobject.h): after `ClosureHeader` (`CommonHeader`, `lu_byte nupvalues`
/// (10), `GCObject *gclist` (16)) and `lua_CFunction f` (24).
const CCLOSURE_UPVALUE: usize = 32;

// Type tags (lobject.h, `makevariant(type, variant)` = type | variant << 4, collectable objects
// with `BIT_ISCOLLECTABLE` = 1 << 6), LUA_T* as in lua.h.
/// `LUA_VNIL`.
const TAG_NIL: u8 = 0x00;
/// `LUA_VFALSE`.
const TAG_FALSE: u8 = 0x01;
/// `LUA_VTRUE`.
const TAG_TRUE: u8 = 0x11;
/// `LUA_VNUMINT`.
const TAG_INT: u8 = 0x03;
/// `LUA_VNUMFLT`.
const TAG_FLOAT: u8 = 0x13;
/// `ctb(LUA_VSHRSTR)`.
const TAG_SHORT_STRING: u8 = 0x44;
/// `ctb(LUA_VLNGSTR)`.
const TAG_LONG_STRING: u8 = 0x54;
/// `LUA_VLIGHTUSERDATA`.
const TAG_LIGHT_USERDATA: u8 = 0x02;
/// `ctb(LUA_VCCL)`: a C closure.
const TAG_C_CLOSURE: u8 = 0x66;

/// One stack slot (`StackValue`) as this file reads it: the value, then its type tag.
#[repr(C)]
struct RawSlot {
    value: u64,
    tag: u8,
}

const _: () = {
    assert!(std::mem::size_of::<RawSlot>() == STACK_VALUE_SIZE);
    assert!(std::mem::offset_of!(RawSlot, tag) == TVALUE_TT);
};

/// Reads a `T` at `offset` bytes into the structure at `base`.
///
/// # Safety
/// `base + offset` must be valid for reading a `T` and aligned for it.
#[inline(always)]
unsafe fn field<T: Copy>(base: *const u8, offset: usize) -> T {
    // SAFETY: the caller vouches for the address.
    unsafe { *(base.add(offset) as *const T) }
}

/// The stack slot of the function Lua is running now (`L->ci->func`; its arguments follow it),
/// read once when a call begins.
#[derive(Clone, Copy)]
pub(super) struct Running {
    func: NonNull<RawSlot>,
}

impl Running {
    /// Reads the running function's slot, and the number of values above it (its arguments
    /// and whatever it pushed: `lua_gettop`).
    ///
    /// # Safety
    /// `state` must be a live `lua_State` of a release in [`VERIFIED`] (see [`identified`]) on a
    /// 64-bit target, running a function.
    #[inline(always)]
    pub(super) unsafe fn read(state: *mut ffi::lua_State) -> (Running, usize) {
        // SAFETY: in the layout stated above, `ci` and `top` are pointer members of lua_State
        // and `func` a pointer member of the CallInfo `ci` points to (the caller vouches for the
        // layout); `top` and `func` point into the same stack, and while a function runs its
        // top is above its slot (lapi.c: `L->top > ci->func`).
        unsafe {
            let call_info: *const u8 = field(state as *const u8, STATE_CI);
            let func: NonNull<RawSlot> = field(call_info, CALLINFO_FUNC);
            let top: *const RawSlot = field(state as *const u8, STATE_TOP);
            (Running { func }, (top.offset_from(func.as_ptr()) - 1) as usize)
        }
    }

    /// What `lua_touserdata(state, lua_upvalueindex(1))` returns in a running C closure whose
    /// first upvalue is a light userdata; null otherwise.
    ///
    /// # Safety
    /// The function must still be running, its stack not moved since [`Running::read`].
    #[inline(always)]
    pub(super) unsafe fn first_upvalue_pointer(self) -> *mut c_void {
        // SAFETY: the running function's slot is live (the caller vouches); a C closure's
        // value is a CClosure, which has at least one upvalue (lua_pushcclosure makes a light C
        // function, tagged otherwise, when it has none), read at its offset.
        unsafe {
            let func = self.func.as_ref();
            if func.tag != TAG_C_CLOSURE {
                return std::ptr::null_mut();
            }
            let first = &*((func.value as *const u8).add(CCLOSURE_UPVALUE) as *const RawSlot);
            if first.tag == TAG_LIGHT_USERDATA {
                first.value as *mut c_void
            } else {
                std::ptr::null_mut()
            }
        }
    }

    /// The function's `count` arguments (and what it pushed since), read in place.
    ///
    /// # Safety
    /// As for [`Running::first_upvalue_pointer`], and `count` must be the number of values
    /// above the function ([`Running::read`]'s). The frame must not be used once the function
    /// pushes a value or returns (whoever picks `'call` must see to that).
    #[inline(always)]
    pub(super) unsafe fn frame<'call>(self, count: usize) -> Frame<'call> {
        // SAFETY: the arguments follow the function's slot, `count` of them.
        Frame { first: unsafe { self.func.as_ptr().add(1) }, count, _call: PhantomData }
    }
}

/// The arguments of the C function Lua is running, read in place. Only for as long as the
/// call it was taken from lasts and pushes nothing (a push may move the stack): the lifetime
/// ties it to a shared borrow of that call's context, which every push needs mutably.
pub(crate) struct Frame<'call> {
    first: *const RawSlot,
    count: usize,
    _call: PhantomData<&'call ()>,
}

impl<'call> Frame<'call> {
    /// The frame without its first `n` arguments.
    #[inline(always)]
    pub(crate) fn skip(&self, n: usize) -> Frame<'call> {
        let n = n.min(self.count);
        // SAFETY: n <= count, so the pointer stays within (or one past) the arguments.
        Frame { first: unsafe { self.first.add(n) }, count: self.count - n, _call: PhantomData }
    }
}

impl<'call> ArgValues<'call> for Frame<'call> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.count
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Arg<'call> {
        if i >= self.count {
            return Arg::Nil;
        }
        // SAFETY: i < count: a live stack slot of the running call (the frame is used only
        // while the stack stays put). A string slot points at a live TString that the slot
        // keeps alive for `'call`, since no Lua code runs while the frame is borrowed.
        unsafe {
            let slot = &*self.first.add(i);
            match slot.tag {
                TAG_SHORT_STRING => {
                    let s = slot.value as *const u8;
                    let len = field::<u8>(s, TSTRING_SHRLEN) as usize;
                    Arg::Str(std::slice::from_raw_parts(s.add(TSTRING_CONTENTS), len))
                }
                TAG_LONG_STRING => {
                    let s = slot.value as *const u8;
                    let len = field::<usize>(s, TSTRING_LNGLEN);
                    Arg::Str(std::slice::from_raw_parts(s.add(TSTRING_CONTENTS), len))
                }
                TAG_INT => Arg::Int(slot.value as i64),
                TAG_FLOAT => Arg::Float(f64::from_bits(slot.value)),
                TAG_TRUE => Arg::Bool(true),
                TAG_FALSE => Arg::Bool(false),
                TAG_NIL => Arg::Nil,
                _ => Arg::Other,
            }
        }
    }
}

static IDENTIFIED: OnceLock<Identity> = OnceLock::new();

/// The running Lua, told by its `lua_ident`.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    /// "Lua 5.4.4" or whatever the Lua says of itself.
    pub(super) release: Option<String>,
    /// One of [`VERIFIED`], the same Lua as the API this library calls, 64-bit pointers.
    pub(super) verified: bool,
    /// Why not, if not.
    pub(super) why_not: String,
}

/// The running Lua, identified the first time this is called (by
/// [`stack_path::decide`](super::stack_path::decide), before the probe runs).
pub(super) fn identity() -> &'static Identity {
    IDENTIFIED.get_or_init(identify)
}

/// Whether the running Lua is one whose layout this file states (known once [`identity`] was
/// called). Nothing in this file may dereference Lua's memory unless it is.
pub(super) fn identified() -> bool {
    IDENTIFIED.get().is_some_and(|id| id.verified)
}

fn identify() -> Identity {
    let Some((ident, same_object)) = lua_ident() else {
        return Identity { release: None, verified: false, why_not: "the running Lua exports no lua_ident".into() };
    };
    // "$LuaVersion: " LUA_COPYRIGHT " $" "$LuaAuthors: ..."
    let copyright = ident.strip_prefix("$LuaVersion: ").and_then(|rest| rest.split(" $").next());
    let release = copyright.map(|c| c.split("  ").next().unwrap_or(c).to_string());
    let why_not = if !cfg!(target_pointer_width = "64") {
        "the stack reader needs 64-bit pointers".to_string()
    } else if !same_object {
        "lua_ident and lua_gettop come from different objects".to_string()
    } else if !copyright.is_some_and(|c| VERIFIED.contains(&c)) {
        format!("{} is not a Lua release whose layout was verified", release.as_deref().unwrap_or("this Lua"))
    } else {
        String::new()
    };
    Identity { release, verified: why_not.is_empty(), why_not }
}

/// The running Lua's `lua_ident`, and whether it comes from the object that also defines the
/// `lua_gettop` this library calls. Found with `dlsym`, so that a Lua without it takes the
/// C API path rather than failing to load this library.
fn lua_ident() -> Option<(String, bool)> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let ident = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"lua_ident".as_ptr()) };
    if ident.is_null() {
        return None;
    }
    // SAFETY: lapi.c defines lua_ident as a NUL-terminated `const char[]`.
    let text = unsafe { CStr::from_ptr(ident as *const std::ffi::c_char) }.to_string_lossy().into_owned();
    let gettop = ffi::lua_gettop as *const c_void;
    Some((text, object_of(ident).is_some_and(|a| Some(a) == object_of(gettop))))
}

/// The base address of the loaded object (executable or shared library) holding `address`.
fn object_of(address: *const c_void) -> Option<usize> {
    // SAFETY: Dl_info is plain data (pointers and integers), for which all zeroes is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only inspects the address and fills `info`.
    let found = unsafe { libc::dladdr(address, &mut info) } != 0;
    (found && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test` links the system's liblua5.4 (Debian bookworm: 5.4.4), which is verified.
    #[test]
    fn the_linked_lua_is_identified() {
        let id = identify();
        assert!(id.verified, "{id:?}");
        assert!(id.release.as_deref().is_some_and(|r| r.starts_with("Lua 5.4.")), "{id:?}");
    }

    #[test]
    fn verified_releases_are_what_lua_ident_holds() {
        for c in VERIFIED {
            assert!(c.starts_with("Lua 5.4.") && c.ends_with(" Lua.org, PUC-Rio"), "{c}");
        }
    }
}
