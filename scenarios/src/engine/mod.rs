//! The engine: runs one scenario in one protocol version in a world it does not know. The world
//! ([`World`]: the simulation or the live one) says what time it is, where each client dials
//! from, how a fault is applied and how far a window may stretch; the engine drives the steps in
//! order, one actor per client doing what it is told ([`actor`]), and judges each expectation
//! ([`judge`]) and the run's invariants ([`invariants`]) from what the clients' wires recorded.
//!
//! The driver runs on one task. Faults scheduled at instants (`faults:` and `--swarm`) run on a
//! task beside it. Under `sim` both are on the driver's host, and every client named in a fault
//! on a host of its own.

pub mod actor;
pub mod invariants;
pub mod judge;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::probe::Pattern;
use mqtt_client::transport::Dialer;
use mqtt_client::{ConnectOptions, LastWill};
use mqtt_protocol::{
    Disconnect, Packet, PacketType, Properties, PropertyFields, ProtocolVersion, Publish, PublishAck, QoS, ReasonCode,
    Subscribe, Subscription, Unsubscribe,
};
use tokio::time::sleep;

use crate::scenario::{Action, ClientKind, ConnectSettings, Expect, Fault, Invariant, PublishPlan, Scenario, StepKind};
use crate::wire::{instant, Clock, KillSwitch, RecordingDialer, Trace, Wire};
use actor::{ActorHandle, Command, ACTION_TIMEOUT};
use invariants::Finding;
use judge::{Context, Status};

/// How long a run's invariants may take to settle after the last step when the scenario asks
/// for liveness without saying how long, or under `--swarm`.
pub const LIVENESS_DEFAULT: Duration = Duration::from_secs(30);

/// The world a scenario runs in. See the module documentation.
pub trait World: 'static {
    /// The time since the run's start.
    fn clock(&self) -> Clock;
    /// The run's trace.
    fn trace(&self) -> Trace;
    /// How topics and client ids are made unique for this run.
    fn names(&self) -> &Names;
    /// Dials the broker from where `client` lives: its own host or proxy when it has one.
    fn dialer(&self, client: &str) -> Arc<dyn Dialer>;
    /// Starts `actor` where `client` lives.
    fn spawn(&self, client: &str, actor: Pin<Box<dyn Future<Output = ()>>>);
    /// Applies `fault` now.
    fn apply(&self, fault: &Fault) -> impl Future<Output = Result<(), String>>;
    /// Whether [`World::apply`] resets a client's connections; if not, the engine ends them
    /// from the client's side.
    fn resets_links(&self) -> bool;
    /// Added to the upper bound of a window.
    fn tolerance(&self) -> Duration;
    /// Taken from the lower bound of a window before an arrival counts as early.
    fn early_tolerance(&self) -> Duration;
    /// How long past a deadline the driver keeps waiting for news of what happened before it.
    fn grace(&self) -> Duration;
}

/// Names unique to a run, so that runs can share a live broker: a topic prefix and a client id
/// prefix. Under `sim` both are empty (every run has a broker of its own). Also the credentials
/// every client presents unless the scenario gives its own (`run -u/-P`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Ends with `/` when not empty.
    pub topic_prefix: String,
    pub client_id_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Names {
    /// A topic name or filter of the scenario as this run spells it: `$share/{group}/` keeps its
    /// place in front, other `$` topics are the broker's and stay as they are.
    pub fn topic(&self, topic: &str) -> String {
        // An empty topic (a PUBLISH using a Topic Alias) stays empty.
        if self.topic_prefix.is_empty() || topic.is_empty() {
            return topic.to_owned();
        }
        if let Some(rest) = topic.strip_prefix("$share/") {
            if let Some((group, filter)) = rest.split_once('/') {
                return format!("$share/{group}/{}{filter}", self.topic_prefix);
            }
        }
        if topic.starts_with('$') {
            return topic.to_owned();
        }
        format!("{}{topic}", self.topic_prefix)
    }

    pub fn client_id(&self, client_id: &str) -> String {
        if client_id.is_empty() {
            return String::new(); // the broker assigns one
        }
        format!("{}{client_id}", self.client_id_prefix)
    }

    pub fn pattern(&self, pattern: &Pattern) -> Pattern {
        let mut pattern = pattern.clone();
        if let Some(topic) = &pattern.topic {
            pattern.topic = Some(self.topic(topic));
        }
        pattern
    }
}

