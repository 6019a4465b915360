//! Property tests. Goal: `decode(encode(p)) == p` for any valid packet of either version and
//! direction, and framing and decoding never panic on any bytes, with whatever decodes
//! re-encoding to bytes that decode equal. Method: proptest generators that build only valid
//! packets (properties restricted to where 5.0 allows them, reason codes to their packets and
//! senders); case counts kept modest so the suite stays fast.

use bytes::{Bytes, BytesMut};
use mqtt_protocol::property::PropertyTarget;
use mqtt_protocol::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::support::{context, decode_one, encode_to_bytes};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \u{e9}\u{4e2d}\u{1F600}]{0,6}"
}

/// Short and long (past the 64 bytes the encoder writes in one piece, and past the 127 bytes of a
/// one-byte Remaining Length), ASCII and not (the decoder checks UTF-8 in full only past ASCII).
fn topic_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z$]{1,3}(/[a-z0-9]{0,3}){0,3}",
        "[a-z$\u{e9}\u{4e2d}]{1,3}(/[a-z0-9 \u{e9}\u{1F600}]{0,60}){0,4}",
    ]
}

fn topic_filter() -> impl Strategy<Value = String> {
    prop_oneof![
        topic_name(),
        "[a-z]{1,3}/\\+(/[a-z]{1,2})?",
        Just("#".to_string()),
        "[a-z]{1,3}/#",
        "\\+/[a-z]{1,3}",
        "\\$share/[a-z]{1,3}/[a-z]{1,3}/\\+",
    ]
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

/// Any set of properties, every field possibly present, before restriction to a target.
fn any_properties() -> impl Strategy<Value = Properties> {
    let part1 = (
        option::of(0u8..=1),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(payload()),
        vec(1u32..=268_435_455, 0..3),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
    );
    let part2 = (
        option::of(payload()),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(1u16..),
        option::of(any::<u16>()),
        option::of(1u16..),
    );
    let part3 = (
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(any::<bool>()),
        vec((text(), text()), 0..3),
        option::of(1u32..),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (part1, part2, part3).prop_map(|(a, b, c)| {
        Properties::from(PropertyFields {
            payload_format_indicator: a.0,
            message_expiry_interval_s: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: a.5,
            session_expiry_interval_s: a.6,
            assigned_client_identifier: a.7,
            server_keep_alive_s: a.8,
            authentication_method: a.9,
            authentication_data: b.0,
            request_problem_information: b.1,
            will_delay_interval_s: b.2,
            request_response_information: b.3,
            response_information: b.4,
            server_reference: b.5,
            reason_string: b.6,
            receive_maximum: b.7,
            topic_alias_maximum: b.8,
            topic_alias: b.9,
            maximum_qos: c.0,
            retain_available: c.1,
            user_properties: c.2,
            maximum_packet_size: c.3,
            wildcard_subscription_available: c.4,
            subscription_identifier_available: c.5,
            shared_subscription_available: c.6,
        })
    })
}

/// Keeps only what 5.0 allows in `target` sent in `direction` (nothing at all in 3.1.1).
fn restrict(mut p: Properties, target: PropertyTarget, direction: Direction, version: ProtocolVersion) -> Properties {
    if !version.is_v5() {
        return Properties::default();
    }
    use PropertyId as Id;
    let allowed = |id: Id| id.allowed_in(target);
    macro_rules! keep {
        ($($field:ident: $id:ident),*) => {$(
            if !allowed(Id::$id) { p.$field = Default::default(); }
        )*};
    }
    keep!(payload_format_indicator: PayloadFormatIndicator, message_expiry_interval_s: MessageExpiryInterval,
        content_type: ContentType, response_topic: ResponseTopic, correlation_data: CorrelationData,
        subscription_identifiers: SubscriptionIdentifier, session_expiry_interval_s: SessionExpiryInterval,
        assigned_client_identifier: AssignedClientIdentifier, server_keep_alive_s: ServerKeepAlive,
        authentication_method: AuthenticationMethod, authentication_data: AuthenticationData,
        request_problem_information: RequestProblemInformation, will_delay_interval_s: WillDelayInterval,
        request_response_information: RequestResponseInformation, response_information: ResponseInformation,
        server_reference: ServerReference, reason_string: ReasonString, receive_maximum: ReceiveMaximum,
        topic_alias_maximum: TopicAliasMaximum, topic_alias: TopicAlias, maximum_qos: MaximumQoS,
        retain_available: RetainAvailable, user_properties: UserProperty, maximum_packet_size: MaximumPacketSize,
        wildcard_subscription_available: WildcardSubscriptionAvailable,
        subscription_identifier_available: SubscriptionIdentifierAvailable,
        shared_subscription_available: SharedSubscriptionAvailable);
    let packet_type = match target {
        PropertyTarget::Packet(packet_type) => Some(packet_type),
        PropertyTarget::Will => None,
    };
    if packet_type == Some(PacketType::Subscribe) {
        p.subscription_identifiers.truncate(1);
    }
    if packet_type == Some(PacketType::Publish) && direction == Direction::ClientToServer {
        p.subscription_identifiers.clear(); // 5.0 MQTT-3.3.4-6
    }
    if packet_type == Some(PacketType::Disconnect) && direction == Direction::ServerToClient {
        p.session_expiry_interval_s = None; // 5.0 MQTT-3.14.2-2
    }
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    p
}

fn properties_for(
    target: PropertyTarget,
    direction: Direction,
    version: ProtocolVersion,
) -> impl Strategy<Value = Properties> {
    any_properties().prop_map(move |p| restrict(p, target, direction, version))
}

/// A reason code 5.0 allows in this packet from this sender (3.1.1: what its format can carry).
fn reason_code(
    packet_type: PacketType,
    direction: Direction,
    version: ProtocolVersion,
) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = ReasonCode::all()
        .filter(|code| match (version.is_v5(), packet_type) {
            (true, _) => code.is_valid_for(packet_type) && code.may_be_sent(packet_type, direction),
            (false, PacketType::ConnAck) => code.to_v3_connack().is_some(),
            (false, PacketType::SubAck) => code.is_v3_suback(),
            (false, _) => *code == ReasonCode::SUCCESS,
        })
        .collect();
    proptest::sample::select(codes)
}

fn packet_id() -> impl Strategy<Value = u16> {
    1u16..
}

fn packet(version: ProtocolVersion, direction: Direction) -> BoxedStrategy<Packet> {
    use Direction::*;
    use PacketType as T;
    let v5 = version.is_v5();
    let target = PropertyTarget::Packet;
    let publish = (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        properties_for(target(T::Publish), direction, version),
        payload(),
    )
        .prop_map(move |(qos, dup, retain, topic, id, properties, payload)| {
            let packet_id = (qos != QoS::AtMostOnce).then_some(id);
            let dup = dup && qos != QoS::AtMostOnce;
            // An aliased PUBLISH may leave its topic empty in 5.0.
            let topic = if properties.topic_alias.is_some() && dup {
                String::new()
            } else {
                topic
            };
            Packet::Publish(Publish {
                dup,
                qos,
                retain,
                topic: topic.into(),
                packet_id,
                properties,
                payload,
            })
        });
    let ack = |packet_type: T| {
        (
            packet_id(),
            reason_code(packet_type, direction, version),
            properties_for(target(packet_type), direction, version),
        )
            .prop_map(move |(packet_id, reason_code, properties)| {
                let ack = PublishAck {
                    packet_id,
                    reason_code,
                    properties,
                };
                match packet_type {
                    T::PubAck => Packet::PubAck(ack),
                    T::PubRec => Packet::PubRec(ack),
                    T::PubRel => Packet::PubRel(ack),
                    _ => Packet::PubComp(ack),
                }
            })
    };
    let mut both: Vec<BoxedStrategy<Packet>> = vec![
        publish.boxed(),
        ack(T::PubAck).boxed(),
        ack(T::PubRec).boxed(),
        ack(T::PubRel).boxed(),
        ack(T::PubComp).boxed(),
    ];
    if v5 || direction == ClientToServer {
        let disconnect = (
            reason_code(T::Disconnect, direction, version),
            properties_for(target(T::Disconnect), direction, version),
        )
            .prop_map(|(reason_code, properties)| {
                Packet::Disconnect(Disconnect {
                    reason_code,
                    properties,
                })
            });
        both.push(disconnect.boxed());
    }
    if v5 {
        let auth = (
            reason_code(T::Auth, direction, version),
            properties_for(target(T::Auth), direction, version),
            text(),
        )
            .prop_map(|(reason_code, mut properties, method)| {
                if reason_code != ReasonCode::SUCCESS || !properties.is_empty() {
                    properties.authentication_method.get_or_insert(method);
                }
                Packet::Auth(Auth {
                    reason_code,
                    properties,
                })
            });
        both.push(auth.boxed());
    }
    let one_way: Vec<BoxedStrategy<Packet>> = match direction {
        ClientToServer => {
            let will = (
                topic_name(),
                payload(),
                qos(),
                any::<bool>(),
                properties_for(PropertyTarget::Will, direction, version),
            )
                .prop_map(|(topic, payload, qos, retain, properties)| Will {
                    topic,
                    payload,
                    qos,
                    retain,
                    properties,
                });
            let connect = (
                any::<bool>(),
                any::<u16>(),
                properties_for(target(T::Connect), direction, version),
                text(),
                option::of(will),
                option::of(text()),
                option::of(payload()),
            )
                .prop_map(
                    move |(clean_start, keep_alive_s, properties, client_id, will, user_name, password)| {
                        // 3.1.1 MQTT-3.1.2-22: no password without a user name.
                        let password = if v5 || user_name.is_some() { password } else { None };
                        Packet::Connect(Box::new(Connect {
                            protocol: version,
                            clean_start,
                            keep_alive_s,
                            properties,
                            client_id,
                            will,
                            user_name,
                            password,
                        }))
                    },
                );
            let options = (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
                move |(qos, no_local, retain_as_published, handling)| {
                    if !v5 {
                        return SubscriptionOptions::with_qos(qos);
                    }
                    let retain_handling = [
                        RetainHandling::SendAtSubscribe,
                        RetainHandling::SendIfNew,
                        RetainHandling::DoNotSend,
                    ][handling as usize];
                    SubscriptionOptions {
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                    }
                },
            );
            let subscribe = (
                packet_id(),
                properties_for(target(T::Subscribe), direction, version),
                vec((topic_filter(), options), 1..4),
            )
                .prop_map(move |(packet_id, properties, pairs)| {
                    let subscriptions = pairs
                        .into_iter()
                        .map(|(filter, mut options)| {
                            if filter.starts_with("$share/") {
                                options.no_local = false; // 5.0 MQTT-3.8.3-4
                            }
                            Subscription { filter, options }
                        })
                        .collect();
                    Packet::Subscribe(Subscribe {
                        packet_id,
                        properties,
                        subscriptions,
                    })
                });
            let unsubscribe = (
                packet_id(),
                properties_for(target(T::Unsubscribe), direction, version),
                vec(topic_filter(), 1..4),
            )
                .prop_map(|(packet_id, properties, filters)| {
                    Packet::Unsubscribe(Unsubscribe {
                        packet_id,
                        properties,
                        filters,
                    })
                });
            vec![
                connect.boxed(),
                subscribe.boxed(),
                unsubscribe.boxed(),
                Just(Packet::PingReq).boxed(),
            ]
        }
        ServerToClient => {
            let connack = (
                any::<bool>(),
                reason_code(T::ConnAck, direction, version),
                properties_for(target(T::ConnAck), direction, version),
            )
                .prop_map(|(session_present, reason_code, properties)| {
                    let session_present = session_present && reason_code == ReasonCode::SUCCESS;
                    Packet::ConnAck(ConnAck {
                        session_present,
                        reason_code,
                        properties,
                    })
                });
            let suback = (
                packet_id(),
                properties_for(target(T::SubAck), direction, version),
                vec(reason_code(T::SubAck, direction, version), 1..4),
            )
                .prop_map(|(packet_id, properties, reason_codes)| {
                    Packet::SubAck(SubAck {
                        packet_id,
                        properties,
                        reason_codes,
                    })
                });
            let unsuback = (
                packet_id(),
                properties_for(target(T::UnsubAck), direction, version),
                vec(reason_code(T::UnsubAck, direction, version), 1..4),
            )
                .prop_map(move |(packet_id, properties, reason_codes)| {
                    let reason_codes = if v5 { reason_codes } else { Vec::new() };
                    Packet::UnsubAck(UnsubAck {
                        packet_id,
                        properties,
                        reason_codes,
                    })
                });
            vec![
                connack.boxed(),
                suback.boxed(),
                unsuback.boxed(),
                Just(Packet::PingResp).boxed(),
            ]
        }
    };
    proptest::strategy::Union::new(both.into_iter().chain(one_way)).boxed()
}

fn version_direction_packet() -> impl Strategy<Value = (ProtocolVersion, Direction, Packet)> {
    (
        version(),
        prop_oneof![Just(Direction::ClientToServer), Just(Direction::ServerToClient)],
    )
        .prop_flat_map(|(version, direction)| {
            packet(version, direction).prop_map(move |packet| (version, direction, packet))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_valid_packet_decodes_to_itself_after_encoding((version, direction, packet) in version_direction_packet()) {
        let bytes = encode_to_bytes(&packet, version);
        prop_assert_eq!(encoded_len(&packet, version).unwrap(), bytes.len());
        let decoded = decode_one(&bytes, &context(Some(version), direction));
        prop_assert_eq!(decoded.as_ref(), Ok(&packet), "bytes {:02X?}", &bytes[..]);
    }

    #[test]
    fn framing_and_decoding_never_panic_on_any_bytes(
        bytes in vec(any::<u8>(), 0..96),
        version in option::of(version()),
        server in any::<bool>(),
    ) {
        let direction = if server { Direction::ClientToServer } else { Direction::ServerToClient };
        let context = context(version, direction).with_maximum_packet_size(64);
        let mut buf = BytesMut::from(&bytes[..]);
        // Bounded: each round takes at least two bytes off the buffer or stops.
        for _ in 0..bytes.len() {
            let before = buf.len();
            match decode(&mut buf, &context) {
                Ok(Some(packet)) => {
                    // Whatever decodes re-encodes to bytes that decode equal.
                    let version = match &packet {
                        Packet::Connect(connect) => connect.protocol,
                        _ => version.unwrap_or(ProtocolVersion::V5),
                    };
                    let again = encode_to_bytes(&packet, version);
                    let context = DecodeContext { version: Some(version), ..context };
                    prop_assert_eq!(decode_one(&again, &context.with_maximum_packet_size(u32::MAX)), Ok(packet));
                }
                Ok(None) => break,
                Err(error) => {
                    prop_assert!(!error.raw.is_empty());
                    // 5.0 §1.2 makes every rejection a Malformed Packet or a Protocol Error (or a
                    // more specific code): a 5.0 receiver always has a code to send.
                    if error.rule.spec == Spec::V5_0 {
                        prop_assert!(error.reason_code.is_some(), "no reason code for {}", error);
                    }
                    if buf.len() == before { break; } // a framing error: the stream stops here
                }
            }
            prop_assert!(buf.len() < before);
        }
    }

    #[test]
    fn a_frame_is_exactly_its_fixed_header_plus_remaining_length(bytes in vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(Some(frame)) = split_frame(&mut buf, u32::MAX) {
            prop_assert_eq!(frame.bytes.len() + buf.len(), bytes.len());
            prop_assert_eq!(&frame.bytes[..], &bytes[..frame.bytes.len()]);
            prop_assert_eq!(frame.body().len(), frame.bytes.len() - frame.header_len());
        }
    }
}

#[test]
fn validate_judges_a_connect_by_its_own_protocol_version_as_encode_does() {
    // Found by the roundtrip fuzz target: validate(.., V5) accepted a 3.1 CONNECT with properties
    // that encode then refused.
    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V3_1,
        properties: Properties::from(PropertyFields {
            session_expiry_interval_s: Some(16),
            ..PropertyFields::default()
        }),
        ..Connect::default()
    }));
    assert_eq!(
        validate(&connect, ProtocolVersion::V5),
        Err(EncodeError::PropertiesNotInVersion {
            packet_type: PacketType::Connect
        })
    );
    assert_eq!(
        encode(&connect, ProtocolVersion::V5, &mut BytesMut::new()),
        validate(&connect, ProtocolVersion::V5)
    );
}

