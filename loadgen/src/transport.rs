//! The engine's transports: plain TCP, TLS, WebSocket and WebSocket over TLS, as the engine's
//! event loop drives them: non-blocking sockets, bytes moved layer by layer.
//!
//! - **TLS** is rustls's sans-IO `ClientConnection`: plaintext in, records out through the socket.
//! - **WebSocket** is tungstenite's framing over two in-memory buffers ([`Buffers`]): the MQTT
//!   bytes a write hands down go out as one binary frame; frames read are unwrapped into MQTT
//!   bytes. Pings are answered; a text or close frame ends the connection.
//! - **Plain TCP** takes the engine's buffers as they are: no copy, no layer, as before.
//!
//! The handshakes (TLS, then the WebSocket upgrade asking for the `mqtt` subprotocol) run while
//! connecting, blocking, within the connect deadline. A [`TransportConfig`] is made once per run
//! (its TLS files read once) and shared by every connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mqtt_client::options::Scheme;
use mqtt_client::transport::{ws, BoxedStream, TlsOptions};
use mqtt_client::BrokerUrl;
use rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// What every connection of a run is made of: the URL's transport, with its TLS setup.
#[derive(Clone)]
pub struct TransportConfig {
    /// The URL's scheme: which layers.
    pub scheme: Scheme,
    /// `ws://host:port/path` for the upgrade request (WebSocket only).
    ws_url: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("scheme", &self.scheme)
            .field("ws_url", &self.ws_url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            scheme: Scheme::Mqtt,
            ws_url: String::new(),
            tls: None,
        }
    }
}

impl TransportConfig {
    /// `url`'s transport; an error when its TLS files cannot be used or its host is no TLS name.
    pub fn new(url: &BrokerUrl, tls: &TlsOptions) -> Result<TransportConfig, String> {
        let needs_tls = matches!(url.scheme, Scheme::Mqtts | Scheme::Wss);
        let tls = if needs_tls {
            let config = tls.client_config().map_err(|error| error.to_string())?;
            let name = mqtt_client::transport::tls::server_name(&url.host).map_err(|error| error.to_string())?;
            Some((config, name))
        } else {
            None
        };
        let ws_scheme = if url.scheme == Scheme::Wss { "wss" } else { "ws" };
        Ok(TransportConfig {
            scheme: url.scheme,
            ws_url: format!("{ws_scheme}://{}{}", url.authority(), url.path),
            tls,
        })
    }

    fn websocket(&self) -> bool {
        matches!(self.scheme, Scheme::Ws | Scheme::Wss)
    }

    /// Runs the handshakes on a connected tokio `socket`, for the held connections (see
    /// [`crate::connections`]).
    pub async fn open_async(&self, socket: tokio::net::TcpStream) -> Result<BoxedStream, String> {
        let websocket = |error: io::Error| format!("WebSocket handshake: {error}");
        Ok(match &self.tls {
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), socket)
                    .await
                    .map_err(|error| format!("TLS handshake: {error}"))?;
                if self.websocket() {
                    Box::new(ws::connect(tls, &self.ws_url).await.map_err(websocket)?)
                } else {
                    Box::new(tls)
                }
            }
            None if self.websocket() => Box::new(ws::connect(socket, &self.ws_url).await.map_err(websocket)?),
            None => Box::new(socket),
        })
    }

    /// Runs the handshakes on a connected, blocking `socket` (its timeouts set by the caller).
    pub fn open(&self, mut socket: TcpStream, deadline: Instant) -> Result<Transport, String> {
        let mut tls = match &self.tls {
            Some((config, name)) => {
                let mut connection = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(|error| format!("TLS: {error}"))?;
                // The MQTT windows bound what waits; rustls must not refuse plaintext meanwhile.
                connection.set_buffer_limit(None);
                while connection.is_handshaking() {
                    set_timeouts(&socket, deadline)?;
                    connection
                        .complete_io(&mut socket)
                        .map_err(|error| format!("TLS handshake: {error}"))?;
                }
                Some(Box::new(connection))
            }
            None => None,
        };
        let ws = if self.websocket() {
            set_timeouts(&socket, deadline)?;
            let mut request = self
                .ws_url
                .as_str()
                .into_client_request()
                .map_err(|error| format!("{}: {error}", self.ws_url))?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
            let failed = |error: String| format!("WebSocket handshake with {}: {error}", self.ws_url);
            match tls.as_deref_mut() {
                Some(connection) => {
                    let stream = rustls::Stream::new(connection, &mut socket);
                    tungstenite::client::client_with_config(request, stream, Some(ws_config()))
                        .map_err(|error| failed(error.to_string()))?;
                }
                None => {
                    tungstenite::client::client_with_config(request, &mut socket, Some(ws_config()))
                        .map_err(|error| failed(error.to_string()))?;
                }
            }
            Some(Box::new(WebSocket::from_raw_socket(
                Buffers::default(),
                Role::Client,
                Some(ws_config()),
            )))
        } else {
            None
        };
        Ok(Transport {
            socket,
            tls,
            ws,
            pending: BytesMut::new(),
        })
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(16 * 1024 * 1024))
}

