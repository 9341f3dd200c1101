//! Asking the Lua thread where it is, from another thread: a ticket per request, answered with
//! the Lua traceback once the Lua thread runs Lua code again.
//!
//! The binding installs a requester (a function that interrupts the Lua thread so that a hook
//! runs at its next Lua instruction, see `lua::traceback`). That hook asks [`latest_request`]
//! which requests it answers *before* it reads the stack, then [`deliver`]s the text to every
//! ticket up to that one still open: a traceback is never older than the request it answers.
//! A ticket cancelled (or dropped) before its hook runs is gone: the hook finds nothing for it.
//! A hook that never runs (the Lua thread is blocked in C, or runs inside a coroutine the hook
//! does not reach) leaves the ticket open: [`wait`] gives up at its deadline and [`take`] may
//! still get the answer later.

use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// One request for a traceback. Dropping it cancels it.
#[derive(Debug)]
pub(crate) struct Ticket(u64);

/// Interrupts the Lua thread; false if it cannot (no Lua thread known in this process).
pub(crate) type Requester = fn() -> bool;

struct Desk {
    requester: Option<Requester>,
    /// The id of the last ticket given out.
    last_id: u64,
    /// Tickets not cancelled or dropped.
    open: Vec<(u64, Answer)>,
}

/// Where a ticket's answer is.
enum Answer {
    Waiting,
    Came(String),
    HandedOver,
}

static DESK: Mutex<Desk> = Mutex::new(Desk { requester: None, last_id: 0, open: Vec::new() });
/// Signalled whenever answers are delivered.
static ANSWERED: Condvar = Condvar::new();

/// Makes `requester` the way requests reach the Lua thread (the binding, at load).
pub(crate) fn install_requester(requester: Requester) {
    DESK.lock().requester = Some(requester);
}

/// No more requests reach the Lua thread (its Lua state is closing). Once this returns, the
/// requester is not running and will not be called again.
pub(crate) fn remove_requester() {
    DESK.lock().requester = None;
}

/// Asks the Lua thread for its traceback. None if no requester is installed or it failed.
pub(crate) fn request() -> Option<Ticket> {
    let mut desk = DESK.lock();
    let requester = desk.requester?;
    desk.last_id += 1;
    let id = desk.last_id;
    // Open before the Lua thread is interrupted: its hook may run at once, and blocks on the
    // desk until it is let go.
    desk.open.push((id, Answer::Waiting));
    if !requester() {
        desk.open.retain(|(open, _)| *open != id);
        return None;
    }
    Some(Ticket(id))
}

/// Waits until the traceback for `ticket` came or `deadline` passed. The ticket stays open
/// when it did not come: [`take`] can still get it later.
pub(crate) fn wait(ticket: &Ticket, deadline: Instant) -> Option<String> {
    let mut desk = DESK.lock();
    loop {
        if !is_waiting(&desk, ticket) {
            return hand_over(&mut desk, ticket);
        }
        if ANSWERED.wait_until(&mut desk, deadline).timed_out() {
            return hand_over(&mut desk, ticket);
        }
    }
}

/// The traceback for `ticket` if it came (once: it is handed over, not copied).
pub(crate) fn take(ticket: &Ticket) -> Option<String> {
    hand_over(&mut DESK.lock(), ticket)
}

/// Gives up on `ticket`: a hook that runs later delivers nothing for it.
pub(crate) fn cancel(ticket: Ticket) {
    drop(ticket);
}

impl Drop for Ticket {
    fn drop(&mut self) {
        DESK.lock().open.retain(|(open, _)| *open != self.0);
    }
}

fn is_waiting(desk: &Desk, ticket: &Ticket) -> bool {
    desk.open.iter().any(|(id, answer)| *id == ticket.0 && matches!(answer, Answer::Waiting))
}

/// The answer for `ticket` if it came and was not handed over yet.
fn hand_over(desk: &mut Desk, ticket: &Ticket) -> Option<String> {
    let (_, answer) = desk.open.iter_mut().find(|(id, _)| *id == ticket.0)?;
    match std::mem::replace(answer, Answer::HandedOver) {
        Answer::Came(text) => Some(text),
        other => {
            *answer = other;
            None
        }
    }
}

/// For the hook, before it reads the stack: the newest request it answers, or None if no
/// ticket is waiting for an answer (nothing to read).
pub(crate) fn latest_request() -> Option<u64> {
    let desk = DESK.lock();
    desk.open.iter().filter(|(_, answer)| matches!(answer, Answer::Waiting)).map(|(id, _)| *id).max()
}

/// For the hook: `text` answers every open ticket up to `up_to` still without an answer.
/// Returns how many it answered.
pub(crate) fn deliver(up_to: u64, text: String) -> usize {
    let mut desk = DESK.lock();
    let mut answered = 0;
    for (_, answer) in desk.open.iter_mut().filter(|(id, answer)| *id <= up_to && matches!(answer, Answer::Waiting)) {
        *answer = Answer::Came(text.clone());
        answered += 1;
    }
    drop(desk);
    if answered > 0 {
        ANSWERED.notify_all();
    }
    answered
}

