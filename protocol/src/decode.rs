//! The strict decoder: framing, then every MUST about a packet's shape that can be checked without
//! session state. Each rejection is a [`DecodeError`] naming the rule and the reason code the spec
//! assigns to it, if any (see [`crate::error`] for how codes are chosen).
//!
//! What stays with the caller, because it needs state: the Topic Alias Maximum, the Receive
//! Maximum, packet ids in use, a second CONNECT, and the client-id rules.

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, DecodeErrorKind as Kind, Rule, Spec};
use crate::frame::{split_frame, Frame, FrameError};
use crate::packet::*;
use crate::property::{Properties, PropertyId, PropertyTarget, WireType};
use crate::reason::ReasonCode;
use crate::topic::{self, TopicError};
use crate::types::{Direction, PacketType, ProtocolVersion, QoS};
use crate::wire::{variable_byte_integer_len, ReadError, Reader, VariableByteInteger};

/// What the decoder needs to know about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeContext {
    /// `None` before CONNECT: then only a CONNECT is accepted, and the caller sets the version from
    /// the decoded [`Connect::protocol`].
    pub version: Option<ProtocolVersion>,
    /// Which way the packets being decoded travel.
    pub direction: Direction,
    /// The largest whole packet accepted, fixed header included.
    pub maximum_packet_size: u32,
}

impl DecodeContext {
    /// The largest packet the wire format can carry: a first byte, four remaining-length bytes and
    /// 268,435,455 bytes of body.
    pub const MAXIMUM_PACKET_SIZE_MAX: u32 = 1 + 4 + crate::wire::VARIABLE_BYTE_INTEGER_MAX;

    /// A server reading a new connection: version unknown, client to server, no size limit.
    pub fn server() -> DecodeContext {
        DecodeContext {
            version: None,
            direction: Direction::ClientToServer,
            maximum_packet_size: Self::MAXIMUM_PACKET_SIZE_MAX,
        }
    }

    /// A client reading what its server sends.
    pub fn client(version: ProtocolVersion) -> DecodeContext {
        DecodeContext {
            version: Some(version),
            direction: Direction::ServerToClient,
            maximum_packet_size: Self::MAXIMUM_PACKET_SIZE_MAX,
        }
    }

    pub fn with_version(mut self, version: ProtocolVersion) -> DecodeContext {
        self.version = Some(version);
        self
    }

    pub fn with_maximum_packet_size(mut self, maximum_packet_size: u32) -> DecodeContext {
        self.maximum_packet_size = maximum_packet_size;
        self
    }

    /// The rules in force: those of the known version, or 5.0's before the version is known.
    fn spec(&self) -> Spec {
        self.version.map_or(Spec::V5_0, ProtocolVersion::spec)
    }
}

/// Takes one packet off the front of `buf` and decodes it strictly. `Ok(None)`: more bytes are
/// needed. On a decode error the offending packet has been taken off `buf`; on a framing error
/// (remaining length too long, packet too large) `buf` is left as it was and cannot be read further.
pub fn decode(buf: &mut BytesMut, context: &DecodeContext) -> Result<Option<Packet>, DecodeError> {
    match split_frame(buf, context.maximum_packet_size) {
        Ok(None) => Ok(None),
        Ok(Some(frame)) => decode_owned_frame(frame, context).map(Some),
        Err(error) => Err(framing_error(error, context)),
    }
}

fn framing_error(error: FrameError, context: &DecodeContext) -> DecodeError {
    let spec = context.spec();
    match error {
        FrameError::RemainingLengthTooLong { raw } => DecodeError {
            kind: Kind::RemainingLengthTooLong,
            rule: match spec {
                Spec::V5_0 => Rule::section(spec, "1.5.5"),
                Spec::V3_1_1 => Rule::section(spec, "2.2.3"),
            },
            reason_code: malformed_code(spec),
            raw,
        },
        FrameError::PacketTooLarge { size, maximum, raw } => DecodeError {
            kind: Kind::PacketTooLarge { size, maximum },
            rule: match (spec, context.direction) {
                // The server's own limit is the one it announced in CONNACK; the client's, in CONNECT.
                (Spec::V5_0, Direction::ClientToServer) => Rule::section(spec, "3.2.2.3.6"),
                (Spec::V5_0, Direction::ServerToClient) => Rule::section(spec, "3.1.2.11.4"),
                // 3.1.1 has no Maximum Packet Size: the limit is the implementation's own.
                (Spec::V3_1_1, _) => Rule::section(spec, "2.2.3"),
            },
            reason_code: match spec {
                Spec::V5_0 => Some(ReasonCode::PACKET_TOO_LARGE),
                Spec::V3_1_1 => None,
            },
            raw,
        },
    }
}

fn malformed_code(spec: Spec) -> Option<ReasonCode> {
    match spec {
        Spec::V5_0 => Some(ReasonCode::MALFORMED_PACKET),
        Spec::V3_1_1 => None,
    }
}

fn protocol_error_code(spec: Spec) -> Option<ReasonCode> {
    match spec {
        Spec::V5_0 => Some(ReasonCode::PROTOCOL_ERROR),
        Spec::V3_1_1 => None,
    }
}

/// Decodes one framed packet strictly.
pub fn decode_frame(frame: &Frame, context: &DecodeContext) -> Result<Packet, DecodeError> {
    decode_owned_frame(frame.clone(), context)
}

