//! The invariants of a whole run, judged from the clients' wires alone (what each client sent and
//! received, in order), so they hold the same meaning in both worlds and need no knowledge of
//! the broker. Messages are known by topic and payload: a message published more than once is
//! left out of the checks that need to tell copies apart.
//!
//! - **no_loss**: a QoS 1/2 message the broker acknowledged (PUBACK, or PUBREC for QoS 2, with a
//!   code below 0x80) must reach every subscriber whose non-shared subscription matched it when
//!   it was published, at the lower of published and granted QoS (5.0 MQTT-3.8.4-8) when that is
//!   1 or 2, provided the subscriber holds that session through to the end: its session never
//!   restarted (no CONNACK with Session Present 0 since) and it is persistent (5.0 Session
//!   Expiry above 0, 3.1.1 Clean Session 0) or its one connection stayed open, and it is
//!   connected at the end. Messages with a Message Expiry Interval are left out (they may expire
//!   on the way), and so are shared subscriptions (any one member may get it). The reference
//!   broker's queue limit (10,000 per session) is far above what a scenario sends.
//! - **no_qos2_duplicates**: a QoS 2 message arrives at a client once; a resend with DUP and the
//!   same packet id before the broker's PUBREL is the flow, not a duplicate.
//! - **ordered**: per topic, published QoS and publisher, the first arrival of each message at a
//!   subscriber keeps the publish order (5.0 §4.6); a later copy with DUP is not a reordering.
//!   Retained messages sent for a new subscription are left out.
//! - **liveness**: after the last fault ended, every client that reconnects on its own is
//!   connected again and nothing is owed (no_loss), within the bound.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use mqtt_protocol::topic::{matches, parse_shared};
use mqtt_protocol::{ByteStr, Packet, ProtocolVersion, QoS};

use crate::wire::{instant, ClosedBy, Way, WireState};

/// One invariant's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Broken for good.
    Violated(String),
    /// A message not (yet) delivered: broken if the run ends now.
    Owed(String),
}

/// A message as published: who, what, and when the broker took it.
#[derive(Debug, Clone)]
struct Publication {
    publisher: String,
    topic: ByteStr,
    payload: Bytes,
    qos: QoS,
    expires: bool,
    /// When the publisher sent it first.
    sent_at: Duration,
    /// When the broker's acknowledgement arrived (QoS 1/2 with a success code).
    acked_at: Option<Duration>,
}

/// A subscription a client holds, from its SUBACK.
#[derive(Debug, Clone)]
struct Held {
    filter: String,
    granted: QoS,
    no_local: bool,
    since: Duration,
    /// The session epoch it belongs to.
    epoch: usize,
}

/// What the wire says about one client's sessions and subscriptions.
#[derive(Debug, Default)]
struct Sessions {
    /// Per epoch (a session from its start): when it started, whether it outlives a connection.
    epochs: Vec<(Duration, bool)>,
    /// Connections per epoch.
    connections_in_epoch: BTreeMap<usize, BTreeSet<usize>>,
    subscriptions: Vec<Held>,
}

fn sessions(state: &WireState) -> Sessions {
    let mut sessions = Sessions::default();
    // Per connection: the CONNECT's persistence; pending SUBSCRIBE/UNSUBSCRIBE by packet id.
    let mut persistent_by_connection: BTreeMap<usize, bool> = BTreeMap::new();
    // By (connection, packet id): each filter with its requested QoS and No Local.
    type Requested = Vec<(String, QoS, bool)>;
    let mut subscribes: BTreeMap<(usize, u16), Requested> = BTreeMap::new();
    let mut unsubscribes: BTreeMap<(usize, u16), Vec<String>> = BTreeMap::new();
    for record in &state.records {
        let Some(packet) = &record.packet else { continue };
        match (record.way, packet) {
            (Way::Sent, Packet::Connect(connect)) => {
                let persistent = match connect.protocol {
                    ProtocolVersion::V5 => connect.properties.session_expiry_interval_s.unwrap_or(0) > 0,
                    _ => !connect.clean_start,
                };
                persistent_by_connection.insert(record.connection, persistent);
            }
            (Way::Received, Packet::ConnAck(connack)) if !connack.reason_code.is_error() => {
                let persistent = persistent_by_connection
                    .get(&record.connection)
                    .copied()
                    .unwrap_or(false);
                if !connack.session_present || sessions.epochs.is_empty() {
                    sessions.epochs.push((record.at, persistent));
                } else if let Some(last) = sessions.epochs.last_mut() {
                    last.1 = persistent;
                }
                let epoch = sessions.epochs.len() - 1;
                sessions
                    .connections_in_epoch
                    .entry(epoch)
                    .or_default()
                    .insert(record.connection);
            }
            (Way::Sent, Packet::Subscribe(subscribe)) => {
                subscribes.insert(
                    (record.connection, subscribe.packet_id),
                    subscribe
                        .subscriptions
                        .iter()
                        .map(|subscription| {
                            (
                                subscription.filter.clone(),
                                subscription.options.qos,
                                subscription.options.no_local,
                            )
                        })
                        .collect(),
                );
            }
            (Way::Received, Packet::SubAck(suback)) => {
                let Some(requested) = subscribes.remove(&(record.connection, suback.packet_id)) else {
                    continue;
                };
                let epoch = sessions.epochs.len().saturating_sub(1);
                for ((filter, _, no_local), code) in requested.into_iter().zip(&suback.reason_codes) {
                    let Some(granted) = QoS::from_u8(code.0).filter(|_| !code.is_error()) else {
                        continue;
                    };
                    sessions
                        .subscriptions
                        .retain(|held| !(held.filter == filter && held.epoch == epoch));
                    sessions.subscriptions.push(Held {
                        filter,
                        granted,
                        no_local,
                        since: record.at,
                        epoch,
                    });
                }
            }
            (Way::Sent, Packet::Unsubscribe(unsubscribe)) => {
                unsubscribes.insert((record.connection, unsubscribe.packet_id), unsubscribe.filters.clone());
            }
            (Way::Received, Packet::UnsubAck(unsuback)) => {
                if let Some(filters) = unsubscribes.remove(&(record.connection, unsuback.packet_id)) {
                    sessions.subscriptions.retain(|held| !filters.contains(&held.filter));
                }
            }
            _ => {}
        }
    }
    sessions
}

