//! The stream seam. The client and the probe run over anything that reads and writes bytes:
//! tokio TCP now; TLS, WebSocket and turmoil streams plug in here without touching protocol logic.
//! A [`Dialer`] opens a new stream each time it is asked, which is what reconnecting needs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

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
