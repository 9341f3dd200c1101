//! Dump triggers as configured: which signal names are accepted and what each one means.
//!
//! SIGUSR1 and SIGUSR2 belong to Prosody, which turns them into the global events
//! `signal/SIGUSR1` and `signal/SIGUSR2` on 0.12 and 13 alike, so they become event triggers.
//! Any other catchable signal Prosody does not use itself is a native trigger (see
//! `runtime::signals`). Signals Prosody, the C runtime or a crash uses are refused, and so is
//! [`traceback_signal`], which the module keeps for itself.

use std::os::raw::c_int;

/// What fires a dump.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A Prosody global event (including `signal/SIGUSR1` and `signal/SIGUSR2`).
    Event(String),
    /// A signal handled natively, with its name as configured.
    Signal(c_int, String),
}

const NAMED: &[(&str, c_int)] = &[
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGALRM", libc::SIGALRM),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPOLL", libc::SIGPOLL),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSTKFLT", libc::SIGSTKFLT),
];

/// Signals Prosody (or the C runtime under it) uses for itself, or that cannot be caught.
const RESERVED: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE", "SIGKILL", "SIGSTOP", "SIGILL", "SIGFPE", "SIGSEGV", "SIGBUS", "SIGABRT",
    "SIGTRAP", "SIGSYS",
];

/// The signal a native thread sends Prosody's main thread to learn where its Lua code is (see
/// `lua::traceback`): `SIGRTMAX-7`. Prosody 0.12 and 13 use none of the real-time signals (their
/// util.signal knows only the classic names, and 13 blocks only the signals it handles), glibc
/// keeps the two below `SIGRTMIN` for itself, and libraries that take one usually count up
/// from `SIGRTMIN`; the few above it are left for users' own triggers.
pub fn traceback_signal() -> c_int {
    libc::SIGRTMAX() - 7
}

/// Reads a `signal` option. Errors say what is accepted.
pub fn parse_signal(name: &str) -> Result<Trigger, String> {
    if name == "SIGUSR1" || name == "SIGUSR2" {
        return Ok(Trigger::Event(format!("signal/{name}")));
    }
    if RESERVED.contains(&name) {
        return Err(format!("a signal Prosody does not use itself ({name} is reserved), e.g. \"SIGUSR2\""));
    }
    if let Some(&(_, number)) = NAMED.iter().find(|(n, _)| *n == name) {
        return Ok(Trigger::Signal(number, name.to_string()));
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let realtime = if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        offset(rest, '+').map(|n| min + n)
    } else if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        offset(rest, '-').map(|n| max - n)
    } else {
        None
    };
    match realtime {
        Some(number) if number == traceback_signal() => Err(format!(
            "a signal Prosody does not use itself ({name} is reserved: the module uses it to find where Prosody's \
             main loop is stuck), e.g. \"SIGRTMIN+2\""
        )),
        Some(number) if (min..=max).contains(&number) => Ok(Trigger::Signal(number, name.to_string())),
        _ => Err(format!(
            "a signal name: \"SIGUSR1\", \"SIGUSR2\", \"SIGWINCH\", \"SIGRTMIN+n\" or another catchable signal \
             Prosody does not use ({name:?} is not one)"
        )),
    }
}

/// `""` or `"<sign><n>"` after SIGRTMIN/SIGRTMAX.
fn offset(rest: &str, sign: char) -> Option<c_int> {
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(sign)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prosody_signals_become_events() {
        assert_eq!(parse_signal("SIGUSR2"), Ok(Trigger::Event("signal/SIGUSR2".into())));
        assert_eq!(parse_signal("SIGUSR1"), Ok(Trigger::Event("signal/SIGUSR1".into())));
    }

    #[test]
    fn other_signals_are_native() {
        assert_eq!(parse_signal("SIGWINCH"), Ok(Trigger::Signal(libc::SIGWINCH, "SIGWINCH".into())));
        assert_eq!(parse_signal("SIGRTMIN+2"), Ok(Trigger::Signal(libc::SIGRTMIN() + 2, "SIGRTMIN+2".into())));
        assert_eq!(parse_signal("SIGRTMAX-1"), Ok(Trigger::Signal(libc::SIGRTMAX() - 1, "SIGRTMAX-1".into())));
        assert_eq!(parse_signal("SIGRTMIN"), Ok(Trigger::Signal(libc::SIGRTMIN(), "SIGRTMIN".into())));
    }

    #[test]
    fn bad_names_are_refused() {
        for name in
            ["SIGFOO", "USR2", "SIGHUP", "SIGTERM", "SIGKILL", "SIGRTMIN+99", "SIGRTMIN-1", "SIGRTMIN+", "", "9"]
        {
            assert!(parse_signal(name).is_err(), "{name}");
        }
    }

    #[test]
    fn the_traceback_signal_is_refused_by_either_name() {
        let from_min = format!("SIGRTMIN+{}", traceback_signal() - libc::SIGRTMIN());
        for name in ["SIGRTMAX-7", from_min.as_str()] {
            let refused = parse_signal(name).expect_err(name);
            assert!(refused.contains("reserved"), "{refused}");
        }
        assert!(parse_signal("SIGRTMAX-6").is_ok() && parse_signal("SIGRTMAX-8").is_ok(), "its neighbours are free");
    }
}
