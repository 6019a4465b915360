//! A loopback TCP proxy that injects faults between clients and a broker.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` and forwards each accepted connection over its
//! own new connection to the upstream address, with TCP_NODELAY on both sides. Faults are set at
//! any time through `&self` and apply at once to every current and future connection, in one
//! direction ([`Flow`]) or both:
//!
//! | fault | what the two ends see |
//! |---|---|
//! | [`partition`](FaultProxy::partition) | a dead network: bytes sent meanwhile are lost, and so are bytes still delayed by latency; a close is not passed on until [`repair`](FaultProxy::repair) |
//! | [`hold`](FaultProxy::hold) | a short outage TCP rides out: bytes are buffered and [`release`](FaultProxy::release) delivers them in order |
//! | [`reset`](FaultProxy::reset) | both sockets of every current connection are reset (RST); new connections are still accepted |
//! | [`set_latency`](FaultProxy::set_latency) | each chunk is delivered that long after it was read, in order |
//! | dead link ([`ProxyOptions::dead_link`]) | a partition kills the connections it touches, as under turmoil, where TCP never retransmits: a direction partitioned while a connection is open never delivers on that connection again, and once no direction is partitioned the connection is reset (RST, both sides), so it never resumes with a gap in its bytes; a connection accepted while any direction is partitioned is reset at once, without connecting upstream, so a connect during a partition fails. A one-way partition is a partition (the other direction flows until the reset); hold, release, reset and latency are unchanged |
//!
//! Each direction of a connection keeps one queue of chunks waiting for delivery, bounded by
//! [`QUEUE_BYTES_MAX`]. When the queue is full (a long hold, or latency under heavy traffic) the
//! proxy stops reading from the sender, so TCP's flow control pushes back on it: bytes are never
//! dropped for lack of room, only by a partition, so a held stream stays a valid MQTT stream.
//!
//! [`FaultProxy::start_recording`] also keeps every byte each side sent, per connection, so a test
//! can decode what a client really put on the wire. [`FaultProxy::start_with`] takes
//! [`ProxyOptions`], to switch on recording, the dead-link mode, or both.
//!
//! Without the dead-link mode a repaired partition lets a connection go on with the bytes sent
//! meanwhile missing, which an MQTT peer reads as garbage: fine for a test that sends nothing
//! during the partition, or that wants to see what a peer does with a broken stream. A scenario
//! that must behave as it does in the simulation runs with the dead-link mode on.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// The most bytes read from a socket at once.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;

/// The most bytes waiting for delivery per direction per connection (held or delayed). Beyond
/// it the proxy stops reading from the sender until there is room again.
pub const QUEUE_BYTES_MAX: usize = 1024 * 1024;

/// The most connections forwarded at once; further ones are closed on accept.
pub const CONNECTIONS_OPEN_MAX: usize = 4096;

/// How long connecting upstream may take before the downstream connection is closed.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes recorded per direction per connection; later bytes are not recorded.
pub const RECORDING_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The most connections recorded; later connections are forwarded but not recorded.
pub const RECORDED_CONNECTIONS_MAX: usize = 4096;

/// How long the accept loop pauses after a failed accept (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flow {
    /// From the client that connected to the proxy, to the upstream broker.
    ClientToBroker,
    /// From the upstream broker back to the client.
    BrokerToClient,
}

impl Flow {
    /// Both directions, client to broker first.
    pub const ALL: [Flow; 2] = [Flow::ClientToBroker, Flow::BrokerToClient];

    fn index(self) -> usize {
        match self {
            Flow::ClientToBroker => 0,
            Flow::BrokerToClient => 1,
        }
    }
}

/// How a [`FaultProxy`] is started; the default is what [`FaultProxy::start`] does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Keep every byte each side sends (see [`FaultProxy::recorded`]).
    pub recording: bool,
    /// A partition kills the connections it touches, as in the simulation: see the dead-link row
    /// of the [module docs](self)' fault table.
    pub dead_link: bool,
}

