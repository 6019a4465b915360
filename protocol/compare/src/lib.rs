//! Head-to-head benchmarks of mqtt-protocol's codec against rumqttc's v5 codec (`benches/decode.rs`).
//!
//! This crate exists only to put both codecs in one criterion run, on the same bytes, so that their
//! times are comparable (same machine, same moment, same input). It is excluded from the main
//! workspace (`exclude = ["fuzz", "protocol/compare"]` in the root `Cargo.toml`) and has its own
//! `[workspace]` table and `Cargo.lock`, so that rumqttc and its dependency tree never enter the
//! main build.
//!
//! What the two decoders check is not the same: ours is strict (UTF-8 and U+0000 in the topic,
//! wildcards in a topic name, DUP on QoS 0, minimal variable byte integers, trailing bytes, ...),
//! rumqttc's v5 reader keeps the topic as raw `Bytes` and checks little beyond framing, QoS and a
//! non-zero packet id. The numbers compare the cost of each decoder's own contract, not the same
//! work.

use bytes::{Bytes, BytesMut};
use mqtt_protocol::{encode, Packet, Properties, ProtocolVersion, Publish, QoS};

/// The topic of the benchmarked PUBLISH.
pub const TOPIC: &str = "site/42/device/1042/temperature";
/// Its packet identifier.
pub const PACKET_ID: u16 = 7;
/// Its payload length in bytes.
pub const PAYLOAD_LEN: usize = 64;

/// A 5.0 QoS 1 PUBLISH: [`TOPIC`], packet id [`PACKET_ID`], no properties, a [`PAYLOAD_LEN`]-byte
/// payload.
pub fn publish_qos1_64b() -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: TOPIC.into(),
        packet_id: Some(PACKET_ID),
        properties: Properties::default(),
        payload: Bytes::from(vec![0x5A; PAYLOAD_LEN]),
        ..Publish::default()
    })
}

/// [`publish_qos1_64b`] encoded by our encoder as 5.0: the input both decoders read.
pub fn publish_qos1_64b_bytes() -> Bytes {
    let mut buf = BytesMut::new();
    encode(&publish_qos1_64b(), ProtocolVersion::V5, &mut buf).expect("valid packet");
    buf.freeze()
}
