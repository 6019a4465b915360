//! `check --discover`: the broker's limits, found by probing, for an operator sizing clients: the
//! largest packet it accepts, the longest client id, the deepest topic, how many QoS 1 messages
//! it keeps in flight to a client that does not acknowledge, its keep-alive cap, and how many
//! messages it queues for an offline session. Every search is bounded (sizes, counts, time);
//! a limit beyond the bound is reported as "at least".

use std::time::Duration;

use crate::context::Endpoint;
use bytes::Bytes;
use mqtt_client::probe::{Pattern, Probe, ProbeOptions};
use mqtt_protocol::{
    Connect, Disconnect, Packet, Properties, PropertyFields, ProtocolVersion, Publish, PublishAck, QoS, ReasonCode,
    Subscribe, Subscription, SubscriptionOptions,
};
use mqtt_scenarios::engine::Names;
use serde_json::{json, Value};
use tokio::time::timeout;

/// How long one probe of a limit may wait for an answer.
const ANSWER: Duration = Duration::from_secs(3);
/// The largest packet tried.
const PACKET_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The longest client id tried.
const CLIENT_ID_MAX: usize = 65_535;
/// The deepest topic tried.
const TOPIC_LEVELS_MAX: usize = 4096;
/// The most messages sent to find the offline queue.
const MESSAGES_MAX: usize = 2000;
/// The most messages sent to find the in-flight window.
const INFLIGHT_MAX: usize = 200;

/// A limit found by searching sizes.
enum Searched {
    /// The payload of a QoS 1 PUBLISH to this topic.
    Payload(String),
    ClientId,
    /// The levels of a topic under this one.
    Levels(String),
}

struct Prober {
    broker: Endpoint,
    version: ProtocolVersion,
    names: Names,
    counter: u32,
}

impl Prober {
    fn connect_packet(&mut self, client_id: Option<String>) -> Connect {
        self.counter += 1;
        Connect {
            protocol: self.version,
            clean_start: true,
            keep_alive_s: 60,
            client_id: client_id.unwrap_or_else(|| self.names.client_id(&format!("limits-{}", self.counter))),
            user_name: self.names.username.clone(),
            password: self
                .names
                .password
                .clone()
                .map(|password| Bytes::from(password.into_bytes())),
            properties: if self.version.is_v5() {
                Properties::from(PropertyFields {
                    receive_maximum: Some(65_535),
                    ..PropertyFields::default()
                })
            } else {
                Properties::default()
            },
            ..Connect::default()
        }
    }

    /// A connection whose CONNECT was answered; its CONNACK's code.
    async fn connect(&mut self, connect: Connect) -> Option<(Probe, ReasonCode, Packet)> {
        let options = ProbeOptions::client()
            .with_version(self.version)
            .with_maximum_packet_size(mqtt_protocol::DecodeContext::MAXIMUM_PACKET_SIZE_MAX);
        let mut probe = self.broker.probe(options).await.ok()?;
        probe.send(&Packet::Connect(Box::new(connect))).await.ok()?;
        let connack = probe.expect(&Pattern::connack(), ANSWER).await.ok()?;
        let code = match &connack {
            Packet::ConnAck(connack) => connack.reason_code,
            _ => return None,
        };
        Some((probe, code, connack))
    }

    async fn connected(&mut self) -> Option<Probe> {
        let connect = self.connect_packet(None);
        match self.connect(connect).await {
            Some((probe, ReasonCode::SUCCESS, _)) => Some(probe),
            _ => None,
        }
    }

