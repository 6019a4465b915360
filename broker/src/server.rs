//! The tokio server: accepts connections on any number of listeners and runs them all through one
//! sans-IO [`Broker`] core. It is generic over the listener and its stream ([`Listener`]), so the
//! same broker runs on real TCP and on turmoil's simulated network.
//!
//! # Tasks
//!
//! - **One accept task per listener** hands each accepted stream to the broker task over a bounded
//!   queue; an accept error (out of file descriptors, typically) is logged and retried after a pause.
//! - **The broker task** ([`Server::run`] itself) owns the core, the only mutable broker state. It
//!   wakes up for (in this order, `biased`): the shutdown future, the core's timer
//!   ([`Broker::poll_timeout`]), a new connection, a packet from a connection. Every wake-up also
//!   takes a bounded batch of further packets, one more new connection and any due timer, so none
//!   of them can starve the others; then it routes everything [`Broker::poll_output`] produced to
//!   the connections' tasks. It is the only place besides the connections' own deadlines that
//!   reads the clock (`tokio::time::Instant`, which turmoil drives).
//! - **One task per connection** reads and writes it and does the codec work off the broker task:
//!   a hand-written future (`ConnectionTask`) that polls the stream for reading and writing in
//!   turn, so an idle connection costs its socket, a small struct and no buffer (the read and write
//!   buffers are given back whenever they drain). It decodes with its own [`DecodeContext`]
//!   (server side, the configured maximum packet size, the version from the first CONNECT) and
//!   hands packets, a decode error, or the end of the stream to the broker task over one bounded
//!   queue shared by all connections: a fast client is held back through TCP when the broker falls
//!   behind. It writes what the broker task queued for it, encoded into one buffer of up to
//!   [`WRITE_BATCH_BYTE_COUNT_MAX`] bytes per write.
//!
//! Connection ids come from a counter and are never reused.
//!
//! # Slow consumers: what is bounded, what is dropped
//!
//! The broker task never waits for a connection: each connection's queue is unbounded, and guarded
//! by a per-connection count of packets queued but not yet written. When that count has reached
//! [`Config::outgoing_packets_max`](crate::Config::outgoing_packets_max), QoS 0 PUBLISH packets
//! for the connection are dropped (and counted in [`Statistics::publishes_dropped`]); every other
//! packet still goes: acknowledgements, QoS 1 and 2 PUBLISH packets (bounded by the MQTT flow
//! windows the core keeps), DISCONNECT. What is left unbounded so far is what answers the client
//! itself: a client that publishes without ever reading its PUBACKs would have them pile up. So
//! once its queue holds more than a subscriber's queue ever can (`outgoing_packets_max` QoS 0
//! messages, the in-flight window, and [`OWN_ANSWERS_QUEUED_MAX`] more), the connection's task
//! stops reading it until the queue drains: the client is held back through TCP. So a client that
//! stops reading costs at most its window, `outgoing_packets_max` QoS 0 messages and that many
//! answers, and cannot slow anybody else down.
//!
//! # Closing
//!
//! When the core asks to close a connection ([`Output::Close`]), or the connection reports its
//! end, the broker task drops its handle on the connection. The connection's task then writes
//! what is still queued (bounded by [`ServerOptions::close_timeout`]) and shuts the stream down. It
//! stops handing anything to the core at once (MQTT-3.1.4-6: nothing after a refused CONNECT is
//! processed) but keeps reading and discarding for at most [`ServerOptions::linger`], so that bytes
//! the client sent meanwhile do not turn the close into a reset that could destroy the last packets
//! written (the CONNACK or DISCONNECT that says why). After a decode error it stops reading and
//! waits for the core to close the connection; if the core has not done so within
//! [`ServerOptions::decode_error_close_timeout`], the server closes it itself and tells the core.
//!
//! A packet once begun must be whole within [`ServerOptions::packet_timeout`] (the clock restarts
//! with every packet that completes, and stops while the broker task holds the client back): a
//! client that promises bytes it never sends, with keep alive 0 and so no keep-alive timer, or
//! that trickles a packet byte by byte, loses its connection (the core is told, as for a lost
//! connection: its will is published) instead of holding a partial buffer forever.
//!
//! On shutdown the accept tasks stop (the listeners close), the core is told
//! ([`Broker::handle_shutdown`]: 5.0 clients get DISCONNECT 0x8B Server shutting down), every
//! connection is closed as above, and the connections get [`ServerOptions::shutdown_timeout`] to
//! flush before the remaining tasks are aborted. No task outlives [`Server::run`].

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use mqtt_protocol::{decode, encode, Connect, DecodeContext, DecodeError, Packet, ProtocolVersion, QoS};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Instant, Sleep};

use crate::core::{Broker, ConnectionId, Output, ServerFigures};
use crate::security::Security;

/// A connection encodes queued packets into one buffer until it holds this many bytes (or the queue is
/// empty), then writes it at once.
pub const WRITE_BATCH_BYTE_COUNT_MAX: usize = 64 * 1024;

/// How many queued packets the broker task takes per wake-up, so that the timer, new connections
/// and the output routing are never starved by a busy queue.
const INBOUND_PER_WAKE_UP_MAX: usize = 256;

/// Accepted streams waiting for the broker task.
const ACCEPTED_CAPACITY: usize = 64;

/// The pause after a failed accept, so that running out of file descriptors is not a busy loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The room a connection reserves before a read: it starts small, doubles while reads fill it (a
/// busy connection reads in large chunks), and falls back once the buffer drains; an idle
/// connection holds no buffer at all (10,000 idle connections are the common case of a broker).
const READ_CHUNK_BYTE_COUNT_MIN: usize = 512;
const READ_CHUNK_BYTE_COUNT: usize = 8 * 1024;

