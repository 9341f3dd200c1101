//! Reads the arguments of the running C function straight off Lua 5.4's stack.
//!
//! The sink reads six or so values for every log line. Through the C API (`lua_type`, then
//! `lua_tolstring` or `lua_tointegerx`: an out-of-line call each) that alone costs about 0.7
//! times what Prosody's logger spends on a whole call to an empty sink, more than formatting and
//! storing the line together. Read here, a value costs a few loads.
//!
//! The layout used (`lua_State.top` at byte 16, `lua_State.ci` at byte 32, `CallInfo.func` at
//! byte 0, 16-byte stack slots with the type tag at byte 8, `TString` length at byte 11 or 16
//! and bytes at 24, a C closure's first upvalue at byte 32) is the same in every Lua 5.4
//! release on 64-bit targets, but it is not a public interface. So [`probe`] compares this
//! reader with the C API once, for every kind of value it returns, and the sink uses it only
//! if they agree. Anything else (floats excepted,
//! which are read too) comes back as `Arg::Other`, for the caller to read through the C API.

use std::os::raw::{c_int, c_void};
use std::sync::OnceLock;

use mlua::ffi;

use crate::pure::format::{Arg, ArgValues};

/// One stack slot (`StackValue`): the value, then its type tag.
#[repr(C)]
struct Slot {
    value: u64,
    tag: u8,
}

const TAG_NIL: u8 = 0x00;
const TAG_FALSE: u8 = 0x01;
const TAG_TRUE: u8 = 0x11;
const TAG_INT: u8 = 0x03;
const TAG_FLOAT: u8 = 0x13;
const TAG_SHORT_STRING: u8 = 0x44;
const TAG_LONG_STRING: u8 = 0x54;
const TAG_LIGHT_USERDATA: u8 = 0x02;
const TAG_C_CLOSURE: u8 = 0x66;

const STATE_TOP: usize = 16;
const STATE_CI: usize = 32;
const STRING_SHORT_LEN: usize = 11;
const STRING_LONG_LEN: usize = 16;
const STRING_BYTES: usize = 24;
const CLOSURE_UPVALUES: usize = 32;

/// The arguments of the C function Lua is running now.
#[derive(Clone, Copy)]
pub struct Frame {
    first: *const Slot,
    count: usize,
}

impl Frame {
    /// # Safety
    /// `state` must be running a C function (this reads its frame), and [`usable`] must have
    /// said yes. The frame is valid until that function pushes a value or returns.
    #[inline(always)]
    pub unsafe fn current(state: *mut ffi::lua_State) -> Frame {
        let top = *((state as *const u8).add(STATE_TOP) as *const *const Slot);
        let first = running_function(state).add(1);
        Frame { first, count: top.offset_from(first).max(0) as usize }
    }

    /// The frame without its first `n` arguments.
    #[inline(always)]
    pub fn skip(&self, n: usize) -> Frame {
        let n = n.min(self.count);
        // SAFETY: n <= count, so the pointer stays within (or one past) the arguments.
        Frame { first: unsafe { self.first.add(n) }, count: self.count - n }
    }
}

/// The stack slot of the function Lua is running now (`L->ci->func`); its arguments follow it.
#[inline(always)]
unsafe fn running_function(state: *mut ffi::lua_State) -> *const Slot {
    let call_info = *((state as *const u8).add(STATE_CI) as *const *const u8);
    *(call_info as *const *const Slot)
}

/// What `lua_touserdata(state, lua_upvalueindex(1))` returns in a running C closure whose first
/// upvalue is a light userdata; null otherwise.
///
/// # Safety
/// As for [`Frame::current`].
#[inline(always)]
pub unsafe fn first_upvalue_pointer(state: *mut ffi::lua_State) -> *mut c_void {
    let func = &*running_function(state);
    if func.tag != TAG_C_CLOSURE {
        return std::ptr::null_mut();
    }
    let first = &*((func.value as *const u8).add(CLOSURE_UPVALUES) as *const Slot);
    if first.tag == TAG_LIGHT_USERDATA {
        first.value as *mut c_void
    } else {
        std::ptr::null_mut()
    }
}

