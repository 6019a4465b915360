//! The sans-IO client: MQTT 3.1.1 / 5.0 client behaviour with no I/O and no clock.
//!
//! Inputs are `handle_*` calls that carry the time (`handle_packet(now, ..)`,
//! `handle_timeout(now)`, `handle_connection_lost(now)`) and application requests (`connect`,
//! `publish`, `subscribe`, `unsubscribe`, `disconnect`); outputs are polled:
//! [`ClientCore::poll_transmit`] (packets to write, in order), [`ClientCore::poll_event`] and
//! [`ClientCore::poll_timeout`] (when to call `handle_timeout` next). A spurious extra call is a
//! no-op. The same core runs over real TCP and under simulation, because the driver tells it the
//! time (`tokio::time::Instant`, which turmoil drives).
//!
//! What it obeys from the server's CONNACK (5.0 §3.2.2.3): Server Keep Alive replaces the client's
//! keep alive (MQTT-3.2.2-21); an Assigned Client Identifier is adopted for later connects; the
//! server's Receive Maximum, Topic Alias Maximum, Maximum QoS, Retain Available and Maximum Packet
//! Size bound what it sends; a Session Present that does not match its own state is handled as
//! MQTT-3.2.2-4 and MQTT-3.2.2-5 say.
//!
//! Delivery follows the shared flows of `mqtt_protocol::flow`: nothing is resent within a
//! connection (5.0 MQTT-4.4.0-1); after a reconnect that resumes the session, unacknowledged
//! PUBLISH packets go again with DUP and the same packet id, and PUBREL packets as they were,
//! before any new message.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use mqtt_protocol::flow::{FlowError, IncomingFlows, OutgoingFlows, SendError};
use mqtt_protocol::{
    encoded_len, validate, validate_direction, ByteStr, ConnAck, Direction, Disconnect, EncodeError, Packet,
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe,
};
use tokio::time::Instant;

use crate::options::ConnectOptions;

/// Identifies an application request (a publish, subscribe or unsubscribe) in the events that
/// complete it.
pub type Token = u64;

/// An application message to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 only: Message Expiry, Content Type, Response Topic, Correlation Data, User Properties...
    pub properties: Properties,
}

impl Message {
    pub fn new(topic: impl Into<ByteStr>, payload: impl Into<Bytes>, qos: QoS) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            properties: Properties::default(),
        }
    }
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A CONNACK with Success.
    Connected {
        session_present: bool,
        connack: ConnAck,
    },
    /// A message from the server, its topic resolved from a Topic Alias where one was used.
    Message(Publish),
    /// A QoS 1 or 2 publish ended: PUBACK, PUBCOMP, or a PUBREC with a failure code.
    Published {
        token: Token,
        reason_code: ReasonCode,
    },
    /// A QoS 1 or 2 publish abandoned unacknowledged because its session was discarded.
    PublishDropped {
        token: Token,
    },
    SubAck {
        token: Token,
        suback: SubAck,
    },
    UnsubAck {
        token: Token,
        unsuback: UnsubAck,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE whose connection ended before its acknowledgement.
    RequestAborted {
        token: Token,
    },
    /// The server's session did not match ours; our session state was discarded (5.0
    /// MQTT-3.2.2-5, 3.1.1 §3.2.2.2).
    SessionDiscarded {
        inflight_dropped_count: usize,
    },
}

/// Why the core wants the connection closed. Any DISCONNECT it should send first is already
/// queued for [`ClientCore::poll_transmit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Close {
    #[error("no CONNACK within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no PINGRESP within {0:?} of a PINGREQ: the server is declared dead")]
    KeepAliveTimeout(Duration),
    #[error("the server refused the connection: {0}")]
    Refused(ReasonCode),
    #[error("the server disconnected: {}", .0.reason_code)]
    ServerDisconnected(Box<Disconnect>),
    #[error("the server broke a rule: {description}")]
    ProtocolViolation {
        description: String,
        reason_code: Option<ReasonCode>,
    },
    #[error("the server reported a session the client does not have (MQTT-3.2.2-4)")]
    SessionPresentWithoutState,
    #[error("enhanced authentication failed: {0}")]
    AuthenticationFailed(String),
    #[error("the client disconnected")]
    Requested,
}