/// How a run is judged beyond the scenario's own steps.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// SHOULD-level expectations and early arrivals fail instead of being informational.
    pub strict: bool,
    /// Faults added to the scenario's schedule (`--swarm`).
    pub extra_faults: Vec<(Duration, Fault)>,
    /// With extra faults, step expectations become informational: the verdict is the
    /// invariants', which must hold whatever the network did.
    pub swarm: bool,
    /// Multiplies how long expectations wait (`within_ms`, not windows, which are the spec's
    /// bounds), for slow brokers; 1 when 0.
    pub timeout_scale: f64,
}

/// The verdict of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Passed, with findings the spec allows (an early close, a SHOULD not met).
    Informational,
}

/// The end of one run: its verdict, and what proves it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The first failure: where, what was expected, what happened.
    pub failure: Option<Failure>,
    /// Findings that make a passing run informational (an early close, a SHOULD not met).
    pub notes: Vec<String>,
    /// Which behaviour the broker chose where the spec allows several.
    pub behaviour: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Failure {
    /// The step's line in the scenario file (`None` for an invariant).
    pub line: Option<u64>,
    pub message: String,
    pub expected: String,
    pub actual: String,
}

/// Per client: its actor, its wire, and what the driver remembers for it.
struct ClientState {
    kind: ClientKind,
    actor: ActorHandle,
    wire: Wire,
    packet_id_next: u16,
    /// The last packet an expectation matched, by type, with its packet id: the default target
    /// of a probe's ack.
    matched: BTreeMap<PacketType, u16>,
}

impl ClientState {
    /// The next packet id for a probe's SUBSCRIBE, UNSUBSCRIBE or PUBLISH (1 to 65,535).
    fn next_packet_id(&mut self) -> u16 {
        let packet_id = self.packet_id_next;
        self.packet_id_next = if packet_id == u16::MAX { 1 } else { packet_id + 1 };
        packet_id
    }
}

/// Every client's wire, by name.
pub type Wires = BTreeMap<String, Wire>;

/// Runs `scenario` in `version` in `world`. Must run inside the world's driver context (a
/// simulated host, or a live `LocalSet`), where `tokio::task::spawn_local` works.
pub async fn run<W: World>(
    world: Rc<W>,
    scenario: &Scenario,
    version: ProtocolVersion,
    options: &RunOptions,
) -> Outcome {
    run_with_wires(world, scenario, version, options).await.0
}

/// [`run`], also handing back what every client's connections carried.
pub async fn run_with_wires<W: World>(
    world: Rc<W>,
    scenario: &Scenario,
    version: ProtocolVersion,
    options: &RunOptions,
) -> (Outcome, Wires) {
    let mut driver = Driver::new(world.clone(), scenario, version, options);
    let schedule: Vec<(Duration, Fault)> = scenario
        .faults
        .iter()
        .cloned()
        .chain(options.extra_faults.iter().cloned())
        .collect();
    let scheduled = tokio::task::spawn_local(apply_schedule(driver.faults.clone(), schedule));

    let mut failure = driver.steps().await;
    if options.swarm {
        // The injected faults may well break a step's timing; they may not break an invariant.
        if let Some(step_failure) = failure.take() {
            driver.notes.push(format!(
                "under --swarm, a step's expectation was not met (line {}): {}",
                step_failure.line.unwrap_or_default(),
                step_failure.message
            ));
        }
    }
    if failure.is_none() {
        failure = driver.invariants(&scheduled).await;
    }
    if failure.is_none() {
        failure = driver.malformed();
    }
    if scenario.level != crate::scenario::CaseLevel::Must && !options.strict {
        // What a SHOULD or a MAY asks for is reported, not required.
        if let Some(failure) = failure.take() {
            driver
                .notes
                .push(format!("{} not met: {}", scenario.level.name(), failure.message));
        }
    }
    scheduled.abort();
    driver.finish().await;
    let verdict = match (&failure, driver.notes.is_empty()) {
        (Some(_), _) => Verdict::Fail,
        (None, false) => Verdict::Informational,
        (None, true) => Verdict::Pass,
    };
    let wires = driver
        .clients
        .iter()
        .map(|(name, client)| (name.clone(), client.wire.clone()))
        .collect();
    (
        Outcome {
            verdict,
            failure,
            notes: driver.notes,
            behaviour: driver.behaviour,
        },
        wires,
    )
}

