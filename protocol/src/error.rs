//! [`DecodeError`]: what the strict decoder rejected, which rule that breaks, and the 5.0 reason
//! code for it.
//!
//! A rule is cited by version and statement id where the spec numbers it (`5.0 MQTT-3.3.1-4`) and
//! by version and section where it does not (`5.0 §3.3.2.1`). In 5.0 every rejection has a code:
//! the spec's own definitions (5.0 §1.2) make each breach of a rule about a packet's content either
//! a Malformed Packet (0x81: it cannot be parsed as the spec lays it out: lengths, encodings,
//! reserved bits, a property where none may be) or a Protocol Error (0x82: it parses, but holds a
//! value or combination the protocol forbids: a wildcard in a topic name, packet identifier 0, a
//! packet type the sender may not send). Where the spec names a more specific code (0x94 Topic
//! Alias invalid, 0x95 Packet too large, 0x84 Unsupported Protocol Version), that one is used.
//! 3.1.1 has no reason codes: its errors close the connection, so their code is `None`, except an
//! unsupported protocol level, which 3.1.1 answers with CONNACK return code 0x01 (reported as 0x84,
//! the 5.0 code of that meaning).

use std::fmt;

use bytes::Bytes;

use crate::property::PropertyId;
use crate::reason::ReasonCode;
use crate::topic::TopicError;
use crate::types::{Direction, PacketType};

/// The specification a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Spec {
    V3_1_1,
    V5_0,
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Spec::V3_1_1 => "3.1.1",
            Spec::V5_0 => "5.0",
        })
    }
}

/// A rule of the spec: its version, its statement id where it has one, and its section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    pub spec: Spec,
    pub statement: Option<&'static str>,
    pub section: &'static str,
}

impl Rule {
    pub const fn statement(spec: Spec, statement: &'static str, section: &'static str) -> Rule {
        Rule {
            spec,
            statement: Some(statement),
            section,
        }
    }

    pub const fn section(spec: Spec, section: &'static str) -> Rule {
        Rule {
            spec,
            statement: None,
            section,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.statement {
            Some(statement) => write!(f, "{} {} (§{})", self.spec, statement, self.section),
            None => write!(f, "{} §{}", self.spec, self.section),
        }
    }
}

/// What was wrong, in terms a test can match without reading text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The remaining length has a continuation bit on its fourth byte.
    RemainingLengthTooLong,
    /// A variable byte integer (remaining length or inside the packet) longer than needed (5.0 only).
    VariableByteIntegerNotMinimal,
    /// A variable byte integer inside the packet with more than four bytes.
    VariableByteIntegerTooLong,
    /// The whole packet is larger than the receiver's maximum packet size.
    PacketTooLarge { size: usize, maximum: u32 },
    /// Packet type 0, or 15 in 3.1.1.
    ReservedPacketType(u8),
    /// The fixed-header flags are not the required ones (or PUBLISH has QoS 3).
    InvalidFixedHeaderFlags { packet_type: PacketType, flags: u8 },
    /// This packet type may not travel in this direction in this version.
    WrongDirection {
        packet_type: PacketType,
        direction: Direction,
    },
    /// Before the version is known, only CONNECT can be decoded.
    ExpectedConnect { packet_type: PacketType },
    /// The packet ended before a field it must contain.
    Truncated,
    /// Bytes left over after the last field.
    TrailingBytes { count: usize },
    /// A UTF-8 string that is not well-formed UTF-8 (surrogates and overlong forms included).
    InvalidUtf8,
    /// A UTF-8 string containing U+0000.
    NullCharacter,
    /// CONNECT's protocol name is neither "MQTT" nor "MQIsdp".
    InvalidProtocolName { name: Vec<u8> },
    /// CONNECT's protocol level is not one this codec speaks with that protocol name.
    UnsupportedProtocolLevel { level: u8 },
    /// CONNECT's reserved flag is 1.
    ConnectReservedFlag,
    /// Will QoS 3 in CONNECT.
    InvalidWillQoS,
    /// Will QoS or Will Retain set without the Will Flag.
    WillFieldsWithoutWillFlag,
    /// 3.1.1: the Password Flag without the User Name Flag.
    PasswordWithoutUserName,
    /// A packet identifier of 0.
    PacketIdZero,
    /// DUP set on a QoS 0 PUBLISH.
    DupOnQoS0,
    /// A topic name that breaks a topic rule (wildcards, empty, too long).
    InvalidTopicName(TopicError),
    /// A topic filter that breaks a filter rule.
    InvalidTopicFilter(TopicError),
    /// 5.0: an empty topic name with no Topic Alias.
    EmptyTopicWithoutAlias,
    /// 5.0: a Topic Alias of 0.
    TopicAliasZero,
    /// 5.0: a property identifier the spec does not define.
    UnknownProperty(u8),
    /// 5.0: a property not allowed in this packet (or in the will properties).
    PropertyNotAllowed {
        property: PropertyId,
        packet_type: PacketType,
    },
    /// 5.0: a property given twice that may appear only once.
    DuplicateProperty(PropertyId),
    /// 5.0: a property whose value the spec forbids (0 where 0 is not allowed, a boolean not 0/1).
    InvalidPropertyValue { property: PropertyId, value: u32 },
    /// 5.0: a property one side may not send (Subscription Identifier from a client in PUBLISH,
    /// Session Expiry Interval from a server in DISCONNECT).
    PropertyNotAllowedFromSender { property: PropertyId, direction: Direction },
    /// 5.0: Authentication Data without an Authentication Method, or AUTH without a method.
    AuthenticationMethodMissing,
    /// SUBSCRIBE or UNSUBSCRIBE without a single topic filter.
    NoTopicFilters,
    /// A SUBACK or UNSUBACK (5.0) without a single reason code.
    NoReasonCodes,
    /// Reserved bits of the subscription options set.
    SubscriptionOptionsReserved { options: u8 },
    /// Subscription options with Maximum QoS 3.
    SubscriptionQoS3,
    /// Subscription options with Retain Handling 3.
    RetainHandling3,
    /// No Local on a shared subscription.
    NoLocalOnSharedSubscription,
    /// A reason code not defined for this packet type (or not for this sender).
    InvalidReasonCode { packet_type: PacketType, code: u8 },
    /// CONNACK's reserved acknowledge-flag bits set.
    ConnAckReservedFlags { flags: u8 },
    /// CONNACK with Session Present and a failure code.
    SessionPresentWithFailure,
}

/// A packet the strict decoder refused: what, which rule, which reason code (always one in 5.0; in
/// 3.1.1 only for an unsupported protocol level), and the raw bytes of the packet (or of as much as
/// was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub rule: Rule,
    pub reason_code: Option<ReasonCode>,
    pub raw: Bytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} breaks {}", self.kind, self.rule)?;
        match self.reason_code {
            Some(code) => write!(f, "; reason code {code}"),
            None => write!(f, "; no reason code (3.1.1)"),
        }
    }
}

impl std::error::Error for DecodeError {}
