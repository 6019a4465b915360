//! Loading scenario files: YAML through serde-saphyr (nesting and alias expansion bounded), then
//! every check the types cannot make (a client that does not exist, two actions in one step, a
//! window the wrong way round ...), each reported as `file:line:column: what was expected`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::probe::{ExpectedValue, Pattern, PropertyExpectation};
use mqtt_client::ReconnectPolicy;
use mqtt_protocol::property::WireType;
use mqtt_protocol::SubscriptionOptions;
use mqtt_protocol::{PacketType, PropertyFields, PropertyId, ProtocolVersion, QoS, ReasonCode, RetainHandling};
use serde_saphyr::{Location, Spanned};

use crate::scenario::{
    parse_version, Action, Capability, ClientPlan, Direction, Expect, ExpectKind, Fault, MessagesPlan, PublishPlan,
    Scenario, Since, Statement, Step, StepKind, Timing,
};
use crate::schema::{
    self, ClientKind, ClientStep, Expectation, FaultSpec, Invariant, Level, PacketPattern, PropertyValueSpec, Qos,
    ReasonSpec, Requirement, ScenarioFile,
};

/// The largest scenario file read.
pub const FILE_BYTES_MAX: u64 = 1024 * 1024;
/// The deepest YAML nesting accepted.
pub const NESTING_MAX: usize = 64;
/// The most aliases a file may use (each expands a copy of its anchor).
pub const ALIASES_MAX: usize = 256;
/// The most scenario files one command loads.
pub const FILES_MAX: usize = 10_000;

/// How long an expectation waits when it gives neither `within_ms` nor `window_ms`.
pub const WITHIN_DEFAULT: Duration = Duration::from_millis(2000);
const TICK_DEFAULT_MS: u64 = 10;
const DURATION_DEFAULT_S: u64 = 60;

/// A problem with a scenario file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for LoadError {}

/// Every problem found in the files loaded, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// The `.yaml` / `.yml` files under `paths` (files as given, folders searched recursively),
/// each folder's entries in name order, so a run's order never depends on the file system.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        collect(path, &mut files, &mut errors, 0);
    }
    if files.len() > FILES_MAX {
        errors.push(whole_file(
            paths.first().cloned().unwrap_or_default(),
            format!("more than {FILES_MAX} scenario files"),
        ));
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(LoadErrors(errors))
    }
}

fn collect(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>, depth: usize) {
    const DEPTH_MAX: usize = 16;
    if path.is_dir() {
        if depth >= DEPTH_MAX {
            errors.push(whole_file(
                path.to_owned(),
                format!("folders nested deeper than {DEPTH_MAX}"),
            ));
            return;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => {
                errors.push(whole_file(path.to_owned(), format!("cannot read the folder: {error}")));
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        children.sort();
        for child in children {
            let is_yaml = child
                .extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml");
            if child.is_dir() || is_yaml {
                collect(&child, files, errors, depth + 1);
            }
        }
    } else if path.is_file() {
        files.push(path.to_owned());
    } else {
        errors.push(whole_file(path.to_owned(), "no such file or folder".to_owned()));
    }
}

/// Loads every scenario under `paths`; all problems of all files, or the scenarios.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Scenario>, LoadErrors> {
    let files = scenario_files(paths)?;
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match load_file(&file) {
            Ok(scenario) => scenarios.push(scenario),
            Err(mut file_errors) => errors.append(&mut file_errors.0),
        }
    }
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for scenario in &scenarios {
        if let Some(first) = seen.insert(scenario.id.clone(), scenario.path.clone()) {
            errors.push(whole_file(
                scenario.path.clone(),
                format!("the scenario id {} is also {}'s", scenario.id, first.display()),
            ));
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(LoadErrors(errors))
    }
}

pub fn load_file(path: &Path) -> Result<Scenario, LoadErrors> {
    let size = std::fs::metadata(path)
        .map_err(|error| LoadErrors(vec![whole_file(path.to_owned(), format!("cannot read: {error}"))]))?
        .len();
    if size > FILE_BYTES_MAX {
        return Err(LoadErrors(vec![whole_file(
            path.to_owned(),
            format!("{size} bytes: larger than the {FILE_BYTES_MAX} a scenario may be"),
        )]));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| LoadErrors(vec![whole_file(path.to_owned(), format!("cannot read: {error}"))]))?;
    load_str(path, &text)
}

/// Parses and checks one scenario; `path` names it in errors and gives its id.
pub fn load_str(path: &Path, text: &str) -> Result<Scenario, LoadErrors> {
    let file = parse(path, text).map_err(|error| LoadErrors(vec![error]))?;
    let mut checker = Checker {
        path: path.to_owned(),
        errors: Vec::new(),
    };
    let scenario = checker.scenario(path, file);
    match scenario {
        Some(scenario) if checker.errors.is_empty() => Ok(scenario),
        _ => Err(LoadErrors(checker.errors)),
    }
}

fn parse(path: &Path, text: &str) -> Result<ScenarioFile, LoadError> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = NESTING_MAX;
    budget.max_aliases = ALIASES_MAX;
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options::<ScenarioFile>(text, options).map_err(|error| {
        let (line, column) = error
            .location()
            .map_or((0, 0), |location| (location.line(), location.column()));
        // The message carries its location at its end; ours goes in front.
        let mut message = error.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        if let Some(rest) = message.strip_prefix("error: ") {
            message = rest.to_owned();
        }
        LoadError {
            path: path.to_owned(),
            line: line.max(u64::from(line == 0 && column == 0)),
            column,
            message,
        }
    })
}

