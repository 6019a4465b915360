//! The sans-IO broker core: every MQTT 3.1, 3.1.1 and 5.0 rule the broker keeps, with no I/O and
//! no clock. The I/O layer calls `handle_*(now, ..)` with what happened and drains
//! [`Broker::poll_output`] (packets to write, connections to close) and [`Broker::poll_timeout`]
//! (when to call [`Broker::handle_timeout`]). Sessions live in memory: a restart loses them.
//!
//! Determinism: every collection is ordered (BTreeMap, VecDeque), so the same inputs at the same
//! instants give the same outputs, which the simulator relies on.

mod auth;
mod connect;
mod publish;
pub mod session;
mod subscribe;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use mqtt_protocol::topic::SubscriptionTree;
use mqtt_protocol::{
    encoded_len, ByteStr, Connect, DecodeError, DecodeErrorKind, Disconnect, Packet, Properties, ProtocolVersion, QoS,
    ReasonCode, Spec,
};
use tokio::time::Instant;

use crate::config::Config;
#[cfg(feature = "mutations")]
use crate::mutations::Mutation;
use crate::security::{Action, Security};
use session::{Connection, ConnectionState, Message, Session, StoredSubscription};

/// Identifies one network connection; the I/O layer picks the values (never reused).
pub type ConnectionId = u64;

/// What the core asks the I/O layer to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Encode `packet` in `version` and write it to `connection`.
    Send {
        connection: ConnectionId,
        version: ProtocolVersion,
        packet: Packet,
    },
    /// Write what is queued for `connection`, then close it. The core ignores it from now on.
    Close { connection: ConnectionId },
}

/// Who holds a subscription in the tree: a client, alone or as a member of a shared group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubscriberKey {
    pub group: Option<String>,
    pub client_id: String,
}

/// A deadline the core keeps. Keep-alive deadlines are checked lazily: a packet received only
/// moves the connection's `last_received`, and a due timer that finds the deadline moved is
/// re-armed for the new one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Connect(ConnectionId),
    KeepAlive(ConnectionId),
    Will(String),
    SessionExpiry(String),
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statistics {
    pub connections: usize,
    pub sessions: usize,
    pub retained_messages: usize,
    pub messages_received: u64,
    pub messages_delivered: u64,
    /// Dropped: queue full, too large for the client, expired, or QoS 0 for an offline session.
    pub messages_dropped: u64,
    /// Connections closed because a packet the spec requires in answer (a CONNACK, an
    /// acknowledgement) did not fit the client's Maximum Packet Size even without its optional
    /// parts: never left open and unanswered.
    pub required_packets_too_large: u64,
}

/// What only the server knows, for the `$SYS` topics ([`Broker::publish_system_topics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerFigures {
    pub uptime: Duration,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// The broker. See the module documentation.
pub struct Broker {
    config: Config,
    connections: BTreeMap<ConnectionId, Connection>,
    sessions: BTreeMap<String, Session>,
    subscriptions: SubscriptionTree<SubscriberKey, StoredSubscription>,
    retained: BTreeMap<ByteStr, std::sync::Arc<Message>>,
    timers: BTreeSet<(Instant, Timer)>,
    /// Round-robin position of each shared group, by (group, filter).
    shared_positions: BTreeMap<(String, String), usize>,
    outputs: VecDeque<Output>,
    assigned_id_next: u64,
    /// Connections accepted in the current second, for the connection rate limit.
    rate_window: (Option<Instant>, u32),
    statistics: Statistics,
    /// Who may connect and what they may do ([`crate::security`]).
    security: std::sync::Arc<Security>,
    /// Numbers the SCRAM nonces.
    scram_nonce_next: u64,
}

impl Broker {
    pub fn new(config: Config) -> Broker {
        #[cfg(feature = "mutations")]
        if !config.mutations.is_empty() {
            // Loud on purpose: a broker with planted bugs must never pass for a correct one.
            tracing::warn!(mutations = %config.mutations, "planted bugs are switched on");
        }
        Broker {
            config,
            connections: BTreeMap::new(),
            sessions: BTreeMap::new(),
            subscriptions: SubscriptionTree::new(),
            retained: BTreeMap::new(),
            timers: BTreeSet::new(),
            shared_positions: BTreeMap::new(),
            outputs: VecDeque::new(),
            assigned_id_next: 1,
            rate_window: (None, 0),
            statistics: Statistics::default(),
            security: std::sync::Arc::new(Security::default()),
            scram_nonce_next: 0,
        }
    }

