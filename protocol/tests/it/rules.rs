//! One test per rule the strict decoder enforces. Goal: each rejection names the right rule
//! (version + statement id, or version + section) and its reason code: in 5.0 always one (0x81
//! Malformed Packet, 0x82 Protocol Error or a more specific code), in 3.1.1 none. Method: build
//! the offending bytes with the raw builder (or by hand), decode them in the right context, and
//! compare kind, rule and code.

use bytes::BytesMut;
use mqtt_protocol::raw::RawPacket;
use mqtt_protocol::topic::TopicError;
use mqtt_protocol::DecodeErrorKind as Kind;
use mqtt_protocol::*;

use crate::support::{cites, context, decode_one};

use Direction::{ClientToServer as C2S, ServerToClient as S2C};
use PacketType as T;
use ProtocolVersion::{V3_1_1, V5};

const MALFORMED: Option<ReasonCode> = Some(ReasonCode::MALFORMED_PACKET);
const PROTOCOL_ERROR: Option<ReasonCode> = Some(ReasonCode::PROTOCOL_ERROR);
const NO_CODE: Option<ReasonCode> = None;

fn v5_server() -> DecodeContext {
    context(Some(V5), C2S)
}
fn v5_client() -> DecodeContext {
    context(Some(V5), S2C)
}
fn v3_server() -> DecodeContext {
    context(Some(V3_1_1), C2S)
}
fn v3_client() -> DecodeContext {
    context(Some(V3_1_1), S2C)
}
fn new_connection() -> DecodeContext {
    context(None, C2S)
}

/// A 5.0 PUBLISH QoS 0 on "a/b" with the given properties.
fn publish_v5(properties: impl FnOnce(raw::RawProperties) -> raw::RawProperties) -> Vec<u8> {
    RawPacket::new(T::Publish, 0)
        .string("a/b")
        .properties(properties)
        .bytes(b"x")
        .build()
        .to_vec()
}

/// A CONNECT with the given protocol name, level and flags, client id "c", nothing else.
fn connect(name: &str, level: u8, flags: u8) -> Vec<u8> {
    let packet = RawPacket::new(T::Connect, 0).string(name).u8(level).u8(flags).u16(60);
    let packet = if level == 5 { packet.properties(|p| p) } else { packet };
    packet.string("c").build().to_vec()
}

/// A 5.0 CONNECT whose properties are `properties`.
fn connect_v5(properties: impl FnOnce(raw::RawProperties) -> raw::RawProperties) -> Vec<u8> {
    RawPacket::new(T::Connect, 0)
        .string("MQTT")
        .u8(5)
        .u8(0x02)
        .u16(60)
        .properties(properties)
        .string("c")
        .build()
        .to_vec()
}

fn subscribe_v5(filter: &str, options: u8) -> Vec<u8> {
    RawPacket::new(T::Subscribe, 2)
        .u16(1)
        .properties(|p| p)
        .string(filter)
        .u8(options)
        .build()
        .to_vec()
}

fn subscribe_v3(filter: &str, options: u8) -> Vec<u8> {
    RawPacket::new(T::Subscribe, 2)
        .u16(1)
        .string(filter)
        .u8(options)
        .build()
        .to_vec()
}

macro_rules! rule {
    ($(#[$doc:meta])* $name:ident: $context:expr, $bytes:expr => $kind:pat, $cites:literal, $code:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            let bytes: Vec<u8> = $bytes.to_vec();
            let error = decode_one(&bytes, &$context).expect_err("the decoder must reject this packet");
            assert!(matches!(error.kind, $kind), "kind was {:?}", error.kind);
            assert_eq!(cites(&error.rule), $cites, "rule of {:?}", error.kind);
            assert_eq!(error.reason_code, $code, "reason code of {:?}", error.kind);
            assert!(bytes.starts_with(&error.raw), "raw bytes are the packet's own");
        }
    };
}

// ---- fixed header ----------------------------------------------------------------------------

rule!(reserved_flags_of_puback_are_malformed_in_5_0:
    v5_server(), [0x41, 0x02, 0x00, 0x01] => Kind::InvalidFixedHeaderFlags { .. }, "5.0 MQTT-2.1.3-1", MALFORMED);