impl Close {
    /// Whether reconnecting could help: not after a refusal or the client's own DISCONNECT.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Close::Refused(_) | Close::Requested | Close::AuthenticationFailed(_)
        )
    }
}

/// Why an application request was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("not connected")]
    NotConnected,
    #[error("the server's Maximum QoS is {maximum:?}")]
    QoSNotSupported { maximum: QoS },
    #[error("the server does not support retained messages")]
    RetainNotSupported,
    #[error("the packet is {size} bytes; the server accepts at most {maximum}")]
    PacketTooLarge { size: usize, maximum: u32 },
    #[error("{0} requests already wait; the queue is full")]
    QueueFull(usize),
    #[error("every packet id is in use")]
    PacketIdsExhausted,
    #[error("invalid packet: {0}")]
    Invalid(#[from] EncodeError),
}

/// What the server's CONNACK allows (5.0 §3.2.2.3); 3.1.1 servers allow everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub receive_maximum: u16,
    pub topic_alias_maximum: u16,
    pub maximum_qos: QoS,
    pub retain_available: bool,
    pub maximum_packet_size: Option<u32>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            receive_maximum: u16::MAX,
            topic_alias_maximum: 0,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_packet_size: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection: never connected, or lost.
    Idle,
    /// CONNECT queued; waiting for CONNACK until the deadline.
    Connecting {
        deadline: Instant,
    },
    Connected,
    /// A DISCONNECT is queued or the core asked to close: nothing more is sent.
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Subscribe,
    Unsubscribe,
}

/// The client state machine. See the module documentation.
pub struct ClientCore {
    options: ConnectOptions,
    state: State,
    /// Session state: outgoing QoS 1/2 flows, kept across connections while the session persists.
    outgoing: OutgoingFlows,
    /// Session state: QoS 2 ids received and not yet released.
    incoming: IncomingFlows,
    /// The request behind each outgoing flow, by packet id.
    publish_tokens: BTreeMap<u16, Token>,
    /// Publishes waiting for the window or for a connection, in order; bounded by
    /// `options.pending_count_max`.
    pending: VecDeque<(Publish, Token)>,
    /// SUBSCRIBE and UNSUBSCRIBE packets waiting for their acknowledgement, by packet id.
    requests: BTreeMap<u16, (Token, RequestKind)>,
    transmit: VecDeque<Packet>,
    events: VecDeque<Event>,
    next_token: Token,
    /// Whether the client holds state of a session the server should still have.
    has_session_state: bool,
    server: ServerLimits,
    keep_alive: Option<Duration>,
    last_sent: Option<Instant>,
    ping_sent: Option<Instant>,
    /// Outgoing topic aliases of this connection.
    aliases_out: BTreeMap<ByteStr, u16>,
    /// Incoming topic aliases of this connection.
    aliases_in: BTreeMap<u16, ByteStr>,
    /// A packet this connection had to send did not fit the server's Maximum Packet Size: it was
    /// not sent, and the connection ends at the next [`ClientCore::handle_timeout`].
    oversized: Option<(String, Instant)>,
}

