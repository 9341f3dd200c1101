//! The Lua thread's side of `runtime::lua_traceback`: how a native thread interrupts Prosody's
//! main Lua thread to learn where it is, the way the standalone `lua` interpreter handles
//! Ctrl-C.
//!
//! At load the main Lua thread (the state's real main thread, `LUA_RIDX_MAINTHREAD`; on Lua 5.1
//! and LuaJIT the loading state if it is the main one, else nothing is installed) and the OS
//! thread running it are remembered, and a handler for [`traceback_signal`] is installed. A
//! request sends that signal to that OS thread (`pthread_kill`). The handler only calls
//! `lua_sethook` (async-signal-safe, see Lua's ldebug.c), after saving the hook in place unless
//! it is already ours. The hook runs on the Lua thread at its next instruction: it first puts
//! the saved hook back (a debugger's `debug.sethook`, or Prosody 0.12's util.signal hook, which
//! saves and restores hooks the same way, so the two nest in either order), then reads the stack
//! and delivers the text. Nothing is allocated, locked or called into Lua in the handler.
//!
//! The hook is set on the main thread only (hooks belong to one Lua thread, but on LuaJIT):
//! while the main thread is blocked in C, or inside a coroutine (a util.async runner, where
//! Prosody runs stanza handlers), the request waits; the hook runs once the main thread runs
//! Lua code again, and then shows the main thread's stack, not the coroutine's. LuaJIT's hooks
//! are global, so a coroutine is interrupted too, but a loop compiled into a trace runs no hook
//! until it leaves the trace.
//!
//! A fork keeps the remembered OS thread when the Lua thread forked (Prosody 0.12's `-D`): a
//! `pthread_atfork` child handler says so for the child's PID; otherwise the child refuses
//! requests. The handler's previous disposition comes back when the Lua state closes.

use std::borrow::Cow;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

use mlua::{ffi, AnyUserData, LightUserData, Lua, Result, UserData};

use crate::pure::signal_names::traceback_signal;
use crate::runtime::lua_traceback;
use crate::runtime::os::{self, Disposition};

/// The main Lua thread's state; null when none is known (or its state closed).
static MAIN_STATE: AtomicPtr<ffi::lua_State> = AtomicPtr::new(null_mut());
/// The OS thread that runs it (`pthread_t`), its kernel id, and the process it is valid in.
static LUA_THREAD: AtomicUsize = AtomicUsize::new(0);
static LUA_THREAD_ID: AtomicI32 = AtomicI32::new(0);
static LUA_PID: AtomicU32 = AtomicU32::new(0);
/// The hook in place when the handler set ours, put back by ours (0: none).
static PREVIOUS_HOOK: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS_MASK: AtomicI32 = AtomicI32::new(0);
static PREVIOUS_COUNT: AtomicI32 = AtomicI32::new(0);
/// How often the hook ran (for the testing entry point).
static HOOKS_RUN: AtomicU64 = AtomicU64::new(0);

static AT_FORK: Once = Once::new();

/// Every event, every instruction: the hook runs at the Lua thread's very next step.
const MASK: c_int = ffi::LUA_MASKCALL | ffi::LUA_MASKRET | ffi::LUA_MASKLINE | ffi::LUA_MASKCOUNT;

/// Frames shown from the top and from the bottom of a deep stack, as `luaL_traceback` does.
const TOP_FRAMES: c_int = 10;
const BOTTOM_FRAMES: c_int = 11;

const REGISTERED: &str = "log_ringbuffer_native.traceback";

/// Kept in the Lua registry of the state that installed the requester: when that state
/// closes, requests stop and the signal's disposition is put back.
struct Installed {
    previous: Disposition,
}

impl UserData for Installed {}

