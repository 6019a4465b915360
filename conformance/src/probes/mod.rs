//! The probe cases: conformance cases in code, where a YAML scenario cannot say it (sizes and
//! limits the broker announced, malformed bytes, timing edges). One module per group of spec
//! chapters, each with its own list; [`cases`] joins them in a fixed order.
//!
//! | module | chapters |
//! |---|---|
//! | [`packets`] | 1 and 2 (data representation, packet format, properties, reason codes), 3.12 to 3.14 (PINGREQ, PINGRESP, DISCONNECT), 4.1, 4.2, 4.9, 4.13, 7 |
//! | [`connect`] | 3.1 (CONNECT) |
//! | [`connack`] | 3.2 (CONNACK), 3.8 to 3.11 (SUBSCRIBE to UNSUBACK), 3.15 and 4.12 (AUTH) |
//! | [`publish`] | 3.3 to 3.7 (PUBLISH and its acknowledgements) |
//! | [`delivery`] | 4.3 to 4.8 (QoS flows, redelivery, receipt, ordering, topics, shared subscriptions) |
//! | [`auth`] | 4.12 and 3.15 with a method the broker offers (`check --auth-method SCRAM-SHA-256`) |
//! | [`websocket`] | 6 (MQTT over WebSocket: subprotocol, frames), for `ws://` and `wss://` URLs |

use crate::catalog::ProbeCase;

pub mod auth;
pub mod connack;
pub mod connect;
pub mod delivery;
pub mod packets;
pub mod publish;
pub mod websocket;

/// Every probe case, chapter by chapter.
pub fn cases() -> impl Iterator<Item = &'static ProbeCase> {
    packets::CASES
        .iter()
        .chain(connect::CASES)
        .chain(connack::CASES)
        .chain(publish::CASES)
        .chain(delivery::CASES)
        .chain(auth::CASES)
        .chain(websocket::CASES)
}
