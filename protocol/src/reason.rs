//! Reason codes: every MQTT 5.0 reason code with its name, the packets it may appear in and, for
//! DISCONNECT and AUTH, who may send it (5.0 §2.4 and the per-packet tables); and the mapping of
//! 3.1.1's CONNACK return codes onto the 5.0 codes that mean the same thing.
//!
//! One numeric value can have several names (0x00 is Success, Normal disconnection and Granted
//! QoS 0), so a reason code is a byte, not an enum; [`ReasonCode::name_in`] gives the name a packet
//! type uses.

use std::fmt;

use crate::types::{Direction, PacketType};

/// A 5.0 reason code. In 3.1.1 packets, the CONNACK return code and SUBACK return codes are mapped
/// onto the 5.0 code of the same meaning (see [`ReasonCode::from_v3_connack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ReasonCode(pub u8);

/// Who may send a DISCONNECT or AUTH reason code (5.0 §3.14.2.1, §3.15.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    Client,
    Server,
    Either,
}

const CONNACK: u16 = 1 << 2;
const PUBACK: u16 = 1 << 4;
const PUBREC: u16 = 1 << 5;
const PUBREL: u16 = 1 << 6;
const PUBCOMP: u16 = 1 << 7;
const SUBACK: u16 = 1 << 9;
const UNSUBACK: u16 = 1 << 11;
const DISCONNECT: u16 = 1 << 14;
const AUTH: u16 = 1 << 15;

/// (code, name, packets, who sends it in DISCONNECT/AUTH). 0x00's several names live in `name_in`.
const TABLE: &[(u8, &str, u16, Sender)] = &[
    (
        0x00,
        "Success",
        CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH,
        Sender::Either,
    ),
    (0x01, "Granted QoS 1", SUBACK, Sender::Either),
    (0x02, "Granted QoS 2", SUBACK, Sender::Either),
    (0x04, "Disconnect with Will Message", DISCONNECT, Sender::Client),
    (0x10, "No matching subscribers", PUBACK | PUBREC, Sender::Either),
    (0x11, "No subscription existed", UNSUBACK, Sender::Either),
    (0x18, "Continue authentication", AUTH, Sender::Either),
    (0x19, "Re-authenticate", AUTH, Sender::Client),
    (
        0x80,
        "Unspecified error",
        CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT,
        Sender::Either,
    ),
    (0x81, "Malformed Packet", CONNACK | DISCONNECT, Sender::Either),
    (0x82, "Protocol Error", CONNACK | DISCONNECT, Sender::Either),
    (
        0x83,
        "Implementation specific error",
        CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT,
        Sender::Either,
    ),
    (0x84, "Unsupported Protocol Version", CONNACK, Sender::Either),
    (0x85, "Client Identifier not valid", CONNACK, Sender::Either),
    (0x86, "Bad User Name or Password", CONNACK, Sender::Either),
    (
        0x87,
        "Not authorized",
        CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT,
        Sender::Server,
    ),
    (0x88, "Server unavailable", CONNACK, Sender::Either),
    (0x89, "Server busy", CONNACK | DISCONNECT, Sender::Server),
    (0x8A, "Banned", CONNACK, Sender::Either),
    (0x8B, "Server shutting down", DISCONNECT, Sender::Server),
    (0x8C, "Bad authentication method", CONNACK | DISCONNECT, Sender::Server),
    (0x8D, "Keep Alive timeout", DISCONNECT, Sender::Server),
    (0x8E, "Session taken over", DISCONNECT, Sender::Server),
    (
        0x8F,
        "Topic Filter invalid",
        SUBACK | UNSUBACK | DISCONNECT,
        Sender::Server,
    ),
    (
        0x90,
        "Topic Name invalid",
        CONNACK | PUBACK | PUBREC | DISCONNECT,
        Sender::Either,
    ),
    (
        0x91,
        "Packet Identifier in use",
        PUBACK | PUBREC | SUBACK | UNSUBACK,
        Sender::Either,
    ),
    (0x92, "Packet Identifier not found", PUBREL | PUBCOMP, Sender::Either),
    (0x93, "Receive Maximum exceeded", DISCONNECT, Sender::Either),
    (0x94, "Topic Alias invalid", DISCONNECT, Sender::Either),
    (0x95, "Packet too large", CONNACK | DISCONNECT, Sender::Either),
    (0x96, "Message rate too high", DISCONNECT, Sender::Either),
    (
        0x97,
        "Quota exceeded",
        CONNACK | PUBACK | PUBREC | SUBACK | DISCONNECT,
        Sender::Either,
    ),
    (0x98, "Administrative action", DISCONNECT, Sender::Server),
    (
        0x99,
        "Payload format invalid",
        CONNACK | PUBACK | PUBREC | DISCONNECT,
        Sender::Either,
    ),
    (0x9A, "Retain not supported", CONNACK | DISCONNECT, Sender::Server),
    (0x9B, "QoS not supported", CONNACK | DISCONNECT, Sender::Server),
    (0x9C, "Use another server", CONNACK | DISCONNECT, Sender::Server),
    (0x9D, "Server moved", CONNACK | DISCONNECT, Sender::Server),
    (
        0x9E,
        "Shared Subscriptions not supported",
        SUBACK | DISCONNECT,
        Sender::Server,
    ),
    (0x9F, "Connection rate exceeded", CONNACK | DISCONNECT, Sender::Server),
    (0xA0, "Maximum connect time", DISCONNECT, Sender::Server),
    (
        0xA1,
        "Subscription Identifiers not supported",
        SUBACK | DISCONNECT,
        Sender::Server,
    ),
    (
        0xA2,
        "Wildcard Subscriptions not supported",
        SUBACK | DISCONNECT,
        Sender::Server,
    ),
];

