//! The generator's engine: event-loop threads that own the connections of whole topic groups,
//! publishers and subscribers together.
//!
//! # Why threads of their own, and why both roles on one
//!
//! Open loop needs sends on time. tokio's timers tick in milliseconds, which would put up to a
//! millisecond of pacing error into every latency measured from the intended send time; and on a
//! shared machine every wake-up of the generator (a context switch, a few system calls) is taken
//! from the broker it measures. So each engine thread waits in `epoll(7)` with a `timerfd` (a
//! nanosecond timer) for whichever comes first: the next message due, a socket ready, a keep-alive
//! deadline. Each wake-up publishes every message that is due, reads every socket that has
//! something (deliveries, acknowledgements), and writes what the clients produced, one write per
//! connection. With publishers and subscribers on one thread, one wake-up often serves a publish
//! and its deliveries together.
//!
//! Timer wake-ups are at least [`WAKE_QUANTUM`] apart: messages due meanwhile go out together at
//! the next one, at most that late. The lateness is reported as the schedule lag, and counts in
//! the messages' latency, as any lateness does in an open loop.
//!
//! # What a thread does
//!
//! It connects its subscribers (CONNECT, SUBSCRIBE) and then its publishers, blocking, one at a
//! time; says it is ready; waits for the run's [`Times`]; publishes through the warm-up and the
//! window; then keeps reading until every acknowledgement and every delivery owed to its
//! subscribers has arrived, nothing has arrived for [`DRAIN_IDLE`], or the run gives up; sends
//! DISCONNECT everywhere and returns its report. A shared subscription's members are in one
//! thread, so their group's accounting is the thread's own.
//!
//! What a publisher cannot hand to the broker does not vanish: a message due while the
//! connection's output is full (TCP pushes back) or its QoS 1/2 backlog is full counts as not
//! offered, and the run then fails with "the requested rate could not be offered".

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mqtt_client::core::{Event, Message, RequestError};
use mqtt_client::ConnectOptions;
use mqtt_protocol::{ByteStr, Properties, QoS, ReasonCode, Subscription, SubscriptionOptions};

use crate::link::{Link, READ_CHUNK};
use crate::measure::{self, SecondCounts, SharedTimeline};
use crate::payload::{PayloadWriter, Stamp};
use crate::schedule::Schedule;
use crate::track::{Arrival, Tracker};
use crate::transport::{Transport, TransportConfig};
use crate::workload::{Shape, Workload};

/// How long one connect (TCP, CONNACK, and SUBACK for a subscriber) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest time between two timer wake-ups; see the module documentation.
pub const WAKE_QUANTUM: Duration = Duration::from_micros(50);

/// The drain ends when nothing arrived for this long.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// The most bytes waiting in one connection's output before due messages count as not offered.
const OUTPUT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The most bytes read from one socket in one wake-up, so that one busy socket cannot starve the
/// others.
const READ_PER_WAKE_MAX: usize = 1024 * 1024;

/// The longest a thread waits without looking at the cancel flag.
const WAKE_AT_LEAST_EVERY: Duration = Duration::from_millis(100);

/// How long the final DISCONNECT may take to write.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The instants of a run, shared by every thread.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// The base of the intended send times in payloads.
    pub base: Instant,
    /// The schedule starts (the warm-up begins).
    pub start: Instant,
    /// The measured window.
    pub window_start: Instant,
    pub window_end: Instant,
    /// Nothing more is waited for.
    pub give_up: Instant,
}

impl Times {
    /// Nanoseconds since the base.
    pub fn ns(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the intended send time `intended_ns` lies in the measured window.
    pub fn in_window_ns(&self, intended_ns: u64) -> bool {
        (self.ns(self.window_start)..self.ns(self.window_end)).contains(&intended_ns)
    }
}

/// Live counts for the progress line, shared by all threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub not_offered: AtomicU64,
    pub acknowledged: AtomicU64,
    /// Deliveries received, duplicates aside.
    pub received: AtomicU64,
    /// Connections that ended early.
    pub errors: AtomicU64,
}

