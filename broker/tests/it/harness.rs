//! A harness for the sans-IO core: a clock made of offsets from one start instant, connections
//! opened by number, and the outputs the core produced, sorted per connection.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use mqtt_broker::{Broker, Config, ConnectionId, Output};
use mqtt_protocol::*;
use tokio::time::Instant;

pub struct Harness {
    pub broker: Broker,
    start: Instant,
    /// Milliseconds since `start`.
    pub now_ms: u64,
    next_connection: ConnectionId,
    /// What each connection has been sent and not yet taken by a test.
    pub sent: BTreeMap<ConnectionId, Vec<Packet>>,
    /// Connections the core asked to close.
    pub closed: Vec<ConnectionId>,
    /// The Maximum Packet Size each connection's CONNECT set: nothing sent may exceed it.
    maximums: BTreeMap<ConnectionId, u32>,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness {
            broker: Broker::new(config),
            start: Instant::now(),
            now_ms: 0,
            next_connection: 1,
            sent: BTreeMap::new(),
            closed: Vec::new(),
            maximums: BTreeMap::new(),
        }
    }

    pub fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.now_ms)
    }

    /// Moves the clock and fires every timer that is due.
    pub fn advance_ms(&mut self, milliseconds: u64) {
        self.now_ms += milliseconds;
        let now = self.now();
        self.broker.handle_timeout(now);
        self.collect();
    }

    /// The next deadline, in milliseconds since the start.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        self.broker
            .poll_timeout()
            .map(|at| at.duration_since(self.start).as_millis() as u64)
    }

    pub fn open(&mut self) -> ConnectionId {
        let connection = self.next_connection;
        self.next_connection += 1;
        let now = self.now();
        self.broker.handle_connection_opened(now, connection);
        connection
    }

    pub fn packet(&mut self, connection: ConnectionId, packet: Packet) {
        if let Packet::Connect(connect) = &packet {
            if let Some(maximum) = connect.properties.maximum_packet_size {
                self.maximums.insert(connection, maximum);
            }
        }
        let now = self.now();
        self.broker.handle_packet(now, connection, packet);
        self.collect();
    }

    pub fn network_lost(&mut self, connection: ConnectionId) {
        let now = self.now();
        self.broker.handle_connection_closed(now, connection);
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Send {
                    connection,
                    version,
                    packet,
                } => {
                    // Every packet the core sends must be valid for its version and a server.
                    validate(&packet, version).unwrap_or_else(|error| panic!("invalid {packet:?}: {error}"));
                    validate_direction(&packet, version, Direction::ServerToClient)
                        .unwrap_or_else(|error| panic!("{packet:?} may not go to a client: {error}"));
                    // And within the client's Maximum Packet Size (5.0 MQTT-3.1.2-24).
                    if let Some(&maximum) = self.maximums.get(&connection) {
                        let size = encoded_len(&packet, version).expect("encodable");
                        assert!(
                            size <= maximum as usize,
                            "{size} bytes past the client's {maximum}: {packet:?}"
                        );
                    }
                    self.sent.entry(connection).or_default().push(packet);
                }
                Output::Close { connection } => {
                    self.closed.push(connection);
                    // The I/O layer closes the socket and reports it.
                    let now = self.now();
                    self.broker.handle_connection_closed(now, connection);
                }
            }
        }
        // What must hold between any two inputs (the fuzz target checks the same after every step).
        if let Err(broken) = self.broker.check_invariants() {
            panic!("an invariant of the core broke: {broken}");
        }
    }

    /// Takes what `connection` was sent.
    pub fn take(&mut self, connection: ConnectionId) -> Vec<Packet> {
        self.sent.remove(&connection).unwrap_or_default()
    }

    pub fn is_closed(&self, connection: ConnectionId) -> bool {
        self.closed.contains(&connection)
    }

    /// Opens a connection and sends `connect`; returns the connection and its CONNACK.
    pub fn connect_with(&mut self, connect: Connect) -> (ConnectionId, ConnAck) {
        let connection = self.open();
        self.packet(connection, Packet::Connect(Box::new(connect)));
        let sent = self.take(connection);
        let Some(Packet::ConnAck(connack)) = sent.first().cloned() else {
            panic!("no CONNACK first: {sent:?}")
        };
        // Anything after the CONNACK (resent messages) stays for the test.
        if sent.len() > 1 {
            self.sent.insert(connection, sent[1..].to_vec());
        }
        (connection, connack)
    }

    /// A 5.0 client with clean start and the given client id.
    pub fn connect(&mut self, client_id: &str) -> ConnectionId {
        self.connect_with(connect(ProtocolVersion::V5, client_id)).0
    }

    pub fn subscribe(&mut self, connection: ConnectionId, filter: &str, options: SubscriptionOptions) -> SubAck {
        self.subscribe_with(
            connection,
            vec![Subscription {
                filter: filter.into(),
                options,
            }],
            Properties::default(),
        )
    }

    pub fn subscribe_with(
        &mut self,
        connection: ConnectionId,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> SubAck {
        self.packet(
            connection,
            Packet::Subscribe(Subscribe {
                packet_id: 100,
                properties,
                subscriptions,
            }),
        );
        let mut sent = self.take(connection);
        let Packet::SubAck(suback) = sent.remove(0) else {
            panic!("no SUBACK first: {sent:?}")
        };
        if !sent.is_empty() {
            self.sent.insert(connection, sent);
        }
        suback
    }

    pub fn publish(&mut self, connection: ConnectionId, topic: &str, payload: &str, qos: QoS, packet_id: u16) {
        let publish = Publish {
            qos,
            topic: topic.into(),
            packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
            payload: Bytes::from(payload.to_owned()),
            ..Publish::default()
        };
        self.packet(connection, Packet::Publish(publish));
    }

    /// A QoS 0 PUBLISH with RETAIN set.
    pub fn publish_retained(&mut self, connection: ConnectionId, topic: &str, payload: &str) {
        let publish = Publish {
            retain: true,
            topic: topic.into(),
            payload: Bytes::from(payload.to_owned()),
            ..Publish::default()
        };
        self.packet(connection, Packet::Publish(publish));
    }

    /// The PUBLISH packets `connection` was sent, taking everything it was sent.
    pub fn publishes(&mut self, connection: ConnectionId) -> Vec<Publish> {
        self.take(connection)
            .into_iter()
            .filter_map(|packet| match packet {
                Packet::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect()
    }
}

pub fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive_s: 0,
        client_id: client_id.into(),
        ..Connect::default()
    }
}

pub fn qos(value: u8) -> QoS {
    QoS::from_u8(value).expect("0, 1 or 2")
}

pub fn payloads(publishes: &[Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|publish| String::from_utf8_lossy(&publish.payload).into_owned())
        .collect()
}
