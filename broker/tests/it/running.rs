//! A broker server running in its own task on 127.0.0.1:0, for the tests that talk to it over
//! real sockets. Dropping it (a test that panics) stops the server too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqtt_broker::security::Security;
use mqtt_broker::server::{Server, ServerOptions, Statistics};
use mqtt_broker::{Broker, Config};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long stopping may take.
const STOP_WITHIN: Duration = Duration::from_secs(5);

pub struct Running {
    pub address: SocketAddr,
    pub statistics: Arc<Statistics>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Arc<Statistics>>,
}

impl Running {
    /// Binds 127.0.0.1:0 and runs the server; `Err` says what failed.
    pub async fn try_start(config: Config, options: ServerOptions) -> Result<Running, String> {
        Running::try_start_with(Broker::new(config), options, None).await
    }

    /// Runs `broker` (a security policy set, say), taking new policies from `updates` if given.
    pub async fn try_start_with(
        broker: Broker,
        options: ServerOptions,
        updates: Option<watch::Receiver<Arc<Security>>>,
    ) -> Result<Running, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| format!("cannot bind 127.0.0.1:0: {error}"))?;
        let mut server = Server::new(vec![listener], broker).with_options(options);
        if let Some(updates) = updates {
            server = server.with_security_updates(updates);
        }
        let addresses = server
            .local_addrs()
            .map_err(|error| format!("the listener has no address: {error}"))?;
        let address = *addresses.first().ok_or("no listener address")?;
        if address.port() == 0 {
            return Err("the system chose no port".into());
        }
        let statistics = server.statistics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(Running {
            address,
            statistics,
            stop,
            task,
        })
    }

    pub async fn start(config: Config, options: ServerOptions) -> Running {
        Running::try_start(config, options)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    pub async fn start_default() -> Running {
        Running::start(Config::default(), ServerOptions::default()).await
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}", self.address)
    }

    pub fn port(&self) -> String {
        self.address.port().to_string()
    }

    /// Triggers the shutdown and waits, bounded, for the server to return its statistics.
    pub async fn try_stop(self) -> Result<Arc<Statistics>, String> {
        let _ = self.stop.send(());
        match timeout(STOP_WITHIN, self.task).await {
            Ok(Ok(statistics)) => Ok(statistics),
            Ok(Err(error)) => Err(format!("the server task failed: {error}")),
            Err(_elapsed) => Err(format!("the server did not stop within {STOP_WITHIN:?}")),
        }
    }

    pub async fn stop(self) -> Arc<Statistics> {
        self.try_stop().await.unwrap_or_else(|error| panic!("{error}"))
    }
}