/// What one publisher did.
#[derive(Debug, Clone, Default)]
pub struct PublisherReport {
    pub number: usize,
    pub group: usize,
    /// Messages due: sequence numbers `0..scheduled` were used, `not_offered` of them for messages
    /// never handed to the connection (which subscribers must not count as lost).
    pub scheduled: u64,
    /// Messages handed to the broker's connection.
    pub sent: u64,
    /// Of `sent`, those whose intended send time is in the measured window.
    pub sent_in_window: u64,
    pub not_offered: u64,
    pub acknowledged: u64,
    /// QoS 1/2 messages refused by the broker (a reason code of 0x80 or more).
    pub refused: u64,
    /// QoS 1/2 messages still unacknowledged when the run gave up.
    pub unacknowledged: u64,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

/// What one subscriber saw.
#[derive(Debug, Clone, Default)]
pub struct SubscriberReport {
    pub number: usize,
    pub group: usize,
    /// Deliveries (duplicates aside) that arrived during the measured window.
    pub received_in_window: u64,
    /// Deliveries (duplicates aside) in all.
    pub received: u64,
    /// Messages that are not this run's (another run's, or not stamped).
    pub foreign: u64,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

/// What one receiver (a subscriber, or a shared group) saw of one publisher.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The subscriber, or for a shared group its lowest-numbered member.
    pub receiver: usize,
    pub shared: bool,
    pub publisher: usize,
    pub tracker: Tracker,
}

/// What a thread measured.
#[derive(Debug)]
pub struct EngineReport {
    pub publishers: Vec<PublisherReport>,
    pub subscribers: Vec<SubscriberReport>,
    pub streams: Vec<Stream>,
    /// End to end, for messages due in the window.
    pub latency: Histogram<u64>,
    /// From the intended send time to the acknowledgement (PUBACK, or PUBCOMP at QoS 2).
    pub ack_latency: Histogram<u64>,
    /// How late each message of the window was handed to its connection.
    pub lag: Histogram<u64>,
    /// TCP connect to CONNACK (to SUBACK for subscribers).
    pub connect_latency: Histogram<u64>,
}

/// What one thread runs.
pub struct Plan {
    pub address: SocketAddr,
    pub transport: TransportConfig,
    pub workload: Workload,
    /// The run's identifier, in client ids and topics.
    pub run: String,
    pub run_tag: u32,
    /// (number, group) of the publishers and subscribers of this thread's groups.
    pub publishers: Vec<(usize, usize)>,
    pub subscribers: Vec<(usize, usize)>,
    pub timeline: SharedTimeline,
    pub counters: Arc<Counters>,
    pub cancel: Arc<AtomicBool>,
}

/// A running engine thread: it connects, says it is ready, waits for the run's [`Times`], runs,
/// and returns its report.
pub struct Engine {
    ready: mpsc::Receiver<Result<(), String>>,
    start: mpsc::Sender<Times>,
    handle: std::thread::JoinHandle<Result<EngineReport, String>>,
}

impl Engine {
    pub fn spawn(plan: Plan, name: String) -> Result<Engine, String> {
        let (ready_sender, ready) = mpsc::channel();
        let (start, start_receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(plan, ready_sender, start_receiver))
            .map_err(|error| format!("cannot start an engine thread: {error}"))?;
        Ok(Engine { ready, start, handle })
    }

    /// Waits until every connection of the thread is up, or says why not.
    pub fn ready(&self, within: Duration) -> Result<(), String> {
        match self.ready.recv_timeout(within) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("the connections were not up within {} s", within.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("an engine thread ended early".into()),
        }
    }

