//! Enhanced authentication (5.0 §4.12): the SCRAM-SHA-256 exchange a CONNECT with that
//! Authentication Method starts, and re-authentication on a connected connection (§4.12.1).
//!
//! CONNECT (client-first) → AUTH 0x18 (server-first) → AUTH 0x18 (client-final) → CONNACK 0x00
//! with the server-final message, naming the method (MQTT-4.12.0-5); a wrong proof is CONNACK
//! 0x86, anything but the expected AUTH before the CONNACK is CONNACK 0x82, and the exchange must
//! end within the connect timeout. Re-authentication: AUTH 0x19 (client-first) → AUTH 0x18 →
//! AUTH 0x18 → AUTH 0x00; it must name the same method and the same user (a connection does not
//! change hands), else, or on a wrong proof, DISCONNECT 0x87 (MQTT-4.12.1-2). An AUTH from a
//! client whose CONNECT named no method is a Protocol Error (MQTT-4.12.0-7), and the broker
//! never sends AUTH to it (MQTT-4.12.0-6).

use bytes::Bytes;
use mqtt_client::scram::{self, ServerExchange};
use mqtt_protocol::{Auth, Connect, Packet, Properties, ReasonCode};
use tokio::time::Instant;

use super::session::ConnectionState;
use super::{Broker, ConnectionId};

impl Broker {
    /// Starts the exchange of a CONNECT whose method [`Broker::refusal`] accepted.
    pub(super) fn start_authentication(&mut self, now: Instant, connection: ConnectionId, connect: Connect) {
        let version = connect.protocol;
        let client_maximum = connect.properties.maximum_packet_size;
        let client_first = connect.properties.authentication_data.clone().unwrap_or_default();
        let Some((exchange, server_first)) = self.scram_start(&client_first) else {
            self.refuse(connection, version, client_maximum, ReasonCode::NOT_AUTHORIZED);
            return;
        };
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        let ConnectionState::AwaitingConnect { deadline } = state.state else {
            return;
        };
        state.maximum_packet_size = client_maximum;
        state.request_problem_information = connect.properties.request_problem_information.unwrap_or(true);
        state.state = ConnectionState::Authenticating {
            deadline,
            connect: Box::new(connect),
            exchange: Box::new(exchange),
        };
        self.send(
            now,
            connection,
            auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, server_first),
        );
    }

    /// A packet while the CONNECT's exchange runs: only the client-final AUTH is expected.
    pub(super) fn continue_authentication(&mut self, now: Instant, connection: ConnectionId, packet: Packet) {
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        let ConnectionState::Authenticating { connect, exchange, .. } =
            std::mem::replace(&mut state.state, ConnectionState::Closing)
        else {
            return;
        };
        // Back to waiting, so that `refuse` and `accept_connect` find the connection as they expect.
        state.state = ConnectionState::AwaitingConnect { deadline: now };
        let version = connect.protocol;
        let client_maximum = connect.properties.maximum_packet_size;
        let Packet::Auth(auth) = packet else {
            self.refuse(connection, version, client_maximum, ReasonCode::PROTOCOL_ERROR);
            return;
        };
        if auth.reason_code != ReasonCode::CONTINUE_AUTHENTICATION
            || auth.properties.authentication_method.as_deref() != Some(scram::METHOD)
        {
            self.refuse(connection, version, client_maximum, ReasonCode::PROTOCOL_ERROR);
            return;
        }
        match exchange.finish(auth.properties.authentication_data.as_deref().unwrap_or_default()) {
            Ok(server_final) => {
                let username = Some(exchange.username().to_string());
                self.accept_connect(now, connection, *connect, username, Some(Bytes::from(server_final)));
            }
            Err(error) => {
                tracing::debug!(connection, %error, "SCRAM authentication failed");
                self.refuse(
                    connection,
                    version,
                    client_maximum,
                    ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                );
            }
        }
    }

    /// An AUTH on a connected connection: re-authentication (5.0 §4.12.1).
    pub(super) fn handle_reauthentication(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        client_id: &str,
        auth: Auth,
    ) {
        let username = self
            .sessions
            .get(client_id)
            .and_then(|session| session.username.clone());
        let Some(state) = self.connections.get_mut(&connection) else {
            return;
        };
        let Some(connection_auth) = state.auth.as_deref_mut().filter(|auth| auth.method.is_some()) else {
            // 5.0 MQTT-4.12.0-7: no method in the CONNECT, no AUTH.
            self.disconnect_with(now, connection, client_id, Some(ReasonCode::PROTOCOL_ERROR));
            return;
        };
        if auth.properties.authentication_method != connection_auth.method {
            // 5.0 MQTT-4.12.1-1: the method of the CONNECT.
            self.disconnect_with(now, connection, client_id, Some(ReasonCode::PROTOCOL_ERROR));
            return;
        }
        let data = auth.properties.authentication_data.clone().unwrap_or_default();
        let in_progress = connection_auth.exchange.take();
        match (auth.reason_code, in_progress) {
            (ReasonCode::RE_AUTHENTICATE, None) => {
                let same_user = scram::client_first_username(&data).ok().as_deref() == username.as_deref();
                match self.scram_start(&data).filter(|_| same_user) {
                    Some((exchange, server_first)) => {
                        if let Some(connection_auth) = self
                            .connections
                            .get_mut(&connection)
                            .and_then(|state| state.auth.as_deref_mut())
                        {
                            connection_auth.exchange = Some(Box::new(exchange));
                        }
                        self.send(
                            now,
                            connection,
                            auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, server_first),
                        );
                    }
                    None => self.disconnect_with(now, connection, client_id, Some(ReasonCode::NOT_AUTHORIZED)),
                }
            }
            (ReasonCode::CONTINUE_AUTHENTICATION, Some(exchange)) => match exchange.finish(&data) {
                Ok(server_final) => self.send(now, connection, auth_packet(ReasonCode::SUCCESS, server_final)),
                Err(error) => {
                    tracing::debug!(connection, %error, "SCRAM re-authentication failed");
                    // 5.0 MQTT-4.12.1-2.
                    self.disconnect_with(now, connection, client_id, Some(ReasonCode::NOT_AUTHORIZED));
                }
            },
            // A step out of order: a Protocol Error.
            _ => self.disconnect_with(now, connection, client_id, Some(ReasonCode::PROTOCOL_ERROR)),
        }
    }

    /// The server-first message for a client-first one, on the user's credentials (made-up ones
    /// for a user without: the exchange then fails at the proof). `None`: malformed.
    fn scram_start(&mut self, client_first: &[u8]) -> Option<(ServerExchange, Vec<u8>)> {
        let username = scram::client_first_username(client_first).ok()?;
        let nonce = self.security.scram_nonce(self.scram_nonce_next);
        self.scram_nonce_next += 1;
        let security = self.security.clone();
        ServerExchange::start(
            client_first,
            security.scram_credentials(&username),
            || security.scram_decoy(&username),
            &nonce,
        )
        .ok()
    }
}

fn auth_packet(reason_code: ReasonCode, data: Vec<u8>) -> Packet {
    let mut properties = Properties::default();
    properties.authentication_method = Some(scram::METHOD.to_string());
    properties.authentication_data = Some(Bytes::from(data));
    Packet::Auth(Auth {
        reason_code,
        properties,
    })
}
