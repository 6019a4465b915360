//! The command line: one module per subcommand, parsed with clap's derive API.
//!
//! Exit codes: 0 success; 1 a check, scenario, expectation or bench verdict failed; 2 usage error
//! (clap's, a bad scenario file, a broker that cannot be reached).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mqtt_client::options::Scheme;
use mqtt_client::transport::{dialer_for, TlsOptions};
use mqtt_client::BrokerUrl;
use mqtt_protocol::ProtocolVersion;

mod bench;
mod broker;
mod broker_config;
mod check;
mod child_broker;
mod fuzz;
mod output;
mod passwd;
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
    /// Run the reference broker (default listener 127.0.0.1:1883; anonymous access unless a
    /// password file is given).
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
    /// Add, change or delete a user in a password file (mosquitto_passwd's format and flags).
    Passwd(passwd::Args),
}

/// Exit code when a check, scenario or expectation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad input: arguments, a scenario file, a broker that cannot be reached.
pub const EXIT_USAGE: u8 = 2;

/// How long a broker's TCP port may take to accept before it counts as unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS options of every command that takes a broker URL, named as mosquitto_pub names them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM file of the CAs that may sign the broker's certificate, for mqtts:// and wss:// (the
    /// system's CA bundle without it).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// PEM client certificate chain, for a broker that asks for one.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Do not check the broker's certificate (self-signed test brokers): the connection is then
    /// encrypted but not authenticated.
    #[arg(long)]
    pub insecure: bool,
}

impl TlsArgs {
    /// The client's TLS options; says loudly on stderr when they skip the certificate check.
    pub fn options(&self, url: &BrokerUrl) -> TlsOptions {
        if self.insecure && matches!(url.scheme, Scheme::Mqtts | Scheme::Wss) {
            eprintln!(
                "warning: --insecure: the certificate of {url} is not checked; anybody on the path can read and \
                 change this connection"
            );
        }
        TlsOptions {
            cafile: self.cafile.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure,
        }
    }
}

/// A broker URL (mqtt://, mqtts://, ws://, wss://), parsed, its TLS files loaded, and its TCP
/// port answering within [`REACH_TIMEOUT`]: the address that answered, the URL, and the TLS
/// options its transport needs. Or one line saying why not ("connection refused to
/// 127.0.0.1:1883").
pub fn reach(text: &str, tls: &TlsArgs) -> Result<(SocketAddr, BrokerUrl, TlsOptions), String> {
    let url: BrokerUrl = text.parse().map_err(|error| format!("{text}: {error}"))?;
    let tls = tls.options(&url);
    // Loads and checks the TLS files now, so a bad one is reported before anything is sent.
    dialer_for(&url, &tls).map_err(|error| error.to_string())?;
    let addresses: Vec<SocketAddr> = url
        .authority()
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {}: {error}", url.host))?
        .collect();
    let mut first_error = None;
    // A name may resolve to several addresses (IPv6 and IPv4): the first that answers is the one.
    for address in addresses {
        match std::net::TcpStream::connect_timeout(&address, REACH_TIMEOUT) {
            Ok(_) => return Ok((address, url, tls)),
            Err(error) => {
                let reason = match error.kind() {
                    std::io::ErrorKind::ConnectionRefused => format!("connection refused to {address}"),
                    std::io::ErrorKind::TimedOut => {
                        format!("no answer from {address} within {} s", REACH_TIMEOUT.as_secs())
                    }
                    _ => format!("cannot connect to {address}: {error}"),
                };
                first_error.get_or_insert(reason);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| format!("{} has no address", url.host)))
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
        Command::Passwd(args) => passwd::run(args),
    }
}
