//! mod_log_ringbuffer's native part: a flight recorder for Prosody's logs.
//!
//! Log lines are formatted exactly as Prosody's `util.format` would (`format`), kept in a
//! bounded in-memory ring of whole lines (`ring`, shared between threads by `shared_ring`), and
//! written to a file on demand (`dump`, file names from `template`, off the Lua thread by
//! `writer`), by a Prosody event or a signal (`triggers`); threads that cannot call Lua leave
//! their messages in `reports`. `options` checks the user's config, `sink` ties one ring to its
//! options, and `lua_sink`, `lua_stack`, `lua_stanza` and `lua_binding` are the thin layer
//! Prosody's Lua calls into.

pub mod dump;
pub mod format;
pub mod lua_binding;
pub mod lua_sink;
pub mod lua_stack;
pub mod lua_stanza;
pub mod options;
pub mod reports;
pub mod ring;
pub mod shared_ring;
pub mod sink;
pub mod template;
pub mod triggers;
pub mod writer;
