//! The YAML form of a scenario, as serde reads it. Every struct refuses unknown keys, and the
//! values the loader checks further ([`crate::load`]) keep their source location
//! ([`Spanned`]), so that a mistake is reported as `file:line:column`.
//!
//! ```yaml
//! name: qos1-resent-after-reconnect
//! about: A QoS 1 message left unacknowledged when the link dies is sent again with DUP.
//! statements: ["MQTT-4.4.0-1"]          # or "5.0:MQTT-3.1.2-22" for one version only
//! versions: ["5.0", "3.1.1"]
//! clients:
//!   pub: { client_id: pub-1 }
//!   sub: { kind: probe, clean_start: false, session_expiry_s: 60 }
//! steps:
//!   - sub: { connect: {} }
//!   - sub: { subscribe: { filter: t/1, qos: 1 } }
//!   - pub: { connect: {}, publish: { topic: t/1, qos: 1, payload: m1 } }
//!   - sub: { expect: { publish: { topic: t/1, payload: m1, dup: false } } }
//!   - fault: { partition: sub }
//!   - wait_ms: 2000
//!   - fault: { repair: sub }
//! ```
//!
//! A step is a map with one key: a client's name (its actions and an optional expectation), or
//! one of `fault`, `wait_ms`, `mark`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: Spanned<String>,
    /// One or two sentences: what the scenario shows.
    #[serde(default)]
    pub about: String,
    /// Normative statements: `MQTT-4.4.0-1` (the same id in every version the scenario runs) or
    /// `5.0:MQTT-3.1.2-22` (that version only).
    #[serde(default)]
    pub statements: Vec<Spanned<String>>,
    /// `"5.0"` and/or `"3.1.1"`; both when absent.
    #[serde(default)]
    pub versions: Vec<Spanned<String>>,
    /// What the world must be able to do, beyond talking MQTT.
    #[serde(default)]
    pub requires: Vec<Spanned<Requirement>>,
    /// The simulator's tick; 10 ms when absent. A scenario with tight windows may choose less.
    pub tick_ms: Option<Spanned<u64>>,
    /// The bound on one run (simulated time under `sim`, real time live); 60 s when absent.
    pub duration_s: Option<Spanned<u64>>,
    /// The reference broker's configuration for this scenario (simulated, or started in-process
    /// live). A broker the harness does not start cannot be configured: such a scenario is not
    /// applicable to it.
    pub broker: Option<Spanned<BrokerSettings>>,
    pub clients: BTreeMap<String, Spanned<ClientSpec>>,
    /// Faults at fixed instants since the start, concurrent with the steps.
    #[serde(default)]
    pub faults: Vec<Spanned<FaultSpec>>,
    pub steps: Vec<Spanned<Step>>,
    /// Checked over the whole run. Absent: `no_loss`, `no_qos2_duplicates` and `ordered`.
    pub invariants: Option<Vec<Spanned<Invariant>>>,
    /// How strong the statements it checks are: `must` (the default), `should` or `may`. A
    /// failure of a SHOULD or MAY scenario is informational unless `--strict`.
    pub level: Option<Spanned<CaseLevel>>,
    /// What the broker must offer for the scenario to apply; a broker that declines one (5.0
    /// CONNACK, or probing in 3.1.1) makes it not applicable, with the reason.
    #[serde(default)]
    pub needs: Vec<Spanned<Capability>>,
    /// `serial` for scenarios that touch the whole broker (takeover races, limits, the retained
    /// store) and must not run beside others; `concurrent` by default.
    pub phase: Option<Phase>,
    /// The planted bugs (of the reference broker's `mutations` feature) this scenario must
    /// catch: a test runs it against each and expects a failure.
    #[serde(default)]
    pub kills: Vec<Spanned<String>>,
}

/// The strength of what a scenario checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseLevel {
    #[default]
    Must,
    Should,
    May,
}

impl CaseLevel {
    pub fn name(self) -> &'static str {
        match self {
            CaseLevel::Must => "MUST",
            CaseLevel::Should => "SHOULD",
            CaseLevel::May => "MAY",
        }
    }
}