/// A lingering close discards at most this much: enough for what a client pipelined before it
/// saw the close, not for a client that keeps sending.
const LINGER_BYTE_COUNT_MAX: usize = 1024 * 1024;

/// Accepts connections: implemented for [`tokio::net::TcpListener`] here; the simulator implements
/// it for a newtype around turmoil's listener (the orphan rule forbids implementing it for
/// turmoil's type outside this crate).
pub trait Listener: Send + 'static {
    /// The stream of one accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection and its peer's address.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// The address this listener is bound to (with the port the system chose for port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The next connection, its peer's address, and the name on its TLS client certificate (its
    /// subject's Common Name), given to the core as the connection opens: none without TLS or a
    /// certificate, as here by default. (Not kept in the stream: every byte of the connection's
    /// task is paid per connection.)
    fn accept_named(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr, Option<String>)>> + Send {
        async { self.accept().await.map(|(stream, peer)| (stream, peer, None)) }
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    /// Accepts and sets TCP_NODELAY: the connection task already coalesces, so Nagle would only add delay.
    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}

/// Worker threads `mqtt-harness broker` runs on unless told otherwise (`--threads`): one. Each
/// message crosses tasks (a connection's, the broker's, another connection's); on one thread
/// those hand-overs are plain function calls of the scheduler, while across threads each is a
/// wake-up of a parked thread (futex, context switch). Measured with the broker load benchmark
/// on this 2-core machine (the generator beside it), one worker against two: at a paced 10,000
/// QoS 1 msgs/s 21 against 48 CPU s per million messages (mosquitto 24 to 27), and the highest
/// rates held as high or higher in every workload but 1→1 QoS 1 (680,000 against 760,000). A
/// broker with cores of its own can take more (`--threads 0`: one per core).
pub const WORKER_THREADS_DEFAULT: usize = 1;

/// [`ServerOptions::packet_timeout`] by default: 1 MiB (the default maximum packet size) at
/// 52 KiB/s, and the keep-alive bound of a 13 s keep alive.
pub const PACKET_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);

/// The server's own deadlines and queue sizes (the broker's limits are in [`crate::Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a connection being closed may take to write what is queued for it; then it is
    /// dropped (a client that stops reading cannot keep it open).
    pub close_timeout: Duration,
    /// After the broker closes a connection, how long it keeps reading and discarding what the
    /// client still sends (a lingering close, see the module docs).
    pub linger: Duration,
    /// How long a connection whose packet failed decoding waits for the core to close it before
    /// the server closes it itself.
    pub decode_error_close_timeout: Duration,
    /// How long a packet may take from its first byte to its last before the connection is
    /// closed (see the module docs): a bound on a partial buffer held for a client that stalls.
    pub packet_timeout: Duration,
    /// On shutdown, how long the connections get to flush (the 5.0 DISCONNECT 0x8B) before every
    /// remaining connection task is aborted.
    pub shutdown_timeout: Duration,
    /// Capacity of the queue from all connections to the broker task.
    pub inbound_capacity: usize,
    /// How often the broker publishes its `$SYS/broker/...` topics ([`Broker::publish_system_topics`]):
    /// the first at the start, retained. `None` (the default, so that tests and simulations see
    /// only their own messages): never; `mqtt-harness broker` publishes every 10 s unless told
    /// otherwise. The 7 retained topics count toward `Config::retained_messages_max`.
    pub sys_interval: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            close_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(1),
            decode_error_close_timeout: Duration::from_secs(5),
            packet_timeout: PACKET_TIMEOUT_DEFAULT,
            shutdown_timeout: Duration::from_secs(2),
            inbound_capacity: 1024,
            sys_interval: None,
        }
    }
}

/// Counters of a running server, shared with whoever holds [`Server::statistics`].
#[derive(Debug, Default)]
pub struct Statistics {
    /// Connections accepted since the start.
    pub connections_accepted: AtomicU64,
    /// Connections whose tasks are still running (a closing connection counts until it
    /// has flushed and stopped lingering).
    pub connections_open: AtomicU64,
    /// Packets decoded and handed to the core.
    pub packets_received: AtomicU64,
    /// Packets that failed strict decoding (each ends its connection).
    pub decode_errors: AtomicU64,
    /// Packets written to connections.
    pub packets_sent: AtomicU64,
    /// Bytes read from connections, and bytes written to them (after TLS and WebSocket: what the
    /// MQTT layer exchanged).
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// QoS 0 PUBLISH packets dropped because their connection had
    /// [`Config::outgoing_packets_max`](crate::Config::outgoing_packets_max) packets unwritten.
    pub publishes_dropped: AtomicU64,
    /// Connections closed because a CONNACK or an acknowledgement did not fit the client's Maximum
    /// Packet Size (the core's [`crate::Statistics::required_packets_too_large`]).
    pub required_packets_too_large: AtomicU64,
}

impl Statistics {
    fn add(counter: &AtomicU64, count: u64) {
        counter.fetch_add(count, Ordering::Relaxed);
    }
}

/// The broker on a set of listeners. Build it, take [`Server::statistics`] if wanted, then
/// [`Server::run`] it until a shutdown future resolves.
pub struct Server<L: Listener> {
    listeners: Vec<L>,
    broker: Broker,
    options: ServerOptions,
    statistics: Arc<Statistics>,
    security_updates: Option<watch::Receiver<Arc<Security>>>,
}

impl<L: Listener> Server<L> {
    /// A server for `broker` on `listeners` (bound already: tests bind port 0), default options.
    pub fn new(listeners: Vec<L>, broker: Broker) -> Server<L> {
        Server {
            listeners,
            broker,
            options: ServerOptions::default(),
            statistics: Arc::new(Statistics::default()),
            security_updates: None,
        }
    }

    /// Takes each new policy sent on `updates` (a reload of the password and ACL files, say on
    /// SIGHUP) while it runs: connections stay up, and what they do next follows the new policy.
    pub fn with_security_updates(mut self, updates: watch::Receiver<Arc<Security>>) -> Server<L> {
        self.security_updates = Some(updates);
        self
    }