/// Applies the scheduled faults at their instants.
async fn apply_schedule<W: World>(faults: Faults<W>, schedule: Vec<(Duration, Fault)>) {
    let mut schedule = schedule;
    schedule.sort_by_key(|(at, _)| *at);
    let clock = faults.world.clock();
    for (at, fault) in schedule {
        let now = clock.now();
        if at > now {
            sleep(at - now).await;
        }
        // A fault the world cannot apply is in the log; the run goes on.
        let _ = faults.apply(&fault).await;
    }
}

/// A fault as applied: when, what, and whether the world could.
type AppliedFault = (Duration, Fault, Result<(), String>);

/// Applies faults for the steps, the schedule and the final healing alike, and logs each with
/// when it happened and whether the world could.
struct Faults<W: World> {
    world: Rc<W>,
    kill_switches: Rc<BTreeMap<String, KillSwitch>>,
    log: Rc<RefCell<Vec<AppliedFault>>>,
}

impl<W: World> Clone for Faults<W> {
    fn clone(&self) -> Self {
        Faults {
            world: self.world.clone(),
            kill_switches: self.kill_switches.clone(),
            log: self.log.clone(),
        }
    }
}

impl<W: World> Faults<W> {
    async fn apply(&self, fault: &Fault) -> Result<(), String> {
        let result = match fault {
            Fault::Reset { client } if !self.world.resets_links() => {
                let clock = self.world.clock();
                self.world.trace().event(clock.now(), "net", fault.to_string());
                // A network reset, not a crash: our client may reconnect.
                if let Some(kill) = self.kill_switches.get(client) {
                    kill.kill(false);
                }
                Ok(())
            }
            _ => self.world.apply(fault).await,
        };
        self.log
            .borrow_mut()
            .push((self.world.clock().now(), fault.clone(), result.clone()));
        result
    }
}

struct Driver<'a, W: World> {
    world: Rc<W>,
    scenario: &'a Scenario,
    version: ProtocolVersion,
    options: &'a RunOptions,
    clients: BTreeMap<String, ClientState>,
    marks: BTreeMap<String, Duration>,
    notes: Vec<String>,
    behaviour: Vec<String>,
    faults: Faults<W>,
}

impl<'a, W: World> Driver<'a, W> {
    fn new(world: Rc<W>, scenario: &'a Scenario, version: ProtocolVersion, options: &'a RunOptions) -> Self {
        let mut clients = BTreeMap::new();
        let mut kill_switches = BTreeMap::new();
        for (name, plan) in &scenario.clients {
            let wire = Wire::default();
            let kill = KillSwitch::default();
            kill_switches.insert(name.clone(), kill.clone());
            let dialer = Arc::new(RecordingDialer {
                inner: world.dialer(name),
                client: name.clone(),
                wire: wire.clone(),
                trace: world.trace(),
                clock: world.clock(),
                kill: kill.clone(),
            });
            let (handle, future) = actor::actor(name.clone(), plan.kind, dialer, kill, world.trace(), world.clock());
            world.spawn(name, Box::pin(future));
            clients.insert(
                name.clone(),
                ClientState {
                    kind: plan.kind,
                    actor: handle,
                    wire,
                    packet_id_next: 1,
                    matched: BTreeMap::new(),
                },
            );
        }
        Driver {
            faults: Faults {
                world: world.clone(),
                kill_switches: Rc::new(kill_switches),
                log: Rc::default(),
            },
            world,
            scenario,
            version,
            options,
            clients,
            marks: BTreeMap::new(),
            notes: Vec::new(),
            behaviour: Vec::new(),
        }
    }

