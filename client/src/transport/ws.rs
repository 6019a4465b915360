//! MQTT over WebSocket (5.0 §6, 3.1.1 §6): the handshakes of both sides with the `mqtt`
//! subprotocol, and [`WsStream`], which turns a WebSocket into the byte stream every MQTT layer
//! here runs on. MQTT packets travel in binary frames only; a frame may hold any part of a packet
//! or several packets, so the stream simply concatenates frame payloads.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The WebSocket subprotocol MQTT uses (5.0 MQTT-6.0.0-3, 3.1.1 MQTT-6.0.0-3 say "mqtt").
pub const SUBPROTOCOL: &str = "mqtt";

/// A frame or message larger than this ends the connection: generous for MQTT's own limit (a
/// broker announces its Maximum Packet Size) and a bound on what one peer can make us buffer.
const MESSAGE_BYTE_COUNT_MAX: usize = 16 * 1024 * 1024;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MESSAGE_BYTE_COUNT_MAX))
        .max_frame_size(Some(MESSAGE_BYTE_COUNT_MAX))
}

/// A WebSocket as a byte stream: reads yield the payloads of binary frames, each write is sent as
/// one binary frame. A text frame is a protocol error (MQTT-6.0.0-1), reported as invalid data.
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// What is left of the last binary frame read.
    pending: Bytes,
}

impl<S> WsStream<S> {
    pub fn new(inner: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            inner,
            pending: Bytes::new(),
        }
    }
}

fn to_io(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Io(error) => error,
        Error::ConnectionClosed | Error::AlreadyClosed => io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed"),
        error => io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {error}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // Bounded: each pass either returns or takes one message off the stream.
        loop {
            if !self.pending.is_empty() {
                let count = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..count]);
                self.pending.advance(count);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a WebSocket text frame: MQTT travels in binary frames only (MQTT-6.0.0-1)",
                    )))
                }
                // Pings are answered by tungstenite itself; pongs and raw frames carry nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.inner).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.inner)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.inner).poll_close(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            // Closing what the peer closed already is done.
            Err(
                tokio_tungstenite::tungstenite::Error::ConnectionClosed
                | tokio_tungstenite::tungstenite::Error::AlreadyClosed,
            ) => Poll::Ready(Ok(())),
            Err(error) => Poll::Ready(Err(to_io(error))),
        }
    }
}

/// The client's opening handshake on `stream`: GET `url` (ws:// or wss://, its path) asking for
/// the `mqtt` subprotocol.
pub async fn connect<S>(stream: S, url: &str) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url
        .into_client_request()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {error}")))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
    let (inner, _response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config()))
        .await
        .map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("WebSocket handshake with {url} failed: {error}"),
            )
        })?;
    Ok(WsStream::new(inner))
}

/// The server's side of the handshake: accepts a GET of `path` that offers the `mqtt`
/// subprotocol, and answers with it (MQTT-6.0.0-4: the server selects it). Anything else gets an
/// HTTP error response saying why, and an error here.
pub async fn accept<S>(stream: S, path: &str) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let expected_path = path.to_owned();
    // The signature is tungstenite's callback's, large error type and all.
    #[allow(clippy::result_large_err)]
    let check = move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        if request.uri().path() != expected_path {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                format!("no MQTT endpoint at {}", request.uri().path()),
            ));
        }
        let offers_mqtt = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|protocol| protocol.trim().eq_ignore_ascii_case(SUBPROTOCOL));
        if !offers_mqtt {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "the WebSocket subprotocol `mqtt` is required (Sec-WebSocket-Protocol: mqtt)".to_owned(),
            ));
        }
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
        Ok(response)
    };
    let inner = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config()))
        .await
        .map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("WebSocket handshake failed: {error}"),
            )
        })?;
    Ok(WsStream::new(inner))
}

fn refusal(status: StatusCode, reason: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(reason));
    *response.status_mut() = status;
    response
}
