//! CONNECT: limits, client ids, takeover, Clean Start / Clean Session, session resume, the will,
//! keep alive, and the CONNACK that advertises what this broker supports.

use std::time::Duration;

use mqtt_protocol::{ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode};
use tokio::time::Instant;

use super::session::{ConnectionState, PendingWill, Session};
use super::{Broker, ConnectionId, Output, Timer};
#[cfg(feature = "mutations")]
use crate::mutations::Mutation;

impl Broker {
    pub(super) fn handle_connect(&mut self, now: Instant, connection: ConnectionId, connect: Connect) {
        let version = connect.protocol;
        let v5 = version.is_v5();
        if let Some(state) = self.connections.get_mut(&connection) {
            state.version = version;
        }
        if let Some(code) = self.refusal(now, &connect) {
            self.refuse(connection, version, code);
            return;
        }

        // Client ids: 5.0 assigns one for an empty id with any Clean Start (MQTT-3.1.3-6/-7);
        // 3.1.1 accepts an empty id only with Clean Session 1 (MQTT-3.1.3-7, -8: else 0x02).
        let mut assigned_client_identifier = None;
        let client_id = if connect.client_id.is_empty() {
            if !v5 && !connect.clean_start {
                self.refuse(connection, version, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
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
                self.send(old, Packet::Disconnect(disconnect));
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
            PendingWill {
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
                properties: will.properties,
                delay: Duration::from_secs(u64::from(delay_s)),
            }
        });
        session.outgoing.set_send_quota(client_receive_maximum);

        let keep_alive_s = self.config.server_keep_alive_s.unwrap_or(connect.keep_alive_s);
        if let Some(state) = self.connections.get_mut(&connection) {
            state.state = ConnectionState::Connected {
                client_id: client_id.clone(),
            };
            state.keep_alive = (keep_alive_s > 0).then(|| Duration::from_secs(u64::from(keep_alive_s)));
            state.maximum_packet_size = connect.properties.maximum_packet_size;
            state.request_problem_information = connect.properties.request_problem_information.unwrap_or(true);
            state.connect_session_expiry_s = if v5 { expiry_interval_s } else { 0 };
            if let Some(deadline) = state.keep_alive_deadline() {
                self.timers.insert((deadline, Timer::KeepAlive(connection)));
            }
        }

        let mut properties = Properties::default();
        if v5 {
            properties.assigned_client_identifier = assigned_client_identifier;
            properties.receive_maximum = Some(self.config.receive_maximum);
            properties.maximum_packet_size = Some(self.config.maximum_packet_size);
            properties.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            // Maximum QoS is sent only as 0 or 1 (5.0 §3.2.2.3.4); absent means 2.
            if self.config.maximum_qos != QoS::ExactlyOnce {
                properties.maximum_qos = Some(self.config.maximum_qos);
            }
            properties.retain_available = Some(self.config.retain_available);
            properties.wildcard_subscription_available = Some(self.config.wildcard_subscription_available);
            properties.subscription_identifier_available = Some(self.config.subscription_identifier_available);
            properties.shared_subscription_available = Some(self.config.shared_subscription_available);
            properties.server_keep_alive_s = self.config.server_keep_alive_s;
            if connect.properties.request_response_information == Some(true) {
                properties.response_information = Some(format!("response/{client_id}"));
            }
        }
        let connack = ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties,
        };
        self.send(connection, Packet::ConnAck(connack));
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
                self.send(connection, packet);
            }
        }
        self.pump(now, &client_id);
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
        if v5 && connect.properties.authentication_method.is_some() {
            // No enhanced authentication method is supported (5.0 §4.12).
            return Some(ReasonCode::BAD_AUTHENTICATION_METHOD);
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
    fn refuse(&mut self, connection: ConnectionId, version: ProtocolVersion, reason_code: ReasonCode) {
        let connack = ConnAck {
            session_present: false,
            reason_code,
            properties: Properties::default(),
        };
        self.outputs.push_back(Output::Send {
            connection,
            version,
            packet: Packet::ConnAck(connack),
        });
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