    /// The broker with `security` as its policy (default: everybody may do everything).
    pub fn with_security(mut self, security: std::sync::Arc<Security>) -> Broker {
        self.security = security;
        self
    }

    /// Replaces the policy while the broker runs (a reload): connections stay; their next CONNECT,
    /// SUBSCRIBE, PUBLISH, delivery or will follows the new one.
    pub fn set_security(&mut self, security: std::sync::Arc<Security>) {
        self.security = security;
    }

    pub fn security(&self) -> &std::sync::Arc<Security> {
        &self.security
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the planted bug `mutation` is switched on.
    ///
    /// It exists only with the `mutations` feature, and each call site carries
    /// `#[cfg(feature = "mutations")]` rather than calling an always-false twin: without the
    /// feature not one token of a bug reaches the compiler (the promise in Cargo.toml holds
    /// literally, and `crate::mutations` can stay wholly behind the feature), and the attribute
    /// marks every planted bug for a reader and for grep. The price is one attribute per site;
    /// clippy runs with and without the feature, so neither build rots.
    #[cfg(feature = "mutations")]
    fn mutated(&self, mutation: Mutation) -> bool {
        self.config.mutations.contains(mutation)
    }

    pub fn statistics(&self) -> Statistics {
        Statistics {
            connections: self.connections.len(),
            sessions: self.sessions.len(),
            retained_messages: self.retained.len(),
            ..self.statistics
        }
    }

    /// Publishes the broker's own topics, retained at QoS 0, through the door every message takes
    /// (so retained handling, the store's quota and routing apply as to any other):
    /// `$SYS/broker/version`, `uptime` (seconds), `clients/connected`, `messages/received` (PUBLISH
    /// packets from clients), `messages/sent` (deliveries), `bytes/received` and `bytes/sent` (on
    /// the wire, from `server`). Topics starting with `$` match no filter that starts with a
    /// wildcard (MQTT-4.7.2-1): only those who ask for `$SYS/...` see them.
    pub fn publish_system_topics(&mut self, now: Instant, server: &ServerFigures) {
        let connected = self
            .connections
            .values()
            .filter(|connection| matches!(connection.state, ConnectionState::Connected { .. }))
            .count();
        let figures = [
            (
                "$SYS/broker/version",
                format!("mqtt-harness {}", env!("CARGO_PKG_VERSION")),
            ),
            ("$SYS/broker/uptime", format!("{} seconds", server.uptime.as_secs())),
            ("$SYS/broker/clients/connected", connected.to_string()),
            (
                "$SYS/broker/messages/received",
                self.statistics.messages_received.to_string(),
            ),
            (
                "$SYS/broker/messages/sent",
                self.statistics.messages_delivered.to_string(),
            ),
            ("$SYS/broker/bytes/received", server.bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", server.bytes_sent.to_string()),
        ];
        for (topic, value) in figures {
            self.publish_message(
                now,
                Message {
                    topic: ByteStr::from_static(topic),
                    payload: value.into_bytes().into(),
                    qos: QoS::AtMostOnce,
                    retain: self.config.retain_available,
                    properties: Properties::default(),
                    expiry_interval_s: None,
                    received_at: now,
                    publisher: String::new(),
                },
            );
        }
    }

    /// The connection the session of `client_id` is attached to, if any: the one a CONNECT with
    /// that client id would take over (5.0 MQTT-3.1.4-3, 3.1.1 MQTT-3.1.4-2). The server uses it to
    /// hand the core whatever that connection already sent before the CONNECT that ends it.
    pub fn connection_of(&self, client_id: &str) -> Option<ConnectionId> {
        self.sessions.get(client_id).and_then(|session| session.connection)
    }

    // ---- inputs ----------------------------------------------------------------------------

    /// A network connection was accepted; its CONNECT must come within the connect timeout.
    pub fn handle_connection_opened(&mut self, now: Instant, connection: ConnectionId) {
        self.handle_connection_opened_as(now, connection, None);
    }

    /// A network connection was accepted whose TLS client certificate names `certificate_name`
    /// (the user name when `Security::use_identity_as_username` is on).
    pub fn handle_connection_opened_as(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        certificate_name: Option<String>,
    ) {
        let mut state = Connection::new(now, self.config.connect_timeout);
        if certificate_name.is_some() {
            state.auth = Some(Box::new(session::ConnectionAuth {
                certificate_name,
                ..Default::default()
            }));
        }
        if let ConnectionState::AwaitingConnect { deadline } = state.state {
            self.timers.insert((deadline, Timer::Connect(connection)));
        }
        self.connections.insert(connection, state);
    }

    /// A strictly decoded packet from `connection`.
    pub fn handle_packet(&mut self, now: Instant, connection: ConnectionId, packet: Packet) {
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        state.last_received = now;
        match &state.state {
            ConnectionState::Closing => {}
            ConnectionState::AwaitingConnect { .. } => match packet {
                Packet::Connect(connect) => self.handle_connect(now, connection, *connect, None),
                // The decoder accepts only CONNECT first; anything else means a bug upstream.
                _ => self.close(connection),
            },
            ConnectionState::Authenticating { .. } => self.continue_authentication(now, connection, packet),
            ConnectionState::Connected { client_id } => {
                let client_id = client_id.clone();
                self.handle_connected(now, connection, &client_id, packet)
            }
        }
    }

    /// A CONNECT whose password the I/O layer already checked against
    /// [`Security::password_to_check`] (off the broker's task: hashing is slow on purpose);
    /// `password_ok` is the verdict. Anything else about the CONNECT is handled as
    /// [`Broker::handle_packet`] would.
    pub fn handle_checked_connect(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        connect: Connect,
        password_ok: bool,
    ) {
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        state.last_received = now;
        if matches!(state.state, ConnectionState::AwaitingConnect { .. }) {
            self.handle_connect(now, connection, connect, Some(password_ok));
        }
    }

    /// A packet from `connection` failed strict decoding. Before CONNECT is accepted nothing but a
    /// CONNACK may be sent (5.0 MQTT-3.2.0-1): an unsupported protocol level is answered with the
    /// CONNACK code of that meaning in the client's own format (3.1.1 0x01, 5.0 0x84), anything
    /// else is closed silently. After CONNECT, 5.0 gets a DISCONNECT with the decoder's code (0x81,
    /// 0x82 or a more specific one); 3.1.1 is closed.
    pub fn handle_decode_error(&mut self, now: Instant, connection: ConnectionId, error: &DecodeError) {
        let Some(state) = self.connections.get(&connection) else {
            return;
        };
        match state.state.clone() {
            ConnectionState::Closing => {}
            ConnectionState::Authenticating { .. } => self.close(connection),
            ConnectionState::AwaitingConnect { .. } => {
                if let DecodeErrorKind::UnsupportedProtocolLevel { .. } = error.kind {
                    let version = match error.rule.spec {
                        Spec::V3_1_1 => ProtocolVersion::V3_1_1,
                        Spec::V5_0 => ProtocolVersion::V5,
                    };
                    let connack = mqtt_protocol::ConnAck {
                        reason_code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                        ..Default::default()
                    };
                    self.outputs.push_back(Output::Send {
                        connection,
                        version,
                        packet: Packet::ConnAck(connack),
                    });
                }
                self.close(connection);
            }
            ConnectionState::Connected { client_id } => {
                tracing::debug!(connection, %error, "malformed packet");
                self.disconnect_with(now, connection, &client_id, error.reason_code);
            }
        }
    }

    /// The network connection ended (the peer closed it, or it failed).
    pub fn handle_connection_closed(&mut self, now: Instant, connection: ConnectionId) {
        let Some(state) = self.connections.remove(&connection) else {
            return;
        };
        if let ConnectionState::Connected { client_id } = state.state {
            self.session_disconnected(now, &client_id, connection, true);
        }
    }

    /// Keep-alive, connect, will-delay and session-expiry deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, timer)) = self.timers.first().cloned() {
            if at > now {
                return;
            }
            self.timers.pop_first();
            match timer {
                Timer::Connect(connection) => {
                    if let Some(Connection {
                        state: ConnectionState::AwaitingConnect { .. } | ConnectionState::Authenticating { .. },
                        ..
                    }) = self.connections.get(&connection)
                    {
                        tracing::debug!(connection, "no CONNECT within the connect timeout");
                        self.close(connection);
                    }
                }
                Timer::KeepAlive(connection) => self.check_keep_alive(now, connection),
                Timer::Will(client_id) => {
                    if self.sessions.get(&client_id).and_then(|session| session.will_due_at) == Some(at) {
                        self.publish_will(now, &client_id);
                    }
                }
                Timer::SessionExpiry(client_id) => {
                    #[cfg(feature = "mutations")]
                    if self.mutated(Mutation::SessionOutlivesExpiry) {
                        // Planted bug: the expiry timer is dropped; the session lives on.
                        continue;
                    }
                    let session = self.sessions.get(&client_id);
                    if session.is_some_and(|session| session.connection.is_none() && session.expires_at == Some(at)) {
                        self.end_session(now, &client_id);
                    }
                }
            }
        }
    }

