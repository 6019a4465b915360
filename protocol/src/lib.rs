//! Sans-IO MQTT: the one codec every other crate of mqtt-harness shares.
//!
//! Everything here is pure and deterministic: no sockets, no tokio, no clock. Callers pass bytes in
//! and take bytes out; where time matters (the QoS flows) it is a parameter.
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`types`] | protocol versions (3.1, 3.1.1, 5.0), QoS, direction, packet types |
//! | [`reason`] | every 5.0 reason code with its name and the packets it may appear in; 3.1.1 return codes |
//! | [`property`] | every 5.0 property: identifier, wire type, the packets it may appear in; [`Properties`] |
//! | [`bytestr`] | [`ByteStr`], a UTF-8 string backed by `Bytes`: a decoded topic shares the packet's buffer |
//! | [`packet`] | the typed control packets of 3.1.1 and 5.0 (all 15, AUTH included) |
//! | [`frame`] | framing: splits a byte stream into packets (first byte, remaining length, body) without judging their content |
//! | [`decode`] | the strict decoder on top of framing: `decode(&mut buf, &DecodeContext) -> Result<Option<Packet>, DecodeError>` |
//! | [`error`] | [`DecodeError`]: which rule (version + statement id or section) was broken, the reason code the spec assigns, the raw bytes |
//! | [`encode`] | the encoder for typed packets, which refuses to write an invalid packet |
//! | [`raw`] | a builder that writes anything, including what the spec forbids, for probes and fuzzing |
//! | [`topic`] | topic name and filter validation, matching, `$share` parsing, a subscription tree |
//! | [`flow`] | the QoS 1/2 flows as sans-IO state machines: packet-id allocation, sender and receiver |
//! | [`wire`] | primitive readers and writers: integers, variable byte integers, strings, binary data |
//!
//! # Reading a stream
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_protocol::{decode, DecodeContext, Packet};
//!
//! let mut buf = BytesMut::from(&[0xC0u8, 0x00][..]); // PINGREQ
//! let context = DecodeContext::server().with_version(mqtt_protocol::ProtocolVersion::V5);
//! assert_eq!(decode(&mut buf, &context).unwrap(), Some(Packet::PingReq));
//! assert_eq!(decode(&mut buf, &context).unwrap(), None); // need more bytes
//! ```

pub mod bytestr;
pub mod decode;
pub mod encode;
pub mod error;
pub mod flow;
pub mod frame;
pub mod packet;
pub mod property;
pub mod raw;
pub mod reason;
pub mod topic;
pub mod types;
pub mod wire;

pub use bytestr::ByteStr;
pub use decode::{decode, decode_frame, DecodeContext};
pub use encode::{encode, encoded_len, validate, validate_direction, EncodeError};
pub use error::{DecodeError, DecodeErrorKind, Rule, Spec};
pub use frame::{split_frame, Frame};
pub use packet::*;
pub use property::{Properties, PropertyFields, PropertyId};
pub use reason::ReasonCode;
pub use types::{Direction, PacketType, ProtocolVersion, QoS};
