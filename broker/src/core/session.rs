//! Sessions, connections and the messages that move between them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::scram::ServerExchange;
use mqtt_protocol::flow::{IncomingFlows, OutgoingFlows};
use mqtt_protocol::{ByteStr, Connect, Properties, ProtocolVersion, Publish, QoS, SubscriptionOptions};
use tokio::time::Instant;

use super::ConnectionId;

/// An application message as the broker received it, shared by every delivery of it.
#[derive(Debug)]
pub struct Message {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The properties forwarded to subscribers: Payload Format Indicator, Content Type, Response
    /// Topic, Correlation Data, User Properties (in order). Topic Alias and Subscription
    /// Identifiers are removed; Message Expiry is kept separately.
    pub properties: Properties,
    /// The Message Expiry Interval as received, if any.
    pub expiry_interval_s: Option<u32>,
    pub received_at: Instant,
    /// The publishing client, for No Local.
    pub publisher: String,
}

impl Message {
    /// The Message Expiry Interval still left at `now`, or `None` when it has none; `Some(0)` means
    /// expired (5.0 MQTT-3.3.2-5, MQTT-3.3.2-6).
    pub fn expiry_left_s(&self, now: Instant) -> Option<u32> {
        let interval = self.expiry_interval_s?;
        let elapsed = now.saturating_duration_since(self.received_at).as_secs();
        Some(u32::try_from(u64::from(interval).saturating_sub(elapsed)).unwrap_or(0))
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        match self.expiry_interval_s {
            Some(interval) => now >= self.received_at + Duration::from_secs(u64::from(interval)),
            None => false,
        }
    }
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_identifiers: Vec<u32>,
    /// The shared subscription (group, filter) it was chosen through, if any.
    pub shared: Option<(String, String)>,
}

/// A subscription as a session holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// The will of a connection (5.0 §3.1.2.5), carried on the message published.
#[derive(Debug, Clone)]
pub struct PendingWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    pub delay: Duration,
}

/// Session state (5.0 §4.1), kept while the session lasts, across connections.
pub struct Session {
    pub client_id: String,
    pub version: ProtocolVersion,
    pub connection: Option<ConnectionId>,
    /// Our QoS 1/2 deliveries to the client not yet acknowledged.
    pub outgoing: OutgoingFlows,
    /// QoS 2 messages from the client not yet released.
    pub incoming: IncomingFlows,
    /// Deliveries waiting for the window or for the client to come back; bounded.
    pub queue: VecDeque<Delivery>,
    /// The shared-subscription deliveries in flight, by packet id, for redelivery when the
    /// session ends (5.0 §4.8.2).
    pub shared_inflight: BTreeMap<u16, Delivery>,
    /// Subscriptions by their full filter (`$share/...` included).
    pub subscriptions: BTreeMap<String, StoredSubscription>,
    /// 0: ends with the connection; `u32::MAX`: never expires.
    pub expiry_interval_s: u32,
    /// When the disconnected session ends.
    pub expires_at: Option<Instant>,
    /// The will of the current (or last) connection, until published or discarded (boxed: most
    /// sessions have none, and a session's size is paid per connection).
    pub will: Option<Box<PendingWill>>,
    /// When a will waiting for its delay is due.
    pub will_due_at: Option<Instant>,
    /// The user name of the current (or last) connection, as authenticated: what the ACL is
    /// checked against, for deliveries made while it is offline too.
    pub username: Option<Box<str>>,
}

impl Session {
    pub fn new(client_id: String, version: ProtocolVersion, receive_maximum: u16, inflight_count_max: u16) -> Session {
        Session {
            client_id,
            version,
            connection: None,
            outgoing: OutgoingFlows::new(inflight_count_max),
            incoming: IncomingFlows::new(receive_maximum),
            queue: VecDeque::new(),
            shared_inflight: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            expiry_interval_s: 0,
            expires_at: None,
            will: None,
            will_due_at: None,
            username: None,
        }
    }
}

/// Where a network connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Accepted; its CONNECT must arrive by `deadline`.
    AwaitingConnect { deadline: Instant },
    /// A 5.0 CONNECT with an Authentication Method waits for the exchange (5.0 §4.12) to end,
    /// within the same deadline.
    Authenticating {
        deadline: Instant,
        connect: Box<Connect>,
        exchange: Box<ServerExchange>,
    },
    /// CONNECT accepted for this client id.
    Connected { client_id: String },
    /// The core asked to close it and ignores it from now on.
    Closing,
}

