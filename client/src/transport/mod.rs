//! The stream seam. The client and the probe run over anything that reads and writes bytes: TCP,
//! TLS ([`tls`]), WebSocket ([`ws`]) and turmoil streams, without touching protocol logic. A
//! [`Dialer`] opens a new stream each time it is asked, which is what reconnecting needs;
//! [`dialer_for`] picks the dialer a broker URL names.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

pub mod tls;
pub mod ws;

pub use tls::{TlsOptions, TlsSetupError};

use crate::options::{BrokerUrl, Scheme};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Any byte stream a client can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed stream, so one client type serves every transport.
pub type BoxedStream = Box<dyn Stream>;

/// The future a [`Dialer`] returns.
pub type DialFuture = Pin<Box<dyn Future<Output = io::Result<BoxedStream>> + Send>>;

/// Opens a new connection to a broker, once per (re)connect.
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self) -> DialFuture;

    /// Where it dials, for messages ("connection refused to 127.0.0.1:1883").
    fn describe(&self) -> String;
}

/// Dials a TCP address, with TCP_NODELAY: MQTT packets are small and latency matters.
#[derive(Debug, Clone)]
pub struct TcpDialer {
    address: String,
}

impl TcpDialer {
    /// `address` is `host:port`; a host name is resolved at each dial.
    pub fn new(address: impl Into<String>) -> TcpDialer {
        TcpDialer {
            address: address.into(),
        }
    }

    pub fn from_socket_address(address: SocketAddr) -> TcpDialer {
        TcpDialer {
            address: address.to_string(),
        }
    }
}

impl Dialer for TcpDialer {
    fn dial(&self) -> DialFuture {
        let address = self.address.clone();
        Box::pin(async move {
            let stream = TcpStream::connect(&address)
                .await
                .map_err(|error| describe_dial_error(error, &address))?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }

    fn describe(&self) -> String {
        self.address.clone()
    }
}

/// Dials TCP, then runs the TLS handshake (SNI and certificate check against the URL's host).
#[derive(Clone)]
pub struct TlsDialer {
    tcp: TcpDialer,
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl TlsDialer {
    pub fn new(tcp: TcpDialer, host: &str, options: &TlsOptions) -> Result<TlsDialer, TlsSetupError> {
        Ok(TlsDialer {
            tcp,
            connector: tokio_rustls::TlsConnector::from(options.client_config()?),
            server_name: tls::server_name(host)?,
        })
    }
}

impl Dialer for TlsDialer {
    fn dial(&self) -> DialFuture {
        let tcp = self.tcp.dial();
        let connector = self.connector.clone();
        let server_name = self.server_name.clone();
        let address = self.tcp.describe();
        Box::pin(async move {
            let stream = tcp.await?;
            let stream = connector
                .connect(server_name, stream)
                .await
                .map_err(|error| tls::describe_handshake_error(error, &address))?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }

    fn describe(&self) -> String {
        self.tcp.describe()
    }
}

/// Dials through `inner` (TCP for ws://, TLS for wss://), then runs the WebSocket handshake.
#[derive(Clone)]
pub struct WsDialer {
    inner: Arc<dyn Dialer>,
    url: String,
}

impl WsDialer {
    /// `url` is the whole ws:// or wss:// URL, path included.
    pub fn new(inner: Arc<dyn Dialer>, url: impl Into<String>) -> WsDialer {
        WsDialer { inner, url: url.into() }
    }
}

impl Dialer for WsDialer {
    fn dial(&self) -> DialFuture {
        let inner = self.inner.dial();
        let url = self.url.clone();
        Box::pin(async move {
            let stream = inner.await?;
            Ok(Box::new(ws::connect(stream, &url).await?) as BoxedStream)
        })
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// The dialer `url` names: TCP for mqtt://, TLS for mqtts://, WebSocket over TCP or TLS for ws://
/// and wss://. `tls` applies to mqtts:// and wss://.
pub fn dialer_for(url: &BrokerUrl, tls: &TlsOptions) -> Result<Arc<dyn Dialer>, TlsSetupError> {
    dialer_over(TcpDialer::new(url.authority()), url, tls)
}

/// `url`'s transport over a TCP connection to wherever `tcp` dials (a fault proxy in front of the
/// broker, say): TLS still checks the certificate against `url`'s host, and the WebSocket
/// handshake still asks for `url`'s path.
pub fn dialer_over(tcp: TcpDialer, url: &BrokerUrl, tls: &TlsOptions) -> Result<Arc<dyn Dialer>, TlsSetupError> {
    let ws_url = || {
        let scheme = url.scheme.name();
        format!("{scheme}://{}{}", url.authority(), url.path)
    };
    Ok(match url.scheme {
        Scheme::Mqtt => Arc::new(tcp),
        Scheme::Mqtts => Arc::new(TlsDialer::new(tcp, &url.host, tls)?),
        Scheme::Ws => Arc::new(WsDialer::new(Arc::new(tcp), ws_url())),
        Scheme::Wss => Arc::new(WsDialer::new(Arc::new(TlsDialer::new(tcp, &url.host, tls)?), ws_url())),
    })
}

/// "connection refused to 127.0.0.1:1883": what failed, and where, in words a user can act on.
fn describe_dial_error(error: io::Error, address: &str) -> io::Error {
    let what = match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut => "connection timed out".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => error.to_string(),
    };
    io::Error::new(error.kind(), format!("{what} to {address}"))
}