fn whole_file(path: PathBuf, message: String) -> LoadError {
    LoadError {
        path,
        line: 0,
        column: 0,
        message,
    }
}

/// The area and name of a scenario file: its folder's name and its own.
fn scenario_id(path: &Path) -> (String, String) {
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let area = path
        .parent()
        .and_then(Path::file_name)
        .map(|parent| parent.to_string_lossy().into_owned())
        .unwrap_or_default();
    (area, name)
}

struct Checker {
    path: PathBuf,
    errors: Vec<LoadError>,
}

/// Words a client may not be named, since a step's key says which step it is.
const RESERVED_NAMES: [&str; 5] = ["fault", "wait_ms", "wait_past_ms", "mark", "broker"];

impl Checker {
    fn error(&mut self, at: Location, message: impl Into<String>) {
        self.errors.push(LoadError {
            path: self.path.clone(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        });
    }

    fn scenario(&mut self, path: &Path, file: ScenarioFile) -> Option<Scenario> {
        let (area, stem) = scenario_id(path);
        if file.name.value != stem {
            self.error(
                file.name.referenced,
                format!(
                    "the name must be the file's name, {stem:?} (it is the case id, {area}/{stem}); found {:?}",
                    file.name.value
                ),
            );
        }
        let versions = self.versions(&file.versions);
        let statements = self.statements(&file.statements, &versions);
        let requires: BTreeSet<Requirement> = file.requires.iter().map(|requirement| requirement.value).collect();
        let tick_ms = file.tick_ms.as_ref().map_or(TICK_DEFAULT_MS, |tick| {
            if !(1..=1000).contains(&tick.value) {
                self.error(tick.referenced, "tick_ms must be between 1 and 1000");
            }
            tick.value
        });
        let duration_s = file.duration_s.as_ref().map_or(DURATION_DEFAULT_S, |duration| {
            if !(1..=3600).contains(&duration.value) {
                self.error(duration.referenced, "duration_s must be between 1 and 3600");
            }
            duration.value
        });
        if let Some(broker) = &file.broker {
            if !requires.contains(&Requirement::BrokerConfig) {
                self.error(
                    broker.referenced,
                    "a scenario that configures the broker must say `requires: [broker_config]`",
                );
            }
            if broker.value.maximum_qos.is_some_and(|qos| qos.0 > 2) {
                self.error(broker.referenced, "maximum_qos must be 0, 1 or 2");
            }
        }

        // Two clients may share a client id: a takeover, or an application that restarts.
        let mut clients = BTreeMap::new();
        for (name, spec) in &file.clients {
            if let Some(plan) = self.client(name, spec) {
                clients.insert(name.clone(), plan);
            }
        }

        let mut faults = Vec::new();
        for fault in &file.faults {
            let Some(at_ms) = fault.value.at_ms else {
                self.error(fault.referenced, "a fault in `faults:` needs `at_ms`: when it happens");
                continue;
            };
            if let Some(resolved) = self.fault(&fault.value, fault.referenced, &clients, &requires) {
                faults.push((Duration::from_millis(at_ms), resolved));
            }
        }
        faults.sort_by_key(|(at, _)| *at);

        let mut marks = BTreeSet::new();
        let mut steps = Vec::new();
        for step in &file.steps {
            let line = step.referenced.line();
            let kind = match &step.value {
                schema::Step::WaitMs(milliseconds) => Some(StepKind::Wait(Duration::from_millis(*milliseconds))),
                schema::Step::WaitPastMs(milliseconds) => {
                    Some(StepKind::WaitPast(Duration::from_millis(*milliseconds)))
                }
                schema::Step::Mark(name) => {
                    if !marks.insert(name.clone()) {
                        self.error(step.referenced, format!("mark {name:?} is set twice"));
                    }
                    Some(StepKind::Mark(name.clone()))
                }
                schema::Step::Fault(fault) => {
                    if fault.at_ms.is_some() {
                        self.error(
                            step.referenced,
                            "at_ms belongs in the `faults:` schedule; a fault step happens when its turn comes",
                        );
                    }
                    self.fault(fault, step.referenced, &clients, &requires)
                        .map(StepKind::Fault)
                }
                schema::Step::Client {
                    name,
                    step: client_step,
                } => self.client_step(name, client_step, step.referenced, &clients, &versions, &marks),
            };
            if let Some(kind) = kind {
                steps.push(Step { line, kind });
            }
        }

        let invariants = match &file.invariants {
            None => vec![Invariant::NoLoss, Invariant::NoQos2Duplicates, Invariant::Ordered],
            Some(invariants) => invariants
                .iter()
                .map(|invariant| {
                    if let Invariant::Liveness { within_ms: 0 } = invariant.value {
                        self.error(invariant.referenced, "liveness needs within_ms above 0");
                    }
                    invariant.value.clone()
                })
                .collect(),
        };

        let mut kills = Vec::new();
        for kill in &file.kills {
            let valid = !kill.value.is_empty()
                && kill
                    .value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                self.error(
                    kill.referenced,
                    format!("kills: {:?} is not a planted bug's name (kebab case)", kill.value),
                );
            }
            kills.push(kill.value.clone());
        }
        let mut needs: BTreeSet<Capability> = file.needs.iter().map(|need| need.value).collect();
        needs.extend(implied_needs(&steps, &clients));
        Some(Scenario {
            level: file.level.map(|level| level.value).unwrap_or_default(),
            needs,
            phase: file.phase.unwrap_or_default(),
            kills,
            id: format!("{area}/{stem}"),
            path: path.to_owned(),
            about: file.about.trim().to_owned(),
            versions,
            statements,
            requires,
            tick: Duration::from_millis(tick_ms),
            duration: Duration::from_secs(duration_s),
            broker: file.broker.map(|broker| broker.value),
            clients,
            faults,
            steps,
            invariants,
        })
    }

