//! How the per-line path reads the Lua stack, settled once per process: straight off the stack
//! (`raw_stack`, Lua 5.4 only) where every check allows, through the C API otherwise.

use std::sync::OnceLock;

use super::raw_stack;

/// How the per-line path reads the Lua stack here, and why.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Straight off the stack (`raw_stack::Frame`); through the C API otherwise.
    pub(crate) direct: bool,
    /// `LOG_RINGBUFFER_STACK=api` forced the C API.
    pub(crate) forced: bool,
    /// The running Lua as its `lua_ident` names it ("Lua 5.4.4"), if it could be read.
    pub(crate) lua: Option<String>,
    /// Why the C API is used (empty for the direct path).
    pub(crate) reason: String,
}

/// The environment variable that forces the C API path: `LOG_RINGBUFFER_STACK=api`.
pub(crate) const FORCE_VARIABLE: &str = "LOG_RINGBUFFER_STACK";

static DECISION: OnceLock<Decision> = OnceLock::new();

/// Whether the per-line path reads the stack directly: settled once by [`decide`]; false until
/// then, and always for a Lua other than 5.4.
#[inline(always)]
pub(crate) fn direct() -> bool {
    DECISION.get().is_some_and(|d| d.direct)
}

/// Settles, the first time it is called, how the per-line path reads the stack: the C API if
/// `LOG_RINGBUFFER_STACK=api` says so or the running Lua is not one `raw_stack` was verified
/// with; otherwise the direct reader if `probe` says it agrees with the C API. `probe` must call
/// [`probe_call`](super::call::probe_call) as a C closure over a light userdata, with arguments
/// of every kind, and return its result; it runs only if the running Lua is identified.
pub(crate) fn decide(probe: impl FnOnce() -> bool) -> &'static Decision {
    DECISION.get_or_init(|| {
        let forced = std::env::var_os(FORCE_VARIABLE).is_some_and(|v| v == "api");
        let id = raw_stack::identity();
        let release = id.release.clone();
        let api = |reason: String| Decision { direct: false, forced, lua: release.clone(), reason };
        if forced {
            api(format!("forced by {FORCE_VARIABLE}=api"))
        } else if !id.verified {
            api(id.why_not.clone())
        } else if !probe() {
            api("the stack reader disagreed with the C API in the probe".into())
        } else {
            Decision { direct: true, forced, lua: release.clone(), reason: String::new() }
        }
    })
}
