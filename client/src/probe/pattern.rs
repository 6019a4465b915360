//! [`Pattern`]: what an expected packet must look like, as plain data (scenarios read it from YAML),
//! and the field-by-field comparison that says how a received packet differs from it.
//!
//! Every field is optional; a field left `None` is not checked, so `Pattern::default()` matches any
//! packet. A field the received packet does not have (a topic on a CONNACK) is a difference.

use std::fmt;

use bytes::Bytes;
use mqtt_protocol::property::PropertyValue;
use mqtt_protocol::{Packet, PacketType, Properties, PropertyId, QoS, ReasonCode};

use super::trace::{describe_bytes, describe_reason_code};

/// What a received packet must look like. Build one with a constructor and builder methods:
///
/// ```
/// use mqtt_client::probe::{Pattern, PropertyExpectation};
/// use mqtt_protocol::{PropertyId, ReasonCode};
///
/// let pattern = Pattern::connack()
///     .reason_code(ReasonCode::SUCCESS)
///     .session_present(false)
///     .property(PropertyExpectation::equals(PropertyId::ServerKeepAlive, 5u16))
///     .property(PropertyExpectation::present(PropertyId::AssignedClientIdentifier))
///     .property(PropertyExpectation::absent(PropertyId::TopicAlias));
/// assert_eq!(pattern.to_string(), "CONNACK code=0x00 session_present=0 props=[ServerKeepAlive=5, AssignedClientIdentifier=present, TopicAlias=absent]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern {
    pub packet_type: Option<PacketType>,
    /// The fixed-header flags (the low nibble of the first byte).
    pub flags: Option<u8>,
    /// PUBLISH only.
    pub dup: Option<bool>,
    /// PUBLISH only.
    pub qos: Option<QoS>,
    /// PUBLISH only.
    pub retain: Option<bool>,
    /// PUBLISH only.
    pub topic: Option<String>,
    /// PUBLISH (QoS 1 and 2), the acks, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.
    pub packet_id: Option<u16>,
    /// PUBLISH only.
    pub payload: Option<Bytes>,
    /// CONNACK (3.1.1 return codes as their 5.0 equivalents), the PUBLISH acks, DISCONNECT, AUTH.
    pub reason_code: Option<ReasonCode>,
    /// CONNACK only.
    pub session_present: Option<bool>,
    /// SUBACK and UNSUBACK: the whole list, in order.
    pub reason_codes: Option<Vec<ReasonCode>>,
    /// Each is checked against the packet's properties (CONNECT: not the will's).
    pub properties: Vec<PropertyExpectation>,
}

/// One property check: "Server Keep Alive is 5", "Assigned Client Identifier is present",
/// "no Topic Alias".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyExpectation {
    pub id: PropertyId,
    /// With `present`: one occurrence must have this value (repeatable properties such as User
    /// Property or Subscription Identifier may have others). `None`: any value.
    pub value: Option<ExpectedValue>,
    /// `false`: the property must not appear at all (`value` is then ignored).
    pub present: bool,
}

impl PropertyExpectation {
    /// The property appears with this value.
    pub fn equals(id: PropertyId, value: impl Into<ExpectedValue>) -> PropertyExpectation {
        PropertyExpectation {
            id,
            value: Some(value.into()),
            present: true,
        }
    }

    /// The property appears, with any value.
    pub fn present(id: PropertyId) -> PropertyExpectation {
        PropertyExpectation {
            id,
            value: None,
            present: true,
        }
    }

    /// The property does not appear.
    pub fn absent(id: PropertyId) -> PropertyExpectation {
        PropertyExpectation {
            id,
            value: None,
            present: false,
        }
    }
}

/// A property value to compare with, owned. Byte, Two Byte, Four Byte and Variable Byte Integers
/// are all `Integer` (a boolean property is 0 or 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedValue {
    Integer(u32),
    String(String),
    Binary(Bytes),
    Pair(String, String),
}

