//! A scenario as the engine runs it: loaded, checked and resolved from its YAML ([`crate::load`]).
//! Names are resolved to protocol values (reason codes, property ids, QoS), hex to bytes,
//! milliseconds to durations; nothing here can fail any more at run time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::probe::Pattern;
use mqtt_protocol::{PacketType, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

pub use crate::schema::{
    BrokerSettings, Capability, CaseLevel, ClientKind, ConnectSettings, Invariant, Phase, Requirement, WillSpec,
};

/// One loaded scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `<area>/<name>`: the folder it lives in and its name, e.g. `will/delay-cancelled-by-resume`.
    pub id: String,
    pub path: PathBuf,
    pub about: String,
    pub versions: Vec<ProtocolVersion>,
    pub statements: Vec<Statement>,
    pub requires: BTreeSet<Requirement>,
    pub tick: Duration,
    pub duration: Duration,
    pub broker: Option<BrokerSettings>,
    pub clients: BTreeMap<String, ClientPlan>,
    /// The `faults:` schedule, by instant.
    pub faults: Vec<(Duration, Fault)>,
    pub steps: Vec<Step>,
    pub invariants: Vec<Invariant>,
    pub level: CaseLevel,
    pub needs: BTreeSet<Capability>,
    pub phase: Phase,
    /// The planted bugs it must catch, by name.
    pub kills: Vec<String>,
}

impl Scenario {
    /// The statement ids this scenario cites for `version`.
    pub fn statements_for(&self, version: ProtocolVersion) -> Vec<String> {
        self.statements
            .iter()
            .filter(|statement| statement.version.is_none_or(|only| only == version))
            .map(|statement| statement.id.clone())
            .collect()
    }

    /// The clients that get a link of their own (a host under `sim`, a proxy live), because a
    /// fault names them: so that a fault hits one link.
    pub fn faulted_clients(&self) -> BTreeSet<String> {
        let step_faults = self.steps.iter().filter_map(|step| match &step.kind {
            StepKind::Fault(fault) => Some(fault),
            _ => None,
        });
        self.faults
            .iter()
            .map(|(_, fault)| fault)
            .chain(step_faults)
            .filter_map(|fault| fault.client().map(str::to_owned))
            .collect()
    }
}

/// A statement id, for one version or for every version the scenario runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub version: Option<ProtocolVersion>,
    pub id: String,
}

/// `"5.0"` or `"3.1.1"`.
pub fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V5 => "5.0",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V3_1 => "3.1",
    }
}

