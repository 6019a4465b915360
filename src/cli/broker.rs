//! `mqtt-harness broker`: the reference broker on real sockets (TCP, TLS, WebSocket), anonymous
//! access and default limits unless told otherwise: a password file (mosquitto_passwd's format,
//! or `mqtt-harness passwd`), an ACL file, the client certificate's name as user name, limits.
//!
//! SIGHUP reloads the password and ACL files: connections stay up, and what they do next follows
//! the new files. A file that no longer parses is reported and the old policy kept.
//!
//! Loads the TLS files and binds every `--listen` address first (a failure is a readable message
//! and exit code 1), says where it listens on stderr, then serves until Ctrl-C (or SIGTERM), when 5.0 clients get
//! DISCONNECT 0x8B Server shutting down and the writers are given a bounded time to flush. Logs go
//! to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use mqtt_broker::listener::{ListenSpec, ListenerOptions, MqttListener};
use mqtt_broker::security::{Security, SecurityFiles};
use mqtt_broker::server::{Server, ServerOptions};
use mqtt_broker::{Broker, Config};
use mqtt_client::transport::tls::ServerTlsOptions;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  mqtt-harness broker --listen 127.0.0.1:1883
  mqtt-harness broker --listen mqtts://0.0.0.0:8883 --listen wss://0.0.0.0:8084/mqtt --cert server.pem --key server.key
  mqtt-harness broker --listen mqtts://0.0.0.0:8883 --cert server.pem --key server.key --cafile clients-ca.pem
  mqtt-harness passwd -c -b passwords alice secret && mqtt-harness broker --password-file passwords --acl-file acl")]
pub struct Args {
    /// Where to listen: host:port (plain TCP) or a URL: mqtt://, mqtts:// (TLS), ws:// or wss://
    /// (WebSocket; the path defaults to /mqtt). Repeat for several listeners.
    /// [default: 127.0.0.1:1883]
    #[arg(long = "listen", value_name = "ADDR|URL")]
    pub listen: Vec<ListenSpec>,
    /// A YAML file with any of these settings: listen, tls {cert, key, cafile, tls_version},
    /// security {password_file, acl_file, allow_anonymous, use_identity_as_username},
    /// sys_interval, limits {the flags below, with _ for -}; flags given here win over it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain (leaf first) for the mqtts:// and wss:// listeners.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// PEM CA certificates: TLS clients must present a certificate signed by one of them.
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// The lowest TLS version accepted [default: tlsv1.2]
    #[arg(long = "tls-version", value_name = "VERSION", value_parser = ["tlsv1.2", "tlsv1.3"])]
    pub tls_version: Option<String>,
    /// Worker threads: 1 (the default) is cheapest per message; more serve more connections at
    /// once on a machine where the broker has cores of its own; 0: one per core
    #[arg(long, value_name = "N", default_value_t = mqtt_broker::server::WORKER_THREADS_DEFAULT)]
    pub threads: usize,
    /// Seconds between publications of the $SYS/broker/... topics (retained: version, uptime,
    /// clients connected, messages and bytes in and out); 0: none [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub sys_interval: Option<u64>,
    /// Seconds a packet may take from its first byte to its last: a client that stops in the
    /// middle of a packet, or trickles one, loses its connection (its will is published)
    /// [default: 20]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub packet_timeout: Option<u64>,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Who may connect and what they may do; SIGHUP reloads the files.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Authentication and authorization")]
pub struct SecurityArgs {
    /// Password file: user:hash lines as mosquitto_passwd or `mqtt-harness passwd` writes them.
    /// Users with SCRAM keys can also use 5.0 enhanced authentication (SCRAM-SHA-256)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// ACL file (mosquitto's acl_file format, plus `client ID` sections): with one, a client may
    /// publish and receive only what a rule allows
    #[arg(long, value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// Whether clients without a user name may connect [default: true without --password-file,
    /// false with one]
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub allow_anonymous: Option<bool>,
    /// The TLS client certificate's Common Name is the user name (needs --cafile); clients
    /// without a certificate are refused
    #[arg(long, requires = "cafile")]
    pub use_identity_as_username: bool,
}

impl SecurityArgs {
    pub fn files(&self) -> SecurityFiles {
        SecurityFiles {
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
            allow_anonymous: self.allow_anonymous,
            use_identity_as_username: self.use_identity_as_username,
        }
    }
}

/// The broker's limits and capabilities (all of `Config`); each left out keeps its default. The
/// config file's `limits` section has the same fields.
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Limits and capabilities")]
pub struct LimitArgs {
    /// Connections open at once; one more is refused (5.0 CONNACK 0x89, 3.1.1 0x03) [default: 100000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// New connections per second; beyond it 5.0 CONNACK 0x9F (3.1.1 0x03) [default: no limit]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connection_rate: Option<u32>,
    /// The largest packet accepted, in bytes, announced as Maximum Packet Size [default: 1048576]
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(64..=268_435_460))]
    pub max_packet_size: Option<u32>,
    /// QoS 1/2 messages a client may have unacknowledged towards the broker (Receive Maximum)
    /// [default: 1024]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub receive_maximum: Option<u16>,
    /// QoS 1/2 messages in flight to one client, below its own Receive Maximum [default: 1024]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inflight: Option<u16>,
    /// Messages queued per session (offline, or beyond the window); beyond it new ones are dropped
    /// [default: 10000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued_messages: Option<u64>,
    /// Subscriptions per session; one more is refused in its SUBACK [default: 1000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_subscriptions: Option<u64>,
    /// Levels in a topic name or filter [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_topic_levels: Option<u64>,
    /// Retained messages stored; a new topic beyond it is not retained [default: 100000]
    #[arg(long, value_name = "N")]
    pub max_retained: Option<u64>,
    /// Seconds a new connection may take to send CONNECT [default: 10]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: Option<u64>,
    /// Topic aliases a client may use towards the broker (0: none) [default: 64]
    #[arg(long, value_name = "N")]
    pub topic_alias_maximum: Option<u16>,
    /// The highest QoS supported, announced as Maximum QoS [default: 2]
    #[arg(long, value_name = "0|1|2", value_parser = clap::value_parser!(u8).range(0..=2))]
    pub max_qos: Option<u8>,
    /// Refuse retained messages (announced as Retain Available 0)
    #[arg(long)]
    pub no_retain: bool,
    /// Refuse wildcard subscriptions (announced as Wildcard Subscription Available 0)
    #[arg(long)]
    pub no_wildcard_subscriptions: bool,
    /// Refuse Subscription Identifiers (announced as Subscription Identifier Available 0)
    #[arg(long)]
    pub no_subscription_identifiers: bool,
    /// Refuse shared subscriptions (announced as Shared Subscription Available 0)
    #[arg(long)]
    pub no_shared_subscriptions: bool,
    /// Every client's keep alive, whatever it asked for (5.0: told as Server Keep Alive)
    #[arg(long, value_name = "SECONDS", conflicts_with = "max_keep_alive")]
    pub server_keep_alive: Option<u16>,
    /// The longest keep alive allowed: a 5.0 client asking for more, or for 0, is told this as
    /// Server Keep Alive; a 3.1.1 client, which cannot be told, keeps its own
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_keep_alive: Option<u16>,
    /// Packets waiting to be written to one connection; beyond it QoS 0 messages to it are dropped
    /// [default: 10000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_outgoing_packets: Option<u64>,
}