    pub fn start(&self, times: Times) -> Result<(), String> {
        self.start
            .send(times)
            .map_err(|_| "an engine thread ended early".to_owned())
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The thread's report (blocking: call it once [`Engine::is_finished`]).
    pub fn join(self) -> Result<EngineReport, String> {
        self.handle.join().map_err(|_| "an engine thread panicked".to_owned())?
    }
}

/// A connection's role and its own state.
enum Role {
    Publisher {
        topic: ByteStr,
        schedule: Option<Schedule>,
        /// Intended send time (ns) of each QoS 1/2 message not yet acknowledged, by token.
        waiting: HashMap<u64, u64>,
        report: PublisherReport,
    },
    Subscriber {
        /// Index into the thread's receivers (a shared group's members share one).
        receiver: usize,
        report: SubscriberReport,
    },
}

struct Connection {
    transport: Transport,
    link: Link,
    role: Role,
    closed: bool,
    readable: bool,
    /// Whether the poller watches it for writability (output waiting).
    watching_writes: bool,
}

/// The trackers of one receiver, one per publisher of its group (by position in the group).
struct Receiver {
    /// Lowest subscriber number of the receiver.
    first_subscriber: usize,
    group: usize,
    shared: bool,
    trackers: Vec<Tracker>,
}

fn run(
    plan: Plan,
    ready: mpsc::Sender<Result<(), String>>,
    start: mpsc::Receiver<Times>,
) -> Result<EngineReport, String> {
    let workload = plan.workload.clone();
    let mut connect_latency = measure::histogram();
    let mut connections = Vec::new();
    let mut receivers: Vec<Receiver> = Vec::new();
    let mut shared_receivers: BTreeMap<usize, usize> = BTreeMap::new();
    let connected = (|| -> Result<(), String> {
        // Subscribers first, so that nothing published is missed.
        for &(number, group) in &plan.subscribers {
            let started = Instant::now();
            let client_id = workload.subscriber_client_id(&plan.run, number);
            let filter = workload.filter(&plan.run, group);
            let (transport, link) = connect(plan.address, &plan.transport, &workload, &client_id, Some(&filter))?;
            measure::record(&mut connect_latency, started.elapsed());
            let shared = workload.shape == Shape::Shared;
            let publisher_count = workload.publishers_of(group).len();
            let new_receiver = |receivers: &mut Vec<Receiver>| {
                receivers.push(Receiver {
                    first_subscriber: number,
                    group,
                    shared,
                    trackers: vec![Tracker::default(); publisher_count],
                });
                receivers.len() - 1
            };
            let receiver = if shared {
                match shared_receivers.get(&group) {
                    Some(&receiver) => receiver,
                    None => {
                        let receiver = new_receiver(&mut receivers);
                        shared_receivers.insert(group, receiver);
                        receiver
                    }
                }
            } else {
                new_receiver(&mut receivers)
            };
            connections.push(Connection {
                transport,
                link,
                role: Role::Subscriber {
                    receiver,
                    report: SubscriberReport {
                        number,
                        group,
                        ..SubscriberReport::default()
                    },
                },
                closed: false,
                readable: true,
                watching_writes: false,
            });
        }
        for &(number, group) in &plan.publishers {
            let started = Instant::now();
            let client_id = workload.publisher_client_id(&plan.run, number);
            let (transport, link) = connect(plan.address, &plan.transport, &workload, &client_id, None)?;
            measure::record(&mut connect_latency, started.elapsed());
            connections.push(Connection {
                transport,
                link,
                role: Role::Publisher {
                    topic: workload.topic(&plan.run, group).into(),
                    schedule: None,
                    waiting: HashMap::new(),
                    report: PublisherReport {
                        number,
                        group,
                        ..PublisherReport::default()
                    },
                },
                closed: false,
                readable: true,
                watching_writes: false,
            });
        }
        Ok(())
    })();
    let _ = ready.send(connected.clone());
    connected?;
    let times = start.recv().map_err(|_| "the run ended before it started".to_owned())?;
    let mut poller = Poller::new()?;
    let publisher_count = plan.publishers.len().max(1) as f64;
    let rate = workload.rate_per_publisher();
    let mut publisher_index = 0.0;
    for (token, connection) in connections.iter_mut().enumerate() {
        poller.add(connection.transport.socket(), token)?;
        if let Role::Publisher { schedule, report, .. } = &mut connection.role {
            // Publishers of one rate are spread over a gap, so they do not all send at once.
            *schedule = Some(Schedule::new(
                times.start,
                rate,
                workload.arrivals,
                publisher_index / publisher_count,
                workload.seed.wrapping_add(report.number as u64),
                workload.payload,
            ));
            publisher_index += 1.0;
        }
    }
    let mut state = Loop {
        workload: &workload,
        times,
        run_tag: plan.run_tag,
        counters: &plan.counters,
        timeline: &plan.timeline,
        receivers,
        latency: measure::histogram(),
        ack_latency: measure::histogram(),
        lag: measure::histogram(),
        second: SecondCounts::default(),
        payloads: PayloadWriter::default(),
        read_buffer: vec![0u8; READ_CHUNK],
        pending_max: ((rate * 2.0) as usize).clamp(1000, 1_000_000),
        last_delivery: Instant::now(),
    };
    let mut ready_tokens = Vec::new();
    loop {
        let now = Instant::now();
        if plan.cancel.load(Ordering::Relaxed) {
            break;
        }
        if now >= times.window_end && state.finished(&connections, now) {
            break;
        }
        state.second.at(
            now.saturating_duration_since(times.start).as_secs() as usize,
            state.timeline,
        );
        for connection in connections.iter_mut().filter(|connection| !connection.closed) {
            if let Err(error) = state.serve(connection, now) {
                plan.counters.errors.fetch_add(1, Ordering::Relaxed);
                match &mut connection.role {
                    Role::Publisher { report, .. } => report.error.get_or_insert(error),
                    Role::Subscriber { report, .. } => report.error.get_or_insert(error),
                };
                connection.closed = true;
                poller.remove(connection.transport.socket());
            }
        }
        // Watch for writability only where output waits.
        for (token, connection) in connections.iter_mut().enumerate() {
            let wants =
                !connection.closed && (!connection.link.output.is_empty() || connection.transport.wants_write());
            if wants != connection.watching_writes {
                poller.watch_writes(connection.transport.socket(), token, wants)?;
                connection.watching_writes = wants;
            }
        }
        let mut wake = now + WAKE_AT_LEAST_EVERY;
        for connection in connections.iter().filter(|connection| !connection.closed) {
            if let Role::Publisher {
                schedule: Some(schedule),
                ..
            } = &connection.role
            {
                if schedule.due() < times.window_end {
                    wake = wake.min(schedule.due());
                }
            }
            if let Some(deadline) = connection.link.core.poll_timeout() {
                wake = wake.min(deadline.into_std());
            }
        }
        if now >= times.window_end {
            wake = wake.min(times.give_up).min(state.last_delivery + DRAIN_IDLE);
        }
        // A timer wake-up no sooner than the quantum; a socket that is ready wakes it at once.
        let wake = wake.max(now + WAKE_QUANTUM);
        ready_tokens.clear();
        poller.wait(wake, &mut ready_tokens)?;
        for &token in &ready_tokens {
            if let Some(connection) = connections.get_mut(token) {
                connection.readable = true;
            }
        }
    }
    state.second.flush(state.timeline);
    let mut report = EngineReport {
        publishers: Vec::new(),
        subscribers: Vec::new(),
        streams: Vec::new(),
        latency: state.latency,
        ack_latency: state.ack_latency,
        lag: state.lag,
        connect_latency,
    };
    for mut connection in connections {
        disconnect(&mut connection);
        match connection.role {
            Role::Publisher {
                waiting,
                report: mut publisher,
                ..
            } => {
                publisher.unacknowledged = waiting.len() as u64;
                report.publishers.push(publisher);
            }
            Role::Subscriber { report: subscriber, .. } => report.subscribers.push(subscriber),
        }
    }
    for receiver in state.receivers {
        for (position, tracker) in receiver.trackers.into_iter().enumerate() {
            report.streams.push(Stream {
                receiver: receiver.first_subscriber,
                shared: receiver.shared,
                publisher: receiver.group + position * workload.topics,
                tracker,
            });
        }
    }
    Ok(report)
}

/// The state of a thread's loop, apart from its connections.
struct Loop<'a> {
    workload: &'a Workload,
    times: Times,
    run_tag: u32,
    counters: &'a Counters,
    timeline: &'a SharedTimeline,
    receivers: Vec<Receiver>,
    latency: Histogram<u64>,
    ack_latency: Histogram<u64>,
    lag: Histogram<u64>,
    second: SecondCounts,
    payloads: PayloadWriter,
    read_buffer: Vec<u8>,
    pending_max: usize,
    /// When the last delivery arrived (the drain's idle clock).
    last_delivery: Instant,
}

impl Loop<'_> {
    /// After the window: whether nothing is left to wait for.
    fn finished(&self, connections: &[Connection], now: Instant) -> bool {
        if now >= self.times.give_up {
            return true;
        }
        let mut owed = 0u64;
        let mut received = 0u64;
        for connection in connections {
            match &connection.role {
                Role::Publisher { waiting, report, .. } => {
                    if !connection.closed && (!waiting.is_empty() || !connection.link.output.is_empty()) {
                        return false;
                    }
                    owed += report.sent * self.workload.copies_per_message(report.group);
                }
                Role::Subscriber { report, .. } => received += report.received,
            }
        }
        received >= owed || now.saturating_duration_since(self.last_delivery) >= DRAIN_IDLE
    }