/// An optional broker feature a scenario may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Qos1,
    Qos2,
    Retain,
    WildcardSubscriptions,
    SubscriptionIdentifiers,
    SharedSubscriptions,
    /// Topic aliases from the client (the broker's Topic Alias Maximum above 0).
    TopicAliases,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::Qos1,
        Capability::Qos2,
        Capability::Retain,
        Capability::WildcardSubscriptions,
        Capability::SubscriptionIdentifiers,
        Capability::SharedSubscriptions,
        Capability::TopicAliases,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::Qos1 => "qos1",
            Capability::Qos2 => "qos2",
            Capability::Retain => "retain",
            Capability::WildcardSubscriptions => "wildcard_subscriptions",
            Capability::SubscriptionIdentifiers => "subscription_identifiers",
            Capability::SharedSubscriptions => "shared_subscriptions",
            Capability::TopicAliases => "topic_aliases",
        }
    }
}

/// When a scenario may run beside others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Concurrent,
    Serial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// The broker can be crashed and restarted (sim, or a broker the harness launched).
    BrokerRestart,
    /// The broker can be configured (sim, or the reference broker in-process).
    BrokerConfig,
}

impl Requirement {
    pub fn name(self) -> &'static str {
        match self {
            Requirement::BrokerRestart => "broker_restart",
            Requirement::BrokerConfig => "broker_config",
        }
    }
}

/// Overrides of the reference broker's configuration (`mqtt_broker::Config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    pub server_keep_alive_s: Option<u16>,
    pub receive_maximum: Option<u16>,
    pub inflight_count_max: Option<u16>,
    pub queued_messages_max: Option<usize>,
    pub retained_messages_max: Option<usize>,
    pub maximum_packet_size: Option<u32>,
    pub maximum_qos: Option<Qos>,
    pub topic_alias_maximum: Option<u16>,
    pub retain_available: Option<bool>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

/// Our client (`client`: acks, pings and reconnects on its own) or a packet-level probe
/// (`probe`: the scenario sends every packet, acks included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    #[default]
    Client,
    Probe,
}

/// Declares a struct with the fields of a CONNECT (as [`ConnectSettings`] lists them) plus its own,
/// and its conversion to [`ConnectSettings`]: serde's `flatten` would lose `deny_unknown_fields`.
macro_rules! with_connect_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            pub clean_start: Option<bool>,
            pub keep_alive_s: Option<u16>,
            pub session_expiry_s: Option<u32>,
            pub receive_maximum: Option<u16>,
            pub maximum_packet_size: Option<u32>,
            pub topic_alias_maximum: Option<u16>,
            pub request_problem_information: Option<bool>,
            pub request_response_information: Option<bool>,
            pub will: Option<WillSpec>,
            pub username: Option<String>,
            pub password: Option<String>,
        }

        impl $name {
            /// The CONNECT fields this one sets.
            pub fn connect_settings(&self) -> ConnectSettings {
                ConnectSettings {
                    clean_start: self.clean_start,
                    keep_alive_s: self.keep_alive_s,
                    session_expiry_s: self.session_expiry_s,
                    receive_maximum: self.receive_maximum,
                    maximum_packet_size: self.maximum_packet_size,
                    topic_alias_maximum: self.topic_alias_maximum,
                    request_problem_information: self.request_problem_information,
                    request_response_information: self.request_response_information,
                    will: self.will.clone(),
                    username: self.username.clone(),
                    password: self.password.clone(),
                }
            }
        }
    };
}

with_connect_fields! {
    /// A named client: its kind, and the defaults of every CONNECT it sends.
    pub struct ClientSpec {
        #[serde(default)]
        pub kind: ClientKind,
        /// The MQTT client id; the client's name when absent. Live runs prefix it.
        pub client_id: Option<String>,
        /// Reconnect on loss with bounded backoff (`client` only).
        pub reconnect: Option<ReconnectSpec>,
        /// How long our client waits for a PINGRESP before it declares the server dead.
        pub ping_timeout_ms: Option<u64>,
    }
}

with_connect_fields! {
    /// Connects (again), with these fields overriding the client's.
    pub struct ConnectStep {
        /// Do not wait for the CONNACK (probe only; our client always waits).
        #[serde(default)]
        pub no_wait: bool,
    }
}