fn row(code: u8) -> Option<&'static (u8, &'static str, u16, Sender)> {
    TABLE.iter().find(|row| row.0 == code)
}

impl ReasonCode {
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    pub const DISCONNECT_WITH_WILL_MESSAGE: ReasonCode = ReasonCode(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    pub const CONTINUE_AUTHENTICATION: ReasonCode = ReasonCode(0x18);
    pub const RE_AUTHENTICATE: ReasonCode = ReasonCode(0x19);
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: ReasonCode = ReasonCode(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: ReasonCode = ReasonCode(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    pub const BANNED: ReasonCode = ReasonCode(0x8A);
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: ReasonCode = ReasonCode(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: ReasonCode = ReasonCode(0x96);
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    pub const ADMINISTRATIVE_ACTION: ReasonCode = ReasonCode(0x98);
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    pub const USE_ANOTHER_SERVER: ReasonCode = ReasonCode(0x9C);
    pub const SERVER_MOVED: ReasonCode = ReasonCode(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: ReasonCode = ReasonCode(0x9F);
    pub const MAXIMUM_CONNECT_TIME: ReasonCode = ReasonCode(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    /// Every reason code 5.0 defines, ascending.
    pub fn all() -> impl Iterator<Item = ReasonCode> {
        TABLE.iter().map(|row| ReasonCode(row.0))
    }

    /// The code's name, context free (0x00 is "Success"), or `None` for a value 5.0 does not define.
    pub fn name(self) -> Option<&'static str> {
        row(self.0).map(|row| row.1)
    }

    /// The code's name as the given packet type uses it.
    pub fn name_in(self, packet_type: PacketType) -> Option<&'static str> {
        match (self.0, packet_type) {
            (0x00, PacketType::Disconnect) => Some("Normal disconnection"),
            (0x00, PacketType::SubAck) => Some("Granted QoS 0"),
            _ if self.is_valid_for(packet_type) => self.name(),
            _ => None,
        }
    }

    /// Whether 5.0 allows this code in this packet type.
    pub fn is_valid_for(self, packet_type: PacketType) -> bool {
        row(self.0).is_some_and(|row| row.2 & (1 << packet_type as u16) != 0)
    }

    /// Whether this side may send this code in a DISCONNECT or AUTH (5.0 §3.14.2.1, §3.15.2.1).
    /// Always true for the other packet types, whose tables do not restrict the sender.
    pub fn may_be_sent(self, packet_type: PacketType, direction: Direction) -> bool {
        if !matches!(packet_type, PacketType::Disconnect | PacketType::Auth) {
            return true;
        }
        // The AUTH table lists 0x00 as the server's alone (the end of an exchange).
        if packet_type == PacketType::Auth && self.0 == 0x00 {
            return direction == Direction::ServerToClient;
        }
        match row(self.0).map(|row| row.3) {
            Some(Sender::Either) => true,
            Some(Sender::Client) => direction == Direction::ClientToServer,
            Some(Sender::Server) => direction == Direction::ServerToClient,
            None => false,
        }
    }

    /// 0x80 and above mean failure (5.0 §2.4).
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The 5.0 code that means what a 3.1.1 CONNACK return code means (3.1.1 §3.2.2.3), or `None`
    /// for the reserved values 6 to 255.
    pub fn from_v3_connack(return_code: u8) -> Option<ReasonCode> {
        Some(match return_code {
            0x00 => ReasonCode::SUCCESS,
            0x01 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            0x02 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            0x03 => ReasonCode::SERVER_UNAVAILABLE,
            0x04 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            0x05 => ReasonCode::NOT_AUTHORIZED,
            _ => return None,
        })
    }

    /// The 3.1.1 CONNACK return code for this code, or `None` where 3.1.1 has no equivalent.
    pub fn to_v3_connack(self) -> Option<u8> {
        (0u8..=5).find(|code| ReasonCode::from_v3_connack(*code) == Some(self))
    }

    /// Whether this is one of 3.1.1's SUBACK return codes: 0x00, 0x01, 0x02 or 0x80 (MQTT-3.9.3-2),
    /// which have the same values and meanings as the 5.0 codes.
    pub fn is_v3_suback(self) -> bool {
        matches!(self.0, 0x00 | 0x01 | 0x02 | 0x80)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "0x{:02X} {}", self.0, name),
            None => write!(f, "0x{:02X} (undefined)", self.0),
        }
    }
}