    /// One connection's turn: publish what is due, write, read, handle what arrived, write again.
    fn serve(&mut self, connection: &mut Connection, now: Instant) -> Result<(), String> {
        let tokio_now = tokio::time::Instant::from_std(now);
        if let Role::Publisher { .. } = connection.role {
            self.publish_due(connection, now);
        }
        connection.link.transmit(tokio_now)?;
        connection.transport.write(&mut connection.link.output)?;
        let mut read = 0;
        while std::mem::take(&mut connection.readable) && read < READ_PER_WAKE_MAX {
            let outcome = connection
                .transport
                .read(&mut self.read_buffer, &mut connection.link.input)?;
            read += outcome.count;
            // A full buffer may mean more waits: read again.
            connection.readable = outcome.more;
        }
        if read > 0 {
            // Received now: the packets of one read arrived together.
            let received = Instant::now();
            match &mut connection.role {
                Role::Publisher { waiting, report, .. } => {
                    let received_ns = self.times.ns(received);
                    let times = self.times;
                    let ack_latency = &mut self.ack_latency;
                    let counters = self.counters;
                    connection.link.receive(tokio_now, |event| {
                        let Event::Published { token, reason_code } = event else {
                            return;
                        };
                        let Some(intended_ns) = waiting.remove(&token) else {
                            return;
                        };
                        if reason_code.is_error() {
                            report.refused += 1;
                            return;
                        }
                        report.acknowledged += 1;
                        counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                        if times.in_window_ns(intended_ns) {
                            measure::record(
                                ack_latency,
                                Duration::from_nanos(received_ns.saturating_sub(intended_ns)),
                            );
                        }
                    })?;
                }
                Role::Subscriber { receiver, report } => {
                    let receiver = &mut self.receivers[*receiver];
                    let unique = account(
                        &mut connection.link,
                        receiver,
                        report,
                        &mut self.latency,
                        &mut self.second,
                        self.workload,
                        &self.times,
                        self.run_tag,
                        received,
                    )?;
                    if unique > 0 {
                        self.counters.received.fetch_add(unique, Ordering::Relaxed);
                        self.last_delivery = received;
                    }
                }
            }
        }
        if connection
            .link
            .core
            .poll_timeout()
            .is_some_and(|deadline| deadline <= tokio_now)
        {
            connection.link.handle_timeout(tokio_now)?;
        }
        connection.transport.write(&mut connection.link.output)
    }

