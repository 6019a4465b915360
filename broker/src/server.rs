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
//!   the connections' writers. It is the only place besides the readers' and writers' own deadlines
//!   that reads the clock (`tokio::time::Instant`, which turmoil drives).
//! - **Per connection, a reader and a writer task** do the codec work off the broker task. The
//!   reader decodes with its own [`DecodeContext`] (server side, the configured maximum packet
//!   size, the version from the first CONNECT) and sends packets, a decode error, or the end of
//!   the stream to the broker task over one bounded queue shared by all readers: a fast client is
//!   held back through TCP when the broker falls behind. The writer takes a packet from its queue,
//!   then whatever else is queued up to [`WRITE_BATCH_BYTE_COUNT_MAX`], encodes them into one
//!   buffer and writes it in one `write_all`.
//!
//! Connection ids come from a counter and are never reused.
//!
//! # Slow consumers: what is bounded, what is dropped
//!
//! The broker task never waits for a connection: each writer's queue is unbounded, and guarded by
//! a per-connection count of packets queued but not yet written. When that count has reached
//! [`Config::outgoing_packets_max`](crate::Config::outgoing_packets_max), QoS 0 PUBLISH packets
//! for the connection are dropped (and counted in [`Statistics::publishes_dropped`]); every other
//! packet still goes: acknowledgements, QoS 1 and 2 PUBLISH packets (bounded by the MQTT flow
//! windows the core keeps), DISCONNECT. So a client that stops reading costs at most its window
//! and `outgoing_packets_max` QoS 0 messages, and cannot slow anybody else down.
//!
//! # Closing
//!
//! When the core asks to close a connection ([`Output::Close`]), or the reader reports its end,
//! the broker task drops its handle on the connection. The writer then writes what is still
//! queued (bounded by [`ServerOptions::close_timeout`]) and shuts the stream down. The reader stops
//! handing anything to the core at once (MQTT-3.1.4-6: nothing after a refused CONNECT is
//! processed) but keeps reading and discarding for at most [`ServerOptions::linger`], so that bytes
//! the client sent meanwhile do not turn the close into a reset that could destroy the last packets
//! written (the CONNACK or DISCONNECT that says why). After a decode error the reader stops
//! reading and waits for the core to close the connection; if the core has not done so within
//! [`ServerOptions::decode_error_close_timeout`], the server closes it itself and tells the core.
//!
//! On shutdown the accept tasks stop (the listeners close), the core is told
//! ([`Broker::handle_shutdown`]: 5.0 clients get DISCONNECT 0x8B Server shutting down), every
//! connection is closed as above, and the writers get [`ServerOptions::shutdown_timeout`] to
//! flush before the remaining tasks are aborted. No task outlives [`Server::run`].

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_protocol::{decode, encode, DecodeContext, DecodeError, Packet, ProtocolVersion, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

use crate::core::{Broker, ConnectionId, Output};

/// A writer encodes queued packets into one buffer until it holds this many bytes (or the queue is
/// empty), then writes it at once.
pub const WRITE_BATCH_BYTE_COUNT_MAX: usize = 64 * 1024;

/// How many queued packets the broker task takes per wake-up, so that the timer, new connections
/// and the output routing are never starved by a busy queue.
const INBOUND_PER_WAKE_UP_MAX: usize = 256;

/// Accepted streams waiting for the broker task.
const ACCEPTED_CAPACITY: usize = 64;

/// The pause after a failed accept, so that running out of file descriptors is not a busy loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The room a reader reserves before a read: it starts small, so that an idle connection holds
/// half a KiB (10,000 idle connections are the common case of a broker), doubles while reads
/// fill it (a busy connection reads in large chunks), and falls back once the buffer drains.
const READ_CHUNK_BYTE_COUNT_MIN: usize = 512;
const READ_CHUNK_BYTE_COUNT: usize = 8 * 1024;

/// A drained read buffer larger than this (after a burst or one large packet) is given back.
const READ_BUFFER_KEPT_BYTE_COUNT_MAX: usize = 2 * READ_CHUNK_BYTE_COUNT;

/// A writer's buffer larger than this after a batch (one large message) is given back.
const WRITE_BUFFER_KEPT_BYTE_COUNT_MAX: usize = 2 * WRITE_BATCH_BYTE_COUNT_MAX;

/// A lingering reader discards at most this much: enough for what a client pipelined before it
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
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    /// Accepts and sets TCP_NODELAY: the writer already coalesces, so Nagle would only add delay.
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

/// The server's own deadlines and queue sizes (the broker's limits are in [`crate::Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a connection being closed may take to write what is queued for it; then it is
    /// dropped (a client that stops reading cannot keep it open).
    pub close_timeout: Duration,
    /// After the broker closes a connection, how long its reader keeps reading and discarding what
    /// the client still sends (a lingering close, see the module docs).
    pub linger: Duration,
    /// How long a connection whose packet failed decoding waits for the core to close it before
    /// the server closes it itself.
    pub decode_error_close_timeout: Duration,
    /// On shutdown, how long the writers get to flush (the 5.0 DISCONNECT 0x8B) before every
    /// remaining connection task is aborted.
    pub shutdown_timeout: Duration,
    /// Capacity of the queue from all readers to the broker task.
    pub inbound_capacity: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            close_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(1),
            decode_error_close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(2),
            inbound_capacity: 1024,
        }
    }
}

