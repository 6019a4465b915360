//! Running a scenario live: real sockets on loopback to the broker under test, each client a
//! fault names through a fault proxy of its own in dead-link mode (so a partition means what it
//! means under `sim`), windows in real time with a fixed tolerance.
//!
//! Every run has a topic prefix and a client id prefix of its own (`mh/<id>/`, `mh<id>-`), so
//! runs can share a broker, and afterwards clears what it left there: retained messages on the
//! topics it published or willed retained, and the persistent sessions of its client ids.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mqtt_client::options::Scheme;
use mqtt_client::transport::{dialer_over, Dialer, TcpDialer, TlsOptions, TlsSetupError};
use mqtt_client::BrokerUrl;
use mqtt_client::{Client, ConnectOptions, Message};
use mqtt_protocol::{Packet, ProtocolVersion, QoS};
use tokio::time::{timeout, Instant};

use super::fault_proxy::{FaultProxy, Flow, ProxyOptions};
use super::target::{Target, TargetSpec};
use crate::engine::{self, Names, Outcome, RunOptions, Verdict, Wires, World};
use crate::scenario::{Direction, Fault, Scenario};
use crate::sim::broker_config;
use crate::wire::{Clock, Trace, Way};

/// The tolerance added to a window's upper bound live, by default: 1 s, for brokers that keep
/// time in whole seconds. `run --tolerance-ms` may lower it; nothing raises it.
pub const TOLERANCE_DEFAULT: Duration = Duration::from_secs(1);

/// How long past a deadline the driver waits for the news of what happened before it.
const GRACE: Duration = Duration::from_millis(100);

/// Real time a run may take beyond the scenario's own bound (the end of the run, liveness).
const DURATION_MARGIN: Duration = Duration::from_secs(45);

/// How long clearing what a run left may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run live.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub strict: bool,
    /// At most [`TOLERANCE_DEFAULT`].
    pub tolerance: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Multiplies how long expectations wait (not windows).
    pub timeout_scale: f64,
    /// CA file, client certificate, `--insecure`, for a target URL of mqtts:// or wss://.
    pub tls: TlsOptions,
    /// The URL whose transport the connections speak (TLS server name, WebSocket path), when it is
    /// not the target's own: `check` reaches a broker at the address that answered, but verifies
    /// the name its URL gave.
    pub transport_url: Option<BrokerUrl>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            strict: false,
            tolerance: TOLERANCE_DEFAULT,
            username: None,
            password: None,
            timeout_scale: 1.0,
            tls: TlsOptions::default(),
            transport_url: None,
        }
    }
}

/// One live run.
pub struct LiveRun {
    pub version: ProtocolVersion,
    pub outcome: Outcome,
    pub trace: Trace,
    pub elapsed: Duration,
}

/// A name no other run has (8 hex digits). The process draws a random base once (the clock and
/// its id); each run's name is the base mixed with the run's count by a bijection, so no two runs
/// of one process ever share a name (mixing the clock into every call did not promise that: two
/// calls a few nanoseconds apart could land on one name).
pub fn run_id() -> String {
    static BASE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        (crate::swarm::SplitMix64::new(nanos ^ (u64::from(std::process::id()) << 32)).next_u64() >> 32) as u32
    });
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) as u32;
    // Multiplying by an odd number is a bijection of u32, and so is XOR with the base.
    format!("{:08x}", base ^ count.wrapping_mul(0x9E37_79B1))
}

struct LiveWorld {
    start: Instant,
    trace: Trace,
    names: Names,
    broker: SocketAddr,
    /// The target's transport (TCP, or a URL's TLS / WebSocket) over TCP to the broker and to each
    /// fault proxy, made once: TLS files are read when the world is made, not per connection.
    dialers: BTreeMap<SocketAddr, Arc<dyn Dialer>>,
    proxies: BTreeMap<String, FaultProxy>,
    target: RefCell<Option<Target>>,
    tolerance: Duration,
}

