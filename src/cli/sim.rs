//! `mqtt-harness sim`: scenarios under deterministic network simulation.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario files or folders.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// How many seeds to run.
    #[arg(long, value_name = "N")]
    pub seeds: Option<u64>,
    /// Replay exactly this seed.
    #[arg(long, value_name = "SEED", conflicts_with = "seeds")]
    pub seed: Option<u64>,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_implemented("sim")
}