    /// Hands every message due by `now` (and before the window's end) to the publisher's client.
    fn publish_due(&mut self, connection: &mut Connection, now: Instant) {
        let Role::Publisher {
            topic,
            schedule: Some(schedule),
            waiting,
            report,
        } = &mut connection.role
        else {
            return;
        };
        let workload = self.workload;
        let times = self.times;
        while schedule.due() <= now && schedule.due() < times.window_end {
            let (sequence, due, size) = schedule.take();
            let in_window = due >= times.window_start;
            report.scheduled += 1;
            self.second.scheduled += 1;
            let link = &mut connection.link;
            if link.output.len() >= OUTPUT_BYTES_MAX || link.core.pending_count() >= self.pending_max {
                report.not_offered += 1;
                self.counters.not_offered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let intended_ns = times.ns(due);
            let stamp = Stamp {
                run_tag: self.run_tag,
                publisher: report.number as u32,
                sequence,
                intended_ns,
            };
            let message = Message {
                topic: topic.clone(),
                payload: self.payloads.write(&stamp, size),
                qos: workload.qos,
                retain: workload.retain,
                properties: Properties::default(),
            };
            match link.core.publish(message) {
                Ok(token) => {
                    if workload.qos != QoS::AtMostOnce {
                        waiting.insert(token, intended_ns);
                    }
                    report.sent += 1;
                    self.second.sent += 1;
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    if in_window {
                        report.sent_in_window += 1;
                        measure::record(&mut self.lag, now.saturating_duration_since(due));
                    }
                }
                Err(error) => {
                    report.not_offered += 1;
                    self.counters.not_offered.fetch_add(1, Ordering::Relaxed);
                    if report.error.is_none() && !matches!(error, RequestError::QueueFull(_)) {
                        report.error = Some(format!("publishing: {error}"));
                    }
                }
            }
        }
    }
}

/// Decodes what a subscriber read and accounts for every delivery in it; returns how many were
/// new (duplicates aside).
#[allow(clippy::too_many_arguments)] // One call site; the pieces are the loop's, borrowed apart.
fn account(
    link: &mut Link,
    receiver: &mut Receiver,
    report: &mut SubscriberReport,
    latency: &mut Histogram<u64>,
    second: &mut SecondCounts,
    workload: &Workload,
    times: &Times,
    run_tag: u32,
    now: Instant,
) -> Result<u64, String> {
    let received_ns = times.ns(now);
    let in_window = now >= times.window_start && now < times.window_end;
    let group = receiver.group;
    let topics = workload.topics;
    let ordered = !receiver.shared;
    let trackers = &mut receiver.trackers;
    let mut unique = 0u64;
    let foreign = &mut report.foreign;
    link.receive(tokio::time::Instant::from_std(now), |event| {
        let Event::Message(publish) = event else {
            return;
        };
        let stamp = Stamp::read(&publish.payload).filter(|stamp| stamp.run_tag == run_tag);
        let position = stamp.and_then(|stamp| {
            let offset = (stamp.publisher as usize).checked_sub(group)?;
            (offset % topics == 0).then_some(offset / topics)
        });
        let (Some(stamp), Some(tracker)) = (stamp, position.and_then(|position| trackers.get_mut(position))) else {
            *foreign += 1;
            return;
        };
        let redelivery = publish.dup && publish.qos != QoS::AtMostOnce;
        if tracker.record(stamp.sequence, redelivery, ordered) == Arrival::Duplicate {
            return;
        }
        unique += 1;
        let latency_of_this = Duration::from_nanos(received_ns.saturating_sub(stamp.intended_ns));
        second.record_latency(latency_of_this);
        if times.in_window_ns(stamp.intended_ns) {
            measure::record(latency, latency_of_this);
        }
    })?;
    report.received += unique;
    if in_window {
        report.received_in_window += unique;
    }
    second.received += unique;
    Ok(unique)
}

/// Connects one client: TCP, CONNECT and CONNACK, and for a subscriber SUBSCRIBE and a SUBACK
/// granting the run's QoS, all within [`CONNECT_TIMEOUT`]; the socket is then non-blocking.
pub fn connect(
    address: SocketAddr,
    transport: &TransportConfig,
    workload: &Workload,
    client_id: &str,
    filter: Option<&str>,
) -> Result<(Transport, Link), String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(|error| match error.kind() {
        ErrorKind::ConnectionRefused => format!("connection refused to {address}"),
        _ => format!("{client_id}: cannot connect to {address}: {error}"),
    })?;
    stream
        .set_nodelay(true)
        .map_err(|error| format!("{client_id}: TCP_NODELAY: {error}"))?;
    let mut stream = transport
        .open(stream, deadline)
        .map_err(|error| format!("{client_id}: {error}"))?;
    let mut options = ConnectOptions::new(client_id.to_owned());
    options.version = workload.version;
    options.keep_alive_s = 60;
    options.inflight_count_max = workload.inflight.max(1);
    options.pending_count_max = 1_000_000;
    options.connect_timeout = CONNECT_TIMEOUT;
    options.user_name = workload.username.clone();
    options.password = workload.password.clone().map(|password| password.into_bytes().into());
    let mut link = Link::new(options);
    link.connect(tokio::time::Instant::now())?;
    exchange(&mut stream, &mut link, deadline, client_id, "CONNACK", |event| {
        matches!(event, Event::Connected { .. })
    })?;
    if let Some(filter) = filter {
        let subscription = Subscription {
            filter: filter.to_owned(),
            options: SubscriptionOptions::with_qos(workload.qos),
        };
        link.core
            .subscribe(vec![subscription], Properties::default())
            .map_err(|error| format!("{client_id}: subscribing to {filter}: {error}"))?;
        link.transmit(tokio::time::Instant::now())?;
        let mut granted = None;
        exchange(
            &mut stream,
            &mut link,
            deadline,
            client_id,
            "SUBACK",
            |event| match event {
                Event::SubAck { suback, .. } => {
                    granted = Some(suback.reason_codes.clone());
                    true
                }
                _ => false,
            },
        )?;
        let requested = ReasonCode(workload.qos as u8);
        match granted.as_deref() {
            Some([code]) if *code == requested => {}
            codes => {
                return Err(format!(
                    "{client_id}: the broker answered the subscription to {filter} at QoS {} with {codes:?}, not that QoS granted",
                    workload.qos as u8
                ))
            }
        }
    }
    stream
        .set_nonblocking(true)
        .map_err(|error| format!("{client_id}: {error}"))?;
    Ok((stream, link))
}