    /// Whether the broker takes a QoS 1 PUBLISH to `topic` with `payload_bytes` (a success
    /// PUBACK), on a fresh connection.
    async fn accepts_publish(&mut self, topic: String, payload_bytes: usize) -> bool {
        let Some(mut probe) = self.connected().await else {
            return false;
        };
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: Some(1),
            payload: Bytes::from(vec![b'x'; payload_bytes]),
            ..Publish::default()
        };
        if probe.send(&Packet::Publish(publish)).await.is_err() {
            return false;
        }
        let accepted = matches!(
            probe.expect(&Pattern::puback(), ANSWER).await,
            Ok(Packet::PubAck(ack)) if !ack.reason_code.is_error()
        );
        probe.close().await;
        accepted
    }

    async fn accepts(&mut self, searched: &Searched, size: usize) -> bool {
        match searched {
            Searched::Payload(topic) => self.accepts_publish(topic.clone(), size).await,
            Searched::ClientId => self.accepts_client_id(size).await,
            Searched::Levels(base) => {
                let mut topic = base.clone();
                for _ in topic.split('/').count()..size {
                    topic.push_str("/l");
                }
                self.accepts_publish(topic, 1).await
            }
        }
    }

    /// The largest size in `low..=high` the broker accepts, given that acceptance only shrinks
    /// as sizes grow; `None` if it does not accept even `low`.
    async fn largest(&mut self, searched: Searched, low: usize, high: usize) -> Option<usize> {
        if !self.accepts(&searched, low).await {
            return None;
        }
        if self.accepts(&searched, high).await {
            return Some(high);
        }
        let (mut good, mut bad) = (low, high);
        while bad - good > 1 {
            let middle = good + (bad - good) / 2;
            if self.accepts(&searched, middle).await {
                good = middle;
            } else {
                bad = middle;
            }
        }
        Some(good)
    }

    async fn accepts_client_id(&mut self, length: usize) -> bool {
        let prefix = self.names.client_id("");
        let mut client_id = prefix.clone();
        while client_id.len() < length {
            client_id.push('c');
        }
        client_id.truncate(length.max(prefix.len()));
        let connect = self.connect_packet(Some(client_id));
        matches!(self.connect(connect).await, Some((_, ReasonCode::SUCCESS, _)))
    }
}

/// A limit as JSON: the number, or `{"at_least": n}` when the search hit its bound.
fn limit(found: Option<usize>, bound: usize) -> Value {
    match found {
        Some(value) if value >= bound => json!({"at_least": value}),
        Some(value) => json!(value),
        None => Value::Null,
    }
}

/// The broker's limits in `version`.
pub async fn discover_limits(broker: Endpoint, version: ProtocolVersion, names: &Names) -> Value {
    let mut prober = Prober {
        broker,
        version,
        names: names.clone(),
        counter: 0,
    };
    let payload_max = prober
        .largest(Searched::Payload(names.topic("limits/size")), 16, PACKET_BYTES_MAX)
        .await;
    let client_id_max = prober.largest(Searched::ClientId, 23, CLIENT_ID_MAX).await;
    let base = names.topic("limits");
    let base_levels = base.split('/').count();
    let levels_max = prober
        .largest(Searched::Levels(base), base_levels, TOPIC_LEVELS_MAX)
        .await;
    let inflight = inflight_window(&mut prober).await;
    let keep_alive_cap = keep_alive_cap(&mut prober).await;
    let queue = offline_queue(&mut prober).await;
    json!({
        "accepted_payload_bytes": limit(payload_max, PACKET_BYTES_MAX),
        "client_id_length": limit(client_id_max, CLIENT_ID_MAX),
        "topic_levels": limit(levels_max, TOPIC_LEVELS_MAX),
        "inflight_to_a_silent_subscriber": limit(inflight, INFLIGHT_MAX),
        "keep_alive_cap_s": keep_alive_cap,
        "offline_queue_messages": limit(queue, MESSAGES_MAX),
    })
}