impl ExpectedValue {
    /// The owned form of a value walked from [`Properties`].
    pub fn from_wire(value: PropertyValue<'_>) -> ExpectedValue {
        match value {
            PropertyValue::Byte(value) => ExpectedValue::Integer(u32::from(value)),
            PropertyValue::TwoByteInteger(value) => ExpectedValue::Integer(u32::from(value)),
            PropertyValue::FourByteInteger(value) | PropertyValue::VariableByteInteger(value) => {
                ExpectedValue::Integer(value)
            }
            PropertyValue::Utf8String(text) => ExpectedValue::String(text.to_owned()),
            PropertyValue::BinaryData(data) => ExpectedValue::Binary(Bytes::copy_from_slice(data)),
            PropertyValue::Utf8StringPair(key, value) => ExpectedValue::Pair(key.to_owned(), value.to_owned()),
        }
    }
}

impl fmt::Display for ExpectedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedValue::Integer(value) => write!(f, "{value}"),
            ExpectedValue::String(text) => write!(f, "{}", quote(text)),
            ExpectedValue::Binary(data) => f.write_str(&describe_bytes(data)),
            ExpectedValue::Pair(key, value) => write!(f, "({}, {})", quote(key), quote(value)),
        }
    }
}

impl From<bool> for ExpectedValue {
    fn from(value: bool) -> ExpectedValue {
        ExpectedValue::Integer(u32::from(value))
    }
}

impl From<u8> for ExpectedValue {
    fn from(value: u8) -> ExpectedValue {
        ExpectedValue::Integer(u32::from(value))
    }
}

impl From<u16> for ExpectedValue {
    fn from(value: u16) -> ExpectedValue {
        ExpectedValue::Integer(u32::from(value))
    }
}

impl From<u32> for ExpectedValue {
    fn from(value: u32) -> ExpectedValue {
        ExpectedValue::Integer(value)
    }
}

impl From<QoS> for ExpectedValue {
    fn from(value: QoS) -> ExpectedValue {
        ExpectedValue::Integer(u32::from(value.as_u8()))
    }
}

impl From<&str> for ExpectedValue {
    fn from(value: &str) -> ExpectedValue {
        ExpectedValue::String(value.to_owned())
    }
}

impl From<String> for ExpectedValue {
    fn from(value: String) -> ExpectedValue {
        ExpectedValue::String(value)
    }
}

impl From<Bytes> for ExpectedValue {
    fn from(value: Bytes) -> ExpectedValue {
        ExpectedValue::Binary(value)
    }
}

impl From<(&str, &str)> for ExpectedValue {
    fn from((key, value): (&str, &str)) -> ExpectedValue {
        ExpectedValue::Pair(key.to_owned(), value.to_owned())
    }
}

/// One field where a received packet differs from its pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The pattern's field (`"topic"`), or the spec's name of a property (`"Server Keep Alive"`).
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}, actual {}", self.field, self.expected, self.actual)
    }
}

impl Pattern {
    /// Any packet of this type.
    pub fn packet_type(packet_type: PacketType) -> Pattern {
        Pattern {
            packet_type: Some(packet_type),
            ..Pattern::default()
        }
    }

    /// Any packet at all (the same as `Pattern::default()`).
    pub fn any() -> Pattern {
        Pattern::default()
    }

    pub fn connect() -> Pattern {
        Pattern::packet_type(PacketType::Connect)
    }

    pub fn connack() -> Pattern {
        Pattern::packet_type(PacketType::ConnAck)
    }

    pub fn publish() -> Pattern {
        Pattern::packet_type(PacketType::Publish)
    }

    pub fn puback() -> Pattern {
        Pattern::packet_type(PacketType::PubAck)
    }

    pub fn pubrec() -> Pattern {
        Pattern::packet_type(PacketType::PubRec)
    }

