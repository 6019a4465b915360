//! What crossed each client's connections, recorded the same way in both worlds: a recording
//! wrapper around each stream ([`RecordingStream`]) frames and decodes the bytes going each way
//! with the one codec, and appends every packet, with its instant and its connection, to the
//! client's [`Wire`] and to the run's [`Trace`]. Expectations and invariants read the wire; the
//! trace is the evidence.
//!
//! Instants are durations since the run's start, read from the world's [`Clock`]: simulated time
//! under `sim`, real time live.

use std::fmt::{self, Write as _};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_client::probe::trace::summary;
use mqtt_client::transport::{BoxedStream, DialFuture, Dialer};
use mqtt_protocol::{decode_frame, split_frame, DecodeContext, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// The most trace lines one run keeps; later ones are counted, not kept.
pub const TRACE_LINES_MAX: usize = 100_000;
/// The most packets one client's wire keeps; later ones are counted, not kept.
pub const WIRE_RECORDS_MAX: usize = 200_000;
/// The most bytes of one packet kept as raw bytes in the trace.
const RAW_BYTES_KEPT_MAX: usize = 256;

/// The time since the run's start, in the world's time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Duration + Send + Sync>);

impl Clock {
    pub fn new(now: impl Fn() -> Duration + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> Duration {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// `12.340000`: seconds and microseconds, so that any drift shows in a comparison of traces.
pub fn instant(at: Duration) -> String {
    format!("{}.{:06}", at.as_secs(), at.subsec_micros())
}

/// Which way a trace line went, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrow {
    /// Client to broker.
    Sent,
    /// Broker to client.
    Received,
    /// Not a packet: a fault, a connection event, a note.
    Event,
}

impl Arrow {
    pub fn symbol(self) -> &'static str {
        match self {
            Arrow::Sent => "->",
            Arrow::Received => "<-",
            Arrow::Event => "--",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLine {
    pub at: Duration,
    /// A client's name, `net` for faults, `broker` for the broker's own lines.
    pub who: String,
    pub arrow: Arrow,
    pub what: String,
    /// The packet's bytes (the first [`RAW_BYTES_KEPT_MAX`]), when it is one.
    pub raw: Option<Bytes>,
}

impl fmt::Display for TraceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>11} {} {} {}",
            instant(self.at),
            self.who,
            self.arrow.symbol(),
            self.what
        )
    }
}

#[derive(Debug, Default)]
struct TraceState {
    lines: Vec<TraceLine>,
    dropped: u64,
}

/// The lines of one run in the order they happened. Under `sim` everything runs on one thread
/// in an order the seed fixes, so the same seed gives the same lines, byte for byte.
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<TraceState>>);

impl Trace {
    fn state(&self) -> MutexGuard<'_, TraceState> {
        // A line half-pushed cannot exist: a panic elsewhere leaves the vector whole.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record(&self, at: Duration, who: &str, arrow: Arrow, what: impl Into<String>, raw: Option<Bytes>) {
        let mut state = self.state();
        if state.lines.len() >= TRACE_LINES_MAX {
            state.dropped += 1;
            return;
        }
        state.lines.push(TraceLine {
            at,
            who: who.to_owned(),
            arrow,
            what: what.into(),
            raw,
        });
    }

    pub fn event(&self, at: Duration, who: &str, what: impl Into<String>) {
        self.record(at, who, Arrow::Event, what, None);
    }

    pub fn lines(&self) -> Vec<TraceLine> {
        self.state().lines.clone()
    }

    pub fn dropped(&self) -> u64 {
        self.state().dropped
    }

    /// One line per entry, `with_raw` adding the packet bytes in hex.
    pub fn render(&self, with_raw: bool) -> String {
        let state = self.state();
        let mut text = String::new();
        for line in &state.lines {
            let _ = write!(text, "{line}");
            if let (true, Some(raw)) = (with_raw, &line.raw) {
                let _ = write!(text, "  [{}]", hex(raw));
            }
            text.push('\n');
        }
        if state.dropped > 0 {
            let _ = writeln!(text, "({} more lines not kept)", state.dropped);
        }
        text
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 3);
    for (index, byte) in bytes.iter().enumerate() {
        if index > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Which way a packet went, from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Sent,
    Received,
}