/// [`decode_frame`] on a frame it may keep: the decoder reads the frame's bytes in place, and the
/// payload and topic are slices of them, so a packet costs no copy and no extra reference count.
fn decode_owned_frame(frame: Frame, context: &DecodeContext) -> Result<Packet, DecodeError> {
    let nibble = frame.packet_type_bits();
    let flags = frame.flags();
    let header_len = frame.header_len();
    let remaining_length_len = frame.remaining_length_len;
    let mut decoder = Decoder {
        spec: context.spec(),
        version: context.version.unwrap_or(ProtocolVersion::V5),
        direction: context.direction,
        section: "2.1",
        reader: Reader::at(frame.bytes, header_len),
    };
    let packet_type = match PacketType::from_nibble(nibble) {
        Some(PacketType::Auth) if context.version.is_some_and(|v| !v.is_v5()) => None,
        other => other,
    };
    let Some(packet_type) = packet_type else {
        let rule = match decoder.spec {
            Spec::V5_0 => Rule::section(Spec::V5_0, "2.1.2"),
            Spec::V3_1_1 => Rule::section(Spec::V3_1_1, "2.2.1"),
        };
        return Err(decoder.malformed(Kind::ReservedPacketType(nibble), rule));
    };
    decoder.section = packet_type.section();

    if context.version.is_none() && packet_type != PacketType::Connect {
        return Err(decoder.protocol_error(
            Kind::ExpectedConnect { packet_type },
            Rule::statement(Spec::V5_0, "MQTT-3.1.0-1", "3.1"),
        ));
    }
    if packet_type == PacketType::Connect {
        // The CONNECT fixes the version; its fixed header is checked under the rules of the version
        // in force (5.0's when unknown).
        decoder.check_fixed_header_flags(packet_type, flags)?;
        if context.direction != Direction::ClientToServer {
            return Err(decoder.wrong_direction(packet_type));
        }
        let connect = decoder.connect()?;
        decoder.check_remaining_length_minimal(remaining_length_len)?;
        return Ok(Packet::Connect(Box::new(connect)));
    }
    decoder.check_remaining_length_minimal(remaining_length_len)?;
    if !packet_type.allowed(decoder.version, decoder.direction) {
        return Err(decoder.wrong_direction(packet_type));
    }
    if packet_type != PacketType::Publish {
        decoder.check_fixed_header_flags(packet_type, flags)?;
    }
    let packet = match packet_type {
        PacketType::Connect => unreachable!("CONNECT is decoded above"),
        PacketType::ConnAck => Packet::ConnAck(decoder.connack()?),
        PacketType::Publish => Packet::Publish(decoder.publish(flags)?),
        PacketType::PubAck => Packet::PubAck(decoder.publish_ack(packet_type)?),
        PacketType::PubRec => Packet::PubRec(decoder.publish_ack(packet_type)?),
        PacketType::PubRel => Packet::PubRel(decoder.publish_ack(packet_type)?),
        PacketType::PubComp => Packet::PubComp(decoder.publish_ack(packet_type)?),
        PacketType::Subscribe => Packet::Subscribe(decoder.subscribe()?),
        PacketType::SubAck => Packet::SubAck(decoder.suback()?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decoder.unsubscribe()?),
        PacketType::UnsubAck => Packet::UnsubAck(decoder.unsuback()?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(decoder.disconnect()?),
        PacketType::Auth => Packet::Auth(decoder.auth()?),
    };
    decoder.check_end()?;
    Ok(packet)
}

struct Decoder {
    spec: Spec,
    version: ProtocolVersion,
    direction: Direction,
    /// The section of the packet being decoded, cited for shape errors without a statement id.
    section: &'static str,
    /// Over the whole packet (the raw bytes of an error), positioned past the fixed header.
    reader: Reader,
}

impl Decoder {
    fn is_v5(&self) -> bool {
        self.version.is_v5()
    }

    fn error(&self, kind: Kind, rule: Rule, reason_code: Option<ReasonCode>) -> DecodeError {
        DecodeError {
            kind,
            rule,
            reason_code,
            raw: self.reader.bytes().clone(),
        }
    }

    /// The packet cannot be parsed as the spec describes: 0x81 in 5.0.
    fn malformed(&self, kind: Kind, rule: Rule) -> DecodeError {
        self.error(kind, rule, malformed_code(self.spec))
    }

    /// Parsed, but the data is not allowed: 0x82 in 5.0.
    fn protocol_error(&self, kind: Kind, rule: Rule) -> DecodeError {
        self.error(kind, rule, protocol_error_code(self.spec))
    }

    /// A rule with the same statement id in both versions.
    fn both(&self, statement: &'static str, section: &'static str) -> Rule {
        Rule::statement(self.spec, statement, section)
    }

    /// A rule whose statement id differs between the versions.
    fn per_version(&self, v5: (&'static str, &'static str), v3: (&'static str, &'static str)) -> Rule {
        match self.spec {
            Spec::V5_0 => Rule::statement(Spec::V5_0, v5.0, v5.1),
            Spec::V3_1_1 => Rule::statement(Spec::V3_1_1, v3.0, v3.1),
        }
    }

    fn packet_rule(&self) -> Rule {
        if self.section == "3.1" {
            // CONNECT's shape is one MUST in both versions.
            return self.both("MQTT-3.1.4-1", "3.1.4");
        }
        Rule::section(self.spec, self.section)
    }

    fn read_error(&self, error: ReadError) -> DecodeError {
        match error {
            ReadError::Truncated => self.malformed(Kind::Truncated, self.packet_rule()),
            ReadError::InvalidUtf8 => self.malformed(
                Kind::InvalidUtf8,
                self.per_version(("MQTT-1.5.4-1", "1.5.4"), ("MQTT-1.5.3-1", "1.5.3")),
            ),
            ReadError::NullCharacter => self.malformed(
                Kind::NullCharacter,
                self.per_version(("MQTT-1.5.4-2", "1.5.4"), ("MQTT-1.5.3-2", "1.5.3")),
            ),
            ReadError::VariableByteIntegerTooLong => {
                self.malformed(Kind::VariableByteIntegerTooLong, Rule::section(self.spec, "1.5.5"))
            }
        }
    }

    fn wrong_direction(&self, packet_type: PacketType) -> DecodeError {
        let rule = match self.spec {
            Spec::V5_0 => Rule::section(Spec::V5_0, "2.1.2"),
            Spec::V3_1_1 => Rule::section(Spec::V3_1_1, "2.2.1"),
        };
        self.protocol_error(
            Kind::WrongDirection {
                packet_type,
                direction: self.direction,
            },
            rule,
        )
    }

    fn check_fixed_header_flags(&self, packet_type: PacketType, flags: u8) -> Result<(), DecodeError> {
        let required = packet_type.required_flags().unwrap_or(flags);
        if flags == required {
            return Ok(());
        }
        let rule = match packet_type {
            PacketType::PubRel => self.both("MQTT-3.6.1-1", "3.6.1"),
            PacketType::Subscribe => self.both("MQTT-3.8.1-1", "3.8.1"),
            PacketType::Unsubscribe => self.both("MQTT-3.10.1-1", "3.10.1"),
            PacketType::Disconnect => self.both("MQTT-3.14.1-1", "3.14.1"),
            PacketType::Auth => self.both("MQTT-3.15.1-1", "3.15.1"),
            _ => self.per_version(("MQTT-2.1.3-1", "2.1.3"), ("MQTT-2.2.2-1", "2.2.2")),
        };
        Err(self.malformed(Kind::InvalidFixedHeaderFlags { packet_type, flags }, rule))
    }

    /// The minimal-encoding rule for variable byte integers is 5.0's alone (MQTT-1.5.5-1).
    fn check_remaining_length_minimal(&self, remaining_length_len: usize) -> Result<(), DecodeError> {
        let body_len = self.reader.bytes().len() - 1 - remaining_length_len;
        if self.is_v5() && remaining_length_len != variable_byte_integer_len(body_len as u32) {
            return Err(self.malformed(Kind::VariableByteIntegerNotMinimal, self.both("MQTT-1.5.5-1", "1.5.5")));
        }
        Ok(())
    }

    fn check_end(&self) -> Result<(), DecodeError> {
        match self.reader.remaining() {
            0 => Ok(()),
            count => Err(self.malformed(Kind::TrailingBytes { count }, self.packet_rule())),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.reader.read_u8().map_err(|error| self.read_error(error))
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.reader.read_u16().map_err(|error| self.read_error(error))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.reader.read_u32().map_err(|error| self.read_error(error))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.reader.read_string().map_err(|error| self.read_error(error))
    }

    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        self.reader.read_binary().map_err(|error| self.read_error(error))
    }

    fn variable_byte_integer(&mut self) -> Result<u32, DecodeError> {
        let integer: VariableByteInteger = self
            .reader
            .read_variable_byte_integer()
            .map_err(|error| self.read_error(error))?;
        if self.is_v5() && !integer.is_minimal() {
            return Err(self.malformed(Kind::VariableByteIntegerNotMinimal, self.both("MQTT-1.5.5-1", "1.5.5")));
        }
        Ok(integer.value)
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        let packet_id = self.u16()?;
        if packet_id == 0 {
            let rule = self.per_version(("MQTT-2.2.1-3", "2.2.1"), ("MQTT-2.3.1-1", "2.3.1"));
            return Err(self.protocol_error(Kind::PacketIdZero, rule));
        }
        Ok(packet_id)
    }

    fn topic_name(&self, name: &str, statement: Option<&'static str>) -> Result<(), DecodeError> {
        topic::validate_topic_name(name).map_err(|error| {
            let rule = match (statement, &error) {
                (Some(statement), TopicError::WildcardInName) => Rule::statement(self.spec, statement, "3.3.2.1"),
                _ => Rule::statement(self.spec, self.topic_statement(&error), "4.7"),
            };
            self.protocol_error(Kind::InvalidTopicName(error), rule)
        })
    }

    /// 3.1.1 numbers the topic rules differently from 5.0 (its MQTT-4.7.1-1 is 5.0's MQTT-4.7.0-1).
    fn topic_statement(&self, error: &TopicError) -> &'static str {
        match self.spec {
            Spec::V5_0 => error.statement(),
            Spec::V3_1_1 => error.statement_v3_1_1().unwrap_or_else(|| error.statement()),
        }
    }

    fn topic_filter(&self, filter: &str) -> Result<(), DecodeError> {
        let result = if self.is_v5() {
            topic::validate_topic_filter_v5(filter)
        } else {
            topic::validate_topic_filter(filter)
        };
        result.map_err(|error| {
            let section = if error.statement().starts_with("MQTT-4.8") {
                "4.8.2"
            } else {
                "4.7"
            };
            let rule = Rule::statement(self.spec, self.topic_statement(&error), section);
            self.protocol_error(Kind::InvalidTopicFilter(error), rule)
        })
    }

    fn properties(&mut self, target: PropertyTarget) -> Result<Properties, DecodeError> {
        let len = self.variable_byte_integer()? as usize;
        if len > self.reader.remaining() {
            return Err(self.malformed(Kind::Truncated, Rule::section(self.spec, "2.2.2.1")));
        }
        let end = self.reader.position() + len;
        let mut properties = Properties::default();
        let mut seen: u64 = 0;
        while self.reader.position() < end {
            let id_value = self.variable_byte_integer()?;
            let structure = Rule::section(self.spec, "2.2.2.2");
            let Some(id) = u8::try_from(id_value).ok().and_then(PropertyId::from_u8) else {
                return Err(self.malformed(Kind::UnknownProperty(id_value.min(255) as u8), structure));
            };
            if !id.allowed_in(target) {
                let packet_type = match target {
                    PropertyTarget::Packet(packet_type) => packet_type,
                    PropertyTarget::Will => PacketType::Connect,
                };
                return Err(self.malformed(
                    Kind::PropertyNotAllowed {
                        property: id,
                        packet_type,
                    },
                    structure,
                ));
            }
            let bit = 1u64 << (id as u8);
            if seen & bit != 0 && !id.repeatable_in(target) {
                return Err(self.protocol_error(Kind::DuplicateProperty(id), property_rule(id, target)));
            }
            seen |= bit;
            self.property_value(id, target, &mut properties)?;
            if self.reader.position() > end {
                return Err(self.malformed(Kind::Truncated, Rule::section(self.spec, "2.2.2.1")));
            }
        }
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            let rule = Rule::section(self.spec, property_section(PropertyId::AuthenticationData, target));
            return Err(self.protocol_error(Kind::AuthenticationMethodMissing, rule));
        }
        Ok(properties)
    }

    fn property_value(
        &mut self,
        id: PropertyId,
        target: PropertyTarget,
        properties: &mut Properties,
    ) -> Result<(), DecodeError> {
        let invalid = |decoder: &Decoder, value: u32| {
            decoder.protocol_error(
                Kind::InvalidPropertyValue { property: id, value },
                property_rule(id, target),
            )
        };
        match id.wire_type() {
            WireType::Byte => {
                let value = self.u8()?;
                if id.is_boolean() && value > 1 {
                    return Err(invalid(self, u32::from(value)));
                }
                let flag = value == 1;
                match id {
                    PropertyId::PayloadFormatIndicator => properties.payload_format_indicator = Some(value),
                    PropertyId::RequestProblemInformation => properties.request_problem_information = Some(flag),
                    PropertyId::RequestResponseInformation => properties.request_response_information = Some(flag),
                    PropertyId::MaximumQoS => properties.maximum_qos = QoS::from_u8(value),
                    PropertyId::RetainAvailable => properties.retain_available = Some(flag),
                    PropertyId::WildcardSubscriptionAvailable => {
                        properties.wildcard_subscription_available = Some(flag)
                    }
                    PropertyId::SubscriptionIdentifierAvailable => {
                        properties.subscription_identifier_available = Some(flag)
                    }
                    PropertyId::SharedSubscriptionAvailable => properties.shared_subscription_available = Some(flag),
                    _ => unreachable!("{id:?} is not a Byte property"),
                }
            }
            WireType::TwoByteInteger => {
                let value = self.u16()?;
                if id == PropertyId::TopicAlias && value == 0 {
                    // 5.0 §3.3.4 assigns its own code to an alias of 0: Topic Alias invalid.
                    return Err(self.error(
                        Kind::TopicAliasZero,
                        Rule::statement(self.spec, "MQTT-3.3.2-8", "3.3.4"),
                        Some(ReasonCode::TOPIC_ALIAS_INVALID),
                    ));
                }
                if id.zero_is_protocol_error() && value == 0 {
                    return Err(invalid(self, 0));
                }
                match id {
                    PropertyId::ServerKeepAlive => properties.server_keep_alive_s = Some(value),
                    PropertyId::ReceiveMaximum => properties.receive_maximum = Some(value),
                    PropertyId::TopicAliasMaximum => properties.topic_alias_maximum = Some(value),
                    PropertyId::TopicAlias => properties.topic_alias = Some(value),
                    _ => unreachable!("{id:?} is not a Two Byte Integer property"),
                }
            }
            WireType::FourByteInteger => {
                let value = self.u32()?;
                if id.zero_is_protocol_error() && value == 0 {
                    return Err(invalid(self, 0));
                }
                match id {
                    PropertyId::MessageExpiryInterval => properties.message_expiry_interval_s = Some(value),
                    PropertyId::SessionExpiryInterval => properties.session_expiry_interval_s = Some(value),
                    PropertyId::WillDelayInterval => properties.will_delay_interval_s = Some(value),
                    PropertyId::MaximumPacketSize => properties.maximum_packet_size = Some(value),
                    _ => unreachable!("{id:?} is not a Four Byte Integer property"),
                }
            }
            WireType::VariableByteInteger => {
                let value = self.variable_byte_integer()?;
                if id.zero_is_protocol_error() && value == 0 {
                    return Err(invalid(self, 0));
                }
                debug_assert_eq!(id, PropertyId::SubscriptionIdentifier);
                properties.subscription_identifiers.push(value);
            }
            WireType::Utf8String => {
                let value = self.string()?;
                let slot = match id {
                    PropertyId::ContentType => &mut properties.content_type,
                    PropertyId::ResponseTopic => &mut properties.response_topic,
                    PropertyId::AssignedClientIdentifier => &mut properties.assigned_client_identifier,
                    PropertyId::AuthenticationMethod => &mut properties.authentication_method,
                    PropertyId::ResponseInformation => &mut properties.response_information,
                    PropertyId::ServerReference => &mut properties.server_reference,
                    PropertyId::ReasonString => &mut properties.reason_string,
                    _ => unreachable!("{id:?} is not a UTF-8 string property"),
                };
                *slot = Some(value);
            }
            WireType::BinaryData => {
                let value = self.binary()?;
                match id {
                    PropertyId::CorrelationData => properties.correlation_data = Some(value),
                    PropertyId::AuthenticationData => properties.authentication_data = Some(value),
                    _ => unreachable!("{id:?} is not a Binary Data property"),
                }
            }
            WireType::Utf8StringPair => {
                let key = self.string()?;
                let value = self.string()?;
                properties.user_properties.push((key, value));
            }
        }
        Ok(())
    }

    fn connect(&mut self) -> Result<Connect, DecodeError> {
        let name = self.reader.read_binary().map_err(|error| self.read_error(error))?;
        let level = self.u8()?;
        let version = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", _) => {
                // Both versions answer an unknown level with the code of this meaning: 3.1.1's
                // return code 0x01, 5.0's 0x84. Cite the version the client is older or newer than.
                let rule = if level < 5 {
                    Rule::statement(Spec::V3_1_1, "MQTT-3.1.2-2", "3.1.2.2")
                } else {
                    Rule::statement(Spec::V5_0, "MQTT-3.1.2-2", "3.1.2.2")
                };
                return Err(self.error(
                    Kind::UnsupportedProtocolLevel { level },
                    rule,
                    Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
                ));
            }
            _ => {
                return Err(self.error(
                    Kind::InvalidProtocolName { name: name.to_vec() },
                    Rule::statement(Spec::V5_0, "MQTT-3.1.2-1", "3.1.2.1"),
                    Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
                ));
            }
        };
        self.version = version;
        self.spec = version.spec();

        let flags = self.u8()?;
        if flags & 0x01 != 0 {
            return Err(self.malformed(Kind::ConnectReservedFlag, self.both("MQTT-3.1.2-3", "3.1.2.3")));
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos_bits = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let user_name_flag = flags & 0x80 != 0;
        if will_flag {
            if will_qos_bits == 3 {
                let rule = self.per_version(("MQTT-3.1.2-12", "3.1.2.6"), ("MQTT-3.1.2-14", "3.1.2.6"));
                return Err(self.malformed(Kind::InvalidWillQoS, rule));
            }
        } else if will_qos_bits != 0 {
            let rule = self.per_version(("MQTT-3.1.2-11", "3.1.2.6"), ("MQTT-3.1.2-13", "3.1.2.6"));
            return Err(self.protocol_error(Kind::WillFieldsWithoutWillFlag, rule));
        } else if will_retain {
            let rule = self.per_version(("MQTT-3.1.2-13", "3.1.2.7"), ("MQTT-3.1.2-15", "3.1.2.7"));
            return Err(self.protocol_error(Kind::WillFieldsWithoutWillFlag, rule));
        }
        if !self.is_v5() && password_flag && !user_name_flag {
            let rule = Rule::statement(Spec::V3_1_1, "MQTT-3.1.2-22", "3.1.2.9");
            return Err(self.protocol_error(Kind::PasswordWithoutUserName, rule));
        }
        let keep_alive_s = self.u16()?;
        let properties = if self.is_v5() {
            self.properties(PropertyTarget::Packet(PacketType::Connect))?
        } else {
            Properties::default()
        };
        let client_id = self.string()?;
        let will = if will_flag {
            let properties = if self.is_v5() {
                self.properties(PropertyTarget::Will)?
            } else {
                Properties::default()
            };
            self.response_topic(&properties)?;
            let topic = self.string()?;
            self.topic_name(&topic, None)?;
            let payload = self.binary()?;
            let qos = QoS::from_u8(will_qos_bits).unwrap_or_default();
            Some(Will {
                topic,
                payload,
                qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let user_name = if user_name_flag { Some(self.string()?) } else { None };
        let password = if password_flag { Some(self.binary()?) } else { None };
        self.check_end()?;
        Ok(Connect {
            protocol: version,
            clean_start,
            keep_alive_s,
            properties,
            client_id,
            will,
            user_name,
            password,
        })
    }

    /// A Response Topic is a topic name: no wildcards (5.0 MQTT-3.3.2-14).
    fn response_topic(&self, properties: &Properties) -> Result<(), DecodeError> {
        match &properties.response_topic {
            Some(topic) => topic::validate_topic_name(topic).map_err(|error| {
                self.protocol_error(
                    Kind::InvalidTopicName(error),
                    Rule::statement(self.spec, "MQTT-3.3.2-14", "3.3.2.3.5"),
                )
            }),
            None => Ok(()),
        }
    }

    fn connack(&mut self) -> Result<ConnAck, DecodeError> {
        let flags = self.u8()?;
        if flags & 0xFE != 0 {
            let rule = match self.spec {
                Spec::V5_0 => Rule::statement(Spec::V5_0, "MQTT-3.2.2-1", "3.2.2.1"),
                Spec::V3_1_1 => Rule::section(Spec::V3_1_1, "3.2.2.1"),
            };
            return Err(self.malformed(Kind::ConnAckReservedFlags { flags }, rule));
        }
        let session_present = flags & 0x01 != 0;
        let code = self.u8()?;
        let reason_code = if self.is_v5() {
            Some(ReasonCode(code)).filter(|reason| reason.is_valid_for(PacketType::ConnAck))
        } else {
            ReasonCode::from_v3_connack(code)
        };
        let Some(reason_code) = reason_code else {
            let rule = match self.spec {
                Spec::V5_0 => Rule::statement(Spec::V5_0, "MQTT-3.2.2-8", "3.2.2.2"),
                Spec::V3_1_1 => Rule::section(Spec::V3_1_1, "3.2.2.3"),
            };
            return Err(self.protocol_error(
                Kind::InvalidReasonCode {
                    packet_type: PacketType::ConnAck,
                    code,
                },
                rule,
            ));
        };
        if session_present && reason_code != ReasonCode::SUCCESS {
            let rule = self.per_version(("MQTT-3.2.2-6", "3.2.2.1.1"), ("MQTT-3.2.2-4", "3.2.2.2"));
            return Err(self.protocol_error(Kind::SessionPresentWithFailure, rule));
        }
        let properties = if self.is_v5() {
            self.properties(PropertyTarget::Packet(PacketType::ConnAck))?
        } else {
            Properties::default()
        };
        Ok(ConnAck {
            session_present,
            reason_code,
            properties,
        })
    }

    fn publish(&mut self, flags: u8) -> Result<Publish, DecodeError> {
        let dup = flags & 0x08 != 0;
        let retain = flags & 0x01 != 0;
        let Some(qos) = QoS::from_u8((flags >> 1) & 0x03) else {
            return Err(self.malformed(
                Kind::InvalidFixedHeaderFlags {
                    packet_type: PacketType::Publish,
                    flags,
                },
                self.both("MQTT-3.3.1-4", "3.3.1.2"),
            ));
        };
        if dup && qos == QoS::AtMostOnce {
            return Err(self.protocol_error(Kind::DupOnQoS0, self.both("MQTT-3.3.1-2", "3.3.1.1")));
        }
        // One pass over the topic's bytes checks UTF-8 and U+0000 and looks for wildcards; the
        // topic rules are walked again only for a name that holds one (or is empty).
        let (topic, wildcard) = self.reader.read_topic_name().map_err(|error| self.read_error(error))?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(self.packet_id()?)
        };
        let properties = if self.is_v5() {
            self.properties(PropertyTarget::Packet(PacketType::Publish))?
        } else {
            Properties::default()
        };
        if self.direction == Direction::ClientToServer && !properties.subscription_identifiers.is_empty() {
            return Err(self.protocol_error(
                Kind::PropertyNotAllowedFromSender {
                    property: PropertyId::SubscriptionIdentifier,
                    direction: self.direction,
                },
                self.both("MQTT-3.3.4-6", "3.3.4"),
            ));
        }
        if topic.is_empty() && self.is_v5() {
            if properties.topic_alias.is_none() {
                return Err(self.protocol_error(Kind::EmptyTopicWithoutAlias, Rule::section(self.spec, "3.3.2.1")));
            }
        } else if wildcard || topic.is_empty() {
            self.topic_name(&topic, Some("MQTT-3.3.2-2"))?;
        }
        self.response_topic(&properties)?;
        let payload = self.reader.take_rest();
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    }

    fn reason_code(&mut self, packet_type: PacketType, statement: &'static str) -> Result<ReasonCode, DecodeError> {
        let code = self.u8()?;
        let reason = ReasonCode(code);
        if reason.is_valid_for(packet_type) && reason.may_be_sent(packet_type, self.direction) {
            return Ok(reason);
        }
        let section = match packet_type {
            PacketType::Disconnect => "3.14.2.1",
            PacketType::Auth => "3.15.2.1",
            _ => self.section,
        };
        Err(self.protocol_error(
            Kind::InvalidReasonCode { packet_type, code },
            Rule::statement(self.spec, statement, section),
        ))
    }

    fn publish_ack(&mut self, packet_type: PacketType) -> Result<PublishAck, DecodeError> {
        let packet_id = self.packet_id()?;
        let mut ack = PublishAck::new(packet_id);
        if self.is_v5() && self.reader.remaining() > 0 {
            let statement = match packet_type {
                PacketType::PubAck => "MQTT-3.4.2-1",
                PacketType::PubRec => "MQTT-3.5.2-1",
                PacketType::PubRel => "MQTT-3.6.2-1",
                _ => "MQTT-3.7.2-1",
            };
            ack.reason_code = self.reason_code(packet_type, statement)?;
            // Remaining Length 3: a reason code and no Property Length (5.0 §3.4.2.2).
            if self.reader.remaining() > 0 {
                ack.properties = self.properties(PropertyTarget::Packet(packet_type))?;
            }
        }
        Ok(ack)
    }

    fn subscribe(&mut self) -> Result<Subscribe, DecodeError> {
        let packet_id = self.packet_id()?;
        let properties = if self.is_v5() {
            self.properties(PropertyTarget::Packet(PacketType::Subscribe))?
        } else {
            Properties::default()
        };
        if self.reader.remaining() == 0 {
            let rule = self.per_version(("MQTT-3.8.3-2", "3.8.3"), ("MQTT-3.8.3-3", "3.8.3"));
            return Err(self.error(Kind::NoTopicFilters, rule, protocol_error_code(self.spec)));
        }
        let mut subscriptions = Vec::new();
        while self.reader.remaining() > 0 {
            let filter = self.string()?;
            let options = self.subscription_options()?;
            self.topic_filter(&filter)?;
            if options.no_local && topic::parse_shared(&filter).is_some() && self.is_v5() {
                return Err(
                    self.protocol_error(Kind::NoLocalOnSharedSubscription, self.both("MQTT-3.8.3-4", "3.8.3.1"))
                );
            }
            subscriptions.push(Subscription { filter, options });
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
    }

    fn subscription_options(&mut self) -> Result<SubscriptionOptions, DecodeError> {
        let byte = self.u8()?;
        let reserved_mask = if self.is_v5() { 0xC0 } else { 0xFC };
        let reserved_rule = self.per_version(("MQTT-3.8.3-5", "3.8.3.1"), ("MQTT-3.8.3-4", "3.8.3.1"));
        if byte & reserved_mask != 0 {
            return Err(self.malformed(Kind::SubscriptionOptionsReserved { options: byte }, reserved_rule));
        }
        let Some(qos) = QoS::from_u8(byte & 0x03) else {
            // 5.0 calls a Maximum QoS of 3 a Protocol Error; 3.1.1 counts it among the malformed bits.
            return Err(match self.spec {
                Spec::V5_0 => self.protocol_error(Kind::SubscriptionQoS3, Rule::section(self.spec, "3.8.3.1")),
                Spec::V3_1_1 => self.malformed(Kind::SubscriptionQoS3, reserved_rule),
            });
        };
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(self.protocol_error(Kind::RetainHandling3, Rule::section(self.spec, "3.8.3.1"))),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn ack_reason_codes(&mut self, packet_type: PacketType) -> Result<Vec<ReasonCode>, DecodeError> {
        let (statement, section) = match packet_type {
            PacketType::SubAck => ("MQTT-3.9.3-2", "3.9.3"),
            _ => ("MQTT-3.11.3-2", "3.11.3"),
        };
        if self.reader.remaining() == 0 {
            return Err(self.protocol_error(Kind::NoReasonCodes, Rule::statement(self.spec, statement, section)));
        }
        let mut codes = Vec::with_capacity(self.reader.remaining());
        while self.reader.remaining() > 0 {
            let code = ReasonCode(self.u8()?);
            let valid = if self.is_v5() {
                code.is_valid_for(packet_type)
            } else {
                code.is_v3_suback()
            };
            if !valid {
                return Err(self.protocol_error(
                    Kind::InvalidReasonCode {
                        packet_type,
                        code: code.0,
                    },
                    Rule::statement(self.spec, statement, section),
                ));
            }
            codes.push(code);
        }
        Ok(codes)
    }

    fn suback(&mut self) -> Result<SubAck, DecodeError> {
        let packet_id = self.packet_id()?;
        let properties = if self.is_v5() {
            self.properties(PropertyTarget::Packet(PacketType::SubAck))?
        } else {
            Properties::default()
        };
        let reason_codes = self.ack_reason_codes(PacketType::SubAck)?;
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    fn unsubscribe(&mut self) -> Result<Unsubscribe, DecodeError> {
        let packet_id = self.packet_id()?;
        let properties = if self.is_v5() {
            self.properties(PropertyTarget::Packet(PacketType::Unsubscribe))?
        } else {
            Properties::default()
        };
        if self.reader.remaining() == 0 {
            let rule = self.both("MQTT-3.10.3-2", "3.10.3");
            return Err(self.error(Kind::NoTopicFilters, rule, protocol_error_code(self.spec)));
        }
        let mut filters = Vec::new();
        while self.reader.remaining() > 0 {
            let filter = self.string()?;
            self.topic_filter(&filter)?;
            filters.push(filter);
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    fn unsuback(&mut self) -> Result<UnsubAck, DecodeError> {
        let packet_id = self.packet_id()?;
        if !self.is_v5() {
            return Ok(UnsubAck {
                packet_id,
                properties: Properties::default(),
                reason_codes: Vec::new(),
            });
        }
        let properties = self.properties(PropertyTarget::Packet(PacketType::UnsubAck))?;
        let reason_codes = self.ack_reason_codes(PacketType::UnsubAck)?;
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    fn disconnect(&mut self) -> Result<Disconnect, DecodeError> {
        let mut disconnect = Disconnect::default();
        if !self.is_v5() || self.reader.remaining() == 0 {
            return Ok(disconnect);
        }
        disconnect.reason_code = self.reason_code(PacketType::Disconnect, "MQTT-3.14.2-1")?;
        if self.reader.remaining() > 0 {
            disconnect.properties = self.properties(PropertyTarget::Packet(PacketType::Disconnect))?;
        }
        if self.direction == Direction::ServerToClient && disconnect.properties.session_expiry_interval_s.is_some() {
            return Err(self.protocol_error(
                Kind::PropertyNotAllowedFromSender {
                    property: PropertyId::SessionExpiryInterval,
                    direction: self.direction,
                },
                self.both("MQTT-3.14.2-2", "3.14.2.2.2"),
            ));
        }
        Ok(disconnect)
    }

    fn auth(&mut self) -> Result<Auth, DecodeError> {
        let mut auth = Auth::default();
        if self.reader.remaining() == 0 {
            // The short form means Success, which only the server sends (5.0 §3.15.2.1).
            if self.direction == Direction::ClientToServer {
                let rule = Rule::statement(self.spec, "MQTT-3.15.2-1", "3.15.2.1");
                return Err(self.protocol_error(
                    Kind::InvalidReasonCode {
                        packet_type: PacketType::Auth,
                        code: 0,
                    },
                    rule,
                ));
            }
            return Ok(auth);
        }
        auth.reason_code = self.reason_code(PacketType::Auth, "MQTT-3.15.2-1")?;
        if self.reader.remaining() > 0 {
            auth.properties = self.properties(PropertyTarget::Packet(PacketType::Auth))?;
        }
        if auth.properties.authentication_method.is_none() {
            return Err(self.protocol_error(
                Kind::AuthenticationMethodMissing,
                Rule::section(self.spec, "3.15.2.2.2"),
            ));
        }
        Ok(auth)
    }
}

/// The section that defines a property in the packet it appears in, for value and repetition errors.
fn property_section(id: PropertyId, target: PropertyTarget) -> &'static str {
    use PacketType as P;
    use PropertyId as Id;
    use PropertyTarget::{Packet, Will};
    match (id, target) {
        (Id::PayloadFormatIndicator, Will) => "3.1.3.2.3",
        (Id::PayloadFormatIndicator, _) => "3.3.2.3.2",
        (Id::MessageExpiryInterval, Will) => "3.1.3.2.4",
        (Id::MessageExpiryInterval, _) => "3.3.2.3.3",
        (Id::ContentType, Will) => "3.1.3.2.5",
        (Id::ContentType, _) => "3.3.2.3.9",
        (Id::ResponseTopic, Will) => "3.1.3.2.6",
        (Id::ResponseTopic, _) => "3.3.2.3.5",
        (Id::CorrelationData, Will) => "3.1.3.2.7",
        (Id::CorrelationData, _) => "3.3.2.3.6",
        (Id::SubscriptionIdentifier, Packet(P::Subscribe)) => "3.8.2.1.2",
        (Id::SubscriptionIdentifier, _) => "3.3.2.3.8",
        (Id::SessionExpiryInterval, Packet(P::ConnAck)) => "3.2.2.3.2",
        (Id::SessionExpiryInterval, Packet(P::Disconnect)) => "3.14.2.2.2",
        (Id::SessionExpiryInterval, _) => "3.1.2.11.2",
        (Id::AssignedClientIdentifier, _) => "3.2.2.3.7",
        (Id::ServerKeepAlive, _) => "3.2.2.3.14",
        (Id::AuthenticationMethod, Packet(P::ConnAck)) => "3.2.2.3.17",
        (Id::AuthenticationMethod, Packet(P::Auth)) => "3.15.2.2.2",
        (Id::AuthenticationMethod, _) => "3.1.2.11.9",
        (Id::AuthenticationData, Packet(P::ConnAck)) => "3.2.2.3.18",
        (Id::AuthenticationData, Packet(P::Auth)) => "3.15.2.2.3",
        (Id::AuthenticationData, _) => "3.1.2.11.10",
        (Id::RequestProblemInformation, _) => "3.1.2.11.7",
        (Id::WillDelayInterval, _) => "3.1.3.2.2",
        (Id::RequestResponseInformation, _) => "3.1.2.11.6",
        (Id::ResponseInformation, _) => "3.2.2.3.15",
        (Id::ServerReference, Packet(P::Disconnect)) => "3.14.2.2.5",
        (Id::ServerReference, _) => "3.2.2.3.16",
        (Id::ReasonString, _) => "2.2.2.2",
        (Id::ReceiveMaximum, Packet(P::ConnAck)) => "3.2.2.3.3",
        (Id::ReceiveMaximum, _) => "3.1.2.11.3",
        (Id::TopicAliasMaximum, Packet(P::ConnAck)) => "3.2.2.3.8",
        (Id::TopicAliasMaximum, _) => "3.1.2.11.5",
        (Id::TopicAlias, _) => "3.3.2.3.4",
        (Id::MaximumQoS, _) => "3.2.2.3.4",
        (Id::RetainAvailable, _) => "3.2.2.3.5",
        (Id::UserProperty, _) => "2.2.2.2",
        (Id::MaximumPacketSize, Packet(P::ConnAck)) => "3.2.2.3.6",
        (Id::MaximumPacketSize, _) => "3.1.2.11.4",
        (Id::WildcardSubscriptionAvailable, _) => "3.2.2.3.11",
        (Id::SubscriptionIdentifierAvailable, _) => "3.2.2.3.12",
        (Id::SharedSubscriptionAvailable, _) => "3.2.2.3.13",
    }
}

fn property_rule(id: PropertyId, target: PropertyTarget) -> Rule {
    Rule::section(Spec::V5_0, property_section(id, target))
}