rule!(reserved_flags_of_puback_close_the_connection_in_3_1_1:
    v3_server(), [0x41, 0x02, 0x00, 0x01] => Kind::InvalidFixedHeaderFlags { .. }, "3.1.1 MQTT-2.2.2-1", NO_CODE);
rule!(pubrel_flags_other_than_0010_are_malformed:
    v5_server(), [0x60, 0x02, 0x00, 0x01] => Kind::InvalidFixedHeaderFlags { .. }, "5.0 MQTT-3.6.1-1", MALFORMED);
rule!(subscribe_flags_other_than_0010_are_malformed:
    v5_server(), RawPacket::new(T::Subscribe, 0).u16(1).properties(|p| p).string("a").u8(0).build()
    => Kind::InvalidFixedHeaderFlags { .. }, "5.0 MQTT-3.8.1-1", MALFORMED);
rule!(unsubscribe_flags_other_than_0010_are_malformed:
    v3_server(), RawPacket::new(T::Unsubscribe, 0).u16(1).string("a").build()
    => Kind::InvalidFixedHeaderFlags { .. }, "3.1.1 MQTT-3.10.1-1", NO_CODE);
rule!(auth_flags_other_than_zero_are_malformed:
    v5_server(), [0xF1, 0x00] => Kind::InvalidFixedHeaderFlags { .. }, "5.0 MQTT-3.15.1-1", MALFORMED);
rule!(disconnect_flags_other_than_zero_are_malformed:
    v5_server(), [0xE1, 0x00] => Kind::InvalidFixedHeaderFlags { .. }, "5.0 MQTT-3.14.1-1", MALFORMED);
rule!(publish_with_both_qos_bits_set_is_malformed_in_5_0:
    v5_server(), RawPacket::new(T::Publish, 0b0110).string("a").u16(1).properties(|p| p).build()
    => Kind::InvalidFixedHeaderFlags { packet_type: T::Publish, .. }, "5.0 MQTT-3.3.1-4", MALFORMED);
rule!(publish_with_qos_3_closes_the_connection_in_3_1_1:
    v3_server(), RawPacket::new(T::Publish, 0b0110).string("a").u16(1).build()
    => Kind::InvalidFixedHeaderFlags { .. }, "3.1.1 MQTT-3.3.1-4", NO_CODE);
rule!(packet_type_0_is_reserved:
    v5_server(), [0x00, 0x00] => Kind::ReservedPacketType(0), "5.0 §2.1.2", MALFORMED);
rule!(packet_type_15_is_reserved_in_3_1_1:
    v3_server(), [0xF0, 0x00] => Kind::ReservedPacketType(15), "3.1.1 §2.2.1", NO_CODE);

// ---- lengths and integers --------------------------------------------------------------------

rule!(a_remaining_length_of_five_bytes_is_malformed:
    v5_server(), [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01] => Kind::RemainingLengthTooLong, "5.0 §1.5.5", MALFORMED);
rule!(a_non_minimal_remaining_length_is_malformed_in_5_0:
    v5_server(), [0xC0, 0x80, 0x00] => Kind::VariableByteIntegerNotMinimal, "5.0 MQTT-1.5.5-1", MALFORMED);
rule!(a_non_minimal_property_length_is_malformed_in_5_0:
    v5_server(), [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x80, 0x00]
    => Kind::VariableByteIntegerNotMinimal, "5.0 MQTT-1.5.5-1", MALFORMED);

#[test]
fn a_non_minimal_remaining_length_is_accepted_in_3_1_1() {
    // The minimal-encoding rule is 5.0's alone (5.0 MQTT-1.5.5-1 has no 3.1.1 counterpart).
    assert_eq!(decode_one(&[0xC0, 0x80, 0x00], &v3_server()).unwrap(), Packet::PingReq);
}