/// What a CONNECT says: `None` leaves a field to the client's defaults (clean start, keep alive
/// 60 s, nothing else set).
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    pub clean_start: Option<bool>,
    pub keep_alive_s: Option<u16>,
    /// 5.0 only.
    pub session_expiry_s: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_problem_information: Option<bool>,
    pub request_response_information: Option<bool>,
    pub will: Option<WillSpec>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl ConnectSettings {
    /// These settings, with `overrides`' fields in place of those it sets.
    pub fn overridden_by(&self, overrides: &ConnectSettings) -> ConnectSettings {
        ConnectSettings {
            clean_start: overrides.clean_start.or(self.clean_start),
            keep_alive_s: overrides.keep_alive_s.or(self.keep_alive_s),
            session_expiry_s: overrides.session_expiry_s.or(self.session_expiry_s),
            receive_maximum: overrides.receive_maximum.or(self.receive_maximum),
            maximum_packet_size: overrides.maximum_packet_size.or(self.maximum_packet_size),
            topic_alias_maximum: overrides.topic_alias_maximum.or(self.topic_alias_maximum),
            request_problem_information: overrides
                .request_problem_information
                .or(self.request_problem_information),
            request_response_information: overrides
                .request_response_information
                .or(self.request_response_information),
            will: overrides.will.clone().or_else(|| self.will.clone()),
            username: overrides.username.clone().or_else(|| self.username.clone()),
            password: overrides.password.clone().or_else(|| self.password.clone()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WillSpec {
    pub topic: String,
    #[serde(default)]
    pub payload: String,
    #[serde(default)]
    pub qos: Qos,
    #[serde(default)]
    pub retain: bool,
    /// Will Delay Interval (5.0).
    pub delay_s: Option<u32>,
    /// Message Expiry Interval of the will (5.0).
    pub message_expiry_s: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectSpec {
    #[serde(default = "ReconnectSpec::initial_ms_default")]
    pub initial_ms: u64,
    #[serde(default = "ReconnectSpec::max_ms_default")]
    pub max_ms: u64,
    #[serde(default = "ReconnectSpec::attempts_default")]
    pub attempts: u32,
}

impl ReconnectSpec {
    fn initial_ms_default() -> u64 {
        500
    }
    fn max_ms_default() -> u64 {
        2000
    }
    fn attempts_default() -> u32 {
        30
    }
}

/// A QoS level, 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Qos(pub u8);

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Qos, D::Error> {
        struct QosVisitor;
        impl Visitor<'_> for QosVisitor {
            type Value = Qos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a QoS: 0, 1 or 2")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Qos, E> {
                match value {
                    0..=2 => Ok(Qos(value as u8)),
                    _ => Err(E::custom(format!("expected a QoS (0, 1 or 2), found {value}"))),
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Qos, E> {
                self.visit_u64(u64::try_from(value).unwrap_or(u64::MAX))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Qos, E> {
                Err(E::custom(format!("expected a QoS (0, 1 or 2), found \"{value}\"")))
            }
        }
        deserializer.deserialize_any(QosVisitor)
    }
}

/// A reason code: its number (`0x8D`, `141`) or its name in snake case (`keep_alive_timeout`).
/// Checked by the loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasonSpec {
    Number(u64),
    Name(String),
}

impl<'de> Deserialize<'de> for ReasonSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ReasonSpec, D::Error> {
        struct ReasonVisitor;
        impl Visitor<'_> for ReasonVisitor {
            type Value = ReasonSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a reason code: a number (0x8D) or a name (keep_alive_timeout)")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ReasonSpec, E> {
                Ok(ReasonSpec::Number(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ReasonSpec, E> {
                Ok(ReasonSpec::Number(u64::try_from(value).unwrap_or(u64::MAX)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ReasonSpec, E> {
                match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16)
                        .map(ReasonSpec::Number)
                        .map_err(|_| E::custom(format!("\"{value}\" is not a hexadecimal reason code"))),
                    None => Ok(ReasonSpec::Name(value.to_owned())),
                }
            }
        }
        deserializer.deserialize_any(ReasonVisitor)
    }
}

/// One step: see the module documentation.
#[derive(Debug)]
pub enum Step {
    /// A client acts and/or expects.
    Client {
        name: String,
        step: Box<ClientStep>,
    },
    Fault(FaultSpec),
    /// Waits this long before the next step.
    WaitMs(u64),
    /// Waits this long plus the world's tolerance: for a deadline the broker must have met by
    /// then (a session expired, a will published), checked by the next step.
    WaitPastMs(u64),
    /// Names the current instant, for windows measured `since` it.
    Mark(String),
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Step, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a step: a map with one key, a client's name or fault, wait_ms, wait_past_ms, mark")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "an empty step: give a client's name, fault, wait_ms, wait_past_ms or mark",
                    ));
                };
                let step = match key.as_str() {
                    "fault" => Step::Fault(map.next_value()?),
                    "wait_ms" => Step::WaitMs(map.next_value()?),
                    "wait_past_ms" => Step::WaitPastMs(map.next_value()?),
                    "mark" => Step::Mark(map.next_value()?),
                    _ => Step::Client {
                        name: key,
                        step: Box::new(map.next_value()?),
                    },
                };
                if let Some(other) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a step has exactly one key; this one also has `{other}` (make it a step of its own)"
                    )));
                }
                Ok(step)
            }
        }
        deserializer.deserialize_map(StepVisitor)
    }
}