impl LiveWorld {
    /// A dialer of the target's transport, over TCP to `address`.
    fn dialer_to(&self, address: SocketAddr) -> Arc<dyn Dialer> {
        match self.dialers.get(&address) {
            Some(dialer) => dialer.clone(),
            // Every address the world dials is the broker's or a proxy's, made with the world.
            None => Arc::new(TcpDialer::from_socket_address(address)),
        }
    }
}

/// TCP to `address`, or `transport`'s TLS / WebSocket over it. Fails only on TLS files that
/// cannot be used.
fn transport_dialer(
    transport: Option<&(BrokerUrl, TlsOptions)>,
    address: SocketAddr,
) -> Result<Arc<dyn Dialer>, TlsSetupError> {
    let tcp = TcpDialer::from_socket_address(address);
    match transport {
        None => Ok(Arc::new(tcp)),
        Some((url, tls)) => dialer_over(tcp, url, tls),
    }
}

impl World for LiveWorld {
    fn clock(&self) -> Clock {
        let start = self.start;
        Clock::new(move || start.elapsed())
    }

    fn trace(&self) -> Trace {
        self.trace.clone()
    }

    fn names(&self) -> &Names {
        &self.names
    }

    fn dialer(&self, client: &str) -> Arc<dyn Dialer> {
        let address = self.proxies.get(client).map_or(self.broker, FaultProxy::address);
        self.dialer_to(address)
    }

    fn spawn(&self, _client: &str, actor: Pin<Box<dyn Future<Output = ()>>>) {
        tokio::task::spawn_local(actor);
    }

    async fn apply(&self, fault: &Fault) -> Result<(), String> {
        self.trace.event(self.start.elapsed(), "net", fault.to_string());
        let proxy = match fault.client() {
            Some(client) => Some(
                self.proxies
                    .get(client)
                    .ok_or_else(|| format!("{client} has no proxy (a bug: every faulted client gets one)"))?,
            ),
            None => None,
        };
        match (fault, proxy) {
            (Fault::Partition { direction, .. }, Some(proxy)) => match direction {
                Direction::Both => proxy.partition(),
                Direction::ToBroker => proxy.partition_flow(Flow::ClientToBroker),
                Direction::FromBroker => proxy.partition_flow(Flow::BrokerToClient),
            },
            (Fault::Repair { .. }, Some(proxy)) => proxy.repair(),
            (Fault::Hold { .. }, Some(proxy)) => proxy.hold(),
            (Fault::Release { .. }, Some(proxy)) => proxy.release(),
            (Fault::Latency { latency, .. }, Some(proxy)) => proxy.set_latency(*latency),
            (Fault::Reset { .. }, Some(proxy)) => proxy.reset(),
            (Fault::BrokerCrash, _) | (Fault::BrokerRestart, _) => {
                // Held across the await: nothing else in this run touches the target meanwhile.
                let mut target = self.target.borrow_mut().take();
                let result = match target.as_mut() {
                    Some(target) if *fault == Fault::BrokerCrash => target.crash().await,
                    Some(target) => target.restart().await,
                    None => Err("no broker to act on".to_owned()),
                };
                *self.target.borrow_mut() = target;
                return result;
            }
            (_, None) => return Err(format!("`{fault}` needs a client")),
        }
        Ok(())
    }

    fn resets_links(&self) -> bool {
        true
    }

    fn tolerance(&self) -> Duration {
        self.tolerance
    }

    fn early_tolerance(&self) -> Duration {
        // A measured instant can only be late (the broker hears of a packet after it is sent).
        Duration::ZERO
    }

    fn grace(&self) -> Duration {
        GRACE
    }
}

