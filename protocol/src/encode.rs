//! The encoder for typed packets. It refuses (with an [`EncodeError`]) to write a packet the strict
//! decoder would reject, so `decode(encode(p)) == p` holds for every packet it accepts; to write
//! what the spec forbids, on purpose, use [`crate::raw`].
//!
//! Short forms are chosen whenever they carry the same meaning: 5.0 acks with Success and no
//! properties have Remaining Length 2, with another code and no properties 3; DISCONNECT and AUTH
//! with Success and no properties have Remaining Length 0.

use std::fmt;

use bytes::BufMut;

use crate::packet::*;
use crate::property::{Properties, PropertyId, PropertyTarget};
use crate::reason::ReasonCode;
use crate::topic::{self, TopicError};
use crate::types::{Direction, PacketType, ProtocolVersion, QoS};
use crate::wire::{
    put_binary, put_string, put_variable_byte_integer, variable_byte_integer_bytes, variable_byte_integer_len,
    VARIABLE_BYTE_INTEGER_MAX,
};

/// Why a typed packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// AUTH does not exist in 3.1.1.
    PacketNotInVersion {
        packet_type: PacketType,
        version: ProtocolVersion,
    },
    /// 3.1.1 has no properties.
    PropertiesNotInVersion {
        packet_type: PacketType,
    },
    /// 3.1.1 has no reason codes here (or none of this meaning).
    ReasonCodeNotInVersion {
        packet_type: PacketType,
        code: ReasonCode,
    },
    PropertyNotAllowed {
        property: PropertyId,
        packet_type: PacketType,
    },
    PropertyRepeated {
        property: PropertyId,
    },
    InvalidPropertyValue {
        property: PropertyId,
    },
    ReasonCodeNotAllowed {
        packet_type: PacketType,
        code: ReasonCode,
    },
    /// A string or binary field over 65,535 bytes.
    FieldTooLong {
        len: usize,
    },
    NullCharacter,
    /// QoS 0 with a packet id, or QoS 1/2 without one.
    PacketIdMismatch {
        qos: QoS,
        packet_id: Option<u16>,
    },
    PacketIdZero,
    DupOnQoS0,
    InvalidTopicName(TopicError),
    InvalidTopicFilter(TopicError),
    EmptyTopicWithoutAlias,
    NoTopicFilters,
    NoReasonCodes,
    /// No Local, Retain As Published and Retain Handling do not exist in 3.1.1.
    SubscriptionOptionsNotInVersion,
    NoLocalOnSharedSubscription,
    PasswordWithoutUserName,
    AuthenticationMethodMissing,
    /// This packet type may not travel this way in this version.
    WrongDirection {
        packet_type: PacketType,
        direction: Direction,
    },
    /// 5.0: a property this side may not send.
    PropertyNotAllowedFromSender {
        property: PropertyId,
        direction: Direction,
    },
    /// The body exceeds what a Remaining Length can carry.
    PacketTooLarge {
        remaining_length: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode: {self:?}")
    }
}

impl std::error::Error for EncodeError {}

/// Appends the packet's bytes to `buf`. The version decides the format (properties, reason codes);
/// a CONNECT is written in the version of its own `protocol` field.
pub fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut impl BufMut) -> Result<(), EncodeError> {
    if let Packet::Publish(publish) = packet {
        // The hot path, on every message both ways: one dispatch instead of one per step.
        return encode_publish(publish, version, buf);
    }
    let version = connect_version(packet, version);
    validate(packet, version)?;
    let remaining_length = body_len(packet, version);
    if remaining_length > VARIABLE_BYTE_INTEGER_MAX as usize {
        return Err(EncodeError::PacketTooLarge { remaining_length });
    }
    buf.put_u8(first_byte(packet));
    put_variable_byte_integer(buf, remaining_length as u32);
    write_body(packet, version, buf);
    Ok(())
}

