//! Arbitrary typed packets: every packet the encoder accepts (for a version and a sender) decodes
//! back to itself, and the encoded length is what `encoded_len` says.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_protocol::{
    decode, encode, encoded_len, validate, validate_direction, DecodeContext, Direction, Packet, ProtocolVersion,
};

fuzz_target!(|input: (ProtocolVersion, Direction, Packet)| {
    let (version, direction, packet) = input;
    if validate(&packet, version).is_err() || validate_direction(&packet, version, direction).is_err() {
        return;
    }
    let mut encoded = BytesMut::new();
    encode(&packet, version, &mut encoded).expect("validated packets encode");
    assert_eq!(encoded.len(), encoded_len(&packet, version).expect("validated"));
    let version = match &packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    };
    let context = DecodeContext {
        version: Some(version),
        direction,
        maximum_packet_size: DecodeContext::MAXIMUM_PACKET_SIZE_MAX,
    };
    let decoded = decode(&mut encoded, &context);
    assert_eq!(decoded, Ok(Some(packet)));
    assert!(encoded.is_empty());
});