    /// Runs the steps in order; the first failure ends them.
    async fn steps(&mut self) -> Option<Failure> {
        let clock = self.world.clock();
        for step in &self.scenario.steps {
            match &step.kind {
                StepKind::Wait(duration) => sleep(*duration).await,
                StepKind::WaitPast(duration) => sleep(*duration + self.world.tolerance()).await,
                StepKind::Mark(name) => {
                    self.marks.insert(name.clone(), clock.now());
                }
                StepKind::Fault(fault) => {
                    if let Err(error) = self.faults.apply(fault).await {
                        return Some(Failure {
                            line: Some(step.line),
                            message: format!("the fault `{fault}` could not be applied: {error}"),
                            expected: String::new(),
                            actual: String::new(),
                        });
                    }
                }
                StepKind::Client(step_plan) => {
                    if step_plan.only.is_some_and(|only| only != self.version) {
                        continue;
                    }
                    let (client, action, expect) =
                        (&step_plan.client, step_plan.action.as_ref(), step_plan.expect.as_ref());
                    if let Err(mut failure) = self.client_step(client, action, expect).await {
                        failure.line = Some(step.line);
                        return Some(failure);
                    }
                }
            }
        }
        None
    }

    async fn client_step(
        &mut self,
        name: &str,
        action: Option<&Action>,
        expect: Option<&Expect>,
    ) -> Result<(), Failure> {
        let clock = self.world.clock();
        let start = clock.now();
        let (from_index_before, connection_before, last_sent) = {
            let state = self.client(name).wire.state();
            let connection = state.current();
            let last_sent = connection
                .and_then(|index| state.connections.get(index))
                .and_then(|record| record.last_sent_at);
            (state.records.len(), connection, last_sent)
        };
        let mut action_error = None;
        if let Some(action) = action {
            if let Err(error) = self.act(name, action, expect.is_some()).await {
                if expect.is_none() {
                    return Err(Failure {
                        line: None,
                        message: format!("{name}: {} failed: {error}", action.name()),
                        expected: format!("{} succeeds", action.name()),
                        actual: error,
                    });
                }
                action_error = Some(error);
            }
        }
        let Some(expect) = expect else { return Ok(()) };
        // An expectation in the step of an action looks only at what followed the action; on
        // its own, at everything not taken yet.
        let (from_index, connection) = if action.is_some() {
            let state = self.client(name).wire.state();
            (from_index_before, state.current())
        } else {
            (0, connection_before)
        };
        let result = self
            .expect(name, expect, start, from_index, connection, last_sent)
            .await;
        result.map_err(|mut failure| {
            if let Some(error) = action_error {
                failure.message = format!("{} (the action before it failed: {error})", failure.message);
            }
            failure
        })
    }

    fn client(&self, name: &str) -> &ClientState {
        // The loader checked every name a step uses against the clients.
        &self.clients[name]
    }

