//! CONNECT: limits, client ids, takeover, Clean Start / Clean Session, session resume, the will,
//! keep alive, and the CONNACK that advertises what this broker supports.

use std::time::Duration;

use mqtt_protocol::{ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode};
use tokio::time::Instant;

use super::session::{ConnectionState, OutgoingAliases, PendingWill, Session};
use super::{fits, Broker, ConnectionId, Output, Timer};
#[cfg(feature = "mutations")]
use crate::mutations::Mutation;

impl Broker {
    /// A CONNECT: limits, then who it is ([`crate::security`]: the password, `checked` already
    /// when the I/O layer checked it, or the enhanced authentication exchange), then the session.
    pub(super) fn handle_connect(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        connect: Connect,
        checked: Option<bool>,
    ) {
        let version = connect.protocol;
        let v5 = version.is_v5();
        if let Some(state) = self.connections.get_mut(&connection) {
            state.version = version;
        }
        let client_maximum = connect.properties.maximum_packet_size.filter(|_| v5);
        if let Some(code) = self.refusal(now, &connect) {
            self.refuse(connection, version, client_maximum, code);
            return;
        }
        if v5 && connect.properties.authentication_method.is_some() {
            self.start_authentication(now, connection, connect);
            return;
        }
        let certificate_name = self
            .connections
            .get(&connection)
            .and_then(|state| state.auth.as_ref())
            .and_then(|auth| auth.certificate_name.clone());
        match self
            .security
            .authenticate(&connect, certificate_name.as_deref(), checked)
        {
            Ok(username) => self.accept_connect(now, connection, connect, username, None),
            Err(code) => {
                tracing::debug!(connection, %code, "authentication failed");
                self.refuse(connection, version, client_maximum, code);
            }
        }
    }