    /// Replaces the server's options.
    pub fn with_options(mut self, options: ServerOptions) -> Server<L> {
        self.options = options;
        self
    }

    /// The addresses the listeners are bound to, in the order given.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(Listener::local_addr).collect()
    }

    /// The server's counters, readable while it runs and after.
    pub fn statistics(&self) -> Arc<Statistics> {
        self.statistics.clone()
    }

    /// Serves until `shutdown` resolves, then shuts down as the module docs say and returns the
    /// counters. Every task it started has ended when it returns; dropping the future aborts them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Arc<Statistics> {
        let Server {
            listeners,
            broker,
            options,
            statistics,
            mut security_updates,
        } = self;
        let security = broker.security().clone();
        assert!(
            options.inbound_capacity > 0,
            "the inbound queue needs room for one packet"
        );
        let (accepted_sender, mut accepted) = mpsc::channel(ACCEPTED_CAPACITY);
        let mut acceptors = JoinSet::new();
        for listener in listeners {
            match listener.local_addr() {
                Ok(address) => tracing::info!(%address, "listening"),
                Err(error) => tracing::info!(%error, "listening (address unknown)"),
            }
            acceptors.spawn(accept_loop(listener, accepted_sender.clone()));
        }
        drop(accepted_sender);
        let (inbound_sender, mut inbound) = mpsc::channel(options.inbound_capacity);
        let read_pause_queued_min = broker.config().outgoing_packets_max
            + usize::from(broker.config().inflight_count_max)
            + OWN_ANSWERS_QUEUED_MAX;
        let mut task = BrokerTask {
            core: broker,
            connections: BTreeMap::new(),
            tasks: JoinSet::new(),
            connection_id_next: 1,
            held: BTreeMap::new(),
            taken_over: BTreeMap::new(),
            common: Arc::new(Common {
                inbound: inbound_sender,
                statistics: statistics.clone(),
                options,
                security: std::sync::RwLock::new(security),
                read_pause_queued_min,
            }),
            statistics: statistics.clone(),
            options,
        };
        let mut shutdown = std::pin::pin!(shutdown);
        let started = Instant::now();
        // The first `$SYS` figures at once, so a client that subscribes finds them retained.
        let mut next_sys = options.sys_interval.map(|_| started);
        loop {
            let deadline = [task.core.poll_timeout(), task.next_release(), next_sys]
                .into_iter()
                .flatten()
                .min();
            let wake_up = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(security) = next_security(&mut security_updates) => WakeUp::Security(security),
                () = sleep_until_optional(deadline) => WakeUp::Timer,
                Some((stream, peer, name)) = accepted.recv() => WakeUp::Accepted(stream, peer, name),
                Some((connection, message)) = inbound.recv() => WakeUp::Inbound(connection, message),
            };
            let now = Instant::now();
            let mut accepted_count = 0;
            match wake_up {
                WakeUp::Timer => {}
                WakeUp::Security(security) => {
                    tracing::info!("security policy reloaded");
                    *task
                        .common
                        .security
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = security.clone();
                    task.core.set_security(security);
                }
                WakeUp::Accepted(stream, peer, name) => {
                    task.open(now, stream, peer, name);
                    accepted_count += 1;
                }
                WakeUp::Inbound(connection, message) => task.handle_inbound(now, connection, message),
            }
            // A bounded share for everybody on every wake-up, so that none starves the others.
            for _ in 1..INBOUND_PER_WAKE_UP_MAX {
                match inbound.try_recv() {
                    Ok((connection, message)) => task.handle_inbound(now, connection, message),
                    Err(_) => break,
                }
            }
            if accepted_count == 0 {
                if let Ok((stream, peer, name)) = accepted.try_recv() {
                    task.open(now, stream, peer, name);
                }
            }
            task.release_overdue(now);
            if let (Some(at), Some(interval)) = (next_sys, options.sys_interval) {
                if at <= now {
                    task.core.publish_system_topics(
                        now,
                        &ServerFigures {
                            uptime: now.duration_since(started),
                            bytes_received: statistics.bytes_received.load(Ordering::Relaxed),
                            bytes_sent: statistics.bytes_sent.load(Ordering::Relaxed),
                        },
                    );
                    next_sys = Some(now + interval);
                }
            }
            if task.core.poll_timeout().is_some_and(|deadline| deadline <= now) {
                task.core.handle_timeout(now);
            }
            task.route_outputs(now);
            task.reap();
        }
        tracing::info!("shutting down");
        acceptors.shutdown().await;
        // Streams accepted but not yet opened are closed; connections waiting for room in the queue
        // give up at once.
        drop(accepted);
        drop(inbound);
        task.shut_down().await;
        tracing::info!(
            connections_accepted = statistics.connections_accepted.load(Ordering::Relaxed),
            packets_received = statistics.packets_received.load(Ordering::Relaxed),
            packets_sent = statistics.packets_sent.load(Ordering::Relaxed),
            publishes_dropped = statistics.publishes_dropped.load(Ordering::Relaxed),
            "stopped"
        );
        statistics
    }
}

/// Runs `broker` on `listeners` until `shutdown` resolves: [`Server::new`] then [`Server::run`].
pub async fn serve<L: Listener>(
    listeners: Vec<L>,
    broker: Broker,
    shutdown: impl Future<Output = ()>,
) -> Arc<Statistics> {
    Server::new(listeners, broker).run(shutdown).await
}

/// What woke the broker task up.
enum WakeUp<S> {
    Timer,
    Security(Arc<Security>),
    Accepted(S, SocketAddr, Option<String>),
    Inbound(ConnectionId, Inbound),
}