/// [`encode`] for a PUBLISH: the same checks and bytes, by the same functions.
#[inline]
fn encode_publish(publish: &Publish, version: ProtocolVersion, buf: &mut impl BufMut) -> Result<(), EncodeError> {
    validate_publish(publish, version)?;
    let remaining_length = publish_body_len(publish, version);
    if remaining_length > VARIABLE_BYTE_INTEGER_MAX as usize {
        return Err(EncodeError::PacketTooLarge { remaining_length });
    }
    // Everything before the payload in one write for the usual topic of up to 64 bytes: fixed
    // header (at most 5 bytes), topic (2 + 64), packet id (2), an empty property set (1).
    const HEAD_MAX: usize = 5 + 2 + 64 + 2 + 1;
    let mut head = [0u8; HEAD_MAX];
    let (remaining, remaining_len) = variable_byte_integer_bytes(remaining_length as u32);
    head[0] = publish_first_byte(publish);
    head[1..5].copy_from_slice(&remaining);
    let mut len = 1 + remaining_len;
    head[len..len + 2].copy_from_slice(&(publish.topic.len() as u16).to_be_bytes());
    len += 2;
    let topic = publish.topic.as_bytes();
    if topic.len() <= 64 {
        head[len..len + topic.len()].copy_from_slice(topic);
        len += topic.len();
    } else {
        buf.put_slice(&head[..len]);
        buf.put_slice(topic);
        len = 0;
    }
    if let Some(packet_id) = publish.packet_id {
        head[len..len + 2].copy_from_slice(&packet_id.to_be_bytes());
        len += 2;
    }
    let property_set = version.is_v5() && !publish.properties.is_empty();
    if version.is_v5() && !property_set {
        head[len] = 0; // Property Length 0 (written: `head` may hold bytes already sent)
        len += 1;
    }
    buf.put_slice(&head[..len]);
    if property_set {
        publish.properties.put(buf);
    }
    buf.put_slice(&publish.payload);
    Ok(())
}

/// The encoded size of the whole packet, fixed header included.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let version = connect_version(packet, version);
    validate(packet, version)?;
    let remaining_length = body_len(packet, version);
    if remaining_length > VARIABLE_BYTE_INTEGER_MAX as usize {
        return Err(EncodeError::PacketTooLarge { remaining_length });
    }
    Ok(1 + variable_byte_integer_len(remaining_length as u32) + remaining_length)
}

fn connect_version(packet: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    }
}

fn first_byte(packet: &Packet) -> u8 {
    let packet_type = packet.packet_type();
    match packet {
        Packet::Publish(publish) => publish_first_byte(publish),
        _ => (packet_type as u8) << 4 | packet_type.required_flags().unwrap_or(0),
    }
}

#[inline]
fn publish_first_byte(publish: &Publish) -> u8 {
    (PacketType::Publish as u8) << 4 | u8::from(publish.dup) << 3 | publish.qos.as_u8() << 1 | u8::from(publish.retain)
}

// ---- validation ----------------------------------------------------------------------------------

fn check_string(text: &str) -> Result<(), EncodeError> {
    if text.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong { len: text.len() });
    }
    if text.contains('\0') {
        return Err(EncodeError::NullCharacter);
    }
    Ok(())
}

fn check_binary(data: &[u8]) -> Result<(), EncodeError> {
    if data.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong { len: data.len() });
    }
    Ok(())
}

#[inline]
fn check_properties(
    properties: &Properties,
    target: PropertyTarget,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    // Most packets carry none: that answer without a call.
    if properties.is_empty() {
        return Ok(());
    }
    check_property_set(properties, target, version)
}

fn check_property_set(
    properties: &Properties,
    target: PropertyTarget,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    let packet_type = match target {
        PropertyTarget::Packet(packet_type) => packet_type,
        PropertyTarget::Will => PacketType::Connect,
    };
    match (properties.is_empty(), version.is_v5()) {
        (true, _) => return Ok(()),
        (false, false) => return Err(EncodeError::PropertiesNotInVersion { packet_type }),
        (false, true) => {}
    }
    let mut result = Ok(());
    let mut seen: u64 = 0;
    properties.for_each(|id, value| {
        if result.is_err() {
            return;
        }
        let bit = 1u64 << (id as u8);
        result = if !id.allowed_in(target) {
            Err(EncodeError::PropertyNotAllowed {
                property: id,
                packet_type,
            })
        } else if seen & bit != 0 && !id.repeatable_in(target) {
            Err(EncodeError::PropertyRepeated { property: id })
        } else {
            check_property_value(id, value)
        };
        seen |= bit;
    });
    result?;
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(EncodeError::AuthenticationMethodMissing);
    }
    if let Some(topic) = &properties.response_topic {
        topic::validate_topic_name(topic).map_err(EncodeError::InvalidTopicName)?;
    }
    Ok(())
}