/// How many QoS 1 messages the broker sends a subscriber that acknowledges none.
async fn inflight_window(prober: &mut Prober) -> Option<usize> {
    let topic = prober.names.topic("limits/inflight");
    let mut subscriber = prober.connected().await?;
    subscribe(&mut subscriber, &topic).await?;
    let mut publisher = prober.connected().await?;
    for index in 0..INFLIGHT_MAX {
        publish_qos1(&mut publisher, &topic, index).await?;
    }
    let mut count = 0;
    while let Ok(Packet::Publish(_)) = subscriber.expect(&Pattern::publish(), Duration::from_millis(500)).await {
        count += 1;
    }
    Some(count)
}

/// The keep alive the broker imposes on a client asking for the most (5.0 Server Keep Alive);
/// `null` when it says nothing.
async fn keep_alive_cap(prober: &mut Prober) -> Value {
    let mut connect = prober.connect_packet(None);
    connect.keep_alive_s = u16::MAX;
    match prober.connect(connect).await {
        Some((_, ReasonCode::SUCCESS, Packet::ConnAck(connack))) => {
            json!(connack.properties.server_keep_alive_s)
        }
        Some((_, code, _)) => json!({"refused": code.to_string()}),
        None => Value::Null,
    }
}

/// How many QoS 1 messages the broker keeps for a persistent session while it is away.
async fn offline_queue(prober: &mut Prober) -> Option<usize> {
    let topic = prober.names.topic("limits/queue");
    let client_id = prober.names.client_id("limits-queue");
    let persistent = |prober: &mut Prober, clean_start: bool| {
        let mut connect = prober.connect_packet(Some(client_id.clone()));
        connect.clean_start = clean_start;
        if prober.version.is_v5() {
            connect.properties = Properties::from(PropertyFields {
                session_expiry_interval_s: Some(300),
                receive_maximum: Some(65_535),
                ..PropertyFields::default()
            });
        } else {
            connect.clean_start = false;
        }
        connect
    };
    let connect = persistent(prober, true);
    let (mut subscriber, _, _) = prober.connect(connect).await?;
    subscribe(&mut subscriber, &topic).await?;
    subscriber.send(&Packet::Disconnect(Disconnect::default())).await.ok()?;
    subscriber.close().await;
    let mut publisher = prober.connected().await?;
    for index in 0..MESSAGES_MAX {
        publish_qos1(&mut publisher, &topic, index).await?;
    }
    let connect = persistent(prober, false);
    let (mut subscriber, _, _) = prober.connect(connect).await?;
    let mut count = 0;
    while let Ok(Packet::Publish(publish)) = subscriber.expect(&Pattern::publish(), Duration::from_millis(500)).await {
        count += 1;
        if let Some(packet_id) = publish.packet_id {
            subscriber
                .send(&Packet::PubAck(PublishAck::new(packet_id)))
                .await
                .ok()?;
        }
    }
    // Leave no session behind.
    let mut connect = persistent(prober, true);
    if prober.version.is_v5() {
        connect.properties = Properties::default();
    } else {
        connect.clean_start = true;
    }
    if let Some((mut probe, _, _)) = prober.connect(connect).await {
        let _ = probe.send(&Packet::Disconnect(Disconnect::default())).await;
        probe.close().await;
    }
    Some(count)
}

async fn subscribe(probe: &mut Probe, topic: &str) -> Option<()> {
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: topic.to_owned(),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    };
    probe.send(&Packet::Subscribe(subscribe)).await.ok()?;
    probe.expect(&Pattern::suback(), ANSWER).await.ok()?;
    Some(())
}

async fn publish_qos1(probe: &mut Probe, topic: &str, index: usize) -> Option<()> {
    let packet_id = (index % 65_535) as u16 + 1;
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        topic: topic.into(),
        packet_id: Some(packet_id),
        payload: Bytes::from(format!("m{index}")),
        ..Publish::default()
    };
    probe.send(&Packet::Publish(publish)).await.ok()?;
    timeout(ANSWER, probe.expect(&Pattern::puback(), ANSWER))
        .await
        .ok()?
        .ok()?;
    Some(())
}
