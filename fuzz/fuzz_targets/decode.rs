//! Any bytes, any version (or none yet), either direction: framing and the strict decoder never
//! panic, every error carries the bytes it refused, and whatever decodes re-encodes to bytes that
//! decode to the same packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_protocol::{decode, encode, DecodeContext, Direction, Packet, ProtocolVersion};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    let version = match selector & 0x03 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    };
    let direction = if selector & 0x04 == 0 {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    };
    let maximum_packet_size = if selector & 0x08 == 0 {
        256
    } else {
        DecodeContext::MAXIMUM_PACKET_SIZE_MAX
    };
    let context = DecodeContext {
        version,
        direction,
        maximum_packet_size,
    };

    let mut buf = BytesMut::from(bytes);
    // Bounded: every round takes at least two bytes off the buffer, or stops.
    for _ in 0..bytes.len() {
        let before = buf.len();
        match decode(&mut buf, &context) {
            Ok(Some(packet)) => check_reencoding(packet, &context),
            Ok(None) => return,
            Err(error) => {
                assert!(!error.raw.is_empty(), "an error without the refused bytes: {error}");
                if buf.len() == before {
                    return; // a framing error: the stream cannot be read past it
                }
            }
        }
        assert!(buf.len() < before, "decode made no progress");
    }
});

fn check_reencoding(packet: Packet, context: &DecodeContext) {
    let version = match &packet {
        Packet::Connect(connect) => connect.protocol,
        _ => context.version.unwrap_or(ProtocolVersion::V5),
    };
    let mut encoded = BytesMut::new();
    encode(&packet, version, &mut encoded)
        .unwrap_or_else(|error| panic!("{packet:?} decoded but does not encode: {error}"));
    let context = DecodeContext {
        version: Some(version),
        maximum_packet_size: DecodeContext::MAXIMUM_PACKET_SIZE_MAX,
        ..*context
    };
    let again = decode(&mut encoded, &context)
        .expect("re-encoded bytes decode")
        .expect("a whole packet");
    assert_eq!(again, packet);
    assert!(encoded.is_empty());
}
