//! Golden byte vectors: for every packet type in both versions (short forms included), the exact
//! bytes the encoder writes and the decoder reads. Goal: a change of wire format can never pass
//! unnoticed. Method: each vector is encoded and compared byte for byte, then decoded in the
//! direction it travels and compared field for field.

use bytes::Bytes;
use mqtt_protocol::*;

use crate::support::{context, decode_one, encode_to_bytes};

use Direction::{ClientToServer as C2S, ServerToClient as S2C};
use ProtocolVersion::{V3_1, V3_1_1, V5};

struct Vector {
    name: &'static str,
    version: ProtocolVersion,
    direction: Direction,
    packet: Packet,
    bytes: Vec<u8>,
}

fn user_property() -> Vec<(String, String)> {
    vec![("k".into(), "v".into())]
}

fn properties(build: impl FnOnce(&mut Properties)) -> Properties {
    let mut properties = Properties::default();
    build(&mut properties);
    properties
}

fn vectors() -> Vec<Vector> {
    let bytes = Bytes::from_static;
    vec![
        // ---- 3.1.1 ----
        Vector {
            name: "3.1.1 CONNECT, clean session, keep alive 60",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::Connect(Box::new(Connect {
                protocol: V3_1_1,
                clean_start: true,
                keep_alive_s: 60,
                client_id: "c1".into(),
                ..Connect::default()
            })),
            bytes: vec![
                0x10, 0x0E, // CONNECT, remaining length 14
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
                0x04, // level 4
                0x02, // flags: clean session
                0x00, 0x3C, // keep alive 60 s
                0x00, 0x02, b'c', b'1', // client id
            ],
        },
        Vector {
            name: "3.1.1 CONNECT with will (QoS 1, retained), user name and password",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::Connect(Box::new(Connect {
                protocol: V3_1_1,
                clean_start: false,
                keep_alive_s: 10,
                client_id: "c1".into(),
                will: Some(Will {
                    topic: "w".into(),
                    payload: bytes(b"bye"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: Properties::default(),
                }),
                user_name: Some("u".into()),
                password: Some(bytes(b"p")),
                ..Connect::default()
            })),
            bytes: vec![
                0x10, 0x1C, // CONNECT, remaining length 28
                0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // "MQTT", level 4
                0xEC, // flags: user name, password, will retain, will QoS 1, will
                0x00, 0x0A, // keep alive 10 s
                0x00, 0x02, b'c', b'1', // client id
                0x00, 0x01, b'w', // will topic
                0x00, 0x03, b'b', b'y', b'e', // will payload
                0x00, 0x01, b'u', // user name
                0x00, 0x01, b'p', // password
            ],
        },
        Vector {
            name: "3.1 CONNECT (MQIsdp, level 3)",
            version: V3_1,
            direction: C2S,
            packet: Packet::Connect(Box::new(Connect {
                protocol: V3_1,
                clean_start: true,
                keep_alive_s: 60,
                client_id: "c1".into(),
                ..Connect::default()
            })),
            bytes: vec![
                0x10, 0x10, // CONNECT, remaining length 16
                0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, // "MQIsdp", level 3
                0x02, 0x00, 0x3C, // clean session, keep alive 60 s
                0x00, 0x02, b'c', b'1',
            ],
        },
        Vector {
            name: "3.1.1 CONNACK accepted",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::ConnAck(ConnAck::default()),
            bytes: vec![0x20, 0x02, 0x00, 0x00],
        },
        Vector {
            name: "3.1.1 CONNACK session present",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::ConnAck(ConnAck {
                session_present: true,
                ..ConnAck::default()
            }),
            bytes: vec![0x20, 0x02, 0x01, 0x00],
        },
        Vector {
            name: "3.1.1 CONNACK return code 5 (not authorized) carried as 5.0's 0x87",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::ConnAck(ConnAck {
                reason_code: ReasonCode::NOT_AUTHORIZED,
                ..ConnAck::default()
            }),
            bytes: vec![0x20, 0x02, 0x00, 0x05],
        },
        Vector {
            name: "3.1.1 PUBLISH QoS 0",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::Publish(Publish {
                topic: "a/b".into(),
                payload: bytes(b"hi"),
                ..Publish::default()
            }),
            bytes: vec![0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'],
        },
        Vector {
            name: "3.1.1 PUBLISH QoS 1, DUP, RETAIN",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::Publish(Publish {
                dup: true,
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: Some(10),
                payload: bytes(b"x"),
                ..Publish::default()
            }),
            bytes: vec![
                0x3B, 0x08, // PUBLISH, DUP | QoS 1 | RETAIN
                0x00, 0x03, b'a', b'/', b'b', // topic
                0x00, 0x0A, // packet id 10
                b'x',
            ],
        },
        Vector {
            name: "3.1.1 PUBLISH QoS 2, empty payload",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::Publish(Publish {
                qos: QoS::ExactlyOnce,
                topic: "a/b".into(),
                packet_id: Some(11),
                ..Publish::default()
            }),
            bytes: vec![0x34, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0B],
        },
        Vector {
            name: "3.1.1 PUBACK",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::PubAck(PublishAck::new(10)),
            bytes: vec![0x40, 0x02, 0x00, 0x0A],
        },
        Vector {
            name: "3.1.1 PUBREC",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::PubRec(PublishAck::new(10)),
            bytes: vec![0x50, 0x02, 0x00, 0x0A],
        },
        Vector {
            name: "3.1.1 PUBREL (flags 0010)",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::PubRel(PublishAck::new(10)),
            bytes: vec![0x62, 0x02, 0x00, 0x0A],
        },
        Vector {
            name: "3.1.1 PUBCOMP",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::PubComp(PublishAck::new(10)),
            bytes: vec![0x70, 0x02, 0x00, 0x0A],
        },
        Vector {
            name: "3.1.1 SUBSCRIBE two filters",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                subscriptions: vec![
                    Subscription {
                        filter: "a/+".into(),
                        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                    },
                    Subscription {
                        filter: "#".into(),
                        options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                    },
                ],
            }),
            bytes: vec![
                0x82, 0x0C, // SUBSCRIBE (flags 0010), remaining length 12
                0x00, 0x01, // packet id
                0x00, 0x03, b'a', b'/', b'+', 0x01, // "a/+" QoS 1
                0x00, 0x01, b'#', 0x02, // "#" QoS 2
            ],
        },
        Vector {
            name: "3.1.1 SUBACK granted 0, granted 1, failure",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::SubAck(SubAck {
                packet_id: 1,
                properties: Properties::default(),
                reason_codes: vec![
                    ReasonCode::GRANTED_QOS_0,
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::UNSPECIFIED_ERROR,
                ],
            }),
            bytes: vec![0x90, 0x05, 0x00, 0x01, 0x00, 0x01, 0x80],
        },
        Vector {
            name: "3.1.1 UNSUBSCRIBE",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::Unsubscribe(Unsubscribe {
                packet_id: 2,
                properties: Properties::default(),
                filters: vec!["a/+".into()],
            }),
            bytes: vec![0xA2, 0x07, 0x00, 0x02, 0x00, 0x03, b'a', b'/', b'+'],
        },
        Vector {
            name: "3.1.1 UNSUBACK (packet id only)",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::UnsubAck(UnsubAck {
                packet_id: 2,
                ..UnsubAck::default()
            }),
            bytes: vec![0xB0, 0x02, 0x00, 0x02],
        },
        Vector {
            name: "3.1.1 PINGREQ",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::PingReq,
            bytes: vec![0xC0, 0x00],
        },
        Vector {
            name: "3.1.1 PINGRESP",
            version: V3_1_1,
            direction: S2C,
            packet: Packet::PingResp,
            bytes: vec![0xD0, 0x00],
        },
        Vector {
            name: "3.1.1 DISCONNECT",
            version: V3_1_1,
            direction: C2S,
            packet: Packet::Disconnect(Disconnect::default()),
            bytes: vec![0xE0, 0x00],
        },
        // ---- 5.0 ----
        Vector {
            name: "5.0 CONNECT, no properties",
            version: V5,
            direction: C2S,
            packet: Packet::Connect(Box::new(Connect {
                protocol: V5,
                clean_start: true,
                keep_alive_s: 60,
                client_id: "c1".into(),
                ..Connect::default()
            })),
            bytes: vec![
                0x10, 0x0F, // CONNECT, remaining length 15
                0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", level 5
                0x02, 0x00, 0x3C, // clean start, keep alive 60 s
                0x00, // property length 0
                0x00, 0x02, b'c', b'1',
            ],
        },
        Vector {
            name: "5.0 CONNECT with properties, will properties, user name and password",
            version: V5,
            direction: C2S,
            packet: Packet::Connect(Box::new(Connect {
                protocol: V5,
                clean_start: true,
                keep_alive_s: 60,
                properties: properties(|p| {
                    p.session_expiry_interval_s = Some(60);
                    p.receive_maximum = Some(20);
                    p.user_properties = user_property();
                }),
                client_id: "c1".into(),
                will: Some(Will {
                    topic: "w".into(),
                    payload: bytes(b"x"),
                    qos: QoS::AtMostOnce,
                    retain: false,
                    properties: properties(|p| p.will_delay_interval_s = Some(5)),
                }),
                user_name: Some("u".into()),
                password: Some(bytes(b"p")),
            })),
            bytes: vec![
                0x10, 0x30, // CONNECT, remaining length 48
                0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", level 5
                0xC6, // flags: user name, password, will, clean start
                0x00, 0x3C, // keep alive
                0x0F, // property length 15
                0x11, 0x00, 0x00, 0x00, 0x3C, // session expiry interval 60 s
                0x21, 0x00, 0x14, // receive maximum 20
                0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
                0x00, 0x02, b'c', b'1', // client id
                0x05, 0x18, 0x00, 0x00, 0x00, 0x05, // will properties: will delay 5 s
                0x00, 0x01, b'w', // will topic
                0x00, 0x01, b'x', // will payload
                0x00, 0x01, b'u', 0x00, 0x01, b'p', // user name, password
            ],
        },
        Vector {
            name: "5.0 CONNACK success, no properties",
            version: V5,
            direction: S2C,
            packet: Packet::ConnAck(ConnAck::default()),
            bytes: vec![0x20, 0x03, 0x00, 0x00, 0x00],
        },
        Vector {
            name: "5.0 CONNACK with server capabilities",
            version: V5,
            direction: S2C,
            packet: Packet::ConnAck(ConnAck {
                session_present: true,
                reason_code: ReasonCode::SUCCESS,
                properties: properties(|p| {
                    p.assigned_client_identifier = Some("id".into());
                    p.server_keep_alive_s = Some(30);
                    p.topic_alias_maximum = Some(10);
                    p.maximum_qos = Some(QoS::AtLeastOnce);
                    p.retain_available = Some(false);
                }),
            }),
            bytes: vec![
                0x20, 0x12, // CONNACK, remaining length 18
                0x01, 0x00, // session present, success
                0x0F, // property length 15
                0x12, 0x00, 0x02, b'i', b'd', // assigned client identifier
                0x13, 0x00, 0x1E, // server keep alive 30 s
                0x22, 0x00, 0x0A, // topic alias maximum 10
                0x24, 0x01, // maximum QoS 1
                0x25, 0x00, // retain not available
            ],
        },
        Vector {
            name: "5.0 CONNACK refused: bad user name or password",
            version: V5,
            direction: S2C,
            packet: Packet::ConnAck(ConnAck {
                reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                ..ConnAck::default()
            }),
            bytes: vec![0x20, 0x03, 0x00, 0x86, 0x00],
        },
        Vector {
            name: "5.0 PUBLISH QoS 0, no properties",
            version: V5,
            direction: C2S,
            packet: Packet::Publish(Publish {
                topic: "a/b".into(),
                payload: bytes(b"hi"),
                ..Publish::default()
            }),
            bytes: vec![0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i'],
        },
        Vector {
            name: "5.0 PUBLISH QoS 1 with every PUBLISH property, server to client",
            version: V5,
            direction: S2C,
            packet: Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: "a/b".into(),
                packet_id: Some(1),
                properties: properties(|p| {
                    p.payload_format_indicator = Some(1);
                    p.message_expiry_interval_s = Some(10);
                    p.content_type = Some("text".into());
                    p.response_topic = Some("r".into());
                    p.correlation_data = Some(bytes(b"cd"));
                    p.subscription_identifiers = vec![5];
                    p.topic_alias = Some(1);
                    p.user_properties = user_property();
                }),
                payload: bytes(b"hi"),
                ..Publish::default()
            }),
            bytes: vec![
                0x32, 0x2D, // PUBLISH QoS 1, remaining length 45
                0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, // topic, packet id 1
                0x23, // property length 35
                0x01, 0x01, // payload format indicator: UTF-8
                0x02, 0x00, 0x00, 0x00, 0x0A, // message expiry 10 s
                0x03, 0x00, 0x04, b't', b'e', b'x', b't', // content type
                0x08, 0x00, 0x01, b'r', // response topic
                0x09, 0x00, 0x02, b'c', b'd', // correlation data
                0x0B, 0x05, // subscription identifier 5
                0x23, 0x00, 0x01, // topic alias 1
                0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
                b'h', b'i',
            ],
        },
        Vector {
            name: "5.0 PUBLISH with a topic alias and an empty topic name",
            version: V5,
            direction: C2S,
            packet: Packet::Publish(Publish {
                topic: ByteStr::new(),
                properties: properties(|p| p.topic_alias = Some(5)),
                payload: bytes(b"x"),
                ..Publish::default()
            }),
            bytes: vec![0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'x'],
        },
        Vector {
            name: "5.0 PUBACK short form (success, no properties: remaining length 2)",
            version: V5,
            direction: C2S,
            packet: Packet::PubAck(PublishAck::new(1)),
            bytes: vec![0x40, 0x02, 0x00, 0x01],
        },
        Vector {
            name: "5.0 PUBACK reason code only (remaining length 3)",
            version: V5,
            direction: S2C,
            packet: Packet::PubAck(PublishAck {
                reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
                ..PublishAck::new(1)
            }),
            bytes: vec![0x40, 0x03, 0x00, 0x01, 0x10],
        },
        Vector {
            name: "5.0 PUBACK with reason code and reason string",
            version: V5,
            direction: S2C,
            packet: Packet::PubAck(PublishAck {
                packet_id: 1,
                reason_code: ReasonCode::NOT_AUTHORIZED,
                properties: properties(|p| p.reason_string = Some("no".into())),
            }),
            bytes: vec![0x40, 0x09, 0x00, 0x01, 0x87, 0x05, 0x1F, 0x00, 0x02, b'n', b'o'],
        },
        Vector {
            name: "5.0 PUBREC short form",
            version: V5,
            direction: C2S,
            packet: Packet::PubRec(PublishAck::new(1)),
            bytes: vec![0x50, 0x02, 0x00, 0x01],
        },
        Vector {
            name: "5.0 PUBREL packet identifier not found",
            version: V5,
            direction: C2S,
            packet: Packet::PubRel(PublishAck {
                reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                ..PublishAck::new(1)
            }),
            bytes: vec![0x62, 0x03, 0x00, 0x01, 0x92],
        },
        Vector {
            name: "5.0 PUBCOMP short form",
            version: V5,
            direction: S2C,
            packet: Packet::PubComp(PublishAck::new(1)),
            bytes: vec![0x70, 0x02, 0x00, 0x01],
        },
        Vector {
            name: "5.0 SUBSCRIBE with subscription identifier, options and a shared filter",
            version: V5,
            direction: C2S,
            packet: Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: properties(|p| p.subscription_identifiers = vec![7]),
                subscriptions: vec![
                    Subscription {
                        filter: "a/+".into(),
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: true,
                            retain_as_published: true,
                            retain_handling: RetainHandling::DoNotSend,
                        },
                    },
                    Subscription {
                        filter: "$share/g/x".into(),
                        options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                    },
                ],
            }),
            bytes: vec![
                0x82, 0x18, // SUBSCRIBE, remaining length 24
                0x00, 0x01, // packet id
                0x02, 0x0B, 0x07, // properties: subscription identifier 7
                0x00, 0x03, b'a', b'/', b'+', 0x2D, // QoS 1, No Local, Retain As Published, Retain Handling 2
                0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'x', 0x02,
            ],
        },
        Vector {
            name: "5.0 SUBACK",
            version: V5,
            direction: S2C,
            packet: Packet::SubAck(SubAck {
                packet_id: 1,
                properties: Properties::default(),
                reason_codes: vec![
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::GRANTED_QOS_2,
                    ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                ],
            }),
            bytes: vec![0x90, 0x06, 0x00, 0x01, 0x00, 0x01, 0x02, 0xA2],
        },
        Vector {
            name: "5.0 UNSUBSCRIBE",
            version: V5,
            direction: C2S,
            packet: Packet::Unsubscribe(Unsubscribe {
                packet_id: 2,
                properties: Properties::default(),
                filters: vec!["a/+".into()],
            }),
            bytes: vec![0xA2, 0x08, 0x00, 0x02, 0x00, 0x00, 0x03, b'a', b'/', b'+'],
        },
        Vector {
            name: "5.0 UNSUBACK",
            version: V5,
            direction: S2C,
            packet: Packet::UnsubAck(UnsubAck {
                packet_id: 2,
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            }),
            bytes: vec![0xB0, 0x05, 0x00, 0x02, 0x00, 0x00, 0x11],
        },
        Vector {
            name: "5.0 PINGREQ",
            version: V5,
            direction: C2S,
            packet: Packet::PingReq,
            bytes: vec![0xC0, 0x00],
        },
        Vector {
            name: "5.0 PINGRESP",
            version: V5,
            direction: S2C,
            packet: Packet::PingResp,
            bytes: vec![0xD0, 0x00],
        },
        Vector {
            name: "5.0 DISCONNECT short form (normal, remaining length 0)",
            version: V5,
            direction: C2S,
            packet: Packet::Disconnect(Disconnect::default()),
            bytes: vec![0xE0, 0x00],
        },
        Vector {
            name: "5.0 DISCONNECT with will message, reason code only",
            version: V5,
            direction: C2S,
            packet: Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
                ..Disconnect::default()
            }),
            bytes: vec![0xE0, 0x01, 0x04],
        },
        Vector {
            name: "5.0 DISCONNECT from the server: session taken over",
            version: V5,
            direction: S2C,
            packet: Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::SESSION_TAKEN_OVER,
                ..Disconnect::default()
            }),
            bytes: vec![0xE0, 0x01, 0x8E],
        },
        Vector {
            name: "5.0 DISCONNECT from the client setting session expiry 0",
            version: V5,
            direction: C2S,
            packet: Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::NORMAL_DISCONNECTION,
                properties: properties(|p| p.session_expiry_interval_s = Some(0)),
            }),
            bytes: vec![0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
        },
        Vector {
            name: "5.0 AUTH short form (success, remaining length 0)",
            version: V5,
            direction: S2C,
            packet: Packet::Auth(Auth::default()),
            bytes: vec![0xF0, 0x00],
        },
        Vector {
            name: "5.0 AUTH continue authentication",
            version: V5,
            direction: C2S,
            packet: Packet::Auth(Auth {
                reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: properties(|p| {
                    p.authentication_method = Some("SCRAM".into());
                    p.authentication_data = Some(bytes(&[1, 2]));
                }),
            }),
            bytes: vec![
                0xF0, 0x0F, 0x18, // AUTH, remaining length 15, continue authentication
                0x0D, // property length 13
                0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method
                0x16, 0x00, 0x02, 0x01, 0x02, // authentication data
            ],
        },
    ]
}