/// Counters of a running server, shared with whoever holds [`Server::statistics`].
#[derive(Debug, Default)]
pub struct Statistics {
    /// Connections accepted since the start.
    pub connections_accepted: AtomicU64,
    /// Connections whose tasks are still running (a closing connection counts until its writer
    /// has flushed and its reader has stopped).
    pub connections_open: AtomicU64,
    /// Packets decoded and handed to the core.
    pub packets_received: AtomicU64,
    /// Packets that failed strict decoding (each ends its connection).
    pub decode_errors: AtomicU64,
    /// Packets written to connections.
    pub packets_sent: AtomicU64,
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
}

impl<L: Listener> Server<L> {
    /// A server for `broker` on `listeners` (bound already: tests bind port 0), default options.
    pub fn new(listeners: Vec<L>, broker: Broker) -> Server<L> {
        Server {
            listeners,
            broker,
            options: ServerOptions::default(),
            statistics: Arc::new(Statistics::default()),
        }
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
        } = self;
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
        let mut task = BrokerTask {
            core: broker,
            connections: BTreeMap::new(),
            tasks: JoinSet::new(),
            connection_id_next: 1,
            inbound: inbound_sender,
            statistics: statistics.clone(),
            options,
        };
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let deadline = task.core.poll_timeout();
            let wake_up = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = sleep_until_optional(deadline) => WakeUp::Timer,
                Some((stream, peer)) = accepted.recv() => WakeUp::Accepted(stream, peer),
                Some((connection, message)) = inbound.recv() => WakeUp::Inbound(connection, message),
            };
            let now = Instant::now();
            let mut accepted_count = 0;
            match wake_up {
                WakeUp::Timer => {}
                WakeUp::Accepted(stream, peer) => {
                    task.open(now, stream, peer);
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
                if let Ok((stream, peer)) = accepted.try_recv() {
                    task.open(now, stream, peer);
                }
            }
            if task.core.poll_timeout().is_some_and(|deadline| deadline <= now) {
                task.core.handle_timeout(now);
            }
            task.route_outputs();
            task.reap();
        }
        tracing::info!("shutting down");
        acceptors.shutdown().await;
        // Streams accepted but not yet opened are closed; readers waiting for room in the queue
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
    Accepted(S, SocketAddr),
    Inbound(ConnectionId, Inbound),
}

