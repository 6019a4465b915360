//! `mqtt-harness report`: render and merge result files.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Result files to render or merge.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_implemented("report")
}