/// What a connection's task hands to the broker task.
#[derive(Debug)]
enum Inbound {
    Packet(Packet),
    /// A CONNECT whose password was checked on the blocking pool, and the verdict.
    CheckedConnect(Box<Connect>, bool),
    DecodeError(Box<DecodeError>),
    /// The stream ended or failed (or the server gave up on a decode error the core left open).
    Closed,
}

/// The state of the broker task.
struct BrokerTask {
    core: Broker,
    connections: BTreeMap<ConnectionId, ConnectionHandle>,
    /// Every connection's task.
    tasks: JoinSet<()>,
    connection_id_next: ConnectionId,
    /// Shared with every connection's task.
    common: Arc<Common>,
    statistics: Arc<Statistics>,
    options: ServerOptions,
    /// Connections whose CONNECT takes over a session still attached to another open connection:
    /// what they sent waits until the other connection has ended (its end, and whatever it sent
    /// before, has reached the core: a PUBACK sent just before the client reconnected counts), the
    /// core closed it, or [`TAKEOVER_WAIT`] passed. Connections are read in parallel, so without
    /// this the new CONNECT can overtake the old connection's last packets.
    held: BTreeMap<ConnectionId, Held>,
    /// The connection taken over → the connection waiting for it.
    taken_over: BTreeMap<ConnectionId, ConnectionId>,
}

/// What a connection sent while it waits for the connection it takes over.
struct Held {
    until: Instant,
    /// The client id of its CONNECT: a later CONNECT with the same id waits behind it.
    client_id: String,
    /// Waits behind another held connection of the same client id, not for a connection of its own.
    behind: bool,
    inbound: VecDeque<Inbound>,
}

/// How long a takeover CONNECT waits for the connection it takes over to end. A client that closed
/// the old connection before reconnecting (the usual case) is seen to have done so within
/// microseconds; this bounds the wait when the old connection is alive (another device with the
/// same client id), which is then taken over as the spec says.
const TAKEOVER_WAIT: Duration = Duration::from_millis(50);

/// Messages a held connection may send before it is released anyway (each is small; a client
/// rarely pipelines more than a few packets behind its CONNECT).
const HELD_COUNT_MAX: usize = 256;

impl BrokerTask {
    /// Gives `stream` the next connection id, starts its task, and tells the core.
    fn open<S>(&mut self, now: Instant, stream: S, peer: SocketAddr, certificate_name: Option<String>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = self.connection_id_next;
        self.connection_id_next += 1;
        Statistics::add(&self.statistics.connections_accepted, 1);
        Statistics::add(&self.statistics.connections_open, 1);
        let shared = Arc::new(Shared::default());
        let context = DecodeContext::server().with_maximum_packet_size(self.core.config().maximum_packet_size);
        self.tasks.spawn(ConnectionTask {
            connection,
            stream,
            context,
            shared: shared.clone(),
            common: self.common.clone(),
            read_buffer: BytesMut::new(),
            read_chunk: READ_CHUNK_BYTE_COUNT_MIN as u32,
            reading: Reading::Open,
            forwarding: None,
            write_buffer: BytesMut::new(),
            write_count: 0,
            encoded_count: 0,
            writing_done: false,
            close: None,
            read_deadline: None,
        });
        self.connections.insert(connection, ConnectionHandle { shared });
        tracing::debug!(connection, %peer, "connection opened");
        self.core.handle_connection_opened_as(now, connection, certificate_name);
    }

    /// Routes what a connection sent: held while it waits for a connection it takes over, whose end
    /// releases it; a takeover CONNECT starts the wait; everything else goes to the core.
    fn handle_inbound(&mut self, now: Instant, connection: ConnectionId, inbound: Inbound) {
        if let Some(held) = self.held.get_mut(&connection) {
            held.inbound.push_back(inbound);
            if held.inbound.len() >= HELD_COUNT_MAX {
                self.release(now, connection);
            }
            return;
        }
        let ends_wait = matches!(inbound, Inbound::Closed);
        let connect = match &inbound {
            Inbound::Packet(Packet::Connect(connect)) | Inbound::CheckedConnect(connect, _) => Some(connect),
            _ => None,
        };
        if let Some(connect) = connect {
            let client_id = connect.client_id.clone();
            if !client_id.is_empty() && self.connections.contains_key(&connection) {
                // Sessions are taken over in the order their CONNECTs arrived.
                let behind = self.held.values().any(|held| held.client_id == client_id);
                let taken_over = self
                    .core
                    .connection_of(&client_id)
                    .filter(|other| *other != connection && self.connections.contains_key(other));
                if behind || taken_over.is_some() {
                    if let (false, Some(other)) = (behind, taken_over) {
                        self.taken_over.insert(other, connection);
                    }
                    self.held.insert(
                        connection,
                        Held {
                            until: now + if behind { 2 * TAKEOVER_WAIT } else { TAKEOVER_WAIT },
                            client_id,
                            behind,
                            inbound: VecDeque::from([inbound]),
                        },
                    );
                    return;
                }
            }
        }
        self.dispatch(now, connection, inbound);
        if ends_wait {
            if let Some(waiting) = self.taken_over.remove(&connection) {
                self.release(now, waiting);
            }
        }
    }

    /// Hands what `connection` sent while held to the core, in order; then the next CONNECT of the
    /// same client id held behind it goes through the takeover check (of this connection, now).
    fn release(&mut self, now: Instant, connection: ConnectionId) {
        let Some(held) = self.held.remove(&connection) else {
            return;
        };
        self.taken_over.retain(|_, waiting| *waiting != connection);
        for inbound in held.inbound {
            self.dispatch(now, connection, inbound);
        }
        let next = self
            .held
            .iter()
            .filter(|(_, other)| other.behind && other.client_id == held.client_id)
            .map(|(next, _)| *next)
            .min();
        if let Some(next) = next.and_then(|next| self.held.remove(&next).map(|held| (next, held))) {
            let (next, next_held) = next;
            for inbound in next_held.inbound {
                self.handle_inbound(now, next, inbound);
            }
        }
    }

