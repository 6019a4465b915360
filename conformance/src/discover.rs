//! What the broker offers, per version: read from the 5.0 CONNACK (Maximum QoS, Retain /
//! Wildcard / Subscription Identifier / Shared Subscription Available, Topic Alias Maximum,
//! Receive Maximum, Maximum Packet Size, Server Keep Alive), and found by probing where 3.1.1
//! says nothing (the QoS a subscription is granted). A case that needs what the broker declines
//! is not applicable, with the reason.

use std::time::Duration;

use crate::context::Endpoint;
use bytes::Bytes;
use mqtt_client::probe::{Pattern, Probe, ProbeOptions};
use mqtt_protocol::{
    Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use mqtt_scenarios::engine::Names;
use mqtt_scenarios::scenario::Capability;
use serde_json::{json, Value};

/// How long each discovery step may take.
const STEP: Duration = Duration::from_secs(5);

/// What the broker offers in one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub version: ProtocolVersion,
    pub maximum_qos: QoS,
    pub retain_available: bool,
    pub wildcard_subscriptions: bool,
    pub subscription_identifiers: bool,
    pub shared_subscriptions: bool,
    /// The aliases a client may use towards the broker.
    pub topic_alias_maximum: u16,
    pub receive_maximum: u16,
    pub maximum_packet_size: Option<u32>,
    pub server_keep_alive_s: Option<u16>,
    /// The CONNACK as received, in one line.
    pub connack: String,
    /// What `$SYS/broker/version` says, when the broker publishes it.
    pub identity: Option<String>,
}

impl Capabilities {
    /// Everything offered: what a case assumes of a broker it has not asked (and of ours).
    pub fn all(version: ProtocolVersion) -> Capabilities {
        Capabilities {
            version,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscriptions: true,
            subscription_identifiers: version.is_v5(),
            shared_subscriptions: version.is_v5(),
            topic_alias_maximum: 0,
            receive_maximum: 65_535,
            maximum_packet_size: None,
            server_keep_alive_s: None,
            connack: String::new(),
            identity: None,
        }
    }

    /// Why the broker does not offer `capability`, if it does not.
    pub fn declines(&self, capability: Capability) -> Option<String> {
        let v5 = self.version.is_v5();
        match capability {
            Capability::Qos1 if self.maximum_qos < QoS::AtLeastOnce => Some("the broker's Maximum QoS is 0".to_owned()),
            Capability::Qos2 if self.maximum_qos < QoS::ExactlyOnce => {
                Some(format!("the broker's Maximum QoS is {}", self.maximum_qos.as_u8()))
            }
            Capability::Retain if !self.retain_available => Some("the broker says Retain Available 0".to_owned()),
            Capability::WildcardSubscriptions if !self.wildcard_subscriptions => {
                Some("the broker says Wildcard Subscription Available 0".to_owned())
            }
            Capability::SubscriptionIdentifiers if !v5 => Some("3.1.1 has no Subscription Identifiers".to_owned()),
            Capability::SubscriptionIdentifiers if !self.subscription_identifiers => {
                Some("the broker says Subscription Identifier Available 0".to_owned())
            }
            Capability::SharedSubscriptions if !v5 => Some("3.1.1 has no shared subscriptions".to_owned()),
            Capability::SharedSubscriptions if !self.shared_subscriptions => {
                Some("the broker says Shared Subscription Available 0".to_owned())
            }
            Capability::TopicAliases if !v5 => Some("3.1.1 has no topic aliases".to_owned()),
            Capability::TopicAliases if self.topic_alias_maximum == 0 => {
                Some("the broker's Topic Alias Maximum is 0".to_owned())
            }
            _ => None,
        }
    }

    /// For the report.
    pub fn to_json(&self) -> Value {
        json!({
            "maximum_qos": self.maximum_qos.as_u8(),
            "retain_available": self.retain_available,
            "wildcard_subscriptions": self.wildcard_subscriptions,
            "subscription_identifiers": self.subscription_identifiers,
            "shared_subscriptions": self.shared_subscriptions,
            "topic_alias_maximum": self.topic_alias_maximum,
            "receive_maximum": self.receive_maximum,
            "maximum_packet_size": self.maximum_packet_size,
            "server_keep_alive_s": self.server_keep_alive_s,
            "connack": self.connack,
            "identity": self.identity,
        })
    }
}