#[test]
fn a_packet_over_the_maximum_packet_size_is_refused_from_its_fixed_header_with_0x95() {
    // The body has not arrived: the limit must apply before the receiver buffers it.
    let context = v5_server().with_maximum_packet_size(100);
    let mut buf = BytesMut::from(&[0x30u8, 0xE8, 0x07][..]); // PUBLISH, remaining length 1000
    let error = decode(&mut buf, &context).unwrap_err();
    assert_eq!(
        error.kind,
        Kind::PacketTooLarge {
            size: 1003,
            maximum: 100
        }
    );
    assert_eq!(error.reason_code, Some(ReasonCode::PACKET_TOO_LARGE));
    assert_eq!(cites(&error.rule), "5.0 §3.2.2.3.6");
    let error = decode(&mut buf, &v3_server().with_maximum_packet_size(100)).unwrap_err();
    assert_eq!(error.reason_code, None, "3.1.1 has no code for it");
}

rule!(trailing_bytes_after_pingreq_are_malformed:
    v5_server(), [0xC0, 0x01, 0x00] => Kind::TrailingBytes { count: 1 }, "5.0 §3.12", MALFORMED);
rule!(a_truncated_connect_is_malformed:
    new_connection(), [0x10, 0x08, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02]
    => Kind::Truncated, "5.0 MQTT-3.1.4-1", MALFORMED);
rule!(a_property_length_past_the_end_of_the_packet_is_malformed:
    v5_server(), [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x09, b'x'] => Kind::Truncated, "5.0 §2.2.2.1", MALFORMED);

// ---- UTF-8 -----------------------------------------------------------------------------------

rule!(ill_formed_utf8_in_a_topic_is_malformed_in_5_0:
    v5_server(), RawPacket::new(T::Publish, 0).binary(&[b'a', 0xC3, 0x28]).properties(|p| p).build()
    => Kind::InvalidUtf8, "5.0 MQTT-1.5.4-1", MALFORMED);
rule!(ill_formed_utf8_closes_the_connection_in_3_1_1:
    v3_server(), RawPacket::new(T::Publish, 0).binary(&[0xFF]).build() => Kind::InvalidUtf8, "3.1.1 MQTT-1.5.3-1", NO_CODE);
rule!(an_encoded_surrogate_is_ill_formed_utf8:
    v5_server(), RawPacket::new(T::Publish, 0).binary(&[0xED, 0xA0, 0x80]).properties(|p| p).build()
    => Kind::InvalidUtf8, "5.0 MQTT-1.5.4-1", MALFORMED);
rule!(an_overlong_encoding_is_ill_formed_utf8:
    v5_server(), RawPacket::new(T::Publish, 0).binary(&[0xC0, 0xAF]).properties(|p| p).build()
    => Kind::InvalidUtf8, "5.0 MQTT-1.5.4-1", MALFORMED);
rule!(u_0000_in_a_string_is_malformed:
    v5_server(), RawPacket::new(T::Publish, 0).binary(b"a\0b").properties(|p| p).build()
    => Kind::NullCharacter, "5.0 MQTT-1.5.4-2", MALFORMED);
rule!(u_0000_in_a_client_id_closes_a_3_1_1_connection:
    new_connection(), RawPacket::new(T::Connect, 0).string("MQTT").u8(4).u8(2).u16(0).binary(b"\0").build()
    => Kind::NullCharacter, "3.1.1 MQTT-1.5.3-2", NO_CODE);

// ---- properties ------------------------------------------------------------------------------

rule!(a_property_not_allowed_in_the_packet_is_malformed:
    v5_server(), publish_v5(|p| p.four_byte(PropertyId::SessionExpiryInterval, 5))
    => Kind::PropertyNotAllowed { property: PropertyId::SessionExpiryInterval, packet_type: T::Publish }, "5.0 §2.2.2.2", MALFORMED);
rule!(a_property_not_allowed_in_will_properties_is_malformed:
    new_connection(), RawPacket::new(T::Connect, 0).string("MQTT").u8(5).u8(0x06).u16(60).properties(|p| p).string("c")
        .properties(|p| p.four_byte(PropertyId::SessionExpiryInterval, 1)).string("w").binary(b"x").build()
    => Kind::PropertyNotAllowed { property: PropertyId::SessionExpiryInterval, .. }, "5.0 §2.2.2.2", MALFORMED);
