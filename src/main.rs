//! `mqtt-harness`: a proving ground for MQTT 3.1.1 and 5.0 brokers.
//!
//! One command-line program over the workspace's crates: conformance checks (`check`),
//! deterministic network-failure simulation (`sim`), the same scenarios against a live broker
//! (`run`), load generation (`bench`), reports (`report`) and a reference broker (`broker`).
//! Each subcommand lives in its own module under `src/cli/`.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::main()
}