    fn versions(&mut self, versions: &[Spanned<String>]) -> Vec<ProtocolVersion> {
        if versions.is_empty() {
            return vec![ProtocolVersion::V5, ProtocolVersion::V3_1_1];
        }
        let mut resolved = Vec::new();
        for version in versions {
            match parse_version(&version.value) {
                Some(parsed) if resolved.contains(&parsed) => {
                    self.error(version.referenced, format!("version {} is listed twice", version.value))
                }
                Some(parsed) => resolved.push(parsed),
                None => self.error(
                    version.referenced,
                    format!("expected a version, \"5.0\" or \"3.1.1\"; found {:?}", version.value),
                ),
            }
        }
        resolved
    }

    fn statements(&mut self, statements: &[Spanned<String>], versions: &[ProtocolVersion]) -> Vec<Statement> {
        let mut resolved = Vec::new();
        for statement in statements {
            let (version, id) = match statement.value.split_once(':') {
                Some((version, id)) => match parse_version(version) {
                    Some(parsed) if versions.contains(&parsed) => (Some(parsed), id),
                    Some(_) => {
                        self.error(
                            statement.referenced,
                            format!(
                                "statement {} is for version {version}, which the scenario does not run",
                                statement.value
                            ),
                        );
                        continue;
                    }
                    None => {
                        self.error(
                            statement.referenced,
                            format!("expected \"5.0:\" or \"3.1.1:\" before the id; found {version:?}"),
                        );
                        continue;
                    }
                },
                None => (None, statement.value.as_str()),
            };
            if !is_statement_id(id) {
                self.error(
                    statement.referenced,
                    format!("expected a statement id like MQTT-3.1.2-24; found {id:?}"),
                );
                continue;
            }
            resolved.push(Statement {
                version,
                id: id.to_owned(),
            });
        }
        resolved
    }

    fn client(&mut self, name: &str, spec: &Spanned<schema::ClientSpec>) -> Option<ClientPlan> {
        let at = spec.referenced;
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name || RESERVED_NAMES.contains(&name) {
            self.error(
                at,
                format!("client name {name:?}: use lower-case letters, digits, - and _, and not fault, wait_ms, wait_past_ms, mark or broker"),
            );
            return None;
        }
        let spec = &spec.value;
        if spec.reconnect.is_some() && spec.kind == ClientKind::Probe {
            self.error(
                at,
                format!("{name}: a probe does not reconnect on its own; remove `reconnect`"),
            );
        }
        if spec.ping_timeout_ms.is_some() && spec.kind == ClientKind::Probe {
            self.error(
                at,
                format!("{name}: a probe does not ping on its own; remove `ping_timeout_ms`"),
            );
        }
        let connect = spec.connect_settings();
        self.check_connect(at, &connect);
        Some(ClientPlan {
            kind: spec.kind,
            client_id: spec.client_id.clone().unwrap_or_else(|| name.to_owned()),
            connect,
            reconnect: spec.reconnect.map(|reconnect| ReconnectPolicy {
                delay_initial: Duration::from_millis(reconnect.initial_ms),
                delay_max: Duration::from_millis(reconnect.max_ms),
                attempts_max: reconnect.attempts,
            }),
            ping_timeout: spec.ping_timeout_ms.map(Duration::from_millis),
        })
    }

    fn check_connect(&mut self, at: Location, connect: &schema::ConnectSettings) {
        if let Some(will) = &connect.will {
            if will.qos.0 > 2 {
                self.error(at, "the will's qos must be 0, 1 or 2");
            }
        }
    }

