//! A packet-level scripted MQTT peer for conformance probes: it sends exactly the typed packets or
//! raw bytes it is given, expects patterns within deadlines, expects the connection to close within
//! a window, and records everything in a [`Trace`]. It never acknowledges, pings or reconnects on
//! its own: what a broker sees is only what the script says.
//!
//! # How it reads
//!
//! Bytes are read into a bounded buffer (at most one packet of [`ProbeOptions::maximum_packet_size`]
//! plus one read) and split with the codec's framing layer ([`mqtt_protocol::split_frame`]), then
//! each frame is decoded strictly ([`mqtt_protocol::decode_frame`]) the moment it arrives, so the
//! trace's times are arrival times. A packet that fails strict decoding is a finding, not a crash:
//! it is recorded with its raw bytes and the [`DecodeError`] (rule and reason code), and the
//! expectation that meets it returns [`ProbeError::Malformed`]. A framing error (remaining length too
//! long, packet too large) leaves nothing further to read: it is recorded and reported the same way,
//! and later reads report [`ProbeError::Closed`] from that instant; [`Probe::expect_close`] still
//! drains and discards bytes until the real close, so a close can be timed after such a packet.
//!
//! # Role and version
//!
//! By default the probe is a client: it decodes what a server sends ([`Direction::ServerToClient`])
//! and refuses to send typed packets only a server may send. [`Role::Server`] turns it into a fake
//! broker for tests. The version used to encode and decode is [`ProbeOptions::version`] until a
//! CONNECT fixes it: a CONNECT the probe sends (typed, or raw bytes that decode as one) or, as a
//! server, one it receives. A client with no version yet reads with 5.0's rules; a server with no
//! version yet accepts only a CONNECT, as the codec does.
//!
//! # Time
//!
//! Every wait has a deadline and uses `tokio::time`, so the probe runs unchanged under a paused
//! runtime or turmoil. The trace's times are measured from the probe's creation.
//!
//! # Example
//!
//! A client probe and a fake broker probe over an in-memory stream:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! use mqtt_client::probe::{Pattern, Probe, ProbeOptions, PropertyExpectation};
//! use mqtt_protocol::{ConnAck, Connect, Packet, PropertyId, ReasonCode};
//!
//! let (client_end, broker_end) = tokio::io::duplex(4096);
//! let mut client = Probe::new(client_end, ProbeOptions::client());
//! let mut broker = Probe::new(broker_end, ProbeOptions::server());
//!
//! let connect = Connect { client_id: "probe-1".into(), clean_start: true, keep_alive_s: 60, ..Connect::default() };
//! client.send(&Packet::Connect(Box::new(connect))).await?;
//! broker.expect(&Pattern::connect(), Duration::from_secs(1)).await?;
//!
//! let mut connack = ConnAck::default();
//! connack.properties.server_keep_alive_s = Some(5);
//! broker.send(&Packet::ConnAck(connack)).await?;
//!
//! let expected = Pattern::connack()
//!     .reason_code(ReasonCode::SUCCESS)
//!     .property(PropertyExpectation::equals(PropertyId::ServerKeepAlive, 5u16));
//! client.expect(&expected, Duration::from_secs(1)).await?;
//!
//! broker.close().await;
//! let report = client.expect_close(Duration::ZERO..=Duration::from_secs(1)).await?;
//! assert!(report.disconnect.is_none());
//! println!("{}", client.trace()); // -> CONNECT v5.0 ..., <- CONNACK ..., <- (closed by peer)
//! # Ok(())
//! # }
//! ```

pub mod pattern;
pub mod trace;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_protocol::frame::FrameError;
use mqtt_protocol::{
    decode_frame, encode, split_frame, validate_direction, DecodeContext, DecodeError, DecodeErrorKind, Direction,
    Disconnect, EncodeError, Packet, ProtocolVersion, Rule,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use crate::transport::{BoxedStream, Dialer, Stream, TcpDialer};

pub use pattern::{Difference, ExpectedValue, Pattern, PropertyExpectation};
pub use trace::{Trace, TraceDirection, TraceEntry, TRACE_ENTRY_COUNT_MAX_DEFAULT};

/// How many bytes one read takes at most.
const READ_CHUNK_BYTE_COUNT: usize = 4096;

/// Received packets decoded but not yet taken by an expectation: at most what one read can hold
/// (the smallest packet is two bytes), since the probe reads again only when none is waiting.
const ARRIVAL_COUNT_MAX: usize = READ_CHUNK_BYTE_COUNT / 2 + 1;

/// A [`CloseReport`] keeps at most this many of the packets that arrived before the close; the
/// trace has them all.
pub const CLOSE_REPORT_OTHER_COUNT_MAX: usize = 64;

/// Which side of the connection the probe plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// Sends what a client sends; decodes what a server sends.
    #[default]
    Client,
    /// Sends what a server sends; decodes what a client sends (a fake broker).
    Server,
}