    /// Waits for `expect` and takes what it matched; a failure is returned.
    async fn expect(
        &mut self,
        name: &str,
        expect: &Expect,
        start: Duration,
        from_index: usize,
        connection: Option<usize>,
        last_sent: Option<Duration>,
    ) -> Result<(), Failure> {
        let clock = self.world.clock();
        let wire = self.client(name).wire.clone();
        let mut changes = wire.subscribe();
        loop {
            let status = {
                let state = wire.state();
                let context = Context {
                    timeout_scale: self.options.timeout_scale,
                    start,
                    from_index,
                    connection,
                    marks: &self.marks,
                    last_sent,
                    tolerance: self.world.tolerance(),
                    early_tolerance: self.world.early_tolerance(),
                    grace: self.world.grace(),
                    strict: self.options.strict,
                    names: self.world.names(),
                };
                judge::check(expect, &state, clock.now(), &context)
            };
            match status {
                Status::Met(met) => {
                    {
                        let mut state = wire.state();
                        for index in &met.consumed {
                            if let Some(record) = state.records.get_mut(*index) {
                                record.consumed = true;
                            }
                        }
                    }
                    if let Some((packet_type, Some(packet_id))) = met.matched {
                        if let Some(client) = self.clients.get_mut(name) {
                            client.matched.insert(packet_type, packet_id);
                        }
                    }
                    for note in met.notes {
                        self.notes.push(format!("{name}: {note}"));
                    }
                    for behaviour in met.behaviour {
                        self.behaviour.push(format!("{name}: {behaviour}"));
                    }
                    return Ok(());
                }
                Status::Failed(failure) => {
                    return Err(Failure {
                        line: None,
                        message: format!("{name}: {}", failure.message),
                        expected: failure.expected,
                        actual: failure.actual,
                    });
                }
                Status::Pending { until } => {
                    let now = clock.now();
                    // A millisecond past, so that the deadline has surely passed when asked again.
                    let wait = until.saturating_sub(now) + Duration::from_millis(1);
                    tokio::select! {
                        biased;
                        changed = changes.changed() => {
                            if changed.is_err() {
                                sleep(wait).await;
                            }
                        }
                        () = sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Carries out one action; for a probe's connect, subscribe and unsubscribe, also waits for
    /// the answer unless told not to.
    async fn act(&mut self, name: &str, action: &Action, has_expectation: bool) -> Result<(), String> {
        let names = self.world.names().clone();
        let version = self.version;
        let plan = &self.scenario.clients[name];
        let kind = self.client(name).kind;
        let from_index = self.client(name).wire.state().records.len();
        let (command, answer) = match action {
            Action::Connect { settings, no_wait } => {
                let options = connect_options(
                    &names,
                    version,
                    &plan.client_id,
                    &plan.connect.overridden_by(settings),
                    plan,
                );
                (
                    Command::Connect(Box::new(options)),
                    (!no_wait).then_some(PacketType::ConnAck),
                )
            }
            Action::Subscribe {
                subscriptions,
                identifier,
                no_wait,
            } => {
                let packet_id = self.next_packet_id(name);
                let mut properties = PropertyFields::default();
                if version.is_v5() {
                    properties.subscription_identifiers.extend(identifier);
                }
                let subscribe = Subscribe {
                    packet_id,
                    properties: Properties::from(properties),
                    subscriptions: subscriptions
                        .iter()
                        .map(|(filter, options)| Subscription {
                            filter: names.topic(filter),
                            options: *options,
                        })
                        .collect(),
                };
                (Command::Subscribe(subscribe), (!no_wait).then_some(PacketType::SubAck))
            }
            Action::Unsubscribe { filters, no_wait } => {
                let unsubscribe = Unsubscribe {
                    packet_id: self.next_packet_id(name),
                    properties: Properties::default(),
                    filters: filters.iter().map(|filter| names.topic(filter)).collect(),
                };
                (
                    Command::Unsubscribe(unsubscribe),
                    (!no_wait).then_some(PacketType::UnsubAck),
                )
            }
            Action::Publish(plan) => {
                for payload in &plan.payloads {
                    let publish = self.publish_packet(name, plan, payload.clone(), version, &names);
                    let command = Command::Publish {
                        publish,
                        wait_ack: !plan.no_wait,
                    };
                    self.client(name).actor.run(command).await?;
                }
                return Ok(());
            }
            Action::Ack {
                packet_type,
                packet_id,
                reason_code,
            } => {
                let answers = match packet_type {
                    PacketType::PubRel => PacketType::PubRec,
                    PacketType::PubComp => PacketType::PubRel,
                    _ => PacketType::Publish,
                };
                let Some(packet_id) = packet_id.or_else(|| self.last_packet_id(name, answers)) else {
                    return Err(format!("no {} received to acknowledge", answers.name()));
                };
                let mut ack = PublishAck::new(packet_id);
                if let Some(reason_code) = reason_code {
                    ack.reason_code = *reason_code;
                }
                let packet = match packet_type {
                    PacketType::PubAck => Packet::PubAck(ack),
                    PacketType::PubRec => Packet::PubRec(ack),
                    PacketType::PubRel => Packet::PubRel(ack),
                    _ => Packet::PubComp(ack),
                };
                (Command::Send(packet), None)
            }
            Action::PingReq => (Command::Send(Packet::PingReq), None),
            Action::Disconnect {
                reason_code,
                session_expiry_s,
            } => {
                let mut properties = PropertyFields::default();
                if version.is_v5() {
                    properties.session_expiry_interval_s = *session_expiry_s;
                }
                let disconnect = Disconnect {
                    reason_code: reason_code.unwrap_or(ReasonCode::NORMAL_DISCONNECTION),
                    properties: Properties::from(properties),
                };
                (Command::Disconnect(disconnect), None)
            }
            Action::Close => (Command::Close, None),
            Action::Raw(bytes) => (Command::Raw(bytes.clone()), None),
        };
        self.client(name).actor.run(command).await?;
        // Our client waited for its answer already; a probe waits here, unless the step's own
        // expectation is about the answer.
        if let (ClientKind::Probe, Some(answer)) = (kind, answer) {
            self.await_answer(name, answer, from_index, !has_expectation).await?;
        }
        Ok(())
    }

    /// Waits (bounded) for the answer to a probe's request, or for its connection to end.
    async fn await_answer(
        &mut self,
        name: &str,
        answer: PacketType,
        from_index: usize,
        take: bool,
    ) -> Result<(), String> {
        let clock = self.world.clock();
        let wire = self.client(name).wire.clone();
        let mut changes = wire.subscribe();
        let deadline = clock.now() + ACTION_TIMEOUT;
        loop {
            {
                let mut state = wire.state();
                let current = state.current();
                if let Some(record) = state.records.iter_mut().skip(from_index).find(|record| {
                    record
                        .packet
                        .as_ref()
                        .is_some_and(|packet| packet.packet_type() == answer)
                }) {
                    // Taken, unless the step's expectation is about to judge it.
                    record.consumed |= take;
                    return Ok(());
                }
                let closed = current
                    .and_then(|index| state.connections.get(index))
                    .and_then(|connection| connection.closed.clone());
                if let Some((at, _, how)) = closed {
                    return Err(format!(
                        "the connection ended at {} ({how}) before a {}",
                        instant(at),
                        answer.name()
                    ));
                }
            }
            let now = clock.now();
            if now >= deadline {
                return Err(format!("no {} within {ACTION_TIMEOUT:?}", answer.name()));
            }
            tokio::select! {
                biased;
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err("the client's wire is gone".to_owned());
                    }
                }
                () = sleep(deadline - now) => {}
            }
        }
    }

    fn next_packet_id(&mut self, name: &str) -> u16 {
        self.clients.get_mut(name).map_or(1, ClientState::next_packet_id)
    }

    /// The packet id of the last `packet_type` an expectation matched, or else the last one the
    /// client received.
    fn last_packet_id(&self, name: &str, packet_type: PacketType) -> Option<u16> {
        let client = self.client(name);
        if let Some(packet_id) = client.matched.get(&packet_type) {
            return Some(*packet_id);
        }
        let state = client.wire.state();
        state.records.iter().rev().find_map(|record| match &record.packet {
            Some(Packet::Publish(publish)) if packet_type == PacketType::Publish => publish.packet_id,
            Some(Packet::PubRec(ack)) if packet_type == PacketType::PubRec => Some(ack.packet_id),
            Some(Packet::PubRel(ack)) if packet_type == PacketType::PubRel => Some(ack.packet_id),
            _ => None,
        })
    }

    fn publish_packet(
        &mut self,
        name: &str,
        plan: &PublishPlan,
        payload: Bytes,
        version: ProtocolVersion,
        names: &Names,
    ) -> Publish {
        let packet_id = match (self.client(name).kind, plan.qos) {
            (_, QoS::AtMostOnce) => None,
            // Our client numbers its own packets.
            (ClientKind::Client, _) => Some(1),
            (ClientKind::Probe, _) => Some(plan.packet_id.unwrap_or_else(|| self.next_packet_id(name))),
        };
        Publish {
            dup: plan.dup,
            qos: plan.qos,
            retain: plan.retain,
            topic: names.topic(&plan.topic).into(),
            packet_id,
            properties: if version.is_v5() {
                Properties::from(plan.properties.clone())
            } else {
                Properties::default()
            },
            payload,
        }
    }

    /// Checks the invariants; with liveness (or under `--swarm`), first heals the network and
    /// gives them until the bound to hold.
    async fn invariants(&mut self, scheduled: &tokio::task::JoinHandle<()>) -> Option<Failure> {
        let liveness = self.scenario.invariants.iter().find_map(|invariant| match invariant {
            Invariant::Liveness { within_ms } => Some(Duration::from_millis(*within_ms)),
            _ => None,
        });
        let liveness = liveness.or(self.options.swarm.then_some(LIVENESS_DEFAULT));
        let clock = self.world.clock();
        if let Some(bound) = liveness {
            // Let the schedule finish, then end every fault still in force.
            let schedule_end = self
                .scenario
                .faults
                .iter()
                .chain(&self.options.extra_faults)
                .map(|(at, _)| *at)
                .max()
                .unwrap_or_default();
            let now = clock.now();
            if schedule_end > now {
                sleep(schedule_end - now + Duration::from_millis(1)).await;
            }
            if !scheduled.is_finished() {
                sleep(Duration::from_millis(1)).await;
            }
            self.heal().await;
            let healed_at = clock.now();
            let deadline = healed_at + bound;
            loop {
                let findings = self.findings(true);
                let violated = findings.iter().any(|finding| matches!(finding, Finding::Violated(_)));
                if findings.is_empty() || violated || clock.now() >= deadline {
                    return self.failure_of(findings, Some((healed_at, bound)));
                }
                sleep(Duration::from_millis(100).min(deadline - clock.now())).await;
            }
        }
        let findings = self.findings(false);
        self.failure_of(findings, None)
    }

    /// Repairs, releases and removes latency from every link a fault touched, in name order.
    async fn heal(&mut self) {
        let touched: BTreeSet<String> = self
            .faults
            .log
            .borrow()
            .iter()
            .filter_map(|(_, fault, _)| fault.client().map(str::to_owned))
            .collect();
        for client in touched {
            for fault in [
                Fault::Release { client: client.clone() },
                Fault::Repair { client: client.clone() },
                Fault::Latency {
                    client: client.clone(),
                    latency: Duration::ZERO,
                },
            ] {
                // A fault the world cannot apply is in the log; healing goes on.
                let _ = self.faults.apply(&fault).await;
            }
        }
        let crashed = self
            .faults
            .log
            .borrow()
            .iter()
            .rev()
            .find_map(|(_, fault, _)| match fault {
                Fault::BrokerCrash => Some(true),
                Fault::BrokerRestart => Some(false),
                _ => None,
            })
            .unwrap_or(false);
        if crashed {
            let _ = self.faults.apply(&Fault::BrokerRestart).await;
        }
    }

    fn findings(&self, liveness: bool) -> Vec<Finding> {
        let states: Vec<(String, std::sync::MutexGuard<'_, crate::wire::WireState>)> = self
            .clients
            .iter()
            .map(|(name, client)| (name.clone(), client.wire.state()))
            .collect();
        let wires: Vec<(String, &crate::wire::WireState)> =
            states.iter().map(|(name, state)| (name.clone(), &**state)).collect();
        let mut findings = Vec::new();
        for invariant in &self.scenario.invariants {
            match invariant {
                Invariant::NoLoss => findings.extend(invariants::no_loss(&wires)),
                Invariant::NoQos2Duplicates => findings.extend(invariants::no_qos2_duplicates(&wires)),
                Invariant::Ordered => findings.extend(invariants::ordered(&wires)),
                Invariant::Liveness { .. } => {}
            }
        }
        if liveness {
            let reconnecting: BTreeSet<String> = self
                .scenario
                .clients
                .iter()
                .filter(|(_, plan)| plan.reconnect.is_some())
                .map(|(name, _)| name.clone())
                .collect();
            // Nothing owed beyond what the scenario's own invariants owe: a scenario that leaves
            // no_loss out (a probe withholding acks, say) is not held to it here either.
            findings.extend(invariants::disconnected(&wires, &reconnecting));
        }
        findings
    }

    fn failure_of(&self, findings: Vec<Finding>, liveness: Option<(Duration, Duration)>) -> Option<Failure> {
        if findings.is_empty() {
            return None;
        }
        let lines: Vec<String> = findings
            .into_iter()
            .map(|finding| match finding {
                Finding::Violated(text) | Finding::Owed(text) => text,
            })
            .collect();
        let expected = match liveness {
            Some((healed_at, bound)) => format!(
                "every invariant holds within {} ms of the network healing at {}",
                bound.as_millis(),
                instant(healed_at)
            ),
            None => "every invariant holds at the end of the run".to_owned(),
        };
        Some(Failure {
            line: None,
            message: lines[0].clone(),
            expected,
            actual: lines.join("\n"),
        })
    }

    /// Whatever else happened, every packet the broker sent must have decoded strictly: the
    /// first one that did not is a failure, naming the rule it breaks.
    fn malformed(&self) -> Option<Failure> {
        for (name, client) in &self.clients {
            let state = client.wire.state();
            if let Some(record) = state
                .records
                .iter()
                .find(|record| record.way == crate::wire::Way::Received && record.packet.is_none())
            {
                return Some(Failure {
                    line: None,
                    message: format!(
                        "{name}: the broker sent a packet that does not decode: {}",
                        record.summary
                    ),
                    expected: "every packet the broker sends is well-formed".to_owned(),
                    actual: format!("{} {}", instant(record.at), record.summary),
                });
            }
        }
        None
    }

    /// Ends every actor (bounded): our clients disconnect, probes close.
    async fn finish(&mut self) {
        for client in self.clients.values() {
            let _ = client.actor.run(Command::Finish).await;
        }
    }
}

/// Our client's options (or a probe's CONNECT) for `version`, as this run names things.
fn connect_options(
    names: &Names,
    version: ProtocolVersion,
    client_id: &str,
    settings: &ConnectSettings,
    plan: &crate::scenario::ClientPlan,
) -> ConnectOptions {
    let v5 = version.is_v5();
    let mut options = ConnectOptions::new(names.client_id(client_id)).version(version);
    options.clean_start = settings.clean_start.unwrap_or(true);
    options.keep_alive_s = settings.keep_alive_s.unwrap_or(60);
    if v5 {
        options.session_expiry_interval_s = settings.session_expiry_s;
        options.receive_maximum = settings.receive_maximum;
        options.maximum_packet_size = settings.maximum_packet_size;
        options.topic_alias_maximum = settings.topic_alias_maximum;
        options.request_problem_information = settings.request_problem_information;
        options.request_response_information = settings.request_response_information;
    }
    options.will = settings.will.as_ref().map(|will| {
        let mut properties = PropertyFields::default();
        if v5 {
            properties.will_delay_interval_s = will.delay_s;
            properties.message_expiry_interval_s = will.message_expiry_s;
        }
        LastWill {
            topic: names.topic(&will.topic),
            payload: Bytes::from(will.payload.clone().into_bytes()),
            qos: QoS::from_u8(will.qos.0).unwrap_or(QoS::AtMostOnce),
            retain: will.retain,
            properties: Properties::from(properties),
        }
    });
    options.user_name = settings.username.clone().or_else(|| names.username.clone());
    options.password = settings
        .password
        .clone()
        .or_else(|| names.password.clone())
        .map(|password| Bytes::from(password.into_bytes()));
    options.reconnect = plan.reconnect;
    if let Some(ping_timeout) = plan.ping_timeout {
        options.ping_timeout = ping_timeout;
    }
    options.connect_timeout = ACTION_TIMEOUT;
    options.request_timeout = ACTION_TIMEOUT;
    options
}