    fn fault(
        &mut self,
        fault: &FaultSpec,
        at: Location,
        clients: &BTreeMap<String, ClientPlan>,
        requires: &BTreeSet<Requirement>,
    ) -> Option<Fault> {
        let mut verbs = Vec::new();
        let mut client_fault = |client: &Option<String>, make: &dyn Fn(String) -> Fault| {
            if let Some(client) = client {
                verbs.push((Some(client.clone()), make(client.clone())));
            }
        };
        client_fault(&fault.partition, &|client| Fault::Partition {
            client,
            direction: Direction::Both,
        });
        client_fault(&fault.partition_to_broker, &|client| Fault::Partition {
            client,
            direction: Direction::ToBroker,
        });
        client_fault(&fault.partition_from_broker, &|client| Fault::Partition {
            client,
            direction: Direction::FromBroker,
        });
        client_fault(&fault.repair, &|client| Fault::Repair { client });
        client_fault(&fault.hold, &|client| Fault::Hold { client });
        client_fault(&fault.release, &|client| Fault::Release { client });
        client_fault(&fault.reset, &|client| Fault::Reset { client });
        if let Some(latency) = &fault.latency {
            verbs.push((
                Some(latency.client.clone()),
                Fault::Latency {
                    client: latency.client.clone(),
                    latency: Duration::from_millis(latency.ms),
                },
            ));
        }
        if let Some(broker) = fault.broker {
            verbs.push((
                None,
                match broker {
                    schema::BrokerFault::Crash => Fault::BrokerCrash,
                    schema::BrokerFault::Restart => Fault::BrokerRestart,
                },
            ));
        }
        if verbs.len() != 1 {
            self.error(
                at,
                "a fault has exactly one of partition, partition_to_broker, partition_from_broker, repair, hold, release, latency, reset, broker",
            );
            return None;
        }
        let (client, resolved) = verbs.remove(0);
        if let Some(client) = client {
            if !clients.contains_key(&client) {
                self.error(at, unknown_client(&client, clients));
                return None;
            }
        }
        if matches!(resolved, Fault::BrokerCrash | Fault::BrokerRestart)
            && !requires.contains(&Requirement::BrokerRestart)
        {
            self.error(
                at,
                "a scenario that crashes the broker must say `requires: [broker_restart]`",
            );
        }
        Some(resolved)
    }

    fn client_step(
        &mut self,
        name: &str,
        step: &ClientStep,
        at: Location,
        clients: &BTreeMap<String, ClientPlan>,
        versions: &[ProtocolVersion],
        marks: &BTreeSet<String>,
    ) -> Option<StepKind> {
        let Some(client) = clients.get(name) else {
            self.error(at, unknown_client(name, clients));
            return None;
        };
        let probe = client.kind == ClientKind::Probe;
        let only = step.only.as_ref().and_then(|only| match parse_version(&only.value) {
            Some(version) if versions.contains(&version) => Some(version),
            _ => {
                self.error(
                    only.referenced,
                    format!(
                        "`only` names a version the scenario runs ({}); found {:?}",
                        version_list(versions),
                        only.value
                    ),
                );
                None
            }
        });
        let mut actions = Vec::new();
        if let Some(connect) = &step.connect {
            let settings = connect.connect_settings();
            self.check_connect(at, &settings);
            if connect.no_wait && !probe {
                self.error(
                    at,
                    format!("{name}: our client always waits for its CONNACK; no_wait is for probes"),
                );
            }
            actions.push(Action::Connect {
                settings,
                no_wait: connect.no_wait,
            });
        }
        if let Some(subscribe) = &step.subscribe {
            actions.extend(self.subscribe(name, subscribe, at, probe));
        }
        if let Some(unsubscribe) = &step.unsubscribe {
            let mut filters = unsubscribe.filters.clone();
            filters.extend(unsubscribe.filter.clone());
            if filters.is_empty() {
                self.error(at, "unsubscribe needs `filter` or `filters`");
            }
            if unsubscribe.no_wait && !probe {
                self.error(
                    at,
                    format!("{name}: our client always waits for its UNSUBACK; no_wait is for probes"),
                );
            }
            actions.push(Action::Unsubscribe {
                filters,
                no_wait: unsubscribe.no_wait,
            });
        }
        if let Some(publish) = &step.publish {
            actions.extend(self.publish(name, publish, at, probe));
        }
        for (ack, packet_type) in [
            (&step.puback, PacketType::PubAck),
            (&step.pubrec, PacketType::PubRec),
            (&step.pubrel, PacketType::PubRel),
            (&step.pubcomp, PacketType::PubComp),
        ] {
            if let Some(ack) = ack {
                if !probe {
                    self.error(
                        at,
                        format!("{name}: our client acknowledges on its own; acks are for probes"),
                    );
                }
                let reason_code = ack.reason.as_ref().and_then(|reason| self.reason(reason, at));
                actions.push(Action::Ack {
                    packet_type,
                    packet_id: ack.packet_id,
                    reason_code,
                });
            }
        }
        if step.pingreq.is_some() {
            if !probe {
                self.error(
                    at,
                    format!("{name}: our client pings on its own; pingreq is for probes"),
                );
            }
            actions.push(Action::PingReq);
        }
        if let Some(disconnect) = &step.disconnect {
            let reason_code = disconnect.reason.as_ref().and_then(|reason| self.reason(reason, at));
            actions.push(Action::Disconnect {
                reason_code,
                session_expiry_s: disconnect.session_expiry_s,
            });
        }
        if step.close.is_some() {
            actions.push(Action::Close);
        }
        if let Some(raw) = &step.raw {
            if !probe {
                self.error(at, format!("{name}: raw bytes are for probes"));
            }
            match parse_hex(raw) {
                Some(bytes) => actions.push(Action::Raw(bytes)),
                None => self.error(
                    at,
                    format!("raw: expected hexadecimal bytes (\"30 02 00 00\"); found {raw:?}"),
                ),
            }
        }
        if actions.len() > 1 {
            let names: Vec<&str> = actions.iter().map(Action::name).collect();
            self.error(
                at,
                format!(
                    "a step has at most one action; this one has {} (split it into steps)",
                    names.join(", ")
                ),
            );
        }
        let expect = step
            .expect
            .as_ref()
            .and_then(|expect| self.expectation(&expect.value, expect.referenced, marks, 0));
        if actions.is_empty() && expect.is_none() && step.expect.is_none() {
            self.error(at, format!("{name}: the step has neither an action nor an expectation"));
        }
        Some(StepKind::Client(Box::new(crate::scenario::ClientStep {
            client: name.to_owned(),
            only,
            action: actions.into_iter().next(),
            expect,
        })))
    }

