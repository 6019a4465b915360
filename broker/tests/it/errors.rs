//! The broker's error table (`broker/ERRORS.md`), walked row by row against a running broker.
//!
//! Goal: every (error, version) row of the table is true of the broker: `close` closes with no
//! packet first, `CONNACK 0xNN` / `DISCONNECT 0xNN` send that packet and then close, `answer
//! <PACKET> [0xNN]` sends that packet and keeps the connection open. The table and this test
//! cannot drift apart: the table is read at test time, and a row without a provocation, or a
//! provocation without a row, fails.
//!
//! Method: the table is parsed from the Markdown (`include_str!`), then for each row a fresh
//! broker is started on 127.0.0.1:0 (with a small limit where the row needs one), the packet-level
//! probe connects in the row's version, the row's provocation sends what the row describes (a
//! CONNECT and its success CONNACK first, for most rows; typed packets where they are valid, raw
//! bytes built with `RawPacket` where the codec refuses to encode them), and the row's action is
//! checked. Rows run one after another; every mismatch is collected with the probe's trace, and
//! the test fails at the end listing all of them. Time is real (real sockets): every wait has a
//! deadline of a few seconds, and each row as a whole has one too.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;

use mqtt_broker::security::{Acl, PasswordFile, PasswordHash, Security};
use mqtt_broker::server::ServerOptions;
use mqtt_broker::{Broker, Config};
use mqtt_client::probe::trace::{describe_decode_error, summary};
use mqtt_client::probe::{CloseReport, Incoming, Pattern, Probe, ProbeError, ProbeOptions};
use mqtt_client::scram::{self, ClientExchange, Credentials};
use mqtt_protocol::raw::RawPacket;
use mqtt_protocol::*;

use crate::running::Running;
use tokio::time::timeout;

/// The table, as the test binary was built with it.
const ERRORS_MD: &str = include_str!("../../ERRORS.md");

/// How long one step of a provocation (a CONNACK, a PUBREC) may take.
const STEP_WITHIN: Duration = Duration::from_secs(2);

/// A `close`, `CONNACK` or `DISCONNECT` row: the connection closes within this long of the
/// provoking packet.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// An `answer` row: the answer, and then a PINGRESP to prove the connection is still open, each
/// arrive within this long.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// A whole row, broker start and stop included; every step inside has a shorter deadline.
const ROW_WITHIN: Duration = Duration::from_secs(15);

/// `keep-alive-expired`: the keep alive the client asks for; the broker must close 1.5 times it
/// after the CONNECT, give or take this slack (upwards only: it must not close early).
const KEEP_ALIVE_S: u16 = 1;
const KEEP_ALIVE_SLACK: Duration = Duration::from_secs(1);

/// `packet-too-large`: the broker's Maximum Packet Size, and the payload of the PUBLISH that
/// exceeds it.
const SMALL_MAXIMUM_PACKET_SIZE: u32 = 256;
const LARGE_PAYLOAD_BYTE_COUNT: usize = 512;

/// `receive-maximum-exceeded`: the broker's Receive Maximum.
const SMALL_RECEIVE_MAXIMUM: u16 = 2;

/// The packet id of every acknowledgement sent for a flow that does not exist.
const UNKNOWN_PACKET_ID: u16 = 7;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const BOTH: &[ProtocolVersion] = &[V3, V5];
const ONLY_3: &[ProtocolVersion] = &[V3];
const ONLY_5: &[ProtocolVersion] = &[V5];

// ---- the table ------------------------------------------------------------------------------------

/// What the broker does on an error, as the table's `action` column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The connection is closed with no packet first.
    Close,
    /// A CONNACK with this code, then the close. 3.1.1 rows give the 3.1.1 return code.
    ConnAck(u8),
    /// A DISCONNECT with this reason code, then the close.
    Disconnect(u8),
    /// This packet (with this code, if given) and the connection stays open.
    Answer { packet_type: PacketType, code: Option<u8> },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Close => f.write_str("close"),
            Action::ConnAck(code) => write!(f, "CONNACK 0x{code:02X}"),
            Action::Disconnect(code) => write!(f, "DISCONNECT 0x{code:02X}"),
            Action::Answer {
                packet_type,
                code: None,
            } => write!(f, "answer {}", packet_type.name()),
            Action::Answer {
                packet_type,
                code: Some(code),
            } => write!(f, "answer {} 0x{code:02X}", packet_type.name()),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    /// 1-based line in ERRORS.md.
    line: usize,
    id: &'static str,
    version: ProtocolVersion,
    error: String,
    action: Action,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (ERRORS.md line {}: {}): {}",
            self.id, self.version, self.line, self.error, self.action
        )
    }
}

/// `0x8C` as 0x8C: exactly two hex digits after `0x`.
fn parse_code(text: &str) -> Result<u8, String> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("{text:?} is not a code (0xNN)"))?;
    if digits.len() != 2 {
        return Err(format!("{text:?} is not a code (0xNN)"));
    }
    u8::from_str_radix(digits, 16).map_err(|_| format!("{text:?} is not a code (0xNN)"))
}