/// Runs `scenario` in `version` against the target. Must run inside a `LocalSet`. The caller
/// has checked that the target supports what the scenario requires.
pub async fn run(scenario: &Scenario, version: ProtocolVersion, spec: &TargetSpec, options: &LiveOptions) -> LiveRun {
    let start = Instant::now();
    let trace = Trace::default();
    let failed = |message: String| LiveRun {
        version,
        outcome: Outcome {
            verdict: Verdict::Fail,
            failure: Some(engine::Failure {
                line: None,
                message,
                expected: String::new(),
                actual: String::new(),
            }),
            notes: Vec::new(),
            behaviour: Vec::new(),
        },
        trace: trace.clone(),
        elapsed: start.elapsed(),
    };
    let target = match Target::start(spec, broker_config(scenario.broker.as_ref())).await {
        Ok(target) => target,
        Err(error) => return failed(format!("the broker under test did not start: {error}")),
    };
    let Some(broker) = target.address() else {
        return failed("the broker under test has no address".to_owned());
    };
    let transport_url = match spec {
        TargetSpec::Url(url) => options.transport_url.as_ref().or(Some(url)),
        _ => None,
    };
    let transport = transport_url
        .filter(|url| url.scheme != Scheme::Mqtt)
        .map(|url| (url.clone(), options.tls.clone()));
    let mut proxies = BTreeMap::new();
    for client in scenario.faulted_clients() {
        let options = ProxyOptions {
            dead_link: true,
            ..ProxyOptions::default()
        };
        match FaultProxy::start_with(broker, options).await {
            Ok(proxy) => {
                proxies.insert(client, proxy);
            }
            Err(error) => return failed(format!("the fault proxy did not start: {error}")),
        }
    }
    let mut dialers = BTreeMap::new();
    for address in std::iter::once(broker).chain(proxies.values().map(FaultProxy::address)) {
        match transport_dialer(transport.as_ref(), address) {
            Ok(dialer) => {
                dialers.insert(address, dialer);
            }
            Err(error) => return failed(error.to_string()),
        }
    }
    let id = run_id();
    let world = Rc::new(LiveWorld {
        start,
        trace: trace.clone(),
        names: Names {
            topic_prefix: format!("mh/{id}/"),
            client_id_prefix: format!("mh{id}-"),
            username: options.username.clone(),
            password: options.password.clone(),
        },
        broker,
        dialers,
        proxies,
        target: RefCell::new(Some(target)),
        tolerance: options.tolerance.min(TOLERANCE_DEFAULT),
    });
    let run_options = RunOptions {
        strict: options.strict,
        timeout_scale: options.timeout_scale,
        ..RunOptions::default()
    };
    let bound = scenario.duration + DURATION_MARGIN;
    let outcome = match timeout(
        bound,
        engine::run_with_wires(world.clone(), scenario, version, &run_options),
    )
    .await
    {
        Ok((outcome, wires)) => {
            if matches!(spec, TargetSpec::Url(_)) {
                if let Err(error) = cleanup(&wires, world.dialer_to(broker), &world.names, version).await {
                    trace.event(start.elapsed(), "harness", format!("cleanup incomplete: {error}"));
                }
            }
            outcome
        }
        Err(_) => Outcome {
            verdict: Verdict::Fail,
            failure: Some(engine::Failure {
                line: None,
                message: format!("the run did not end within {} s", bound.as_secs()),
                expected: String::new(),
                actual: String::new(),
            }),
            notes: Vec::new(),
            behaviour: Vec::new(),
        },
    };
    LiveRun {
        version,
        outcome,
        trace,
        elapsed: start.elapsed(),
    }
}

