//! SUBSCRIBE and UNSUBSCRIBE: per-filter reason codes, limits, subscription identifiers, shared
//! subscriptions, and retained messages on subscribe as Retain Handling says.

use mqtt_protocol::topic::{matches, parse_shared};
use mqtt_protocol::{Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe};
use tokio::time::Instant;

use super::session::{Delivery, StoredSubscription};
use super::{Broker, ConnectionId, SubscriberKey};

impl Broker {
    pub(super) fn handle_subscribe(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        client_id: &str,
        subscribe: Subscribe,
    ) {
        let v5 = self
            .sessions
            .get(client_id)
            .is_some_and(|session| session.version.is_v5());
        let identifier = subscribe.properties.subscription_identifiers.first().copied();
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_filters = Vec::new();
        // Each filter is handled as if it came in its own SUBSCRIBE (5.0 MQTT-3.8.4-5).
        for subscription in subscribe.subscriptions {
            let filter = subscription.filter;
            let options = subscription.options;
            let shared = if v5 { parse_shared(&filter) } else { None };
            let refusal = if shared.is_some() && !self.config.shared_subscription_available {
                Some(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            } else if (filter.contains('+') || filter.contains('#')) && !self.config.wildcard_subscription_available {
                Some(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
            } else if identifier.is_some() && !self.config.subscription_identifier_available {
                Some(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
            } else if filter.split('/').count() > self.config.topic_levels_max {
                Some(ReasonCode::TOPIC_FILTER_INVALID)
            } else if !self.security.allows_subscribe(
                self.sessions
                    .get(client_id)
                    .and_then(|session| session.username.as_deref()),
                client_id,
                shared.as_ref().map_or(filter.as_str(), |shared| shared.filter),
            ) {
                // 5.0 0x87; 3.1.1 0x80 below.
                Some(ReasonCode::NOT_AUTHORIZED)
            } else {
                let session = self.session_mut(client_id);
                let is_new = !session.subscriptions.contains_key(&filter);
                (is_new && session.subscriptions.len() >= self.config.subscriptions_per_client_max)
                    .then_some(ReasonCode::QUOTA_EXCEEDED)
            };
            if let Some(code) = refusal {
                // 3.1.1 has one failure code (MQTT-3.9.3-2).
                reason_codes.push(if v5 { code } else { ReasonCode::UNSPECIFIED_ERROR });
                continue;
            }
            let granted = options.qos.min(self.config.maximum_qos);
            let stored = StoredSubscription {
                options: mqtt_protocol::SubscriptionOptions {
                    qos: granted,
                    ..options
                },
                identifier,
            };
            let existed = self
                .session_mut(client_id)
                .subscriptions
                .insert(filter.clone(), stored.clone())
                .is_some();
            let (tree_filter, group) = match &shared {
                Some(shared) => (shared.filter.to_owned(), Some(shared.group.to_owned())),
                None => (filter.clone(), None),
            };
            // An identical filter replaces the subscription (5.0 MQTT-3.8.4-3).
            self.subscriptions.insert(
                &tree_filter,
                SubscriberKey {
                    group,
                    client_id: client_id.to_owned(),
                },
                stored,
            );
            reason_codes.push(ReasonCode(granted.as_u8()));
            // Retained messages: never on a shared subscription (5.0 §4.8.2); else as Retain
            // Handling says (5.0 §3.3.1.3; Appendix B's MQTT-3.3.1-10 is inverted there).
            let send_retained = shared.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained_filters.push((filter, granted, identifier));
            }
        }
        self.send(
            now,
            connection,
            Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                properties: Default::default(),
                reason_codes,
            }),
        );
        for (filter, granted, identifier) in retained_filters {
            self.send_retained(now, client_id, &filter, granted, identifier);
        }
    }

    /// The retained messages matching a new subscription, with RETAIN 1 (5.0 §3.3.1.3, 3.1.1
    /// MQTT-3.3.1-6 and -8); expired ones are deleted instead (5.0 MQTT-3.3.2-5).
    fn send_retained(&mut self, now: Instant, client_id: &str, filter: &str, granted: QoS, identifier: Option<u32>) {
        self.retained.retain(|_, message| !message.is_expired(now));
        let matching: Vec<_> = self
            .retained
            .values()
            .filter(|message| matches(filter, &message.topic))
            .cloned()
            .collect();
        for message in matching {
            let delivery = Delivery {
                qos: message.qos.min(granted),
                retain: true,
                subscription_identifiers: identifier.into_iter().collect(),
                shared: None,
                message,
            };
            self.deliver(now, client_id, delivery);
        }
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        client_id: &str,
        unsubscribe: Unsubscribe,
    ) {
        let v5 = self
            .sessions
            .get(client_id)
            .is_some_and(|session| session.version.is_v5());
        let mut reason_codes = Vec::new();
        // Filters are compared character by character, wildcards included (MQTT-3.10.4-1).
        for filter in unsubscribe.filters {
            let existed = self.session_mut(client_id).subscriptions.remove(&filter).is_some();
            if existed {
                self.remove_from_tree(client_id, &filter);
            }
            reason_codes.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        let reason_codes = if v5 { reason_codes } else { Vec::new() };
        self.send(
            now,
            connection,
            Packet::UnsubAck(UnsubAck {
                packet_id: unsubscribe.packet_id,
                properties: Default::default(),
                reason_codes,
            }),
        );
    }

    /// Removes one of a client's subscriptions (its full filter) from the tree.
    pub(super) fn remove_from_tree(&mut self, client_id: &str, filter: &str) {
        let v5 = self
            .sessions
            .get(client_id)
            .is_none_or(|session| session.version.is_v5());
        let (tree_filter, group) = match parse_shared(filter).filter(|_| v5) {
            Some(shared) => (shared.filter.to_owned(), Some(shared.group.to_owned())),
            None => (filter.to_owned(), None),
        };
        self.subscriptions.remove(
            &tree_filter,
            &SubscriberKey {
                group,
                client_id: client_id.to_owned(),
            },
        );
    }
}