/// What one client does in one step: at most one action, then at most one expectation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientStep {
    /// Runs the step only in this protocol version (`"5.0"` or `"3.1.1"`).
    pub only: Option<Spanned<String>>,
    pub connect: Option<ConnectStep>,
    pub subscribe: Option<SubscribeStep>,
    pub unsubscribe: Option<UnsubscribeStep>,
    pub publish: Option<PublishStep>,
    /// Probe only: acknowledges a PUBLISH (by default the one the last expectation matched).
    pub puback: Option<AckStep>,
    pub pubrec: Option<AckStep>,
    /// Probe only: by default for the last PUBREC received.
    pub pubrel: Option<AckStep>,
    pub pubcomp: Option<AckStep>,
    /// Probe only.
    pub pingreq: Option<Empty>,
    pub disconnect: Option<DisconnectStep>,
    /// Closes the network connection without DISCONNECT, as a crashed client would.
    pub close: Option<Empty>,
    /// Probe only: these bytes, as hexadecimal (spaces allowed).
    pub raw: Option<String>,
    pub expect: Option<Spanned<Expectation>>,
}

/// `{}`: an action without options.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub filter: String,
    #[serde(default)]
    pub qos: Qos,
    #[serde(default)]
    pub no_local: bool,
    #[serde(default)]
    pub retain_as_published: bool,
    /// 0 send retained messages at subscribe, 1 only for a new subscription, 2 never.
    #[serde(default)]
    pub retain_handling: u8,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeStep {
    /// One filter, with the options below; or `filters` for several.
    pub filter: Option<String>,
    #[serde(default)]
    pub qos: Qos,
    #[serde(default)]
    pub no_local: bool,
    #[serde(default)]
    pub retain_as_published: bool,
    #[serde(default)]
    pub retain_handling: u8,
    #[serde(default)]
    pub filters: Vec<SubscriptionSpec>,
    /// Subscription Identifier (5.0).
    pub identifier: Option<u32>,
    /// Do not wait for the SUBACK (probe only).
    #[serde(default)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeStep {
    pub filter: Option<String>,
    #[serde(default)]
    pub filters: Vec<String>,
    #[serde(default)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishStep {
    pub topic: String,
    /// The payload, as text; `payloads` publishes several messages in order instead.
    pub payload: Option<String>,
    #[serde(default)]
    pub payloads: Vec<String>,
    #[serde(default)]
    pub qos: Qos,
    #[serde(default)]
    pub retain: bool,
    /// Probe only.
    #[serde(default)]
    pub dup: bool,
    /// Probe only; allocated from 1 upwards when absent.
    pub packet_id: Option<u16>,
    /// 5.0 properties.
    pub message_expiry_s: Option<u32>,
    pub topic_alias: Option<u16>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<String>,
    pub content_type: Option<String>,
    pub payload_format_indicator: Option<u8>,
    #[serde(default)]
    pub user_properties: Vec<(String, String)>,
    /// Our client waits for the acknowledgement of a QoS 1/2 message unless this is set.
    #[serde(default)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckStep {
    pub packet_id: Option<u16>,
    pub reason: Option<ReasonSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectStep {
    pub reason: Option<ReasonSpec>,
    /// 5.0: a new Session Expiry Interval.
    pub session_expiry_s: Option<u32>,
}

/// A fault on the network or the broker. Exactly one of the verbs; `at_ms` only in the
/// scenario's `faults:` schedule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub at_ms: Option<u64>,
    /// Cuts the client's link both ways: bytes are lost and the connection is dead (TCP does not
    /// recover it), connects fail.
    pub partition: Option<String>,
    /// Cuts only what the client sends.
    pub partition_to_broker: Option<String>,
    /// Cuts only what the broker sends the client.
    pub partition_from_broker: Option<String>,
    /// Ends every partition of the client's link; connections cut meanwhile stay dead.
    pub repair: Option<String>,
    /// Holds the client's bytes both ways, in order, until `release`: an outage TCP rides out.
    pub hold: Option<String>,
    pub release: Option<String>,
    /// Delays the client's bytes both ways.
    pub latency: Option<LatencySpec>,
    /// Ends the client's connections at once, without DISCONNECT.
    pub reset: Option<String>,
    pub broker: Option<BrokerFault>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    pub client: String,
    pub ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerFault {
    /// Stops the broker: every connection ends, and (sessions being in memory) every session.
    Crash,
    /// Starts the broker again after a crash, afresh.
    Restart,
}

/// One expectation: exactly one of the kinds, and the timing fields that apply to it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub connack: Option<PacketPattern>,
    pub publish: Option<PacketPattern>,
    pub puback: Option<PacketPattern>,
    pub pubrec: Option<PacketPattern>,
    pub pubrel: Option<PacketPattern>,
    pub pubcomp: Option<PacketPattern>,
    pub suback: Option<PacketPattern>,
    pub unsuback: Option<PacketPattern>,
    pub pingresp: Option<PacketPattern>,
    pub disconnect: Option<PacketPattern>,
    /// No packet (of `of`, any when absent) arrives for `for_ms`.
    pub nothing: Option<NothingSpec>,
    /// The broker closes the network connection.
    pub closed: Option<Empty>,
    /// The messages received so far, on the client's every connection.
    pub messages: Option<MessagesSpec>,
    /// One of several behaviours the spec allows; the one seen is noted.
    pub any_of: Option<Vec<Expectation>>,
    /// How long to wait for it, from the step's start; 2000 when neither this nor `window_ms`.
    pub within_ms: Option<u64>,
    /// `[min, max]` since `since`: the upper bound gets the world's tolerance added.
    pub window_ms: Option<[u64; 2]>,
    /// `step` (the default: the step's start), `last_sent` (the client's last packet), or the
    /// name of a `mark`.
    pub since: Option<String>,
    /// What an arrival before the window's lower bound is: `fail` (the default) or
    /// `informational` (for bounds the spec does not make a MUST).
    pub early: Option<Level>,
    /// `must` (the default) or `should`: a failed SHOULD is informational unless `--strict`.
    pub level: Option<Level>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Must,
    Should,
    Fail,
    Informational,
}

