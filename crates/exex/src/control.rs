//! Switching the service on and off at run time, from any thread: the shape of reth's
//! `JitBackend` (`set_enabled`, `pause`, `resume`, `clear`), for an RPC method or a payload
//! builder to drive.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

#[derive(Debug)]
struct Flags {
    enabled: AtomicBool,
    paused: AtomicBool,
    clear: AtomicBool,
}

/// A handle that controls one [`Service`](crate::Service); cheap to clone. Requests take effect
/// at the service's next poll.
#[derive(Clone, Debug)]
pub struct ServiceControl {
    flags: Arc<Flags>,
}

impl Default for ServiceControl {
    fn default() -> Self {
        Self {
            flags: Arc::new(Flags {
                enabled: AtomicBool::new(true),
                paused: AtomicBool::new(false),
                clear: AtomicBool::new(false),
            }),
        }
    }
}

impl ServiceControl {
    /// Enables or disables compiled code: disabled, the service removes the code it installed
    /// from the registry (frames run on the interpreter) and compiles nothing; heat is still
    /// kept, so enabling again compiles what is hot.
    pub fn set_enabled(&self, enabled: bool) {
        self.flags.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether compiled code is enabled.
    pub fn is_enabled(&self) -> bool {
        self.flags.enabled.load(Ordering::Relaxed)
    }

    /// Stops starting compilations (a payload is being built, say); the queue keeps filling.
    pub fn pause(&self) {
        self.flags.paused.store(true, Ordering::Relaxed);
    }

    /// Starts compilations again.
    pub fn resume(&self) {
        self.flags.paused.store(false, Ordering::Relaxed);
    }

    /// Whether compilations are paused.
    pub fn is_paused(&self) -> bool {
        self.flags.paused.load(Ordering::Relaxed)
    }

    /// Drops the compiled code the service installed and its queued jobs (heat stays).
    pub fn clear(&self) {
        self.flags.clear.store(true, Ordering::Relaxed);
    }

    /// Takes a pending clear request.
    pub(crate) fn take_clear(&self) -> bool {
        self.flags.clear.swap(false, Ordering::Relaxed)
    }
}