/// How many tickets are open (for the testing entry point).
pub(crate) fn open_tickets() -> usize {
    DESK.lock().open.len()
}

/// Held by every test that installs a requester: there is one per process.
#[cfg(test)]
pub(crate) static TEST_SERIAL: Mutex<()> = Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

    fn interrupt() -> bool {
        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn refuse() -> bool {
        false
    }

    /// What the hook does: reads which requests it answers first, then delivers.
    fn hook_runs(text: &str) -> usize {
        match latest_request() {
            Some(up_to) => deliver(up_to, text.to_string()),
            None => 0,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[test]
    fn no_requester_no_ticket() {
        let _serial = TEST_SERIAL.lock();
        remove_requester();
        assert!(request().is_none());
        install_requester(refuse);
        assert!(request().is_none(), "a requester that cannot interrupt gives no ticket");
        assert_eq!(open_tickets(), 0);
        remove_requester();
    }

    #[test]
    fn the_hook_answers_the_request() {
        let _serial = TEST_SERIAL.lock();
        install_requester(interrupt);
        let before = INTERRUPTS.load(Ordering::SeqCst);
        let ticket = request().expect("ticket");
        assert_eq!(INTERRUPTS.load(Ordering::SeqCst), before + 1, "the Lua thread was interrupted");
        assert_eq!(take(&ticket), None, "nothing before the hook ran");
        assert_eq!(hook_runs("stack traceback: here"), 1);
        assert_eq!(wait(&ticket, soon()).as_deref(), Some("stack traceback: here"));
        assert_eq!(take(&ticket), None, "handed over once");
        drop(ticket);
        assert_eq!(open_tickets(), 0);
        remove_requester();
    }

    #[test]
    fn wait_gives_up_and_take_gets_it_later() {
        let _serial = TEST_SERIAL.lock();
        install_requester(interrupt);
        let ticket = request().expect("ticket");
        assert_eq!(wait(&ticket, soon()), None, "the hook did not run (Lua blocked in C)");
        assert_eq!(hook_runs("later"), 1);
        assert_eq!(take(&ticket).as_deref(), Some("later"));
        remove_requester();
    }

    #[test]
    fn a_waiter_wakes_when_the_hook_delivers() {
        let _serial = TEST_SERIAL.lock();
        install_requester(interrupt);
        let ticket = request().expect("ticket");
        let hook = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            hook_runs("from the Lua thread")
        });
        let text = wait(&ticket, Instant::now() + Duration::from_secs(30));
        assert_eq!(hook.join().expect("hook"), 1);
        assert_eq!(text.as_deref(), Some("from the Lua thread"));
        remove_requester();
    }

    #[test]
    fn a_cancelled_ticket_gets_nothing_and_the_next_gets_its_own() {
        let _serial = TEST_SERIAL.lock();
        install_requester(interrupt);
        let first = request().expect("ticket");
        cancel(first);
        assert_eq!(hook_runs("late for the cancelled one"), 0, "no ticket to answer");
        let second = request().expect("ticket");
        assert_eq!(take(&second), None, "the late hook's text did not go to the next ticket");
        assert_eq!(hook_runs("for the second"), 1);
        assert_eq!(take(&second).as_deref(), Some("for the second"));
        remove_requester();
    }

    #[test]
    fn a_hook_answers_only_the_requests_made_before_it_looked() {
        let _serial = TEST_SERIAL.lock();
        install_requester(interrupt);
        let first = request().expect("ticket");
        let up_to = latest_request().expect("one waiting");
        // A request made while the hook reads the stack: its own hook comes after.
        let second = request().expect("ticket");
        assert_eq!(deliver(up_to, "read before the second request".into()), 1);
        assert_eq!(take(&first).as_deref(), Some("read before the second request"));
        assert_eq!(take(&second), None);
        assert_eq!(hook_runs("read after it"), 1);
        assert_eq!(take(&second).as_deref(), Some("read after it"));
        remove_requester();
    }

    #[test]
    fn two_open_requests_share_one_hook() {
        let _serial = TEST_SERIAL.lock();
        install_requester(interrupt);
        let (first, second) = (request().expect("ticket"), request().expect("ticket"));
        assert_eq!(hook_runs("both"), 2, "signals may merge into one hook run");
        assert_eq!(take(&first).as_deref(), Some("both"));
        assert_eq!(take(&second).as_deref(), Some("both"));
        remove_requester();
    }

    #[test]
    fn an_answered_ticket_is_not_answered_again() {
        let _serial = TEST_SERIAL.lock();
        install_requester(interrupt);
        let ticket = request().expect("ticket");
        assert_eq!(hook_runs("first answer"), 1);
        assert_eq!(hook_runs("second answer"), 0, "nothing waits any more");
        assert_eq!(take(&ticket).as_deref(), Some("first answer"));
        assert_eq!(hook_runs("third answer"), 0, "nor once it was handed over");
        let asked = Instant::now();
        assert_eq!(wait(&ticket, asked + Duration::from_secs(30)), None);
        assert!(asked.elapsed() < Duration::from_secs(10), "no wait for an answer handed over already");
        remove_requester();
    }
}