impl Drop for Installed {
    fn drop(&mut self) {
        // After this no request is being sent, nor will be.
        lua_traceback::remove_requester();
        let state = MAIN_STATE.swap(null_mut(), Ordering::SeqCst);
        let signal = traceback_signal();
        // SAFETY: this runs on the Lua thread while its state closes (a finaliser): the state is
        // still valid, and the handler no longer touches it (MAIN_STATE is null). A hook of
        // ours still set is replaced by the one it saved. SIG_IGN discards a signal of ours
        // still pending for this thread, which the previous disposition (often the default:
        // terminate) must not get.
        unsafe {
            if !state.is_null() && is_ours(ffi::lua_gethook(state)) {
                ffi::lua_sethook(
                    state,
                    previous_hook(),
                    PREVIOUS_MASK.load(Ordering::SeqCst),
                    PREVIOUS_COUNT.load(Ordering::SeqCst),
                );
            }
            libc::signal(signal, libc::SIG_IGN);
        }
        os::restore_handler(signal, &self.previous);
    }
}

/// Remembers `lua`'s main thread and the OS thread running it, and installs the requester.
/// Does nothing if another Lua state did already, or if the main thread cannot be found (Lua
/// 5.1 and LuaJIT loaded from a coroutine). Errors only if Lua does.
pub(crate) fn install(lua: &Lua) -> Result<()> {
    if lua.named_registry_value::<Option<AnyUserData>>(REGISTERED)?.is_some() {
        return Ok(());
    }
    let Some(main) = main_state(lua)? else {
        return Ok(());
    };
    if MAIN_STATE.compare_exchange(null_mut(), main, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return Ok(());
    }
    // SAFETY: pthread_self has no preconditions.
    LUA_THREAD.store(unsafe { libc::pthread_self() } as usize, Ordering::SeqCst);
    LUA_THREAD_ID.store(os::thread_id(), Ordering::SeqCst);
    LUA_PID.store(std::process::id(), Ordering::SeqCst);
    AT_FORK.call_once(|| {
        // SAFETY: registers a child handler that only makes async-signal-safe calls and atomic
        // stores; glibc drops it if the library is unloaded.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    let previous = match os::install_handler(traceback_signal(), on_signal) {
        Ok(previous) => previous,
        Err(_) => {
            MAIN_STATE.store(null_mut(), Ordering::SeqCst);
            return Ok(());
        }
    };
    lua.set_named_registry_value(REGISTERED, lua.create_userdata(Installed { previous })?)?;
    lua_traceback::install_requester(interrupt);
    Ok(())
}

/// The main thread of `lua`'s state, if it can be found.
fn main_state(lua: &Lua) -> Result<Option<*mut ffi::lua_State>> {
    // SAFETY: reads the registry's main-thread slot (5.2+) or asks whether the running state is
    // the main one (5.1, LuaJIT), leaving exactly one value (a light userdata or nil) on the
    // stack exec_raw gave; the pointer is only stored, never dereferenced here.
    let main: Option<LightUserData> = unsafe {
        lua.exec_raw((), |state| {
            #[cfg(any(feature = "lua51", feature = "luajit"))]
            let main = {
                let is_main = ffi::lua_pushthread(state) == 1;
                ffi::lua_pop(state, 1);
                if is_main {
                    state
                } else {
                    null_mut()
                }
            };
            #[cfg(not(any(feature = "lua51", feature = "luajit")))]
            let main = {
                ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_MAINTHREAD);
                let main = ffi::lua_tothread(state, -1);
                ffi::lua_pop(state, 1);
                main
            };
            if main.is_null() {
                ffi::lua_pushnil(state);
            } else {
                ffi::lua_pushlightuserdata(state, main.cast());
            }
        })
    }?;
    Ok(main.map(|m| m.0.cast()))
}

/// The requester: sends the signal to the Lua thread, if there is one in this process.
fn interrupt() -> bool {
    if MAIN_STATE.load(Ordering::SeqCst).is_null() || LUA_PID.load(Ordering::SeqCst) != std::process::id() {
        return false;
    }
    let thread = LUA_THREAD.load(Ordering::SeqCst) as libc::pthread_t;
    // SAFETY: `thread` is the Lua thread of this process (it runs for as long as its state is
    // open, and MAIN_STATE is set only then); pthread_kill only sends a signal.
    unsafe { libc::pthread_kill(thread, traceback_signal()) == 0 }
}

