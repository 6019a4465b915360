//! Listeners by URL: `mqtt://` (plain TCP), `mqtts://` (TLS), `ws://` and `wss://` (MQTT over
//! WebSocket, on a path), each a [`Listener`] the server accepts from.
//!
//! The TLS and WebSocket handshakes never run on the accept loop: each accepted connection's
//! handshake is a task of its own, bounded by [`ListenerOptions::handshake_timeout`], and at most
//! [`HANDSHAKES_MAX`] run at once (past that the listener stops accepting until one ends; the
//! kernel's backlog holds the rest). A failed handshake (a plain client on the TLS port, a wrong
//! certificate, an upgrade without the `mqtt` subprotocol) is logged with its peer and reason and
//! costs nobody else anything.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mqtt_client::transport::tls::{ServerTlsOptions, TlsSetupError};
use mqtt_client::transport::{ws, BoxedStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::server::Listener;

/// Handshakes in progress on one listener, at most.
pub const HANDSHAKES_MAX: usize = 512;

/// What `--listen` takes: `host:port` (plain TCP, as before) or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub transport: ListenTransport,
    /// `host:port` to bind.
    pub address: String,
    /// The WebSocket path (`/mqtt` when the URL gives none); empty for TCP and TLS.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenTransport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl ListenTransport {
    pub fn needs_tls(self) -> bool {
        matches!(self, ListenTransport::Tls | ListenTransport::Wss)
    }

    fn scheme(self) -> &'static str {
        match self {
            ListenTransport::Tcp => "mqtt",
            ListenTransport::Tls => "mqtts",
            ListenTransport::Ws => "ws",
            ListenTransport::Wss => "wss",
        }
    }
}

impl FromStr for ListenSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenSpec, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(ListenSpec {
                transport: ListenTransport::Tcp,
                address: text.to_owned(),
                path: String::new(),
            });
        };
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => ListenTransport::Tcp,
            "mqtts" | "ssl" => ListenTransport::Tls,
            "ws" => ListenTransport::Ws,
            "wss" => ListenTransport::Wss,
            _ => {
                return Err(format!(
                    "{text}: unknown scheme `{scheme}`: use mqtt://, mqtts://, ws:// or wss://"
                ))
            }
        };
        let (address, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, ""),
        };
        if !address.contains(':') {
            return Err(format!("{text}: give the port to listen on, as {scheme}://host:port"));
        }
        let path = match transport {
            ListenTransport::Ws | ListenTransport::Wss if path.is_empty() => "/mqtt".to_owned(),
            ListenTransport::Ws | ListenTransport::Wss => path.to_owned(),
            ListenTransport::Tcp | ListenTransport::Tls if !path.is_empty() && path != "/" => {
                return Err(format!("{text}: only ws:// and wss:// listeners have a path"));
            }
            ListenTransport::Tcp | ListenTransport::Tls => String::new(),
        };
        Ok(ListenSpec {
            transport,
            address: address.to_owned(),
            path,
        })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.transport.scheme(), self.address, self.path)
    }
}

/// What every listener of a broker shares.
#[derive(Debug, Clone, Default)]
pub struct ListenerOptions {
    /// Certificate, key, client CA, minimum version: needed by mqtts:// and wss:// listeners.
    pub tls: Option<ServerTlsOptions>,
    /// How long a TLS or WebSocket handshake may take; then the connection is dropped.
    pub handshake_timeout: Duration,
}

impl ListenerOptions {
    pub fn new() -> ListenerOptions {
        ListenerOptions {
            tls: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A bound listener of any transport. Its streams are boxed, so one server serves all of them.
pub struct MqttListener {
    tcp: TcpListener,
    spec: ListenSpec,
    handshake: Option<Arc<Handshake>>,
    handshake_timeout: Duration,
    handshakes: JoinSet<Option<(BoxedStream, SocketAddr, Option<String>)>>,
}

/// The handshake a listener runs on each connection before MQTT starts.
enum Handshake {
    Tls(TlsAcceptor),
    Ws { path: String },
    Wss { tls: TlsAcceptor, path: String },
}

/// Why a listener could not be made.
#[derive(Debug)]
pub enum ListenError {
    /// The TLS files cannot be used, or none were given for a TLS listener.
    Tls(String),
    Bind {
        spec: ListenSpec,
        error: io::Error,
    },
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Tls(reason) => f.write_str(reason),
            ListenError::Bind { spec, error } => write!(f, "cannot listen on {spec}: {}", describe_bind_error(error)),
        }
    }
}

impl std::error::Error for ListenError {}

impl From<TlsSetupError> for ListenError {
    fn from(error: TlsSetupError) -> ListenError {
        ListenError::Tls(error.0)
    }
}

/// "address already in use" rather than "Address already in use (os error 98)".
pub fn describe_bind_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    }
}

impl MqttListener {
    /// Binds `spec`, loading the TLS files first for a TLS listener (so a bad file is reported
    /// before anything listens).
    pub async fn bind(spec: &ListenSpec, options: &ListenerOptions) -> Result<MqttListener, ListenError> {
        let acceptor = || -> Result<TlsAcceptor, ListenError> {
            let tls = options
                .tls
                .as_ref()
                .ok_or_else(|| ListenError::Tls(format!("{spec} needs a certificate: give --cert FILE --key FILE")))?;
            Ok(TlsAcceptor::from(tls.server_config()?))
        };
        let handshake = match spec.transport {
            ListenTransport::Tcp => None,
            ListenTransport::Tls => Some(Handshake::Tls(acceptor()?)),
            ListenTransport::Ws => Some(Handshake::Ws {
                path: spec.path.clone(),
            }),
            ListenTransport::Wss => Some(Handshake::Wss {
                tls: acceptor()?,
                path: spec.path.clone(),
            }),
        };
        let tcp = TcpListener::bind(spec.address.as_str())
            .await
            .map_err(|error| ListenError::Bind {
                spec: spec.clone(),
                error,
            })?;
        Ok(MqttListener {
            tcp,
            spec: spec.clone(),
            handshake: handshake.map(Arc::new),
            handshake_timeout: options.handshake_timeout,
            handshakes: JoinSet::new(),
        })
    }