fn set_timeouts(socket: &TcpStream, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("the connect deadline passed during the handshake".into());
    }
    let left = left.max(Duration::from_millis(1));
    socket
        .set_read_timeout(Some(left))
        .and_then(|()| socket.set_write_timeout(Some(left)))
        .map_err(|error| error.to_string())
}

/// The two in-memory ends tungstenite frames into and out of.
#[derive(Default)]
pub struct Buffers {
    input: BytesMut,
    output: Vec<u8>,
}

impl Read for Buffers {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        let count = buffer.len().min(self.input.len());
        buffer[..count].copy_from_slice(&self.input[..count]);
        self.input.advance(count);
        Ok(count)
    }
}

impl Write for Buffers {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection's socket and the layers on it.
pub struct Transport {
    socket: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    ws: Option<Box<WebSocket<Buffers>>>,
    /// Frame bytes not yet written (WebSocket without TLS; rustls keeps its own).
    pending: BytesMut,
}

/// What a read found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes read from the socket.
    pub count: usize,
    /// The socket may hold more: read again.
    pub more: bool,
}

impl Transport {
    /// A plain TCP connection.
    pub fn plain(socket: TcpStream) -> Transport {
        Transport {
            socket,
            tls: None,
            ws: None,
            pending: BytesMut::new(),
        }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && self.ws.is_none()
    }

    /// Moves `mqtt` (MQTT bytes) down the layers and writes what the socket takes now.
    pub fn write(&mut self, mqtt: &mut BytesMut) -> Result<(), String> {
        if self.is_plain() {
            return write_some(&mut self.socket, mqtt);
        }
        if !mqtt.is_empty() {
            let frame_bytes = match self.ws.as_deref_mut() {
                Some(ws) => {
                    ws.send(Message::Binary(mqtt.split().freeze()))
                        .map_err(|error| format!("WebSocket: {error}"))?;
                    std::mem::take(&mut ws.get_mut().output)
                }
                None => mqtt.split().to_vec(),
            };
            match self.tls.as_deref_mut() {
                Some(tls) => tls
                    .writer()
                    .write_all(&frame_bytes)
                    .map_err(|error| format!("TLS: {error}"))?,
                None => self.pending.extend_from_slice(&frame_bytes),
            }
        }
        self.flush_down()
    }

