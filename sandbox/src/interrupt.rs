//! Cancellation on SIGINT/SIGTERM for a process that runs sandboxes: the
//! signal sets a flag that the build checks between steps and while a
//! step runs (it then kills the step's sandbox), instead of ending the
//! process with sandboxes and scratch directories left behind.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM once [`cancel_on_interrupt`] has been called:
/// hand it to the build as its cancel flag before the handlers go in.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: std::ffi::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs handlers so that SIGINT and SIGTERM set [`INTERRUPTED`] (also
/// returned) instead of ending the process (`SA_RESTART`, so interrupted
/// reads resume). Calling it again installs the same handlers.
pub fn cancel_on_interrupt() -> &'static AtomicBool {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        let _ = unsafe { sigaction(signal, &action) };
    }
    &INTERRUPTED
}