/// One network connection.
pub struct Connection {
    pub state: ConnectionState,
    pub version: ProtocolVersion,
    /// The keep alive in force; the connection is closed after 1.5 times it without a packet.
    pub keep_alive: Option<Duration>,
    pub last_received: Instant,
    /// Topic aliases the client set on this connection.
    pub aliases: BTreeMap<u16, ByteStr>,
    /// The client's Maximum Packet Size.
    pub maximum_packet_size: Option<u32>,
    /// The Topic Alias Maximum the CONNACK offered this connection (0 when it offered none).
    pub topic_alias_maximum: u16,
    /// Whether the client wants Reason Strings and User Properties on packets other than PUBLISH,
    /// CONNACK and DISCONNECT (5.0 MQTT-3.1.2-29).
    pub request_problem_information: bool,
    /// The Session Expiry Interval the CONNECT set (0 when absent), for the DISCONNECT rule of 5.0
    /// §3.14.2.2.2.
    pub connect_session_expiry_s: u32,
    /// Topic aliases we use towards a 5.0 client that allows them (boxed: most do not).
    pub aliases_out: Option<Box<OutgoingAliases>>,
    /// The TLS certificate's name and the enhanced authentication in force (boxed: most
    /// connections have neither).
    pub auth: Option<Box<ConnectionAuth>>,
}

/// What a connection proved about itself beyond its CONNECT.
#[derive(Debug, Clone, Default)]
pub struct ConnectionAuth {
    /// The Common Name of the client's TLS certificate.
    pub certificate_name: Option<String>,
    /// The Authentication Method of the CONNECT (5.0 §4.12), kept for re-authentication.
    pub method: Option<String>,
    /// A re-authentication in progress (5.0 §4.12.1).
    pub exchange: Option<Box<ServerExchange>>,
}

/// The topic aliases the broker sends one connection (5.0 §3.3.2.3.4): the first PUBLISH of a
/// topic carries its name and a new alias, later ones the alias and an empty name; at most the
/// client's Topic Alias Maximum, handed out first come, first served, for the connection's life.
#[derive(Debug, Default)]
pub struct OutgoingAliases {
    maximum: u16,
    by_topic: BTreeMap<ByteStr, u16>,
}

impl OutgoingAliases {
    /// For a client whose CONNECT allowed `maximum` aliases; `None` when it allowed none.
    pub fn new(maximum: Option<u16>) -> Option<Box<OutgoingAliases>> {
        maximum.filter(|maximum| *maximum > 0).map(|maximum| {
            Box::new(OutgoingAliases {
                maximum,
                by_topic: BTreeMap::new(),
            })
        })
    }

    /// Puts the alias of `publish`'s topic in it (and empties the topic), or maps the topic to a
    /// new alias while there is room. Returns the topic newly mapped, which [`Self::forget`] must
    /// undo if the PUBLISH is not sent after all (the client would never learn the mapping).
    pub fn apply(&mut self, publish: &mut Publish) -> Option<ByteStr> {
        if publish.topic.is_empty() {
            return None;
        }
        if let Some(&alias) = self.by_topic.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = ByteStr::new();
            return None;
        }
        if self.by_topic.len() >= usize::from(self.maximum) {
            return None;
        }
        let alias = self.by_topic.len() as u16 + 1;
        self.by_topic.insert(publish.topic.clone(), alias);
        publish.properties.topic_alias = Some(alias);
        Some(publish.topic.clone())
    }

    /// Undoes the mapping [`Self::apply`] just made.
    pub fn forget(&mut self, topic: &ByteStr) {
        self.by_topic.remove(topic);
    }
}

impl Connection {
    pub fn new(now: Instant, connect_timeout: Duration) -> Connection {
        Connection {
            state: ConnectionState::AwaitingConnect {
                deadline: now + connect_timeout,
            },
            version: ProtocolVersion::V5,
            keep_alive: None,
            last_received: now,
            aliases: BTreeMap::new(),
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            request_problem_information: true,
            connect_session_expiry_s: 0,
            aliases_out: None,
            auth: None,
        }
    }

    pub fn client_id(&self) -> Option<&str> {
        match &self.state {
            ConnectionState::Connected { client_id } => Some(client_id),
            _ => None,
        }
    }

    /// When the connection has been silent for 1.5 times its keep alive (5.0 MQTT-3.1.2-22,
    /// 3.1.1 MQTT-3.1.2-24), measured to the millisecond.
    pub fn keep_alive_deadline(&self) -> Option<Instant> {
        self.keep_alive
            .map(|keep_alive| self.last_received + keep_alive * 3 / 2)
    }
}
