//! `mqtt-harness broker`: the reference broker on real sockets, anonymous access, default limits.
//!
//! Binds every `--listen` address first (a failure is a readable message and exit code 1), says
//! where it listens on stderr, then serves until Ctrl-C (or SIGTERM), when 5.0 clients get
//! DISCONNECT 0x8B Server shutting down and the writers are given a bounded time to flush. Logs go
//! to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).

use std::io;
use std::process::ExitCode;

use mqtt_broker::server::Server;
use mqtt_broker::{Broker, Config};
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; repeat for several listeners.
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:1883")]
    pub listen: Vec<String>,
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
    let mut listeners = Vec::with_capacity(args.listen.len());
    for address in &args.listen {
        match TcpListener::bind(address.as_str()).await {
            Ok(listener) => listeners.push(listener),
            Err(error) => {
                eprintln!("cannot listen on {address}: {}", describe_bind_error(&error));
                return ExitCode::from(EXIT_CANNOT_START);
            }
        }
    }
    let server = Server::new(listeners, Broker::new(Config::default()));
    match server.local_addrs() {
        Ok(addresses) => {
            for address in addresses {
                eprintln!("mqtt-harness broker listening on {address}");
            }
        }
        Err(error) => eprintln!("mqtt-harness broker listening (address unknown: {error})"),
    }
    server.run(shutdown).await;
    ExitCode::SUCCESS
}

/// "address already in use" rather than "Address already in use (os error 98)".
fn describe_bind_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    }
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