    /// Releases the held connections that waited [`TAKEOVER_WAIT`].
    fn release_overdue(&mut self, now: Instant) {
        let overdue: Vec<ConnectionId> = self
            .held
            .iter()
            .filter(|(_, held)| held.until <= now)
            .map(|(connection, _)| *connection)
            .collect();
        for connection in overdue {
            self.release(now, connection);
        }
    }

    /// The earliest instant a held connection must be released.
    fn next_release(&self) -> Option<Instant> {
        self.held.values().map(|held| held.until).min()
    }

    fn dispatch(&mut self, now: Instant, connection: ConnectionId, inbound: Inbound) {
        // The core ignores a connection once it asked to close it; so do we.
        if !self.connections.contains_key(&connection) {
            return;
        }
        match inbound {
            Inbound::Packet(packet) => {
                Statistics::add(&self.statistics.packets_received, 1);
                self.core.handle_packet(now, connection, packet);
            }
            Inbound::CheckedConnect(connect, password_ok) => {
                Statistics::add(&self.statistics.packets_received, 1);
                self.core.handle_checked_connect(now, connection, *connect, password_ok);
            }
            Inbound::DecodeError(error) => {
                Statistics::add(&self.statistics.decode_errors, 1);
                self.core.handle_decode_error(now, connection, &error);
            }
            Inbound::Closed => {
                self.connections.remove(&connection);
                self.core.handle_connection_closed(now, connection);
            }
        }
    }

    /// Hands everything the core produced to the connections, applying the slow-consumer policy.
    fn route_outputs(&mut self, now: Instant) {
        let outgoing_packets_max = self.core.config().outgoing_packets_max;
        let required_packets_too_large = self.core.statistics().required_packets_too_large;
        self.statistics
            .required_packets_too_large
            .store(required_packets_too_large, Ordering::Relaxed);
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send {
                    connection,
                    version,
                    packet,
                } => {
                    let Some(handle) = self.connections.get(&connection) else {
                        continue;
                    };
                    let is_qos0_publish = matches!(&packet, Packet::Publish(publish) if publish.qos == QoS::AtMostOnce);
                    if is_qos0_publish && handle.shared.queued_count.load(Ordering::Relaxed) >= outgoing_packets_max {
                        Statistics::add(&self.statistics.publishes_dropped, 1);
                        continue;
                    }
                    handle.shared.queued_count.fetch_add(1, Ordering::Relaxed);
                    // Ignored when the task has been closed meanwhile.
                    handle.shared.push(Outgoing { version, packet });
                }
                Output::Close { connection } => {
                    if self.connections.remove(&connection).is_some() {
                        tracing::debug!(connection, "closing the connection");
                    }
                    // A closed connection hands nothing more over: whoever waited for it goes on.
                    if let Some(waiting) = self.taken_over.remove(&connection) {
                        self.release(now, waiting);
                    }
                }
            }
        }
    }

    /// Collects the connection tasks that have ended (the join set keeps them until then).
    fn reap(&mut self) {
        while let Some(result) = self.tasks.try_join_next() {
            if let Err(error) = result {
                if error.is_panic() {
                    tracing::error!(%error, "a connection task panicked");
                }
            }
        }
    }

    /// Tells the core, closes every connection, gives the connections the shutdown timeout to flush,
    /// then aborts what is left.
    async fn shut_down(mut self) {
        let now = Instant::now();
        self.core.handle_shutdown(now);
        self.route_outputs(now);
        // Those the core left open are closed all the same.
        self.connections.clear();
        let deadline = now + self.options.shutdown_timeout;
        // Bounded: by the deadline, and each pass takes one task off the set.
        loop {
            match timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_elapsed) => {
                    tracing::warn!(
                        task_count = self.tasks.len(),
                        "connection tasks did not finish within the shutdown timeout: aborting them"
                    );
                    break;
                }
            }
        }
        self.tasks.shutdown().await;
    }
}

/// An accepted stream, its peer, and its certificate's name.
type Accepted<S> = (S, SocketAddr, Option<String>);