pub fn parse_version(text: &str) -> Option<ProtocolVersion> {
    match text {
        "5.0" | "5" => Some(ProtocolVersion::V5),
        "3.1.1" => Some(ProtocolVersion::V3_1_1),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub kind: ClientKind,
    /// As written; live runs prefix it.
    pub client_id: String,
    pub connect: ConnectSettings,
    pub reconnect: Option<mqtt_client::ReconnectPolicy>,
    pub ping_timeout: Option<Duration>,
}

/// One step, with the line it was written on (for evidence).
#[derive(Debug, Clone)]
pub struct Step {
    pub line: u64,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Client(Box<ClientStep>),
    Fault(Fault),
    Wait(Duration),
    /// Waits this long plus the world's tolerance.
    WaitPast(Duration),
    Mark(String),
}

/// What one client does in one step: at most one action, then at most one expectation.
#[derive(Debug, Clone)]
pub struct ClientStep {
    pub client: String,
    /// Runs only in this version.
    pub only: Option<ProtocolVersion>,
    pub action: Option<Action>,
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Connect {
        settings: ConnectSettings,
        no_wait: bool,
    },
    Subscribe {
        subscriptions: Vec<(String, SubscriptionOptions)>,
        identifier: Option<u32>,
        no_wait: bool,
    },
    Unsubscribe {
        filters: Vec<String>,
        no_wait: bool,
    },
    Publish(Box<PublishPlan>),
    /// PUBACK, PUBREC, PUBREL or PUBCOMP; the packet id of the last PUBLISH matched (or, for
    /// PUBREL, the last PUBREC received) when absent.
    Ack {
        packet_type: PacketType,
        packet_id: Option<u16>,
        reason_code: Option<ReasonCode>,
    },
    PingReq,
    Disconnect {
        reason_code: Option<ReasonCode>,
        session_expiry_s: Option<u32>,
    },
    Close,
    Raw(Bytes),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Connect { .. } => "connect",
            Action::Subscribe { .. } => "subscribe",
            Action::Unsubscribe { .. } => "unsubscribe",
            Action::Publish(_) => "publish",
            Action::Ack { packet_type, .. } => match packet_type {
                PacketType::PubAck => "puback",
                PacketType::PubRec => "pubrec",
                PacketType::PubRel => "pubrel",
                _ => "pubcomp",
            },
            Action::PingReq => "pingreq",
            Action::Disconnect { .. } => "disconnect",
            Action::Close => "close",
            Action::Raw(_) => "raw",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub topic: String,
    pub payloads: Vec<Bytes>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: Option<u16>,
    pub properties: mqtt_protocol::PropertyFields,
    pub no_wait: bool,
}

/// When an expectation is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait from the step's start when there is no window.
    pub within: Duration,
    /// `[min, max]` since `since`.
    pub window: Option<(Duration, Duration)>,
    pub since: Since,
    /// An arrival before the window's lower bound is informational, not a failure.
    pub early_informational: bool,
    /// A SHOULD: a failure is informational unless strict.
    pub should: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    Step,
    LastSent,
    Mark(String),
}

impl fmt::Display for Since {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Since::Step => f.write_str("the step's start"),
            Since::LastSent => f.write_str("the client's last packet"),
            Since::Mark(name) => write!(f, "mark {name}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub kind: ExpectKind,
    pub timing: Timing,
}

#[derive(Debug, Clone)]
pub enum ExpectKind {
    /// A packet matching the pattern (whose topic is relative: live runs prefix it).
    Packet(Box<Pattern>),
    Nothing {
        duration: Duration,
        of: Option<PacketType>,
    },
    Closed,
    Messages(MessagesPlan),
    AnyOf(Vec<Expect>),
}

#[derive(Debug, Clone, Default)]
pub struct MessagesPlan {
    pub topic: Option<String>,
    pub count: Option<usize>,
    pub at_least: Option<usize>,
    pub payloads: Option<Vec<Bytes>>,
    pub first_arrivals: Option<Vec<Bytes>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    ToBroker,
    FromBroker,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Partition { client: String, direction: Direction },
    Repair { client: String },
    Hold { client: String },
    Release { client: String },
    Latency { client: String, latency: Duration },
    Reset { client: String },
    BrokerCrash,
    BrokerRestart,
}

impl Fault {
    /// The client whose link the fault hits, if it hits one.
    pub fn client(&self) -> Option<&str> {
        match self {
            Fault::Partition { client, .. }
            | Fault::Repair { client }
            | Fault::Hold { client }
            | Fault::Release { client }
            | Fault::Latency { client, .. }
            | Fault::Reset { client } => Some(client),
            Fault::BrokerCrash | Fault::BrokerRestart => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { client, direction } => match direction {
                Direction::Both => write!(f, "partition {client} <-> broker"),
                Direction::ToBroker => write!(f, "partition {client} -> broker"),
                Direction::FromBroker => write!(f, "partition broker -> {client}"),
            },
            Fault::Repair { client } => write!(f, "repair {client} <-> broker"),
            Fault::Hold { client } => write!(f, "hold {client} <-> broker"),
            Fault::Release { client } => write!(f, "release {client} <-> broker"),
            Fault::Latency { client, latency } => {
                write!(f, "latency {client} <-> broker {} ms", latency.as_millis())
            }
            Fault::Reset { client } => write!(f, "reset {client}"),
            Fault::BrokerCrash => f.write_str("crash broker"),
            Fault::BrokerRestart => f.write_str("restart broker"),
        }
    }
}
