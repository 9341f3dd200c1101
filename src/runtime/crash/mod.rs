//! `dump_on_crash`: when the process gets a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
//! SIGABRT), the handler here appends the ring of every sink that asked for it to that sink's
//! dump file, then lets the signal do what it would have done without this module.
//!
//! A signal handler may only make async-signal-safe calls, and the crashed thread may hold any
//! lock (the allocator's, the ring's). So the handler allocates nothing, waits on no lock, and
//! everything it needs is made in advance:
//! - The dump file's name: rendered when the sink is armed and again after every dump of any
//!   sink, into one of two fixed buffers per sink (the handler reads the other one). `{count}` is
//!   the count the next dump would get, `{time}` the time of that rendering. A forked child
//!   (Prosody 0.12's `-D`) puts its own PID where `{pid}` went.
//! - The header's time: `localtime` is not async-signal-safe, so local time is UTC plus the UTC
//!   offset found at that rendering.
//! - The buffers for the lines and for a name: static, untouched until a crash.
//!
//! The ring is read through [`SharedRing::read_in_crash`](super::shared_ring::SharedRing): a
//! lock that is not had in time is not waited for. When the read cannot be trusted to be whole
//! (the crash came while the crashed thread stored a line or held the lock), the dump says
//! `-- may be incomplete --`, NUL bytes are written as U+2400, and a panic while walking a torn
//! ring is caught.
//!
//! Dumps being written into regular files when the crash comes (see `regions`) are stopped
//! first: the handler freezes the table, waits up to half a second for the writes under way,
//! then takes each dump off its file, newest first: cut off if nothing follows it, else (a
//! region another dump's region follows) filled with `-- Dump failed: cut off by a fatal signal
//! --` and spaces, so the file never holds NUL bytes nor a dump without its footer. The lines
//! those dumps had taken out of the ring come first in the crash dump of their sink, after a
//! line saying so; a dump still waiting for its writer has its lines out of reach, and the
//! crash dump says how many are missing. A compressed dump is written to a hidden file and
//! renamed at the end (see `dump_file`): it just never appears.
//!
//! Installing: `SA_SIGINFO | SA_ONSTACK`, every signal blocked while the handler runs; the Lua
//! thread gets an alternate signal stack if it has none, so a stack overflow can be dumped too.
//! A signal that is ignored is left alone. The dispositions found are put back when the last
//! sink goes, as `signals` does for native triggers.
//!
//! In the handler: the first thread in (an atomic flag) dumps; a thread that crashes at the same
//! moment waits for that dump and does not write. Every fatal signal gets its previous
//! disposition back on entry, so a fault in the handler (or in another thread meanwhile) takes
//! the old path. After the dump: a previous default action is taken by raising the signal again
//! (it is blocked while the handler runs and is delivered as it returns, so the process dies by
//! that signal, with its core dump, whether it was a fault, `abort()` or `kill`); a previous
//! handler function is called as the kernel would have called it, and decides. A watchdog
//! (`alarm`) ends the process by the signal if the dump takes longer than 10 seconds (a hung
//! disk, a FIFO whose reader does not read, a deadlock caused by a torn ring).
//!
//! The files: `arming` (watch, unwatch, install), `shared` (what arming makes ahead for the
//! handler), `names` (the names, rendered ahead), `handler` (the handler itself), `previous`
//! (the dispositions replaced, and passing the signal on), `watchdog`, `in_flight` (dumps being
//! written when the crash comes) and `output` (the dump file and what is written to it).

mod arming;
mod handler;
mod in_flight;
mod names;
mod output;
mod previous;
mod shared;
#[cfg(test)]
mod tests;
mod watchdog;

pub(crate) use arming::{unwatch, watch};
