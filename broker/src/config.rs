//! The broker's limits and capabilities, configurable, with defaults. Each limit maps to the answer
//! the spec gives for exceeding it (see the error table in the crate documentation).

use std::time::Duration;

use mqtt_protocol::QoS;

/// Limits and capabilities. `Config::default()` is what `mqtt-harness broker` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Connections open at once; one more is refused (5.0 CONNACK 0x89 Server busy, 3.1.1
    /// CONNACK 0x03 Server unavailable).
    pub connections_max: usize,
    /// New connections per second; beyond it, 5.0 CONNACK 0x9F Connection rate exceeded (3.1.1
    /// 0x03). `None`: no limit.
    pub connection_rate_per_second_max: Option<u32>,
    /// The largest packet accepted, fixed header included; larger is 5.0 DISCONNECT 0x95 (3.1.1:
    /// close). Advertised as Maximum Packet Size.
    pub maximum_packet_size: u32,
    /// Unacknowledged QoS 1/2 PUBLISH packets a client may send us (our Receive Maximum); one more
    /// is DISCONNECT 0x93.
    pub receive_maximum: u16,
    /// Unacknowledged QoS 1/2 PUBLISH packets we send a client, below its own Receive Maximum.
    pub inflight_count_max: u16,
    /// Messages queued per session (offline, or beyond the window); beyond it new ones are dropped.
    pub queued_messages_max: usize,
    /// Subscriptions per session; one more is refused in its SUBACK (5.0 0x97, 3.1.1 0x80).
    pub subscriptions_per_client_max: usize,
    /// Topic levels in a name or filter; beyond it 5.0 0x90 / 0x8F (3.1.1: SUBACK 0x80, or close
    /// for a PUBLISH).
    pub topic_levels_max: usize,
    /// Retained messages stored; a new topic beyond it is not retained (5.0 PUBACK 0x97 for QoS 1).
    pub retained_messages_max: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Our Topic Alias Maximum: aliases a client may use towards us.
    pub topic_alias_maximum: u16,
    /// The highest QoS supported (advertised as Maximum QoS when below 2).
    pub maximum_qos: QoS,
    pub retain_available: bool,
    pub wildcard_subscription_available: bool,
    pub subscription_identifier_available: bool,
    pub shared_subscription_available: bool,
    /// Replaces every client's keep alive (5.0: sent as Server Keep Alive). `None`: the client's.
    pub server_keep_alive_s: Option<u16>,
    /// The longest keep alive allowed: a 5.0 client asking for more, or for 0 (none), is told this
    /// value as Server Keep Alive (5.0 §3.2.2.3.14). A 3.1.1 client cannot be told, so it keeps
    /// its own. `None`: no cap.
    pub keep_alive_max_s: Option<u16>,
    /// Packets waiting to be written to one connection; beyond it QoS 0 messages to it are dropped.
    pub outgoing_packets_max: usize,
    /// Planted bugs switched on (only with the `mutations` feature; default: none, a correct
    /// broker). For proving that scenarios and conformance cases catch real bugs; see
    /// [`crate::mutations`].
    #[cfg(feature = "mutations")]
    pub mutations: crate::mutations::Mutations,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connections_max: 100_000,
            connection_rate_per_second_max: None,
            maximum_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            inflight_count_max: 1024,
            queued_messages_max: 10_000,
            subscriptions_per_client_max: 1000,
            topic_levels_max: 64,
            retained_messages_max: 100_000,
            connect_timeout: Duration::from_secs(10),
            topic_alias_maximum: 64,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifier_available: true,
            shared_subscription_available: true,
            server_keep_alive_s: None,
            keep_alive_max_s: None,
            outgoing_packets_max: 10_000,
            #[cfg(feature = "mutations")]
            mutations: crate::mutations::Mutations::new(),
        }
    }
}
