//! Messages for Prosody's log from threads that cannot call Lua (the dump writer and the
//! native signal thread). The Lua side takes and logs them.

use parking_lot::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub level: &'static str,
    pub text: String,
}

static REPORTS: Mutex<Vec<Report>> = Mutex::new(Vec::new());

/// Reports queued since the last call, oldest first.
pub fn take() -> Vec<Report> {
    std::mem::take(&mut *REPORTS.lock())
}

pub fn push(level: &'static str, text: String) {
    REPORTS.lock().push(Report { level, text });
}