/// Writes what the link has to send and reads (blocking, until `deadline`) until `done` says an
/// event was the one awaited.
fn exchange(
    stream: &mut Transport,
    link: &mut Link,
    deadline: Instant,
    what: &str,
    awaited: &str,
    mut done: impl FnMut(&Event) -> bool,
) -> Result<(), String> {
    let late = || format!("{what}: no {awaited} within {} s", CONNECT_TIMEOUT.as_secs());
    let socket = stream.socket();
    socket
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|error| format!("{what}: {error}"))?;
    // Blocking: the write goes out whole (or fails at the timeout).
    stream
        .write(&mut link.output)
        .map_err(|error| format!("{what}: {error}"))?;
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        stream
            .socket()
            .set_read_timeout(Some(left))
            .map_err(|error| format!("{what}: {error}"))?;
        match stream.read(&mut buffer, &mut link.input) {
            Ok(_) => {}
            Err(error) if error.starts_with("the broker closed") => {
                return Err(format!("{what}: the broker closed the connection before its {awaited}"))
            }
            Err(error) => return Err(format!("{what}: waiting for the {awaited}: {error}")),
        }
        let mut found = false;
        link.receive(tokio::time::Instant::now(), |event| found |= done(&event))
            .map_err(|error| format!("{what}: {error}"))?;
        if found {
            return Ok(());
        }
    }
}

