//! The pure core: no threads, no statics, no Lua. Everything here is unit-tested on its own.
//!
//! Not everything here is a pure function of its arguments, and not everything is safe code:
//! - `date` reads the wall clock (`now_seconds`: `time`; `now_precise`: `clock_gettime`), and
//!   renders dates with the C library's `localtime_r` and `strftime`, which read the time zone
//!   (`TZ`, or the system's) and so give what Lua's `os.date` gives;
//! - `unsafe` (each block with its `SAFETY` line) is in `date` (those libc calls),
//!   `format::numbers` (`snprintf`, for floats as Lua prints them), the per-line path's
//!   copies in `format::fast` and `format::copy` (unaligned word and SSE2 loads and stores, into
//!   room checked first) and `redact`'s scan for the bytes its rules start at (SSE2 and, where
//!   the CPU has it, AVX2 loads of the line).

pub(crate) mod build_stamp;
pub(crate) mod date;
pub(crate) mod dump_names;
pub(crate) mod duration;
pub(crate) mod follow;
pub mod format;
pub(crate) mod forward_target;
pub(crate) mod hung_stop;
pub(crate) mod journal;
pub(crate) mod keyed_hash;
pub(crate) mod level;
pub(crate) mod message_framing;
pub(crate) mod message_match;
pub(crate) mod options;
pub(crate) mod pacing;
pub(crate) mod query;
pub(crate) mod recorder;
pub(crate) mod records;
pub(crate) mod redact;
pub(crate) mod ring;
pub(crate) mod signal_names;
pub mod template;
pub(crate) mod xml_text;
