//! The simulated world: the broker on turmoil's network (a [`Listener`] for turmoil's listener), our
//! client dialing through turmoil (a [`Dialer`]), a trace of what the clients saw in simulated time,
//! and the faults the test applies between steps.
//!
//! Time: every host starts at 0 and every instant here is simulated time since the start
//! ([`now`]), so instants from different hosts compare. Network faults are applied by the test
//! between steps ([`World::advance_to`] then [`World::partition`], ...), so they happen at exact
//! instants too.

use std::fmt::{self, Write as _};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use mqtt_broker::server::{Listener, Server, Statistics};
use mqtt_broker::{Broker, Config};
use mqtt_client::probe::{Probe, ProbeOptions};
use mqtt_client::transport::{BoxedStream, DialFuture, Dialer};
use mqtt_client::{Client, ClientError, ConnectOptions, Event};
use mqtt_protocol::{Connect, Packet, Properties, PropertyFields, ProtocolVersion, Publish};
use tokio::sync::mpsc;
use tokio::time::timeout;
use turmoil::{Builder, Sim};

pub const BROKER_HOST: &str = "broker";
pub const BROKER_PORT: u16 = 1883;

/// Coarse on purpose: every host is stepped every tick, and the scenarios last tens of seconds.
pub const TICK: Duration = Duration::from_millis(10);

/// 2023-11-14T22:13:20Z. Any fixed instant does; it must only be the same on every run.
const EPOCH_SINCE_UNIX: Duration = Duration::from_secs(1_700_000_000);

/// How the simulated network behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// No latency (a segment is delivered at the receiver's next turn, so each hop costs at most a
    /// tick) and the hosts run in a fixed order each step. For timing windows.
    Exact,
    /// turmoil's default latency, drawn from the seeded generator: 0 to 100 ms, exponential. The
    /// seed then shapes the run.
    Random,
    /// Random latency, and the hosts run in a random (seeded) order each step: more interleavings
    /// per seed.
    Shuffled,
}