fn publications(clients: &[(String, &WireState)]) -> Vec<Publication> {
    let mut publications = Vec::new();
    for (name, state) in clients {
        // Packet id -> index in `publications` of the message in flight with it.
        let mut in_flight: BTreeMap<u16, usize> = BTreeMap::new();
        for record in &state.records {
            let Some(packet) = &record.packet else { continue };
            match (record.way, packet) {
                (Way::Sent, Packet::Publish(publish)) => {
                    if publish.dup {
                        continue; // a resend of a message already counted
                    }
                    publications.push(Publication {
                        publisher: name.clone(),
                        topic: publish.topic.clone(),
                        payload: publish.payload.clone(),
                        qos: publish.qos,
                        expires: publish.properties.message_expiry_interval_s.is_some(),
                        sent_at: record.at,
                        acked_at: None,
                    });
                    if let Some(packet_id) = publish.packet_id {
                        in_flight.insert(packet_id, publications.len() - 1);
                    }
                }
                (Way::Received, Packet::PubAck(ack) | Packet::PubRec(ack)) => {
                    if let Some(index) = in_flight.remove(&ack.packet_id) {
                        if !ack.reason_code.is_error() {
                            publications[index].acked_at = Some(record.at);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    publications
}

/// Messages published exactly once, by (topic, payload).
fn unique(publications: &[Publication]) -> BTreeMap<(ByteStr, Bytes), &Publication> {
    let mut counts: BTreeMap<(ByteStr, Bytes), usize> = BTreeMap::new();
    for publication in publications {
        *counts
            .entry((publication.topic.clone(), publication.payload.clone()))
            .or_default() += 1;
    }
    publications
        .iter()
        .filter(|publication| counts[&(publication.topic.clone(), publication.payload.clone())] == 1)
        .map(|publication| ((publication.topic.clone(), publication.payload.clone()), publication))
        .collect()
}

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

/// The messages owed and not (yet) delivered.
pub fn no_loss(clients: &[(String, &WireState)]) -> Vec<Finding> {
    let publications = publications(clients);
    let unique = unique(&publications);
    let mut findings = Vec::new();
    for (subscriber, state) in clients {
        let sessions = sessions(state);
        let Some(end_epoch) = sessions.epochs.len().checked_sub(1) else {
            continue;
        };
        if !state.is_connected() {
            continue;
        }
        let (epoch_start, persistent) = sessions.epochs[end_epoch];
        let single_connection = sessions
            .connections_in_epoch
            .get(&end_epoch)
            .is_some_and(|connections| connections.len() == 1);
        if !persistent && !single_connection {
            continue;
        }
        let received: BTreeSet<(ByteStr, Bytes)> = state
            .records
            .iter()
            .filter(|record| record.way == Way::Received)
            .filter_map(|record| match &record.packet {
                Some(Packet::Publish(publish)) => Some((publish.topic.clone(), publish.payload.clone())),
                _ => None,
            })
            .collect();
        for publication in unique.values() {
            let Some(acked_at) = publication.acked_at else { continue };
            if publication.qos == QoS::AtMostOnce || publication.expires || acked_at < epoch_start {
                continue;
            }
            let owed = sessions.subscriptions.iter().any(|held| {
                held.epoch == end_epoch
                    && held.since <= publication.sent_at
                    && parse_shared(&held.filter).is_none()
                    && !(held.no_local && publication.publisher == *subscriber)
                    && held.granted != QoS::AtMostOnce
                    && matches(&held.filter, &publication.topic)
            });
            if owed && !received.contains(&(publication.topic.clone(), publication.payload.clone())) {
                findings.push(Finding::Owed(format!(
                    "no_loss: {subscriber} never received {:?} on {} (QoS {}, published by {}, acknowledged at {})",
                    text(&publication.payload),
                    publication.topic,
                    publication.qos.as_u8(),
                    publication.publisher,
                    instant(acked_at)
                )));
            }
        }
    }
    findings
}

pub fn no_qos2_duplicates(clients: &[(String, &WireState)]) -> Vec<Finding> {
    let publications = publications(clients);
    let unique = unique(&publications);
    let mut findings = Vec::new();
    for (subscriber, state) in clients {
        // (topic, payload) -> the packet id of its first arrival, and whether PUBREL came for it.
        let mut first: BTreeMap<(ByteStr, Bytes), (Option<u16>, Duration)> = BTreeMap::new();
        let mut released: BTreeSet<u16> = BTreeSet::new();
        for record in &state.records {
            if record.way != Way::Received {
                continue;
            }
            match &record.packet {
                Some(Packet::PubRel(ack)) => {
                    released.insert(ack.packet_id);
                }
                Some(Packet::Publish(publish)) if publish.qos == QoS::ExactlyOnce && !publish.retain => {
                    let key = (publish.topic.clone(), publish.payload.clone());
                    if !unique.contains_key(&key) {
                        continue;
                    }
                    match first.get(&key) {
                        None => {
                            if let Some(packet_id) = publish.packet_id {
                                released.remove(&packet_id);
                            }
                            first.insert(key, (publish.packet_id, record.at));
                        }
                        Some((packet_id, first_at)) => {
                            let resend = publish.dup
                                && publish.packet_id == *packet_id
                                && packet_id.is_some_and(|id| !released.contains(&id));
                            if !resend {
                                findings.push(Finding::Violated(format!(
                                    "no_qos2_duplicates: {subscriber} received {:?} on {} again at {} (first at {}): {}",
                                    text(&publish.payload),
                                    publish.topic,
                                    instant(record.at),
                                    instant(*first_at),
                                    record.summary
                                )));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    findings
}

pub fn ordered(clients: &[(String, &WireState)]) -> Vec<Finding> {
    let publications = publications(clients);
    let unique = unique(&publications);
    // (publisher, topic, qos) -> payloads in publish order.
    let mut sequences: BTreeMap<(String, ByteStr, u8), Vec<Bytes>> = BTreeMap::new();
    for publication in &publications {
        if unique.contains_key(&(publication.topic.clone(), publication.payload.clone())) {
            sequences
                .entry((
                    publication.publisher.clone(),
                    publication.topic.clone(),
                    publication.qos.as_u8(),
                ))
                .or_default()
                .push(publication.payload.clone());
        }
    }
    let mut findings = Vec::new();
    for (subscriber, state) in clients {
        let mut seen: BTreeSet<(ByteStr, Bytes)> = BTreeSet::new();
        // Per sequence: the index of the last first-arrival, and its payload.
        let mut last: BTreeMap<(String, ByteStr, u8), (usize, Bytes)> = BTreeMap::new();
        for record in &state.records {
            if record.way != Way::Received {
                continue;
            }
            let Some(Packet::Publish(publish)) = &record.packet else {
                continue;
            };
            if publish.retain {
                continue;
            }
            let key = (publish.topic.clone(), publish.payload.clone());
            let Some(publication) = unique.get(&key) else { continue };
            if !seen.insert(key) {
                continue;
            }
            let sequence_key = (
                publication.publisher.clone(),
                publication.topic.clone(),
                publication.qos.as_u8(),
            );
            let Some(index) = sequences
                .get(&sequence_key)
                .and_then(|sequence| sequence.iter().position(|payload| *payload == publish.payload))
            else {
                continue;
            };
            if let Some((last_index, last_payload)) = last.get(&sequence_key) {
                if index < *last_index {
                    findings.push(Finding::Violated(format!(
                        "ordered: {subscriber} received {:?} at {} after {:?}, though {} published it first on {}",
                        text(&publish.payload),
                        instant(record.at),
                        text(last_payload),
                        publication.publisher,
                        publication.topic
                    )));
                }
            }
            last.insert(sequence_key, (index, publish.payload.clone()));
        }
    }
    findings
}

/// The clients that reconnect on their own and are not connected (with an accepted CONNACK on
/// their newest connection).
pub fn disconnected(clients: &[(String, &WireState)], reconnecting: &BTreeSet<String>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, state) in clients {
        if !reconnecting.contains(name) {
            continue;
        }
        let current = state.current();
        let accepted = state.records.iter().any(|record| {
            Some(record.connection) == current
                && matches!(&record.packet, Some(Packet::ConnAck(connack)) if !connack.reason_code.is_error())
        });
        if !state.is_connected() || !accepted {
            let how = state
                .connections
                .last()
                .and_then(|connection| connection.closed.as_ref())
                .map(|(at, by, how)| {
                    let who = if *by == ClosedBy::Broker { "broker" } else { "client" };
                    format!(" (last connection closed by the {who} at {}: {how})", instant(*at))
                })
                .unwrap_or_default();
            findings.push(Finding::Owed(format!("liveness: {name} is not connected{how}")));
        }
    }
    findings
}
