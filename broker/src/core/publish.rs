//! PUBLISH in and out: topic aliases, QoS flows, retained messages, routing to subscriptions
//! (overlapping and shared), delivery through each session's window, message expiry, and the
//! client's Maximum Packet Size.

use std::collections::BTreeMap;
use std::sync::Arc;

use mqtt_protocol::{Packet, Properties, Publish, QoS, ReasonCode};
use tokio::time::Instant;

use super::session::{Delivery, Message};
use super::{fits, Broker, ConnectionId};
#[cfg(feature = "mutations")]
use crate::mutations::Mutation;
use crate::security::Action;

/// A member of a shared group matching a message: client id, granted QoS, subscription identifier.
type SharedMember = (String, QoS, Option<u32>);

/// How one client's matching non-shared subscriptions combine into one delivery: the highest
/// QoS, every Subscription Identifier (5.0 MQTT-3.3.4-2, -3, -4), and Retain As Published if any
/// matching subscription asked for it.
#[derive(Default)]
struct Combined {
    qos: Option<QoS>,
    retain_as_published: bool,
    identifiers: Vec<u32>,
}

impl Broker {
    pub(super) fn handle_publish(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        client_id: &str,
        mut publish: Publish,
    ) {
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        let v5 = state.version.is_v5();

        // Topic aliases from the client (5.0 §3.3.2.3.4): 0 or above the maximum this connection
        // was offered is 0x94; an empty topic needs a mapping on this connection, else it is a
        // Protocol Error.
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > state.topic_alias_maximum {
                self.disconnect_with(now, connection, client_id, Some(ReasonCode::TOPIC_ALIAS_INVALID));
                return;
            }
            if publish.topic.is_empty() {
                match state.aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        self.disconnect_with(now, connection, client_id, Some(ReasonCode::PROTOCOL_ERROR));
                        return;
                    }
                }
            } else {
                state.aliases.insert(alias, publish.topic.clone());
            }
        }
        if publish.qos > self.config.maximum_qos {
            // 5.0 §3.2.2.3.4: above the Maximum QoS we announced is 0x9B.
            self.disconnect_with(now, connection, client_id, Some(ReasonCode::QOS_NOT_SUPPORTED));
            return;
        }
        if publish.retain && !self.config.retain_available {
            // 5.0 §3.2.2.3.5: 0x9A.
            self.disconnect_with(now, connection, client_id, Some(ReasonCode::RETAIN_NOT_SUPPORTED));
            return;
        }
        if publish.topic.split('/').count() > self.config.topic_levels_max {
            if v5 && publish.qos != QoS::AtMostOnce {
                self.acknowledge(now, connection, client_id, &publish, ReasonCode::TOPIC_NAME_INVALID);
            } else {
                self.disconnect_with(now, connection, client_id, Some(ReasonCode::TOPIC_NAME_INVALID));
            }
            return;
        }

        // The ACL (crate::security): 5.0 refuses a QoS 1/2 PUBLISH with 0x87; 3.1.1, which has no
        // negative acknowledgement, acknowledges it as usual and drops it; QoS 0 is dropped.
        let denied = self.security.acl.is_some() && {
            let username = self
                .sessions
                .get(client_id)
                .and_then(|session| session.username.as_deref());
            !self
                .security
                .allows(username, client_id, Action::Publish, &publish.topic)
        };
        if denied {
            tracing::debug!(client_id, topic = %publish.topic, "the ACL denies the publish");
            if v5 && publish.qos != QoS::AtMostOnce {
                self.acknowledge(now, connection, client_id, &publish, ReasonCode::NOT_AUTHORIZED);
                return;
            }
        }

        let incoming = match self.session_mut(client_id).incoming.handle_publish(&publish) {
            Ok(incoming) => incoming,
            Err(error) => {
                // Our Receive Maximum exceeded: 0x93 (5.0 §3.3.4).
                tracing::debug!(connection, %error, "receive maximum exceeded");
                self.disconnect_with(now, connection, client_id, error.reason_code());
                return;
            }
        };
        // Planted bug: a QoS 2 resend before PUBREL is taken for a new message.
        #[cfg(feature = "mutations")]
        let incoming = mqtt_protocol::flow::Incoming {
            deliver: incoming.deliver || self.mutated(Mutation::Qos2DeliveredTwice),
            ..incoming
        };
        if !incoming.deliver || denied {
            // A QoS 2 resend: acknowledge again, deliver once. (Or denied: acknowledged, dropped.)
            if let Some(reply) = incoming.reply {
                self.send(now, connection, reply);
            }
            return;
        }
        self.statistics.messages_received += 1;
        let message = message_from(now, client_id, publish.clone());
        if v5 && publish.qos != QoS::AtMostOnce && message.retain && !self.retained_store_admits(&message) {
            // The retained store is full: a 5.0 QoS 1/2 PUBLISH can be refused (0x97 Quota
            // exceeded), and then it is not delivered either. Other messages are delivered but not
            // retained, as `publish_message` does for every message.
            self.acknowledge(now, connection, client_id, &publish, ReasonCode::QUOTA_EXCEEDED);
            return;
        }
        if let Some(reply) = incoming.reply {
            self.send(now, connection, reply);
        }
        self.publish_message(now, message);
    }

    /// The one door by which every message enters the broker: a client's PUBLISH, a will, and
    /// anything the broker publishes itself. Retained handling comes first (store, replace, or
    /// delete on an empty payload; the store's quota: a new topic beyond it is delivered but not
    /// retained), then routing to every matching subscription. Message expiry needs nothing here:
    /// the message carries its interval and its arrival, which the store and every delivery read.
    pub(super) fn publish_message(&mut self, now: Instant, message: Message) {
        if message.retain && !self.retain(&message) {
            tracing::debug!(topic = %message.topic, "the retained store is full: delivered, not retained");
        }
        self.route(now, message);
    }

    /// Answers a QoS 1/2 PUBLISH with a failure code instead of delivering it.
    fn acknowledge(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        client_id: &str,
        publish: &Publish,
        reason_code: ReasonCode,
    ) {
        let session = self.session_mut(client_id);
        if let Some(reply) = session.incoming.acknowledge_with(publish, reason_code) {
            self.send(now, connection, reply);
        }
    }

    /// Whether [`Broker::retain`] would keep `message`: a deletion, a replacement, or a new topic
    /// while the store has room.
    fn retained_store_admits(&self, message: &Message) -> bool {
        message.payload.is_empty()
            || self.retained.contains_key(&message.topic)
            || self.retained.len() < self.config.retained_messages_max
    }

    /// Stores, replaces or deletes the retained message of the topic (5.0 MQTT-3.3.1-5 to -7,
    /// 3.1.1 MQTT-3.3.1-5, -10, -11). `false` when the store is full and the topic is new.
    fn retain(&mut self, message: &Message) -> bool {
        if message.payload.is_empty() {
            self.retained.remove(&message.topic);
            return true;
        }
        if !self.retained_store_admits(message) {
            return false;
        }
        let stored = Message {
            topic: message.topic.clone(),
            payload: message.payload.clone(),
            qos: message.qos,
            retain: true,
            properties: message.properties.clone(),
            expiry_interval_s: message.expiry_interval_s,
            received_at: message.received_at,
            publisher: message.publisher.clone(),
        };
        self.retained.insert(message.topic.clone(), Arc::new(stored));
        true
    }

    /// The will-not-retained mutation's way in: routing without the retained store, as wills
    /// went before commit 8d348e3. It exists only with the `mutations` feature, so that in an
    /// ordinary broker `route` keeps its one caller.
    #[cfg(feature = "mutations")]
    pub(super) fn route_past_the_retained_store(&mut self, now: Instant, message: Message) {
        self.route(now, message);
    }

    /// Sends `message` to every matching subscription. Only [`Broker::publish_message`] calls it
    /// (and, with the `mutations` feature, the will-not-retained bug).
    fn route(&mut self, now: Instant, message: Message) {
        let message = Arc::new(message);
        let mut combined: BTreeMap<String, Combined> = BTreeMap::new();
        let mut groups: BTreeMap<(String, String), Vec<SharedMember>> = BTreeMap::new();
        self.subscriptions
            .for_each_match(&message.topic, |filter, key, subscription| {
                let options = subscription.options;
                match &key.group {
                    None => {
                        if options.no_local && key.client_id == message.publisher {
                            return; // 5.0 MQTT-3.8.3-3
                        }
                        let entry = combined.entry(key.client_id.clone()).or_default();
                        entry.qos = Some(entry.qos.map_or(options.qos, |qos| qos.max(options.qos)));
                        entry.retain_as_published |= options.retain_as_published;
                        entry.identifiers.extend(subscription.identifier);
                    }
                    Some(group) => groups.entry((group.clone(), filter.to_owned())).or_default().push((
                        key.client_id.clone(),
                        options.qos,
                        subscription.identifier,
                    )),
                }
            });
        for (client_id, subscription) in combined {
            let granted = subscription.qos.unwrap_or(QoS::AtMostOnce);
            let version_is_v5 = self
                .sessions
                .get(&client_id)
                .is_some_and(|session| session.version.is_v5());
            // RETAIN on a forwarded message: 5.0 as Retain As Published says (MQTT-3.3.1-12/-13);
            // 3.1.1 only for messages sent because of a new subscription (MQTT-3.3.1-9).
            let retain = version_is_v5 && subscription.retain_as_published && message.retain;
            let delivery = Delivery {
                message: message.clone(),
                qos: message.qos.min(granted),
                retain,
                subscription_identifiers: subscription.identifiers,
                shared: None,
            };
            self.deliver(now, &client_id, delivery);
        }
        for ((group, filter), members) in groups {
            self.deliver_shared(now, &group, &filter, &members, &message, None);
        }
    }

    /// Picks one member of a shared group, round-robin, preferring members that are connected,
    /// and delivers to it. `excluded` is a member that must not get it again.
    fn deliver_shared(
        &mut self,
        now: Instant,
        group: &str,
        filter: &str,
        members: &[SharedMember],
        message: &Arc<Message>,
        excluded: Option<&str>,
    ) {
        let candidates: Vec<&SharedMember> = members
            .iter()
            .filter(|(client_id, _, _)| Some(client_id.as_str()) != excluded)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let position = self
            .shared_positions
            .entry((group.to_owned(), filter.to_owned()))
            .or_insert(0);
        let start = *position;
        *position = position.wrapping_add(1);
        let connected = |client_id: &str| {
            self.sessions
                .get(client_id)
                .is_some_and(|session| session.connection.is_some())
        };
        let count = candidates.len();
        let chosen = (0..count)
            .map(|offset| candidates[(start + offset) % count])
            .find(|(client_id, _, _)| connected(client_id))
            .unwrap_or(candidates[start % count]);
        let (client_id, granted, identifier) = chosen.clone();
        let delivery = Delivery {
            message: message.clone(),
            qos: message.qos.min(granted),
            // No retained messages on shared subscriptions; forwarded RETAIN as Retain As
            // Published is not offered on shared subscriptions here: always 0.
            retain: false,
            subscription_identifiers: identifier.into_iter().collect(),
            shared: Some((group.to_owned(), filter.to_owned())),
        };
        self.deliver(now, &client_id, delivery);
    }

    /// A shared QoS 1 message whose session ended unacknowledged goes to another member.
    pub(super) fn redeliver_shared(&mut self, now: Instant, group: &str, filter: &str, delivery: Delivery) {
        let mut members = Vec::new();
        self.subscriptions
            .for_each_match(&delivery.message.topic, |matched_filter, key, subscription| {
                if matched_filter == filter && key.group.as_deref() == Some(group) {
                    members.push((key.client_id.clone(), subscription.options.qos, subscription.identifier));
                }
            });
        self.deliver_shared(now, group, filter, &members, &delivery.message, None);
    }

    /// Hands a delivery to a session: sent now if it is connected and its window allows, queued
    /// otherwise. An offline session queues QoS 1 and 2 only; a full queue drops the new delivery.
    pub(super) fn deliver(&mut self, now: Instant, client_id: &str, delivery: Delivery) {
        let queued_max = self.config.queued_messages_max;
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        if self.security.filters_delivery()
            && !self.security.allows(
                session.username.as_deref(),
                client_id,
                Action::Receive,
                &delivery.message.topic,
            )
        {
            // The ACL's read rules hold at delivery: wildcard subscriptions and retained messages
            // carry only what the client may read.
            return;
        }
        let connected = session.connection.is_some();
        if !connected && delivery.qos == QoS::AtMostOnce {
            self.statistics.messages_dropped += 1;
            return;
        }
        if connected && session.queue.is_empty() && (delivery.qos == QoS::AtMostOnce || session.outgoing.can_send()) {
            self.send_delivery(now, client_id, delivery);
            return;
        }
        if session.queue.len() >= queued_max {
            self.statistics.messages_dropped += 1;
            return;
        }
        session.queue.push_back(delivery);
    }

    /// Sends queued deliveries while the window has room; first any PUBLISH withheld at resume.
    pub(super) fn pump(&mut self, now: Instant, client_id: &str) {
        loop {
            let Some(session) = self.sessions.get_mut(client_id) else {
                return;
            };
            let Some(connection) = session.connection else { return };
            if let Some(resend) = session.outgoing.resend_next() {
                // Planted bug: a PUBLISH withheld at resume leaves the resend queue, never written.
                #[cfg(feature = "mutations")]
                if self.mutated(Mutation::NoResendOnResume) {
                    continue;
                }
                self.resend(now, client_id, connection, Packet::Publish(resend));
                continue;
            }
            let ready = match session.queue.front() {
                Some(delivery) => delivery.qos == QoS::AtMostOnce || session.outgoing.can_send(),
                None => false,
            };
            if !ready {
                return;
            }
            let Some(delivery) = session.queue.pop_front() else {
                return;
            };
            self.send_delivery(now, client_id, delivery);
        }
    }

    /// Writes a packet resent from the session's flows (a PUBLISH with DUP 1, or a PUBREL). A
    /// PUBLISH the client can no longer take, as it resumed with a smaller Maximum Packet Size,
    /// is discarded and its delivery completed as if sent (5.0 MQTT-3.1.2-25): never resent for
    /// ever, never holding a place in the window.
    pub(super) fn resend(&mut self, now: Instant, client_id: &str, connection: ConnectionId, packet: Packet) {
        let Packet::Publish(publish) = &packet else {
            self.send(now, connection, packet);
            return;
        };
        let maximum = self
            .connections
            .get(&connection)
            .and_then(|state| state.maximum_packet_size.map(|maximum| (maximum, state.version)));
        let (Some((maximum, version)), Some(packet_id)) = (maximum, publish.packet_id) else {
            self.send(now, connection, packet);
            return;
        };
        if fits(&packet, version, maximum) {
            self.send(now, connection, packet);
            return;
        }
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        if let Some(completed) = session.outgoing.discard(packet_id) {
            tracing::debug!(
                connection,
                packet_id,
                "a resent PUBLISH too large for the client is discarded"
            );
            self.statistics.messages_dropped += 1;
            session.shared_inflight.remove(&completed.packet_id);
        }
    }

    /// One QoS 1/2 delivery ended (acknowledged, or refused with 0x80 or above).
    pub(super) fn delivery_completed(
        &mut self,
        now: Instant,
        client_id: &str,
        packet_id: u16,
        _reason_code: ReasonCode,
    ) {
        // Refused or not, a shared delivery that ended is never sent to another member (5.0
        // MQTT-4.8.2-6 for refusals).
        self.session_mut(client_id).shared_inflight.remove(&packet_id);
        self.statistics.messages_delivered += 1;
        self.pump(now, client_id);
    }

    /// Builds the PUBLISH for one delivery and writes it, through the QoS flows for QoS 1 and 2.
    fn send_delivery(&mut self, now: Instant, client_id: &str, delivery: Delivery) {
        let message = &delivery.message;
        if message.is_expired(now) {
            // 5.0 MQTT-3.3.2-5: expired before onward delivery started: deleted.
            self.statistics.messages_dropped += 1;
            return;
        }
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        let Some(connection) = session.connection else { return };
        let v5 = session.version.is_v5();
        let mut properties = if v5 {
            message.properties.clone()
        } else {
            Properties::default()
        };
        if v5 {
            properties.message_expiry_interval_s = message.expiry_left_s(now);
            properties.subscription_identifiers = delivery.subscription_identifiers.clone();
        }
        let publish = Publish {
            dup: false,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic.clone(),
            packet_id: (delivery.qos != QoS::AtMostOnce).then_some(1),
            properties,
            payload: message.payload.clone(),
        };
        // Too large for the client: dropped as if sent (5.0 MQTT-3.1.2-24, -25).
        let maximum = self
            .connections
            .get(&connection)
            .and_then(|state| state.maximum_packet_size);
        if let Some(maximum) = maximum {
            let packet = Packet::Publish(publish);
            if !fits(&packet, session.version, maximum) {
                self.statistics.messages_dropped += 1;
                return;
            }
            let Packet::Publish(publish) = packet else {
                unreachable!("built as a PUBLISH")
            };
            self.write_delivery(now, client_id, connection, publish, delivery);
        } else {
            self.write_delivery(now, client_id, connection, publish, delivery);
        }
    }

    fn write_delivery(
        &mut self,
        now: Instant,
        client_id: &str,
        connection: ConnectionId,
        publish: Publish,
        delivery: Delivery,
    ) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        let qos = publish.qos;
        match session.outgoing.send(publish) {
            Ok(sent) => {
                if qos == QoS::AtMostOnce {
                    self.statistics.messages_delivered += 1;
                } else if let (Some(packet_id), Some(_)) = (sent.packet_id, &delivery.shared) {
                    session.shared_inflight.insert(packet_id, delivery);
                }
                self.send(now, connection, Packet::Publish(sent));
            }
            Err(_) => {
                // The window closed meanwhile (or every id is in use): wait at the front.
                session.queue.push_front(delivery);
            }
        }
    }
}

/// The message a PUBLISH carries, with the properties a subscriber gets (5.0 §3.3.2.3): Topic
/// Alias and Subscription Identifiers are the connection's and the subscription's, not the
/// message's; Message Expiry is counted down separately.
fn message_from(now: Instant, client_id: &str, publish: Publish) -> Message {
    let mut properties = publish.properties;
    let expiry_interval_s = properties.message_expiry_interval_s.take();
    properties.topic_alias = None;
    properties.subscription_identifiers.clear();
    Message {
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties,
        expiry_interval_s,
        received_at: now,
        publisher: client_id.to_owned(),
    }
}