/// In a forked child: the remembered thread is still the Lua thread if it forked.
extern "C" fn after_fork_in_child() {
    // SAFETY: pthread_self and pthread_equal have no preconditions.
    let forked_on_lua_thread =
        unsafe { libc::pthread_equal(libc::pthread_self(), LUA_THREAD.load(Ordering::SeqCst) as libc::pthread_t) } != 0;
    if forked_on_lua_thread {
        LUA_PID.store(std::process::id(), Ordering::SeqCst);
        LUA_THREAD_ID.store(os::thread_id(), Ordering::SeqCst);
    }
}

/// The signal handler: sets the hook on the main thread, on the Lua thread only. Async-signal-
/// safe: atomics, `pthread_self` and `lua_gethook`/`lua_sethook`.
extern "C" fn on_signal(_: c_int) {
    let state = MAIN_STATE.load(Ordering::SeqCst);
    // SAFETY: pthread_self and pthread_equal have no preconditions.
    let on_lua_thread =
        unsafe { libc::pthread_equal(libc::pthread_self(), LUA_THREAD.load(Ordering::SeqCst) as libc::pthread_t) } != 0;
    if state.is_null() || !on_lua_thread {
        return;
    }
    // SAFETY: `state` is the main thread of an open state (MAIN_STATE is cleared before it
    // closes) and this is the thread running it, interrupted; lua_gethook* only read it, and
    // lua_sethook may be called from a signal handler (ldebug.c).
    unsafe {
        let current = ffi::lua_gethook(state);
        // Already ours (a second request before the hook ran): what it saved stays.
        if !is_ours(current) {
            PREVIOUS_HOOK.store(current.map_or(0, |f| f as usize), Ordering::SeqCst);
            PREVIOUS_MASK.store(ffi::lua_gethookmask(state), Ordering::SeqCst);
            PREVIOUS_COUNT.store(ffi::lua_gethookcount(state), Ordering::SeqCst);
        }
        ffi::lua_sethook(state, Some(hook), MASK, 1);
    }
}

/// The hook, on the Lua thread: puts back the hook it replaced, then answers the requests made
/// so far with the stack as it is now.
unsafe extern "C-unwind" fn hook(state: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Lua calls the hook with a valid state on its own thread; the saved hook was
        // read from this state by the handler.
        unsafe {
            ffi::lua_sethook(
                state,
                previous_hook(),
                PREVIOUS_MASK.load(Ordering::SeqCst),
                PREVIOUS_COUNT.load(Ordering::SeqCst),
            );
        }
        HOOKS_RUN.fetch_add(1, Ordering::SeqCst);
        // Which requests this answers is read after the hook is put back: a request after this
        // point sets the hook again and gets its own run.
        if let Some(up_to) = lua_traceback::latest_request() {
            // SAFETY: as above; only the debug interface is used, which raises no errors.
            let text = unsafe { traceback(state) };
            lua_traceback::deliver(up_to, text);
        }
    }));
}

fn is_ours(current: Option<ffi::lua_Hook>) -> bool {
    let ours: ffi::lua_Hook = hook;
    current.is_some_and(|f| f as usize == ours as usize)
}

/// The hook saved by the handler.
fn previous_hook() -> Option<ffi::lua_Hook> {
    let address = PREVIOUS_HOOK.load(Ordering::SeqCst);
    // SAFETY: a non-zero value was stored from a `lua_Hook` by the handler.
    (address != 0).then(|| unsafe { std::mem::transmute::<usize, ffi::lua_Hook>(address) })
}

/// The stack of `state` in `luaL_traceback`'s words (level 0, the running function, first),
/// without its Lua calls (global function names are not looked up): `lua_getstack` and
/// `lua_getinfo` do not allocate or raise errors.
///
/// # Safety
/// `state` is a valid Lua state, and this runs on the thread running it.
unsafe fn traceback(state: *mut ffi::lua_State) -> String {
    let mut text = String::from("stack traceback:");
    // SAFETY: the caller's guarantee.
    let last = unsafe { last_level(state) };
    let mut level = 0;
    let mut shown = 0;
    // SAFETY: the caller's guarantee.
    while let Some(frame) = unsafe { frame(state, level) } {
        if shown == TOP_FRAMES && last - level >= BOTTOM_FRAMES {
            let skipped = last - level - BOTTOM_FRAMES + 1;
            text.push_str(&format!("\n\t...\t(skipping {skipped} levels)"));
            level += skipped;
            shown += 1;
            continue;
        }
        text.push_str(&frame);
        level += 1;
        shown += 1;
    }
    text
}