fn check_property_value(id: PropertyId, value: crate::property::PropertyValue<'_>) -> Result<(), EncodeError> {
    use crate::property::PropertyValue as V;
    let invalid = Err(EncodeError::InvalidPropertyValue { property: id });
    match value {
        V::Byte(byte) if id.is_boolean() && byte > 1 => invalid,
        V::TwoByteInteger(0) | V::FourByteInteger(0) | V::VariableByteInteger(0)
            if id.zero_is_protocol_error() || id == PropertyId::TopicAlias =>
        {
            invalid
        }
        V::VariableByteInteger(integer) if integer > VARIABLE_BYTE_INTEGER_MAX => invalid,
        V::Utf8String(text) => check_string(text),
        V::BinaryData(data) => check_binary(data),
        V::Utf8StringPair(key, value) => check_string(key).and_then(|()| check_string(value)),
        _ => Ok(()),
    }
}

fn check_reason_code(packet_type: PacketType, code: ReasonCode, version: ProtocolVersion) -> Result<(), EncodeError> {
    let valid = match (version.is_v5(), packet_type) {
        (true, _) => code.is_valid_for(packet_type),
        (false, PacketType::ConnAck) => code.to_v3_connack().is_some(),
        (false, PacketType::SubAck) => code.is_v3_suback(),
        (false, _) => code == ReasonCode::SUCCESS,
    };
    match (valid, version.is_v5()) {
        (true, _) => Ok(()),
        (false, true) => Err(EncodeError::ReasonCodeNotAllowed { packet_type, code }),
        (false, false) => Err(EncodeError::ReasonCodeNotInVersion { packet_type, code }),
    }
}

fn check_filter(filter: &str, version: ProtocolVersion) -> Result<(), EncodeError> {
    check_string(filter)?;
    let result = if version.is_v5() {
        topic::validate_topic_filter_v5(filter)
    } else {
        topic::validate_topic_filter(filter)
    };
    result.map_err(EncodeError::InvalidTopicFilter)
}