    pub fn pubrel() -> Pattern {
        Pattern::packet_type(PacketType::PubRel)
    }

    pub fn pubcomp() -> Pattern {
        Pattern::packet_type(PacketType::PubComp)
    }

    pub fn subscribe() -> Pattern {
        Pattern::packet_type(PacketType::Subscribe)
    }

    pub fn suback() -> Pattern {
        Pattern::packet_type(PacketType::SubAck)
    }

    pub fn unsubscribe() -> Pattern {
        Pattern::packet_type(PacketType::Unsubscribe)
    }

    pub fn unsuback() -> Pattern {
        Pattern::packet_type(PacketType::UnsubAck)
    }

    pub fn pingreq() -> Pattern {
        Pattern::packet_type(PacketType::PingReq)
    }

    pub fn pingresp() -> Pattern {
        Pattern::packet_type(PacketType::PingResp)
    }

    pub fn disconnect() -> Pattern {
        Pattern::packet_type(PacketType::Disconnect)
    }

    pub fn auth() -> Pattern {
        Pattern::packet_type(PacketType::Auth)
    }

    pub fn flags(mut self, flags: u8) -> Pattern {
        self.flags = Some(flags);
        self
    }

    pub fn dup(mut self, dup: bool) -> Pattern {
        self.dup = Some(dup);
        self
    }

    pub fn qos(mut self, qos: QoS) -> Pattern {
        self.qos = Some(qos);
        self
    }

    pub fn retain(mut self, retain: bool) -> Pattern {
        self.retain = Some(retain);
        self
    }

    pub fn topic(mut self, topic: impl Into<String>) -> Pattern {
        self.topic = Some(topic.into());
        self
    }

    pub fn packet_id(mut self, packet_id: u16) -> Pattern {
        self.packet_id = Some(packet_id);
        self
    }

    pub fn payload(mut self, payload: impl AsRef<[u8]>) -> Pattern {
        self.payload = Some(Bytes::copy_from_slice(payload.as_ref()));
        self
    }

    pub fn reason_code(mut self, reason_code: ReasonCode) -> Pattern {
        self.reason_code = Some(reason_code);
        self
    }

    pub fn session_present(mut self, session_present: bool) -> Pattern {
        self.session_present = Some(session_present);
        self
    }

    pub fn reason_codes(mut self, reason_codes: impl IntoIterator<Item = ReasonCode>) -> Pattern {
        self.reason_codes = Some(reason_codes.into_iter().collect());
        self
    }

    pub fn property(mut self, expectation: PropertyExpectation) -> Pattern {
        self.properties.push(expectation);
        self
    }

    /// `Ok(())` when the packet has every field the pattern sets; otherwise every differing field.
    /// A packet of another type than the pattern's differs in its type alone: comparing the fields
    /// of a PUBLISH with those of a CONNACK would only add noise.
    pub fn matches(&self, packet: &Packet) -> Result<(), Vec<Difference>> {
        let fields = Fields::of(packet);
        if let Some(packet_type) = self.packet_type {
            if packet_type != fields.packet_type {
                return Err(vec![Difference {
                    field: "packet_type",
                    expected: packet_type.name().to_owned(),
                    actual: fields.packet_type.name().to_owned(),
                }]);
            }
        }
        let mut differences = Vec::new();
        let mut check = |field: &'static str, expected: Option<String>, actual: Option<String>| {
            let Some(expected) = expected else { return };
            match actual {
                Some(actual) if actual == expected => {}
                Some(actual) => differences.push(Difference {
                    field,
                    expected,
                    actual,
                }),
                None => differences.push(Difference {
                    field,
                    expected,
                    actual: format!("none ({} has no {field})", fields.packet_type.name()),
                }),
            }
        };
        check(
            "flags",
            self.flags.map(|flags| format!("0x{flags:X}")),
            Some(format!("0x{:X}", fields.flags)),
        );
        check("dup", self.dup.map(bit), fields.dup.map(bit));
        check(
            "qos",
            self.qos.map(|qos| qos.as_u8().to_string()),
            fields.qos.map(|qos| qos.as_u8().to_string()),
        );
        check("retain", self.retain.map(bit), fields.retain.map(bit));
        check("topic", self.topic.as_deref().map(quote), fields.topic.map(quote));
        check(
            "packet_id",
            self.packet_id.map(|id| id.to_string()),
            fields.packet_id.map(|id| id.to_string()),
        );
        check(
            "payload",
            self.payload.as_deref().map(describe_bytes),
            fields.payload.map(describe_bytes),
        );
        check(
            "reason_code",
            self.reason_code
                .map(|code| describe_reason_code(code, Some(fields.packet_type))),
            fields
                .reason_code
                .map(|code| describe_reason_code(code, Some(fields.packet_type))),
        );
        check(
            "session_present",
            self.session_present.map(bit),
            fields.session_present.map(bit),
        );
        check(
            "reason_codes",
            self.reason_codes.as_deref().map(describe_reason_codes),
            fields.reason_codes.map(describe_reason_codes),
        );
        for expectation in &self.properties {
            if let Some(difference) = expectation.check(fields.properties) {
                differences.push(difference);
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(differences)
        }
    }
}

