//! The reference broker in a process of its own, for commands that must measure it apart from the
//! harness (`check --robustness` reads its resident memory): this executable's `broker`
//! subcommand on a loopback port the system picks, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the broker may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ChildBroker {
    child: Child,
    pub address: SocketAddr,
}

impl ChildBroker {
    /// Starts `mqtt-harness broker --listen 127.0.0.1:0 --sys-interval 0` and waits for its
    /// "listening on" line.
    pub fn start() -> Result<ChildBroker, String> {
        let executable = std::env::current_exe().map_err(|error| format!("cannot find this executable: {error}"))?;
        let mut child = Command::new(executable)
            .args(["broker", "--listen", "127.0.0.1:0", "--sys-interval", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start the reference broker: {error}"))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err("the reference broker's stderr is not readable".to_owned());
        };
        let (sender, lines) = mpsc::channel::<String>();
        // Reads every line until the broker exits, so its stderr never fills up and blocks it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line);
            }
        });
        let mut seen = Vec::new();
        let address = loop {
            match lines.recv_timeout(START_TIMEOUT) {
                Ok(line) => {
                    if let Some(address) = line
                        .split("listening on mqtt://")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .and_then(|address| address.parse::<SocketAddr>().ok())
                    {
                        break address;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the reference broker did not say where it listens within {} s: {}",
                        START_TIMEOUT.as_secs(),
                        seen.join(" | ")
                    ));
                }
            }
        };
        Ok(ChildBroker { child, address })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