    /// An authenticated CONNECT (`username` as authenticated; `server_final`: the last data of
    /// an enhanced authentication, for the CONNACK): client ids, takeover, the session.
    pub(super) fn accept_connect(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        connect: Connect,
        username: Option<String>,
        server_final: Option<bytes::Bytes>,
    ) {
        let version = connect.protocol;
        let v5 = version.is_v5();
        let client_maximum = connect.properties.maximum_packet_size.filter(|_| v5);

        // Client ids: 5.0 assigns one for an empty id with any Clean Start (MQTT-3.1.3-6/-7);
        // 3.1.1 accepts an empty id only with Clean Session 1 (MQTT-3.1.3-7, -8: else 0x02).
        let mut assigned_client_identifier = None;
        let client_id = if connect.client_id.is_empty() {
            if !v5 && !connect.clean_start {
                self.refuse(
                    connection,
                    version,
                    client_maximum,
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                );
                return;
            }
            let client_id = self.next_assigned_client_id();
            if v5 {
                assigned_client_identifier = Some(client_id.clone());
            }
            client_id
        } else {
            connect.client_id.clone()
        };

        // The CONNACK is built and cut to the client's Maximum Packet Size before any session is
        // touched: one that cannot fit means the connection is closed as if never accepted.
        let mut properties = self.connack_properties(&connect, &client_id, assigned_client_identifier);
        if let Some(data) = server_final {
            // 5.0 MQTT-4.12.0-5: the successful CONNACK names the method of the CONNECT.
            properties.authentication_method = connect.properties.authentication_method.clone();
            properties.authentication_data = Some(data);
        }
        let mut connack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties,
        });
        if let Some(maximum) = client_maximum {
            if !fit_connack(&mut connack, version, maximum) {
                tracing::debug!(connection, maximum, "no CONNACK fits the client's Maximum Packet Size");
                self.statistics.required_packets_too_large += 1;
                self.close(connection);
                return;
            }
        }
        let Packet::ConnAck(mut connack) = connack else {
            unreachable!("built as a CONNACK")
        };

        // Takeover (5.0 MQTT-3.1.4-3, 3.1.1 MQTT-3.1.4-2): the older connection is closed, 5.0
        // with DISCONNECT 0x8E, and treated as lost: its will goes out unless this connect resumes
        // the session before the will's delay.
        if let Some(old) = self.sessions.get(&client_id).and_then(|session| session.connection) {
            let old_version = self.connections.get(&old).map_or(version, |state| state.version);
            if old_version.is_v5() {
                let disconnect = Disconnect {
                    reason_code: ReasonCode::SESSION_TAKEN_OVER,
                    ..Disconnect::default()
                };
                self.send(now, old, Packet::Disconnect(disconnect));
            }
            self.close(old);
            if !connect.clean_start {
                // The session continues: a will with a delay is cancelled below, one without goes
                // out now, as the old connection is gone (5.0 §3.1.3.2.2).
                let will_delay = self
                    .sessions
                    .get(&client_id)
                    .and_then(|s| s.will.as_ref())
                    .map(|w| w.delay);
                if will_delay == Some(Duration::ZERO) {
                    self.publish_will(now, &client_id);
                }
                if let Some(session) = self.sessions.get_mut(&client_id) {
                    session.connection = None;
                }
            } else {
                self.session_disconnected_for_takeover(now, &client_id, old);
            }
        }

        // Clean Start 1 discards any session (5.0 MQTT-3.1.2-4, 3.1.1 MQTT-3.1.2-6); Clean Start
        // 0 resumes one (MQTT-3.1.2-5) or creates one (MQTT-3.1.2-6).
        if connect.clean_start && self.sessions.contains_key(&client_id) {
            self.end_session(now, &client_id);
        }
        let session_present = !connect.clean_start && self.sessions.contains_key(&client_id);
        if !session_present {
            let session = Session::new(
                client_id.clone(),
                version,
                self.config.receive_maximum,
                self.config.inflight_count_max,
            );
            self.sessions.insert(client_id.clone(), session);
        }
        // A reconnect that resumes the session cancels a will still waiting (MQTT-3.1.3-9).
        let expiry_interval_s = match version {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval_s.unwrap_or(0),
            // A 3.1.1 session with Clean Session 0 lasts until a clean connect.
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 if connect.clean_start => 0,
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => u32::MAX,
        };
        let client_receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        let session = self.session_mut(&client_id);
        session.version = version;
        session.connection = Some(connection);
        session.expires_at = None;
        session.will_due_at = None;
        session.expiry_interval_s = expiry_interval_s;
        session.will = connect.will.map(|will| {
            let delay_s = will.properties.will_delay_interval_s.unwrap_or(0);
            Box::new(PendingWill {
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
                properties: will.properties,
                delay: Duration::from_secs(u64::from(delay_s)),
            })
        });
        session.outgoing.set_send_quota(client_receive_maximum);
        session.username = username.map(String::into_boxed_str);

        // 5.0: the Server Keep Alive the CONNACK carries is the one in force (MQTT-3.1.2-21); 3.1.1
        // has no way to tell the client another, so its own is kept (3.1.1 MQTT-3.1.2-24).
        let keep_alive_s = connack.properties.server_keep_alive_s.unwrap_or(connect.keep_alive_s);
        if let Some(state) = self.connections.get_mut(&connection) {
            state.state = ConnectionState::Connected {
                client_id: client_id.clone(),
            };
            state.keep_alive = (keep_alive_s > 0).then(|| Duration::from_secs(u64::from(keep_alive_s)));
            state.maximum_packet_size = connect.properties.maximum_packet_size;
            state.topic_alias_maximum = connack.properties.topic_alias_maximum.unwrap_or(0);
            state.request_problem_information = connect.properties.request_problem_information.unwrap_or(true);
            state.connect_session_expiry_s = if v5 { expiry_interval_s } else { 0 };
            state.aliases_out = if v5 {
                OutgoingAliases::new(connect.properties.topic_alias_maximum)
            } else {
                None
            };
            if let Some(method) = connect.properties.authentication_method.clone().filter(|_| v5) {
                // Kept for re-authentication (5.0 §4.12.1).
                state.auth.get_or_insert_with(Default::default).method = Some(method);
            }
            if let Some(deadline) = state.keep_alive_deadline() {
                self.timers.insert((deadline, Timer::KeepAlive(connection)));
            }
        }

        connack.session_present = session_present;
        self.send(now, connection, Packet::ConnAck(connack));
        if session_present {
            let resent = self.session_mut(&client_id).outgoing.resend_on_resume();
            // Planted bug: the PUBLISH packets to resend are forgotten (they stay in flight,
            // holding their place in the window); PUBRELs still go.
            #[cfg(feature = "mutations")]
            let resent: Vec<Packet> = if self.mutated(Mutation::NoResendOnResume) {
                resent
                    .into_iter()
                    .filter(|packet| !matches!(packet, Packet::Publish(_)))
                    .collect()
            } else {
                resent
            };
            for packet in resent {
                self.resend(now, &client_id, connection, packet);
            }
        }
        self.pump(now, &client_id);
    }

    /// What a successful 5.0 CONNACK tells the client (nothing in 3.1.1): each limit and each
    /// declined feature, and no property that only restates its default (a Receive Maximum of
    /// 65535, availability flags of 1, a Topic Alias Maximum of 0, no Maximum Packet Size beyond
    /// the protocol's own): the client assumes those when they are absent (5.0 §3.2.2.3).
    fn connack_properties(&self, connect: &Connect, client_id: &str, assigned: Option<String>) -> Properties {
        let mut properties = Properties::default();
        if !connect.protocol.is_v5() {
            return properties;
        }
        let config = &self.config;
        properties.assigned_client_identifier = assigned;
        properties.receive_maximum = (config.receive_maximum != u16::MAX).then_some(config.receive_maximum);
        properties.maximum_packet_size =
            (config.maximum_packet_size < PROTOCOL_MAXIMUM_PACKET_SIZE).then_some(config.maximum_packet_size);
        properties.topic_alias_maximum = (config.topic_alias_maximum > 0).then_some(config.topic_alias_maximum);
        // Maximum QoS is sent only as 0 or 1 (5.0 §3.2.2.3.4); absent means 2.
        properties.maximum_qos = (config.maximum_qos != QoS::ExactlyOnce).then_some(config.maximum_qos);
        properties.retain_available = (!config.retain_available).then_some(false);
        properties.wildcard_subscription_available = (!config.wildcard_subscription_available).then_some(false);
        properties.subscription_identifier_available = (!config.subscription_identifier_available).then_some(false);
        properties.shared_subscription_available = (!config.shared_subscription_available).then_some(false);
        let over_cap = |cap: &u16| connect.keep_alive_s == 0 || connect.keep_alive_s > *cap;
        properties.server_keep_alive_s = config
            .server_keep_alive_s
            .or_else(|| config.keep_alive_max_s.filter(over_cap));
        if connect.properties.request_response_information == Some(true) {
            properties.response_information = Some(format!("response/{client_id}"));
        }
        properties
    }

    /// What refuses a CONNECT before any session is touched, as a 5.0 code (3.1.1 maps it).
    fn refusal(&mut self, now: Instant, connect: &Connect) -> Option<ReasonCode> {
        let v5 = connect.protocol.is_v5();
        // Open connections, this one included (those closing count until they are closed).
        if self.connections.len() > self.config.connections_max {
            // The broker as a whole is full: Server busy (a quota is per client).
            return Some(if v5 {
                ReasonCode::SERVER_BUSY
            } else {
                ReasonCode::SERVER_UNAVAILABLE
            });
        }
        if let Some(rate_max) = self.config.connection_rate_per_second_max {
            let (window_start, count) = &mut self.rate_window;
            if window_start.is_none_or(|start| now >= start + Duration::from_secs(1)) {
                *window_start = Some(now);
                *count = 0;
            }
            *count += 1;
            if *count > rate_max {
                return Some(if v5 {
                    ReasonCode::CONNECTION_RATE_EXCEEDED
                } else {
                    ReasonCode::SERVER_UNAVAILABLE
                });
            }
        }
        if let Some(method) = connect.properties.authentication_method.as_deref().filter(|_| v5) {
            // Only SCRAM-SHA-256 is offered, and only with a password file (5.0 MQTT-4.12.0-1).
            if method != mqtt_client::scram::METHOD || !self.security.offers_scram() {
                return Some(ReasonCode::BAD_AUTHENTICATION_METHOD);
            }
        }
        if let Some(will) = &connect.will {
            if will.qos > self.config.maximum_qos {
                // 5.0 MQTT-3.2.2-12.
                return Some(if v5 {
                    ReasonCode::QOS_NOT_SUPPORTED
                } else {
                    ReasonCode::SERVER_UNAVAILABLE
                });
            }
            if will.retain && !self.config.retain_available {
                // 5.0 MQTT-3.2.2-13.
                return Some(if v5 {
                    ReasonCode::RETAIN_NOT_SUPPORTED
                } else {
                    ReasonCode::SERVER_UNAVAILABLE
                });
            }
        }
        None
    }

    /// CONNACK with a failure code, Session Present 0 (5.0 MQTT-3.2.2-6), then close (MQTT-3.2.2-7;
    /// 3.1.1 MQTT-3.2.2-5). Nothing the client sends afterwards is processed (MQTT-3.1.4-6).
    /// Even this CONNACK is not sent past the client's Maximum Packet Size (`maximum`): the
    /// connection is then just closed, and counted.
    pub(super) fn refuse(
        &mut self,
        connection: ConnectionId,
        version: ProtocolVersion,
        maximum: Option<u32>,
        reason_code: ReasonCode,
    ) {
        let connack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code,
            properties: Properties::default(),
        });
        if maximum.is_some_and(|maximum| !fits(&connack, version, maximum)) {
            self.statistics.required_packets_too_large += 1;
        } else {
            self.outputs.push_back(Output::Send {
                connection,
                version,
                packet: connack,
            });
        }
        self.close(connection);
    }

    /// A takeover with Clean Start 1: the old connection counts as lost (its will is published,
    /// now or when the session ends, which is now).
    fn session_disconnected_for_takeover(&mut self, now: Instant, client_id: &str, old: ConnectionId) {
        if let Some(session) = self.sessions.get_mut(client_id) {
            if session.connection == Some(old) {
                session.connection = None;
            }
        }
        if self
            .sessions
            .get(client_id)
            .is_some_and(|session| session.will.is_some())
        {
            self.publish_will(now, client_id);
        }
    }
}

