//! One running C function call, as safe operations: the only place (with `raw_stack`) where
//! the Lua C API is called on a `lua_State` that Lua handed to a C function.
//!
//! [`LuaCall::with`] is the one unsafe entry: given the state Lua passed to the running C
//! function, it builds a context whose methods are safe. The context keeps its own count of the
//! stack (`top`) and of the room Lua guarantees (`capacity`), so every index is checked in Rust
//! (no C API call) before it reaches Lua, and every push has a slot. Values read off the stack
//! borrow the context: `Frame`, `ApiArgs` and the strings they hand out live only while the
//! context is borrowed shared, and every operation that may move the stack or run Lua code
//! (a push, a call, anything that may step the garbage collector and so run a finalizer) needs
//! it mutably. Safe code therefore cannot read a reallocated stack, nor a string that Lua code
//! may have let go of. The context carries a `'call` lifetime that `with` picks afresh for each
//! call, so nothing taken from it can outlive the call.
//!
//! Lua errors: every operation here either cannot raise or runs protected, except on memory
//! exhaustion (a table or the stack failing to grow, a string failing to be made), where Lua
//! unwinds with `longjmp` past the Rust frames, which then leak whatever they own.
//!
//! One type per file:
//! - `lua_call`: the context itself ([`LuaCall`]) and the probe that checks its direct reads;
//! - `scope`: walking tables without running Lua ([`Scope`] and the tokens it hands out);
//! - `call_args`: the call's arguments kept as given across Lua code ([`CallArgs`]);
//! - `api_args`: the arguments read through the C API for the formatter (`ApiArgs`).

mod api_args;
mod call_args;
mod lua_call;
mod scope;

pub(crate) use call_args::CallArgs;
pub(crate) use lua_call::{probe_call, LuaCall};
pub(crate) use scope::{Scope, Table, Value};
