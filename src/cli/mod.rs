//! The command line: one module per subcommand, parsed with clap's derive API.
//!
//! Exit codes: 0 success; 1 a check, scenario, expectation or bench verdict failed; 2 usage error
//! (clap's, a bad scenario file, a broker that cannot be reached).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mqtt_client::options::Scheme;
use mqtt_client::BrokerUrl;
use mqtt_protocol::ProtocolVersion;

mod bench;
mod broker;
mod check;
mod output;
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

/// Exit code when a check, scenario or expectation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad input: arguments, a scenario file, a broker that cannot be reached.
pub const EXIT_USAGE: u8 = 2;

/// How long a broker's TCP port may take to accept before it counts as unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// A broker URL, parsed and answering a TCP connect within [`REACH_TIMEOUT`]; or one line
/// saying why not ("connection refused to 127.0.0.1:1883").
pub fn reach(text: &str) -> Result<(SocketAddr, BrokerUrl), String> {
    let url: BrokerUrl = text.parse().map_err(|error| format!("{text}: {error}"))?;
    if url.scheme != Scheme::Mqtt {
        return Err(format!(
            "{}:// is not supported yet (TLS and WebSocket come with the transports work): use mqtt://",
            url.scheme.name()
        ));
    }
    let address = url
        .authority()
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {}: {error}", url.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", url.host))?;
    match std::net::TcpStream::connect_timeout(&address, REACH_TIMEOUT) {
        Ok(_) => Ok((address, url)),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(format!("connection refused to {address}"))
        }
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
            Err(format!("no answer from {address} within {} s", REACH_TIMEOUT.as_secs()))
        }
        Err(error) => Err(format!("cannot connect to {address}: {error}")),
    }
}

/// `--protocol`: one version, or every version a case lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V3_1_1,
    All,
}

impl Protocol {
    /// The versions of `versions` this selects, in their order.
    pub fn filter(self, versions: &[ProtocolVersion]) -> Vec<ProtocolVersion> {
        versions
            .iter()
            .copied()
            .filter(|version| match self {
                Protocol::All => true,
                Protocol::V5 => *version == ProtocolVersion::V5,
                Protocol::V3_1_1 => *version == ProtocolVersion::V3_1_1,
            })
            .collect()
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Protocol, String> {
        match text {
            "5.0" | "5" => Ok(Protocol::V5),
            "3.1.1" => Ok(Protocol::V3_1_1),
            "all" => Ok(Protocol::All),
            _ => Err(format!("{text:?}: use 5.0, 3.1.1 or all")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V5 => "5.0",
            Protocol::V3_1_1 => "3.1.1",
            Protocol::All => "all",
        })
    }
}

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
