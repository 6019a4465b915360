//! A builder that writes anything: wrong flags and lengths, duplicate or unknown properties,
//! ill-formed UTF-8, non-minimal variable byte integers. For conformance probes and fuzzing; the
//! normal path is [`crate::encode`], which refuses invalid packets.
//!
//! ```
//! use mqtt_protocol::raw::RawPacket;
//! use mqtt_protocol::PacketType;
//!
//! // A PUBLISH with both QoS bits set (5.0 MQTT-3.3.1-4), built by hand.
//! let bytes = RawPacket::new(PacketType::Publish, 0b0110).string("a/b").u16(1).properties(|p| p).build();
//! assert_eq!(&bytes[..], &[0x36, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, 0x00]);
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::property::PropertyId;
use crate::types::PacketType;
use crate::wire::put_variable_byte_integer;

/// How the remaining length is written.
#[derive(Debug, Clone)]
enum RemainingLength {
    /// The body's real length, minimally encoded.
    Actual,
    /// A chosen value, minimally encoded.
    Value(u32),
    /// These exact bytes (non-minimal, over-long, anything).
    Bytes(Vec<u8>),
}

/// A packet written byte by byte.
#[derive(Debug, Clone)]
pub struct RawPacket {
    first_byte: u8,
    remaining_length: RemainingLength,
    body: BytesMut,
}

impl RawPacket {
    /// A packet of this type with these fixed-header flags (only the low four bits are used).
    pub fn new(packet_type: PacketType, flags: u8) -> RawPacket {
        RawPacket::with_first_byte((packet_type as u8) << 4 | (flags & 0x0F))
    }

    /// A packet with any first byte, reserved packet types included.
    pub fn with_first_byte(first_byte: u8) -> RawPacket {
        RawPacket {
            first_byte,
            remaining_length: RemainingLength::Actual,
            body: BytesMut::new(),
        }
    }

    /// Writes this remaining length instead of the body's real one.
    pub fn remaining_length(mut self, value: u32) -> RawPacket {
        self.remaining_length = RemainingLength::Value(value);
        self
    }

    /// Writes these bytes as the remaining length, verbatim.
    pub fn remaining_length_bytes(mut self, bytes: &[u8]) -> RawPacket {
        self.remaining_length = RemainingLength::Bytes(bytes.to_vec());
        self
    }

    pub fn u8(mut self, value: u8) -> RawPacket {
        self.body.put_u8(value);
        self
    }

    pub fn u16(mut self, value: u16) -> RawPacket {
        self.body.put_u16(value);
        self
    }

    pub fn u32(mut self, value: u32) -> RawPacket {
        self.body.put_u32(value);
        self
    }

    /// A minimally encoded variable byte integer.
    pub fn variable_byte_integer(mut self, value: u32) -> RawPacket {
        put_variable_byte_integer(&mut self.body, value);
        self
    }

    /// A length-prefixed string.
    pub fn string(self, value: &str) -> RawPacket {
        self.binary(value.as_bytes())
    }

    /// Length-prefixed bytes: binary data, or a "string" that is not valid UTF-8.
    pub fn binary(mut self, value: &[u8]) -> RawPacket {
        self.body.put_u16(value.len() as u16);
        self.body.put_slice(value);
        self
    }

    /// Bytes with no length prefix (a payload, or anything at all).
    pub fn bytes(mut self, value: &[u8]) -> RawPacket {
        self.body.put_slice(value);
        self
    }

    /// A Property Length and the properties written by `build`.
    pub fn properties(mut self, build: impl FnOnce(RawProperties) -> RawProperties) -> RawPacket {
        let properties = build(RawProperties::default());
        match properties.length {
            Some(length) => self.body.put_slice(&length),
            None => put_variable_byte_integer(&mut self.body, properties.body.len() as u32),
        }
        self.body.put_slice(&properties.body);
        self
    }

    pub fn build(self) -> Bytes {
        let mut out = BytesMut::with_capacity(5 + self.body.len());
        out.put_u8(self.first_byte);
        match self.remaining_length {
            RemainingLength::Actual => put_variable_byte_integer(&mut out, self.body.len() as u32),
            RemainingLength::Value(value) => put_variable_byte_integer(&mut out, value),
            RemainingLength::Bytes(bytes) => out.put_slice(&bytes),
        }
        out.put_slice(&self.body);
        out.freeze()
    }
}

/// Properties written one by one, in the order given, repeats and unknown identifiers allowed.
#[derive(Debug, Clone, Default)]
pub struct RawProperties {
    body: BytesMut,
    /// Overrides the Property Length with these exact bytes.
    length: Option<Vec<u8>>,
}

impl RawProperties {
    pub fn byte(mut self, id: PropertyId, value: u8) -> RawProperties {
        self.body.put_u8(id as u8);
        self.body.put_u8(value);
        self
    }

    pub fn two_byte(mut self, id: PropertyId, value: u16) -> RawProperties {
        self.body.put_u8(id as u8);
        self.body.put_u16(value);
        self
    }

    pub fn four_byte(mut self, id: PropertyId, value: u32) -> RawProperties {
        self.body.put_u8(id as u8);
        self.body.put_u32(value);
        self
    }

    pub fn variable_byte_integer(mut self, id: PropertyId, value: u32) -> RawProperties {
        self.body.put_u8(id as u8);
        put_variable_byte_integer(&mut self.body, value);
        self
    }

    pub fn string(self, id: PropertyId, value: &str) -> RawProperties {
        self.binary(id, value.as_bytes())
    }

    pub fn binary(mut self, id: PropertyId, value: &[u8]) -> RawProperties {
        self.body.put_u8(id as u8);
        self.body.put_u16(value.len() as u16);
        self.body.put_slice(value);
        self
    }

    pub fn pair(mut self, key: &str, value: &str) -> RawProperties {
        self.body.put_u8(PropertyId::UserProperty as u8);
        for text in [key, value] {
            self.body.put_u16(text.len() as u16);
            self.body.put_slice(text.as_bytes());
        }
        self
    }

    /// Anything: an unknown identifier, a truncated value.
    pub fn bytes(mut self, value: &[u8]) -> RawProperties {
        self.body.put_slice(value);
        self
    }

    /// Writes these exact bytes as the Property Length.
    pub fn length_bytes(mut self, bytes: &[u8]) -> RawProperties {
        self.length = Some(bytes.to_vec());
        self
    }
}
