//! `mqtt-harness run`: the same scenarios live against a broker.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario files or folders.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// The broker to run against, e.g. mqtt://127.0.0.1:1883.
    #[arg(long, value_name = "URL")]
    pub broker: String,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_implemented("run")
}