/// What a reader hands to the broker task.
#[derive(Debug)]
enum Inbound {
    Packet(Packet),
    DecodeError(Box<DecodeError>),
    /// The stream ended or failed (or the server gave up on a decode error the core left open).
    Closed,
}

/// One packet for a writer, in the version to encode it in.
struct Outgoing {
    version: ProtocolVersion,
    packet: Packet,
}

/// A connection's queue of packets to write: one producer (the broker task), one consumer (the
/// writer). A mutex-guarded `VecDeque` with a `Notify` rather than tokio's unbounded channel, which
/// allocates a block of slots when created: an idle connection's queue costs no memory here, and
/// a broker mostly holds idle connections. Its length is bounded by the slow-consumer guard
/// (`queued_count`) and the MQTT windows, as described in the module documentation.
#[derive(Default)]
struct OutgoingQueue {
    state: std::sync::Mutex<OutgoingState>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct OutgoingState {
    packets: std::collections::VecDeque<Outgoing>,
    /// Set when the broker task closed the connection: the writer drains, then ends.
    closed: bool,
}

/// A drained queue larger than this (after a burst) gives its memory back.
const OUTGOING_QUEUE_KEPT_COUNT_MAX: usize = 256;

impl OutgoingQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutgoingState> {
        // No code panics while holding it; a poisoned lock still holds a usable queue.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, outgoing: Outgoing) {
        let mut state = self.lock();
        if !state.closed {
            state.packets.push_back(outgoing);
            drop(state);
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    fn try_recv(&self) -> Option<Outgoing> {
        let mut state = self.lock();
        let next = state.packets.pop_front();
        if state.packets.is_empty() && state.packets.capacity() > OUTGOING_QUEUE_KEPT_COUNT_MAX {
            state.packets = std::collections::VecDeque::new();
        }
        next
    }

    /// The next packet; `None` once the queue is closed and drained. Cancel safe.
    async fn recv(&self) -> Option<Outgoing> {
        loop {
            // A notification stored before the wait (a push that raced it) wakes it at once.
            let notified = self.ready.notified();
            {
                let state = self.lock();
                if state.closed && state.packets.is_empty() {
                    return None;
                }
            }
            if let Some(next) = self.try_recv() {
                return Some(next);
            }
            notified.await;
        }
    }
}

/// The broker task's end of one connection. Dropping it closes the connection: the writer's queue
/// ends (it writes what is queued, then shuts the stream down) and `_keep_open` wakes the reader.
struct ConnectionHandle {
    outgoing: Arc<OutgoingQueue>,
    /// Packets queued for the writer and not yet written: the slow-consumer guard.
    queued_count: Arc<AtomicUsize>,
    /// Never sent on: dropping it is the signal.
    _keep_open: watch::Sender<()>,
}

impl Drop for ConnectionHandle {
    /// Dropping the handle closes the connection: the writer drains the queue, then ends.
    fn drop(&mut self) {
        self.outgoing.close();
    }
}

/// The state of the broker task.
struct BrokerTask {
    core: Broker,
    connections: BTreeMap<ConnectionId, ConnectionHandle>,
    /// Every connection's reader and writer task.
    tasks: JoinSet<()>,
    connection_id_next: ConnectionId,
    /// Cloned into every reader.
    inbound: mpsc::Sender<(ConnectionId, Inbound)>,
    statistics: Arc<Statistics>,
    options: ServerOptions,
}

impl BrokerTask {
    /// Gives `stream` the next connection id, starts its reader and writer, and tells the core.
    fn open<S>(&mut self, now: Instant, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = self.connection_id_next;
        self.connection_id_next += 1;
        Statistics::add(&self.statistics.connections_accepted, 1);
        Statistics::add(&self.statistics.connections_open, 1);
        let open = Arc::new(OpenConnection {
            connection,
            peer,
            statistics: self.statistics.clone(),
        });
        let (read_half, write_half) = tokio::io::split(stream);
        let outgoing = Arc::new(OutgoingQueue::default());
        let (keep_open_sender, keep_open) = watch::channel(());
        let (writer_alive, writer_ended) = oneshot::channel();
        let queued_count = Arc::new(AtomicUsize::new(0));
        let context = DecodeContext::server().with_maximum_packet_size(self.core.config().maximum_packet_size);
        self.tasks.spawn(
            Reader {
                connection,
                reader: read_half,
                context,
                inbound: self.inbound.clone(),
                keep_open: keep_open.clone(),
                writer_ended,
                options: self.options,
                _open: open.clone(),
            }
            .run(),
        );
        self.tasks.spawn(
            Writer {
                connection,
                writer: write_half,
                outgoing: outgoing.clone(),
                queued_count: queued_count.clone(),
                keep_open,
                statistics: self.statistics.clone(),
                close_timeout: self.options.close_timeout,
                _alive: writer_alive,
                _open: open,
            }
            .run(),
        );
        self.connections.insert(
            connection,
            ConnectionHandle {
                outgoing,
                queued_count,
                _keep_open: keep_open_sender,
            },
        );
        tracing::debug!(connection, %peer, "connection opened");
        self.core.handle_connection_opened(now, connection);
    }