rule!(an_unknown_property_identifier_is_malformed:
    v5_server(), publish_v5(|p| p.bytes(&[0x7F, 0x00])) => Kind::UnknownProperty(0x7F), "5.0 §2.2.2.2", MALFORMED);
rule!(a_property_given_twice_is_a_protocol_error:
    v5_server(), publish_v5(|p| p.four_byte(PropertyId::MessageExpiryInterval, 1).four_byte(PropertyId::MessageExpiryInterval, 2))
    => Kind::DuplicateProperty(PropertyId::MessageExpiryInterval), "5.0 §3.3.2.3.3", PROTOCOL_ERROR);
rule!(a_subscription_identifier_given_twice_in_subscribe_is_a_protocol_error:
    v5_server(), RawPacket::new(T::Subscribe, 2).u16(1)
        .properties(|p| p.variable_byte_integer(PropertyId::SubscriptionIdentifier, 1).variable_byte_integer(PropertyId::SubscriptionIdentifier, 2))
        .string("a").u8(0).build()
    => Kind::DuplicateProperty(PropertyId::SubscriptionIdentifier), "5.0 §3.8.2.1.2", PROTOCOL_ERROR);
rule!(receive_maximum_0_is_a_protocol_error:
    new_connection(), connect_v5(|p| p.two_byte(PropertyId::ReceiveMaximum, 0))
    => Kind::InvalidPropertyValue { property: PropertyId::ReceiveMaximum, value: 0 }, "5.0 §3.1.2.11.3", PROTOCOL_ERROR);
rule!(maximum_packet_size_0_is_a_protocol_error:
    new_connection(), connect_v5(|p| p.four_byte(PropertyId::MaximumPacketSize, 0))
    => Kind::InvalidPropertyValue { property: PropertyId::MaximumPacketSize, value: 0 }, "5.0 §3.1.2.11.4", PROTOCOL_ERROR);
rule!(a_boolean_property_other_than_0_or_1_is_a_protocol_error:
    new_connection(), connect_v5(|p| p.byte(PropertyId::RequestProblemInformation, 2))
    => Kind::InvalidPropertyValue { property: PropertyId::RequestProblemInformation, value: 2 }, "5.0 §3.1.2.11.7", PROTOCOL_ERROR);
rule!(maximum_qos_2_in_connack_is_a_protocol_error:
    v5_client(), RawPacket::new(T::ConnAck, 0).u8(0).u8(0).properties(|p| p.byte(PropertyId::MaximumQoS, 2)).build()
    => Kind::InvalidPropertyValue { property: PropertyId::MaximumQoS, value: 2 }, "5.0 §3.2.2.3.4", PROTOCOL_ERROR);
rule!(subscription_identifier_0_is_a_protocol_error:
    v5_server(), RawPacket::new(T::Subscribe, 2).u16(1).properties(|p| p.variable_byte_integer(PropertyId::SubscriptionIdentifier, 0)).string("a").u8(0).build()
    => Kind::InvalidPropertyValue { property: PropertyId::SubscriptionIdentifier, value: 0 }, "5.0 §3.8.2.1.2", PROTOCOL_ERROR);
rule!(
    /// The issue text lists 0x82 here, but 5.0 §3.3.4 names the more specific 0x94 Topic Alias
    /// invalid for an alias of 0, and §4.13.1 says to use the more specific code.
    topic_alias_0_is_topic_alias_invalid:
    v5_server(), publish_v5(|p| p.two_byte(PropertyId::TopicAlias, 0))
    => Kind::TopicAliasZero, "5.0 MQTT-3.3.2-8", Some(ReasonCode::TOPIC_ALIAS_INVALID));
rule!(authentication_data_without_a_method_is_a_protocol_error:
    new_connection(), connect_v5(|p| p.binary(PropertyId::AuthenticationData, b"x"))
    => Kind::AuthenticationMethodMissing, "5.0 §3.1.2.11.10", PROTOCOL_ERROR);