impl Role {
    /// The direction of the packets the probe receives.
    pub fn receive_direction(self) -> Direction {
        match self {
            Role::Client => Direction::ServerToClient,
            Role::Server => Direction::ClientToServer,
        }
    }

    /// The direction of the packets the probe sends.
    pub fn send_direction(self) -> Direction {
        self.receive_direction().reverse()
    }
}

/// How a probe behaves. Start from [`ProbeOptions::client`] or [`ProbeOptions::server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    pub role: Role,
    /// The version to encode and decode with until a CONNECT fixes it (see the module docs).
    pub version: Option<ProtocolVersion>,
    /// The largest whole packet accepted from the peer; a larger one is a framing error, refused
    /// from its fixed header alone so the probe never buffers it.
    pub maximum_packet_size: u32,
    /// The trace keeps at most this many entries; older ones are dropped and counted.
    pub trace_entry_count_max: usize,
    /// How long one send (write and flush) may take before [`ProbeError::SendTimeout`]: a peer
    /// that stops reading must not hang the probe.
    pub send_timeout: Duration,
    /// How long [`Probe::connect_tcp`] may take.
    pub connect_timeout: Duration,
}

impl ProbeOptions {
    /// The packet size limit when none is given: 1 MiB, ample for conformance probes; raise it
    /// (up to [`DecodeContext::MAXIMUM_PACKET_SIZE_MAX`]) to receive larger messages.
    pub const MAXIMUM_PACKET_SIZE_DEFAULT: u32 = 1024 * 1024;

    /// A client probe, version from its CONNECT.
    pub fn client() -> ProbeOptions {
        ProbeOptions {
            role: Role::Client,
            version: None,
            maximum_packet_size: Self::MAXIMUM_PACKET_SIZE_DEFAULT,
            trace_entry_count_max: TRACE_ENTRY_COUNT_MAX_DEFAULT,
            send_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// A fake-broker probe, version from the CONNECT it receives.
    pub fn server() -> ProbeOptions {
        ProbeOptions {
            role: Role::Server,
            ..ProbeOptions::client()
        }
    }

    pub fn with_version(mut self, version: ProtocolVersion) -> ProbeOptions {
        self.version = Some(version);
        self
    }

    pub fn with_maximum_packet_size(mut self, maximum_packet_size: u32) -> ProbeOptions {
        self.maximum_packet_size = maximum_packet_size;
        self
    }

    pub fn with_trace_entry_count_max(mut self, trace_entry_count_max: usize) -> ProbeOptions {
        self.trace_entry_count_max = trace_entry_count_max;
        self
    }

    pub fn with_send_timeout(mut self, send_timeout: Duration) -> ProbeOptions {
        self.send_timeout = send_timeout;
        self
    }

    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> ProbeOptions {
        self.connect_timeout = connect_timeout;
        self
    }
}

impl Default for ProbeOptions {
    fn default() -> ProbeOptions {
        ProbeOptions::client()
    }
}

/// What arrived from the peer: a packet, or bytes that failed strict decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Packet(Packet),
    Malformed(DecodeError),
}

/// How a connection closed, from [`Probe::expect_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReport {
    /// From the reference instant (the last packet sent, or the instant given) to the close.
    pub after: Duration,
    /// From the probe's creation to the close, the time the trace shows.
    pub at: Duration,
    /// The first DISCONNECT received while waiting (5.0 servers may send one before closing), so
    /// a caller can check its reason code.
    pub disconnect: Option<Disconnect>,
    /// Everything else received while waiting, the first [`CLOSE_REPORT_OTHER_COUNT_MAX`] of it.
    pub others: Vec<Incoming>,
    /// How many other packets arrived in all.
    pub other_count: usize,
}