/// The deepest level of `state`'s stack (a binary search, as `luaL_traceback`'s).
///
/// # Safety
/// As [`traceback`].
unsafe fn last_level(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: lua_getstack only fills the zeroed record.
    let exists = |level| unsafe {
        let mut ar: ffi::lua_Debug = std::mem::zeroed();
        ffi::lua_getstack(state, level, &mut ar) != 0
    };
    let (mut low, mut high) = (1, 1);
    while exists(high) {
        low = high;
        high = high.saturating_mul(2);
    }
    while low < high {
        let middle = low + (high - low) / 2;
        if exists(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    high - 1
}

/// One line of the traceback, or None past the bottom of the stack.
///
/// # Safety
/// As [`traceback`].
unsafe fn frame(state: *mut ffi::lua_State, level: c_int) -> Option<String> {
    // SAFETY: lua_getstack and lua_getinfo fill the zeroed record; the strings it then points
    // to are Lua's (interned names and sources, the record's own short_src) and are copied at
    // once.
    unsafe {
        let mut ar: ffi::lua_Debug = std::mem::zeroed();
        if ffi::lua_getstack(state, level, &mut ar) == 0 {
            return None;
        }
        ffi::lua_getinfo(state, c"Sln".as_ptr(), &mut ar);
        let source = text_of(ar.short_src.as_ptr());
        let mut line = format!("\n\t{source}:");
        if ar.currentline > 0 {
            line.push_str(&format!("{}:", ar.currentline));
        }
        let (namewhat, what) = (text_of(ar.namewhat), text_of(ar.what));
        if !namewhat.is_empty() {
            line.push_str(&format!(" in {namewhat} '{}'", text_of(ar.name)));
        } else if what == "main" {
            line.push_str(" in main chunk");
        } else if what == "C" {
            line.push_str(" in ?");
        } else {
            line.push_str(&format!(" in function <{source}:{}>", ar.linedefined));
        }
        Some(line)
    }
}

/// A C string of Lua's, or "" for none.
///
/// # Safety
/// `text` is null or a NUL-terminated string that outlives the result.
unsafe fn text_of<'a>(text: *const c_char) -> Cow<'a, str> {
    if text.is_null() {
        return Cow::Borrowed("");
    }
    // SAFETY: the caller's guarantee.
    unsafe { CStr::from_ptr(text) }.to_string_lossy()
}

/// For the testing entry point: how often the hook ran, and the Lua thread's kernel id (0 if
/// none is known).
pub(crate) fn hooks_run() -> u64 {
    HOOKS_RUN.load(Ordering::SeqCst)
}

pub(crate) fn lua_thread_id() -> c_int {
    if MAIN_STATE.load(Ordering::SeqCst).is_null() {
        return 0;
    }
    LUA_THREAD_ID.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn the_disposition_comes_back_when_the_state_closes() {
        let _serial = lua_traceback::TEST_SERIAL.lock();
        let signal = traceback_signal();
        let before = os::current_handler(signal);
        let lua = Lua::new();
        install(&lua).expect("install");
        install(&lua).expect("a second time does nothing");
        assert_ne!(os::current_handler(signal), before);
        drop(lua);
        assert_eq!(os::current_handler(signal), before);
        assert!(lua_traceback::request().is_none(), "no Lua thread to ask any more");
    }

    #[test]
    fn a_second_state_waits_its_turn() {
        let _serial = lua_traceback::TEST_SERIAL.lock();
        let (first, second) = (Lua::new(), Lua::new());
        install(&first).expect("install");
        install(&second).expect("nothing to do");
        let signal = traceback_signal();
        let ours = os::current_handler(signal);
        drop(second);
        assert_eq!(os::current_handler(signal), ours, "the second state installed nothing");
        drop(first);
        assert_ne!(os::current_handler(signal), ours);
    }

    #[test]
    fn the_signal_on_another_thread_does_nothing() {
        let _serial = lua_traceback::TEST_SERIAL.lock();
        let lua = Lua::new();
        install(&lua).expect("install");
        let hooks = hooks_run();
        let other = std::thread::spawn(|| {
            // SAFETY: sends the signal to this very thread, whose handler is ours.
            unsafe { libc::pthread_kill(libc::pthread_self(), traceback_signal()) };
        });
        other.join().expect("other thread");
        let state = MAIN_STATE.load(Ordering::SeqCst);
        // SAFETY: the state is open and this is its thread.
        assert!(unsafe { ffi::lua_gethook(state) }.is_none(), "no hook was set from another thread");
        lua.load("local x = 1").exec().expect("run");
        assert_eq!(hooks_run(), hooks);
    }

    #[test]
    fn a_signal_still_pending_when_the_state_closes_is_dropped() {
        let _serial = lua_traceback::TEST_SERIAL.lock();
        let signal = traceback_signal();
        let lua = Lua::new();
        install(&lua).expect("install");
        // SAFETY: plain data for sigprocmask; the signal is blocked on this thread only, sent to
        // it (pending), and unblocked once the state closed: had the default disposition (end
        // the process) come back with it still pending, this test process would end here.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::pthread_kill(libc::pthread_self(), signal);
            assert!(os::is_pending(signal));
            drop(lua);
            assert!(!os::is_pending(signal), "discarded");
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }

    #[test]
    fn closing_with_our_hook_set_is_harmless() {
        let _serial = lua_traceback::TEST_SERIAL.lock();
        let lua = Lua::new();
        install(&lua).expect("install");
        // SAFETY: sends the signal to this thread, the Lua thread: the handler sets the hook.
        unsafe { libc::pthread_kill(libc::pthread_self(), traceback_signal()) };
        let state = MAIN_STATE.load(Ordering::SeqCst);
        // SAFETY: the state is open and this is its thread.
        assert!(is_ours(unsafe { ffi::lua_gethook(state) }));
        drop(lua);
    }

    #[test]
    fn a_native_thread_gets_the_traceback_of_lua_spinning() {
        let _serial = lua_traceback::TEST_SERIAL.lock();
        // SAFETY: the debug library is loaded for the chunk below only, which uses it as
        // Prosody's code may (debug.sethook).
        let lua = unsafe { Lua::unsafe_new() };
        install(&lua).expect("install");
        let (went, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (asker_went, asked_done) = (went.clone(), done.clone());
        let asker = std::thread::spawn(move || {
            while !asker_went.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let ticket = lua_traceback::request().expect("a ticket");
            let text = lua_traceback::wait(&ticket, Instant::now() + Duration::from_secs(30));
            asked_done.store(true, Ordering::SeqCst);
            text
        });
        let spin_done = lua.create_function(move |_, ()| Ok(done.load(Ordering::SeqCst))).expect("function");
        lua.globals().set("done", spin_done).expect("global");
        let go = lua
            .create_function(move |_, ()| {
                went.store(true, Ordering::SeqCst);
                Ok(())
            })
            .expect("function");
        lua.globals().set("go", go).expect("global");
        let (same_hook, mask, count): (bool, String, i32) = lua
            .load(
                r#"
                local function counting() end
                debug.sethook(counting, "", 1000)
                local function spin_in_test() go() while not done() do end end
                spin_in_test()
                local hook, mask, count = debug.gethook()
                debug.sethook()
                return hook == counting, mask, count
                "#,
            )
            .eval()
            .expect("spin");
        let text = asker.join().expect("asker").expect("a traceback");
        assert!(text.starts_with("stack traceback:\n\t"), "{text}");
        assert!(text.contains("in local 'spin_in_test'"), "{text}");
        assert!((same_hook, mask.as_str(), count) == (true, "", 1000), "debug.sethook's hook is back");
    }
}
