//! The simulated world: the reference broker and the scenario's clients on turmoil's network,
//! from a seed that replays the run exactly.
//!
//! - **Seed and time.** Every run takes an explicit seed (turmoil's random generator: the order
//!   hosts run in each step, and under `--swarm` the faults) and a fixed epoch. Links have no
//!   latency of their own, so a hop costs at most a tick and timing windows stay a tick or two
//!   wide; the seed shapes the interleaving. The same seed gives the same trace, byte for byte.
//! - **Hosts.** `broker` runs the reference broker from a factory (a crash loses its sessions, a
//!   restart starts it afresh); `driver` runs the engine and the clients no fault names; each
//!   client a fault names gets a host of its own, `c-<name>`, so the fault hits its link alone.
//! - **Faults.** Partitions, holds and repairs are turmoil's, applied from inside the simulation
//!   at the exact instant; latency needs the simulation itself, so the driver queues it and the
//!   loop applies it at the end of the step. A broker crash drops the server at once (its tasks
//!   and sockets go, with no DISCONNECT) and a restart serves afresh on the same port; the broker
//!   host does both itself when told, rather than through turmoil's crash, which drops tasks in
//!   an order that depends on tokio's process-wide task ids and so breaks replay. turmoil's TCP never
//!   retransmits: a partition leaves a connection dead (it stalls; keep alive finds out), which
//!   is what the live fault proxy's dead-link mode imitates. A reset kills the client's
//!   connections from its side.
//! - **Tolerance.** Instants are recorded where packets are seen, within the tick; a window gets
//!   a tick for each hop between client and broker (two) on either side.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use mqtt_broker::server::{Listener, Server, Statistics};
use mqtt_broker::{Broker, Config};
use mqtt_client::transport::{BoxedStream, DialFuture, Dialer};
use mqtt_protocol::{ProtocolVersion, QoS};
use tokio::sync::{oneshot, watch};
use turmoil::{Builder, Sim};

use crate::engine::{self, Names, Outcome, RunOptions, Verdict, World};
use crate::scenario::{BrokerSettings, Direction, Fault, Scenario};
use crate::wire::{Clock, Trace};

pub const BROKER_HOST: &str = "broker";
pub const BROKER_PORT: u16 = 1883;
const DRIVER_HOST: &str = "driver";

/// 2023-11-14T22:13:20Z. Any fixed instant does; it must only be the same on every run.
const EPOCH_SINCE_UNIX: Duration = Duration::from_secs(1_700_000_000);

/// Simulated time a run may take beyond the scenario's own bound: the end of the run (clients
/// disconnecting) and, for liveness, the settling of the invariants.
const DURATION_MARGIN: Duration = Duration::from_secs(45);

/// Changes the reference broker's configuration before it starts (the planted bugs of the
/// `mutations` feature are switched on this way).
pub type Configure = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// How to run a scenario under simulation.
#[derive(Clone, Default)]
pub struct SimOptions {
    pub seed: u64,
    /// Adds a random mix of latency, holds and partitions from the seed; the verdict is then
    /// the invariants'.
    pub swarm: bool,
    pub strict: bool,
    /// Replaces the scenario's tick.
    pub tick: Option<Duration>,
    pub configure: Option<Configure>,
}

/// One simulated run.
pub struct SimRun {
    pub seed: u64,
    pub version: ProtocolVersion,
    pub outcome: Outcome,
    pub trace: Trace,
    /// Simulated time at the end.
    pub simulated: Duration,
    /// The faults `--swarm` added, to export or replay.
    pub swarm_faults: Vec<(Duration, Fault)>,
}