impl PropertyExpectation {
    fn check(&self, properties: Option<&Properties>) -> Option<Difference> {
        let mut values = Vec::new();
        if let Some(properties) = properties {
            properties.for_each(|id, value| {
                if id == self.id {
                    values.push(ExpectedValue::from_wire(value));
                }
            });
        }
        let found = || match values.as_slice() {
            [] => "absent".to_owned(),
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        let (expected, ok) = match (&self.value, self.present) {
            (_, false) => ("absent".to_owned(), values.is_empty()),
            (None, true) => ("present".to_owned(), !values.is_empty()),
            (Some(value), true) => (value.to_string(), values.contains(value)),
        };
        (!ok).then(|| Difference {
            field: self.id.name(),
            expected,
            actual: found(),
        })
    }
}

impl fmt::Display for Pattern {
    /// The pattern in the trace's one-line style, only the fields it sets: `CONNACK code=0x00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        parts.push(self.packet_type.map_or("any packet", PacketType::name).to_owned());
        if let Some(flags) = self.flags {
            parts.push(format!("flags=0x{flags:X}"));
        }
        if let Some(qos) = self.qos {
            parts.push(format!("qos={}", qos.as_u8()));
        }
        if let Some(packet_id) = self.packet_id {
            parts.push(format!("id={packet_id}"));
        }
        if let Some(dup) = self.dup {
            parts.push(format!("dup={}", bit(dup)));
        }
        if let Some(retain) = self.retain {
            parts.push(format!("retain={}", bit(retain)));
        }
        if let Some(topic) = &self.topic {
            parts.push(format!("topic={}", quote(topic)));
        }
        if let Some(payload) = &self.payload {
            parts.push(format!("payload={}", describe_bytes(payload)));
        }
        if let Some(code) = self.reason_code {
            parts.push(format!("code={}", describe_reason_code(code, self.packet_type)));
        }
        if let Some(session_present) = self.session_present {
            parts.push(format!("session_present={}", bit(session_present)));
        }
        if let Some(codes) = &self.reason_codes {
            parts.push(format!("codes={}", describe_reason_codes(codes)));
        }
        if !self.properties.is_empty() {
            let properties: Vec<String> = self
                .properties
                .iter()
                .map(|expectation| match (&expectation.value, expectation.present) {
                    (_, false) => format!("{:?}=absent", expectation.id),
                    (None, true) => format!("{:?}=present", expectation.id),
                    (Some(value), true) => format!("{:?}={value}", expectation.id),
                })
                .collect();
            parts.push(format!("props=[{}]", properties.join(", ")));
        }
        f.write_str(&parts.join(" "))
    }
}

