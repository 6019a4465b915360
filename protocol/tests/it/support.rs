//! Helpers shared by the codec tests.

use bytes::{Bytes, BytesMut};
use mqtt_protocol::{decode, encode, DecodeContext, DecodeError, Direction, Packet, ProtocolVersion, Rule};

pub fn context(version: Option<ProtocolVersion>, direction: Direction) -> DecodeContext {
    DecodeContext {
        version,
        direction,
        maximum_packet_size: DecodeContext::MAXIMUM_PACKET_SIZE_MAX,
    }
}

/// Decodes exactly one packet from `bytes`, asserting nothing is left over.
pub fn decode_one(bytes: &[u8], context: &DecodeContext) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, context)?.expect("a whole packet");
    assert!(buf.is_empty(), "{} bytes left after one packet", buf.len());
    Ok(packet)
}

pub fn encode_to_bytes(packet: &Packet, version: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap_or_else(|error| panic!("{packet:?} must encode: {error}"));
    buf.freeze()
}

/// "5.0 MQTT-3.3.1-4" or "5.0 §3.3.2.1": how a test names the rule it expects.
pub fn cites(rule: &Rule) -> String {
    match rule.statement {
        Some(statement) => format!("{} {}", rule.spec, statement),
        None => format!("{} §{}", rule.spec, rule.section),
    }
}
