//! The per-line path's reader of the call's arguments through the C API, [`ApiArgs`]: used
//! where the stack cannot be read in place.

use std::os::raw::c_int;

use super::lua_call::LuaCall;
use crate::pure::format::{Arg, ArgValues};

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

impl<'call> LuaCall<'call> {
    /// The arguments from stack index `first` on, read through the C API.
    #[inline(always)]
    pub(crate) fn api_args(&self, first: c_int) -> ApiArgs<'_, 'call> {
        ApiArgs { call: self, first, count: (self.top - first + 1).max(0) as usize }
    }
}