/// What a direction does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowMode {
    /// Deliver them (after the latency, if any).
    #[default]
    Forward,
    /// Drop them, and drop those still waiting for delivery when they fall due; a close by the
    /// sender is kept and passed on once forwarding resumes.
    Partition,
    /// Keep them, in order, until forwarding resumes.
    Hold,
}

#[derive(Debug, Clone, Copy, Default)]
struct FlowState {
    mode: FlowMode,
    latency: Duration,
}

/// The fault settings every forwarding task watches.
#[derive(Debug, Clone, Default)]
struct ProxyState {
    flows: [FlowState; 2],
    /// Raised by [`FaultProxy::reset`]; a connection accepted before the raise closes.
    reset_generation: u64,
    /// Per direction, raised each time it enters [`FlowMode::Partition`]. A connection that sees
    /// one differ from its value at accept has lost bytes that way, or may have, even in a
    /// partition set and repaired too quickly for its task to see it (a watch channel keeps only
    /// the latest state).
    partition_generations: [u64; 2],
}

impl ProxyState {
    fn partitioned(&self) -> bool {
        self.flows.iter().any(|flow| flow.mode == FlowMode::Partition)
    }

    fn set_mode(&mut self, flow: Flow, mode: FlowMode) {
        let flow_state = &mut self.flows[flow.index()];
        if mode == FlowMode::Partition && flow_state.mode != FlowMode::Partition {
            self.partition_generations[flow.index()] += 1;
        }
        flow_state.mode = mode;
    }
}

/// Counters and recordings shared by the proxy and its tasks.
#[derive(Debug, Default)]
struct Shared {
    connections_accepted: AtomicUsize,
    connections_open: AtomicUsize,
    bytes_forwarded: [AtomicU64; 2],
    bytes_dropped: [AtomicU64; 2],
    /// `Some` when recording; one entry per accepted connection, by index.
    recordings: Option<Mutex<Vec<[Vec<u8>; 2]>>>,
}