impl<'a> ArgValues<'a> for Frame {
    #[inline(always)]
    fn count(&self) -> usize {
        self.count
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Arg<'a> {
        if i >= self.count {
            return Arg::Nil;
        }
        // SAFETY: i < count: a live stack slot of the running call; a string slot points at a
        // live TString that the stack keeps alive while the call runs.
        unsafe {
            let slot = &*self.first.add(i);
            match slot.tag {
                TAG_SHORT_STRING => {
                    let s = slot.value as *const u8;
                    let len = *s.add(STRING_SHORT_LEN) as usize;
                    Arg::Str(std::slice::from_raw_parts(s.add(STRING_BYTES), len))
                }
                TAG_LONG_STRING => {
                    let s = slot.value as *const u8;
                    let len = *(s.add(STRING_LONG_LEN) as *const usize);
                    Arg::Str(std::slice::from_raw_parts(s.add(STRING_BYTES), len))
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

static USABLE: OnceLock<bool> = OnceLock::new();

/// Whether [`Frame`] may be used: set once by [`probe`]; false until then.
#[inline(always)]
pub fn usable() -> bool {
    USABLE.get().copied().unwrap_or(false)
}

/// Decides [`usable`] the first time it is called: `call` must call [`probe_call`] as a C
/// closure over a light userdata, with arguments of every kind, and return its result.
pub fn probe(call: impl FnOnce() -> bool) {
    USABLE.get_or_init(|| cfg!(target_pointer_width = "64") && call());
}

/// A C closure (with a light userdata as its one upvalue) that reads that upvalue and each of
/// its arguments both ways, and returns whether the two readings agree for all of them (and
/// that there was at least one argument of each kind).
///
/// # Safety
/// For Lua to call.
pub unsafe extern "C-unwind" fn probe_call(state: *mut ffi::lua_State) -> c_int {
    let agree = std::panic::catch_unwind(|| agrees(state)).unwrap_or(false);
    ffi::lua_pushboolean(state, agree as c_int);
    1
}

unsafe fn agrees(state: *mut ffi::lua_State) -> bool {
    if ffi::lua_version(state) != 504.0 {
        return false;
    }
    let upvalue = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1));
    if upvalue.is_null() || first_upvalue_pointer(state) != upvalue {
        return false;
    }
    let top = ffi::lua_gettop(state);
    let frame = Frame::current(state);
    if frame.count != top as usize {
        return false;
    }
    let mut kinds = [false; 6];
    for i in 0..frame.count {
        let index = i as c_int + 1;
        let direct = frame.get(i);
        let seen = match ffi::lua_type(state, index) {
            ffi::LUA_TSTRING => {
                let mut len = 0usize;
                let ptr = ffi::lua_tolstring(state, index, &mut len) as *const u8;
                let Arg::Str(s) = direct else { return false };
                if s.as_ptr() != ptr || s.len() != len {
                    return false;
                }
                if len > 40 {
                    1
                } else {
                    0
                }
            }
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, index) != 0 => {
                if direct != Arg::Int(ffi::lua_tointegerx(state, index, std::ptr::null_mut())) {
                    return false;
                }
                2
            }
            ffi::LUA_TNUMBER => {
                let n = ffi::lua_tonumberx(state, index, std::ptr::null_mut());
                if !matches!(direct, Arg::Float(d) if d.to_bits() == n.to_bits()) {
                    return false;
                }
                3
            }
            ffi::LUA_TBOOLEAN => {
                if direct != Arg::Bool(ffi::lua_toboolean(state, index) != 0) {
                    return false;
                }
                4
            }
            ffi::LUA_TNIL => {
                if direct != Arg::Nil {
                    return false;
                }
                5
            }
            _ => {
                if direct != Arg::Other {
                    return false;
                }
                continue;
            }
        };
        kinds[seen] = true;
    }
    kinds.iter().all(|&k| k)
}
