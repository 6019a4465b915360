//! `mqtt-harness bench`: load generation against a broker.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker to load, e.g. mqtt://127.0.0.1:1883.
    #[arg(value_name = "URL")]
    pub broker: String,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_implemented("bench")
}