rule!(auth_without_an_authentication_method_is_a_protocol_error:
    v5_server(), RawPacket::new(T::Auth, 0).u8(0x18).properties(|p| p).build()
    => Kind::AuthenticationMethodMissing, "5.0 §3.15.2.2.2", PROTOCOL_ERROR);
rule!(a_subscription_identifier_from_a_client_publish_is_refused_without_a_code:
    v5_server(), publish_v5(|p| p.variable_byte_integer(PropertyId::SubscriptionIdentifier, 3))
    => Kind::PropertyNotAllowedFromSender { property: PropertyId::SubscriptionIdentifier, .. }, "5.0 MQTT-3.3.4-6", PROTOCOL_ERROR);
rule!(session_expiry_in_a_server_disconnect_is_refused_without_a_code:
    v5_client(), RawPacket::new(T::Disconnect, 0).u8(0x8B).properties(|p| p.four_byte(PropertyId::SessionExpiryInterval, 1)).build()
    => Kind::PropertyNotAllowedFromSender { property: PropertyId::SessionExpiryInterval, .. }, "5.0 MQTT-3.14.2-2", PROTOCOL_ERROR);

#[test]
fn user_properties_may_repeat_and_keep_their_order() {
    let bytes = publish_v5(|p| p.pair("b", "1").pair("a", "2").pair("b", "3"));
    let Packet::Publish(publish) = decode_one(&bytes, &v5_server()).unwrap() else {
        panic!("a PUBLISH")
    };
    let pairs: Vec<(&str, &str)> = publish
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(pairs, [("b", "1"), ("a", "2"), ("b", "3")]);
}

#[test]
fn several_subscription_identifiers_in_a_server_publish_are_kept() {
    let bytes = publish_v5(|p| {
        p.variable_byte_integer(PropertyId::SubscriptionIdentifier, 300)
            .variable_byte_integer(PropertyId::SubscriptionIdentifier, 2)
    });
    let Packet::Publish(publish) = decode_one(&bytes, &v5_client()).unwrap() else {
        panic!("a PUBLISH")
    };
    assert_eq!(publish.properties.subscription_identifiers, [300, 2]);
}

// ---- CONNECT ---------------------------------------------------------------------------------

rule!(the_connect_reserved_flag_is_malformed_in_5_0:
    new_connection(), connect("MQTT", 5, 0x03) => Kind::ConnectReservedFlag, "5.0 MQTT-3.1.2-3", MALFORMED);
rule!(the_connect_reserved_flag_closes_a_3_1_1_connection:
    new_connection(), connect("MQTT", 4, 0x03) => Kind::ConnectReservedFlag, "3.1.1 MQTT-3.1.2-3", NO_CODE);
rule!(will_qos_3_is_malformed:
    new_connection(), connect("MQTT", 5, 0x1E) => Kind::InvalidWillQoS, "5.0 MQTT-3.1.2-12", MALFORMED);
rule!(will_qos_without_the_will_flag_has_no_code:
    new_connection(), connect("MQTT", 5, 0x0A) => Kind::WillFieldsWithoutWillFlag, "5.0 MQTT-3.1.2-11", PROTOCOL_ERROR);
rule!(will_retain_without_the_will_flag_has_no_code:
    new_connection(), connect("MQTT", 4, 0x22) => Kind::WillFieldsWithoutWillFlag, "3.1.1 MQTT-3.1.2-15", NO_CODE);
rule!(a_password_without_a_user_name_is_refused_in_3_1_1:
    new_connection(), RawPacket::new(T::Connect, 0).string("MQTT").u8(4).u8(0x42).u16(60).string("c").binary(b"p").build()
    => Kind::PasswordWithoutUserName, "3.1.1 MQTT-3.1.2-22", NO_CODE);
rule!(an_unsupported_protocol_level_is_answered_with_0x84:
    new_connection(), connect("MQTT", 6, 0x02) => Kind::UnsupportedProtocolLevel { level: 6 }, "5.0 MQTT-3.1.2-2",
    Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION));