/// The reference broker's configuration for a scenario.
pub fn broker_config(settings: Option<&BrokerSettings>) -> Config {
    let mut config = Config::default();
    let Some(settings) = settings else { return config };
    fn set<T>(target: &mut T, value: Option<T>) {
        if let Some(value) = value {
            *target = value;
        }
    }
    config.server_keep_alive_s = settings.server_keep_alive_s.or(config.server_keep_alive_s);
    set(&mut config.receive_maximum, settings.receive_maximum);
    set(&mut config.inflight_count_max, settings.inflight_count_max);
    set(&mut config.queued_messages_max, settings.queued_messages_max);
    set(&mut config.retained_messages_max, settings.retained_messages_max);
    set(&mut config.maximum_packet_size, settings.maximum_packet_size);
    set(&mut config.topic_alias_maximum, settings.topic_alias_maximum);
    set(&mut config.retain_available, settings.retain_available);
    set(
        &mut config.wildcard_subscription_available,
        settings.wildcard_subscription_available,
    );
    set(
        &mut config.subscription_identifier_available,
        settings.subscription_identifier_available,
    );
    set(
        &mut config.shared_subscription_available,
        settings.shared_subscription_available,
    );
    if let Some(qos) = settings.maximum_qos.and_then(|qos| QoS::from_u8(qos.0)) {
        config.maximum_qos = qos;
    }
    config
}

/// turmoil's listener, so that the broker's server runs on the simulated network (the orphan rule
/// forbids implementing [`Listener`] for turmoil's type outside this crate's own wrapper).
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

/// Dials the broker over turmoil's network, from whichever host runs the dial.
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

/// What the driver asks of the simulation itself, between steps.
#[derive(Debug, Clone)]
enum Control {
    Latency { host: String, latency: Duration },
}

type ActorFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The world as the engine sees it inside the simulation.
struct SimWorld {
    trace: Trace,
    names: Names,
    tick: Duration,
    /// The clients with a host of their own, and the channel that hands each its actor.
    hosts: RefCell<BTreeMap<String, oneshot::Sender<ActorFuture>>>,
    own_hosts: BTreeSet<String>,
    controls: Rc<RefCell<VecDeque<Control>>>,
    /// Whether the broker should be serving: the broker host follows it.
    broker_up: Rc<watch::Sender<bool>>,
}

fn host_of(client: &str) -> String {
    format!("c-{client}")
}

impl World for SimWorld {
    fn clock(&self) -> Clock {
        Clock::new(|| turmoil::sim_elapsed().unwrap_or_default())
    }

    fn trace(&self) -> Trace {
        self.trace.clone()
    }

    fn names(&self) -> &Names {
        &self.names
    }

    fn dialer(&self, _client: &str) -> Arc<dyn Dialer> {
        // The host a dial runs on is the one the connection comes from: the actor's.
        Arc::new(SimDialer::broker())
    }

    fn spawn(&self, client: &str, actor: ActorFuture) {
        match self.hosts.borrow_mut().remove(client) {
            // The host waits for its actor; if it is gone, the run is ending anyway.
            Some(host) => {
                let _ = host.send(actor);
            }
            None => {
                tokio::task::spawn_local(actor);
            }
        }
    }

    async fn apply(&self, fault: &Fault) -> Result<(), String> {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        self.trace.event(now, "net", fault.to_string());
        if let Some(client) = fault.client() {
            if !self.own_hosts.contains(client) {
                return Err(format!(
                    "{client} has no host of its own (a bug: every faulted client gets one)"
                ));
            }
        }
        let host = fault.client().map(host_of).unwrap_or_default();
        match fault {
            Fault::Partition { direction, .. } => match direction {
                Direction::Both => turmoil::partition(host.as_str(), BROKER_HOST),
                Direction::ToBroker => turmoil::partition_oneway(host.as_str(), BROKER_HOST),
                Direction::FromBroker => turmoil::partition_oneway(BROKER_HOST, host.as_str()),
            },
            // Ends one-way partitions too; held segments stay held until released.
            Fault::Repair { .. } => turmoil::repair(host.as_str(), BROKER_HOST),
            Fault::Hold { .. } => turmoil::hold(host.as_str(), BROKER_HOST),
            Fault::Release { .. } => turmoil::release(host.as_str(), BROKER_HOST),
            Fault::Reset { .. } => return Err("a reset is the engine's to apply".to_owned()),
            Fault::Latency { latency, .. } => self.control(Control::Latency {
                host,
                latency: *latency,
            }),
            Fault::BrokerCrash => {
                self.broker_up.send_replace(false);
            }
            Fault::BrokerRestart => {
                self.broker_up.send_replace(true);
            }
        }
        if matches!(fault, Fault::Latency { .. }) {
            // The simulation applies it at the end of this step: wait for that.
            tokio::time::sleep(self.tick).await;
        }
        Ok(())
    }

