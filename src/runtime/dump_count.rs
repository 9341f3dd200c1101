//! `{count}`: the dump attempts of the whole process, starting at 0. A dump to a sink's
//! configured file or collector takes the next count; a dump to a one-off file (`to`) only
//! reads it. What renders names ahead of the next dump (`crash`, which cannot render in its
//! signal handler) asks to be told each time the count moves on ([`on_taken`]), so this module
//! imports no other: the sinks that count and the crash handler that renders both point here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNT: AtomicU64 = AtomicU64::new(0);

/// Called after every count taken (see [`on_taken`]).
static TAKEN: OnceLock<fn()> = OnceLock::new();

/// The `{count}` of a dump to the configured file or collector (taking it), or to the one-off
/// file `to` (which takes none).
pub(crate) fn take_for(to: Option<&str>) -> u64 {
    if to.is_some() {
        return next();
    }
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    if let Some(taken) = TAKEN.get() {
        taken(); // dump_on_crash: the next dump's {count} (see runtime::crash)
    }
    count
}

/// The `{count}` the next dump will have.
pub(crate) fn next() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

/// Calls `taken` after every count taken from now on. Only the first call counts (the crash
/// handler's names are the one user).
pub(crate) fn on_taken(taken: fn()) {
    let _ = TAKEN.set(taken);
}