/// Why an expectation or a send failed. Each names what was expected and what happened instead;
/// the probe's trace holds the packets that prove it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The typed packet cannot be sent validly (use [`Probe::send_raw`] to send invalid packets).
    #[error("cannot send an invalid packet: {0}")]
    Encode(#[from] EncodeError),
    #[error("could not connect to {address} within {} ms: {source}", millis(*.waited))]
    Connect {
        address: String,
        waited: Duration,
        #[source]
        source: io::Error,
    },
    #[error("sending failed: {0}")]
    Send(#[source] io::Error),
    #[error("sending did not finish within {} ms (is the peer reading?)", millis(*.waited))]
    SendTimeout { waited: Duration },
    #[error("cannot send: the probe shut down its write side")]
    WriteShutDown,
    /// The next packet does not match.
    #[error("expected {expected}, received {}: {}", trace::summary(actual), join(differences))]
    Mismatch {
        expected: Box<Pattern>,
        actual: Box<Packet>,
        differences: Vec<Difference>,
    },
    /// Nothing arrived within the deadline.
    #[error("expected {expected} within {} ms, received nothing", millis(*.waited))]
    Timeout { expected: Box<Pattern>, waited: Duration },
    /// The connection closed (or became unreadable) at `at` since the probe started.
    #[error("the connection closed at {} ms", millis(*.at))]
    Closed { at: Duration },
    /// The peer sent a packet that fails strict decoding: a finding, with its rule and reason code.
    #[error("the peer sent a malformed packet: {0}")]
    Malformed(Box<DecodeError>),
    /// A packet arrived while [`Probe::expect_nothing`] waited.
    #[error("expected nothing, received {} at {} ms", trace::summary(packet), millis(*.at))]
    UnexpectedPacket { packet: Box<Packet>, at: Duration },
    /// The connection closed before the window of [`Probe::expect_close`] opened.
    #[error("the connection closed after {} ms, before the window opened at {} ms", millis(*.after), millis(*.after_min))]
    ClosedEarly { after: Duration, after_min: Duration },
    /// The connection was still open when the window of [`Probe::expect_close`] ended.
    #[error("the connection was not closed within {} ms", millis(*.after_max))]
    NotClosed { after_max: Duration },
}

impl ProbeError {
    /// The decoder's verdict, for a [`ProbeError::Malformed`].
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            ProbeError::Malformed(error) => Some(error),
            _ => None,
        }
    }
}

/// `start + duration`, or a deadline decades away when that would overflow the clock: a caller's
/// `Duration::MAX` means "no practical limit", not a panic.
fn deadline_after(start: Instant, duration: Duration) -> Instant {
    const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    start
        .checked_add(duration)
        .or_else(|| start.checked_add(FAR_FUTURE))
        .unwrap_or(start)
}

