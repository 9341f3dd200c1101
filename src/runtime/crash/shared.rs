//! What the arming side makes ahead and the handler reads: the list of armed sinks (`ARMED`),
//! each with its two name buffers (`ArmedSink`), the flags a crash sets (`CRASHING`, `DONE`) and the
//! UTC offset for the header. Written only while no crash has begun (see `ArmedSink::store`).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU8, Ordering};
use std::sync::Arc;

use super::names::{render, Name, Rendered, MAX_PID_SPOTS, NAME_CAP};
use crate::pure::date::now_seconds;
use crate::runtime::dump_count;
use crate::runtime::sink::Sink;

/// Set by the first thread into the handler: from then on nothing the handler reads changes.
pub(super) static CRASHING: AtomicBool = AtomicBool::new(false);

/// Set once the first thread's dumps are written.
pub(super) static DONE: AtomicBool = AtomicBool::new(false);

/// The sinks to dump: a list that is replaced, never changed, while the handler may read it.
pub(super) static ARMED: AtomicPtr<Armed> = AtomicPtr::new(std::ptr::null_mut());

/// Seconds east of UTC when names were last rendered, for the header's local time.
pub(super) static UTC_OFFSET: AtomicI64 = AtomicI64::new(0);

/// The list [`ARMED`] points to: replaced whole, never changed.
pub(super) struct Armed {
    pub(super) slots: Vec<Arc<ArmedSink>>,
}

/// What the handler needs of one sink.
pub(super) struct ArmedSink {
    pub(super) sink: Arc<Sink>,
    /// Two names: the handler reads `names[current]`, a new one is written into the other.
    pub(super) names: [UnsafeCell<Name>; 2],
    /// 0 or 1, or [`NO_NAME`].
    pub(super) current: AtomicU8,
}

const NO_NAME: u8 = 2;

// SAFETY: `names` is written only by `ArmedSink::store` (callers hold `STATE`), into the buffer
// `current` does not name, and only while no crash has begun; the handler reads only the buffer
// `current` names after setting `CRASHING` (see `ArmedSink::store` for why that one is never written
// under it). Everything else is immutable or atomic.
unsafe impl Sync for ArmedSink {}

impl ArmedSink {
    pub(super) fn new(sink: Arc<Sink>) -> Self {
        let empty = || {
            UnsafeCell::new(Name {
                bytes: [0; NAME_CAP],
                len: 0,
                pid: 0,
                pid_spots: [0; MAX_PID_SPOTS],
                pid_spot_count: 0,
            })
        };
        ArmedSink { sink, names: [empty(), empty()], current: AtomicU8::new(NO_NAME) }
    }

    /// Renders the name for a dump now; an unusable name leaves the sink without one.
    pub(super) fn refresh(&self) -> Result<(), String> {
        let rendered = render(&self.sink, std::process::id(), dump_count::next(), now_seconds());
        self.store(rendered.as_ref().ok());
        rendered.map(|_| ())
    }

    /// Makes `rendered` the name the handler uses. Callers hold `STATE`.
    ///
    /// Why the handler never reads a buffer while it is written: a store that sees no crash
    /// begun writes the buffer `current` does not name. A handler that loads `current` after
    /// that check (it sets `CRASHING` first) gets either the old index, which this store does
    /// not write, or the new one, stored after the writing was done; every later store sees
    /// `CRASHING` and stops.
    pub(super) fn store(&self, rendered: Option<&Rendered>) {
        if CRASHING.load(Ordering::SeqCst) {
            return;
        }
        let next = if self.current.load(Ordering::SeqCst) == 0 { 1 } else { 0 };
        let Some(rendered) = rendered else {
            self.current.store(NO_NAME, Ordering::SeqCst);
            return;
        };
        // SAFETY: see above: neither the handler nor another store (STATE) uses this buffer now.
        let name = unsafe { &mut *self.names[usize::from(next)].get() };
        let text = rendered.text.as_bytes();
        name.bytes[..text.len()].copy_from_slice(text);
        name.bytes[text.len()] = 0;
        name.len = text.len();
        name.pid = rendered.pid;
        name.pid_spot_count = rendered.pid_spots.len().min(MAX_PID_SPOTS);
        name.pid_spots[..name.pid_spot_count].copy_from_slice(&rendered.pid_spots[..name.pid_spot_count]);
        self.current.store(next, Ordering::SeqCst);
    }
}