#[test]
fn every_packet_type_encodes_to_its_golden_bytes() {
    for vector in vectors() {
        let encoded = encode_to_bytes(&vector.packet, vector.version);
        assert_eq!(&encoded[..], &vector.bytes[..], "{}", vector.name);
    }
}

#[test]
fn every_golden_vector_decodes_to_its_packet() {
    for vector in vectors() {
        // A CONNECT is read before the version is known: it must fix the version itself.
        let version = match vector.packet {
            Packet::Connect(_) => None,
            _ => Some(vector.version),
        };
        let decoded = decode_one(&vector.bytes, &context(version, vector.direction))
            .unwrap_or_else(|error| panic!("{}: {error}", vector.name));
        assert_eq!(decoded, vector.packet, "{}", vector.name);
    }
}

#[test]
fn golden_vectors_cover_all_fifteen_packet_types_in_5_0_and_fourteen_in_3_1_1() {
    let mut v5 = std::collections::BTreeSet::new();
    let mut v3 = std::collections::BTreeSet::new();
    for vector in vectors() {
        match vector.version {
            V5 => v5.insert(vector.packet.packet_type()),
            _ => v3.insert(vector.packet.packet_type()),
        };
    }
    assert_eq!(v5.len(), 15);
    assert_eq!(v3.len(), 14, "3.1.1 has no AUTH");
}

