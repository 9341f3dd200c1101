//! The Lua binding: the only code that touches a `lua_State`.

// Without the `module` feature (cargo test) nothing calls the entry point.
#![cfg_attr(not(feature = "module"), allow(dead_code))]

mod binding;
mod sink_call;
mod stack;
mod stanza;