/// turmoil's listener, so that the broker's server runs on the simulated network (the orphan rule
/// forbids implementing [`Listener`] for turmoil's type here).
pub struct SimListener(pub turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(turmoil::net::TcpStream, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Dials the broker over turmoil's network, once per (re)connect.
#[derive(Debug, Clone)]
pub struct SimDialer {
    pub host: String,
    pub port: u16,
}

impl SimDialer {
    pub fn broker() -> SimDialer {
        SimDialer {
            host: BROKER_HOST.to_owned(),
            port: BROKER_PORT,
        }
    }
}

impl Dialer for SimDialer {
    fn dial(&self) -> DialFuture {
        let host = self.host.clone();
        let port = self.port;
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }

    fn describe(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Simulated time since the start. Only inside a host (or a task it spawned).
pub fn now() -> Duration {
    turmoil::sim_elapsed().expect("simulated time is read inside a simulated host")
}

/// Sleeps until simulated instant `at` (at once if it has passed).
pub async fn sleep_until(at: Duration) {
    tokio::time::sleep(at.saturating_sub(now())).await;
}

/// `12.340000`: seconds and microseconds, so that any drift shows in a trace comparison.
pub fn instant(at: Duration) -> String {
    format!("{}.{:06}", at.as_secs(), at.subsec_micros())
}

/// What the clients saw, one line per event: `<simulated time> <who>: <what>`. Lines are appended
/// in the order the single simulation thread runs them, so two runs with one seed compare equal.
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    /// Records `what` at the current simulated time (inside a host).
    pub fn record(&self, who: &str, what: impl fmt::Display) {
        self.record_at(now(), who, what);
    }

    pub fn record_at(&self, at: Duration, who: &str, what: impl fmt::Display) {
        let line = format!("{:>10} {who}: {what}", instant(at));
        self.0.lock().expect("trace lock").push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("trace lock").clone()
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A value the hosts fill in and the test reads after the run.
pub type Shared<T> = Arc<Mutex<T>>;

pub fn shared<T: Default>() -> Shared<T> {
    Arc::new(Mutex::new(T::default()))
}

/// One simulation: seed, broker host, client hosts, faults at exact instants, and the trace.
pub struct World {
    pub sim: Sim<'static>,
    pub seed: u64,
    pub trace: Trace,
    /// The server counters of each broker run (one per start of the host).
    broker_statistics: Shared<Vec<Arc<Statistics>>>,
}

impl World {
    /// A simulation with an explicit seed and epoch, 10 ms ticks, at most `duration` simulated,
    /// and the broker (default config) listening on `broker:1883`.
    pub fn new(seed: u64, duration: Duration, network: Network) -> World {
        let mut builder = Builder::new();
        builder
            .rng_seed(seed)
            .epoch(UNIX_EPOCH + EPOCH_SINCE_UNIX)
            .tick_duration(TICK)
            .simulation_duration(duration);
        match network {
            Network::Exact => {
                builder
                    .min_message_latency(Duration::ZERO)
                    .max_message_latency(Duration::ZERO);
            }
            Network::Random => {}
            Network::Shuffled => {
                builder.enable_random_order();
            }
        }
        let mut sim = builder.build();
        let broker_statistics: Shared<Vec<Arc<Statistics>>> = shared();
        let statistics_out = broker_statistics.clone();
        // A factory: turmoil may restart a host, which runs the broker afresh (sessions are in
        // memory, so a restart loses them, as a real restart would).
        sim.host(BROKER_HOST, move || {
            let statistics_out = statistics_out.clone();
            async move {
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", BROKER_PORT)).await?;
                let server = Server::new(vec![SimListener(listener)], Broker::new(Config::default()));
                statistics_out
                    .lock()
                    .expect("statistics lock")
                    .push(server.statistics());
                server.run(std::future::pending::<()>()).await;
                Ok(())
            }
        });
        // The broker boots (binds its port) in a step of its own, before any client host exists:
        // with a shuffled host order a client could otherwise dial before the bind.
        sim.step().expect("the broker starts");
        World {
            sim,
            seed,
            trace: Trace::default(),
            broker_statistics,
        }
    }

    /// A host running `software` (several MQTT clients, usually); the run ends when every such
    /// host has returned.
    pub fn client<F>(&mut self, host: &str, software: F)
    where
        F: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.client(host, software);
    }

    /// Steps the simulation until `at` (simulated); the hosts must still be running then.
    pub fn advance_to(&mut self, at: Duration) {
        while self.sim.elapsed() < at {
            match self.sim.step() {
                Ok(false) => {}
                Ok(true) => self.fail(format!("every client host finished before {}", instant(at))),
                Err(error) => self.fail(error),
            }
        }
    }

    /// Every segment between `a` and `b` is dropped from now on (TCP never retransmits: the
    /// connections across are dead, and connects fail).
    pub fn partition(&mut self, a: &str, b: &str) {
        self.sim.partition(a, b);
        self.note(format!("partition {a} <-> {b}"));
    }

    pub fn repair(&mut self, a: &str, b: &str) {
        self.sim.repair(a, b);
        self.note(format!("repair {a} <-> {b}"));
    }

    /// Every segment from `from` to `to` is dropped from now on; the other way still works.
    pub fn partition_oneway(&mut self, from: &str, to: &str) {
        self.sim.partition_oneway(from, to);
        self.note(format!("partition {from} -> {to}"));
    }

    pub fn repair_oneway(&mut self, from: &str, to: &str) {
        self.sim.repair_oneway(from, to);
        self.note(format!("repair {from} -> {to}"));
    }

    /// Segments between `a` and `b` wait (TCP rides it out) until [`World::release`].
    pub fn hold(&mut self, a: &str, b: &str) {
        self.sim.hold(a, b);
        self.note(format!("hold {a} <-> {b}"));
    }

    pub fn release(&mut self, a: &str, b: &str) {
        self.sim.release(a, b);
        self.note(format!("release {a} <-> {b}"));
    }

    fn note(&self, what: String) {
        self.trace.record_at(self.sim.elapsed(), "net", what);
    }

    /// Crashes the broker host: its software and every socket go (peers see a clean close).
    pub fn crash_broker(&mut self) {
        self.sim.crash(BROKER_HOST);
        self.note("crash broker".into());
    }

    /// Starts the broker host's software again, from its factory: a new, empty broker.
    pub fn restart_broker(&mut self) {
        self.sim.bounce(BROKER_HOST);
        self.note("restart broker".into());
    }

    /// The server counters of each run of the broker host, in order.
    pub fn broker_statistics(&self) -> Vec<Arc<Statistics>> {
        self.broker_statistics.lock().expect("statistics lock").clone()
    }

    /// Runs until every client host has returned; fails with the seed and the trace otherwise.
    /// Returns the trace (also printed, which the test harness shows on failure).
    pub fn finish(&mut self) -> Vec<String> {
        if let Err(error) = self.sim.run() {
            self.fail(error);
        }
        // The broker's side, so that a comparison of traces covers it too.
        for (run, statistics) in self
            .broker_statistics
            .lock()
            .expect("statistics lock")
            .iter()
            .enumerate()
        {
            let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            self.trace.record_at(
                self.sim.elapsed(),
                BROKER_HOST,
                format!(
                    "run {run}: {} connections accepted, {} open, {} packets received, {} sent, {} decode errors",
                    count(&statistics.connections_accepted),
                    count(&statistics.connections_open),
                    count(&statistics.packets_received),
                    count(&statistics.packets_sent),
                    count(&statistics.decode_errors),
                ),
            );
        }
        eprintln!(
            "simulation seed {} ended at {}\n{}",
            self.seed,
            instant(self.sim.elapsed()),
            self.trace
        );
        self.trace.lines()
    }

    fn fail(&self, error: impl fmt::Display) -> ! {
        panic!(
            "the simulation with seed {} failed at {}: {error}\n--- trace ---\n{}",
            self.seed,
            instant(self.sim.elapsed()),
            self.trace
        );
    }
}

/// One of our clients in the simulation, with every event it emits recorded at its arrival time.
pub struct Peer {
    pub name: String,
    pub client: Client,
    events: mpsc::UnboundedReceiver<(Duration, Event)>,
}

impl Peer {
    /// Connects `options.client_id` to the broker through turmoil. A task takes every event as it
    /// arrives, records it in `trace` and hands it on with its simulated time; unbounded, so the
    /// client is never held back by a test that is not reading (the scenarios are finite).
    pub async fn connect(trace: &Trace, options: ConnectOptions) -> Result<Peer, ClientError> {
        let name = options.client_id.clone();
        let (client, mut events) = Client::connect_with(Arc::new(SimDialer::broker()), options).await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let trace = trace.clone();
        let who = name.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let at = now();
                trace.record_at(at, &who, describe_event(&event));
                // The peer may be gone; the trace still wants the rest.
                let _ = sender.send((at, event));
            }
        });
        Ok(Peer {
            name,
            client,
            events: receiver,
        })
    }

    /// The next event that satisfies `wanted`, no later than simulated instant `deadline`.
    pub async fn wait_for(
        &mut self,
        deadline: Duration,
        mut wanted: impl FnMut(&Event) -> bool,
    ) -> Option<(Duration, Event)> {
        loop {
            let left = deadline.checked_sub(now())?;
            match timeout(left, self.events.recv()).await {
                Ok(Some((at, event))) if wanted(&event) => return Some((at, event)),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every message that arrives until simulated instant `deadline`, or until `count_max` did.
    pub async fn messages_until(&mut self, deadline: Duration, count_max: usize) -> Vec<(Duration, Publish)> {
        let mut messages = Vec::new();
        while messages.len() < count_max {
            match self
                .wait_for(deadline, |event| matches!(event, Event::Message(_)))
                .await
            {
                Some((at, Event::Message(publish))) => messages.push((at, publish)),
                _ => break,
            }
        }
        messages
    }
}

pub fn describe_event(event: &Event) -> String {
    match event {
        Event::Connected { session_present, .. } => {
            format!("connected session_present={}", u8::from(*session_present))
        }
        Event::Message(publish) => describe_publish(publish),
        Event::SessionDiscarded { inflight_dropped_count } => {
            format!("session discarded ({inflight_dropped_count} in flight dropped)")
        }
        Event::Disconnected { reason } => format!("disconnected: {reason}"),
        Event::Reconnecting { attempt, delay } => {
            format!("reconnecting: attempt {attempt} after {} ms", delay.as_millis())
        }
    }
}

pub fn describe_publish(publish: &Publish) -> String {
    let mut text = format!(
        "message {} '{}' qos={} dup={} retain={}",
        publish.topic,
        String::from_utf8_lossy(&publish.payload),
        publish.qos.as_u8(),
        u8::from(publish.dup),
        u8::from(publish.retain),
    );
    if let Some(packet_id) = publish.packet_id {
        let _ = write!(text, " id={packet_id}");
    }
    text
}

/// A packet-level client over turmoil: it does exactly what the script says (our [`Client`]
/// cannot resume a session it holds no state for, see the tests).
pub async fn probe() -> Result<Probe, io::Error> {
    let stream = timeout(Duration::from_secs(5), SimDialer::broker().dial())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no connection to the broker within 5 s"))??;
    Ok(Probe::new(stream, ProbeOptions::client()))
}

/// A 5.0 CONNECT for the probe.
pub fn connect_packet(client_id: &str, clean_start: bool, session_expiry_interval_s: u32) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start,
        keep_alive_s: 60,
        client_id: client_id.to_owned(),
        properties: Properties::from(PropertyFields {
            session_expiry_interval_s: Some(session_expiry_interval_s),
            ..PropertyFields::default()
        }),
        ..Connect::default()
    }))
}