/// For checking a config file's limits with the very rules of the flags.
#[derive(clap::Parser)]
struct LimitsOnly {
    #[command(flatten)]
    limits: LimitArgs,
}

impl LimitArgs {
    /// Takes from `file` what the command line left out, and checks the result as the flags are
    /// checked (ranges, conflicts): a bad value in the file is named by its flag.
    pub fn fill_from(&mut self, file: LimitArgs) -> Result<(), String> {
        let given = serde_json::to_value(&*self).map_err(|error| error.to_string())?;
        let file = serde_json::to_value(file).map_err(|error| error.to_string())?;
        let (Some(given), Some(file)) = (given.as_object(), file.as_object()) else {
            return Err("limits are not a map".into());
        };
        let mut argv = vec!["limits".to_string()];
        for (key, file_value) in file {
            let value = match given.get(key) {
                Some(serde_json::Value::Null | serde_json::Value::Bool(false)) | None => file_value,
                Some(given_value) => given_value,
            };
            let flag = format!("--{}", key.replace('_', "-"));
            match value {
                serde_json::Value::Null | serde_json::Value::Bool(false) => {}
                serde_json::Value::Bool(true) => argv.push(flag),
                other => {
                    argv.push(flag);
                    argv.push(other.to_string());
                }
            }
        }
        let parsed = <LimitsOnly as clap::Parser>::try_parse_from(&argv).map_err(|error| {
            let message = error.to_string();
            message
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string()
        })?;
        *self = parsed.limits;
        Ok(())
    }

