//! `mqtt-harness broker`: the reference broker on real sockets.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; repeat for several listeners.
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:1883")]
    pub listen: Vec<String>,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_implemented("broker")
}
