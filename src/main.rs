//! `mqtt-harness`: a proving ground for MQTT 3.1.1 and 5.0 brokers.
//!
//! One command-line program over the workspace's crates: conformance checks (`check`),
//! deterministic network-failure simulation (`sim`), the same scenarios against a live broker
//! (`run`), load generation (`bench`), reports (`report`) and a reference broker (`broker`).
//! Each subcommand lives in its own module under `src/cli/`.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    restore_sigpipe();
    cli::main()
}

/// Rust ignores SIGPIPE, so printing to a closed pipe panics. A command-line tool should end
/// quietly instead, as `ls | head` does: restore the default action.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; setting a signal's action
    // to its default has no other effect on the program.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}