/// Checks everything the strict decoder checks that does not depend on direction. Like [`encode`],
/// it judges a CONNECT by the version of its own `protocol` field.
pub fn validate(packet: &Packet, version: ProtocolVersion) -> Result<(), EncodeError> {
    let version = connect_version(packet, version);
    let packet_type = packet.packet_type();
    let target = PropertyTarget::Packet(packet_type);
    match packet {
        Packet::Connect(connect) => {
            check_properties(&connect.properties, target, version)?;
            check_string(&connect.client_id)?;
            if let Some(will) = &connect.will {
                check_properties(&will.properties, PropertyTarget::Will, version)?;
                check_string(&will.topic)?;
                topic::validate_topic_name(&will.topic).map_err(EncodeError::InvalidTopicName)?;
                check_binary(&will.payload)?;
            }
            if let Some(user_name) = &connect.user_name {
                check_string(user_name)?;
            }
            if let Some(password) = &connect.password {
                check_binary(password)?;
                if !version.is_v5() && connect.user_name.is_none() {
                    return Err(EncodeError::PasswordWithoutUserName);
                }
            }
        }
        Packet::ConnAck(connack) => {
            check_reason_code(packet_type, connack.reason_code, version)?;
            check_properties(&connack.properties, target, version)?;
            if connack.session_present && connack.reason_code != ReasonCode::SUCCESS {
                return Err(EncodeError::ReasonCodeNotAllowed {
                    packet_type,
                    code: connack.reason_code,
                });
            }
        }
        Packet::Publish(publish) => validate_publish(publish, version)?,
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            if ack.packet_id == 0 {
                return Err(EncodeError::PacketIdZero);
            }
            check_reason_code(packet_type, ack.reason_code, version)?;
            check_properties(&ack.properties, target, version)?;
        }
        Packet::Subscribe(subscribe) => {
            if subscribe.packet_id == 0 {
                return Err(EncodeError::PacketIdZero);
            }
            check_properties(&subscribe.properties, target, version)?;
            if subscribe.subscriptions.is_empty() {
                return Err(EncodeError::NoTopicFilters);
            }
            for subscription in &subscribe.subscriptions {
                check_filter(&subscription.filter, version)?;
                let options = subscription.options;
                if !version.is_v5() && options != SubscriptionOptions::with_qos(options.qos) {
                    return Err(EncodeError::SubscriptionOptionsNotInVersion);
                }
                if version.is_v5() && options.no_local && topic::parse_shared(&subscription.filter).is_some() {
                    return Err(EncodeError::NoLocalOnSharedSubscription);
                }
            }
        }
        Packet::SubAck(suback) => {
            if suback.packet_id == 0 {
                return Err(EncodeError::PacketIdZero);
            }
            check_properties(&suback.properties, target, version)?;
            if suback.reason_codes.is_empty() {
                return Err(EncodeError::NoReasonCodes);
            }
            for code in &suback.reason_codes {
                check_reason_code(packet_type, *code, version)?;
            }
        }
        Packet::Unsubscribe(unsubscribe) => {
            if unsubscribe.packet_id == 0 {
                return Err(EncodeError::PacketIdZero);
            }
            check_properties(&unsubscribe.properties, target, version)?;
            if unsubscribe.filters.is_empty() {
                return Err(EncodeError::NoTopicFilters);
            }
            for filter in &unsubscribe.filters {
                check_filter(filter, version)?;
            }
        }
        Packet::UnsubAck(unsuback) => {
            if unsuback.packet_id == 0 {
                return Err(EncodeError::PacketIdZero);
            }
            check_properties(&unsuback.properties, target, version)?;
            match (version.is_v5(), unsuback.reason_codes.is_empty()) {
                (true, true) => return Err(EncodeError::NoReasonCodes),
                (false, false) => {
                    return Err(EncodeError::ReasonCodeNotInVersion {
                        packet_type,
                        code: unsuback.reason_codes[0],
                    })
                }
                _ => {}
            }
            for code in &unsuback.reason_codes {
                check_reason_code(packet_type, *code, version)?;
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(disconnect) => {
            check_reason_code(packet_type, disconnect.reason_code, version)?;
            check_properties(&disconnect.properties, target, version)?;
        }
        Packet::Auth(auth) => {
            if !version.is_v5() {
                return Err(EncodeError::PacketNotInVersion { packet_type, version });
            }
            check_reason_code(packet_type, auth.reason_code, version)?;
            check_properties(&auth.properties, target, version)?;
            let short_form = auth.reason_code == ReasonCode::SUCCESS && auth.properties.is_empty();
            if !short_form && auth.properties.authentication_method.is_none() {
                return Err(EncodeError::AuthenticationMethodMissing);
            }
        }
    }
    Ok(())
}

#[inline]
fn validate_publish(publish: &Publish, version: ProtocolVersion) -> Result<(), EncodeError> {
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, None) => {}
        (QoS::AtMostOnce, Some(_)) | (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
            return Err(EncodeError::PacketIdMismatch {
                qos: publish.qos,
                packet_id: publish.packet_id,
            });
        }
        (_, Some(0)) => return Err(EncodeError::PacketIdZero),
        (_, Some(_)) => {}
    }
    if publish.dup && publish.qos == QoS::AtMostOnce {
        return Err(EncodeError::DupOnQoS0);
    }
    check_properties(
        &publish.properties,
        PropertyTarget::Packet(PacketType::Publish),
        version,
    )?;
    if publish.topic.is_empty() && version.is_v5() {
        if publish.properties.topic_alias.is_none() {
            return Err(EncodeError::EmptyTopicWithoutAlias);
        }
    } else {
        // Checks length and U+0000 too: no separate check_string pass on the hot path.
        topic::validate_topic_name(&publish.topic).map_err(EncodeError::InvalidTopicName)?;
    }
    Ok(())
}