    /// The server is shutting down: 5.0 clients get DISCONNECT 0x8B, every connection is closed.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let connections: Vec<(ConnectionId, ProtocolVersion, bool)> = self
            .connections
            .iter()
            .map(|(id, state)| {
                (
                    *id,
                    state.version,
                    matches!(state.state, ConnectionState::Connected { .. }),
                )
            })
            .collect();
        for (connection, version, connected) in connections {
            // The session no longer has this connection (the broker stops: no will, no expiry
            // timer; sessions live in memory and go with the process).
            let client_id = self
                .connections
                .get(&connection)
                .and_then(Connection::client_id)
                .map(str::to_owned);
            if let Some(session) = client_id.and_then(|client_id| self.sessions.get_mut(&client_id)) {
                session.connection = None;
            }
            if connected && version.is_v5() {
                let disconnect = Disconnect {
                    reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
                    ..Disconnect::default()
                };
                self.send(now, connection, Packet::Disconnect(disconnect));
            }
            self.close(connection);
        }
    }

    /// Checks what must hold between any two inputs, cheaply enough to call after every step in
    /// tests and fuzzing: connections and sessions point at each other, every queue and store is
    /// within its bound, every session's flows are consistent (no two in flight with one packet
    /// id, none beyond the in-flight maximum), and the subscription tree and the sessions agree.
    /// The error says what broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        let config = &self.config;
        for (connection, state) in &self.connections {
            if let ConnectionState::Connected { client_id } = &state.state {
                let session = self
                    .sessions
                    .get(client_id)
                    .ok_or_else(|| format!("connection {connection} of {client_id:?} has no session"))?;
                if session.connection != Some(*connection) {
                    return Err(format!(
                        "connection {connection} is {client_id:?}'s, whose session names connection {:?}",
                        session.connection
                    ));
                }
            }
        }
        for (client_id, session) in &self.sessions {
            if &session.client_id != client_id {
                return Err(format!(
                    "the session of {client_id:?} calls itself {:?}",
                    session.client_id
                ));
            }
            if let Some(connection) = session.connection {
                let connected = self
                    .connections
                    .get(&connection)
                    .and_then(Connection::client_id)
                    .is_some_and(|connected| connected == client_id);
                if !connected {
                    return Err(format!(
                        "the session of {client_id:?} names connection {connection}, which is not connected as it"
                    ));
                }
            }
            if session.queue.len() > config.queued_messages_max {
                return Err(format!(
                    "{client_id:?} queues {} messages, above {}",
                    session.queue.len(),
                    config.queued_messages_max
                ));
            }
            if session.subscriptions.len() > config.subscriptions_per_client_max {
                return Err(format!(
                    "{client_id:?} holds {} subscriptions, above {}",
                    session.subscriptions.len(),
                    config.subscriptions_per_client_max
                ));
            }
            session
                .outgoing
                .check_invariants()
                .map_err(|error| format!("{client_id:?}, outgoing: {error}"))?;
            session
                .incoming
                .check_invariants()
                .map_err(|error| format!("{client_id:?}, incoming: {error}"))?;
            for packet_id in session.shared_inflight.keys() {
                if session.outgoing.state(*packet_id).is_none() {
                    return Err(format!("{client_id:?}: shared delivery {packet_id} is not in flight"));
                }
            }
        }
        if self.retained.len() > config.retained_messages_max {
            return Err(format!(
                "{} retained messages, above {}",
                self.retained.len(),
                config.retained_messages_max
            ));
        }
        let session_subscriptions: usize = self.sessions.values().map(|session| session.subscriptions.len()).sum();
        if self.subscriptions.len() != session_subscriptions {
            return Err(format!(
                "the subscription tree holds {}, the sessions {session_subscriptions}",
                self.subscriptions.len()
            ));
        }
        Ok(())
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// When [`Broker::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ---- connected packets -----------------------------------------------------------------

    fn handle_connected(&mut self, now: Instant, connection: ConnectionId, client_id: &str, packet: Packet) {
        match packet {
            Packet::Publish(publish) => self.handle_publish(now, connection, client_id, publish),
            Packet::PubAck(ack) => {
                let result = self.session_mut(client_id).outgoing.handle_puback(&ack);
                match result {
                    Ok(completed) => {
                        self.delivery_completed(now, client_id, completed.packet_id, completed.reason_code)
                    }
                    Err(error) => self.flow_violation(now, connection, client_id, error),
                }
            }
            Packet::PubRec(ack) => {
                let result = self.session_mut(client_id).outgoing.handle_pubrec(&ack);
                match result {
                    Ok(Some(pubrel)) => {
                        self.session_mut(client_id).shared_inflight.remove(&ack.packet_id);
                        self.send(now, connection, Packet::PubRel(pubrel));
                    }
                    Ok(None) => self.delivery_completed(now, client_id, ack.packet_id, ack.reason_code),
                    Err(error) => self.flow_violation(now, connection, client_id, error),
                }
            }
            Packet::PubComp(ack) => {
                let result = self.session_mut(client_id).outgoing.handle_pubcomp(&ack);
                match result {
                    Ok(completed) => {
                        self.delivery_completed(now, client_id, completed.packet_id, completed.reason_code)
                    }
                    Err(error) => self.flow_violation(now, connection, client_id, error),
                }
            }
            Packet::PubRel(ack) => {
                let session = self.session_mut(client_id);
                let version = session.version;
                let pubcomp = session.incoming.handle_pubrel(&ack, version);
                self.send(now, connection, Packet::PubComp(pubcomp));
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(now, connection, client_id, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(now, connection, client_id, unsubscribe),
            Packet::PingReq => self.send(now, connection, Packet::PingResp),
            Packet::Disconnect(disconnect) => self.handle_disconnect(now, connection, client_id, disconnect),
            Packet::Connect(_) => {
                // A second CONNECT is a Protocol Error (5.0 MQTT-3.1.0-2, 3.1.1 MQTT-3.1.0-2).
                self.disconnect_with(now, connection, client_id, Some(ReasonCode::PROTOCOL_ERROR));
            }
            Packet::Auth(auth) => self.handle_reauthentication(now, connection, client_id, auth),
            // Packets only a server sends cannot get here: the decoder refuses them.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.disconnect_with(now, connection, client_id, Some(ReasonCode::PROTOCOL_ERROR));
            }
        }
    }

    fn handle_disconnect(&mut self, now: Instant, connection: ConnectionId, client_id: &str, disconnect: Disconnect) {
        let Some(state) = self.connections.get(&connection) else {
            return;
        };
        let version = state.version;
        let connect_expiry = state.connect_session_expiry_s;
        if version.is_v5() {
            if let Some(expiry) = disconnect.properties.session_expiry_interval_s {
                if connect_expiry == 0 && expiry != 0 {
                    // 5.0 §3.14.2.2.2: a session that was to end with the connection cannot be
                    // extended at DISCONNECT: a Protocol Error, and the will goes out.
                    self.disconnect_with(now, connection, client_id, Some(ReasonCode::PROTOCOL_ERROR));
                    return;
                }
                self.session_mut(client_id).expiry_interval_s = expiry;
            }
        }
        let publish_will = version.is_v5() && disconnect.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE;
        // Planted bug: every DISCONNECT counts as one that asks for the will.
        #[cfg(feature = "mutations")]
        let publish_will = publish_will || self.mutated(Mutation::WillOnNormalDisconnect);
        if !publish_will {
            // A normal DISCONNECT discards the will (5.0 MQTT-3.14.4-3, 3.1.1 MQTT-3.14.4-3).
            self.session_mut(client_id).will = None;
        }
        self.connections.remove(&connection);
        self.outputs.push_back(Output::Close { connection });
        self.session_disconnected(now, client_id, connection, publish_will);
    }

    /// A client broke a flow rule (an ack for an unknown packet id, for instance).
    fn flow_violation(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        client_id: &str,
        error: mqtt_protocol::flow::FlowError,
    ) {
        let version = self
            .sessions
            .get(client_id)
            .map_or(ProtocolVersion::V5, |session| session.version);
        if let Some(reply) = error.reply(version) {
            self.send(now, connection, reply);
            return;
        }
        tracing::debug!(connection, %error, "flow violation");
        // An ack for a packet id not in flight is out of step with the session: a Protocol Error.
        self.disconnect_with(now, connection, client_id, error.reason_code());
    }

    // ---- keep alive, wills, session ends ------------------------------------------------------

    fn check_keep_alive(&mut self, now: Instant, connection: ConnectionId) {
        let Some(state) = self.connections.get(&connection) else {
            return;
        };
        let ConnectionState::Connected { client_id } = state.state.clone() else {
            return;
        };
        let Some(deadline) = state.keep_alive_deadline() else {
            return;
        };
        if deadline > now {
            self.timers.insert((deadline, Timer::KeepAlive(connection)));
            return;
        }
        #[cfg(feature = "mutations")]
        if self.mutated(Mutation::KeepAliveIgnored) {
            // Planted bug: the deadline passed and the broker looks away, for good (no re-arm).
            return;
        }
        tracing::debug!(connection, %client_id, "keep alive expired");
        // 5.0 MQTT-3.1.2-22 / 3.1.1 MQTT-3.1.2-24: closed as if the network had failed; 5.0 says
        // why first (0x8D, a code only the server sends).
        self.disconnect_with(now, connection, &client_id, Some(ReasonCode::KEEP_ALIVE_TIMEOUT));
    }

    /// Ends a connection the broker gives up on: in 5.0 a DISCONNECT with `reason_code` (always
    /// given for 5.0 errors; `None` only from 3.1.1 paths); the will is published (the close is
    /// not a normal DISCONNECT).
    fn disconnect_with(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        client_id: &str,
        reason_code: Option<ReasonCode>,
    ) {
        let Some(state) = self.connections.get(&connection) else {
            return;
        };
        if state.state == ConnectionState::Closing {
            return;
        }
        if state.version.is_v5() {
            if let Some(reason_code) = reason_code {
                let disconnect = Disconnect {
                    reason_code,
                    ..Disconnect::default()
                };
                self.send(now, connection, Packet::Disconnect(disconnect));
            }
        }
        self.close(connection);
        self.session_disconnected(now, client_id, connection, true);
    }

    /// Asks the I/O layer to close `connection` and stops listening to it.
    fn close(&mut self, connection: ConnectionId) {
        if let Some(state) = self.connections.get_mut(&connection) {
            if state.state != ConnectionState::Closing {
                state.state = ConnectionState::Closing;
                self.outputs.push_back(Output::Close { connection });
            }
        }
    }

    /// The session's connection is gone. Its will goes out now, after its delay, or when the
    /// session ends, whichever is first (5.0 §3.1.2.5, §3.1.3.2.2); the session ends now or after
    /// its expiry interval.
    fn session_disconnected(&mut self, now: Instant, client_id: &str, connection: ConnectionId, publish_will: bool) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        if session.connection != Some(connection) {
            return; // taken over already
        }
        session.connection = None;
        if !publish_will {
            session.will = None;
        }
        let expiry = session.expiry_interval_s;
        session.expires_at = match expiry {
            u32::MAX => None,
            seconds => Some(now + Duration::from_secs(u64::from(seconds))),
        };
        if let Some(will) = &session.will {
            let due_at = now + will.delay;
            session.will_due_at = Some(due_at);
            if will.delay.is_zero() {
                self.publish_will(now, client_id);
            } else {
                self.timers.insert((due_at, Timer::Will(client_id.to_owned())));
            }
        }
        match self.sessions.get(client_id).and_then(|session| session.expires_at) {
            _ if expiry == 0 => self.end_session(now, client_id),
            Some(expires_at) => {
                self.timers
                    .insert((expires_at, Timer::SessionExpiry(client_id.to_owned())));
            }
            None => {}
        }
    }

    fn publish_will(&mut self, now: Instant, client_id: &str) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        session.will_due_at = None;
        let Some(will) = session.will.take().map(|will| *will) else {
            return;
        };
        let username = session.username.as_deref();
        if !self.security.allows(username, client_id, Action::Publish, &will.topic) {
            // The will topic is checked when the will is published, under the rules then.
            tracing::debug!(
                client_id,
                topic = will.topic,
                "the ACL denies the will's topic: dropped"
            );
            return;
        }
        let mut properties = will.properties;
        let expiry_interval_s = properties.message_expiry_interval_s.take();
        properties.will_delay_interval_s = None;
        let message = Message {
            topic: will.topic.into(),
            payload: will.payload,
            qos: will.qos.min(self.config.maximum_qos),
            retain: will.retain && self.config.retain_available,
            properties,
            expiry_interval_s,
            received_at: now,
            publisher: client_id.to_owned(),
        };
        #[cfg(feature = "mutations")]
        if self.mutated(Mutation::WillNotRetained) {
            // Planted bug, as before commit 8d348e3: the will goes to routing past the store.
            self.route_past_the_retained_store(now, message);
            return;
        }
        // The same door as a client's PUBLISH: a will with Will Retain 1 is retained (5.0
        // MQTT-3.1.2-15, 3.1.1 MQTT-3.1.2-17), and an empty one deletes the retained message.
        self.publish_message(now, message);
    }

    /// The session ends: its will (if still waiting) goes out, its subscriptions go, and QoS 1
    /// messages it held through shared subscriptions go to another member (5.0 §4.8.2); QoS 2
    /// ones never do (MQTT-4.8.2-5).
    fn end_session(&mut self, now: Instant, client_id: &str) {
        if self
            .sessions
            .get(client_id)
            .is_some_and(|session| session.will.is_some())
        {
            self.publish_will(now, client_id);
        }
        // Out of the tree while the session (and its version) is still known.
        let filters: Vec<String> = self
            .sessions
            .get(client_id)
            .map(|session| session.subscriptions.keys().cloned().collect())
            .unwrap_or_default();
        for filter in &filters {
            self.remove_from_tree(client_id, filter);
        }
        let Some(mut session) = self.sessions.remove(client_id) else {
            return;
        };
        let mut redeliver: Vec<session::Delivery> =
            std::mem::take(&mut session.shared_inflight).into_values().collect();
        redeliver.extend(session.queue.drain(..).filter(|delivery| delivery.shared.is_some()));
        for delivery in redeliver {
            if delivery.qos == mqtt_protocol::QoS::AtLeastOnce {
                if let Some((group, filter)) = delivery.shared.clone() {
                    self.redeliver_shared(now, &group, &filter, delivery);
                }
            }
        }
    }

    // ---- helpers ---------------------------------------------------------------------------

    fn session_mut(&mut self, client_id: &str) -> &mut Session {
        self.sessions
            .get_mut(client_id)
            .unwrap_or_else(|| panic!("connected client {client_id} has no session"))
    }

    /// Queues `packet` for `connection`, if it is still listened to, within the client's Maximum
    /// Packet Size (5.0 MQTT-3.1.2-24). Where a packet would not fit, its Reason String and User
    /// Properties go first (5.0 MQTT-3.2.2-19, MQTT-3.4.2-2 and their twins). A packet the spec
    /// requires as an answer (an acknowledgement: see [`is_required`]) is never dropped silently:
    /// if it still does not fit, the connection is closed as one the broker cannot serve (with
    /// DISCONNECT 0x95 where even that fits) and counted in
    /// [`Statistics::required_packets_too_large`]. Anything else that does not fit is dropped; a
    /// PUBLISH never gets here too large, as its callers complete its delivery instead (5.0
    /// MQTT-3.1.2-25). The CONNACK is cut to size before the session is touched (`fit_connack`).
    fn send(&mut self, now: Instant, connection: ConnectionId, mut packet: Packet) {
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        if state.state == ConnectionState::Closing {
            return;
        }
        // Aliases are per connection, so they go on here, where a packet meets its connection (a
        // PUBLISH resent on a new connection starts with its full topic again).
        let mut new_alias = None;
        if let (Some(aliases), Packet::Publish(publish)) = (state.aliases_out.as_deref_mut(), &mut packet) {
            new_alias = aliases.apply(publish);
        }
        let version = state.version;
        if version.is_v5() {
            explain(&mut packet);
        }
        if !state.request_problem_information {
            strip_problem_information(&mut packet);
        }
        if let Some(maximum) = state.maximum_packet_size {
            if !fits(&packet, version, maximum) {
                strip_problem_information(&mut packet);
                if !fits(&packet, version, maximum) {
                    if is_required(&packet) {
                        tracing::debug!(connection, "a required packet does not fit the client's maximum");
                        self.statistics.required_packets_too_large += 1;
                        match state.client_id().map(str::to_owned) {
                            Some(client_id) => {
                                self.disconnect_with(now, connection, &client_id, Some(ReasonCode::PACKET_TOO_LARGE))
                            }
                            None => self.close(connection),
                        }
                    } else {
                        tracing::debug!(connection, "a packet too large for the client is not sent");
                        let aliases = state.aliases_out.as_deref_mut();
                        if let (Some(topic), Some(aliases)) = (new_alias, aliases) {
                            aliases.forget(&topic);
                        }
                    }
                    return;
                }
            }
        }
        self.outputs.push_back(Output::Send {
            connection,
            version,
            packet,
        });
    }

    fn next_assigned_client_id(&mut self) -> String {
        loop {
            let client_id = format!("mqtt-harness-{}", self.assigned_id_next);
            self.assigned_id_next += 1;
            if !self.sessions.contains_key(&client_id) {
                return client_id;
            }
        }
    }
}