/// The fields of a packet a pattern can check, `None` where the packet type has no such field.
struct Fields<'a> {
    packet_type: PacketType,
    flags: u8,
    dup: Option<bool>,
    qos: Option<QoS>,
    retain: Option<bool>,
    topic: Option<&'a str>,
    packet_id: Option<u16>,
    payload: Option<&'a [u8]>,
    reason_code: Option<ReasonCode>,
    session_present: Option<bool>,
    reason_codes: Option<&'a [ReasonCode]>,
    properties: Option<&'a Properties>,
}

impl<'a> Fields<'a> {
    fn of(packet: &'a Packet) -> Fields<'a> {
        let packet_type = packet.packet_type();
        let mut fields = Fields {
            packet_type,
            flags: fixed_header_flags(packet),
            dup: None,
            qos: None,
            retain: None,
            topic: None,
            packet_id: None,
            payload: None,
            reason_code: None,
            session_present: None,
            reason_codes: None,
            properties: None,
        };
        match packet {
            Packet::Connect(connect) => fields.properties = Some(&connect.properties),
            Packet::ConnAck(connack) => {
                fields.session_present = Some(connack.session_present);
                fields.reason_code = Some(connack.reason_code);
                fields.properties = Some(&connack.properties);
            }
            Packet::Publish(publish) => {
                fields.dup = Some(publish.dup);
                fields.qos = Some(publish.qos);
                fields.retain = Some(publish.retain);
                fields.topic = Some(&publish.topic);
                fields.packet_id = publish.packet_id;
                fields.payload = Some(&publish.payload);
                fields.properties = Some(&publish.properties);
            }
            Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
                fields.packet_id = Some(ack.packet_id);
                fields.reason_code = Some(ack.reason_code);
                fields.properties = Some(&ack.properties);
            }
            Packet::Subscribe(subscribe) => {
                fields.packet_id = Some(subscribe.packet_id);
                fields.properties = Some(&subscribe.properties);
            }
            Packet::SubAck(suback) => {
                fields.packet_id = Some(suback.packet_id);
                fields.reason_codes = Some(&suback.reason_codes);
                fields.properties = Some(&suback.properties);
            }
            Packet::Unsubscribe(unsubscribe) => {
                fields.packet_id = Some(unsubscribe.packet_id);
                fields.properties = Some(&unsubscribe.properties);
            }
            Packet::UnsubAck(unsuback) => {
                fields.packet_id = Some(unsuback.packet_id);
                fields.reason_codes = Some(&unsuback.reason_codes);
                fields.properties = Some(&unsuback.properties);
            }
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(disconnect) => {
                fields.reason_code = Some(disconnect.reason_code);
                fields.properties = Some(&disconnect.properties);
            }
            Packet::Auth(auth) => {
                fields.reason_code = Some(auth.reason_code);
                fields.properties = Some(&auth.properties);
            }
        }
        fields
    }
}

/// The fixed-header flags a typed packet is written with: DUP, QoS and RETAIN for PUBLISH, the
/// required ones otherwise (a packet that decoded strictly had exactly these).
pub(crate) fn fixed_header_flags(packet: &Packet) -> u8 {
    match packet {
        Packet::Publish(publish) => u8::from(publish.dup) << 3 | publish.qos.as_u8() << 1 | u8::from(publish.retain),
        other => other.packet_type().required_flags().unwrap_or(0),
    }
}

fn bit(value: bool) -> String {
    u8::from(value).to_string()
}

/// A string in double quotes with Rust escapes, so control characters and quotes stay visible.
pub(crate) fn quote(text: &str) -> String {
    format!("{text:?}")
}

fn describe_reason_codes(codes: &[ReasonCode]) -> String {
    let codes: Vec<String> = codes.iter().map(|code| format!("0x{:02X}", code.0)).collect();
    format!("[{}]", codes.join(","))
}
