//! mod_log_ringbuffer's native part: a flight recorder for Prosody's logs.
//!
//! Three layers, each using only the ones before it:
//! - `pure`: what a log line and a dump are, with no threads, no statics and no Lua:
//!   `util.format`'s rules, the ring of whole lines, dates, file name templates, options. It
//!   does touch the process's surroundings in two ways, both in `pure::date`: it reads the wall
//!   clock (`time`, `clock_gettime`), and it renders dates with the C library's `localtime_r`
//!   and `strftime`, which read the time zone (`TZ`, or the system's). And it holds `unsafe`,
//!   each block with its `SAFETY` line: those libc calls and `snprintf` (`format::numbers`, for
//!   floats as Lua prints them), the per-line copies of `format::fast` and `format::copy`
//!   (unaligned word and SSE2 loads and stores, into room checked first), and `redact`'s scan
//!   for the bytes its rules start at (SSE2 and, where the CPU has it, AVX2 loads of the line).
//! - `runtime`: the process around them: the ring shared between threads, dump files, the
//!   writer and signal threads, and the reports those threads leave for Prosody's log.
//! - `lua`: the only code that touches a `lua_State`: the sink function Prosody calls for
//!   every line, the stack reader and stanza printer it uses, and the module table.

#![warn(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks, missing_docs)]

mod lua;
mod pure;
mod runtime;

/// What the fuzz targets drive: the formatter and the template renderer.
pub use pure::{format, template};