/// Forms the encoder never writes (it picks the shortest), which a decoder must still read.
#[test]
fn long_forms_of_5_0_acks_and_disconnect_decode_to_the_same_packet_as_the_short_forms() {
    let v5_client = context(Some(V5), C2S);
    let cases: [(&[u8], Packet); 4] = [
        (&[0x40, 0x03, 0x00, 0x01, 0x00], Packet::PubAck(PublishAck::new(1))),
        (
            &[0x40, 0x04, 0x00, 0x01, 0x00, 0x00],
            Packet::PubAck(PublishAck::new(1)),
        ),
        (&[0xE0, 0x01, 0x00], Packet::Disconnect(Disconnect::default())),
        (&[0xE0, 0x02, 0x00, 0x00], Packet::Disconnect(Disconnect::default())),
    ];
    for (bytes, expected) in cases {
        assert_eq!(decode_one(bytes, &v5_client).unwrap(), expected, "{bytes:02X?}");
    }
}

#[test]
fn a_utf8_bom_at_the_start_of_a_topic_is_kept_not_stripped() {
    // 5.0 MQTT-1.5.4-3 / 3.1.1 MQTT-1.5.3-3: EF BB BF is U+FEFF wherever it appears.
    let bytes = [0x30, 0x07, 0x00, 0x04, 0xEF, 0xBB, 0xBF, b'a', b'x'];
    let Packet::Publish(publish) = decode_one(&bytes, &context(Some(V3_1_1), C2S)).unwrap() else {
        panic!("a PUBLISH");
    };
    assert_eq!(publish.topic, "\u{FEFF}a");
    assert_eq!(encode_to_bytes(&Packet::Publish(publish), V3_1_1)[..], bytes[..]);
}