impl ClientCore {
    pub fn new(options: ConnectOptions) -> ClientCore {
        assert!(options.inflight_count_max > 0, "inflight_count_max must be positive");
        assert!(options.pending_count_max > 0, "pending_count_max must be positive");
        let receive_maximum = options.receive_maximum.unwrap_or(u16::MAX);
        // A client that asks to resume a session (Clean Start 0, a session that outlives the
        // connection) declares it holds that session's state, possibly empty: Session Present 1
        // is then what it asked for. Only after a Clean Start 1 does Session Present 1 mean the
        // server kept state the client does not have (5.0 MQTT-3.2.2-2, -4).
        let has_session_state = !options.clean_start && options.session_persists();
        ClientCore {
            outgoing: OutgoingFlows::new(options.inflight_count_max),
            incoming: IncomingFlows::new(receive_maximum),
            options,
            state: State::Idle,
            publish_tokens: BTreeMap::new(),
            pending: VecDeque::new(),
            requests: BTreeMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_token: 1,
            has_session_state,
            server: ServerLimits::default(),
            keep_alive: None,
            last_sent: None,
            ping_sent: None,
            aliases_out: BTreeMap::new(),
            aliases_in: BTreeMap::new(),
            oversized: None,
        }
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Checks what must hold between any two inputs, cheaply enough to call after every step in
    /// tests and fuzzing: the flows are consistent (no two in flight with one packet id, none
    /// beyond the in-flight maximum), every flow has its request and no request lacks a flow, the
    /// pending queue is within its bound, no request shares a packet id with a flow, and no more
    /// topic aliases are in use than the server allows. The error says what broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.outgoing
            .check_invariants()
            .map_err(|error| format!("outgoing: {error}"))?;
        self.incoming
            .check_invariants()
            .map_err(|error| format!("incoming: {error}"))?;
        if self.pending.len() > self.options.pending_count_max {
            return Err(format!(
                "{} publishes pending, above {}",
                self.pending.len(),
                self.options.pending_count_max
            ));
        }
        for packet_id in self.publish_tokens.keys() {
            if self.outgoing.state(*packet_id).is_none() {
                return Err(format!("a publish request ({packet_id}) has no flow"));
            }
        }
        if self.publish_tokens.len() != self.outgoing.inflight_count() {
            return Err(format!(
                "{} flows, {} publish requests",
                self.outgoing.inflight_count(),
                self.publish_tokens.len()
            ));
        }
        if let Some(packet_id) = self.requests.keys().find(|id| self.outgoing.state(**id).is_some()) {
            return Err(format!("packet id {packet_id} is a request's and a flow's"));
        }
        let in_use = self.outgoing.packet_ids_in_use_count();
        if in_use != self.outgoing.inflight_count() + self.requests.len() {
            return Err(format!(
                "{in_use} packet ids in use for {} flows and {} requests",
                self.outgoing.inflight_count(),
                self.requests.len()
            ));
        }
        let alias_maximum = usize::from(self.server.topic_alias_maximum);
        if self.aliases_out.len() > alias_maximum {
            return Err(format!(
                "{} outgoing topic aliases, above the server's {alias_maximum}",
                self.aliases_out.len()
            ));
        }
        Ok(())
    }

    pub fn version(&self) -> ProtocolVersion {
        self.options.version
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The keep alive in force: the server's Server Keep Alive if it sent one, else the client's.
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive
    }

    pub fn server_limits(&self) -> ServerLimits {
        self.server
    }

    /// The client id in use: the assigned one once the server assigned one.
    pub fn client_id(&self) -> &str {
        &self.options.client_id
    }

    pub fn inflight_count(&self) -> usize {
        self.outgoing.inflight_count()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    // ---- inputs ----------------------------------------------------------------------------

    /// Starts a connection attempt: queues the CONNECT. Clean Start is 0 whenever the client holds
    /// session state, so that a reconnect resumes the session (5.0 §3.1.2.4).
    pub fn connect(&mut self, now: Instant) {
        assert_eq!(self.state, State::Idle, "connect while a connection is open");
        self.reset_connection();
        let mut connect = self.options.to_connect();
        if self.has_session_state {
            connect.clean_start = false;
        }
        if connect.clean_start {
            self.discard_session();
        }
        self.transmit.push_back(Packet::Connect(Box::new(connect)));
        self.state = State::Connecting {
            deadline: now + self.options.connect_timeout,
        };
    }

    /// A packet from the server, already strictly decoded.
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) -> Result<(), Close> {
        match self.state {
            State::Connecting { .. } => match packet {
                Packet::ConnAck(connack) => self.handle_connack(now, connack),
                Packet::Auth(auth) => self.handle_auth(&auth),
                other => self.violation(format!("{} before CONNACK (MQTT-3.2.0-1)", other.packet_type()), None),
            },
            State::Connected => self.handle_connected_packet(packet),
            State::Idle | State::Closing => Ok(()),
        }
    }

