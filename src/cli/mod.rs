//! The command line: one module per subcommand, parsed with clap's derive API.
//!
//! Exit codes: 0 success; 1 a check, scenario or expectation failed; 2 usage error (clap's);
//! 3 the subcommand's capability has not landed yet.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod broker;
mod check;
mod report;
mod run;
mod sim;

/// A proving ground for MQTT 3.1.1 and 5.0: conformance checks with the packets that prove each
/// verdict, deterministic network-failure simulation from a seed, and load generation.
#[derive(Debug, Parser)]
#[command(name = "mqtt-harness", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference broker (default listener 127.0.0.1:1883, anonymous access).
    Broker(broker::Args),
    /// Check a broker's conformance against the catalog of normative statements.
    Check(check::Args),
    /// Run scenarios under deterministic network simulation, from seeds that replay exactly.
    Sim(sim::Args),
    /// Run scenarios live against a broker, with faults through a loopback proxy.
    Run(run::Args),
    /// Measure a broker's throughput, end-to-end latency and loss.
    Bench(bench::Args),
    /// Render or merge result files (terminal, JSON, JUnit XML, HTML, Markdown).
    Report(report::Args),
}

/// Exit code for a subcommand whose capability has not landed yet (2 stays clap's usage error).
pub const EXIT_NOT_IMPLEMENTED: u8 = 3;

pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Broker(args) => broker::run(args),
        Command::Check(args) => check::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Report(args) => report::run(args),
    }
}

/// Says on stderr that `name` has not landed yet and returns exit code 3.
fn not_implemented(name: &str) -> ExitCode {
    eprintln!("`{name}`: not implemented yet");
    ExitCode::from(EXIT_NOT_IMPLEMENTED)
}
