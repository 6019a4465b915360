//! What a probe case works with: the broker ([`Endpoint`]), the version, names unique to the run, the
//! broker's discovered capabilities, and recorded connections. Every connection a case opens goes
//! through the same recording wrapper as the scenarios', so the evidence of a failure is one
//! packet trace in one format, whatever kind the case is.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqtt_client::options::Scheme;
use mqtt_client::probe::{Pattern, Probe, ProbeError, ProbeOptions};
use mqtt_client::transport::{dialer_over, Dialer, TcpDialer, TlsOptions, TlsSetupError};
use mqtt_client::BrokerUrl;
use mqtt_protocol::{Connect, Packet, Properties, PropertyFields, ProtocolVersion, ReasonCode};
use mqtt_scenarios::engine::Names;
use mqtt_scenarios::wire::{Clock, KillSwitch, RecordingDialer, Trace, Wire};
use tokio::time::timeout;

use crate::discover::Capabilities;

/// The broker under test: the URL that names its transport (and the name its TLS certificate must
/// carry), the address that answered, the TLS options, and the dialer made of them once (its TLS
/// files read once). Every connection a check makes goes through [`Endpoint::dialer`], so every
/// case runs over TCP, TLS or WebSocket alike.
#[derive(Clone)]
pub struct Endpoint {
    pub url: BrokerUrl,
    pub address: SocketAddr,
    pub tls: TlsOptions,
    dialer: Arc<dyn Dialer>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("address", &self.address)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// `url`'s transport to `address`; an error when its TLS files cannot be used.
    pub fn new(url: BrokerUrl, address: SocketAddr, tls: TlsOptions) -> Result<Endpoint, TlsSetupError> {
        let dialer = dialer_over(TcpDialer::from_socket_address(address), &url, &tls)?;
        Ok(Endpoint {
            url,
            address,
            tls,
            dialer,
        })
    }

    /// Plain TCP to `address`.
    pub fn tcp(address: SocketAddr) -> Endpoint {
        Endpoint {
            url: BrokerUrl {
                scheme: Scheme::Mqtt,
                username: None,
                password: None,
                host: address.ip().to_string(),
                port: address.port(),
                path: String::new(),
            },
            address,
            tls: TlsOptions::default(),
            dialer: Arc::new(TcpDialer::from_socket_address(address)),
        }
    }

    /// A dialer of the broker's transport.
    pub fn dialer(&self) -> Arc<dyn Dialer> {
        self.dialer.clone()
    }

    /// A probe connected to the broker, nothing sent yet.
    pub async fn probe(&self, options: ProbeOptions) -> Result<Probe, ProbeError> {
        Probe::connect(self.dialer().as_ref(), options).await
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.url)
    }
}

/// How long a connect, a CONNACK or an answer may take before a case fails, before scaling.
pub const WAIT: Duration = Duration::from_secs(5);

/// What a case found, short of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Pass,
    /// Passed, with something the spec allows that is worth reporting.
    Informational(String),
    /// The case does not apply to this broker; why.
    NotApplicable(String),
}

