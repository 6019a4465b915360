//! `mqtt-harness check`: the conformance suite against a broker.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Broker to check, e.g. mqtt://127.0.0.1:1883. Without it, the embedded reference broker is
    /// started in-process and checked.
    #[arg(value_name = "URL")]
    pub broker: Option<String>,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_implemented("check")
}