    /// `Config::default()` with what was given on the command line.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        let size = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        if let Some(value) = self.max_connections {
            config.connections_max = size(value);
        }
        config.connection_rate_per_second_max = self.max_connection_rate.or(config.connection_rate_per_second_max);
        if let Some(value) = self.max_packet_size {
            config.maximum_packet_size = value;
        }
        if let Some(value) = self.receive_maximum {
            config.receive_maximum = value;
        }
        if let Some(value) = self.max_inflight {
            config.inflight_count_max = value;
        }
        if let Some(value) = self.max_queued_messages {
            config.queued_messages_max = size(value);
        }
        if let Some(value) = self.max_subscriptions {
            config.subscriptions_per_client_max = size(value);
        }
        if let Some(value) = self.max_topic_levels {
            config.topic_levels_max = size(value);
        }
        if let Some(value) = self.max_retained {
            config.retained_messages_max = size(value);
        }
        if let Some(value) = self.connect_timeout {
            config.connect_timeout = std::time::Duration::from_secs(value);
        }
        if let Some(value) = self.topic_alias_maximum {
            config.topic_alias_maximum = value;
        }
        if let Some(qos) = self.max_qos.and_then(mqtt_protocol::QoS::from_u8) {
            config.maximum_qos = qos;
        }
        config.retain_available &= !self.no_retain;
        config.wildcard_subscription_available &= !self.no_wildcard_subscriptions;
        config.subscription_identifier_available &= !self.no_subscription_identifiers;
        config.shared_subscription_available &= !self.no_shared_subscriptions;
        config.server_keep_alive_s = self.server_keep_alive.or(config.server_keep_alive_s);
        config.keep_alive_max_s = self.max_keep_alive.or(config.keep_alive_max_s);
        if let Some(value) = self.max_outgoing_packets {
            config.outgoing_packets_max = size(value);
        }
        config
    }
}

impl Args {
    /// The TLS part of the listeners' options; `None` without --cert and --key.
    fn tls(&self) -> Result<Option<ServerTlsOptions>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(ServerTlsOptions {
                cert: cert.clone(),
                key: key.clone(),
                client_cafile: self.cafile.clone(),
                tls13_only: self.tls_version.as_deref() == Some("tlsv1.3"),
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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = match builder.enable_all().build() {
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

async fn serve(mut args: Args) -> ExitCode {
    let shutdown = shutdown_signal();
    if let Some(path) = args.config.clone() {
        if let Err(error) = super::broker_config::apply(&path, &mut args) {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CANNOT_START);
        }
    }
    if args.listen.is_empty() {
        args.listen.push("127.0.0.1:1883".parse().expect("a valid default"));
    }
    if args.security.use_identity_as_username && args.cafile.is_none() {
        eprintln!("use_identity_as_username needs client certificates: give --cafile (or tls.cafile)");
        return ExitCode::from(EXIT_CANNOT_START);
    }
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
    let files = args.security.files();
    let security = match files.load() {
        Ok(security) => Arc::new(security),
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    // SIGHUP is listened for before the broker says it listens: a reload asked for at once is
    // never the default action (which ends the process).
    let (updates, updates_receiver) = tokio::sync::watch::channel(security.clone());
    let reloading = tokio::spawn(reload_on_hangup(hangups(), files, updates));
    for listener in &listeners {
        eprintln!("mqtt-harness broker listening on {}", listener.describe());
    }
    describe_security(&security);
    let broker = Broker::new(args.limits.config()).with_security(security);
    let server = Server::new(listeners, broker)
        .with_options(ServerOptions {
            sys_interval: Some(args.sys_interval.unwrap_or(10))
                .filter(|seconds| *seconds > 0)
                .map(Duration::from_secs),
            packet_timeout: args
                .packet_timeout
                .map_or(mqtt_broker::server::PACKET_TIMEOUT_DEFAULT, Duration::from_secs),
            ..ServerOptions::default()
        })
        .with_security_updates(updates_receiver);
    server.run(shutdown).await;
    reloading.abort();
    ExitCode::SUCCESS
}

/// Says on stderr what the policy is, so that an operator sees an open broker for what it is.
fn describe_security(security: &Security) {
    let users = security.passwords.as_ref().map_or(0, |file| file.len());
    eprintln!(
        "mqtt-harness broker: anonymous access {}, {}, {}{}",
        if security.allow_anonymous { "on" } else { "off" },
        if security.passwords.is_some() {
            format!("{users} user(s) in the password file")
        } else {
            "no password file".to_string()
        },
        if security.acl.is_some() {
            "ACL on"
        } else {
            "no ACL (every client may do everything)"
        },
        if security.use_identity_as_username {
            ", certificate name as user name"
        } else {
            ""
        },
    );
}

/// Reloads the password and ACL files on each SIGHUP and hands the new policy to the broker; a
/// file that fails to load is reported and the policy in force kept.
#[cfg(unix)]
async fn reload_on_hangup(
    hangups: io::Result<tokio::signal::unix::Signal>,
    files: SecurityFiles,
    updates: tokio::sync::watch::Sender<Arc<Security>>,
) {
    let mut hangups = match hangups {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP: no reloads");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        // Reading and parsing are quick; hashing happens per CONNECT, on the blocking pool.
        match files.load() {
            Ok(security) => {
                describe_security(&security);
                if updates.send(Arc::new(security)).is_err() {
                    return;
                }
            }
            Err(error) => eprintln!("reload failed, the files in force stay: {error}"),
        }
    }
}

#[cfg(unix)]
fn hangups() -> io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

#[cfg(not(unix))]
fn hangups() {}

#[cfg(not(unix))]
async fn reload_on_hangup(_hangups: (), _files: SecurityFiles, _updates: tokio::sync::watch::Sender<Arc<Security>>) {}

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