/// Sends DISCONNECT (best effort, bounded) and closes.
fn disconnect(connection: &mut Connection) {
    if connection.closed {
        return;
    }
    connection
        .link
        .core
        .disconnect(ReasonCode::SUCCESS, Properties::default());
    if connection.link.transmit(tokio::time::Instant::now()).is_ok() {
        let _ = connection.transport.set_nonblocking(false);
        let _ = connection
            .transport
            .socket()
            .set_write_timeout(Some(DISCONNECT_TIMEOUT));
        let _ = connection.transport.write(&mut connection.link.output);
    }
    let _ = connection.transport.socket().shutdown(std::net::Shutdown::Both);
    connection.closed = true;
}

pub use poller::Poller;

/// Readiness and a precise timer: `epoll` and `timerfd` on Linux, `poll` (millisecond timeouts)
/// elsewhere.
#[cfg(target_os = "linux")]
mod poller {
    use std::net::TcpStream;
    use std::os::fd::{AsRawFd, RawFd};
    use std::time::{Duration, Instant};

    /// The token of the timer in epoll's events.
    const TIMER: u64 = u64::MAX;

    pub struct Poller {
        epoll: RawFd,
        timer: RawFd,
        /// When the timer is set to ring, if it is.
        armed: Option<Instant>,
        events: Vec<libc::epoll_event>,
    }

    fn check(result: libc::c_int, what: &str) -> Result<libc::c_int, String> {
        if result < 0 {
            Err(format!("{what}: {}", std::io::Error::last_os_error()))
        } else {
            Ok(result)
        }
    }