/// One packet on a client's wire.
#[derive(Debug, Clone)]
pub struct Record {
    pub at: Duration,
    /// Which of the client's connections, from 0.
    pub connection: usize,
    pub way: Way,
    /// `None` when the bytes did not decode (the summary says why).
    pub packet: Option<Packet>,
    pub summary: String,
    /// Taken by an expectation already.
    pub consumed: bool,
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The broker closed it or it failed (what the client read: end of stream, reset).
    Broker,
    /// The client closed it (after DISCONNECT, abruptly, or at the end of the run).
    Client,
}

#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    pub opened_at: Duration,
    pub version: Option<ProtocolVersion>,
    pub last_sent_at: Option<Duration>,
    pub closed: Option<(Duration, ClosedBy, String)>,
}

/// Everything one client's connections carried.
#[derive(Debug, Default)]
pub struct WireState {
    pub records: Vec<Record>,
    pub connections: Vec<ConnectionRecord>,
    pub dropped: u64,
}

impl WireState {
    /// The connection most recently opened, if any.
    pub fn current(&self) -> Option<usize> {
        self.connections.len().checked_sub(1)
    }

    /// Whether the most recent connection is still open.
    pub fn is_connected(&self) -> bool {
        self.connections
            .last()
            .is_some_and(|connection| connection.closed.is_none())
    }
}