/// Asks the broker what it offers in `version`. An error says, in one line, why it cannot be
/// asked at all (it did not accept a plain CONNECT).
pub async fn discover(broker: &Endpoint, version: ProtocolVersion, names: &Names) -> Result<Capabilities, String> {
    let mut probe = broker
        .probe(ProbeOptions::client().with_version(version))
        .await
        .map_err(|error| error.to_string())?;
    let connect = Connect {
        protocol: version,
        clean_start: true,
        keep_alive_s: 60,
        client_id: names.client_id("discover"),
        user_name: names.username.clone(),
        password: names
            .password
            .clone()
            .map(|password| Bytes::from(password.into_bytes())),
        ..Connect::default()
    };
    probe
        .send(&Packet::Connect(Box::new(connect)))
        .await
        .map_err(|error| error.to_string())?;
    let connack = match probe.expect(&Pattern::connack(), STEP).await {
        Ok(Packet::ConnAck(connack)) => connack,
        Ok(_) => return Err("the broker's first packet is not a CONNACK".to_owned()),
        Err(error) => return Err(format!("no CONNACK: {error}")),
    };
    if connack.reason_code != ReasonCode::SUCCESS {
        return Err(format!(
            "the broker refused a plain {} CONNECT with {} (credentials: -u/-P or in the URL)",
            mqtt_scenarios::scenario::version_name(version),
            connack.reason_code
        ));
    }
    let mut capabilities = Capabilities::all(version);
    capabilities.connack = mqtt_client::probe::trace::summary(&Packet::ConnAck(connack.clone()));
    if version.is_v5() {
        let properties = &connack.properties;
        capabilities.maximum_qos = properties.maximum_qos.unwrap_or(QoS::ExactlyOnce);
        capabilities.retain_available = properties.retain_available.unwrap_or(true);
        capabilities.wildcard_subscriptions = properties.wildcard_subscription_available.unwrap_or(true);
        capabilities.subscription_identifiers = properties.subscription_identifier_available.unwrap_or(true);
        capabilities.shared_subscriptions = properties.shared_subscription_available.unwrap_or(true);
        capabilities.topic_alias_maximum = properties.topic_alias_maximum.unwrap_or(0);
        capabilities.receive_maximum = properties.receive_maximum.unwrap_or(65_535);
        capabilities.maximum_packet_size = properties.maximum_packet_size;
        capabilities.server_keep_alive_s = properties.server_keep_alive_s;
    } else {
        // 3.1.1 says nothing in CONNACK: the QoS a QoS 2 subscription is granted is the most the
        // broker delivers.
        let subscribe = Subscribe {
            packet_id: 1,
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: names.topic("discover/qos"),
                options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            }],
        };
        probe
            .send(&Packet::Subscribe(subscribe))
            .await
            .map_err(|error| error.to_string())?;
        if let Ok(Packet::SubAck(suback)) = probe.expect(&Pattern::suback(), STEP).await {
            if let Some(code) = suback.reason_codes.first() {
                capabilities.maximum_qos = QoS::from_u8(code.0).unwrap_or(QoS::AtMostOnce);
            }
        }
    }
    capabilities.identity = identity(&mut probe).await;
    let _ = probe.send(&Packet::Disconnect(Disconnect::default())).await;
    probe.close().await;
    Ok(capabilities)
}

/// `$SYS/broker/version`, which mosquitto and others publish retained; `None` within half a
/// second otherwise.
async fn identity(probe: &mut Probe) -> Option<String> {
    let subscribe = Subscribe {
        packet_id: 2,
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: "$SYS/broker/version".to_owned(),
            options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
        }],
    };
    probe.send(&Packet::Subscribe(subscribe)).await.ok()?;
    probe.expect(&Pattern::suback(), STEP).await.ok()?;
    match probe.expect(&Pattern::publish(), Duration::from_millis(500)).await {
        Ok(Packet::Publish(publish)) => Some(String::from_utf8_lossy(&publish.payload).into_owned()),
        _ => None,
    }
}
