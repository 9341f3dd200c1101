//! The Lua binding: the only code that touches a `lua_State`.
//!
//! - `binding`: the module table Prosody's side requires, and the sink handle's own methods, which
//!   drive the runtime (safe, mlua);
//! - `handle`: the sink handle, the userdata that owns a sink's Lua-thread side;
//! - `shell`: the admin shell's methods of the handle (filters, slow reads on a thread);
//! - `dumped`: the outcomes of dumps for the `ringbuffer/dumped` event;
//! - `filter_format`: the message formatter the `filter` option's Lua wrapper calls;
//! - `testing`: a second entry point in the same library for specs and benchmarks;
//! - `upvalues`: the sink closure's upvalues, defined once;
//! - `sink_closure`: the sink function made over them;
//! - `sink_call`: the sink function Prosody calls for every line: one unsafe entry, then safe;
//! - `call`: the raw layer over the C API: one running call as a context with safe methods (a
//!   folder, one type per file);
//! - `stack_path`: the once-only decision how the per-line path reads the stack;
//! - `raw_stack`: the raw layer over Lua 5.4's internals: the direct stack reader and how the
//!   running Lua is identified (exact release via `lua_ident`) before it may be used. Built
//!   for Lua 5.4 only; for any other Lua, `raw_stack_none` stands in, with no reader at all;
//! - `stanza`: native `tostring` of util.stanza objects, on the call context;
//! - `traceback`: the main Lua thread's traceback for a native thread (the signal, the hook).

// Without the `module` feature (cargo test) nothing calls the entry points.
#![cfg_attr(not(feature = "module"), allow(dead_code))]

#[cfg(not(any(feature = "lua51", feature = "lua52", feature = "lua53", feature = "lua54", feature = "luajit")))]
compile_error!("choose the Lua to build for: one of the features lua51, lua52, lua53, lua54, luajit");

mod binding;
mod call;
mod dumped;
mod filter_format;
mod follow;
mod handle;
#[cfg_attr(not(feature = "lua54"), path = "raw_stack_none.rs")]
mod raw_stack;
mod shell;
mod sink_call;
mod sink_closure;
mod stack_path;
mod stanza;
mod testing;
mod traceback;
mod upvalues;