    fn subscribe(
        &mut self,
        name: &str,
        subscribe: &schema::SubscribeStep,
        at: Location,
        probe: bool,
    ) -> Option<Action> {
        if subscribe.no_wait && !probe {
            self.error(
                at,
                format!("{name}: our client always waits for its SUBACK; no_wait is for probes"),
            );
        }
        let mut subscriptions = Vec::new();
        if let Some(filter) = &subscribe.filter {
            subscriptions.push(self.subscription(
                at,
                filter,
                subscribe.qos,
                subscribe.no_local,
                subscribe.retain_as_published,
                subscribe.retain_handling,
            )?);
        }
        for spec in &subscribe.filters {
            subscriptions.push(self.subscription(
                at,
                &spec.filter,
                spec.qos,
                spec.no_local,
                spec.retain_as_published,
                spec.retain_handling,
            )?);
        }
        if subscriptions.is_empty() {
            self.error(at, "subscribe needs `filter` or `filters`");
            return None;
        }
        Some(Action::Subscribe {
            subscriptions,
            identifier: subscribe.identifier,
            no_wait: subscribe.no_wait,
        })
    }

    fn subscription(
        &mut self,
        at: Location,
        filter: &str,
        qos: Qos,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: u8,
    ) -> Option<(String, SubscriptionOptions)> {
        let retain_handling = match retain_handling {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => {
                self.error(at, "retain_handling must be 0, 1 or 2");
                return None;
            }
        };
        Some((
            filter.to_owned(),
            SubscriptionOptions {
                qos: qos_of(qos),
                no_local,
                retain_as_published,
                retain_handling,
            },
        ))
    }

    fn publish(&mut self, name: &str, publish: &schema::PublishStep, at: Location, probe: bool) -> Option<Action> {
        let mut payloads: Vec<Bytes> = publish
            .payloads
            .iter()
            .map(|payload| Bytes::from(payload.clone().into_bytes()))
            .collect();
        match (&publish.payload, payloads.is_empty()) {
            (Some(payload), true) => payloads.push(Bytes::from(payload.clone().into_bytes())),
            (None, true) => payloads.push(Bytes::new()),
            (Some(_), false) => self.error(at, "publish has `payload` or `payloads`, not both"),
            (None, false) => {}
        }
        if !probe && (publish.dup || publish.packet_id.is_some()) {
            self.error(
                at,
                format!("{name}: our client sets DUP and packet ids itself; they are for probes"),
            );
        }
        if probe && publish.no_wait {
            self.error(
                at,
                format!("{name}: a probe never waits for acks; no_wait is for our client"),
            );
        }
        if publish.packet_id.is_some() && payloads.len() > 1 {
            self.error(at, "a packet_id fits one message, not `payloads`");
        }
        if publish.packet_id == Some(0) {
            // A probe may well send packet id 0 on purpose, but through `raw`: the encoder
            // refuses an invalid packet.
            self.error(at, "packet id 0 is invalid; send it as `raw` bytes");
        }
        let properties = PropertyFields {
            message_expiry_interval_s: publish.message_expiry_s,
            topic_alias: publish.topic_alias,
            response_topic: publish.response_topic.clone(),
            correlation_data: publish
                .correlation_data
                .as_ref()
                .map(|data| Bytes::from(data.clone().into_bytes())),
            content_type: publish.content_type.clone(),
            payload_format_indicator: publish.payload_format_indicator,
            user_properties: publish.user_properties.clone(),
            ..PropertyFields::default()
        };
        Some(Action::Publish(Box::new(PublishPlan {
            topic: publish.topic.clone(),
            payloads,
            qos: qos_of(publish.qos),
            retain: publish.retain,
            dup: publish.dup,
            packet_id: publish.packet_id,
            properties,
            no_wait: publish.no_wait,
        })))
    }