/// Checks what depends on who sends the packet, which [`encode`] cannot know: the packet type's
/// direction (5.0 §2.1.2, 3.1.1 §2.2.1), the sender columns of DISCONNECT and AUTH reason codes,
/// no Subscription Identifier from a client (5.0 MQTT-3.3.4-6), no Session Expiry Interval in a
/// server's DISCONNECT (5.0 MQTT-3.14.2-2). A packet that passes this and [`validate`] is one the
/// strict decoder accepts in that direction.
pub fn validate_direction(packet: &Packet, version: ProtocolVersion, direction: Direction) -> Result<(), EncodeError> {
    let version = connect_version(packet, version);
    let packet_type = packet.packet_type();
    if !packet_type.allowed(version, direction) {
        return Err(EncodeError::WrongDirection { packet_type, direction });
    }
    match packet {
        Packet::Publish(publish)
            if direction == Direction::ClientToServer && !publish.properties.subscription_identifiers.is_empty() =>
        {
            Err(EncodeError::PropertyNotAllowedFromSender {
                property: PropertyId::SubscriptionIdentifier,
                direction,
            })
        }
        Packet::Disconnect(disconnect) if version.is_v5() => {
            if !disconnect.reason_code.may_be_sent(packet_type, direction) {
                return Err(EncodeError::ReasonCodeNotAllowed {
                    packet_type,
                    code: disconnect.reason_code,
                });
            }
            if direction == Direction::ServerToClient && disconnect.properties.session_expiry_interval_s.is_some() {
                return Err(EncodeError::PropertyNotAllowedFromSender {
                    property: PropertyId::SessionExpiryInterval,
                    direction,
                });
            }
            Ok(())
        }
        Packet::Auth(auth) if !auth.reason_code.may_be_sent(packet_type, direction) => {
            Err(EncodeError::ReasonCodeNotAllowed {
                packet_type,
                code: auth.reason_code,
            })
        }
        _ => Ok(()),
    }
}

// ---- lengths and bytes ---------------------------------------------------------------------------

fn properties_len(properties: &Properties, version: ProtocolVersion) -> usize {
    if version.is_v5() {
        properties.encoded_len_with_length()
    } else {
        0
    }
}

fn put_properties(properties: &Properties, version: ProtocolVersion, buf: &mut impl BufMut) {
    if version.is_v5() {
        properties.put(buf);
    }
}

/// How a 5.0 ack, DISCONNECT or AUTH is shortened: nothing after the packet id (or at all), a
/// reason code alone, or the full form.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    Omitted,
    ReasonOnly,
    Full,
}

fn tail(reason_code: ReasonCode, properties: &Properties, version: ProtocolVersion) -> Tail {
    match (
        version.is_v5(),
        reason_code == ReasonCode::SUCCESS,
        properties.is_empty(),
    ) {
        (false, _, _) | (true, true, true) => Tail::Omitted,
        (true, false, true) => Tail::ReasonOnly,
        (true, _, false) => Tail::Full,
    }
}

fn tail_len(tail: Tail, properties: &Properties) -> usize {
    match tail {
        Tail::Omitted => 0,
        Tail::ReasonOnly => 1,
        Tail::Full => 1 + properties.encoded_len_with_length(),
    }
}

fn put_tail(tail: Tail, reason_code: ReasonCode, properties: &Properties, buf: &mut impl BufMut) {
    if tail != Tail::Omitted {
        buf.put_u8(reason_code.0);
    }
    if tail == Tail::Full {
        properties.put(buf);
    }
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(connect) => {
            let mut len = 2 + version.protocol_name().len() + 1 + 1 + 2;
            len += properties_len(&connect.properties, version);
            len += 2 + connect.client_id.len();
            if let Some(will) = &connect.will {
                len += properties_len(&will.properties, version) + 2 + will.topic.len() + 2 + will.payload.len();
            }
            len += connect.user_name.as_ref().map_or(0, |name| 2 + name.len());
            len += connect.password.as_ref().map_or(0, |password| 2 + password.len());
            len
        }
        Packet::ConnAck(connack) => 2 + properties_len(&connack.properties, version),
        Packet::Publish(publish) => publish_body_len(publish, version),
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            2 + tail_len(tail(ack.reason_code, &ack.properties, version), &ack.properties)
        }
        Packet::Subscribe(subscribe) => {
            2 + properties_len(&subscribe.properties, version)
                + subscribe
                    .subscriptions
                    .iter()
                    .map(|subscription| 2 + subscription.filter.len() + 1)
                    .sum::<usize>()
        }
        Packet::SubAck(suback) => 2 + properties_len(&suback.properties, version) + suback.reason_codes.len(),
        Packet::Unsubscribe(unsubscribe) => {
            2 + properties_len(&unsubscribe.properties, version)
                + unsubscribe.filters.iter().map(|filter| 2 + filter.len()).sum::<usize>()
        }
        Packet::UnsubAck(unsuback) if v5 => {
            2 + properties_len(&unsuback.properties, version) + unsuback.reason_codes.len()
        }
        Packet::UnsubAck(_) => 2,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(disconnect) => tail_len(
            tail(disconnect.reason_code, &disconnect.properties, version),
            &disconnect.properties,
        ),
        Packet::Auth(auth) => match tail(auth.reason_code, &auth.properties, version) {
            Tail::Omitted => 0,
            // AUTH has no reason-only form: a non-Success AUTH carries its method.
            Tail::ReasonOnly | Tail::Full => 1 + auth.properties.encoded_len_with_length(),
        },
    }
}