    /// Checks deadlines: the CONNACK's, the PINGRESP's, and whether a PINGREQ is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Close> {
        if let Some((description, _)) = self.oversized.take() {
            if matches!(self.state, State::Connecting { .. } | State::Connected) {
                self.state = State::Closing;
                return Err(Close::ProtocolViolation {
                    description,
                    reason_code: None,
                });
            }
        }
        match self.state {
            State::Connecting { deadline } if now >= deadline => {
                self.state = State::Closing;
                Err(Close::ConnectTimeout(self.options.connect_timeout))
            }
            State::Connected => {
                let Some(keep_alive) = self.keep_alive else {
                    return Ok(());
                };
                if let Some(ping_sent) = self.ping_sent {
                    if now >= ping_sent + self.options.ping_timeout {
                        self.state = State::Closing;
                        return Err(Close::KeepAliveTimeout(self.options.ping_timeout));
                    }
                } else if self.last_sent.is_some_and(|last_sent| now >= last_sent + keep_alive) {
                    // Nothing sent for a whole keep alive: a PINGREQ is due (5.0 MQTT-3.1.2-20,
                    // 3.1.1 MQTT-3.1.2-23).
                    self.transmit.push_back(Packet::PingReq);
                    self.ping_sent = Some(now);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The connection is gone (closed by either side, or failed). Per-connection state is
    /// dropped; session state is kept only if the session outlives the connection.
    pub fn handle_connection_lost(&mut self, _now: Instant) {
        self.state = State::Idle;
        self.transmit.clear();
        for (packet_id, (token, _)) in std::mem::take(&mut self.requests) {
            self.outgoing.release_packet_id(packet_id);
            self.events.push_back(Event::RequestAborted { token });
        }
        if !self.options.session_persists() {
            self.discard_session();
        }
        self.reset_connection();
    }

    // ---- application requests --------------------------------------------------------------

    /// Queues a message. QoS 1 and 2 messages complete with [`Event::Published`] (or
    /// [`Event::PublishDropped`]); QoS 0 ones only go out. Messages wait while the window is full
    /// or the client is not connected, up to `pending_count_max`.
    pub fn publish(&mut self, message: Message) -> Result<Token, RequestError> {
        if self.state == State::Connected {
            self.check_server_limits(&message)?;
        }
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: message.topic,
            // A placeholder id so that validation of QoS 1/2 passes; the flow assigns the real one.
            packet_id: (message.qos != QoS::AtMostOnce).then_some(1),
            properties: message.properties,
            payload: message.payload,
        });
        validate(&packet, self.version())?;
        validate_direction(&packet, self.version(), Direction::ClientToServer)?;
        if let Some(maximum) = self
            .server
            .maximum_packet_size
            .filter(|_| self.state == State::Connected)
        {
            let size = encoded_len(&packet, self.version())?;
            if size > maximum as usize {
                return Err(RequestError::PacketTooLarge { size, maximum });
            }
        }
        let Packet::Publish(publish) = packet else {
            unreachable!("built as a PUBLISH above")
        };
        if self.pending.len() >= self.options.pending_count_max {
            return Err(RequestError::QueueFull(self.pending.len()));
        }
        let token = self.take_token();
        self.pending.push_back((publish, token));
        self.fill_window();
        Ok(token)
    }

    pub fn subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> Result<Token, RequestError> {
        self.request(RequestKind::Subscribe, |packet_id| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        })
    }

