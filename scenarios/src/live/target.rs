//! The broker under test, for every command that talks to a live broker (`run`, and later
//! `check` and `bench`): the reference broker started in-process, a mosquitto the harness
//! launches, or any broker at a URL. What each can do decides which scenarios apply: only a
//! broker the harness starts can be crashed and restarted, and only the reference broker can be
//! configured by a scenario.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mqtt_broker::server::{Server, Statistics};
use mqtt_broker::{Broker, Config};
use mqtt_client::BrokerUrl;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::mosquitto::{Mosquitto, MosquittoConfig};
use crate::scenario::Requirement;

/// The reference broker on its own runtime (one worker thread) on a loopback port. A crash drops
/// the server and every connection task at once, with no DISCONNECT, as a killed process would;
/// a restart binds the same port afresh, with no sessions.
pub struct ReferenceBroker {
    runtime: Option<tokio::runtime::Runtime>,
    address: SocketAddr,
    config: Config,
    server: Option<JoinHandle<Arc<Statistics>>>,
}

impl ReferenceBroker {
    /// Starts on `127.0.0.1:0`.
    pub fn start(config: Config) -> io::Result<ReferenceBroker> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("reference-broker")
            .enable_all()
            .build()?;
        // Bound without blocking on the broker's runtime: this may be called from inside another.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let mut broker = ReferenceBroker {
            runtime: Some(runtime),
            address,
            config,
            server: None,
        };
        broker.serve(listener)?;
        Ok(broker)
    }

    /// Runs a new broker on `listener`, on the broker's own runtime.
    fn serve(&mut self, listener: std::net::TcpListener) -> io::Result<()> {
        let Some(runtime) = &self.runtime else {
            return Err(io::Error::other("the broker's runtime is gone"));
        };
        listener.set_nonblocking(true)?;
        let _guard = runtime.enter();
        let listener = TcpListener::from_std(listener)?;
        let server = Server::new(vec![listener], Broker::new(self.config.clone()));
        self.server = Some(runtime.spawn(server.run(std::future::pending::<()>())));
        Ok(())
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the broker as a crash would: every connection ends without a word.
    pub async fn crash(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            // Cancelled: the listener and every connection are closed once this returns.
            let _ = server.await;
        }
    }

    /// Starts the broker again on the same port, empty.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.crash().await;
        // std sets SO_REUSEADDR, so the port is free again at once.
        let listener = std::net::TcpListener::bind(self.address)?;
        self.serve(listener)
    }
}

impl Drop for ReferenceBroker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What to run against.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// The reference broker, started in-process for each run with the scenario's configuration.
    Reference,
    /// A mosquitto the harness launches (it can crash it; a restart on the same port is to come).
    Mosquitto(MosquittoConfig),
    /// A broker somewhere: neither restartable nor configurable.
    Url(BrokerUrl),
}

impl TargetSpec {
    /// Whether this target can do what a scenario requires; the reason when not.
    pub fn supports(&self, requirement: Requirement) -> Result<(), String> {
        match (self, requirement) {
            (TargetSpec::Reference, _) => Ok(()),
            (TargetSpec::Mosquitto(_), Requirement::BrokerRestart) => Err(
                "it restarts the broker, and the launcher cannot yet start mosquitto again on the same port".to_owned(),
            ),
            (TargetSpec::Mosquitto(_), Requirement::BrokerConfig) => {
                Err("it configures the broker, which only the reference broker allows".to_owned())
            }
            (TargetSpec::Url(url), Requirement::BrokerRestart) => Err(format!(
                "it crashes and restarts the broker, which the harness cannot do to {url}"
            )),
            (TargetSpec::Url(url), Requirement::BrokerConfig) => Err(format!(
                "it configures the broker, which the harness cannot do to {url}"
            )),
        }
    }

    /// How reports name it.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Reference => "the reference broker (in-process)".to_owned(),
            TargetSpec::Mosquitto(_) => "mosquitto (launched by the harness)".to_owned(),
            TargetSpec::Url(url) => url.to_string(),
        }
    }
}

/// A running broker under test, for one run (or shared by runs against a URL).
pub enum Target {
    Reference(ReferenceBroker),
    Mosquitto(Option<Mosquitto>, MosquittoConfig),
    Url(SocketAddr),
}

impl Target {
    /// Starts what `spec` names (nothing for a URL, which is resolved once here).
    pub async fn start(spec: &TargetSpec, config: Config) -> io::Result<Target> {
        match spec {
            TargetSpec::Reference => Ok(Target::Reference(ReferenceBroker::start(config)?)),
            TargetSpec::Mosquitto(mosquitto) => Ok(Target::Mosquitto(
                Some(Mosquitto::start(mosquitto.clone()).await?),
                mosquitto.clone(),
            )),
            TargetSpec::Url(url) => {
                let address = tokio::net::lookup_host(url.authority())
                    .await?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", url.host)))?;
                Ok(Target::Url(address))
            }
        }
    }

    pub fn address(&self) -> Option<SocketAddr> {
        match self {
            Target::Reference(broker) => Some(broker.address()),
            Target::Mosquitto(mosquitto, _) => mosquitto.as_ref().map(Mosquitto::address),
            Target::Url(address) => Some(*address),
        }
    }

    pub async fn crash(&mut self) -> Result<(), String> {
        match self {
            Target::Reference(broker) => {
                broker.crash().await;
                Ok(())
            }
            Target::Mosquitto(mosquitto, _) => {
                if let Some(mosquitto) = mosquitto.take() {
                    mosquitto.stop().await;
                }
                Ok(())
            }
            Target::Url(address) => Err(format!("the harness cannot crash the broker at {address}")),
        }
    }

    pub async fn restart(&mut self) -> Result<(), String> {
        match self {
            Target::Reference(broker) => broker.restart().await.map_err(|error| error.to_string()),
            Target::Mosquitto(..) => Err("the launcher cannot start mosquitto again on the same port".to_owned()),
            Target::Url(address) => Err(format!("the harness cannot restart the broker at {address}")),
        }
    }
}