    fn handle_inbound(&mut self, now: Instant, connection: ConnectionId, inbound: Inbound) {
        // The core ignores a connection once it asked to close it; so do we.
        if !self.connections.contains_key(&connection) {
            return;
        }
        match inbound {
            Inbound::Packet(packet) => {
                Statistics::add(&self.statistics.packets_received, 1);
                self.core.handle_packet(now, connection, packet);
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

    /// Hands everything the core produced to the writers, applying the slow-consumer policy.
    fn route_outputs(&mut self) {
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
                    if is_qos0_publish && handle.queued_count.load(Ordering::Relaxed) >= outgoing_packets_max {
                        Statistics::add(&self.statistics.publishes_dropped, 1);
                        continue;
                    }
                    handle.queued_count.fetch_add(1, Ordering::Relaxed);
                    // Fails only when the writer has ended after a write error: its reader reports
                    // the close.
                    handle.outgoing.push(Outgoing { version, packet });
                }
                Output::Close { connection } => {
                    if self.connections.remove(&connection).is_some() {
                        tracing::debug!(connection, "closing the connection");
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

    /// Tells the core, closes every connection, gives the writers the shutdown timeout to flush,
    /// then aborts what is left.
    async fn shut_down(mut self) {
        let now = Instant::now();
        self.core.handle_shutdown(now);
        self.route_outputs();
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

/// Accepts connections on `listener` and hands them to the broker task until it stops taking them
/// (or the task is aborted).
async fn accept_loop<L: Listener>(mut listener: L, accepted: mpsc::Sender<(L::Stream, SocketAddr)>) {
    loop {
        match listener.accept().await {
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

/// Held by a connection's reader and writer; when both have ended, the connection is closed.
struct OpenConnection {
    connection: ConnectionId,
    peer: SocketAddr,
    statistics: Arc<Statistics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.statistics.connections_open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(connection = self.connection, peer = %self.peer, "connection closed");
    }
}

/// Why a reader stopped handing packets to the broker task.
enum ReadEnd {
    /// The broker task dropped the connection's handle (or is gone).
    CloseRequested,
    /// The stream ended or failed; the broker task must be told.
    Lost(String),
}

/// Reads one connection, decodes, and hands the packets to the broker task.
struct Reader<S> {
    connection: ConnectionId,
    reader: ReadHalf<S>,
    context: DecodeContext,
    inbound: mpsc::Sender<(ConnectionId, Inbound)>,
    /// Ends (with an error) when the broker task drops the connection's handle.
    keep_open: watch::Receiver<()>,
    /// Ends when the writer has ended (after a write error, or a close).
    writer_ended: oneshot::Receiver<()>,
    options: ServerOptions,
    _open: Arc<OpenConnection>,
}

impl<S: AsyncRead> Reader<S> {
    async fn run(mut self) {
        let mut buffer = BytesMut::new();
        match self.read(&mut buffer).await {
            ReadEnd::CloseRequested => self.linger(&mut buffer).await,
            ReadEnd::Lost(reason) => {
                tracing::debug!(connection = self.connection, reason, "connection lost");
                let _ = self.forward(Inbound::Closed).await;
            }
        }
    }

    async fn read(&mut self, buffer: &mut BytesMut) -> ReadEnd {
        let mut chunk = READ_CHUNK_BYTE_COUNT_MIN;
        loop {
            if buffer.capacity() - buffer.len() < chunk / 2 {
                buffer.reserve(chunk);
            }
            let free = buffer.capacity() - buffer.len();
            let read = tokio::select! {
                biased;
                _ = self.keep_open.changed() => return ReadEnd::CloseRequested,
                _ = &mut self.writer_ended => return ReadEnd::Lost("writing to the connection failed".into()),
                read = self.reader.read_buf(buffer) => read,
            };
            match read {
                Ok(0) => return ReadEnd::Lost("closed by the peer".into()),
                // A read that filled all the room suggests more is waiting: read more at once.
                Ok(count) if count == free => chunk = (chunk * 2).min(READ_CHUNK_BYTE_COUNT),
                Ok(_) => {}
                Err(error) => return ReadEnd::Lost(format!("reading failed: {error}")),
            }
            // Bounded: every packet decoded takes at least two bytes off the buffer.
            loop {
                match decode(buffer, &self.context) {
                    Ok(None) => break,
                    Ok(Some(packet)) => {
                        if let Packet::Connect(connect) = &packet {
                            if self.context.version.is_none() {
                                self.context = self.context.with_version(connect.protocol);
                            }
                        }
                        if let Err(end) = self.forward(Inbound::Packet(packet)).await {
                            return end;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(connection = self.connection, %error, "decode error");
                        if let Err(end) = self.forward(Inbound::DecodeError(Box::new(error))).await {
                            return end;
                        }
                        return self.await_close_after_decode_error().await;
                    }
                }
            }
            if buffer.is_empty() {
                chunk = READ_CHUNK_BYTE_COUNT_MIN;
                if buffer.capacity() > READ_BUFFER_KEPT_BYTE_COUNT_MAX {
                    *buffer = BytesMut::new();
                }
            }
        }
    }

    /// Hands `inbound` to the broker task, waiting for room in the queue unless the connection is
    /// closed meanwhile.
    async fn forward(&mut self, inbound: Inbound) -> Result<(), ReadEnd> {
        tokio::select! {
            biased;
            _ = self.keep_open.changed() => Err(ReadEnd::CloseRequested),
            sent = self.inbound.send((self.connection, inbound)) => sent.map_err(|_| ReadEnd::CloseRequested),
        }
    }

    /// Nothing after a decode error is read, let alone processed: the core answers and closes.
    async fn await_close_after_decode_error(&mut self) -> ReadEnd {
        let deadline = Instant::now() + self.options.decode_error_close_timeout;
        tokio::select! {
            biased;
            _ = self.keep_open.changed() => ReadEnd::CloseRequested,
            _ = &mut self.writer_ended => ReadEnd::Lost("writing to the connection failed".into()),
            () = sleep_until(deadline) => {
                tracing::warn!(connection = self.connection, "the core did not close the connection after a decode error");
                ReadEnd::Lost("not closed after a decode error".into())
            }
        }
    }

    /// Reads and discards until the peer closes, the linger time is over, or
    /// [`LINGER_BYTE_COUNT_MAX`] bytes were discarded.
    async fn linger(&mut self, buffer: &mut BytesMut) {
        let deadline = Instant::now() + self.options.linger;
        let mut discarded_byte_count = 0;
        // Bounded by the deadline and the byte count.
        while discarded_byte_count < LINGER_BYTE_COUNT_MAX {
            buffer.clear();
            buffer.reserve(READ_CHUNK_BYTE_COUNT);
            match timeout_at(deadline, self.reader.read_buf(buffer)).await {
                Ok(Ok(count)) if count > 0 => discarded_byte_count += count,
                _ => return,
            }
        }
    }
}

/// Writes what the broker task queues for one connection, coalesced.
struct Writer<S> {
    connection: ConnectionId,
    writer: WriteHalf<S>,
    outgoing: Arc<OutgoingQueue>,
    queued_count: Arc<AtomicUsize>,
    /// Ends (with an error) when the broker task drops the connection's handle: the close timeout
    /// starts then.
    keep_open: watch::Receiver<()>,
    statistics: Arc<Statistics>,
    close_timeout: Duration,
    /// Dropped when the writer ends, which wakes the reader.
    _alive: oneshot::Sender<()>,
    _open: Arc<OpenConnection>,
}

impl<S: AsyncWrite> Writer<S> {
    async fn run(mut self) {
        let mut buffer = BytesMut::new();
        // Set once the broker task has closed the connection: what is queued must be written by then.
        let mut abandon_at = None;
        // Ends when the broker task drops the queue (a close) and everything queued was taken.
        while let Some(first) = self.outgoing.recv().await {
            let mut count = 1;
            let mut encoded_count = u64::from(self.encode(first, &mut buffer));
            while buffer.len() < WRITE_BATCH_BYTE_COUNT_MAX {
                match self.outgoing.try_recv() {
                    Some(next) => {
                        count += 1;
                        encoded_count += u64::from(self.encode(next, &mut buffer));
                    }
                    None => break,
                }
            }
            let written = tokio::select! {
                biased;
                written = write_and_flush(&mut self.writer, &buffer) => written,
                () = abandon(&mut self.keep_open, &mut abandon_at, self.close_timeout) => {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "the close timeout passed"))
                }
            };
            self.queued_count.fetch_sub(count, Ordering::Relaxed);
            if let Err(error) = written {
                tracing::debug!(connection = self.connection, %error, "writing failed");
                return;
            }
            Statistics::add(&self.statistics.packets_sent, encoded_count);
            buffer.clear();
            if buffer.capacity() > WRITE_BUFFER_KEPT_BYTE_COUNT_MAX {
                buffer = BytesMut::new();
            }
        }
        let deadline = abandon_at.unwrap_or_else(|| Instant::now() + self.close_timeout);
        // A TCP FIN: the peer sees the close after the last packet.
        let _ = timeout_at(deadline, self.writer.shutdown()).await;
    }

    /// Appends `outgoing` to `buffer`; `false` if the core produced a packet that cannot be encoded.
    fn encode(&self, outgoing: Outgoing, buffer: &mut BytesMut) -> bool {
        match encode(&outgoing.packet, outgoing.version, buffer) {
            Ok(()) => true,
            Err(error) => {
                // The core validates what it sends: this is a bug, not a peer's doing.
                debug_assert!(false, "the core produced an invalid packet: {error}");
                tracing::error!(connection = self.connection, %error, "dropping an invalid packet");
                false
            }
        }
    }
}

async fn write_and_flush<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Resolves `close_timeout` after the broker task closed the connection. Cancel safe: the instant
/// is kept in `abandon_at` once known, so a later call waits for the same instant.
async fn abandon(keep_open: &mut watch::Receiver<()>, abandon_at: &mut Option<Instant>, close_timeout: Duration) {
    let at = match *abandon_at {
        Some(at) => at,
        None => {
            let _ = keep_open.changed().await;
            let at = Instant::now() + close_timeout;
            *abandon_at = Some(at);
            at
        }
    };
    sleep_until(at).await;
}

async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