rule!(
    /// 3.1.1 answers with return code 0x01, which this codec carries as 5.0's 0x84.
    an_older_unsupported_protocol_level_cites_3_1_1:
    new_connection(), connect("MQTT", 2, 0x02) => Kind::UnsupportedProtocolLevel { level: 2 }, "3.1.1 MQTT-3.1.2-2",
    Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION));
rule!(an_unknown_protocol_name_is_refused:
    new_connection(), connect("MQTX", 5, 0x02) => Kind::InvalidProtocolName { .. }, "5.0 MQTT-3.1.2-1",
    Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION));
rule!(the_first_packet_must_be_connect:
    new_connection(), [0xC0, 0x00] => Kind::ExpectedConnect { packet_type: T::PingReq }, "5.0 MQTT-3.1.0-1", PROTOCOL_ERROR);

#[test]
fn a_password_without_a_user_name_is_allowed_in_5_0() {
    let bytes = RawPacket::new(T::Connect, 0)
        .string("MQTT")
        .u8(5)
        .u8(0x42)
        .u16(60)
        .properties(|p| p)
        .string("c")
        .binary(b"p")
        .build();
    let Packet::Connect(connect) = decode_one(&bytes, &new_connection()).unwrap() else {
        panic!("a CONNECT")
    };
    assert_eq!(
        (connect.user_name, connect.password.as_deref()),
        (None, Some(&b"p"[..]))
    );
}

#[test]
fn an_mqtt_3_1_connect_fixes_version_3_1() {
    let Packet::Connect(connect) = decode_one(&connect("MQIsdp", 3, 0x02), &new_connection()).unwrap() else {
        panic!("a CONNECT")
    };
    assert_eq!(connect.protocol, ProtocolVersion::V3_1);
}

// ---- PUBLISH ---------------------------------------------------------------------------------

rule!(packet_id_0_has_no_code:
    v5_server(), RawPacket::new(T::Publish, 0b0010).string("a").u16(0).properties(|p| p).build()
    => Kind::PacketIdZero, "5.0 MQTT-2.2.1-3", PROTOCOL_ERROR);
rule!(packet_id_0_in_3_1_1_subscribe_has_no_code:
    v3_server(), RawPacket::new(T::Subscribe, 2).u16(0).string("a").u8(0).build()
    => Kind::PacketIdZero, "3.1.1 MQTT-2.3.1-1", NO_CODE);
rule!(dup_on_a_qos_0_publish_has_no_code:
    v5_server(), RawPacket::new(T::Publish, 0b1000).string("a").properties(|p| p).build()
    => Kind::DupOnQoS0, "5.0 MQTT-3.3.1-2", PROTOCOL_ERROR);
rule!(a_wildcard_in_a_topic_name_has_no_code:
    v5_server(), RawPacket::new(T::Publish, 0).string("a/+").properties(|p| p).build()
    => Kind::InvalidTopicName(TopicError::WildcardInName), "5.0 MQTT-3.3.2-2", PROTOCOL_ERROR);
rule!(a_wildcard_in_a_response_topic_has_no_code:
    v5_server(), publish_v5(|p| p.string(PropertyId::ResponseTopic, "r/#"))
    => Kind::InvalidTopicName(TopicError::WildcardInName), "5.0 MQTT-3.3.2-14", PROTOCOL_ERROR);
rule!(an_empty_topic_without_a_topic_alias_is_a_protocol_error_in_5_0:
    v5_server(), RawPacket::new(T::Publish, 0).string("").properties(|p| p).build()
    => Kind::EmptyTopicWithoutAlias, "5.0 §3.3.2.1", PROTOCOL_ERROR);
rule!(an_empty_topic_has_no_code_in_3_1_1:
    v3_server(), RawPacket::new(T::Publish, 0).string("").build()
    => Kind::InvalidTopicName(TopicError::Empty), "3.1.1 MQTT-4.7.3-1", NO_CODE);

// ---- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------------------------

rule!(subscribe_without_filters_is_a_protocol_error_in_5_0:
    v5_server(), RawPacket::new(T::Subscribe, 2).u16(1).properties(|p| p).build()
    => Kind::NoTopicFilters, "5.0 MQTT-3.8.3-2", PROTOCOL_ERROR);