/// A failed case: what was expected, what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub expected: String,
    pub actual: String,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            expected: String::new(),
            actual: String::new(),
        }
    }

    pub fn expected(message: impl Into<String>, expected: impl Into<String>, actual: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

impl From<ProbeError> for Failure {
    fn from(error: ProbeError) -> Failure {
        match &error {
            ProbeError::Mismatch { expected, actual, .. } => Failure::expected(
                error.to_string(),
                expected.to_string(),
                mqtt_client::probe::trace::summary(actual),
            ),
            ProbeError::Timeout { expected, .. } => {
                Failure::expected(error.to_string(), expected.to_string(), "nothing".to_owned())
            }
            _ => Failure::new(error.to_string()),
        }
    }
}

/// The context of one probe case in one version.
pub struct Context {
    pub version: ProtocolVersion,
    pub broker: Endpoint,
    pub names: Names,
    pub capabilities: Capabilities,
    /// The enhanced authentication method the broker offers for the run's credentials
    /// (`check --auth-method`).
    pub auth_method: Option<String>,
    /// SHOULD-level parts of a case fail instead of being informational.
    pub strict: bool,
    /// Waits are multiplied by this (`--timeout-scale`).
    pub scale: f64,
    /// Added to the upper bound of a timing window (`--tolerance-ms`, 1 s by default).
    pub tolerance: Duration,
    pub trace: Trace,
    pub clock: Clock,
    /// Every connection's wire, by client name, so the runner can check what the broker sent.
    pub wires: RefCell<Vec<(String, Wire)>>,
    /// What the case measured or saw that is worth reporting whatever its verdict (the figures of
    /// a robustness case): the report's notes.
    pub notes: std::rc::Rc<RefCell<Vec<String>>>,
}

impl Context {
    /// A SHOULD not met: a failure under `--strict`, else an informational finding with `note`.
    pub fn should_not_met(&self, note: String) -> Result<Finding, Failure> {
        if self.strict {
            Err(Failure::new(note))
        } else {
            Ok(Finding::Informational(format!("SHOULD not met: {note}")))
        }
    }

    /// `milliseconds`, scaled by `--timeout-scale`.
    pub fn ms(&self, milliseconds: u64) -> Duration {
        Duration::from_secs_f64(milliseconds as f64 / 1000.0 * self.scale)
    }

    /// The scaled [`WAIT`].
    pub fn wait(&self) -> Duration {
        WAIT.mul_f64(self.scale)
    }

    pub fn v5(&self) -> bool {
        self.version.is_v5()
    }

    pub fn topic(&self, topic: &str) -> String {
        self.names.topic(topic)
    }

    pub fn client_id(&self, name: &str) -> String {
        self.names.client_id(name)
    }

    /// A TCP connection to the broker, recorded under `client`, with nothing sent yet.
    pub async fn open(&self, client: &str) -> Result<Probe, Failure> {
        self.open_with(client, ProbeOptions::client().with_version(self.version))
            .await
    }

    /// [`Context::open`] with the probe's options given (a send timeout, say).
    pub async fn open_with(&self, client: &str, options: ProbeOptions) -> Result<Probe, Failure> {
        let wire = Wire::default();
        self.wires.borrow_mut().push((client.to_owned(), wire.clone()));
        let dialer = RecordingDialer {
            inner: self.broker.dialer(),
            client: client.to_owned(),
            wire,
            trace: self.trace.clone(),
            clock: self.clock.clone(),
            kill: KillSwitch::default(),
        };
        let stream = timeout(self.wait(), dialer.dial())
            .await
            .map_err(|_| Failure::new(format!("no connection to {} within {:?}", self.broker, self.wait())))?
            .map_err(|error| Failure::new(format!("cannot connect to {}: {error}", self.broker)))?;
        Ok(Probe::new(stream, options))
    }

    /// A CONNECT in the case's version: the client id prefixed for the run, Clean Start 1, keep
    /// alive 60 s, the run's credentials.
    pub fn connect_packet(&self, client: &str) -> Connect {
        Connect {
            protocol: self.version,
            clean_start: true,
            keep_alive_s: 60,
            client_id: self.client_id(client),
            user_name: self.names.username.clone(),
            password: self.names.password.clone().map(|password| password.into_bytes().into()),
            ..Connect::default()
        }
    }

    /// A CONNECT with a Session Expiry Interval (5.0) or Clean Session 0 (3.1.1): a session
    /// that outlives the connection in either version.
    pub fn persistent_connect(&self, client: &str, session_expiry_s: u32) -> Connect {
        let mut connect = self.connect_packet(client);
        connect.clean_start = false;
        if self.v5() {
            connect.properties = Properties::from(PropertyFields {
                session_expiry_interval_s: Some(session_expiry_s),
                ..PropertyFields::default()
            });
        }
        connect
    }

    /// Opens a connection, sends `connect` and expects CONNACK Success within [`Context::wait`].
    pub async fn connect(&self, client: &str, connect: Connect) -> Result<Probe, Failure> {
        let mut probe = self.open(client).await?;
        probe.send(&Packet::Connect(Box::new(connect))).await?;
        probe
            .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), self.wait())
            .await?;
        Ok(probe)
    }

    /// [`Context::connect`] with [`Context::connect_packet`].
    pub async fn connected(&self, client: &str) -> Result<Probe, Failure> {
        self.connect(client, self.connect_packet(client)).await
    }

    /// Adds a note to the case's report.
    pub fn note(&self, note: String) {
        self.notes.borrow_mut().push(note);
    }

    /// The time since the case started.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }
}