/// Whether `packet` fits in `maximum` bytes when encoded in `version`.
fn fits(packet: &Packet, version: ProtocolVersion, maximum: u32) -> bool {
    encoded_len(packet, version).is_ok_and(|size| size <= maximum as usize)
}

/// The packets the spec requires in answer to what the client sent: without them the client waits
/// for ever (a CONNACK) or cannot free a packet identifier (the acknowledgements).
fn is_required(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::ConnAck(_)
            | Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
    )
}

/// Gives a 5.0 packet whose one reason code is not Success (an acknowledgement, a DISCONNECT) the
/// code's name as its Reason String, for the client's log. It goes again where the client asked
/// for no problem information (5.0 MQTT-3.1.2-29) or the packet would not fit (MQTT-3.4.2-2 and
/// its twins).
fn explain(packet: &mut Packet) {
    let packet_type = packet.packet_type();
    let (code, properties) = match packet {
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            (ack.reason_code, &mut ack.properties)
        }
        Packet::Disconnect(disconnect) => (disconnect.reason_code, &mut disconnect.properties),
        _ => return,
    };
    if code != ReasonCode::SUCCESS && properties.reason_string.is_none() {
        properties.reason_string = code.name_in(packet_type).map(str::to_owned);
    }
}

/// Drops Reason String and User Properties from a packet that is not a PUBLISH.
fn strip_problem_information(packet: &mut Packet) {
    let properties: &mut Properties = match packet {
        Packet::ConnAck(connack) => &mut connack.properties,
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => &mut ack.properties,
        Packet::SubAck(suback) => &mut suback.properties,
        Packet::UnsubAck(unsuback) => &mut unsuback.properties,
        Packet::Disconnect(disconnect) => &mut disconnect.properties,
        Packet::Auth(auth) => &mut auth.properties,
        _ => return,
    };
    properties.reason_string = None;
    properties.user_properties.clear();
}
