//! STUB of the TRACEBACK helper's module (branch h22/traceback), with its agreed interface:
//! asking the Lua thread where it is, from another thread. Until it lands, no requester is
//! installed and every request answers `None`.
#![allow(dead_code)]

use std::time::Instant;

/// One request.
pub(crate) struct Ticket(u64);

/// `None`: no requester installed (Lua not known / not supported).
pub(crate) fn request() -> Option<Ticket> {
    None
}

/// The traceback once the hook ran, or `None` by `deadline`.
pub(crate) fn wait(_ticket: &Ticket, _deadline: Instant) -> Option<String> {
    None
}

/// The traceback if the hook ran; never blocks.
pub(crate) fn take(_ticket: &Ticket) -> Option<String> {
    None
}

/// A hook that fires later for this ticket does nothing.
pub(crate) fn cancel(_ticket: Ticket) {}