/// The largest packet the protocol can frame: a 268,435,455-byte remaining length behind a
/// five-byte fixed header. A Maximum Packet Size of this or more restates the default.
const PROTOCOL_MAXIMUM_PACKET_SIZE: u32 = 268_435_455 + 5;

/// Cuts a CONNACK until it fits `maximum` bytes, dropping only what the client can do without
/// (broker/ERRORS.md, "When a CONNACK does not fit"), in this order: Reason String and User
/// Properties (5.0 MQTT-3.2.2-19, -20); Response Information, which the server may always
/// withhold; Topic Alias Maximum, whose absence means the client sends no aliases (the
/// connection is then held to none); Server Keep Alive, whose absence means both sides keep the
/// client's Keep Alive. Limits and declined features stay: without them the client would break
/// them. False when even the rest does not fit.
fn fit_connack(packet: &mut Packet, version: ProtocolVersion, maximum: u32) -> bool {
    let cuts: [fn(&mut Properties); 4] = [
        |properties| {
            properties.reason_string = None;
            properties.user_properties.clear();
        },
        |properties| properties.response_information = None,
        |properties| properties.topic_alias_maximum = None,
        |properties| properties.server_keep_alive_s = None,
    ];
    for cut in cuts {
        if fits(packet, version, maximum) {
            return true;
        }
        if let Packet::ConnAck(connack) = packet {
            cut(&mut connack.properties);
        }
    }
    fits(packet, version, maximum)
}
