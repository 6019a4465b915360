//! `mqtt-harness broker`: the reference broker on real sockets (TCP, TLS, WebSocket), anonymous
//! access, default limits.
//!
//! Loads the TLS files and binds every `--listen` address first (a failure is a readable message
//! and exit code 1), says where it listens on stderr, then serves until Ctrl-C (or SIGTERM), when 5.0 clients get
//! DISCONNECT 0x8B Server shutting down and the writers are given a bounded time to flush. Logs go
//! to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use mqtt_broker::listener::{ListenSpec, ListenerOptions, MqttListener};
use mqtt_broker::server::Server;
use mqtt_broker::{Broker, Config};
use mqtt_client::transport::tls::ServerTlsOptions;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  mqtt-harness broker --listen 127.0.0.1:1883
  mqtt-harness broker --listen mqtts://0.0.0.0:8883 --listen wss://0.0.0.0:8084/mqtt --cert server.pem --key server.key
  mqtt-harness broker --listen mqtts://0.0.0.0:8883 --cert server.pem --key server.key --cafile clients-ca.pem")]
pub struct Args {
    /// Where to listen: host:port (plain TCP) or a URL: mqtt://, mqtts:// (TLS), ws:// or wss://
    /// (WebSocket; the path defaults to /mqtt). Repeat for several listeners.
    #[arg(long = "listen", value_name = "ADDR|URL", default_value = "127.0.0.1:1883")]
    pub listen: Vec<ListenSpec>,
    /// PEM certificate chain (leaf first) for the mqtts:// and wss:// listeners.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// PEM CA certificates: TLS clients must present a certificate signed by one of them.
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// The lowest TLS version accepted.
    #[arg(long = "tls-version", value_name = "VERSION", default_value = "tlsv1.2", value_parser = ["tlsv1.2", "tlsv1.3"])]
    pub tls_version: String,
}

impl Args {
    /// The TLS part of the listeners' options; `None` without --cert and --key.
    fn tls(&self) -> Result<Option<ServerTlsOptions>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(ServerTlsOptions {
                cert: cert.clone(),
                key: key.clone(),
                client_cafile: self.cafile.clone(),
                tls13_only: self.tls_version == "tlsv1.3",
            })),
            (None, None) if self.cafile.is_some() => {
                Err("--cafile is for TLS listeners: give --cert and --key too".into())
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err("--cert needs --key".into()),
            (None, Some(_)) => Err("--key needs --cert".into()),
        }
    }
}

/// Exit code when the broker cannot start (an address cannot be bound).
const EXIT_CANNOT_START: u8 = 1;

pub fn run(args: Args) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    // The broker runs as a spawned task, on a worker thread: run on the block_on thread itself,
    // every message would hop threads three times (measured: twice the CPU per message at 10k
    // msg/s).
    runtime.block_on(async {
        match tokio::spawn(serve(args)).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("the broker task failed: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn serve(args: Args) -> ExitCode {
    let shutdown = shutdown_signal();
    let mut options = ListenerOptions::new();
    options.tls = match args.tls() {
        Ok(tls) => tls,
        Err(reason) => {
            eprintln!("{reason}");
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    let mut listeners = Vec::with_capacity(args.listen.len());
    for spec in &args.listen {
        match MqttListener::bind(spec, &options).await {
            Ok(listener) => listeners.push(listener),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(EXIT_CANNOT_START);
            }
        }
    }
    for listener in &listeners {
        eprintln!("mqtt-harness broker listening on {}", listener.describe());
    }
    let server = Server::new(listeners, Broker::new(Config::default()));
    server.run(shutdown).await;
    ExitCode::SUCCESS
}

/// Starts listening for Ctrl-C and SIGTERM (how service managers and containers stop a process)
/// at once, so that a signal sent as soon as the broker says it listens is not lost, and resolves
/// at the first of them.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        tokio::select! {
            biased;
            () = receive(interrupt, "Ctrl-C") => tracing::info!("Ctrl-C received"),
            () = receive(terminate, "SIGTERM") => tracing::info!("SIGTERM received"),
        }
    }
}

/// Resolves when `signal` arrives; never, if it cannot be listened for (the other one, or a kill,
/// still stops the broker).
#[cfg(unix)]
async fn receive(signal: io::Result<tokio::signal::unix::Signal>, name: &str) {
    match signal {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(error) => {
            tracing::error!(%error, "cannot listen for {name}");
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received");
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only if a subscriber is already set, which then keeps logging.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}