/// Clears what a run left on a shared broker: the retained messages of the topics its clients
/// published or willed with RETAIN, and the sessions of its client ids that outlive a
/// connection (a clean start with no expiry ends them).
pub async fn cleanup(
    wires: &Wires,
    dialer: Arc<dyn Dialer>,
    names: &Names,
    version: ProtocolVersion,
) -> Result<(), String> {
    let mut topics = BTreeSet::new();
    let mut sessions = BTreeSet::new();
    for wire in wires.values() {
        let state = wire.state();
        for record in state.records.iter().filter(|record| record.way == Way::Sent) {
            match &record.packet {
                Some(Packet::Publish(publish)) if publish.retain && !publish.topic.is_empty() => {
                    topics.insert(publish.topic.clone());
                }
                Some(Packet::Connect(connect)) => {
                    if let Some(will) = connect.will.as_ref().filter(|will| will.retain) {
                        topics.insert(will.topic.as_str().into());
                    }
                    let persistent = match connect.protocol {
                        ProtocolVersion::V5 => connect.properties.session_expiry_interval_s.unwrap_or(0) > 0,
                        _ => !connect.clean_start,
                    };
                    if persistent && !connect.client_id.is_empty() {
                        sessions.insert((connect.client_id.clone(), connect.protocol));
                    }
                }
                _ => {}
            }
        }
    }
    let options = |client_id: String, version: ProtocolVersion| {
        let mut options = ConnectOptions::new(client_id).version(version);
        options.user_name = names.username.clone();
        options.password = names.password.clone().map(|password| password.into_bytes().into());
        options.connect_timeout = CLEANUP_TIMEOUT;
        options.request_timeout = CLEANUP_TIMEOUT;
        options
    };
    let work = async {
        if !topics.is_empty() {
            let (client, _events) = Client::connect_with(dialer.clone(), options(names.client_id("cleanup"), version))
                .await
                .map_err(|error| error.to_string())?;
            for topic in &topics {
                let mut message = Message::new(topic.clone(), Vec::<u8>::new(), QoS::AtLeastOnce);
                message.retain = true;
                client
                    .publish_and_wait(message)
                    .await
                    .map_err(|error| error.to_string())?;
            }
            let _ = client.disconnect().await;
        }
        for (client_id, version) in &sessions {
            // Clean Start 1 and no Session Expiry: the session ends with this connection.
            let (client, _events) = Client::connect_with(dialer.clone(), options(client_id.clone(), *version))
                .await
                .map_err(|error| error.to_string())?;
            let _ = client.disconnect().await;
        }
        Ok::<(), String>(())
    };
    timeout(CLEANUP_TIMEOUT * 2, work)
        .await
        .map_err(|_| format!("not done within {} s", (CLEANUP_TIMEOUT * 2).as_secs()))?
}

/// What became of one job of [`run_many`].
pub enum LiveOutcome {
    /// The target cannot do what the scenario requires; why.
    NotApplicable(String),
    Ran(Box<LiveRun>),
}

/// Runs every `(scenario index, version)` job against the target, `concurrency` at a time, each
/// thread with a runtime of its own, calling `done` as each ends; outcomes in the order of
/// `jobs`. A scenario requiring what the target cannot do is not applicable, with the reason.
pub fn run_many(
    scenarios: &[Scenario],
    jobs: &[(usize, ProtocolVersion)],
    spec: &TargetSpec,
    options: &LiveOptions,
    concurrency: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<LiveOutcome> {
    let next = AtomicU64::new(0);
    let outcomes: std::sync::Mutex<Vec<Option<LiveOutcome>>> =
        std::sync::Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "cannot start a runtime");
                        return;
                    }
                };
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((scenario_index, version)) = jobs.get(index) else {
                        return;
                    };
                    let scenario = &scenarios[*scenario_index];
                    let outcome = match scenario
                        .requires
                        .iter()
                        .find_map(|requirement| spec.supports(*requirement).err())
                    {
                        Some(reason) => LiveOutcome::NotApplicable(format!("not applicable: {reason}")),
                        None => {
                            let local = tokio::task::LocalSet::new();
                            let run = runtime.block_on(local.run_until(run(scenario, *version, spec, options)));
                            LiveOutcome::Ran(Box::new(run))
                        }
                    };
                    done();
                    outcomes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[index] = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| LiveOutcome::NotApplicable("not run: no runtime could start".to_owned()))
        })
        .collect()
}