    /// What it serves, with the port the system chose for port 0: `mqtts://127.0.0.1:8883`.
    pub fn describe(&self) -> String {
        let address = self
            .tcp
            .local_addr()
            .map_or_else(|_| self.spec.address.clone(), |address| address.to_string());
        format!("{}://{address}{}", self.spec.transport.scheme(), self.spec.path)
    }

    pub fn spec(&self) -> &ListenSpec {
        &self.spec
    }
}

impl Listener for MqttListener {
    type Stream = BoxedStream;

    async fn accept(&mut self) -> io::Result<(BoxedStream, SocketAddr)> {
        let (stream, peer, _name) = self.accept_named().await?;
        Ok((stream, peer))
    }

    async fn accept_named(&mut self) -> io::Result<(BoxedStream, SocketAddr, Option<String>)> {
        let Some(handshake) = self.handshake.clone() else {
            let (stream, peer) = <TcpListener as Listener>::accept(&mut self.tcp).await?;
            return Ok((Box::new(stream), peer, None));
        };
        // Bounded: each pass starts one handshake or collects one.
        loop {
            let room = self.handshakes.len() < HANDSHAKES_MAX;
            tokio::select! {
                biased;
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(ready)) = done {
                        return Ok(ready);
                    }
                }
                accepted = <TcpListener as Listener>::accept(&mut self.tcp), if room => {
                    let (stream, peer) = accepted?;
                    let limit = self.handshake_timeout;
                    let handshake = handshake.clone();
                    self.handshakes.spawn(async move {
                        match timeout(limit, handshake.run(stream)).await {
                            Ok(Ok((stream, name))) => Some((stream, peer, name)),
                            Ok(Err(error)) => {
                                tracing::info!(%peer, %error, "handshake failed");
                                None
                            }
                            Err(_elapsed) => {
                                tracing::info!(%peer, ?limit, "handshake timed out");
                                None
                            }
                        }
                    });
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

impl Handshake {
    /// The handshakes; the stream, and the name on the client's certificate.
    async fn run(&self, stream: TcpStream) -> io::Result<(BoxedStream, Option<String>)> {
        let name = |tls: &tokio_rustls::server::TlsStream<TcpStream>| {
            let certificates = tls.get_ref().1.peer_certificates()?;
            common_name(certificates.first()?.as_ref())
        };
        Ok(match self {
            Handshake::Tls(acceptor) => {
                let tls = acceptor.accept(stream).await.map_err(tls_error)?;
                let certificate_name = name(&tls);
                (Box::new(tls), certificate_name)
            }
            Handshake::Ws { path } => (Box::new(ws::accept(stream, path).await?), None),
            Handshake::Wss { tls, path } => {
                let tls = tls.accept(stream).await.map_err(tls_error)?;
                let certificate_name = name(&tls);
                (Box::new(ws::accept(tls, path).await?), certificate_name)
            }
        })
    }
}

/// The subject's Common Name (OID 2.5.4.3) of a DER X.509 certificate: the last one, as the most
/// specific, when there are several. None when the certificate has none or does not parse.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    /// One DER element: its tag, its content, and what follows it.
    fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let length = rest[..count]
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
            (length, &rest[count..])
        };
        (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
    }
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    let (SEQUENCE, certificate, _) = element(certificate)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut fields = tbs;
    // [0] version (optional), serial number, signature algorithm, issuer, validity, subject.
    if fields.first() == Some(&0xA0) {
        fields = element(fields)?.2;
    }
    for _ in 0..4 {
        fields = element(fields)?.2;
    }
    let (SEQUENCE, mut subject, _) = element(fields)? else {
        return None;
    };
    let mut name = None;
    while !subject.is_empty() {
        let (SET, mut attributes, rest) = element(subject)? else {
            return None;
        };
        subject = rest;
        while !attributes.is_empty() {
            let (SEQUENCE, attribute, rest) = element(attributes)? else {
                return None;
            };
            attributes = rest;
            let (0x06, oid, value) = element(attribute)? else {
                return None;
            };
            if oid == COMMON_NAME {
                // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1 text).
                let (_, text, _) = element(value)?;
                name = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    name
}

fn tls_error(error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("TLS: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_parse_as_urls_or_plain_addresses() {
        let spec: ListenSpec = "127.0.0.1:1883".parse().unwrap();
        assert_eq!(
            (spec.transport, spec.address.as_str()),
            (ListenTransport::Tcp, "127.0.0.1:1883")
        );
        let spec: ListenSpec = "wss://0.0.0.0:8084".parse().unwrap();
        assert_eq!((spec.transport, spec.path.as_str()), (ListenTransport::Wss, "/mqtt"));
        let spec: ListenSpec = "ws://127.0.0.1:8080/custom/path".parse().unwrap();
        assert_eq!(spec.to_string(), "ws://127.0.0.1:8080/custom/path");
        assert!("mqtts://127.0.0.1".parse::<ListenSpec>().unwrap_err().contains("port"));
        assert!("mqtts://127.0.0.1:8883/x"
            .parse::<ListenSpec>()
            .unwrap_err()
            .contains("path"));
        assert!("http://127.0.0.1:80"
            .parse::<ListenSpec>()
            .unwrap_err()
            .contains("unknown scheme"));
    }
}