rule!(subscribe_without_filters_has_no_code_in_3_1_1:
    v3_server(), RawPacket::new(T::Subscribe, 2).u16(1).build() => Kind::NoTopicFilters, "3.1.1 MQTT-3.8.3-3", NO_CODE);
rule!(unsubscribe_without_filters_is_a_protocol_error_in_5_0:
    v5_server(), RawPacket::new(T::Unsubscribe, 2).u16(1).properties(|p| p).build()
    => Kind::NoTopicFilters, "5.0 MQTT-3.10.3-2", PROTOCOL_ERROR);
rule!(reserved_bits_of_subscription_options_are_malformed_in_5_0:
    v5_server(), subscribe_v5("a", 0x40) => Kind::SubscriptionOptionsReserved { options: 0x40 }, "5.0 MQTT-3.8.3-5", MALFORMED);
rule!(reserved_bits_of_the_requested_qos_byte_are_malformed_in_3_1_1:
    v3_server(), subscribe_v3("a", 0x04) => Kind::SubscriptionOptionsReserved { options: 0x04 }, "3.1.1 MQTT-3.8.3-4", NO_CODE);
rule!(subscription_qos_3_is_a_protocol_error_in_5_0:
    v5_server(), subscribe_v5("a", 0x03) => Kind::SubscriptionQoS3, "5.0 §3.8.3.1", PROTOCOL_ERROR);
rule!(subscription_qos_3_is_malformed_in_3_1_1:
    v3_server(), subscribe_v3("a", 0x03) => Kind::SubscriptionQoS3, "3.1.1 MQTT-3.8.3-4", NO_CODE);
rule!(retain_handling_3_is_a_protocol_error:
    v5_server(), subscribe_v5("a", 0x30) => Kind::RetainHandling3, "5.0 §3.8.3.1", PROTOCOL_ERROR);
rule!(no_local_on_a_shared_subscription_is_a_protocol_error:
    v5_server(), subscribe_v5("$share/g/a", 0x04) => Kind::NoLocalOnSharedSubscription, "5.0 MQTT-3.8.3-4", PROTOCOL_ERROR);
rule!(an_invalid_topic_filter_has_no_code:
    v5_server(), subscribe_v5("a/#/b", 0) => Kind::InvalidTopicFilter(TopicError::MultiLevelWildcardNotLast), "5.0 MQTT-4.7.1-1", PROTOCOL_ERROR);
rule!(
    /// 3.1.1 numbers the wildcard rules one higher than 5.0 does.
    an_invalid_topic_filter_cites_the_3_1_1_statement_in_3_1_1:
    v3_server(), subscribe_v3("a+", 0) => Kind::InvalidTopicFilter(TopicError::WildcardNotAlone), "3.1.1 MQTT-4.7.1-3", NO_CODE);
rule!(a_wildcard_in_a_will_topic_cites_the_3_1_1_topic_name_rule:
    new_connection(), RawPacket::new(T::Connect, 0).string("MQTT").u8(4).u8(0x06).u16(60).string("c").string("w/#").binary(b"x").build()
    => Kind::InvalidTopicName(TopicError::WildcardInName), "3.1.1 MQTT-4.7.1-1", NO_CODE);
rule!(a_shared_filter_with_an_empty_share_name_has_no_code:
    v5_server(), subscribe_v5("$share//a", 0) => Kind::InvalidTopicFilter(_), "5.0 MQTT-4.8.2-1", PROTOCOL_ERROR);

#[test]
fn a_share_filter_is_an_ordinary_filter_in_3_1_1() {
    // 3.1.1 has no shared subscriptions: "$share//a" is a valid filter there, matched literally.
    let Packet::Subscribe(subscribe) = decode_one(&subscribe_v3("$share//a", 1), &v3_server()).unwrap() else {
        panic!("a SUBSCRIBE")
    };
    assert_eq!(subscribe.subscriptions[0].filter, "$share//a");
}

// ---- acknowledgements, CONNACK, DISCONNECT, AUTH ------------------------------------------