fn millis(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

fn join(differences: &[Difference]) -> String {
    let parts: Vec<String> = differences.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// One decoded arrival, with the instant of the read that completed it.
#[derive(Debug)]
struct Arrival {
    incoming: Incoming,
    at: Instant,
}

/// What waiting for the next arrival produced.
enum Next {
    Arrival(Arrival),
    Closed(Instant),
    Deadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// A framing error: nothing further can be located in the stream. Reads report a close from
    /// `since`; [`Probe::expect_close`] keeps reading, discarding bytes, to see the real close.
    Unframeable {
        since: Instant,
        discarded_byte_count: u64,
    },
    /// The peer closed (end of stream or a read error) at `at`.
    Closed {
        at: Instant,
    },
}

/// A scripted MQTT peer over one stream. See the [module docs](self).
pub struct Probe {
    stream: BoxedStream,
    options: ProbeOptions,
    /// The version in force: the configured one, then the one a CONNECT fixed.
    version: Option<ProtocolVersion>,
    /// Bytes of a packet not yet whole (never a whole one: those are split off at once).
    buffer: BytesMut,
    chunk: Vec<u8>,
    arrivals: VecDeque<Arrival>,
    read_state: ReadState,
    write_shut_down: bool,
    started_at: Instant,
    last_sent_at: Option<Instant>,
    trace: Trace,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("options", &self.options)
            .field("version", &self.version)
            .field("read_state", &self.read_state)
            .field("write_shut_down", &self.write_shut_down)
            .field("trace_len", &self.trace.len())
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// A probe over any stream; its clock starts now.
    pub fn new(stream: impl Stream, options: ProbeOptions) -> Probe {
        assert!(options.maximum_packet_size >= 2, "no packet is shorter than two bytes");
        assert!(options.maximum_packet_size <= DecodeContext::MAXIMUM_PACKET_SIZE_MAX);
        Probe {
            stream: Box::new(stream),
            version: options.version,
            buffer: BytesMut::new(),
            chunk: vec![0; READ_CHUNK_BYTE_COUNT],
            arrivals: VecDeque::new(),
            read_state: ReadState::Open,
            write_shut_down: false,
            started_at: Instant::now(),
            last_sent_at: None,
            trace: Trace::new(options.trace_entry_count_max),
            options,
        }
    }

    /// Opens a TCP connection (TCP_NODELAY on) within [`ProbeOptions::connect_timeout`].
    /// `address` is anything that prints as `host:port`, a `SocketAddr` included.
    pub async fn connect_tcp(address: impl fmt::Display, options: ProbeOptions) -> Result<Probe, ProbeError> {
        Probe::connect(&TcpDialer::new(address.to_string()), options).await
    }

    /// Opens a connection through `dialer` (TCP, TLS, WebSocket: see
    /// [`crate::transport::dialer_for`]) within [`ProbeOptions::connect_timeout`]. The probe sees
    /// and records MQTT packets whatever carries them.
    pub async fn connect(dialer: &dyn Dialer, options: ProbeOptions) -> Result<Probe, ProbeError> {
        let waited = options.connect_timeout;
        let stream = match timeout(waited, dialer.dial()).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ProbeError::Connect {
                    address: dialer.describe(),
                    waited,
                    source,
                })
            }
            Err(_elapsed) => {
                return Err(ProbeError::Connect {
                    address: dialer.describe(),
                    waited,
                    source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                })
            }
        };
        Ok(Probe::new(stream, options))
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn options(&self) -> &ProbeOptions {
        &self.options
    }

    /// The version in force, if known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The instant the probe was created: time zero of its trace.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// When the last send finished, if any did.
    pub fn last_sent_at(&self) -> Option<Instant> {
        self.last_sent_at
    }

    /// Time since the probe was created.
    pub fn elapsed(&self) -> Duration {
        self.since_start(Instant::now())
    }

    /// Whether the probe has seen the peer close (or the stream become unreadable).
    pub fn is_closed(&self) -> bool {
        self.read_state != ReadState::Open && self.arrivals.is_empty()
    }

    /// Encodes and sends a typed packet. A packet that is invalid in the version in force, or that
    /// the probe's role may not send, is refused with [`ProbeError::Encode`] and nothing is sent.
    /// A CONNECT fixes the version (its own `protocol`).
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ProbeError> {
        let version = self.version.unwrap_or(ProtocolVersion::V5);
        validate_direction(packet, version, self.options.role.send_direction())?;
        let mut bytes = BytesMut::new();
        encode(packet, version, &mut bytes)?;
        if let Packet::Connect(connect) = packet {
            self.version = Some(connect.protocol);
        }
        let bytes = bytes.freeze();
        let written = self.write(&bytes).await;
        let finished_at = written
            .as_ref()
            .map_or_else(|_| Instant::now(), |finished_at| *finished_at);
        self.record(TraceEntry {
            at: self.since_start(finished_at),
            direction: TraceDirection::Sent,
            raw: bytes,
            packet: Some(packet.clone()),
            error: None,
            note: written.as_ref().err().map(|error| error.to_string()),
        });
        written.map(|_| ())
    }

    /// Sends these exact bytes, valid or not (build them with [`mqtt_protocol::raw::RawPacket`]).
    /// The trace splits them into packets and decodes each for display, recording the decoder's
    /// verdict on the invalid ones; bytes that are not a whole packet are recorded as such. Raw
    /// bytes that decode as a CONNECT fix the version like a typed one.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ProbeError> {
        let written = self.write(bytes).await;
        let finished_at = written
            .as_ref()
            .map_or_else(|_| Instant::now(), |finished_at| *finished_at);
        self.record_sent_raw(finished_at, bytes);
        if let Err(error) = &written {
            self.note(TraceDirection::Sent, error.to_string());
        }
        written.map(|_| ())
    }

    /// Shuts down the write side (a TCP FIN); the probe can still read. Later sends fail with
    /// [`ProbeError::WriteShutDown`].
    pub async fn shutdown_write(&mut self) -> Result<(), ProbeError> {
        if self.write_shut_down {
            return Ok(());
        }
        self.write_shut_down = true;
        let waited = self.options.send_timeout;
        let result = match timeout(waited, self.stream.shutdown()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ProbeError::Send(error)),
            Err(_elapsed) => Err(ProbeError::SendTimeout { waited }),
        };
        let note = match &result {
            Ok(()) => "write side shut down by the probe".to_owned(),
            Err(error) => format!("shutting down the write side failed: {error}"),
        };
        self.note(TraceDirection::Sent, note);
        result
    }

    /// Shuts down the write side (bounded by the send timeout), closes the connection and returns
    /// the trace. Dropping a probe closes the connection too, without the last trace entry.
    pub async fn close(mut self) -> Trace {
        if !self.write_shut_down {
            let _ = timeout(self.options.send_timeout, self.stream.shutdown()).await;
        }
        self.note(TraceDirection::Sent, "closed by the probe".to_owned());
        self.trace
    }

    /// The next packet, whatever it is, within `within`.
    pub async fn receive(&mut self, within: Duration) -> Result<Packet, ProbeError> {
        self.expect_skipping(&Pattern::any(), within, &[]).await
    }

    /// The next packet received must match `pattern`, within `within`.
    pub async fn expect(&mut self, pattern: &Pattern, within: Duration) -> Result<Packet, ProbeError> {
        self.expect_skipping(pattern, within, &[]).await
    }

    /// Like [`Probe::expect`], but packets that match one of `skip` (and not `pattern`) are passed
    /// over (they stay in the trace): `expect_skipping(&Pattern::publish(), within,
    /// &[Pattern::pingresp()])`. The deadline covers the whole wait.
    pub async fn expect_skipping(
        &mut self,
        pattern: &Pattern,
        within: Duration,
        skip: &[Pattern],
    ) -> Result<Packet, ProbeError> {
        let deadline = deadline_after(Instant::now(), within);
        loop {
            match self.next_arrival(deadline, false).await {
                Next::Arrival(Arrival {
                    incoming: Incoming::Packet(packet),
                    ..
                }) => match pattern.matches(&packet) {
                    Ok(()) => return Ok(packet),
                    Err(_) if skip.iter().any(|skipped| skipped.matches(&packet).is_ok()) => continue,
                    Err(differences) => {
                        self.note(
                            TraceDirection::Received,
                            format!("mismatch: expected {pattern}: {}", join(&differences)),
                        );
                        return Err(ProbeError::Mismatch {
                            expected: Box::new(pattern.clone()),
                            actual: Box::new(packet),
                            differences,
                        });
                    }
                },
                Next::Arrival(Arrival {
                    incoming: Incoming::Malformed(error),
                    ..
                }) => return Err(ProbeError::Malformed(Box::new(error))),
                Next::Closed(at) => {
                    return Err(ProbeError::Closed {
                        at: self.since_start(at),
                    })
                }
                Next::Deadline => {
                    self.note(
                        TraceDirection::Received,
                        format!("nothing within {} ms; expected {pattern}", millis(within)),
                    );
                    return Err(ProbeError::Timeout {
                        expected: Box::new(pattern.clone()),
                        waited: within,
                    });
                }
            }
        }
    }

    /// Nothing may arrive for `duration`: a packet is [`ProbeError::UnexpectedPacket`], a close
    /// [`ProbeError::Closed`], a malformed packet [`ProbeError::Malformed`].
    pub async fn expect_nothing(&mut self, duration: Duration) -> Result<(), ProbeError> {
        let deadline = deadline_after(Instant::now(), duration);
        match self.next_arrival(deadline, false).await {
            Next::Arrival(Arrival {
                incoming: Incoming::Packet(packet),
                at,
            }) => {
                self.note(
                    TraceDirection::Received,
                    format!("unexpected: expected nothing for {} ms", millis(duration)),
                );
                Err(ProbeError::UnexpectedPacket {
                    packet: Box::new(packet),
                    at: self.since_start(at),
                })
            }
            Next::Arrival(Arrival {
                incoming: Incoming::Malformed(error),
                ..
            }) => Err(ProbeError::Malformed(Box::new(error))),
            Next::Closed(at) => Err(ProbeError::Closed {
                at: self.since_start(at),
            }),
            Next::Deadline => {
                self.note(
                    TraceDirection::Received,
                    format!("nothing for {} ms, as expected", millis(duration)),
                );
                Ok(())
            }
        }
    }

    /// The connection must close within `window`, measured from the instant the last send
    /// finished (the probe's creation if it sent nothing): the packet that should provoke the
    /// close, or the last sign of life a keep-alive timeout counts from. To measure from another
    /// instant, use [`Probe::expect_close_since`].
    ///
    /// Packets arriving meanwhile are recorded; the first DISCONNECT (a 5.0 server may send one,
    /// with its reason code, before closing) is returned in the report, the others too, up to a
    /// bound. Closing before the window opens is [`ProbeError::ClosedEarly`]; still open when it
    /// ends, [`ProbeError::NotClosed`]. Bytes after a framing error are read and discarded, so the
    /// close is still timed. A close seen before the reference instant counts as after zero.
    pub async fn expect_close(&mut self, window: RangeInclusive<Duration>) -> Result<CloseReport, ProbeError> {
        let since = self.last_sent_at.unwrap_or(self.started_at);
        self.expect_close_since(since, window).await
    }

    /// [`Probe::expect_close`] with the window measured from `since`.
    pub async fn expect_close_since(
        &mut self,
        since: Instant,
        window: RangeInclusive<Duration>,
    ) -> Result<CloseReport, ProbeError> {
        let (after_min, after_max) = (*window.start(), *window.end());
        let deadline = deadline_after(since, after_max);
        let mut disconnect = None;
        let mut others = Vec::new();
        let mut other_count = 0;
        loop {
            match self.next_arrival(deadline, true).await {
                Next::Arrival(Arrival {
                    incoming: Incoming::Packet(Packet::Disconnect(received)),
                    ..
                }) if disconnect.is_none() => disconnect = Some(received),
                Next::Arrival(arrival) => {
                    other_count += 1;
                    if others.len() < CLOSE_REPORT_OTHER_COUNT_MAX {
                        others.push(arrival.incoming);
                    }
                }
                Next::Closed(closed_at) => {
                    let after = closed_at.saturating_duration_since(since);
                    if after < after_min {
                        self.note(
                            TraceDirection::Received,
                            format!(
                                "closed early: {} ms after the reference instant, the window opens at {} ms",
                                millis(after),
                                millis(after_min)
                            ),
                        );
                        return Err(ProbeError::ClosedEarly { after, after_min });
                    }
                    if after > after_max {
                        // Seen before this call, but after the window had ended.
                        self.note(
                            TraceDirection::Received,
                            format!(
                                "closed {} ms after the reference instant, after the window ended",
                                millis(after)
                            ),
                        );
                        return Err(ProbeError::NotClosed { after_max });
                    }
                    return Ok(CloseReport {
                        after,
                        at: self.since_start(closed_at),
                        disconnect,
                        others,
                        other_count,
                    });
                }
                Next::Deadline => {
                    self.note(
                        TraceDirection::Received,
                        format!("not closed within {} ms of the reference instant", millis(after_max)),
                    );
                    return Err(ProbeError::NotClosed { after_max });
                }
            }
        }
    }

    /// The next arrival, or the close, or the deadline. With `drain`, bytes after a framing error
    /// are read and discarded until the real close; without, such a stream reports a close at once.
    async fn next_arrival(&mut self, deadline: Instant, drain: bool) -> Next {
        // Bounded: every pass but the last reads at least one byte, and the deadline is checked
        // before each read, so a peer streaming without pause cannot keep the probe here.
        loop {
            if let Some(arrival) = self.arrivals.pop_front() {
                return Next::Arrival(arrival);
            }
            match self.read_state {
                ReadState::Closed { at } => return Next::Closed(at),
                ReadState::Unframeable { since, .. } if !drain => return Next::Closed(since),
                ReadState::Open | ReadState::Unframeable { .. } => {}
            }
            if Instant::now() >= deadline {
                return Next::Deadline;
            }
            // Cancel safe: a read that times out has taken no bytes.
            match timeout_at(deadline, self.stream.read(&mut self.chunk)).await {
                Err(_elapsed) => return Next::Deadline,
                Ok(Ok(0)) => self.handle_end_of_stream(None),
                Ok(Ok(count)) => self.handle_bytes(count),
                Ok(Err(error)) => self.handle_end_of_stream(Some(error)),
            }
        }
    }

    fn handle_bytes(&mut self, count: usize) {
        let now = Instant::now();
        if let ReadState::Unframeable {
            discarded_byte_count, ..
        } = &mut self.read_state
        {
            *discarded_byte_count += count as u64;
            return;
        }
        self.buffer.extend_from_slice(&self.chunk[..count]);
        self.split_arrivals(now);
        assert!(
            self.arrivals.len() <= ARRIVAL_COUNT_MAX,
            "one read yields a bounded number of packets"
        );
        assert!(
            self.buffer.len() < self.options.maximum_packet_size as usize + READ_CHUNK_BYTE_COUNT,
            "the buffer holds at most one incomplete packet"
        );
    }

    /// Splits every whole packet off the buffer, decodes it strictly and queues it, recording each
    /// in the trace with the time of the read that completed it.
    fn split_arrivals(&mut self, now: Instant) {
        let at = self.since_start(now);
        // Bounded: each pass takes a packet (two bytes or more) off the buffer, or stops.
        loop {
            let context = self.decode_context(self.options.role.receive_direction());
            let frame = match split_frame(&mut self.buffer, context.maximum_packet_size) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(frame_error) => {
                    let error = framing_decode_error(&self.buffer, frame_error, &context);
                    let discarded_byte_count = self.buffer.len() as u64;
                    self.buffer.clear();
                    self.read_state = ReadState::Unframeable {
                        since: now,
                        discarded_byte_count,
                    };
                    self.record(TraceEntry {
                        at,
                        direction: TraceDirection::Received,
                        raw: error.raw.clone(),
                        packet: None,
                        error: Some(error.clone()),
                        note: Some("the stream cannot be framed past this point".to_owned()),
                    });
                    self.arrivals.push_back(Arrival {
                        incoming: Incoming::Malformed(error),
                        at: now,
                    });
                    return;
                }
            };
            let incoming = match decode_frame(&frame, &context) {
                Ok(packet) => {
                    if let Packet::Connect(connect) = &packet {
                        self.version = Some(connect.protocol);
                    }
                    Incoming::Packet(packet)
                }
                Err(error) => Incoming::Malformed(error),
            };
            let (packet, error) = match &incoming {
                Incoming::Packet(packet) => (Some(packet.clone()), None),
                Incoming::Malformed(error) => (None, Some(error.clone())),
            };
            self.record(TraceEntry {
                at,
                direction: TraceDirection::Received,
                raw: frame.bytes,
                packet,
                error,
                note: None,
            });
            self.arrivals.push_back(Arrival { incoming, at: now });
        }
    }

    fn handle_end_of_stream(&mut self, error: Option<io::Error>) {
        let now = Instant::now();
        let at = self.since_start(now);
        if !self.buffer.is_empty() {
            let raw = self.buffer.split().freeze();
            let note = format!("incomplete packet: the stream ended after {} bytes of it", raw.len());
            self.record(TraceEntry {
                at,
                direction: TraceDirection::Received,
                raw,
                packet: None,
                error: None,
                note: Some(note),
            });
        }
        let mut note = match error {
            None => "closed by peer".to_owned(),
            Some(error) => format!("closed: reading failed: {error}"),
        };
        if let ReadState::Unframeable {
            discarded_byte_count, ..
        } = self.read_state
        {
            note.push_str(&format!(
                ", after {discarded_byte_count} unframeable bytes were discarded"
            ));
        }
        self.note(TraceDirection::Received, note);
        self.read_state = ReadState::Closed { at: now };
    }

    /// Records sent raw bytes packet by packet, decoded for display where they decode.
    fn record_sent_raw(&mut self, finished_at: Instant, bytes: &[u8]) {
        let at = self.since_start(finished_at);
        let mut buffer = BytesMut::from(bytes);
        // Bounded: each pass takes a packet off the buffer, or stops.
        loop {
            let context = self.decode_context(self.options.role.send_direction());
            let (raw, packet, error, note) = match split_frame(&mut buffer, context.maximum_packet_size) {
                Ok(Some(frame)) => match decode_frame(&frame, &context) {
                    Ok(packet) => {
                        if let Packet::Connect(connect) = &packet {
                            self.version = Some(connect.protocol);
                        }
                        (frame.bytes, Some(packet), None, None)
                    }
                    Err(error) => (frame.bytes, None, Some(error), None),
                },
                Ok(None) if buffer.is_empty() => return,
                Ok(None) => {
                    let note = "not a whole packet".to_owned();
                    (buffer.split().freeze(), None, None, Some(note))
                }
                Err(frame_error) => {
                    let error = framing_decode_error(&buffer, frame_error, &context);
                    let note = format!("cannot be framed; {} bytes in all", buffer.len());
                    (buffer.split().freeze(), None, Some(error), Some(note))
                }
            };
            self.record(TraceEntry {
                at,
                direction: TraceDirection::Sent,
                raw,
                packet,
                error,
                note,
            });
        }
    }

    /// Writes and flushes within the send timeout. The instant it finished is returned and becomes
    /// the reference of [`Probe::expect_close`].
    async fn write(&mut self, bytes: &[u8]) -> Result<Instant, ProbeError> {
        if self.write_shut_down {
            return Err(ProbeError::WriteShutDown);
        }
        let waited = self.options.send_timeout;
        let stream = &mut self.stream;
        let written = timeout(waited, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                let finished_at = Instant::now();
                self.last_sent_at = Some(finished_at);
                Ok(finished_at)
            }
            Ok(Err(error)) => Err(ProbeError::Send(error)),
            Err(_elapsed) => Err(ProbeError::SendTimeout { waited }),
        }
    }

    fn decode_context(&self, direction: Direction) -> DecodeContext {
        let version = match (self.version, direction) {
            (Some(version), _) => Some(version),
            // Before a CONNECT a server accepts only a CONNECT: the codec's meaning of `None`.
            (None, Direction::ClientToServer) => None,
            // A client that has not said its version reads with 5.0's rules.
            (None, Direction::ServerToClient) => Some(ProtocolVersion::V5),
        };
        let maximum_packet_size = if direction == self.options.role.receive_direction() {
            self.options.maximum_packet_size
        } else {
            // What the probe sends is bounded by the caller's own bytes.
            DecodeContext::MAXIMUM_PACKET_SIZE_MAX
        };
        DecodeContext {
            version,
            direction,
            maximum_packet_size,
        }
    }

    fn since_start(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.started_at)
    }

    fn record(&mut self, entry: TraceEntry) {
        self.trace.push(entry);
    }

    fn note(&mut self, direction: TraceDirection, note: String) {
        self.record(TraceEntry {
            at: self.elapsed(),
            direction,
            raw: Bytes::new(),
            packet: None,
            error: None,
            note: Some(note),
        });
    }
}

/// The codec's verdict on a framing failure. The codec's `decode` names the rule and reason code
/// of framing errors and leaves the buffer as it was; the first five bytes are all it looks at, so
/// they are all that is copied. Should it ever disagree with `split_frame`, the kind still says
/// what happened.
fn framing_decode_error(buffer: &BytesMut, frame_error: FrameError, context: &DecodeContext) -> DecodeError {
    let mut prefix = BytesMut::from(&buffer[..buffer.len().min(5)]);
    if let Err(error) = mqtt_protocol::decode(&mut prefix, context) {
        return error;
    }
    let spec = context.version.map_or(mqtt_protocol::Spec::V5_0, ProtocolVersion::spec);
    let (kind, raw) = match frame_error {
        FrameError::RemainingLengthTooLong { raw } => (DecodeErrorKind::RemainingLengthTooLong, raw),
        FrameError::PacketTooLarge { size, maximum, raw } => (DecodeErrorKind::PacketTooLarge { size, maximum }, raw),
    };
    DecodeError {
        kind,
        rule: Rule::section(spec, "2.1.4"),
        reason_code: None,
        raw,
    }
}