    pub fn unsubscribe(&mut self, filters: Vec<String>, properties: Properties) -> Result<Token, RequestError> {
        self.request(RequestKind::Unsubscribe, |packet_id| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
    }

    /// Queues a DISCONNECT; the driver closes the connection once it is written. In 5.0, reason
    /// code 0x04 asks the server to publish the will.
    pub fn disconnect(&mut self, reason_code: ReasonCode, properties: Properties) {
        if matches!(self.state, State::Connected | State::Connecting { .. }) {
            let disconnect = Disconnect {
                reason_code,
                properties,
            };
            let packet = Packet::Disconnect(disconnect);
            if validate(&packet, self.version()).is_ok() {
                self.transmit.push_back(packet);
            } else {
                self.transmit.push_back(Packet::Disconnect(Disconnect::default()));
            }
        }
        self.state = State::Closing;
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// The next packet to write. Outgoing topic aliases are applied here, per connection.
    ///
    /// Nothing past the server's Maximum Packet Size goes out (5.0 MQTT-3.2.2-15): a packet that
    /// does not fit is dropped, and the connection ends at the next
    /// [`ClientCore::handle_timeout`] (a server that announced less than a PINGREQ or an
    /// acknowledgement needs cannot be served).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        loop {
            let mut packet = self.transmit.pop_front()?;
            if let Packet::Publish(publish) = &mut packet {
                self.apply_outgoing_alias(publish);
            }
            if let Some(maximum) = self.server.maximum_packet_size {
                let size = mqtt_protocol::encoded_len(&packet, self.version()).unwrap_or(usize::MAX);
                if size > maximum as usize {
                    self.oversized.get_or_insert_with(|| {
                        let description = format!(
                            "a {} of {size} bytes does not fit the server's Maximum Packet Size of {maximum} (MQTT-3.2.2-15)",
                            packet.packet_type()
                        );
                        (description, now)
                    });
                    continue;
                }
            }
            self.last_sent = Some(now);
            return Some(packet);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`ClientCore::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some((_, at)) = &self.oversized {
            return Some(*at);
        }
        match self.state {
            State::Connecting { deadline } => Some(deadline),
            State::Connected => {
                let keep_alive = self.keep_alive?;
                match self.ping_sent {
                    Some(ping_sent) => Some(ping_sent + self.options.ping_timeout),
                    None => self.last_sent.map(|last_sent| last_sent + keep_alive),
                }
            }
            State::Idle | State::Closing => None,
        }
    }

    // ---- internals -------------------------------------------------------------------------

    fn take_token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    fn request(&mut self, kind: RequestKind, build: impl FnOnce(u16) -> Packet) -> Result<Token, RequestError> {
        if self.state != State::Connected {
            return Err(RequestError::NotConnected);
        }
        let packet_id = self
            .outgoing
            .allocate_packet_id()
            .ok_or(RequestError::PacketIdsExhausted)?;
        let packet = build(packet_id);
        if let Err(error) = validate(&packet, self.version()) {
            self.outgoing.release_packet_id(packet_id);
            return Err(error.into());
        }
        let token = self.take_token();
        self.requests.insert(packet_id, (token, kind));
        self.transmit.push_back(packet);
        Ok(token)
    }

    fn check_server_limits(&self, message: &Message) -> Result<(), RequestError> {
        if message.qos > self.server.maximum_qos {
            // 5.0 MQTT-3.2.2-11: never above the server's Maximum QoS.
            return Err(RequestError::QoSNotSupported {
                maximum: self.server.maximum_qos,
            });
        }
        if message.retain && !self.server.retain_available {
            // 5.0 MQTT-3.2.2-14.
            return Err(RequestError::RetainNotSupported);
        }
        Ok(())
    }

    /// Moves pending publishes into flight while the window allows; QoS 0 ones go straight out.
    fn fill_window(&mut self) {
        if self.state != State::Connected {
            return;
        }
        while let Some((publish, _)) = self.pending.front() {
            if publish.qos != QoS::AtMostOnce && !self.outgoing.can_send() {
                return;
            }
            let Some((publish, token)) = self.pending.pop_front() else {
                return;
            };
            match self.outgoing.send(publish) {
                Ok(sent) => {
                    if let Some(packet_id) = sent.packet_id {
                        self.publish_tokens.insert(packet_id, token);
                    }
                    self.transmit.push_back(Packet::Publish(sent));
                }
                Err(SendError::QuotaExhausted) => unreachable!("checked with can_send"),
                Err(SendError::PacketIdsExhausted) => return,
            }
        }
    }

    fn handle_connack(&mut self, now: Instant, connack: ConnAck) -> Result<(), Close> {
        if connack.reason_code != ReasonCode::SUCCESS {
            self.state = State::Closing;
            return Err(Close::Refused(connack.reason_code));
        }
        if connack.session_present && !self.has_session_state {
            // 5.0 MQTT-3.2.2-4 (3.1.1 §3.2.2.2 likewise): close; a later connect starts clean.
            self.state = State::Closing;
            self.discard_session();
            return Err(Close::SessionPresentWithoutState);
        }
        if !connack.session_present && self.has_session_state {
            // 5.0 MQTT-3.2.2-5: the server lost the session; so do we.
            let inflight_dropped_count = self.outgoing.inflight_count();
            self.discard_session();
            self.events
                .push_back(Event::SessionDiscarded { inflight_dropped_count });
        }
        let properties = &connack.properties;
        let mut server = ServerLimits::default();
        if self.version().is_v5() {
            server.receive_maximum = properties.receive_maximum.unwrap_or(u16::MAX);
            server.topic_alias_maximum = properties.topic_alias_maximum.unwrap_or(0);
            server.maximum_qos = properties.maximum_qos.unwrap_or(QoS::ExactlyOnce);
            server.retain_available = properties.retain_available.unwrap_or(true);
            server.maximum_packet_size = properties.maximum_packet_size;
            if let Some(assigned) = &properties.assigned_client_identifier {
                self.options.client_id = assigned.clone();
            }
        }
        self.server = server;
        self.outgoing.set_send_quota(server.receive_maximum);
        let keep_alive_s = match properties.server_keep_alive_s {
            Some(server_keep_alive_s) if self.version().is_v5() => server_keep_alive_s,
            _ => self.options.keep_alive_s,
        };
        self.keep_alive = (keep_alive_s > 0).then(|| Duration::from_secs(u64::from(keep_alive_s)));
        self.has_session_state = self.options.session_persists();
        self.state = State::Connected;
        self.last_sent.get_or_insert(now);
        let session_present = connack.session_present;
        self.events.push_back(Event::Connected {
            session_present,
            connack,
        });
        if session_present {
            self.transmit.extend(self.outgoing.resend_on_resume());
        }
        self.fill_window();
        Ok(())
    }

    fn handle_connected_packet(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => match self.outgoing.handle_puback(&ack) {
                Ok(completed) => {
                    self.complete_publish(completed.packet_id, completed.reason_code);
                    Ok(())
                }
                Err(error) => self.flow_error(error),
            },
            Packet::PubRec(ack) => match self.outgoing.handle_pubrec(&ack) {
                Ok(Some(pubrel)) => {
                    self.transmit.push_back(Packet::PubRel(pubrel));
                    Ok(())
                }
                Ok(None) => {
                    // A failure code ends the QoS 2 flow without a PUBREL (5.0 MQTT-4.4.0-2).
                    self.complete_publish(ack.packet_id, ack.reason_code);
                    Ok(())
                }
                Err(error) => self.flow_error(error),
            },
            Packet::PubComp(ack) => match self.outgoing.handle_pubcomp(&ack) {
                Ok(completed) => {
                    self.complete_publish(completed.packet_id, completed.reason_code);
                    Ok(())
                }
                Err(error) => self.flow_error(error),
            },
            Packet::PubRel(ack) => {
                let pubcomp = self.incoming.handle_pubrel(&ack, self.version());
                self.transmit.push_back(Packet::PubComp(pubcomp));
                Ok(())
            }
            Packet::SubAck(suback) => match self.requests.remove(&suback.packet_id) {
                Some((token, RequestKind::Subscribe)) => {
                    self.outgoing.release_packet_id(suback.packet_id);
                    self.events.push_back(Event::SubAck { token, suback });
                    Ok(())
                }
                other => {
                    self.restore_request(suback.packet_id, other);
                    self.violation(
                        format!("SUBACK for packet id {} (MQTT-3.8.4-2)", suback.packet_id),
                        None,
                    )
                }
            },
            Packet::UnsubAck(unsuback) => match self.requests.remove(&unsuback.packet_id) {
                Some((token, RequestKind::Unsubscribe)) => {
                    self.outgoing.release_packet_id(unsuback.packet_id);
                    self.events.push_back(Event::UnsubAck { token, unsuback });
                    Ok(())
                }
                other => {
                    self.restore_request(unsuback.packet_id, other);
                    self.violation(
                        format!("UNSUBACK for packet id {} (MQTT-3.10.4-5)", unsuback.packet_id),
                        None,
                    )
                }
            },
            Packet::PingResp => {
                self.ping_sent = None;
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                self.state = State::Closing;
                Err(Close::ServerDisconnected(Box::new(disconnect)))
            }
            Packet::Auth(auth) => self.handle_auth(&auth),
            Packet::ConnAck(_) => self.violation("a second CONNACK (MQTT-3.2.0-2)".into(), None),
            other => self.violation(format!("{} from a server", other.packet_type()), None),
        }
    }

    fn restore_request(&mut self, packet_id: u16, request: Option<(Token, RequestKind)>) {
        if let Some(request) = request {
            self.requests.insert(packet_id, request);
        }
    }

    fn handle_publish(&mut self, mut publish: Publish) -> Result<(), Close> {
        if let Some(alias) = publish.properties.topic_alias {
            let alias_maximum = self.options.topic_alias_maximum.unwrap_or(0);
            if alias > alias_maximum {
                // 5.0 §3.3.4: an alias above the maximum the client sent is 0x94.
                return self.violation(
                    format!("Topic Alias {alias} above the client's Topic Alias Maximum {alias_maximum}"),
                    Some(ReasonCode::TOPIC_ALIAS_INVALID),
                );
            }
            if publish.topic.is_empty() {
                match self.aliases_in.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return self.violation(
                            format!("Topic Alias {alias} with an empty topic and no mapping (5.0 §3.3.4)"),
                            Some(ReasonCode::PROTOCOL_ERROR),
                        )
                    }
                }
            } else {
                self.aliases_in.insert(alias, publish.topic.clone());
            }
        }
        match self.incoming.handle_publish(&publish) {
            Ok(incoming) => {
                if let Some(reply) = incoming.reply {
                    self.transmit.push_back(reply);
                }
                if incoming.deliver {
                    self.events.push_back(Event::Message(publish));
                }
                Ok(())
            }
            Err(error) => self.flow_error(error),
        }
    }

    fn handle_auth(&mut self, auth: &mqtt_protocol::Auth) -> Result<(), Close> {
        let Some(handler) = self.options.auth_handler.clone() else {
            return self.violation("AUTH without an authentication method (5.0 §4.12)".into(), None);
        };
        match handler.on_auth(auth) {
            Ok(response) => {
                self.transmit.push_back(Packet::Auth(response));
                Ok(())
            }
            Err(message) => {
                self.state = State::Closing;
                Err(Close::AuthenticationFailed(message))
            }
        }
    }

    fn complete_publish(&mut self, packet_id: u16, reason_code: ReasonCode) {
        if let Some(token) = self.publish_tokens.remove(&packet_id) {
            self.events.push_back(Event::Published { token, reason_code });
        }
        while let Some(resend) = self.outgoing.resend_next() {
            self.transmit.push_back(Packet::Publish(resend));
        }
        self.fill_window();
    }

    fn flow_error(&mut self, error: FlowError) -> Result<(), Close> {
        if let Some(reply) = error.reply(self.version()) {
            // A PUBREC for an unknown id: answer so the server can release it (5.0 §4.3.3).
            self.transmit.push_back(reply);
            return Ok(());
        }
        // An unsolicited ack is out of step with the session: DISCONNECT 0x82, then close.
        self.violation(error.to_string(), error.reason_code())
    }

    /// A packet from the server failed strict decoding: in 5.0, queue a DISCONNECT with the
    /// decoder's code (0x81, 0x82 or a more specific one), and close.
    pub fn handle_decode_error(&mut self, error: &mqtt_protocol::DecodeError) -> Close {
        match self.violation(format!("malformed packet from the server: {error}"), error.reason_code) {
            Err(close) => close,
            Ok(()) => unreachable!("a violation always closes"),
        }
    }

    /// The server broke a rule: in 5.0, queue a DISCONNECT with the code, then ask to close.
    fn violation(&mut self, description: String, reason_code: Option<ReasonCode>) -> Result<(), Close> {
        if self.version().is_v5() && self.state == State::Connected {
            if let Some(code) = reason_code {
                self.transmit.push_back(Packet::Disconnect(Disconnect {
                    reason_code: code,
                    ..Disconnect::default()
                }));
            }
        }
        self.state = State::Closing;
        Err(Close::ProtocolViolation {
            description,
            reason_code,
        })
    }

    fn apply_outgoing_alias(&mut self, publish: &mut Publish) {
        let alias_maximum = self.server.topic_alias_maximum;
        if !self.options.outgoing_topic_aliases || alias_maximum == 0 || publish.topic.is_empty() {
            return;
        }
        if let Some(&alias) = self.aliases_out.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = ByteStr::new();
        } else if self.aliases_out.len() < usize::from(alias_maximum) {
            let alias = self.aliases_out.len() as u16 + 1;
            self.aliases_out.insert(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
    }

    fn discard_session(&mut self) {
        for (_, token) in std::mem::take(&mut self.publish_tokens) {
            self.events.push_back(Event::PublishDropped { token });
        }
        self.outgoing.clear();
        self.incoming.clear();
        self.has_session_state = false;
    }

    /// Drops what belongs to one connection (5.0 MQTT-3.3.2-7: topic aliases never outlive it).
    fn reset_connection(&mut self) {
        self.oversized = None;
        self.aliases_out.clear();
        self.aliases_in.clear();
        self.ping_sent = None;
        self.last_sent = None;
        self.keep_alive = None;
        self.server = ServerLimits::default();
    }
}