/// Accepts connections on `listener` and hands them to the broker task until it stops taking them
/// (or the task is aborted).
async fn accept_loop<L: Listener>(mut listener: L, accepted: mpsc::Sender<Accepted<L::Stream>>) {
    loop {
        match listener.accept_named().await {
            Ok(connection) => {
                if accepted.send(connection).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // Typically out of file descriptors: wait for one to be freed rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// One packet for a connection's task, in the version to encode it in.
struct Outgoing {
    version: ProtocolVersion,
    packet: Packet,
}

/// What the broker task and one connection's task share: the packets to write, the close, and
/// the task's waker. A mutex-guarded `VecDeque` rather than a channel, which would allocate a block
/// of slots up front: an idle connection's queue holds no memory here (it is given back whenever
/// it drains), and a broker mostly holds idle connections. Its length is bounded by the
/// slow-consumer guard (`queued_count`) and the MQTT windows, as the module documentation says.
#[derive(Default)]
struct Shared {
    state: std::sync::Mutex<SharedState>,
    /// Packets queued and not yet written: the slow-consumer guard.
    queued_count: AtomicUsize,
}

#[derive(Default)]
struct SharedState {
    packets: VecDeque<Outgoing>,
    /// Set when the broker task closed the connection: the task writes what is queued, then ends.
    closed: bool,
    /// The connection's task, to wake when a packet is queued or the connection closed.
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        // No code panics while holding it; a poisoned lock still holds a usable queue.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, outgoing: Outgoing) {
        let waker = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.packets.push_back(outgoing);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn close(&self) {
        let waker = {
            let mut state = self.lock();
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The broker task's end of one connection. Dropping it closes the connection: the connection's
/// task writes what is queued (bounded by the close timeout), shuts the stream down, and lingers.
struct ConnectionHandle {
    shared: Arc<Shared>,
}

impl Drop for ConnectionHandle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Reads at most this many times per wake-up before yielding, so that one busy connection cannot
/// hold a worker thread (tokio's budget also applies to the socket).
const READS_PER_POLL_MAX: usize = 16;

/// Answers to a client's own packets (acknowledgements, PINGRESP) that may wait unwritten beyond
/// what a subscriber's queue can hold before the client is no longer read (see the module docs).
pub const OWN_ANSWERS_QUEUED_MAX: usize = 1024;

/// Writes at most this many batches per wake-up before yielding.
const WRITES_PER_POLL_MAX: usize = 16;

/// A message for the broker task that waits: for room in the inbound queue, or for a password check
/// first. Boxed: it exists only while something waits. `None` when the broker task is gone.
type Forwarding = Pin<Box<dyn Future<Output = Option<(mpsc::OwnedPermit<(ConnectionId, Inbound)>, Inbound)>> + Send>>;

/// One connection, read and written by one task: a hand-written future, so that an idle connection
/// costs only this struct, its socket and its share of the core (no buffer, no timer, no second
/// task while idle; measured with the broker load benchmark). Reads are decoded and handed to the
/// broker task over the bounded inbound queue (a full queue holds the client back through TCP);
/// writes are what the broker task queued, encoded into one buffer of up to
/// [`WRITE_BATCH_BYTE_COUNT_MAX`] bytes per write.
struct ConnectionTask<S> {
    connection: ConnectionId,
    stream: S,
    context: DecodeContext,
    shared: Arc<Shared>,
    /// What every connection shares: the inbound queue, the counters, the deadlines.
    common: Arc<Common>,
    /// Empty, with no allocation, whenever the connection is idle.
    read_buffer: BytesMut,
    /// The room reserved before a read: it starts small, doubles while reads fill it.
    read_chunk: u32,
    /// What happened to the reading side.
    reading: Reading,
    /// A message for the broker task waiting for room in the inbound queue or for its password
    /// check (boxed: the struct stays small for the usual connection, which never waits).
    forwarding: Option<Box<Forwarding>>,
    /// Encoded packets not yet written; empty, with no allocation, when the queue is drained.
    write_buffer: BytesMut,
    /// The packets and the valid packets in `write_buffer`, for the counters once written.
    write_count: u32,
    encoded_count: u32,
    /// The write side is finished: shut down after the close, or failed.
    writing_done: bool,
    /// The broker task closed the connection; from then on nothing read is handed to it.
    close: Option<Box<Closing>>,
    /// While reading, with a packet begun in `read_buffer`: when it must be whole
    /// ([`ServerOptions::packet_timeout`]). After a decode error: when the server stops waiting for
    /// the core to close the connection. (One field for both keeps the task small.)
    read_deadline: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Open,
    /// A packet failed decoding: nothing after it is read.
    Stopped,
    /// The stream ended or failed: the broker task has been told (or is being told).
    Ended,
}

/// What every connection's task shares.
struct Common {
    inbound: mpsc::Sender<(ConnectionId, Inbound)>,
    statistics: Arc<Statistics>,
    options: ServerOptions,
    /// The policy in force, for the password checks the connections' tasks run; the broker task
    /// replaces it on a reload.
    security: std::sync::RwLock<Arc<Security>>,
    /// A connection with this many packets unwritten is not read until they drain.
    read_pause_queued_min: usize,
}

impl Common {
    fn security(&self) -> Arc<Security> {
        self.security
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The close: the write side has until `abandon` to flush; the read side discards what still
/// arrives until `linger` (a lingering close: no reset that could destroy the last packets).
struct Closing {
    abandon: Pin<Box<Sleep>>,
    linger: Pin<Box<Sleep>>,
    discarded_byte_count: usize,
    lingering_done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnectionTask<S> {
    /// Queues `inbound` for the broker task: at once when the queue has room, else after a wait
    /// for room (during which nothing more is read). `false` when the broker task is gone.
    fn forward(&mut self, inbound: Inbound) -> bool {
        match self.common.inbound.try_send((self.connection, inbound)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full((_, inbound))) => {
                let sender = self.common.inbound.clone();
                self.forwarding = Some(Box::new(Box::pin(async move {
                    sender.reserve_owned().await.ok().map(|permit| (permit, inbound))
                })));
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// A CONNECT whose password needs hashing to check: the hash runs on the blocking pool, and
    /// the CONNECT goes to the broker task with the verdict (nothing read after it goes first).
    /// Hands the CONNECT back when there is nothing to check.
    fn check_password(&mut self, connect: Box<Connect>) -> Option<Box<Connect>> {
        let security = self.common.security();
        let Some((hash, password)) = security.password_to_check(&connect) else {
            return Some(connect);
        };
        let (hash, password) = (hash.clone(), Bytes::copy_from_slice(password));
        let sender = self.common.inbound.clone();
        self.forwarding = Some(Box::new(Box::pin(async move {
            let verdict = tokio::task::spawn_blocking(move || hash.verify(&password)).await;
            // A check that panicked or was cancelled (shutdown) is a refusal.
            let inbound = Inbound::CheckedConnect(connect, verdict.unwrap_or(false));
            sender.reserve_owned().await.ok().map(|permit| (permit, inbound))
        })));
        None
    }

    /// Finishes a forward waiting for room. Ready when nothing waits any more.
    fn poll_forwarding(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(forwarding) = &mut self.forwarding else {
            return Poll::Ready(());
        };
        let ready = ready!(forwarding.as_mut().as_mut().poll(cx));
        self.forwarding = None;
        match ready {
            Some((permit, inbound)) => {
                permit.send((self.connection, inbound));
            }
            // The broker task is gone (shutting down): nothing more to hand over.
            None => self.reading = Reading::Ended,
        }
        Poll::Ready(())
    }

    /// Decodes what is buffered and hands it over, until the buffer needs more bytes or a forward
    /// waits for room.
    fn decode_buffered(&mut self) {
        let mut decoded_any = false;
        // Bounded: each packet decoded takes at least two bytes off the buffer.
        while self.reading == Reading::Open && self.forwarding.is_none() {
            match decode(&mut self.read_buffer, &self.context) {
                Ok(None) => {
                    self.arm_packet_deadline(decoded_any);
                    return;
                }
                Ok(Some(mut packet)) => {
                    decoded_any = true;
                    if let Packet::Connect(connect) = packet {
                        if self.context.version.is_none() {
                            self.context = self.context.with_version(connect.protocol);
                        }
                        match self.check_password(connect) {
                            Some(connect) => packet = Packet::Connect(connect),
                            None => continue,
                        }
                    }
                    if !self.forward(Inbound::Packet(packet)) {
                        self.reading = Reading::Ended;
                    }
                }
                Err(error) => {
                    tracing::debug!(connection = self.connection, %error, "decode error");
                    self.reading = Reading::Stopped;
                    self.read_buffer = BytesMut::new();
                    self.read_deadline = Some(Box::pin(sleep(self.common.options.decode_error_close_timeout)));
                    if !self.forward(Inbound::DecodeError(Box::new(error))) {
                        self.reading = Reading::Ended;
                    }
                }
            }
        }
        if self.reading == Reading::Open {
            // Held back by the broker task: the client is not the one who is slow.
            self.read_deadline = None;
        }
    }

    /// The buffer waits for more bytes: with a packet begun, its deadline runs (restarted when a
    /// packet just completed); with nothing buffered, there is none.
    fn arm_packet_deadline(&mut self, restart: bool) {
        if self.read_buffer.is_empty() {
            self.read_deadline = None;
            return;
        }
        let timeout = self.common.options.packet_timeout;
        match &mut self.read_deadline {
            Some(deadline) if restart => deadline.as_mut().reset(Instant::now() + timeout),
            Some(_) => {}
            None => self.read_deadline = Some(Box::pin(sleep(timeout))),
        }
    }

    /// The stream ended or failed: the broker task is told, once.
    fn lost(&mut self, reason: &str) {
        if self.reading != Reading::Ended {
            tracing::debug!(connection = self.connection, reason, "connection lost");
            self.reading = Reading::Ended;
            self.read_buffer = BytesMut::new();
            if self.close.is_none() {
                self.forward(Inbound::Closed);
            }
        }
    }

    /// Reads and decodes while the client sends and the broker task takes.
    fn poll_read_side(&mut self, cx: &mut Context<'_>) {
        for _ in 0..READS_PER_POLL_MAX {
            if self.poll_forwarding(cx).is_pending() {
                return;
            }
            self.decode_buffered();
            if self.reading != Reading::Open {
                return;
            }
            if self.forwarding.is_some() {
                // Waits for room (the next pass registers the wake-up).
                continue;
            }
            if self.shared.queued_count.load(Ordering::Relaxed) >= self.common.read_pause_queued_min {
                // The client does not read what it is sent: it is not read either until that
                // drains. The write side has packets to write, so it wakes this task; the packet
                // deadline waits meanwhile (the client is held back, not slow).
                self.read_deadline = None;
                return;
            }
            let chunk = self.read_chunk as usize;
            if self.read_buffer.capacity() - self.read_buffer.len() < chunk / 2 {
                self.read_buffer.reserve(chunk);
            }
            let free = self.read_buffer.capacity() - self.read_buffer.len();
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read_buffer) {
                Poll::Pending => {
                    if self.read_buffer.is_empty() {
                        // Idle: give the buffer back.
                        self.read_buffer = BytesMut::new();
                        self.read_chunk = READ_CHUNK_BYTE_COUNT_MIN as u32;
                    }
                    return;
                }
                Poll::Ready(Ok(0)) => self.lost("closed by the peer"),
                Poll::Ready(Ok(count)) => {
                    Statistics::add(&self.common.statistics.bytes_received, count as u64);
                    // A read that filled all the room suggests more is waiting: read more at once.
                    if count == free {
                        self.read_chunk = (self.read_chunk * 2).min(READ_CHUNK_BYTE_COUNT as u32);
                    }
                }
                Poll::Ready(Err(error)) => self.lost(&format!("reading failed: {error}")),
            }
        }
        // More may be waiting: come back after the others had their turn.
        cx.waker().wake_by_ref();
    }

    /// Encodes queued packets into the write buffer, up to [`WRITE_BATCH_BYTE_COUNT_MAX`].
    /// `false` when nothing was queued.
    fn fill_write_buffer(&mut self) -> bool {
        let mut state = self.shared.lock();
        if state.packets.is_empty() {
            return false;
        }
        while self.write_buffer.len() < WRITE_BATCH_BYTE_COUNT_MAX {
            let Some(outgoing) = state.packets.pop_front() else {
                break;
            };
            self.write_count += 1;
            match encode(&outgoing.packet, outgoing.version, &mut self.write_buffer) {
                Ok(()) => self.encoded_count += 1,
                Err(error) => {
                    // The core validates what it sends: this is a bug, not a peer's doing.
                    debug_assert!(false, "the core produced an invalid packet: {error}");
                    tracing::error!(connection = self.connection, %error, "dropping an invalid packet");
                }
            }
        }
        if state.packets.is_empty() && state.packets.capacity() > 0 {
            state.packets = VecDeque::new();
        }
        true
    }

    /// Writes what is queued; after the close, shuts the stream down once everything is written.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) {
        for _ in 0..WRITES_PER_POLL_MAX {
            if self.writing_done {
                return;
            }
            if self.write_buffer.is_empty() && !self.fill_write_buffer() {
                if self.close.is_some() {
                    // A TCP FIN: the peer sees the close after the last packet.
                    match Pin::new(&mut self.stream).poll_shutdown(cx) {
                        Poll::Pending => return,
                        Poll::Ready(_) => self.writing_done = true,
                    }
                }
                return;
            }
            while !self.write_buffer.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.write_buffer) {
                    Poll::Pending => return,
                    Poll::Ready(Ok(0)) => return self.write_failed("the connection accepts no more bytes".into()),
                    Poll::Ready(Ok(count)) => {
                        Statistics::add(&self.common.statistics.bytes_sent, count as u64);
                        self.write_buffer.advance(count);
                    }
                    Poll::Ready(Err(error)) => return self.write_failed(format!("writing failed: {error}")),
                }
            }
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Pending => return,
                Poll::Ready(Err(error)) => return self.write_failed(format!("flushing failed: {error}")),
                Poll::Ready(Ok(())) => {}
            }
            self.shared
                .queued_count
                .fetch_sub(self.write_count as usize, Ordering::Relaxed);
            Statistics::add(&self.common.statistics.packets_sent, u64::from(self.encoded_count));
            self.write_count = 0;
            self.encoded_count = 0;
            // Written: give the buffer back (the next batch allocates what it needs; keeping it
            // measured no faster, and an idle connection then holds none).
            self.write_buffer = BytesMut::new();
        }
        cx.waker().wake_by_ref();
    }

    fn write_failed(&mut self, reason: String) {
        tracing::debug!(connection = self.connection, reason, "writing failed");
        self.writing_done = true;
        self.write_buffer = BytesMut::new();
        self.lost(&reason);
    }

    /// After the close: reads and discards until the peer closes, the linger time is over, or
    /// [`LINGER_BYTE_COUNT_MAX`] bytes were discarded.
    fn poll_linger(&mut self, cx: &mut Context<'_>) {
        let Some(closing) = &mut self.close else { return };
        if closing.lingering_done {
            return;
        }
        if self.reading == Reading::Ended || closing.linger.as_mut().poll(cx).is_ready() {
            closing.lingering_done = true;
            return;
        }
        let mut chunk = [0u8; 4096];
        // Bounded by the byte count, and by the socket's own budget.
        while closing.discarded_byte_count < LINGER_BYTE_COUNT_MAX {
            let mut buffer = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buffer) {
                Poll::Pending => return,
                Poll::Ready(Ok(())) if !buffer.filled().is_empty() => {
                    closing.discarded_byte_count += buffer.filled().len();
                }
                Poll::Ready(_) => break,
            }
        }
        closing.lingering_done = true;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for ConnectionTask<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let newly_closed = {
            let mut state = this.shared.lock();
            if !state.waker.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
                state.waker = Some(cx.waker().clone());
            }
            state.closed && this.close.is_none()
        };
        if newly_closed {
            // MQTT-3.1.4-6: nothing after a refused CONNECT is processed; nothing after any close.
            this.forwarding = None;
            this.read_deadline = None;
            this.read_buffer = BytesMut::new();
            this.close = Some(Box::new(Closing {
                abandon: Box::pin(sleep(this.common.options.close_timeout)),
                linger: Box::pin(sleep(this.common.options.linger)),
                discarded_byte_count: 0,
                lingering_done: false,
            }));
        }
        this.poll_write_side(cx);
        match &mut this.close {
            None => {
                this.poll_read_side(cx);
                if let Some(deadline) = &mut this.read_deadline {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.read_deadline = None;
                        if this.reading == Reading::Open {
                            tracing::debug!(
                                connection = this.connection,
                                "a packet was not whole within the packet timeout: closing"
                            );
                            this.read_buffer = BytesMut::new();
                        } else {
                            tracing::warn!(
                                connection = this.connection,
                                "the core did not close the connection after a decode error"
                            );
                        }
                        this.reading = Reading::Ended;
                        this.forward(Inbound::Closed);
                        // The forward may wait for room.
                        let _ = this.poll_forwarding(cx);
                    }
                }
                Poll::Pending
            }
            Some(closing) => {
                if !this.writing_done && closing.abandon.as_mut().poll(cx).is_ready() {
                    tracing::debug!(
                        connection = this.connection,
                        "the close timeout passed: dropping the connection"
                    );
                    this.writing_done = true;
                }
                this.poll_linger(cx);
                let lingering_done = this.close.as_ref().is_some_and(|closing| closing.lingering_done);
                if this.writing_done && lingering_done {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S> Drop for ConnectionTask<S> {
    fn drop(&mut self) {
        // What was queued and never written no longer counts against the guard (the broker task
        // has dropped the connection by now, or is shutting down).
        self.common.statistics.connections_open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(connection = self.connection, "connection closed");
    }
}

/// The next policy sent, if updates are taken; never, when not (or the sender is gone).
async fn next_security(updates: &mut Option<watch::Receiver<Arc<Security>>>) -> Option<Arc<Security>> {
    if let Some(receiver) = updates {
        if receiver.changed().await.is_ok() {
            return Some(receiver.borrow_and_update().clone());
        }
        *updates = None;
    }
    std::future::pending().await
}

async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection pays for its task's future, and tokio lays tasks out in 128-byte
    /// cache-line blocks: a field added inline can cost a whole block per connection (it did:
    /// 1.94 → 2.11 KiB per idle connection, from a name kept in the stream and a wider
    /// `forwarding`). Whatever grows, grows behind a box, or this says so.
    #[test]
    fn a_connections_task_stays_within_its_size() {
        let size = std::mem::size_of::<ConnectionTask<mqtt_client::transport::BoxedStream>>();
        assert!(size <= 152, "ConnectionTask is {size} bytes");
    }
}
