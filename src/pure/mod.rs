//! The pure core: no threads, no statics, no Lua. Everything here is unit-tested on its own.

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
