//! The runtime: threads, files and process state around the pure core. `unsafe` here is
//! confined to `os` (the system calls the standard library lacks), `shared_ring` (the lock) and
//! `crash` (the async-signal-safe dump from a fatal signal's handler).

pub(crate) mod auto_dump;
pub(crate) mod crash;
pub(crate) mod dump_file;
pub(crate) mod dump_ledger;
pub(crate) mod forward;
pub(crate) mod inspect;
pub(crate) mod os;
pub(crate) mod regions;
pub(crate) mod reports;
pub(crate) mod retention;
pub(crate) mod shared_ring;
pub(crate) mod signals;
pub(crate) mod sink;
#[cfg(test)]
pub(crate) mod test_dir;
pub(crate) mod thread;
pub(crate) mod writer;