fn parse_action(text: &str) -> Result<Action, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["close"] => Ok(Action::Close),
        ["CONNACK", code] => Ok(Action::ConnAck(parse_code(code)?)),
        ["DISCONNECT", code] => Ok(Action::Disconnect(parse_code(code)?)),
        ["answer", name, rest @ ..] if rest.len() <= 1 => {
            let packet_type = (0..=15)
                .filter_map(PacketType::from_nibble)
                .find(|packet_type| packet_type.name() == *name)
                .ok_or_else(|| format!("{name:?} is not a packet type"))?;
            let code = rest.first().map(|code| parse_code(code)).transpose()?;
            Ok(Action::Answer { packet_type, code })
        }
        _ => Err(format!(
            "{text:?} is not an action (close, CONNACK 0xNN, DISCONNECT 0xNN, answer <PACKET> [0xNN])"
        )),
    }
}

fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text {
        "3.1.1" => Ok(V3),
        "5.0" => Ok(V5),
        _ => Err(format!("{text:?} is not a version (3.1.1 or 5.0)")),
    }
}

fn is_id(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The rows of the first table of `text`: its header must be `id | version | error | action`,
/// its second line the delimiter; every later line of the table must be a row. Every problem is
/// reported, with its line, not just the first.
fn parse_table(text: &'static str) -> Result<Vec<Row>, Vec<String>> {
    let lines: Vec<(usize, &'static str)> = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .skip_while(|(_, line)| !line.starts_with('|'))
        .take_while(|(_, line)| line.starts_with('|'))
        .collect();
    let cells = |line: &'static str| -> Vec<&'static str> {
        let inner = line.trim_start_matches('|');
        let inner = inner.strip_suffix('|').unwrap_or(inner);
        inner.split('|').map(str::trim).collect()
    };
    let mut problems = Vec::new();
    match lines.first() {
        None => return Err(vec!["ERRORS.md has no table".to_owned()]),
        Some((line_number, line)) if cells(line) != ["id", "version", "error", "action"] => {
            problems.push(format!(
                "line {line_number}: the header is not `id | version | error | action`: {line}"
            ));
        }
        Some(_) => {}
    }
    let is_delimiter = |line: &'static str| {
        cells(line)
            .iter()
            .all(|cell| !cell.is_empty() && cell.chars().all(|c| c == '-' || c == ':'))
    };
    match lines.get(1) {
        Some((_, line)) if is_delimiter(line) => {}
        Some((line_number, line)) => problems.push(format!("line {line_number}: not the delimiter row: {line}")),
        None => problems.push("the table has no delimiter row".to_owned()),
    }
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for (line_number, line) in lines.iter().skip(2) {
        let cells = cells(line);
        if cells.len() < 4 {
            problems.push(format!("line {line_number}: fewer than 4 cells: {line}"));
            continue;
        }
        let id = cells[0];
        if !is_id(id) {
            problems.push(format!("line {line_number}: {id:?} is not an id: {line}"));
            continue;
        }
        let version = parse_version(cells[1]);
        let action = parse_action(cells[cells.len() - 1]);
        match (version, action) {
            (Ok(version), Ok(action)) => {
                if !seen.insert((id, version)) {
                    problems.push(format!("line {line_number}: a second row for {id} {version}"));
                }
                rows.push(Row {
                    line: *line_number,
                    id,
                    version,
                    // Free text: should it ever hold a `|`, it spans several cells.
                    error: cells[2..cells.len() - 1].join("|"),
                    action,
                });
            }
            (version, action) => {
                for problem in [version.err(), action.err()].into_iter().flatten() {
                    problems.push(format!("line {line_number}: {problem}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

// ---- provocations ---------------------------------------------------------------------------------

/// How each row is provoked. Exhaustively matched below, and listed in [`PROVOCATIONS`]: a
/// variant left out of the list is a dead-code warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provocation {
    PingReqFirst,
    UnsupportedProtocolLevel,
    InvalidProtocolName,
    ConnectReservedFlag,
    WillQoS3,
    EmptyClientIdPersistent,
    AuthenticationMethod,
    SecondConnect,
    PublishQoS3,
    DuplicateProperty,
    WildcardInTopicName,
    PacketTooLarge,
    TopicAliasZero,
    TopicAliasAboveMaximum,
    TopicAliasUnknown,
    ReceiveMaximumExceeded,
    KeepAliveExpired,
    DisconnectExtendsSession,
    UnsolicitedPubAck,
    UnknownPubRel,
    UnknownPubRec,
    AuthWithoutExchange,
    SubscribeWithoutFilters,
    InvalidTopicFilter,
    SubscriptionOptionsReserved,
    NoLocalOnShared,
    UnsubscribeUnknownFilter,
    BadPassword,
    AnonymousRefused,
    ScramWrongProof,
    ReauthenticationWrongProof,
    PublishNotAuthorized,
    SubscribeNotAuthorized,
}

/// Every provocation: the table's id, the versions it is provoked in, and how.
const PROVOCATIONS: &[(&str, &[ProtocolVersion], Provocation)] = &[
    ("first-packet-not-connect", BOTH, Provocation::PingReqFirst),
    (
        "unsupported-protocol-level",
        BOTH,
        Provocation::UnsupportedProtocolLevel,
    ),
    ("invalid-protocol-name", ONLY_3, Provocation::InvalidProtocolName),
    ("connect-reserved-flag", BOTH, Provocation::ConnectReservedFlag),
    ("will-qos-3", BOTH, Provocation::WillQoS3),
    (
        "empty-client-id-persistent",
        ONLY_3,
        Provocation::EmptyClientIdPersistent,
    ),
    ("authentication-method", ONLY_5, Provocation::AuthenticationMethod),
    ("second-connect", BOTH, Provocation::SecondConnect),
    ("publish-qos-3", BOTH, Provocation::PublishQoS3),
    ("duplicate-property", ONLY_5, Provocation::DuplicateProperty),
    ("wildcard-in-topic-name", BOTH, Provocation::WildcardInTopicName),
    ("packet-too-large", BOTH, Provocation::PacketTooLarge),
    ("topic-alias-zero", ONLY_5, Provocation::TopicAliasZero),
    ("topic-alias-above-maximum", ONLY_5, Provocation::TopicAliasAboveMaximum),
    ("topic-alias-unknown", ONLY_5, Provocation::TopicAliasUnknown),
    ("receive-maximum-exceeded", ONLY_5, Provocation::ReceiveMaximumExceeded),
    ("keep-alive-expired", BOTH, Provocation::KeepAliveExpired),
    (
        "disconnect-extends-session",
        ONLY_5,
        Provocation::DisconnectExtendsSession,
    ),
    ("unsolicited-puback", BOTH, Provocation::UnsolicitedPubAck),
    ("unknown-pubrel", BOTH, Provocation::UnknownPubRel),
    ("unknown-pubrec", ONLY_5, Provocation::UnknownPubRec),
    ("auth-without-exchange", ONLY_5, Provocation::AuthWithoutExchange),
    ("subscribe-without-filters", BOTH, Provocation::SubscribeWithoutFilters),
    ("invalid-topic-filter", BOTH, Provocation::InvalidTopicFilter),
    (
        "subscription-options-reserved",
        ONLY_5,
        Provocation::SubscriptionOptionsReserved,
    ),
    ("no-local-on-shared", ONLY_5, Provocation::NoLocalOnShared),
    (
        "unsubscribe-unknown-filter",
        ONLY_5,
        Provocation::UnsubscribeUnknownFilter,
    ),
    ("bad-password", BOTH, Provocation::BadPassword),
    ("anonymous-refused", BOTH, Provocation::AnonymousRefused),
    ("scram-wrong-proof", ONLY_5, Provocation::ScramWrongProof),
    (
        "reauthentication-wrong-proof",
        ONLY_5,
        Provocation::ReauthenticationWrongProof,
    ),
    ("publish-not-authorized", BOTH, Provocation::PublishNotAuthorized),
    ("subscribe-not-authorized", BOTH, Provocation::SubscribeNotAuthorized),
];

/// The user of the rows about authentication and the ACL: `alice` / `secret`, with SCRAM keys
/// (cheap ones: 64 iterations), who may use `allowed/#` only; anonymous access off.
const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn secured() -> Security {
    let mut passwords = PasswordFile::default();
    passwords.set(
        USER,
        PasswordHash::Scram(Credentials::derive(PASSWORD.as_bytes(), b"errors-salt", 64)),
    );
    let mut security = Security::default();
    security.allow_anonymous = false;
    security.passwords = Some(passwords);
    security.acl = Some(Acl::parse("user alice\ntopic readwrite allowed/#\n").expect("a valid ACL"));
    security
}

/// A CONNECT as `alice` with her password.
fn connect_as_user(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        user_name: Some(USER.into()),
        password: Some(Bytes::from_static(PASSWORD.as_bytes())),
        ..connect_packet(version, client_id)
    }
}

/// Runs a SCRAM-SHA-256 exchange up to the client-final message, signed with `password`; the
/// CONNECT (`reauthenticate` false) or AUTH 0x19 starts it.
async fn scram_exchange(
    probe: &mut Probe,
    version: ProtocolVersion,
    client_id: &str,
    password: &str,
    reauthenticate: bool,
) -> Result<(), ProbeError> {
    let mut client = ClientExchange::new(USER, password.as_bytes(), "errors-nonce");
    let mut properties = Properties::default();
    properties.authentication_method = Some(scram::METHOD.into());
    properties.authentication_data = Some(Bytes::from(client.client_first()));
    if reauthenticate {
        let auth = Auth {
            reason_code: ReasonCode::RE_AUTHENTICATE,
            properties,
        };
        probe.send(&Packet::Auth(auth)).await?;
    } else {
        let connect = Connect {
            properties,
            ..connect_packet(version, client_id)
        };
        probe.send(&Packet::Connect(Box::new(connect))).await?;
    }
    let continue_pattern = Pattern::packet_type(PacketType::Auth).reason_code(ReasonCode::CONTINUE_AUTHENTICATION);
    let Packet::Auth(server_first) = probe.expect(&continue_pattern, STEP_WITHIN).await? else {
        unreachable!("the pattern matches AUTH only")
    };
    let server_first = server_first.properties.authentication_data.clone().unwrap_or_default();
    let client_final = client.client_final(&server_first).unwrap_or_default();
    let mut properties = Properties::default();
    properties.authentication_method = Some(scram::METHOD.into());
    properties.authentication_data = Some(Bytes::from(client_final));
    let auth = Auth {
        reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties,
    };
    probe.send(&Packet::Auth(auth)).await
}

fn provocation_for(id: &str, version: ProtocolVersion) -> Option<Provocation> {
    PROVOCATIONS
        .iter()
        .find(|(provoked_id, versions, _)| *provoked_id == id && versions.contains(&version))
        .map(|(_, _, provocation)| *provocation)
}

/// What a provocation tells the check beyond the row itself.
#[derive(Debug, Clone)]
struct Provoked {
    /// When the close must come, from the end of the last send.
    close_window: RangeInclusive<Duration>,
    /// The packet id the answer must carry.
    answer_packet_id: Option<u16>,
}

impl Default for Provoked {
    fn default() -> Provoked {
        Provoked {
            close_window: Duration::ZERO..=CLOSE_WITHIN,
            answer_packet_id: None,
        }
    }
}

impl Provocation {
    /// The broker's configuration for this row: the defaults, with a small limit where the row is
    /// about exceeding one.
    fn config(self) -> Config {
        match self {
            Provocation::PacketTooLarge => Config {
                maximum_packet_size: SMALL_MAXIMUM_PACKET_SIZE,
                ..Config::default()
            },
            Provocation::ReceiveMaximumExceeded => Config {
                receive_maximum: SMALL_RECEIVE_MAXIMUM,
                ..Config::default()
            },
            _ => Config::default(),
        }
    }

    /// The security policy for this row: [`secured`] for the rows about authentication and the
    /// ACL, else open.
    fn security(self) -> Security {
        match self {
            Provocation::BadPassword
            | Provocation::AnonymousRefused
            | Provocation::ScramWrongProof
            | Provocation::ReauthenticationWrongProof
            | Provocation::PublishNotAuthorized
            | Provocation::SubscribeNotAuthorized => secured(),
            _ => Security::default(),
        }
    }

    /// Sends what the row describes to a fresh broker; the row's action is checked afterwards.
    async fn provoke(
        self,
        probe: &mut Probe,
        version: ProtocolVersion,
        client_id: &str,
    ) -> Result<Provoked, ProbeError> {
        let v5 = version.is_v5();
        let provoked = Provoked::default();
        match self {
            Provocation::PingReqFirst => probe.send(&Packet::PingReq).await?,
            Provocation::UnsupportedProtocolLevel => {
                // One below 3.1.1's level, one above 5.0's.
                let level = if v5 { 6 } else { 2 };
                let bytes = raw_connect(version, "MQTT", level, 0x02, client_id).build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::InvalidProtocolName => {
                let bytes = raw_connect(version, "MQTX", version.level(), 0x02, client_id).build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::ConnectReservedFlag => {
                let bytes = raw_connect(version, "MQTT", version.level(), 0x02 | 0x01, client_id).build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::WillQoS3 => {
                // Clean Start, Will Flag, Will QoS bits 11.
                let flags = 0x02 | 0x04 | 0x18;
                let packet = raw_connect(version, "MQTT", version.level(), flags, client_id);
                let packet = if v5 { packet.properties(|p| p) } else { packet };
                let bytes = packet.string("errors/will").binary(b"will").build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::EmptyClientIdPersistent => {
                let connect = Connect {
                    clean_start: false,
                    ..connect_packet(version, "")
                };
                probe.send(&Packet::Connect(Box::new(connect))).await?;
            }
            Provocation::AuthenticationMethod => {
                let mut connect = connect_packet(version, client_id);
                connect.properties.authentication_method = Some("SCRAM-SHA-256".into());
                probe.send(&Packet::Connect(Box::new(connect))).await?;
            }
            Provocation::SecondConnect => {
                connect(probe, connect_packet(version, client_id)).await?;
                let again = Packet::Connect(Box::new(connect_packet(version, client_id)));
                probe.send(&again).await?;
            }
            Provocation::PublishQoS3 => {
                connect(probe, connect_packet(version, client_id)).await?;
                let packet = RawPacket::new(PacketType::Publish, 0b0110).string("errors/t").u16(1);
                probe.send_raw(&with_properties(packet, v5).bytes(b"x").build()).await?;
            }
            Provocation::DuplicateProperty => {
                connect(probe, connect_packet(version, client_id)).await?;
                let bytes = RawPacket::new(PacketType::Publish, 0)
                    .string("errors/t")
                    .properties(|p| {
                        p.four_byte(PropertyId::MessageExpiryInterval, 60)
                            .four_byte(PropertyId::MessageExpiryInterval, 60)
                    })
                    .bytes(b"x")
                    .build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::WildcardInTopicName => {
                connect(probe, connect_packet(version, client_id)).await?;
                let packet = RawPacket::new(PacketType::Publish, 0).string("a/+");
                probe.send_raw(&with_properties(packet, v5).bytes(b"x").build()).await?;
            }
            Provocation::PacketTooLarge => {
                connect(probe, connect_packet(version, client_id)).await?;
                let payload = Bytes::from(vec![0x5A; LARGE_PAYLOAD_BYTE_COUNT]);
                probe
                    .send(&publish("errors/large", QoS::AtMostOnce, None, payload))
                    .await?;
            }
            Provocation::TopicAliasZero => {
                connect(probe, connect_packet(version, client_id)).await?;
                let bytes = RawPacket::new(PacketType::Publish, 0)
                    .string("errors/t")
                    .properties(|p| p.two_byte(PropertyId::TopicAlias, 0))
                    .bytes(b"x")
                    .build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::TopicAliasAboveMaximum => {
                let connack = connect(probe, connect_packet(version, client_id)).await?;
                // One above what the broker announced (absent: 0, no alias allowed).
                let maximum = connack.properties.topic_alias_maximum.unwrap_or(0);
                let mut packet = publish("errors/t", QoS::AtMostOnce, None, Bytes::from_static(b"x"));
                if let Packet::Publish(publish) = &mut packet {
                    publish.properties.topic_alias = Some(maximum.saturating_add(1));
                }
                probe.send(&packet).await?;
            }
            Provocation::TopicAliasUnknown => {
                connect(probe, connect_packet(version, client_id)).await?;
                let mut packet = publish("", QoS::AtMostOnce, None, Bytes::from_static(b"x"));
                if let Packet::Publish(publish) = &mut packet {
                    publish.properties.topic_alias = Some(1);
                }
                probe.send(&packet).await?;
            }
            Provocation::ReceiveMaximumExceeded => {
                connect(probe, connect_packet(version, client_id)).await?;
                // Fill the window with QoS 2 messages never released, then one more.
                for packet_id in 1..=SMALL_RECEIVE_MAXIMUM {
                    let packet = publish("errors/t", QoS::ExactlyOnce, Some(packet_id), Bytes::from_static(b"x"));
                    probe.send(&packet).await?;
                    probe
                        .expect(&Pattern::pubrec().packet_id(packet_id), STEP_WITHIN)
                        .await?;
                }
                let packet_id = SMALL_RECEIVE_MAXIMUM + 1;
                let packet = publish("errors/t", QoS::ExactlyOnce, Some(packet_id), Bytes::from_static(b"x"));
                probe.send(&packet).await?;
            }
            Provocation::KeepAliveExpired => {
                let connect_with_keep_alive = Connect {
                    keep_alive_s: KEEP_ALIVE_S,
                    ..connect_packet(version, client_id)
                };
                // Then silence: the close is timed from the CONNECT, the last packet sent.
                connect(probe, connect_with_keep_alive).await?;
                let expiry = Duration::from_secs(u64::from(KEEP_ALIVE_S)) * 3 / 2;
                return Ok(Provoked {
                    close_window: expiry..=expiry + KEEP_ALIVE_SLACK,
                    ..provoked
                });
            }
            Provocation::DisconnectExtendsSession => {
                // Clean Start and no Session Expiry Interval: the session ends with the connection.
                connect(probe, connect_packet(version, client_id)).await?;
                let mut disconnect = Disconnect::default();
                disconnect.properties.session_expiry_interval_s = Some(60);
                probe.send(&Packet::Disconnect(disconnect)).await?;
            }
            Provocation::UnsolicitedPubAck => {
                connect(probe, connect_packet(version, client_id)).await?;
                probe.send(&Packet::PubAck(PublishAck::new(UNKNOWN_PACKET_ID))).await?;
            }
            Provocation::UnknownPubRel => {
                connect(probe, connect_packet(version, client_id)).await?;
                probe.send(&Packet::PubRel(PublishAck::new(UNKNOWN_PACKET_ID))).await?;
                return Ok(Provoked {
                    answer_packet_id: Some(UNKNOWN_PACKET_ID),
                    ..provoked
                });
            }
            Provocation::UnknownPubRec => {
                connect(probe, connect_packet(version, client_id)).await?;
                probe.send(&Packet::PubRec(PublishAck::new(UNKNOWN_PACKET_ID))).await?;
                return Ok(Provoked {
                    answer_packet_id: Some(UNKNOWN_PACKET_ID),
                    ..provoked
                });
            }
            Provocation::AuthWithoutExchange => {
                connect(probe, connect_packet(version, client_id)).await?;
                // A well-formed AUTH, so that it is the missing exchange that is refused.
                let mut auth = Auth {
                    reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                    ..Auth::default()
                };
                auth.properties.authentication_method = Some("SCRAM-SHA-256".into());
                probe.send(&Packet::Auth(auth)).await?;
            }
            Provocation::SubscribeWithoutFilters => {
                connect(probe, connect_packet(version, client_id)).await?;
                let packet = RawPacket::new(PacketType::Subscribe, 0b0010).u16(1);
                probe.send_raw(&with_properties(packet, v5).build()).await?;
            }
            Provocation::InvalidTopicFilter => {
                connect(probe, connect_packet(version, client_id)).await?;
                let packet = RawPacket::new(PacketType::Subscribe, 0b0010).u16(1);
                let bytes = with_properties(packet, v5).string("a/#/b").u8(0x00).build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::SubscriptionOptionsReserved => {
                connect(probe, connect_packet(version, client_id)).await?;
                // QoS 0 with both reserved bits (7 and 6) set.
                let bytes = RawPacket::new(PacketType::Subscribe, 0b0010)
                    .u16(1)
                    .properties(|p| p)
                    .string("errors/t")
                    .u8(0xC0)
                    .build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::NoLocalOnShared => {
                connect(probe, connect_packet(version, client_id)).await?;
                // QoS 0, No Local (bit 2).
                let bytes = RawPacket::new(PacketType::Subscribe, 0b0010)
                    .u16(1)
                    .properties(|p| p)
                    .string("$share/g/t")
                    .u8(0x04)
                    .build();
                probe.send_raw(&bytes).await?;
            }
            Provocation::UnsubscribeUnknownFilter => {
                connect(probe, connect_packet(version, client_id)).await?;
                let unsubscribe = Unsubscribe {
                    packet_id: 1,
                    properties: Properties::default(),
                    filters: vec!["errors/never-subscribed".into()],
                };
                probe.send(&Packet::Unsubscribe(unsubscribe)).await?;
                return Ok(Provoked {
                    answer_packet_id: Some(1),
                    ..provoked
                });
            }
            Provocation::BadPassword => {
                let connect = Connect {
                    password: Some(Bytes::from_static(b"not-her-password")),
                    ..connect_as_user(version, client_id)
                };
                probe.send(&Packet::Connect(Box::new(connect))).await?;
            }
            Provocation::AnonymousRefused => {
                probe
                    .send(&Packet::Connect(Box::new(connect_packet(version, client_id))))
                    .await?;
            }
            Provocation::ScramWrongProof => {
                scram_exchange(probe, version, client_id, "not-her-password", false).await?;
            }
            Provocation::ReauthenticationWrongProof => {
                scram_exchange(probe, version, client_id, PASSWORD, false).await?;
                probe
                    .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), STEP_WITHIN)
                    .await?;
                scram_exchange(probe, version, client_id, "not-her-password", true).await?;
            }
            Provocation::PublishNotAuthorized => {
                connect(probe, connect_as_user(version, client_id)).await?;
                let publish = Publish {
                    topic: "denied/t".into(),
                    qos: QoS::AtLeastOnce,
                    packet_id: Some(1),
                    payload: Bytes::from_static(b"errors"),
                    ..Publish::default()
                };
                probe.send(&Packet::Publish(publish)).await?;
                return Ok(Provoked {
                    answer_packet_id: Some(1),
                    ..provoked
                });
            }
            Provocation::SubscribeNotAuthorized => {
                connect(probe, connect_as_user(version, client_id)).await?;
                let subscribe = Subscribe {
                    packet_id: 1,
                    properties: Properties::default(),
                    subscriptions: vec![Subscription {
                        filter: "denied/#".into(),
                        options: SubscriptionOptions::default(),
                    }],
                };
                probe.send(&Packet::Subscribe(subscribe)).await?;
                return Ok(Provoked {
                    answer_packet_id: Some(1),
                    ..provoked
                });
            }
        }
        Ok(provoked)
    }
}

/// A valid CONNECT: Clean Start, keep alive 60 s.
fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive_s: 60,
        client_id: client_id.into(),
        ..Connect::default()
    }
}

/// Sends `connect` and expects a success CONNACK, which it returns.
async fn connect(probe: &mut Probe, connect: Connect) -> Result<ConnAck, ProbeError> {
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    match probe
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), STEP_WITHIN)
        .await?
    {
        Packet::ConnAck(connack) => Ok(connack),
        other => unreachable!("the pattern matches CONNACK only, not {other:?}"),
    }
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: Bytes) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id,
        payload,
        ..Publish::default()
    })
}

/// A CONNECT up to and including the client id, byte by byte: protocol name, level, flags, keep
/// alive 60 s, (5.0) empty properties, client id.
fn raw_connect(version: ProtocolVersion, name: &str, level: u8, flags: u8, client_id: &str) -> RawPacket {
    let packet = RawPacket::new(PacketType::Connect, 0)
        .string(name)
        .u8(level)
        .u8(flags)
        .u16(60);
    with_properties(packet, version.is_v5()).string(client_id)
}

/// An empty property list, in 5.0 only.
fn with_properties(packet: RawPacket, v5: bool) -> RawPacket {
    if v5 {
        packet.properties(|p| p)
    } else {
        packet
    }
}

// ---- checks ---------------------------------------------------------------------------------------

/// Whether a received CONNACK carries the row's code. The probe reads a 3.1.1 return code as the
/// 5.0 code of the same meaning (0x01 as 0x84), so a 3.1.1 row compares it back.
fn connack_has_code(version: ProtocolVersion, connack: &ConnAck, code: u8) -> bool {
    if version.is_v5() {
        connack.reason_code == ReasonCode(code)
    } else {
        connack.reason_code.to_v3_connack() == Some(code)
    }
}

/// One packet received; a 3.1.1 CONNACK with the return code that was on the wire as well.
fn describe_incoming(version: ProtocolVersion, incoming: &Incoming) -> String {
    match incoming {
        Incoming::Packet(Packet::ConnAck(connack)) if !version.is_v5() => {
            let return_code = match connack.reason_code.to_v3_connack() {
                Some(code) => format!("0x{code:02X}"),
                None => "none".to_owned(),
            };
            format!(
                "{} (3.1.1 return code {return_code})",
                summary(&Packet::ConnAck(connack.clone()))
            )
        }
        Incoming::Packet(packet) => summary(packet),
        Incoming::Malformed(error) => describe_decode_error(error),
    }
}

/// What arrived before the close, in one line: `DISCONNECT code=0x82, then the close after 3 ms`.
fn describe_close(version: ProtocolVersion, report: &CloseReport) -> String {
    let mut received: Vec<String> = report
        .disconnect
        .iter()
        .map(|d| summary(&Packet::Disconnect(d.clone())))
        .collect();
    received.extend(
        report
            .others
            .iter()
            .map(|incoming| describe_incoming(version, incoming)),
    );
    if report.other_count > report.others.len() {
        received.push(format!("{} more", report.other_count - report.others.len()));
    }
    let close = format!("the close after {:.1} ms", report.after.as_secs_f64() * 1000.0);
    if received.is_empty() {
        format!("nothing, then {close}")
    } else {
        format!("{}, then {close}", received.join(", "))
    }
}

fn window_ms(window: &RangeInclusive<Duration>) -> String {
    format!("[{}, {}] ms", window.start().as_millis(), window.end().as_millis())
}

/// Checks the row's action on a provoked connection; the error says what was expected and what
/// happened instead.
async fn check(probe: &mut Probe, row: &Row, provoked: &Provoked) -> Result<(), String> {
    let window = &provoked.close_window;
    let expect_close = |report: Result<CloseReport, ProbeError>, expected: String| {
        report.map_err(|error| format!("expected {expected}; actual: {error}"))
    };
    match row.action {
        Action::Close => {
            let expected = format!("nothing, then the close within {}", window_ms(window));
            let report = expect_close(probe.expect_close(window.clone()).await, expected.clone())?;
            if report.disconnect.is_some() || report.other_count > 0 {
                return Err(format!(
                    "expected {expected}; actual: {}",
                    describe_close(row.version, &report)
                ));
            }
        }
        Action::ConnAck(code) => {
            let expected = format!("CONNACK 0x{code:02X}, then the close within {}", window_ms(window));
            let report = expect_close(probe.expect_close(window.clone()).await, expected.clone())?;
            let matches = match (&report.disconnect, report.others.as_slice()) {
                (None, [Incoming::Packet(Packet::ConnAck(connack))]) => {
                    report.other_count == 1 && connack_has_code(row.version, connack, code)
                }
                _ => false,
            };
            if !matches {
                return Err(format!(
                    "expected {expected}; actual: {}",
                    describe_close(row.version, &report)
                ));
            }
        }
        Action::Disconnect(code) => {
            let expected = format!("DISCONNECT 0x{code:02X}, then the close within {}", window_ms(window));
            let report = expect_close(probe.expect_close(window.clone()).await, expected.clone())?;
            let matches = report.other_count == 0
                && report
                    .disconnect
                    .as_ref()
                    .is_some_and(|disconnect| disconnect.reason_code == ReasonCode(code));
            if !matches {
                return Err(format!(
                    "expected {expected}; actual: {}",
                    describe_close(row.version, &report)
                ));
            }
        }
        Action::Answer { packet_type, code } => {
            let mut pattern = Pattern::packet_type(packet_type);
            if let Some(packet_id) = provoked.answer_packet_id {
                pattern = pattern.packet_id(packet_id);
            }
            if let Some(code) = code {
                pattern = match packet_type {
                    PacketType::SubAck | PacketType::UnsubAck => pattern.reason_codes([ReasonCode(code)]),
                    _ => pattern.reason_code(ReasonCode(code)),
                };
            }
            probe
                .expect(&pattern, ANSWER_WITHIN)
                .await
                .map_err(|error| format!("expected {pattern}; actual: {error}"))?;
            // Still open: a PINGREQ is answered, and nothing comes before the PINGRESP.
            probe
                .send(&Packet::PingReq)
                .await
                .map_err(|error| format!("after the answer, sending PINGREQ failed: {error}"))?;
            probe
                .expect(&Pattern::pingresp(), ANSWER_WITHIN)
                .await
                .map_err(|error| format!("expected the connection to stay open (PINGRESP); actual: {error}"))?;
        }
    }
    Ok(())
}

// ---- running a row --------------------------------------------------------------------------------

/// Provokes `row` against a fresh broker and checks its action. The error holds the mismatch and
/// the probe's trace.
async fn walk(row: &Row, provocation: Provocation) -> Result<(), String> {
    let broker = Broker::new(provocation.config()).with_security(Arc::new(provocation.security()));
    let running = Running::try_start_with(broker, ServerOptions::default(), None).await?;
    let options = ProbeOptions::client().with_version(row.version);
    let mut probe = match Probe::connect_tcp(running.address, options).await {
        Ok(probe) => probe,
        Err(error) => {
            let _ = running.try_stop().await;
            return Err(format!("the probe could not connect: {error}"));
        }
    };
    let client_id = format!("errors-{}-{}", row.id, row.version);
    let outcome = match provocation.provoke(&mut probe, row.version, &client_id).await {
        Ok(provoked) => check(&mut probe, row, &provoked).await,
        Err(error) => Err(format!("the provocation failed before the check: {error}")),
    };
    let trace = probe.trace().render(true);
    drop(probe);
    let stopped = running.try_stop().await.map(|_statistics| ());
    match (outcome, stopped) {
        (Ok(()), Ok(())) => Ok(()),
        (Ok(()), Err(stop_error)) => Err(format!("{stop_error}\n{trace}")),
        (Err(mismatch), Ok(())) => Err(format!("{mismatch}\n{trace}")),
        (Err(mismatch), Err(stop_error)) => Err(format!("{mismatch}; and {stop_error}\n{trace}")),
    }
}

fn rows() -> Vec<Row> {
    parse_table(ERRORS_MD).unwrap_or_else(|problems| panic!("ERRORS.md does not parse:\n{}", problems.join("\n")))
}

// ---- tests ----------------------------------------------------------------------------------------

#[test]
fn the_action_parser_reads_every_form_the_table_uses_and_refuses_anything_else() {
    assert_eq!(parse_action("close"), Ok(Action::Close));
    assert_eq!(parse_action("CONNACK 0x01"), Ok(Action::ConnAck(0x01)));
    assert_eq!(parse_action("DISCONNECT 0x8D"), Ok(Action::Disconnect(0x8D)));
    assert_eq!(
        parse_action("answer PUBCOMP"),
        Ok(Action::Answer {
            packet_type: PacketType::PubComp,
            code: None
        })
    );
    assert_eq!(
        parse_action("answer UNSUBACK 0x11"),
        Ok(Action::Answer {
            packet_type: PacketType::UnsubAck,
            code: Some(0x11)
        })
    );
    for invalid in [
        "",
        "closed",
        "CONNACK",
        "CONNACK 1",
        "CONNACK 0x1",
        "DISCONNECT 0xZZ",
        "answer",
        "answer PONG",
        "answer PUBCOMP 0x92 0x93",
    ] {
        assert!(parse_action(invalid).is_err(), "{invalid:?} parsed");
    }
    for action in [
        "close",
        "CONNACK 0x01",
        "DISCONNECT 0x8D",
        "answer PUBCOMP",
        "answer PUBREL 0x92",
    ] {
        assert_eq!(
            parse_action(action).map(|parsed| parsed.to_string()).as_deref(),
            Ok(action)
        );
    }
}

#[test]
fn every_row_of_the_error_table_has_a_provocation_and_every_provocation_has_a_row() {
    let rows = rows();
    assert!(!rows.is_empty(), "ERRORS.md has no rows");
    let documented: BTreeSet<(&str, ProtocolVersion)> = rows.iter().map(|row| (row.id, row.version)).collect();
    let mut provoked = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (id, versions, _) in PROVOCATIONS {
        assert!(ids.insert(*id), "{id} is listed twice in PROVOCATIONS");
        for version in *versions {
            provoked.insert((*id, *version));
        }
    }
    let unprovoked: Vec<String> = documented
        .difference(&provoked)
        .map(|(id, version)| format!("{id} {version}"))
        .collect();
    let undocumented: Vec<String> = provoked
        .difference(&documented)
        .map(|(id, version)| format!("{id} {version}"))
        .collect();
    assert!(
        unprovoked.is_empty() && undocumented.is_empty(),
        "rows without a provocation: {unprovoked:?}; provocations without a row: {undocumented:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_error_table_is_what_the_broker_does() {
    let rows = rows();
    let mut failures = Vec::new();
    // One row at a time: the timed rows (keep alive) are not disturbed by the others.
    for row in &rows {
        let Some(provocation) = provocation_for(row.id, row.version) else {
            failures.push(format!("{row}\n  no provocation for this row"));
            continue;
        };
        let outcome = match timeout(ROW_WITHIN, walk(row, provocation)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(format!("the row did not finish within {ROW_WITHIN:?}")),
        };
        if let Err(failure) = outcome {
            failures.push(format!("{row}\n  {failure}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows of ERRORS.md differ from what the broker does:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}