rule!(a_reason_code_not_defined_for_puback_has_no_code:
    v5_server(), [0x40, 0x03, 0x00, 0x01, 0x05] => Kind::InvalidReasonCode { packet_type: T::PubAck, code: 0x05 }, "5.0 MQTT-3.4.2-1", PROTOCOL_ERROR);
rule!(a_server_only_disconnect_code_from_a_client_has_no_code:
    v5_server(), [0xE0, 0x01, 0x8B] => Kind::InvalidReasonCode { packet_type: T::Disconnect, code: 0x8B }, "5.0 MQTT-3.14.2-1", PROTOCOL_ERROR);
rule!(a_3_1_1_suback_code_other_than_0_1_2_or_0x80_is_refused:
    v3_client(), [0x90, 0x03, 0x00, 0x01, 0x03] => Kind::InvalidReasonCode { packet_type: T::SubAck, code: 0x03 }, "3.1.1 MQTT-3.9.3-2", NO_CODE);
rule!(a_short_auth_from_a_client_means_success_which_only_a_server_sends:
    v5_server(), [0xF0, 0x00] => Kind::InvalidReasonCode { packet_type: T::Auth, code: 0 }, "5.0 MQTT-3.15.2-1", PROTOCOL_ERROR);
rule!(connack_reserved_flags_are_malformed:
    v5_client(), [0x20, 0x03, 0x02, 0x00, 0x00] => Kind::ConnAckReservedFlags { flags: 0x02 }, "5.0 MQTT-3.2.2-1", MALFORMED);
rule!(a_connack_code_not_defined_for_connack_has_no_code:
    v5_client(), [0x20, 0x03, 0x00, 0x8E, 0x00] => Kind::InvalidReasonCode { packet_type: T::ConnAck, code: 0x8E }, "5.0 MQTT-3.2.2-8", PROTOCOL_ERROR);
rule!(session_present_with_a_failure_code_has_no_code:
    v5_client(), [0x20, 0x03, 0x01, 0x87, 0x00] => Kind::SessionPresentWithFailure, "5.0 MQTT-3.2.2-6", PROTOCOL_ERROR);
rule!(a_3_1_1_connack_return_code_above_5_is_refused:
    v3_client(), [0x20, 0x02, 0x00, 0x06] => Kind::InvalidReasonCode { packet_type: T::ConnAck, code: 6 }, "3.1.1 §3.2.2.3", NO_CODE);
rule!(a_server_does_not_accept_connack:
    v5_server(), [0x20, 0x03, 0x00, 0x00, 0x00] => Kind::WrongDirection { packet_type: T::ConnAck, .. }, "5.0 §2.1.2", PROTOCOL_ERROR);
rule!(a_3_1_1_server_never_sends_disconnect:
    v3_client(), [0xE0, 0x00] => Kind::WrongDirection { packet_type: T::Disconnect, .. }, "3.1.1 §2.2.1", NO_CODE);

#[test]
fn every_statement_cited_by_these_tests_exists_in_the_spec_tables() {
    // The statement ids above are typed by hand; this keeps them honest against the project's own
    // statement tables (conformance/statements/, one row per statement: id, section, level, summary).
    let source = include_str!("rules.rs");
    let tables = [
        ("5.0", include_str!("../../../conformance/statements/v5.0.tsv")),
        ("3.1.1", include_str!("../../../conformance/statements/v3.1.1.tsv")),
    ];
    let mut checked = 0;
    for (version, table) in tables {
        // Comments start with '#'; the first other line is the header.
        let ids: Vec<&str> = table
            .lines()
            .filter(|line| !line.starts_with('#'))
            .skip(1)
            .filter_map(|row| row.split('\t').next())
            .collect();
        assert!(
            ids.len() > 100,
            "{version}: only {} rows in the statement table",
            ids.len()
        );
        let prefix = format!("\"{version} MQTT-");
        for start in source.match_indices(&prefix).map(|(index, _)| index + prefix.len() - 5) {
            let id: String = source[start..].chars().take_while(|c| *c != '"').collect();
            let found = ids.contains(&id.as_str());
            assert!(found, "{version} {id} is not in the statement table");
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} citations checked");
}
