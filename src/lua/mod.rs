//! The Lua binding: the only code that touches a `lua_State`.
//!
//! - `binding`: the module table Prosody's side requires, and the sink handle (safe, mlua);
//! - `shell`: the admin shell's methods of the handle (filters, slow reads on a thread);
//! - `testing`: a second entry point in the same library for specs and benchmarks;
//! - `upvalues`: the sink closure's upvalues, defined once;
//! - `sink_call`: the sink function Prosody calls for every line: one unsafe entry, then safe;
//! - `call`: the raw layer over the C API: one running call as a context with safe methods;
//! - `raw_stack`: the raw layer over Lua 5.4's internals: the direct stack reader, and the
//!   once-only decision (exact release via `lua_ident`, then a probe) whether to use it;
//! - `stanza`: native `tostring` of util.stanza objects, on the call context.

// Without the `module` feature (cargo test) nothing calls the entry points.
#![cfg_attr(not(feature = "module"), allow(dead_code))]

mod binding;
mod call;
mod raw_stack;
mod shell;
mod sink_call;
mod stanza;
mod testing;
mod upvalues;