/// One client's wire, shared by its recording streams (which write it) and the driver (which
/// reads it and is told of every change).
#[derive(Debug, Clone)]
pub struct Wire {
    state: Arc<Mutex<WireState>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Wire {
    fn default() -> Self {
        Wire {
            state: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl Wire {
    pub fn state(&self) -> MutexGuard<'_, WireState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A receiver told of every change after it was made.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version = version.wrapping_add(1));
    }

    fn open(&self, at: Duration) -> usize {
        let index = {
            let mut state = self.state();
            state.connections.push(ConnectionRecord {
                opened_at: at,
                version: None,
                last_sent_at: None,
                closed: None,
            });
            state.connections.len() - 1
        };
        self.notify();
        index
    }

    fn push(&self, record: Record) {
        {
            let mut state = self.state();
            if record.way == Way::Sent {
                if let Some(connection) = state.connections.get_mut(record.connection) {
                    connection.last_sent_at = Some(record.at);
                    if let Some(Packet::Connect(connect)) = &record.packet {
                        connection.version = Some(connect.protocol);
                    }
                }
            }
            if state.records.len() >= WIRE_RECORDS_MAX {
                state.dropped += 1;
            } else {
                state.records.push(record);
            }
        }
        self.notify();
    }

    /// Records the end of `connection`; the first report wins.
    fn close(&self, connection: usize, at: Duration, by: ClosedBy, how: String) -> bool {
        let first = {
            let mut state = self.state();
            match state.connections.get_mut(connection) {
                Some(record) if record.closed.is_none() => {
                    record.closed = Some((at, by, how));
                    true
                }
                _ => false,
            }
        };
        if first {
            self.notify();
        }
        first
    }
}

/// Ends a client's connections at once, without DISCONNECT (a crashed client): every recording
/// stream it was handed to drops its socket at its next turn, and the reader is woken for it.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<KillState>);

#[derive(Debug, Default)]
struct KillState {
    /// Bumped by every kill: streams opened before it die, streams opened after it live.
    generation: Mutex<(u64, Vec<Waker>)>,
    /// Refuse new dials, so that our client's reconnect loop does not bring a dead client back.
    dials_refused: AtomicBool,
}

impl KillSwitch {
    fn generation(&self) -> u64 {
        self.0
            .generation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0
    }

    /// Kills every stream opened so far; `refuse_dials` also makes later dials fail until
    /// [`KillSwitch::allow_dials`].
    pub fn kill(&self, refuse_dials: bool) {
        let wakers = {
            let mut state = self
                .0
                .generation
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.0 += 1;
            std::mem::take(&mut state.1)
        };
        if refuse_dials {
            self.0.dials_refused.store(true, Ordering::SeqCst);
        }
        for waker in wakers {
            waker.wake();
        }
    }

    pub fn allow_dials(&self) {
        self.0.dials_refused.store(false, Ordering::SeqCst);
    }

    fn dials_refused(&self) -> bool {
        self.0.dials_refused.load(Ordering::SeqCst)
    }

    /// Whether a stream of generation `generation` must die; if not, `waker` is woken by the
    /// next kill.
    fn killed(&self, generation: u64, waker: &Waker) -> bool {
        let mut state = self
            .0
            .generation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.0 != generation {
            return true;
        }
        if !state.1.iter().any(|known| known.will_wake(waker)) {
            state.1.push(waker.clone());
        }
        false
    }
}

/// Dials through `inner` and hands out [`RecordingStream`]s: one new connection of the client
/// per dial.
pub struct RecordingDialer {
    pub inner: Arc<dyn Dialer>,
    pub client: String,
    pub wire: Wire,
    pub trace: Trace,
    pub clock: Clock,
    pub kill: KillSwitch,
}

impl Dialer for RecordingDialer {
    fn dial(&self) -> DialFuture {
        let dial = self.inner.dial();
        let (client, wire, trace, clock, kill) = (
            self.client.clone(),
            self.wire.clone(),
            self.trace.clone(),
            self.clock.clone(),
            self.kill.clone(),
        );
        let refused = self.kill.dials_refused();
        let description = self.inner.describe();
        Box::pin(async move {
            if refused {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("{client} was closed by the scenario: no more connections"),
                ));
            }
            let generation = kill.generation();
            match dial.await {
                Ok(stream) => {
                    let at = clock.now();
                    let connection = wire.open(at);
                    trace.event(at, &client, format!("connection {connection} opened to {description}"));
                    Ok(Box::new(RecordingStream {
                        inner: Some(stream),
                        client,
                        connection,
                        wire,
                        trace,
                        clock,
                        kill,
                        generation,
                        sent: Direction::new(DecodeContext::server()),
                        received: Direction::new(DecodeContext::client(ProtocolVersion::V5)),
                    }) as BoxedStream)
                }
                Err(error) => {
                    trace.event(clock.now(), &client, format!("connect failed: {error}"));
                    Err(error)
                }
            }
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// One direction's bytes, waiting to make whole packets.
struct Direction {
    buffer: BytesMut,
    context: DecodeContext,
    /// A framing error: the rest of this direction cannot be split into packets.
    broken: bool,
}

impl Direction {
    fn new(context: DecodeContext) -> Direction {
        Direction {
            buffer: BytesMut::new(),
            context,
            broken: false,
        }
    }
}

/// A stream that records every packet it carries; see the module documentation.
pub struct RecordingStream {
    /// `None` once killed or closed.
    inner: Option<BoxedStream>,
    client: String,
    connection: usize,
    wire: Wire,
    trace: Trace,
    clock: Clock,
    kill: KillSwitch,
    generation: u64,
    sent: Direction,
    received: Direction,
}

impl RecordingStream {
    fn feed(&mut self, way: Way, bytes: &[u8]) {
        let at = self.clock.now();
        let direction = match way {
            Way::Sent => &mut self.sent,
            Way::Received => &mut self.received,
        };
        if direction.broken {
            return;
        }
        direction.buffer.extend_from_slice(bytes);
        // Each frame: the packet, or why it is none; and its bytes.
        let mut decoded: Vec<(Option<Packet>, Bytes, Option<String>)> = Vec::new();
        loop {
            match split_frame(&mut direction.buffer, direction.context.maximum_packet_size) {
                Ok(Some(frame)) => {
                    let raw = frame.bytes.slice(..frame.bytes.len().min(RAW_BYTES_KEPT_MAX));
                    match decode_frame(&frame, &direction.context) {
                        Ok(packet) => decoded.push((Some(packet), raw, None)),
                        Err(error) => decoded.push((None, raw, Some(format!("malformed: {error}")))),
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    direction.broken = true;
                    let kept = direction.buffer.len().min(RAW_BYTES_KEPT_MAX);
                    let raw = Bytes::copy_from_slice(&direction.buffer[..kept]);
                    decoded.push((None, raw, Some(format!("unframeable bytes: {error:?}"))));
                    break;
                }
            }
        }
        for (packet, raw, malformed) in decoded {
            if let Some(Packet::Connect(connect)) = &packet {
                // The client chose its version: decode both ways in it from now on.
                self.sent.context = DecodeContext::server().with_version(connect.protocol);
                self.received.context = DecodeContext::client(connect.protocol);
            } else if way == Way::Sent && packet.is_none() && raw.first().is_some_and(|byte| byte >> 4 == 1) {
                // A CONNECT that does not decode (a test of the broker's refusals): the broker
                // answers in the format of the level it asked for, 3.1.1's below 5.
                if let Some(version) = connect_level(&raw) {
                    self.received.context = DecodeContext::client(version);
                }
            }
            let text = match (&packet, malformed) {
                (Some(packet), _) => summary(packet),
                (None, Some(text)) => text,
                (None, None) => "?".to_owned(),
            };
            let arrow = match way {
                Way::Sent => Arrow::Sent,
                Way::Received => Arrow::Received,
            };
            self.trace.record(at, &self.client, arrow, text.clone(), Some(raw));
            self.wire.push(Record {
                at,
                connection: self.connection,
                way,
                packet,
                summary: text,
                consumed: false,
            });
        }
    }

    fn closed(&mut self, by: ClosedBy, how: String) {
        self.inner = None;
        let at = self.clock.now();
        if self.wire.close(self.connection, at, by, how.clone()) {
            let who = match by {
                ClosedBy::Broker => "by the broker",
                ClosedBy::Client => "by the client",
            };
            self.trace.event(
                at,
                &self.client,
                format!("connection {} closed {who}: {how}", self.connection),
            );
        }
    }

    fn killed(&mut self, cx: &Context<'_>) -> bool {
        if self.inner.is_some() && self.kill.killed(self.generation, cx.waker()) {
            self.closed(ClosedBy::Client, "closed without DISCONNECT".to_owned());
        }
        self.inner.is_none()
    }
}

/// The protocol version a CONNECT's bytes ask for, read from its protocol level even when the
/// rest does not decode: levels below 5 are answered in 3.1.1's format, 5 and above in 5.0's.
fn connect_level(raw: &[u8]) -> Option<ProtocolVersion> {
    // Fixed header: the type byte and 1 to 4 bytes of remaining length.
    let header = 1 + raw.iter().skip(1).take(4).position(|byte| byte & 0x80 == 0)? + 1;
    let name_length = usize::from(u16::from_be_bytes([*raw.get(header)?, *raw.get(header + 1)?]));
    let level = *raw.get(header + 2 + name_length)?;
    Some(if level < 5 {
        ProtocolVersion::V3_1_1
    } else {
        ProtocolVersion::V5
    })
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was closed")
}

impl AsyncRead for RecordingStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.killed(cx) {
            return Poll::Ready(Err(gone()));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let before = buf.filled().len();
        match Pin::new(inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let bytes = buf.filled()[before..].to_vec();
                if bytes.is_empty() && buf.remaining() > 0 {
                    this.closed(ClosedBy::Broker, "end of stream".to_owned());
                } else {
                    this.feed(Way::Received, &bytes);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => {
                this.closed(ClosedBy::Broker, error.to_string());
                Poll::Ready(Err(error))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for RecordingStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.killed(cx) {
            return Poll::Ready(Err(gone()));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        match Pin::new(inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                this.feed(Way::Sent, &buf[..written]);
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => {
                this.closed(ClosedBy::Broker, error.to_string());
                Poll::Ready(Err(error))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.killed(cx) {
            return Poll::Ready(Err(gone()));
        }
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.killed(cx) {
            return Poll::Ready(Ok(()));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match Pin::new(inner).poll_shutdown(cx) {
            Poll::Ready(result) => {
                this.closed(ClosedBy::Client, "closed by the client".to_owned());
                Poll::Ready(result)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RecordingStream {
    fn drop(&mut self) {
        if self.inner.is_some() {
            self.closed(ClosedBy::Client, "dropped by the client".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_of_a_connect_that_does_not_decode_names_the_answers_format() {
        // "MQTT" level 2 (unsupported), then garbage: answered as 3.1.1.
        assert_eq!(
            connect_level(&[0x10, 0x07, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x02]),
            Some(ProtocolVersion::V3_1_1)
        );
        assert_eq!(
            connect_level(&[0x10, 0x07, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06]),
            Some(ProtocolVersion::V5)
        );
        assert_eq!(connect_level(&[0x10, 0x01]), None, "too short to say");
    }
}
