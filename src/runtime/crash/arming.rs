//! Arming (the Lua thread) and refreshing (whoever dumps): the sinks that dump on a fatal
//! signal, the handler installed with the first and the previous dispositions put back with
//! the last, and the names rendered anew after every dump.

use std::os::raw::c_int;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use super::handler::on_fatal;
use super::previous::{FATAL, PREVIOUS};
use super::shared::{Armed, ArmedSink, ARMED, CRASHING, DONE, UTC_OFFSET};
use crate::pure::date::{now_seconds, utc_offset_at};
use crate::runtime::dump_count;
use crate::runtime::os::{self, Disposition};
use crate::runtime::sink::Sink;

/// The alternate signal stack given to the Lua thread if it has none (mapped lazily).
const ALT_STACK: usize = 256 * 1024;

/// The sinks armed, and the handlers installed for them; changed only under [`STATE`].
pub(super) struct State {
    pub(super) slots: Vec<Arc<ArmedSink>>,
    /// The handlers installed: (signal, index in `FATAL`, the disposition replaced).
    pub(super) installed: Vec<(c_int, usize, Disposition)>,
    pub(super) active: bool,
}

/// Arming's lock (see the lock order in `runtime`): a leaf, never tried by the handler.
pub(super) static STATE: Mutex<State> = Mutex::new(State { slots: Vec::new(), installed: Vec::new(), active: false });

/// Makes a fatal signal dump `sink` (its `dump_on_crash`). Installs the handler with the first
/// sink; again for a sink already armed only renders its name anew.
pub(crate) fn watch(sink: &Arc<Sink>) -> Result<(), String> {
    let mut state = STATE.lock();
    refresh_offset();
    if let Some(slot) = state.slots.iter().find(|s| Arc::ptr_eq(&s.sink, sink)) {
        return slot.refresh();
    }
    let slot = Arc::new(ArmedSink::new(Arc::clone(sink)));
    slot.refresh()?;
    dump_count::on_taken(refresh);
    if !state.active {
        install(&mut state)?;
    }
    state.slots.push(slot);
    publish(&state.slots);
    Ok(())
}

/// Stops `sink` dumping on a fatal signal; the last sink gives the signals their previous
/// dispositions back.
pub(crate) fn unwatch(sink: &Arc<Sink>) {
    let mut state = STATE.lock();
    let before = state.slots.len();
    state.slots.retain(|s| !Arc::ptr_eq(&s.sink, sink));
    if state.slots.len() == before {
        return;
    }
    publish(&state.slots);
    if state.slots.is_empty() {
        uninstall(&mut state);
    }
}

/// Renders every armed sink's name anew (after a dump: `{count}` moved on).
fn refresh() {
    let state = STATE.lock();
    if state.slots.is_empty() {
        return;
    }
    refresh_offset();
    for slot in &state.slots {
        let _ = slot.refresh();
    }
}

fn install(state: &mut State) -> Result<(), String> {
    // Best effort: without it, a stack overflow on the Lua thread just dies as before.
    let _ = os::ensure_alternate_stack(ALT_STACK);
    if DONE.load(Ordering::SeqCst) {
        // A crash was handled and a previous handler let the process go on: start afresh.
        DONE.store(false, Ordering::SeqCst);
        CRASHING.store(false, Ordering::SeqCst);
    }
    for (index, &(signal, name)) in FATAL.iter().enumerate() {
        let problem = |e: std::io::Error| format!("cannot handle {name} for dump_on_crash: {e}");
        let now = match os::disposition(signal) {
            Ok(now) => now,
            Err(e) => {
                uninstall(state);
                return Err(problem(e));
            }
        };
        if now.is_ignored() {
            continue; // as before: the process ignores it (a fault still kills, without a dump)
        }
        // SAFETY: `saved[index]` is false and our handler is not installed for `signal` (see
        // `Previous`); we hold STATE, so nobody else writes it.
        unsafe { (*PREVIOUS.actions[index].get()).write(now.raw()) };
        PREVIOUS.saved[index].store(true, Ordering::SeqCst);
        match os::install_info_handler(signal, on_fatal) {
            Ok(replaced) => state.installed.push((signal, index, replaced)),
            Err(e) => {
                PREVIOUS.saved[index].store(false, Ordering::SeqCst);
                uninstall(state);
                return Err(problem(e));
            }
        }
    }
    state.active = true;
    Ok(())
}

fn uninstall(state: &mut State) {
    for (signal, index, previous) in state.installed.drain(..) {
        os::restore_handler(signal, &previous);
        PREVIOUS.saved[index].store(false, Ordering::SeqCst);
    }
    state.active = false;
}

/// Replaces the list the handler reads. The old list is freed unless a crash has begun (the
/// handler sets `CRASHING` before it loads the list, so a list it may be reading is never freed).
fn publish(slots: &[Arc<ArmedSink>]) {
    let new =
        if slots.is_empty() { std::ptr::null_mut() } else { Box::into_raw(Box::new(Armed { slots: slots.to_vec() })) };
    let old = ARMED.swap(new, Ordering::SeqCst);
    if !old.is_null() && !CRASHING.load(Ordering::SeqCst) {
        // SAFETY: `old` came from Box::into_raw above and is no longer published; no handler
        // can hold it (see above).
        drop(unsafe { Box::from_raw(old) });
    }
}

/// The local time's offset from UTC now, for headers (`%z` is `+hhmm`).
fn refresh_offset() {
    if let Some(offset) = utc_offset_at(now_seconds()) {
        UTC_OFFSET.store(offset, Ordering::Relaxed);
    }
}