    impl Poller {
        pub fn new() -> Result<Poller, String> {
            // SAFETY: plain system calls with constant arguments; the descriptors are owned by
            // the Poller and closed in Drop.
            let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }, "epoll_create1")?;
            let timer = check(
                unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) },
                "timerfd_create",
            )?;
            let poller = Poller {
                epoll,
                timer,
                armed: None,
                events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
            };
            poller.control(libc::EPOLL_CTL_ADD, timer, libc::EPOLLIN as u32, TIMER)?;
            Ok(poller)
        }

        fn control(&self, operation: libc::c_int, fd: RawFd, events: u32, token: u64) -> Result<(), String> {
            let mut event = libc::epoll_event { events, u64: token };
            // SAFETY: `event` lives on this frame; epoll_ctl reads it.
            check(
                unsafe { libc::epoll_ctl(self.epoll, operation, fd, &mut event) },
                "epoll_ctl",
            )?;
            Ok(())
        }

        pub fn add(&mut self, stream: &TcpStream, token: usize) -> Result<(), String> {
            self.control(
                libc::EPOLL_CTL_ADD,
                stream.as_raw_fd(),
                libc::EPOLLIN as u32,
                token as u64,
            )
        }

        pub fn remove(&mut self, stream: &TcpStream) {
            let _ = self.control(libc::EPOLL_CTL_DEL, stream.as_raw_fd(), 0, 0);
        }

        pub fn watch_writes(&mut self, stream: &TcpStream, token: usize, writes: bool) -> Result<(), String> {
            let events = libc::EPOLLIN as u32 | if writes { libc::EPOLLOUT as u32 } else { 0 };
            self.control(libc::EPOLL_CTL_MOD, stream.as_raw_fd(), events, token as u64)
        }

        /// Waits until `wake` or until a socket is ready; the ready sockets' tokens go to `ready`.
        pub fn wait(&mut self, wake: Instant, ready: &mut Vec<usize>) -> Result<(), String> {
            // The timer is set again only when it must ring sooner than it is set for (or has
            // rung): a timer that rings early costs one idle pass, a system call per pass costs
            // more.
            let now = Instant::now();
            if self.armed.is_none_or(|armed| wake < armed || armed <= now) {
                let delay = wake.saturating_duration_since(now).max(Duration::from_nanos(1));
                let spec = libc::itimerspec {
                    it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                    it_value: libc::timespec {
                        tv_sec: delay.as_secs() as libc::time_t,
                        tv_nsec: delay.subsec_nanos() as libc::c_long,
                    },
                };
                // SAFETY: `spec` lives on this frame; a null old value is allowed.
                check(
                    unsafe { libc::timerfd_settime(self.timer, 0, &spec, std::ptr::null_mut()) },
                    "timerfd_settime",
                )?;
                self.armed = Some(wake);
            }
            // The timer bounds the wait; the timeout is only a safety net.
            // SAFETY: `events` is a valid buffer of its length.
            let count = unsafe {
                libc::epoll_wait(
                    self.epoll,
                    self.events.as_mut_ptr(),
                    self.events.len() as libc::c_int,
                    1000,
                )
            };
            if count < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    return Ok(());
                }
                return Err(format!("epoll_wait: {error}"));
            }
            for event in &self.events[..count as usize] {
                let token = event.u64;
                if token == TIMER {
                    self.armed = None;
                    let mut expirations = [0u8; 8];
                    // SAFETY: reads at most 8 bytes into an 8-byte buffer; a non-blocking
                    // timerfd with nothing to read fails harmlessly.
                    unsafe {
                        libc::read(self.timer, expirations.as_mut_ptr().cast(), expirations.len());
                    }
                } else {
                    ready.push(token as usize);
                }
            }
            Ok(())
        }
    }

    impl Drop for Poller {
        fn drop(&mut self) {
            // SAFETY: the descriptors were opened by `new` and are closed once.
            unsafe {
                libc::close(self.timer);
                libc::close(self.epoll);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod poller {
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    /// `poll(2)` over the sockets, rebuilt each wait (fine for the connection counts a single
    /// machine off Linux is used for).
    pub struct Poller {
        #[cfg(unix)]
        fds: Vec<(std::os::fd::RawFd, usize, bool)>,
    }

    impl Poller {
        pub fn new() -> Result<Poller, String> {
            Ok(Poller {
                #[cfg(unix)]
                fds: Vec::new(),
            })
        }

        pub fn add(&mut self, stream: &TcpStream, token: usize) -> Result<(), String> {
            #[cfg(unix)]
            {
                use std::os::fd::AsRawFd;
                self.fds.push((stream.as_raw_fd(), token, false));
            }
            let _ = (stream, token);
            Ok(())
        }

        pub fn remove(&mut self, stream: &TcpStream) {
            #[cfg(unix)]
            {
                use std::os::fd::AsRawFd;
                let fd = stream.as_raw_fd();
                self.fds.retain(|(other, _, _)| *other != fd);
            }
            let _ = stream;
        }

        pub fn watch_writes(&mut self, stream: &TcpStream, token: usize, writes: bool) -> Result<(), String> {
            #[cfg(unix)]
            for entry in &mut self.fds {
                if entry.1 == token {
                    entry.2 = writes;
                }
            }
            let _ = (stream, token, writes);
            Ok(())
        }

        pub fn wait(&mut self, wake: Instant, ready: &mut Vec<usize>) -> Result<(), String> {
            let delay = wake.saturating_duration_since(Instant::now());
            #[cfg(unix)]
            {
                let mut fds: Vec<libc::pollfd> = self
                    .fds
                    .iter()
                    .map(|&(fd, _, writes)| libc::pollfd {
                        fd,
                        events: libc::POLLIN | if writes { libc::POLLOUT } else { 0 },
                        revents: 0,
                    })
                    .collect();
                let millis = delay.as_millis().min(1000) as libc::c_int;
                // SAFETY: `fds` is a valid slice of pollfd for its length.
                unsafe {
                    libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis);
                }
                for (fd, entry) in fds.iter().zip(&self.fds) {
                    if fd.revents != 0 {
                        ready.push(entry.1);
                    }
                }
            }
            #[cfg(not(unix))]
            {
                std::thread::sleep(delay.min(Duration::from_millis(1)));
                let _ = ready;
            }
            let _ = Duration::ZERO;
            Ok(())
        }
    }
}