    fn expectation(
        &mut self,
        expectation: &Expectation,
        at: Location,
        marks: &BTreeSet<String>,
        depth: usize,
    ) -> Option<Expect> {
        let errors_before = self.errors.len();
        let mut kinds = Vec::new();
        for (pattern, packet_type) in [
            (&expectation.connack, PacketType::ConnAck),
            (&expectation.publish, PacketType::Publish),
            (&expectation.puback, PacketType::PubAck),
            (&expectation.pubrec, PacketType::PubRec),
            (&expectation.pubrel, PacketType::PubRel),
            (&expectation.pubcomp, PacketType::PubComp),
            (&expectation.suback, PacketType::SubAck),
            (&expectation.unsuback, PacketType::UnsubAck),
            (&expectation.pingresp, PacketType::PingResp),
            (&expectation.disconnect, PacketType::Disconnect),
        ] {
            if let Some(pattern) = pattern {
                if let Some(pattern) = self.pattern(pattern, packet_type, at) {
                    kinds.push(ExpectKind::Packet(Box::new(pattern)));
                }
            }
        }
        if let Some(nothing) = &expectation.nothing {
            let of = nothing.of.as_ref().and_then(|of| {
                let packet_type = packet_type_named(of);
                if packet_type.is_none() {
                    self.error(
                        at,
                        format!("nothing.of: expected a packet type such as publish; found {of:?}"),
                    );
                }
                packet_type
            });
            kinds.push(ExpectKind::Nothing {
                duration: Duration::from_millis(nothing.for_ms),
                of,
            });
        }
        if expectation.closed.is_some() {
            kinds.push(ExpectKind::Closed);
        }
        if let Some(messages) = &expectation.messages {
            let bytes = |list: &Option<Vec<String>>| {
                list.as_ref().map(|list| {
                    list.iter()
                        .map(|payload| Bytes::from(payload.clone().into_bytes()))
                        .collect::<Vec<_>>()
                })
            };
            let plan = MessagesPlan {
                topic: messages.topic.clone(),
                count: messages.count,
                at_least: messages.at_least,
                payloads: bytes(&messages.payloads),
                first_arrivals: bytes(&messages.first_arrivals),
            };
            if plan.count.is_none()
                && plan.at_least.is_none()
                && plan.payloads.is_none()
                && plan.first_arrivals.is_none()
            {
                self.error(at, "messages needs count, at_least, payloads or first_arrivals");
            }
            kinds.push(ExpectKind::Messages(plan));
        }
        if let Some(alternatives) = &expectation.any_of {
            if depth > 4 {
                self.error(at, "any_of nested deeper than 4");
                return None;
            }
            if alternatives.len() < 2 {
                self.error(at, "any_of needs at least two alternatives");
            }
            let resolved: Vec<Expect> = alternatives
                .iter()
                .filter_map(|alternative| {
                    // An alternative without timing of its own shares the any_of's.
                    let mut alternative = alternative.clone();
                    if alternative.within_ms.is_none() && alternative.window_ms.is_none() {
                        alternative.within_ms = expectation.within_ms;
                        alternative.window_ms = expectation.window_ms;
                        alternative.since = alternative.since.or_else(|| expectation.since.clone());
                        alternative.early = alternative.early.or(expectation.early);
                    }
                    self.expectation(&alternative, at, marks, depth + 1)
                })
                .collect();
            kinds.push(ExpectKind::AnyOf(resolved));
        }
        if kinds.len() != 1 {
            if kinds.is_empty() && self.errors.len() > errors_before {
                return None; // the kind's own error says what is wrong
            }
            self.error(
                at,
                format!(
                    "an expectation has exactly one of connack, publish, puback, pubrec, pubrel, pubcomp, suback, unsuback, pingresp, disconnect, nothing, closed, messages, any_of; found {}",
                    kinds.len()
                ),
            );
            return None;
        }
        let kind = kinds.remove(0);
        let since = match expectation.since.as_deref() {
            None | Some("step") => Since::Step,
            Some("last_sent") => Since::LastSent,
            Some(mark) if marks.contains(mark) => Since::Mark(mark.to_owned()),
            Some(other) => {
                self.error(
                    at,
                    format!("since: expected step, last_sent or a mark set before this step; found {other:?}"),
                );
                Since::Step
            }
        };
        let window = expectation.window_ms.map(|[min, max]| {
            if min > max {
                self.error(
                    at,
                    format!("window_ms [{min}, {max}]: the lower bound is above the upper"),
                );
            }
            (Duration::from_millis(min), Duration::from_millis(max))
        });
        if window.is_some() && expectation.within_ms.is_some() {
            self.error(at, "give within_ms or window_ms, not both");
        }
        if since != Since::Step && window.is_none() {
            self.error(at, "`since` applies to a window: add window_ms");
        }
        if let ExpectKind::Nothing { .. } = kind {
            if window.is_some() || expectation.within_ms.is_some() {
                self.error(at, "nothing lasts for_ms; it takes no within_ms or window_ms");
            }
        }
        let early_informational = match expectation.early {
            None | Some(Level::Fail) => false,
            Some(Level::Informational) => true,
            Some(other) => {
                self.error(at, format!("early: expected fail or informational; found {other:?}"));
                false
            }
        };
        if early_informational && window.is_none() {
            self.error(at, "`early` applies to a window: add window_ms");
        }
        let should = match expectation.level {
            None | Some(Level::Must) => false,
            Some(Level::Should) => true,
            Some(other) => {
                self.error(at, format!("level: expected must or should; found {other:?}"));
                false
            }
        };
        Some(Expect {
            kind,
            timing: Timing {
                within: expectation.within_ms.map_or(WITHIN_DEFAULT, Duration::from_millis),
                window,
                since,
                early_informational,
                should,
            },
        })
    }