/// The encoder writes a PUBLISH's head in one piece when its topic fits 64 bytes, and in parts when
/// it does not: every combination of topic length around those edges (and around a Remaining
/// Length of one to three bytes), QoS, properties and version must read back as written.
#[test]
fn publish_round_trips_at_every_edge_of_the_encoder_fast_path() {
    let lengths = [1, 2, 63, 64, 65, 66, 120, 127, 128, 129, 300, 16_400, 65_535];
    let payloads = [0, 1, 200, 20_000];
    let mut checked = 0;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        for &length in &lengths {
            for &payload in &payloads {
                for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                    for with_properties in [false, true] {
                        if with_properties && !version.is_v5() {
                            continue;
                        }
                        let mut properties = Properties::default();
                        if with_properties {
                            properties.message_expiry_interval_s = Some(9);
                        }
                        let topic: String = (0..length).map(|i| if i % 7 == 6 { '/' } else { 'k' }).collect();
                        let packet = Packet::Publish(Publish {
                            dup: false,
                            qos,
                            retain: length % 2 == 0,
                            topic: topic.into(),
                            packet_id: (qos != QoS::AtMostOnce).then_some(0x0102),
                            properties,
                            payload: Bytes::from(vec![0xA5; payload]),
                        });
                        let bytes = encode_to_bytes(&packet, version);
                        assert_eq!(bytes.len(), encoded_len(&packet, version).unwrap());
                        let decoded = decode_one(&bytes, &context(Some(version), Direction::ClientToServer));
                        assert_eq!(
                            decoded,
                            Ok(packet),
                            "{version:?}, topic {length} B, payload {payload} B, {qos:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 13 * 4 * 3 + 13 * 4 * 3);
}