    fn resets_links(&self) -> bool {
        false
    }

    // A tick per hop, and a window spans two (client to broker, broker to client): with one
    // tick, about a third of the seeds see our own broker's keep-alive close exactly a tick late.
    fn tolerance(&self) -> Duration {
        self.tick * 2
    }

    fn early_tolerance(&self) -> Duration {
        self.tick * 2
    }

    fn grace(&self) -> Duration {
        self.tick * 3
    }
}

impl SimWorld {
    fn control(&self, control: Control) {
        self.controls.borrow_mut().push_back(control);
    }
}

/// Runs `scenario` in `version` under simulation.
pub fn run(scenario: &Scenario, version: ProtocolVersion, options: &SimOptions) -> SimRun {
    let tick = options.tick.unwrap_or(scenario.tick);
    let swarm_faults = if options.swarm {
        crate::swarm::schedule(options.seed, scenario)
    } else {
        Vec::new()
    };
    let mut own_hosts = scenario.faulted_clients();
    own_hosts.extend(
        swarm_faults
            .iter()
            .filter_map(|(_, fault)| fault.client().map(str::to_owned)),
    );

    let mut builder = Builder::new();
    builder
        .rng_seed(options.seed)
        .epoch(UNIX_EPOCH + EPOCH_SINCE_UNIX)
        .tick_duration(tick)
        .simulation_duration(scenario.duration + DURATION_MARGIN)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .enable_random_order();
    let mut sim = builder.build();

    let trace = Trace::default();
    let statistics: Arc<Mutex<Vec<Arc<Statistics>>>> = Arc::default();
    let mut config = broker_config(scenario.broker.as_ref());
    if let Some(configure) = &options.configure {
        configure(&mut config);
    }
    let statistics_out = statistics.clone();
    let broker_up = Rc::new(watch::channel(true).0);
    let up_receiver = broker_up.subscribe();
    sim.host(BROKER_HOST, move || {
        let (config, statistics_out, mut up) = (config.clone(), statistics_out.clone(), up_receiver.clone());
        async move {
            loop {
                // Down: wait to be restarted.
                while !*up.borrow_and_update() {
                    if up.changed().await.is_err() {
                        return Ok(());
                    }
                }
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", BROKER_PORT)).await?;
                let server = Server::new(vec![SimListener(listener)], Broker::new(config.clone()));
                statistics_out
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(server.statistics());
                // Up until told to crash: dropping the server's future drops its tasks and
                // sockets in an order the simulation fixes.
                let crashed = async {
                    while *up.borrow_and_update() {
                        if up.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                };
                tokio::select! {
                    biased;
                    () = crashed => {}
                    _ = server.run(std::future::pending::<()>()) => {}
                }
            }
        }
    });
    // The broker binds its port in a step of its own, before any client host exists: with a
    // random host order a client could otherwise dial before the bind.
    let mut failure: Option<String> = sim.step().err().map(|error| error.to_string());

    let controls: Rc<RefCell<VecDeque<Control>>> = Rc::default();
    let outcome_slot: Rc<RefCell<Option<Outcome>>> = Rc::default();
    let mut hosts = BTreeMap::new();
    let mut receivers = Vec::new();
    for client in &own_hosts {
        let (sender, receiver) = oneshot::channel::<ActorFuture>();
        hosts.insert(client.clone(), sender);
        receivers.push((client.clone(), receiver));
    }
    let world = SimWorld {
        trace: trace.clone(),
        names: Names::default(),
        tick,
        hosts: RefCell::new(hosts),
        own_hosts: own_hosts.clone(),
        controls: controls.clone(),
        broker_up,
    };
    let run_options = RunOptions {
        strict: options.strict,
        extra_faults: swarm_faults.clone(),
        swarm: options.swarm,
        timeout_scale: 1.0,
    };
    let (scenario_owned, slot) = (scenario.clone(), outcome_slot.clone());
    sim.client(DRIVER_HOST, async move {
        let outcome = engine::run(Rc::new(world), &scenario_owned, version, &run_options).await;
        *slot.borrow_mut() = Some(outcome);
        Ok(())
    });
    for (client, receiver) in receivers {
        sim.client(host_of(&client).as_str(), async move {
            if let Ok(actor) = receiver.await {
                actor.await;
            }
            Ok(())
        });
    }

    while failure.is_none() {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => failure = Some(error.to_string()),
        }
        let pending: Vec<Control> = controls.borrow_mut().drain(..).collect();
        for control in pending {
            apply_control(&mut sim, control);
        }
    }
    let simulated = sim.elapsed();
    for (run, statistics) in statistics
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .enumerate()
    {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        trace.event(
            simulated,
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
    let outcome = match (outcome_slot.borrow_mut().take(), failure) {
        (Some(outcome), _) => outcome,
        (None, Some(error)) => Outcome {
            verdict: Verdict::Fail,
            failure: Some(engine::Failure {
                line: None,
                message: format!("the simulation stopped: {error}"),
                expected: format!(
                    "the run ends within {} s of simulated time",
                    (scenario.duration + DURATION_MARGIN).as_secs()
                ),
                actual: error,
            }),
            notes: Vec::new(),
            behaviour: Vec::new(),
        },
        (None, None) => Outcome {
            verdict: Verdict::Fail,
            failure: Some(engine::Failure {
                line: None,
                message: "the driver ended without an outcome".to_owned(),
                expected: String::new(),
                actual: String::new(),
            }),
            notes: Vec::new(),
            behaviour: Vec::new(),
        },
    };
    SimRun {
        seed: options.seed,
        version,
        outcome,
        trace,
        simulated,
        swarm_faults,
    }
}

fn apply_control(sim: &mut Sim<'_>, control: Control) {
    match control {
        Control::Latency { host, latency } => sim.set_link_latency(host.as_str(), BROKER_HOST, latency),
    }
}

/// One run of a sweep: which scenario (an index into the caller's list), version and options.
#[derive(Clone)]
pub struct Job {
    pub scenario: usize,
    pub version: ProtocolVersion,
    pub options: SimOptions,
}

/// Runs `jobs` on `threads` threads (each run is single-threaded and independent), calling
/// `done` as each ends; results come back in the order of `jobs`. A run that panics (a bug in
/// the harness or the broker) fails with the panic's message instead of ending the sweep.
pub fn run_many(
    scenarios: &[Scenario],
    jobs: &[Job],
    threads: usize,
    done: &(dyn Fn(usize, &SimRun) + Sync),
) -> Vec<SimRun> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SimRun>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else { return };
                let scenario = &scenarios[job.scenario];
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(scenario, job.version, &job.options)
                }))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                        .unwrap_or_else(|| "a panic".to_owned());
                    panicked(job, &message)
                });
                done(index, &run);
                results.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[index] = Some(run);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .zip(jobs)
        .map(|(run, job)| run.unwrap_or_else(|| panicked(job, "the run never ended")))
        .collect()
}

fn panicked(job: &Job, message: &str) -> SimRun {
    SimRun {
        seed: job.options.seed,
        version: job.version,
        outcome: Outcome {
            verdict: Verdict::Fail,
            failure: Some(engine::Failure {
                line: None,
                message: format!("the run panicked: {message}"),
                expected: String::new(),
                actual: String::new(),
            }),
            notes: Vec::new(),
            behaviour: Vec::new(),
        },
        trace: Trace::default(),
        simulated: Duration::ZERO,
        swarm_faults: Vec::new(),
    }
}