#[test]
fn a_packet_arriving_in_pieces_needs_more_bytes_until_it_is_whole() {
    let bytes = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
    let context = context(Some(V3_1_1), C2S);
    let mut buf = bytes::BytesMut::new();
    for (index, byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let result = decode(&mut buf, &context).unwrap();
        assert_eq!(result.is_some(), index == bytes.len() - 1, "after {} bytes", index + 1);
    }
    assert!(buf.is_empty());
}

/// The seeds of the `decode` fuzz target (`fuzz/seeds/decode/`): every golden vector, as the
/// target reads its input (a selector byte for version, direction and size limit, then the
/// bytes). The committed files must be exactly these; `MQTT_HARNESS_WRITE_SEEDS=1` rewrites them.
#[test]
fn the_decode_fuzz_seeds_are_the_golden_vectors() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/decode");
    let mut expected = std::collections::BTreeMap::new();
    for vector in vectors() {
        // A CONNECT is read before any version is known (selector version 0).
        let version_bits = match (&vector.packet, vector.version) {
            (Packet::Connect(_), _) => 0,
            (_, V3_1) => 1,
            (_, V3_1_1) => 2,
            (_, V5) => 3,
        };
        let direction_bit = if vector.direction == S2C { 0x04 } else { 0 };
        let mut input = vec![version_bits | direction_bit | 0x08];
        input.extend_from_slice(&vector.bytes);
        let name: String = vector
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        assert!(
            expected.insert(name.clone(), input).is_none(),
            "two vectors named {name}"
        );
    }
    if std::env::var_os("MQTT_HARNESS_WRITE_SEEDS").is_some() {
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("create the seeds directory");
        for (name, input) in &expected {
            std::fs::write(directory.join(name), input).expect("write a seed");
        }
    }
    let mut found = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&directory).expect("fuzz/seeds/decode exists") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        found.insert(name, std::fs::read(entry.path()).expect("a seed reads"));
    }
    assert!(
        found == expected,
        "fuzz/seeds/decode differs from the golden vectors: rewrite it with MQTT_HARNESS_WRITE_SEEDS=1 cargo test -p mqtt-protocol --test it the_decode_fuzz_seeds"
    );
}