    fn pattern(&mut self, pattern: &PacketPattern, packet_type: PacketType, at: Location) -> Option<Pattern> {
        let mut resolved = Pattern::packet_type(packet_type);
        resolved.topic = pattern.topic.clone();
        resolved.payload = pattern
            .payload
            .as_ref()
            .map(|payload| Bytes::from(payload.clone().into_bytes()));
        resolved.qos = pattern.qos.map(qos_of);
        resolved.dup = pattern.dup;
        resolved.retain = pattern.retain;
        resolved.packet_id = pattern.packet_id;
        resolved.session_present = pattern.session_present;
        if let Some(reason) = &pattern.reason {
            resolved.reason_code = Some(self.reason(reason, at)?);
        }
        if let Some(reasons) = &pattern.reasons {
            let mut codes = Vec::new();
            for reason in reasons {
                codes.push(self.reason(reason, at)?);
            }
            resolved.reason_codes = Some(codes);
        }
        for (name, value) in &pattern.properties {
            let Some(id) = property_named(name) else {
                self.error(
                    at,
                    format!("unknown property {name:?}: use the spec's name in snake case, e.g. server_keep_alive"),
                );
                continue;
            };
            resolved.properties.push(match value {
                PropertyValueSpec::Text(text) if text == "present" => PropertyExpectation::present(id),
                PropertyValueSpec::Text(text) if text == "absent" => PropertyExpectation::absent(id),
                // Binary data (Correlation Data, Authentication Data) is written as its text.
                PropertyValueSpec::Text(text) if id.wire_type() == WireType::BinaryData => {
                    PropertyExpectation::equals(id, ExpectedValue::Binary(Bytes::from(text.clone().into_bytes())))
                }
                PropertyValueSpec::Text(text) => PropertyExpectation::equals(id, text.as_str()),
                PropertyValueSpec::Integer(value) => match u32::try_from(*value) {
                    Ok(value) => PropertyExpectation::equals(id, ExpectedValue::Integer(value)),
                    Err(_) => {
                        self.error(at, format!("property {name}: {value} does not fit in 32 bits"));
                        continue;
                    }
                },
            });
        }
        for (name, value) in &pattern.user_properties {
            resolved.properties.push(PropertyExpectation::equals(
                PropertyId::UserProperty,
                ExpectedValue::Pair(name.clone(), value.clone()),
            ));
        }
        Some(resolved)
    }

    fn reason(&mut self, reason: &ReasonSpec, at: Location) -> Option<ReasonCode> {
        match reason {
            ReasonSpec::Number(number) => match u8::try_from(*number) {
                Ok(code) => Some(ReasonCode(code)),
                Err(_) => {
                    self.error(at, format!("reason code {number} is above 255"));
                    None
                }
            },
            ReasonSpec::Name(name) => {
                let code = reason_named(name);
                if code.is_none() {
                    self.error(
                        at,
                        format!("unknown reason code {name:?}: use a number (0x8D) or the spec's name in snake case (keep_alive_timeout)"),
                    );
                }
                code
            }
        }
    }
}

/// What a scenario's own steps show it needs of the broker, whether it says so or not: a
/// wildcard or shared filter, a QoS, RETAIN, a Subscription Identifier, a Topic Alias. Raw bytes
/// are not looked into.
fn implied_needs(steps: &[Step], clients: &BTreeMap<String, ClientPlan>) -> BTreeSet<Capability> {
    let mut needs = BTreeSet::new();
    let qos = |needs: &mut BTreeSet<Capability>, qos: QoS| match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            needs.insert(Capability::Qos1);
        }
        QoS::ExactlyOnce => {
            needs.insert(Capability::Qos2);
        }
    };
    let will = |needs: &mut BTreeSet<Capability>, settings: &schema::ConnectSettings| {
        if let Some(will) = &settings.will {
            qos(needs, qos_of(will.qos));
            if will.retain {
                needs.insert(Capability::Retain);
            }
        }
    };
    for plan in clients.values() {
        will(&mut needs, &plan.connect);
    }
    for step in steps {
        let StepKind::Client(step) = &step.kind else { continue };
        match &step.action {
            Some(Action::Connect { settings, .. }) => will(&mut needs, settings),
            Some(Action::Subscribe {
                subscriptions,
                identifier,
                ..
            }) => {
                for (filter, options) in subscriptions {
                    let inner = match filter.strip_prefix("$share/") {
                        Some(rest) => {
                            needs.insert(Capability::SharedSubscriptions);
                            rest.split_once('/').map_or("", |(_, inner)| inner)
                        }
                        None => filter.as_str(),
                    };
                    if inner.contains('+') || inner.contains('#') {
                        needs.insert(Capability::WildcardSubscriptions);
                    }
                    qos(&mut needs, options.qos);
                }
                if identifier.is_some() {
                    needs.insert(Capability::SubscriptionIdentifiers);
                }
            }
            Some(Action::Publish(publish)) => {
                qos(&mut needs, publish.qos);
                if publish.retain {
                    needs.insert(Capability::Retain);
                }
                if publish.properties.topic_alias.is_some() {
                    needs.insert(Capability::TopicAliases);
                }
            }
            _ => {}
        }
    }
    needs
}