/// What a received packet must look like; a field left out is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketPattern {
    pub topic: Option<String>,
    pub payload: Option<String>,
    pub qos: Option<Qos>,
    pub dup: Option<bool>,
    pub retain: Option<bool>,
    pub packet_id: Option<u16>,
    pub reason: Option<ReasonSpec>,
    pub session_present: Option<bool>,
    pub reasons: Option<Vec<ReasonSpec>>,
    /// Property name in snake case (`server_keep_alive`) to a value, `present` or `absent`.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValueSpec>,
    /// User Properties that must each be there: `[[name, value], ...]`.
    #[serde(default)]
    pub user_properties: Vec<(String, String)>,
}

/// A property's expected value: a number, a text, or the words `present` / `absent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValueSpec {
    Integer(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for PropertyValueSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PropertyValueSpec, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = PropertyValueSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property value: a number, a text, present or absent")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<PropertyValueSpec, E> {
                Ok(PropertyValueSpec::Integer(value))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<PropertyValueSpec, E> {
                Ok(PropertyValueSpec::Integer(u64::from(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<PropertyValueSpec, E> {
                Ok(PropertyValueSpec::Text(value.to_owned()))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NothingSpec {
    pub for_ms: u64,
    /// `publish`, `disconnect`, ... ; any packet when absent.
    pub of: Option<String>,
}

/// Checks the PUBLISH packets received so far (matching `topic`, a filter, when given).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesSpec {
    pub topic: Option<String>,
    /// Exactly this many: judged when the wait ends.
    pub count: Option<usize>,
    /// At least this many: met as soon as they are there.
    pub at_least: Option<usize>,
    /// Exactly these payloads, in this order of arrival.
    pub payloads: Option<Vec<String>>,
    /// The first arrival of each payload, in this order; later copies (with DUP) allowed.
    pub first_arrivals: Option<Vec<String>>,
}

/// Properties of the whole run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Invariant {
    /// Every QoS 1/2 message the broker acknowledged reaches every subscriber that holds a
    /// persistent session through to the end (at the lower of published and granted QoS).
    NoLoss,
    /// No QoS 2 message arrives twice.
    NoQos2Duplicates,
    /// Per topic, QoS and publisher, first arrivals keep the publish order.
    Ordered,
    /// After the last fault ends, every reconnecting client is back and every message owed has
    /// arrived within `within_ms`.
    Liveness { within_ms: u64 },
}