impl Shared {
    fn recordings(&self) -> Option<MutexGuard<'_, Vec<[Vec<u8>; 2]>>> {
        // A panic elsewhere while holding the lock cannot leave a Vec<u8> half-written.
        self.recordings
            .as_ref()
            .map(|recordings| recordings.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn record(&self, connection_index: usize, flow: Flow, bytes: &[u8]) {
        if let Some(mut recordings) = self.recordings() {
            if let Some(recording) = recordings.get_mut(connection_index) {
                let recorded = &mut recording[flow.index()];
                let room = RECORDING_BYTES_MAX.saturating_sub(recorded.len());
                recorded.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
    }
}

/// A loopback TCP proxy to one upstream address that injects faults; see the [module
/// docs](self). Dropping it closes every connection it forwards.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    upstream: SocketAddr,
    options: ProxyOptions,
    state: watch::Sender<ProxyState>,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`. Must be called
    /// within a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        FaultProxy::start_with(upstream, ProxyOptions::default()).await
    }

    /// Like [`FaultProxy::start`], and records every byte each side sends (see
    /// [`FaultProxy::recorded`]).
    pub async fn start_recording(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let options = ProxyOptions {
            recording: true,
            ..ProxyOptions::default()
        };
        FaultProxy::start_with(upstream, options).await
    }

    /// Like [`FaultProxy::start`], with recording and the dead-link mode as `options` say.
    pub async fn start_with(upstream: SocketAddr, options: ProxyOptions) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let (state, _) = watch::channel(ProxyState::default());
        let shared = Arc::new(Shared {
            recordings: options.recording.then(|| Mutex::new(Vec::new())),
            ..Shared::default()
        });
        let accept_task = tokio::spawn(accept_loop(
            listener,
            upstream,
            options.dead_link,
            state.subscribe(),
            shared.clone(),
        ));
        Ok(FaultProxy {
            address,
            upstream,
            options,
            state,
            shared,
            accept_task,
        })
    }

    /// Where clients connect: `127.0.0.1` and an ephemeral port.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// How it was started.
    pub fn options(&self) -> ProxyOptions {
        self.options
    }

    /// Stops forwarding both ways: a dead network. See [`FlowMode::Partition`].
    pub fn partition(&self) {
        self.set_mode_all(FlowMode::Partition);
    }

    /// Stops forwarding one way only, e.g. PUBLISH reaches the broker but its PUBACK is lost.
    pub fn partition_flow(&self, flow: Flow) {
        self.set_mode(flow, FlowMode::Partition);
    }

    /// Resumes forwarding both ways (new bytes; those dropped are gone). The same as
    /// [`FaultProxy::release`]: anything held is delivered first. In the dead-link mode the
    /// connections that lived through the partition are reset instead.
    pub fn repair(&self) {
        self.set_mode_all(FlowMode::Forward);
    }

    /// Resumes forwarding one way.
    pub fn repair_flow(&self, flow: Flow) {
        self.set_mode(flow, FlowMode::Forward);
    }

    /// Stops forwarding both ways but keeps the bytes. See [`FlowMode::Hold`].
    pub fn hold(&self) {
        self.set_mode_all(FlowMode::Hold);
    }

    /// Holds one way only.
    pub fn hold_flow(&self, flow: Flow) {
        self.set_mode(flow, FlowMode::Hold);
    }

    /// Delivers what was held, in order, and resumes forwarding both ways. The same as
    /// [`FaultProxy::repair`].
    pub fn release(&self) {
        self.set_mode_all(FlowMode::Forward);
    }

    /// Releases one way.
    pub fn release_flow(&self, flow: Flow) {
        self.set_mode(flow, FlowMode::Forward);
    }

    /// Sets what `flow` does with the bytes it reads, on every connection.
    pub fn set_mode(&self, flow: Flow, mode: FlowMode) {
        self.state.send_modify(|state| state.set_mode(flow, mode));
    }

    fn set_mode_all(&self, mode: FlowMode) {
        self.state.send_modify(|state| {
            for flow in Flow::ALL {
                state.set_mode(flow, mode);
            }
        });
    }

    /// What `flow` does with the bytes it reads now.
    pub fn mode(&self, flow: Flow) -> FlowMode {
        self.state.borrow().flows[flow.index()].mode
    }

    /// Resets both sockets of every current connection (the peers see a connection reset or an
    /// end of stream). Connections accepted afterwards are forwarded as usual.
    pub fn reset(&self) {
        self.state.send_modify(|state| state.reset_generation += 1);
    }

    /// Delays every chunk by `latency` in both directions, keeping order. Applies to bytes read
    /// from now on; `Duration::ZERO` removes it.
    pub fn set_latency(&self, latency: Duration) {
        self.state.send_modify(|state| {
            for flow in &mut state.flows {
                flow.latency = latency;
            }
        });
    }

    /// Delays the chunks of one direction.
    pub fn set_latency_flow(&self, flow: Flow, latency: Duration) {
        self.state
            .send_modify(|state| state.flows[flow.index()].latency = latency);
    }

    /// The latency `flow` adds now.
    pub fn latency(&self, flow: Flow) -> Duration {
        self.state.borrow().flows[flow.index()].latency
    }

    /// How many connections the proxy has accepted so far; connection indexes run from 0 to
    /// this minus one, in accept order.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections_accepted.load(Ordering::Relaxed)
    }

    /// How many connections are being forwarded now.
    pub fn connections_open(&self) -> usize {
        self.shared.connections_open.load(Ordering::Relaxed)
    }

    /// Bytes delivered in `flow`, over all connections.
    pub fn bytes_forwarded(&self, flow: Flow) -> u64 {
        self.shared.bytes_forwarded[flow.index()].load(Ordering::Relaxed)
    }

    /// Bytes dropped by partitions in `flow`, over all connections.
    pub fn bytes_dropped(&self, flow: Flow) -> u64 {
        self.shared.bytes_dropped[flow.index()].load(Ordering::Relaxed)
    }

    /// Every byte the sending side of `flow` sent on connection `connection_index` (whether it
    /// was delivered or dropped), up to [`RECORDING_BYTES_MAX`]. Empty when the proxy was not
    /// started with [`FaultProxy::start_recording`], or there is no such connection.
    pub fn recorded(&self, connection_index: usize, flow: Flow) -> Vec<u8> {
        self.shared
            .recordings()
            .and_then(|recordings| {
                recordings
                    .get(connection_index)
                    .map(|recording| recording[flow.index()].clone())
            })
            .unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task; the
        // watch sender going away also ends them.
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    dead_link: bool,
    state: watch::Receiver<ProxyState>,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // The proxy is gone.
            () = closed(state.clone()) => return,
        };
        while connections.try_join_next().is_some() {}
        let (downstream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "fault proxy: accept failed");
                sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if connections.len() >= CONNECTIONS_OPEN_MAX {
            tracing::warn!(%peer, "fault proxy: {CONNECTIONS_OPEN_MAX} connections open already; closing the new one");
            continue;
        }
        let index = shared.connections_accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(mut recordings) = shared.recordings() {
            if recordings.len() < RECORDED_CONNECTIONS_MAX {
                recordings.push([Vec::new(), Vec::new()]);
            }
        }
        let (reset_generation, partition_generations, partitioned) = {
            let now = state.borrow();
            (now.reset_generation, now.partition_generations, now.partitioned())
        };
        if dead_link && partitioned {
            // A connect during a partition fails, as in the simulation: the client is reset at
            // once and upstream never hears of it. It keeps its index, so indexes stay in accept
            // order.
            tracing::debug!(index, %peer, "fault proxy: accepted during a partition; resetting it");
            let _ = downstream.set_zero_linger();
            continue;
        }
        let connection = Connection {
            index,
            upstream,
            dead_link,
            reset_generation,
            partition_generations,
            state: state.clone(),
            shared: shared.clone(),
        };
        connections.spawn(connection.run(downstream));
    }
}

/// Resolves when the proxy's state sender is dropped.
async fn closed(mut state: watch::Receiver<ProxyState>) {
    while state.changed().await.is_ok() {}
}

/// One forwarded connection.
struct Connection {
    index: usize,
    upstream: SocketAddr,
    /// Whether a partition kills it ([`ProxyOptions::dead_link`]).
    dead_link: bool,
    /// The reset generation when it was accepted.
    reset_generation: u64,
    /// The partition generations when it was accepted.
    partition_generations: [u64; 2],
    state: watch::Receiver<ProxyState>,
    shared: Arc<Shared>,
}

/// Why a connection ended.
enum Ending {
    /// One side closed (or failed) and that was passed on.
    Closed(Flow, io::Result<()>),
    /// [`FaultProxy::reset`].
    Reset,
    /// The dead-link mode: a partition this connection lived through was repaired.
    DeadLink,
    /// The proxy was dropped.
    ProxyGone,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Closed(flow, Ok(())) => write!(formatter, "closed by the sender of {flow:?}"),
            Ending::Closed(flow, Err(error)) => write!(formatter, "failed in {flow:?}: {error}"),
            Ending::Reset => formatter.write_str("reset by the proxy"),
            Ending::DeadLink => formatter.write_str("reset by the proxy: it lived through a partition"),
            Ending::ProxyGone => formatter.write_str("the proxy was dropped"),
        }
    }
}

impl Connection {
    async fn run(self, mut downstream: TcpStream) {
        self.shared.connections_open.fetch_add(1, Ordering::Relaxed);
        let ending = self.forward(&mut downstream).await;
        tracing::debug!(index = self.index, %ending, "fault proxy: connection ended");
        self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    async fn forward(&self, downstream: &mut TcpStream) -> Ending {
        let connected = tokio::select! {
            // A reset wins over a connect that completes at the same time.
            biased;
            ending = self.wait_for_reset() => {
                let _ = downstream.set_zero_linger();
                return ending;
            }
            connected = timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(self.upstream)) => connected,
        };
        let mut upstream = match connected {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(error)) => {
                tracing::warn!(%error, upstream = %self.upstream, "fault proxy: connecting upstream failed");
                return Ending::Closed(Flow::ClientToBroker, Err(error));
            }
            Err(_elapsed) => {
                tracing::warn!(upstream = %self.upstream, "fault proxy: connecting upstream timed out");
                return Ending::Closed(Flow::ClientToBroker, Err(io::ErrorKind::TimedOut.into()));
            }
        };
        // Without NODELAY small MQTT packets wait for ACKs (Nagle), which looks like latency.
        for stream in [&*downstream, &upstream] {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "fault proxy: setting TCP_NODELAY");
            }
        }
        let ending = {
            let (downstream_read, downstream_write) = downstream.split();
            let (upstream_read, upstream_write) = upstream.split();
            let client_to_broker = self.pump(Flow::ClientToBroker, downstream_read, upstream_write);
            let broker_to_client = self.pump(Flow::BrokerToClient, upstream_read, downstream_write);
            tokio::select! {
                // The reset first: the pumps wake on the same state change, and a reset should
                // not wait for them to move what they could.
                biased;
                ending = self.wait_for_reset() => ending,
                result = client_to_broker => Ending::Closed(Flow::ClientToBroker, result),
                result = broker_to_client => Ending::Closed(Flow::BrokerToClient, result),
            }
        };
        if matches!(ending, Ending::Reset | Ending::DeadLink) {
            // Closing with a zero linger sends RST instead of FIN.
            for stream in [&*downstream, &upstream] {
                let _ = stream.set_zero_linger();
            }
        }
        // Both streams are dropped, so closed, when this returns.
        ending
    }

    /// Resolves when this connection is to be reset: by [`FaultProxy::reset`], or in the
    /// dead-link mode once no direction is partitioned any more after one was, since accept.
    async fn wait_for_reset(&self) -> Ending {
        let mut state = self.state.clone();
        loop {
            {
                let now = state.borrow_and_update();
                if now.reset_generation != self.reset_generation {
                    return Ending::Reset;
                }
                if self.dead_link_repaired(&now) {
                    return Ending::DeadLink;
                }
            }
            if state.changed().await.is_err() {
                return Ending::ProxyGone;
            }
        }
    }

    /// In the dead-link mode: whether `flow` has been partitioned since accept. Its stream may
    /// have a gap, so it never delivers again: it stays partitioned for this connection until the
    /// connection is reset.
    fn broken(&self, state: &ProxyState, flow: Flow) -> bool {
        self.dead_link && state.partition_generations[flow.index()] != self.partition_generations[flow.index()]
    }

    /// In the dead-link mode: whether a direction has been partitioned since accept and none is
    /// partitioned any more, so the connection is to be reset.
    fn dead_link_repaired(&self, state: &ProxyState) -> bool {
        Flow::ALL.into_iter().any(|flow| self.broken(state, flow)) && !state.partitioned()
    }

    /// What `flow` does now on this connection: the proxy's setting, or a partition for good once
    /// it is broken in the dead-link mode.
    fn flow_state(&self, state: &ProxyState, flow: Flow) -> FlowState {
        let mut flow_state = state.flows[flow.index()];
        if self.broken(state, flow) {
            flow_state.mode = FlowMode::Partition;
        }
        flow_state
    }

    /// Moves the bytes of one direction until the sender's close has been passed on (`Ok`), or a
    /// socket fails (`Err`). Reads and deliveries interleave: one queue holds what waits.
    async fn pump(&self, flow: Flow, mut source: ReadHalf<'_>, mut sink: WriteHalf<'_>) -> io::Result<()> {
        let mut state = self.state.clone();
        let mut queue = DeliveryQueue::default();
        let mut source_open = true;
        let mut buffer = vec![0u8; CHUNK_BYTES_MAX];
        loop {
            let flow_state = self.flow_state(&state.borrow_and_update(), flow);
            // Deliver (or, partitioned, drop) whatever is due.
            while let Some(item) = queue.pop_due(Instant::now(), flow_state.mode) {
                match item {
                    Chunk::Data(bytes) if flow_state.mode == FlowMode::Partition => {
                        self.shared.bytes_dropped[flow.index()].fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    Chunk::Data(bytes) => {
                        sink.write_all(&bytes).await?;
                        self.shared.bytes_forwarded[flow.index()].fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    Chunk::End => {
                        // Passing the close on ends the connection; an error here means the
                        // receiver is gone already, which is the same outcome.
                        let _ = sink.shutdown().await;
                        return Ok(());
                    }
                }
            }
            let next_due = queue.next_due(flow_state.mode);
            let readable = source_open && queue.bytes < QUEUE_BYTES_MAX;
            tokio::select! {
                biased;
                changed = state.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the proxy is gone
                    }
                }
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
                read = source.read(&mut buffer), if readable => {
                    // The settings now, not those of the loop's start.
                    let flow_state = self.flow_state(&state.borrow(), flow);
                    let deliver_at = Instant::now() + flow_state.latency;
                    match read {
                        Ok(0) | Err(_) => {
                            // A close or a reset by the sender travels like data: after earlier
                            // bytes, delayed by latency, and kept through a partition.
                            source_open = false;
                            queue.push(deliver_at, Chunk::End);
                        }
                        Ok(count) => {
                            let bytes = &buffer[..count];
                            self.shared.record(self.index, flow, bytes);
                            if flow_state.mode == FlowMode::Partition {
                                self.shared.bytes_dropped[flow.index()].fetch_add(count as u64, Ordering::Relaxed);
                            } else {
                                queue.push(deliver_at, Chunk::Data(Bytes::copy_from_slice(bytes)));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What one direction carries.
#[derive(Debug)]
enum Chunk {
    Data(Bytes),
    /// The sender closed.
    End,
}

/// The chunks of one direction waiting for delivery, in read order.
#[derive(Debug, Default)]
struct DeliveryQueue {
    items: VecDeque<(Instant, Chunk)>,
    /// Data bytes in `items`.
    bytes: usize,
}

impl DeliveryQueue {
    fn push(&mut self, deliver_at: Instant, chunk: Chunk) {
        if let Chunk::Data(bytes) = &chunk {
            self.bytes += bytes.len();
        }
        self.items.push_back((deliver_at, chunk));
    }

    /// The front chunk if it is due and `mode` lets it go (data is dropped when partitioned, but
    /// a close waits for the repair).
    fn pop_due(&mut self, now: Instant, mode: FlowMode) -> Option<Chunk> {
        let (deliver_at, chunk) = self.items.front()?;
        let movable = match mode {
            FlowMode::Forward => true,
            FlowMode::Partition => matches!(chunk, Chunk::Data(_)),
            FlowMode::Hold => false,
        };
        if !movable || *deliver_at > now {
            return None;
        }
        let (_, chunk) = self.items.pop_front()?;
        if let Chunk::Data(bytes) = &chunk {
            self.bytes -= bytes.len();
        }
        Some(chunk)
    }

    /// When the front chunk falls due, if `mode` will let it go then.
    fn next_due(&self, mode: FlowMode) -> Option<Instant> {
        let (deliver_at, chunk) = self.items.front()?;
        match (mode, chunk) {
            (FlowMode::Hold, _) | (FlowMode::Partition, Chunk::End) => None,
            _ => Some(*deliver_at),
        }
    }
}