fn unknown_client(name: &str, clients: &BTreeMap<String, ClientPlan>) -> String {
    let known: Vec<&str> = clients.keys().map(String::as_str).collect();
    format!("unknown client {name:?}; the clients are {}", known.join(", "))
}

fn version_list(versions: &[ProtocolVersion]) -> String {
    versions
        .iter()
        .map(|version| crate::scenario::version_name(*version))
        .collect::<Vec<_>>()
        .join(", ")
}

fn qos_of(qos: Qos) -> QoS {
    QoS::from_u8(qos.0).unwrap_or(QoS::ExactlyOnce)
}

/// `MQTT-` followed by dot-separated numbers and a `-` number: `MQTT-3.1.2-24`, `MQTT-4.7.3-1`.
pub fn is_statement_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("MQTT-") else {
        return false;
    };
    let Some((section, number)) = rest.rsplit_once('-') else {
        return false;
    };
    let numeric = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
    numeric(number) && section.split('.').all(numeric)
}

/// `keep_alive_timeout` for "Keep Alive timeout": lower case, words joined by `_`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// A reason code by its name in any packet type (`success`, `normal_disconnection`,
/// `granted_qos_1`, `keep_alive_timeout`).
pub fn reason_named(name: &str) -> Option<ReasonCode> {
    let wanted = snake_case(name);
    ReasonCode::all().find(|code| {
        (1..=15u8)
            .filter_map(PacketType::from_nibble)
            .filter_map(|packet_type| code.name_in(packet_type))
            .chain(code.name())
            .any(|known| snake_case(known) == wanted)
    })
}

pub fn property_named(name: &str) -> Option<PropertyId> {
    let wanted = snake_case(name);
    PropertyId::ALL
        .iter()
        .copied()
        .find(|id| snake_case(id.name()) == wanted)
}

pub fn packet_type_named(name: &str) -> Option<PacketType> {
    let wanted = snake_case(name);
    (1..=15u8)
        .filter_map(PacketType::from_nibble)
        .find(|packet_type| snake_case(packet_type.name()) == wanted)
}

fn parse_hex(text: &str) -> Option<Bytes> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    let mut bytes = Vec::with_capacity(digits.len() / 2);
    for pair in digits.as_bytes().chunks(2) {
        let pair = std::str::from_utf8(pair).ok()?;
        bytes.push(u8::from_str_radix(pair, 16).ok()?);
    }
    Some(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_snake_case() {
        assert_eq!(reason_named("keep_alive_timeout"), Some(ReasonCode::KEEP_ALIVE_TIMEOUT));
        assert_eq!(reason_named("normal_disconnection"), Some(ReasonCode::SUCCESS));
        assert_eq!(reason_named("granted_qos_1"), Some(ReasonCode(1)));
        assert_eq!(
            reason_named("disconnect_with_will_message"),
            Some(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)
        );
        assert_eq!(reason_named("no such code"), None);
        assert_eq!(property_named("server_keep_alive"), Some(PropertyId::ServerKeepAlive));
        assert_eq!(property_named("maximum_qos"), Some(PropertyId::MaximumQoS));
        assert_eq!(packet_type_named("publish"), Some(PacketType::Publish));
        assert_eq!(packet_type_named("disconnect"), Some(PacketType::Disconnect));
    }

    #[test]
    fn statement_ids_have_the_spec_shape() {
        assert!(is_statement_id("MQTT-3.1.2-24"));
        assert!(is_statement_id("MQTT-4.7.3-1"));
        assert!(!is_statement_id("MQTT-3.1.2"));
        assert!(!is_statement_id("3.1.2-24"));
        assert!(!is_statement_id("MQTT-3.x.2-24"));
    }

    #[test]
    fn hex_allows_spaces_and_refuses_odd_digits() {
        assert_eq!(parse_hex("30 02 00 00").as_deref(), Some(&[0x30, 0x02, 0, 0][..]));
        assert_eq!(parse_hex("3"), None);
        assert_eq!(parse_hex("zz"), None);
    }
}