    /// Writes what the layers hold for the socket, as far as it takes now.
    fn flush_down(&mut self) -> Result<(), String> {
        match self.tls.as_deref_mut() {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.socket) {
                        Ok(0) => return Err("the connection accepts no more bytes".into()),
                        Ok(_) => {}
                        Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                        Err(error) if error.kind() == ErrorKind::Interrupted => {}
                        Err(error) => return Err(format!("writing: {error}")),
                    }
                }
                Ok(())
            }
            None => write_some(&mut self.socket, &mut self.pending),
        }
    }

    /// Whether bytes wait for the socket to take them (beyond the caller's own buffer).
    pub fn wants_write(&self) -> bool {
        match self.tls.as_deref() {
            Some(tls) => tls.wants_write(),
            None => !self.pending.is_empty(),
        }
    }

    /// Reads what the socket has (one read), and appends the MQTT bytes it carried to `mqtt`.
    /// `Ok(count 0, more false)` when nothing was there; an error when the connection ended.
    pub fn read(&mut self, scratch: &mut [u8], mqtt: &mut BytesMut) -> Result<ReadOutcome, String> {
        let (count, more) = match self.tls.as_deref_mut() {
            None => match self.socket.read(scratch) {
                Ok(0) => return Err("the broker closed the connection".into()),
                Ok(count) => {
                    let more = count == scratch.len();
                    match self.ws.as_deref_mut() {
                        Some(ws) => ws.get_mut().input.extend_from_slice(&scratch[..count]),
                        None => mqtt.extend_from_slice(&scratch[..count]),
                    }
                    (count, more)
                }
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => (0, false),
                Err(error) if error.kind() == ErrorKind::Interrupted => (0, true),
                Err(error) => return Err(format!("reading: {error}")),
            },
            Some(tls) => {
                let count = match tls.read_tls(&mut self.socket) {
                    Ok(0) => return Err("the broker closed the connection".into()),
                    Ok(count) => count,
                    Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Ok(ReadOutcome::default())
                    }
                    Err(error) if error.kind() == ErrorKind::Interrupted => {
                        return Ok(ReadOutcome { count: 0, more: true })
                    }
                    Err(error) => return Err(format!("reading: {error}")),
                };
                tls.process_new_packets().map_err(|error| format!("TLS: {error}"))?;
                loop {
                    match tls.reader().read(scratch) {
                        Ok(0) => return Err("the broker closed the TLS session".into()),
                        Ok(plain) => match self.ws.as_deref_mut() {
                            Some(ws) => ws.get_mut().input.extend_from_slice(&scratch[..plain]),
                            None => mqtt.extend_from_slice(&scratch[..plain]),
                        },
                        Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                        Err(error) => return Err(format!("TLS: {error}")),
                    }
                }
                // rustls reads at most one buffer's worth per call: more may wait.
                (count, true)
            }
        };
        if let Some(ws) = self.ws.as_deref_mut() {
            loop {
                match ws.read() {
                    Ok(Message::Binary(data)) => mqtt.extend_from_slice(&data),
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                    Ok(Message::Text(_)) => return Err("the broker sent a WebSocket text frame".into()),
                    Ok(Message::Close(_)) => return Err("the broker closed the WebSocket".into()),
                    Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) => return Err(format!("WebSocket: {error}")),
                }
            }
            // Pongs tungstenite queued in answer to pings.
            let _ = ws.flush();
            let answers = std::mem::take(&mut ws.get_mut().output);
            if !answers.is_empty() {
                match self.tls.as_deref_mut() {
                    Some(tls) => tls
                        .writer()
                        .write_all(&answers)
                        .map_err(|error| format!("TLS: {error}"))?,
                    None => self.pending.extend_from_slice(&answers),
                }
            }
        }
        if !self.is_plain() {
            self.flush_down()?;
        }
        Ok(ReadOutcome { count, more })
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket.set_nonblocking(nonblocking)
    }
}

/// Writes as much of `output` as the socket takes now.
pub fn write_some(stream: &mut TcpStream, output: &mut BytesMut) -> Result<(), String> {
    while !output.is_empty() {
        match stream.write(output) {
            Ok(0) => return Err("the connection accepts no more bytes".into()),
            Ok(count) => {
                let _ = output.split_to(count);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("writing: {error}")),
        }
    }
    Ok(())
}