#[inline]
fn publish_body_len(publish: &Publish, version: ProtocolVersion) -> usize {
    2 + publish.topic.len()
        + if publish.packet_id.is_some() { 2 } else { 0 }
        + properties_len(&publish.properties, version)
        + publish.payload.len()
}

fn write_body(packet: &Packet, version: ProtocolVersion, buf: &mut impl BufMut) {
    match packet {
        Packet::Connect(connect) => {
            put_string(buf, version.protocol_name());
            buf.put_u8(version.level());
            let mut flags = u8::from(connect.clean_start) << 1;
            if let Some(will) = &connect.will {
                flags |= 0x04 | will.qos.as_u8() << 3 | u8::from(will.retain) << 5;
            }
            flags |= u8::from(connect.password.is_some()) << 6 | u8::from(connect.user_name.is_some()) << 7;
            buf.put_u8(flags);
            buf.put_u16(connect.keep_alive_s);
            put_properties(&connect.properties, version, buf);
            put_string(buf, &connect.client_id);
            if let Some(will) = &connect.will {
                put_properties(&will.properties, version, buf);
                put_string(buf, &will.topic);
                put_binary(buf, &will.payload);
            }
            if let Some(user_name) = &connect.user_name {
                put_string(buf, user_name);
            }
            if let Some(password) = &connect.password {
                put_binary(buf, password);
            }
        }
        Packet::ConnAck(connack) => {
            buf.put_u8(u8::from(connack.session_present));
            let code = match version.is_v5() {
                true => connack.reason_code.0,
                false => connack.reason_code.to_v3_connack().unwrap_or(0x03),
            };
            buf.put_u8(code);
            put_properties(&connack.properties, version, buf);
        }
        Packet::Publish(_) => unreachable!("encode writes a PUBLISH with encode_publish"),
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            buf.put_u16(ack.packet_id);
            put_tail(
                tail(ack.reason_code, &ack.properties, version),
                ack.reason_code,
                &ack.properties,
                buf,
            );
        }
        Packet::Subscribe(subscribe) => {
            buf.put_u16(subscribe.packet_id);
            put_properties(&subscribe.properties, version, buf);
            for subscription in &subscribe.subscriptions {
                put_string(buf, &subscription.filter);
                buf.put_u8(subscription.options.to_byte());
            }
        }
        Packet::SubAck(suback) => {
            buf.put_u16(suback.packet_id);
            put_properties(&suback.properties, version, buf);
            for code in &suback.reason_codes {
                buf.put_u8(code.0);
            }
        }
        Packet::Unsubscribe(unsubscribe) => {
            buf.put_u16(unsubscribe.packet_id);
            put_properties(&unsubscribe.properties, version, buf);
            for filter in &unsubscribe.filters {
                put_string(buf, filter);
            }
        }
        Packet::UnsubAck(unsuback) => {
            buf.put_u16(unsuback.packet_id);
            if version.is_v5() {
                unsuback.properties.put(buf);
                for code in &unsuback.reason_codes {
                    buf.put_u8(code.0);
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(disconnect) => {
            let tail = tail(disconnect.reason_code, &disconnect.properties, version);
            put_tail(tail, disconnect.reason_code, &disconnect.properties, buf);
        }
        Packet::Auth(auth) => {
            if tail(auth.reason_code, &auth.properties, version) != Tail::Omitted {
                buf.put_u8(auth.reason_code.0);
                auth.properties.put(buf);
            }
        }
    }
}
