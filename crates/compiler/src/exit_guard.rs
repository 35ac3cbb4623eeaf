//! Keeps LLVM work out of the process's exit handlers.
//!
//! `exit()` runs LLVM's C++ static destructors (its command-line options, pass registries and
//! target registry). A thread still inside LLVM at that moment uses freed globals and the process
//! dies with a segmentation fault instead of its exit code. Owners of compile threads join them
//! before the process exits (`kiln_runtime::Runtime::shutdown`); this guard is the second line
//! for an owner that did not: every compilation holds an [`Active`] token, and an `atexit`
//! handler refuses new compilations and waits for the running ones to finish.
//!
//! Exit handlers run in the reverse order of their registration, so the handler must be
//! registered after every LLVM destructor it has to precede. LLVM's global objects register
//! theirs when the process starts, but its function-local statics register theirs when first
//! used, which can be in any compilation (a pass or an option first met at the default level,
//! say). So the handler is registered again each time a compilation finishes, for the first
//! [`REREGISTRATIONS`] compilations: by then the code paths that build such statics have run, and
//! the registrations (one small entry each in the C library's exit list) stay bounded.

use crate::CompileError;
use std::{
    cell::Cell,
    sync::{Condvar, Mutex, Once},
};

/// Compilations running in the process, and whether the process is exiting.
#[derive(Debug, Default)]
struct State {
    active: usize,
    exiting: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    active: 0,
    exiting: false,
});
static FINISHED: Condvar = Condvar::new();
static REGISTER: Once = Once::new();

/// Compilations after which the exit handler is registered again (see the module docs).
const REREGISTRATIONS: usize = 512;
/// Registrations left.
static REREGISTERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// Compilations running on this thread: LLVM reports a fatal error by calling `exit()`
    /// from the compiling thread, which must not wait for itself. No destructor, so the exit
    /// handler can still read it after this thread's destructors ran.
    static ON_THIS_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// A running compilation; the process's exit handlers wait until it is dropped.
#[derive(Debug)]
pub(crate) struct Active(());

/// Starts a compilation, or refuses once the process has begun to exit.
pub(crate) fn enter() -> Result<Active, CompileError> {
    REGISTER.call_once(register);
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if state.exiting {
        return Err(CompileError::Exiting);
    }
    state.active += 1;
    ON_THIS_THREAD.with(|n| n.set(n.get() + 1));
    Ok(Active(()))
}

/// Registers [`wait_for_compilations`] with `atexit`, so that it runs before every exit handler
/// registered so far.
fn register() {
    // SAFETY: `atexit` takes a plain `extern "C" fn()` that lives for the whole process; the
    // handler may run several times, and does the same each time.
    if unsafe { libc::atexit(wait_for_compilations) } != 0 {
        tracing::warn!("could not register the exit handler that waits for compilations");
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        // After LLVM's work, before this compilation counts as finished: any function-local
        // static it built has registered its destructor, which the handler must precede.
        if REREGISTERED.fetch_add(1, Ordering::Relaxed) < REREGISTRATIONS {
            register();
        }
        ON_THIS_THREAD.with(|n| n.set(n.get().saturating_sub(1)));
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        state.active -= 1;
        if state.active == 0 {
            FINISHED.notify_all();
        }
    }
}

/// The exit handler: no compilation starts from now on, and exit goes on once the running ones
/// (other than the exiting thread's own) have finished.
extern "C" fn wait_for_compilations() {
    let own = ON_THIS_THREAD.with(Cell::get);
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    state.exiting = true;
    while state.active > own {
        state = FINISHED.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}
