//! The robustness cases. Each bounds what it sends (connections, packets, seconds) and what it
//! waits for; the runner's watch ([`super::watch`]) measures the side client and the memory around
//! it. Protocol errors cite their statements; abusive but legal traffic cites none.
//!
//! | module | cases |
//! |---|---|
//! | [`connections`] | what a connection can hold: truncated packets, a stalled packet, a trickled CONNECT, a flood of connections |
//! | [`traffic`] | what a connected client can send: property floods, subscriptions past the limit, unreleased QoS 2 ids, a storm never acknowledged |
//!
//! This module holds the list and what the cases share.

mod connections;
mod traffic;

use connections::{connection_flood, slow_loris_connect, stalled_packet, truncated_packets};
use traffic::{property_flood, publish_storm_unread, qos2_ids_never_released, subscribe_past_limit};

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_client::probe::CloseReport;
use mqtt_protocol::{
    encode, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions,
};
use mqtt_scenarios::scenario::{CaseLevel, Phase};

use crate::catalog::ProbeCase;
use crate::context::{Context, Failure};

/// How long a broker has to end a connection it cannot complete (a packet stalled with keep
/// alive 0, a CONNECT trickled byte by byte) before the case says it holds it without a bound.
pub const HELD_BOUND: Duration = Duration::from_secs(30);

/// 5.0 reason codes a broker may close an abusive connection with, or refuse with, here.
const SERVER_BUSY: u8 = 0x89;
const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
const PACKET_TOO_LARGE: u8 = 0x95;
const QUOTA_EXCEEDED: u8 = 0x97;
const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
const UNSPECIFIED_ERROR: u8 = 0x80;
const MALFORMED_PACKET: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
/// 3.1.1 CONNACK return code 3, Server unavailable (our codec holds it as 5.0's 0x88).
const SERVER_UNAVAILABLE_3_1_1: u8 = 0x88;

/// The robustness cases, in the order they run.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "truncated-packets",
        about: "A session's CONNECT, SUBSCRIBE and QoS 1 PUBLISH cut short at bytes inside each packet \
                (after the first byte, the second, the middle, before the last), one connection per cut, \
                each then half-closed by the client: the broker closes every one of them and answers \
                nothing it did not receive whole.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(truncated_packets(context)),
    },
    ProbeCase {
        name: "stalled-packet-keep-alive-0",
        about: "Twenty clients with keep alive 0 (no keep-alive timer) each begin a PUBLISH whose Remaining \
                Length promises up to 256 KiB (within the broker's Maximum Packet Size) and send 16 bytes \
                of it, then nothing: the broker must not hold the partial packets forever; each connection \
                closes within 30 s.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(stalled_packet(context)),
    },
    ProbeCase {
        name: "slow-loris-connect",
        about: "Twenty connections each trickle a CONNECT one byte every 500 ms, each byte well within any \
                connect timeout: the broker closes every one before the CONNECT is whole, within 30 s of \
                the connection opening (a connect timeout counted from the connection, not from the last \
                byte).",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(slow_loris_connect(context)),
    },
    ProbeCase {
        name: "property-flood",
        about: "A CONNECT, a SUBSCRIBE and 40 QoS 1 PUBLISH packets each carrying thousands of User \
                Properties, up to 64 KiB (within the broker's Maximum Packet Size): every one is answered \
                (CONNACK, SUBACK, PUBACK), or refused or closed with a code allowed for it (0x80, 0x89, \
                0x95, 0x97, 0x9F).",
        versions: &["5.0"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(property_flood(context)),
    },
    ProbeCase {
        name: "subscribe-past-limit",
        about: "One client sends 1,000 SUBSCRIBE packets of 10 distinct filters each (10,000 subscriptions, \
                past any per-client limit): every SUBACK answers its packet with one code per filter, each \
                a granted QoS or a refusal (5.0 0x80 or 0x97, 3.1.1 0x80); or the broker closes with 0x89 \
                or 0x97 (3.1.1: closes).",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(subscribe_past_limit(context)),
    },
    ProbeCase {
        name: "connection-flood",
        about: "400 connections opened at 400 per second, each sending CONNECT and staying open: each gets a \
                CONNACK, a refusal (5.0 0x89, 0x97 or 0x9F; 3.1.1 return code 3) or a close, within 5 s.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(connection_flood(context)),
    },
    ProbeCase {
        name: "qos2-ids-never-released",
        about: "A client sends QoS 2 PUBLISH packets under distinct packet ids (up to the broker's Receive \
                Maximum in 5.0, all 65,535 in 3.1.1) and never releases any (no PUBREL): each gets its \
                PUBREC; in 5.0, one more past the Receive Maximum is a protocol error, and the broker \
                closes (DISCONNECT 0x93 if any).",
        versions: &["5.0", "3.1.1"],
        statements: &["5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(qos2_ids_never_released(context)),
    },
    ProbeCase {
        name: "publish-storm-unread",
        about: "For 3 s a client publishes QoS 0 and QoS 1 messages as fast as the broker takes them and \
                never reads its acknowledgements, to a subscriber that never reads either: the broker \
                holds them back or closes with an allowed code (0x89, 0x93, 0x97), and its memory stays \
                bounded.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(publish_storm_unread(context)),
    },
];

fn encoded(packet: &Packet, version: ProtocolVersion) -> Result<BytesMut, Failure> {
    let mut bytes = BytesMut::new();
    encode(packet, version, &mut bytes).map_err(|error| Failure::new(format!("cannot encode: {error}")))?;
    Ok(bytes)
}

/// A SUBSCRIBE of `filters`, all at `qos`.
fn subscribe(packet_id: u16, filters: Vec<String>, qos: QoS) -> Subscribe {
    Subscribe {
        packet_id,
        properties: Properties::default(),
        subscriptions: filters
            .into_iter()
            .map(|filter| Subscription {
                filter,
                options: SubscriptionOptions::with_qos(qos),
            })
            .collect(),
    }
}

/// A PUBLISH without properties.
fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: Bytes) -> Publish {
    Publish {
        qos,
        topic: topic.into(),
        packet_id,
        payload,
        ..Publish::default()
    }
}

fn disconnect() -> Packet {
    Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// How a connection the broker closed ended: `Ok` with a description when it closed without a
/// DISCONNECT or (5.0) with one of `allowed`; a failure naming the code otherwise.
fn closed_as_allowed(context: &Context, report: &CloseReport, allowed: &[u8], what: &str) -> Result<String, Failure> {
    match &report.disconnect {
        None => Ok("closed".to_owned()),
        Some(received) if context.v5() && allowed.contains(&received.reason_code.0) => {
            Ok(format!("closed with DISCONNECT 0x{:02X}", received.reason_code.0))
        }
        Some(received) => Err(Failure::expected(
            format!(
                "{what}: the broker closed with DISCONNECT 0x{:02X}",
                received.reason_code.0
            ),
            format!("a close, or DISCONNECT with {}", codes(allowed)),
            format!("DISCONNECT 0x{:02X}", received.reason_code.0),
        )),
    }
}

fn codes(allowed: &[u8]) -> String {
    let names: Vec<String> = allowed.iter().map(|code| format!("0x{code:02X}")).collect();
    names.join(", ")
}

/// Counts of each description, in first-seen order: "18 closed, 2 closed with DISCONNECT 0x95".
fn tally(items: impl IntoIterator<Item = String>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for item in items {
        match counts.iter_mut().find(|(seen, _)| *seen == item) {
            Some((_, count)) => *count += 1,
            None => counts.push((item, 1)),
        }
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(item, count)| format!("{count} {item}"))
        .collect();
    parts.join(", ")
}
