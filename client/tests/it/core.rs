//! The sans-IO client core, told the time. Goal: the client's protocol behaviour (keep alive,
//! what it obeys in CONNACK, session present handling, resend on resume, topic aliases, server
//! limits) exactly, with no sockets and no waiting. Method: drive `ClientCore` with packets and
//! instants; read what it transmits and reports. Time here is `tokio::time::Instant` values made
//! by adding durations to one start instant; no clock is read after that.

use std::time::Duration;

use bytes::Bytes;
use mqtt_client::core::{ClientCore, Close, Event, Message, RequestError};
use mqtt_client::ConnectOptions;
use mqtt_protocol::*;
use tokio::time::Instant;

fn seconds(value: u64) -> Duration {
    Duration::from_secs(value)
}

fn connack(session_present: bool, properties: Properties) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        reason_code: ReasonCode::SUCCESS,
        properties,
    })
}

/// Everything the core wants to write now.
fn drain(core: &mut ClientCore, now: Instant) -> Vec<Packet> {
    std::iter::from_fn(|| core.poll_transmit(now)).collect()
}

fn events(core: &mut ClientCore) -> Vec<Event> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn connected(options: ConnectOptions, now: Instant, properties: Properties) -> ClientCore {
    let mut core = ClientCore::new(options);
    core.connect(now);
    let sent = drain(&mut core, now);
    assert!(matches!(sent[..], [Packet::Connect(_)]), "{sent:?}");
    core.handle_packet(now, connack(false, properties)).unwrap();
    core
}

#[test]
fn idle_connection_sends_pingreq_after_one_keep_alive_and_not_before() {
    let start = Instant::now();
    let mut core = connected(ConnectOptions::new("c").keep_alive_s(10), start, Properties::default());
    assert_eq!(core.poll_timeout(), Some(start + seconds(10)));
    core.handle_timeout(start + seconds(9)).unwrap();
    assert!(drain(&mut core, start + seconds(9)).is_empty());
    core.handle_timeout(start + seconds(10)).unwrap();
    assert_eq!(drain(&mut core, start + seconds(10)), [Packet::PingReq]);
}

#[test]
fn a_server_that_never_answers_pingreq_is_declared_dead_after_the_ping_timeout() {
    let start = Instant::now();
    let mut options = ConnectOptions::new("c").keep_alive_s(2);
    options.ping_timeout = Duration::from_millis(1500);
    let mut core = connected(options, start, Properties::default());
    core.handle_timeout(start + seconds(2)).unwrap();
    assert_eq!(drain(&mut core, start + seconds(2)), [Packet::PingReq]);
    assert_eq!(core.poll_timeout(), Some(start + Duration::from_millis(3500)));
    core.handle_timeout(start + Duration::from_millis(3499)).unwrap();
    let close = core.handle_timeout(start + Duration::from_millis(3500)).unwrap_err();
    assert_eq!(close, Close::KeepAliveTimeout(Duration::from_millis(1500)));
}

#[test]
fn pingresp_clears_the_wait_and_the_next_ping_is_one_keep_alive_after_the_last_send() {
    let start = Instant::now();
    let mut core = connected(ConnectOptions::new("c").keep_alive_s(4), start, Properties::default());
    core.handle_timeout(start + seconds(4)).unwrap();
    drain(&mut core, start + seconds(4));
    core.handle_packet(start + seconds(5), Packet::PingResp).unwrap();
    assert_eq!(core.poll_timeout(), Some(start + seconds(8)));
}

#[test]
fn server_keep_alive_replaces_the_clients_keep_alive() {
    // 5.0 MQTT-3.2.2-21.
    let start = Instant::now();
    let properties = Properties::from(PropertyFields {
        server_keep_alive_s: Some(3),
        ..PropertyFields::default()
    });
    let mut core = connected(ConnectOptions::new("c").keep_alive_s(60), start, properties);
    assert_eq!(core.keep_alive(), Some(seconds(3)));
    core.handle_timeout(start + seconds(3)).unwrap();
    assert_eq!(drain(&mut core, start + seconds(3)), [Packet::PingReq]);
}

#[test]
fn no_connack_within_the_connect_timeout_closes() {
    let start = Instant::now();
    let mut core = ClientCore::new(ConnectOptions::new("c"));
    core.connect(start);
    assert!(core.handle_timeout(start + seconds(9)).is_ok());
    assert_eq!(
        core.handle_timeout(start + seconds(10)),
        Err(Close::ConnectTimeout(seconds(10)))
    );
}

#[test]
fn an_assigned_client_identifier_is_adopted_for_the_next_connect() {
    let start = Instant::now();
    let properties = Properties::from(PropertyFields {
        assigned_client_identifier: Some("auto-7".into()),
        ..PropertyFields::default()
    });
    let mut core = connected(ConnectOptions::new(""), start, properties);
    assert_eq!(core.client_id(), "auto-7");
    core.handle_connection_lost(start);
    core.connect(start);
    let Packet::Connect(connect) = &drain(&mut core, start)[0] else {
        panic!("a CONNECT")
    };
    assert_eq!(connect.client_id, "auto-7");
}

#[test]
fn the_servers_maximum_qos_and_retain_available_bound_what_the_client_publishes() {
    // 5.0 MQTT-3.2.2-11 and MQTT-3.2.2-14: refused before anything is sent.
    let properties = Properties::from(PropertyFields {
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        ..PropertyFields::default()
    });
    let mut core = connected(ConnectOptions::new("c"), Instant::now(), properties);
    let qos2 = Message::new("t", "x", QoS::ExactlyOnce);
    assert_eq!(
        core.publish(qos2),
        Err(RequestError::QoSNotSupported {
            maximum: QoS::AtLeastOnce
        })
    );
    let retained = Message {
        retain: true,
        ..Message::new("t", "x", QoS::AtMostOnce)
    };
    assert_eq!(core.publish(retained), Err(RequestError::RetainNotSupported));
}

#[test]
fn the_servers_maximum_packet_size_bounds_what_the_client_publishes() {
    // 5.0 MQTT-3.2.2-15.
    let properties = Properties::from(PropertyFields {
        maximum_packet_size: Some(64),
        ..PropertyFields::default()
    });
    let mut core = connected(ConnectOptions::new("c"), Instant::now(), properties);
    let big = Message::new("t", Bytes::from(vec![0u8; 100]), QoS::AtMostOnce);
    assert!(matches!(
        core.publish(big),
        Err(RequestError::PacketTooLarge { maximum: 64, .. })
    ));
    assert!(core.publish(Message::new("t", "small", QoS::AtMostOnce)).is_ok());
}

#[test]
fn the_servers_receive_maximum_holds_back_publishes_until_an_ack_frees_a_slot() {
    let now = Instant::now();
    let properties = Properties::from(PropertyFields {
        receive_maximum: Some(2),
        ..PropertyFields::default()
    });
    let mut core = connected(ConnectOptions::new("c"), now, properties);
    for index in 0..3 {
        core.publish(Message::new("t", format!("m{index}"), QoS::AtLeastOnce))
            .unwrap();
    }
    let sent = drain(&mut core, now);
    assert_eq!(sent.len(), 2, "only the window goes out: {sent:?}");
    assert_eq!(core.pending_count(), 1);
    let Packet::Publish(first) = &sent[0] else {
        panic!("a PUBLISH")
    };
    core.handle_packet(now, Packet::PubAck(PublishAck::new(first.packet_id.unwrap())))
        .unwrap();
    let sent = drain(&mut core, now);
    assert!(
        matches!(&sent[..], [Packet::Publish(publish)] if publish.payload == "m2"),
        "{sent:?}"
    );
    assert!(events(&mut core)
        .iter()
        .any(|event| matches!(event, Event::Published { token: 1, .. })));
}

#[test]
fn resumed_session_resends_unacknowledged_publish_with_dup_and_the_same_id_then_pubrel() {
    let now = Instant::now();
    let options = ConnectOptions::new("c").session_expiry_interval_s(60);
    let mut core = connected(options, now, Properties::default());
    core.publish(Message::new("t", "one", QoS::AtLeastOnce)).unwrap();
    core.publish(Message::new("t", "two", QoS::ExactlyOnce)).unwrap();
    let sent = drain(&mut core, now);
    let ids: Vec<u16> = sent
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.packet_id.unwrap(),
            _ => 0,
        })
        .collect();
    core.handle_packet(now, Packet::PubRec(PublishAck::new(ids[1])))
        .unwrap();
    assert!(matches!(drain(&mut core, now)[..], [Packet::PubRel(_)]));

    core.handle_connection_lost(now);
    core.connect(now);
    let Packet::Connect(connect) = &drain(&mut core, now)[0] else {
        panic!("a CONNECT")
    };
    assert!(
        !connect.clean_start,
        "a reconnect that holds session state must resume it"
    );
    core.handle_packet(now, connack(true, Properties::default())).unwrap();
    let resent = drain(&mut core, now);
    assert!(
        matches!(&resent[0], Packet::Publish(p) if p.dup && p.packet_id == Some(ids[0]) && p.payload == "one"),
        "{resent:?}"
    );
    assert!(
        matches!(&resent[1], Packet::PubRel(ack) if ack.packet_id == ids[1]),
        "{resent:?}"
    );
    assert_eq!(resent.len(), 2);
}

#[test]
fn session_present_after_a_clean_start_closes_the_connection() {
    // 5.0 MQTT-3.2.2-4: the client holds no state after Clean Start 1, so Session Present 1 (which
    // the server must not send then, MQTT-3.2.2-2) closes.
    let now = Instant::now();
    let mut core = ClientCore::new(ConnectOptions::new("c").session_expiry_interval_s(60));
    core.connect(now);
    drain(&mut core, now);
    assert_eq!(
        core.handle_packet(now, connack(true, Properties::default())),
        Err(Close::SessionPresentWithoutState)
    );
}

#[test]
fn a_new_client_asking_to_resume_accepts_the_session_the_server_kept() {
    // Clean Start 0 with a persistent session declares the client holds that session's state
    // (empty for a new process): Session Present 1 is what it asked for.
    let now = Instant::now();
    let mut core = ClientCore::new(
        ConnectOptions::new("c")
            .clean_start(false)
            .session_expiry_interval_s(60),
    );
    core.connect(now);
    let Packet::Connect(connect) = &drain(&mut core, now)[0] else {
        panic!("a CONNECT")
    };
    assert!(!connect.clean_start);
    core.handle_packet(now, connack(true, Properties::default())).unwrap();
    assert!(core.is_connected());
}

#[test]
fn no_session_present_when_the_client_holds_state_discards_that_state() {
    // 5.0 MQTT-3.2.2-5: the in-flight message is dropped, not resent.
    let now = Instant::now();
    let mut core = connected(
        ConnectOptions::new("c").session_expiry_interval_s(60),
        now,
        Properties::default(),
    );
    core.publish(Message::new("t", "lost", QoS::AtLeastOnce)).unwrap();
    drain(&mut core, now);
    core.handle_connection_lost(now);
    core.connect(now);
    drain(&mut core, now);
    core.handle_packet(now, connack(false, Properties::default())).unwrap();
    assert!(drain(&mut core, now).is_empty());
    let events = events(&mut core);
    assert!(events.contains(&Event::PublishDropped { token: 1 }), "{events:?}");
    assert!(
        events.contains(&Event::SessionDiscarded {
            inflight_dropped_count: 1
        }),
        "{events:?}"
    );
}

#[test]
fn outgoing_topic_aliases_are_assigned_per_connection_and_never_carried_over() {
    let now = Instant::now();
    let mut options = ConnectOptions::new("c").session_expiry_interval_s(60);
    options.outgoing_topic_aliases = true;
    let properties = Properties::from(PropertyFields {
        topic_alias_maximum: Some(1),
        ..PropertyFields::default()
    });
    let mut core = connected(options, now, properties.clone());
    for payload in ["a", "b"] {
        core.publish(Message::new("long/topic", payload, QoS::AtLeastOnce))
            .unwrap();
    }
    core.publish(Message::new("other", "c", QoS::AtMostOnce)).unwrap();
    let sent = drain(&mut core, now);
    let shape: Vec<(String, Option<u16>)> = sent
        .iter()
        .map(|packet| match packet {
            Packet::Publish(p) => (p.topic.to_string(), p.properties.topic_alias),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("long/topic".into(), Some(1)),
            (String::new(), Some(1)),
            ("other".into(), None)
        ]
    );

    // After a reconnect the resent messages carry their topic again: the old mapping is gone.
    core.handle_connection_lost(now);
    core.connect(now);
    drain(&mut core, now);
    core.handle_packet(now, connack(true, properties)).unwrap();
    let resent = drain(&mut core, now);
    assert!(
        matches!(&resent[0], Packet::Publish(p) if p.topic == "long/topic" && p.dup),
        "{resent:?}"
    );
}

#[test]
fn incoming_topic_aliases_resolve_and_an_unknown_alias_is_a_protocol_error() {
    let now = Instant::now();
    let mut options = ConnectOptions::new("c");
    options.topic_alias_maximum = Some(4);
    let mut core = connected(options, now, Properties::default());
    let aliased = |topic: &str, alias: u16| {
        Packet::Publish(Publish {
            topic: topic.into(),
            properties: Properties::from(PropertyFields {
                topic_alias: Some(alias),
                ..PropertyFields::default()
            }),
            ..Publish::default()
        })
    };
    core.handle_packet(now, aliased("a/b", 2)).unwrap();
    core.handle_packet(now, aliased("", 2)).unwrap();
    let topics: Vec<String> = events(&mut core)
        .into_iter()
        .filter_map(|event| match event {
            Event::Message(publish) => Some(publish.topic.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["a/b", "a/b"]);
    let close = core.handle_packet(now, aliased("", 3)).unwrap_err();
    assert!(matches!(
        close,
        Close::ProtocolViolation {
            reason_code: Some(ReasonCode::PROTOCOL_ERROR),
            ..
        }
    ));
    assert!(matches!(
        drain(&mut core, now)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::PROTOCOL_ERROR,
            ..
        })]
    ));
}

#[test]
fn an_alias_above_the_clients_topic_alias_maximum_is_topic_alias_invalid() {
    let now = Instant::now();
    let mut core = connected(ConnectOptions::new("c"), now, Properties::default());
    let publish = Publish {
        topic: "a".into(),
        properties: Properties::from(PropertyFields {
            topic_alias: Some(1),
            ..PropertyFields::default()
        }),
        ..Publish::default()
    };
    let close = core.handle_packet(now, Packet::Publish(publish)).unwrap_err();
    assert!(matches!(
        close,
        Close::ProtocolViolation {
            reason_code: Some(ReasonCode::TOPIC_ALIAS_INVALID),
            ..
        }
    ));
}

#[test]
fn a_qos2_message_resent_by_the_server_is_delivered_once() {
    let now = Instant::now();
    let mut core = connected(ConnectOptions::new("c"), now, Properties::default());
    let publish = Publish {
        qos: QoS::ExactlyOnce,
        topic: "t".into(),
        packet_id: Some(9),
        ..Publish::default()
    };
    core.handle_packet(now, Packet::Publish(publish.clone())).unwrap();
    core.handle_packet(now, Packet::Publish(Publish { dup: true, ..publish }))
        .unwrap();
    core.handle_packet(now, Packet::PubRel(PublishAck::new(9))).unwrap();
    let messages = events(&mut core)
        .into_iter()
        .filter(|event| matches!(event, Event::Message(_)))
        .count();
    assert_eq!(messages, 1);
    let sent = drain(&mut core, now);
    assert!(
        matches!(&sent[..], [Packet::PubRec(_), Packet::PubRec(_), Packet::PubComp(c)] if c.reason_code == ReasonCode::SUCCESS)
    );
}

#[test]
fn a_refused_connack_ends_the_attempt_and_is_not_worth_retrying() {
    let now = Instant::now();
    let mut core = ClientCore::new(ConnectOptions::new("c"));
    core.connect(now);
    drain(&mut core, now);
    let refused = Packet::ConnAck(ConnAck {
        reason_code: ReasonCode::NOT_AUTHORIZED,
        ..ConnAck::default()
    });
    let close = core.handle_packet(now, refused).unwrap_err();
    assert_eq!(close, Close::Refused(ReasonCode::NOT_AUTHORIZED));
    assert!(!close.is_retryable());
}

#[test]
fn a_packet_before_connack_is_a_protocol_violation() {
    let now = Instant::now();
    let mut core = ClientCore::new(ConnectOptions::new("c"));
    core.connect(now);
    drain(&mut core, now);
    assert!(matches!(
        core.handle_packet(now, Packet::PingResp),
        Err(Close::ProtocolViolation { .. })
    ));
}

#[test]
fn a_clean_session_3_1_1_client_keeps_no_state_across_connections() {
    let now = Instant::now();
    let options = ConnectOptions::new("c").version(ProtocolVersion::V3_1_1);
    let mut core = connected(options, now, Properties::default());
    core.publish(Message::new("t", "x", QoS::AtLeastOnce)).unwrap();
    drain(&mut core, now);
    core.handle_connection_lost(now);
    assert!(events(&mut core).contains(&Event::PublishDropped { token: 1 }));
    assert_eq!(core.inflight_count(), 0);
}

#[test]
fn reconnect_backoff_doubles_from_the_initial_delay_and_stops_at_the_maximum() {
    let policy = mqtt_client::ReconnectPolicy {
        delay_initial: Duration::from_millis(100),
        delay_max: Duration::from_secs(1),
        attempts_max: 50,
    };
    let delays: Vec<u128> = (0..6).map(|attempt| policy.delay(attempt).as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(
        policy.delay(u32::MAX),
        Duration::from_secs(1),
        "no overflow however long it runs"
    );
}

/// Found by the client_core fuzz target: a server that announced a Maximum Packet Size of 1 got a
/// 2-byte PINGREQ. Nothing past the server's maximum goes out (5.0 MQTT-3.2.2-15): the packet is
/// dropped and the connection ends, due at once.
#[test]
fn a_packet_past_the_servers_maximum_packet_size_is_not_sent_and_the_connection_ends() {
    let start = Instant::now();
    let properties = Properties::from(PropertyFields {
        maximum_packet_size: Some(1),
        ..PropertyFields::default()
    });
    let mut core = connected(ConnectOptions::new("c").keep_alive_s(10), start, properties);
    core.handle_timeout(start + seconds(10)).unwrap();
    assert!(
        drain(&mut core, start + seconds(10)).is_empty(),
        "the PINGREQ must not go out"
    );
    assert_eq!(
        core.poll_timeout(),
        Some(start + seconds(10)),
        "the close is due at once"
    );
    match core.handle_timeout(start + seconds(10)) {
        Err(Close::ProtocolViolation { description, .. }) => {
            assert!(description.contains("Maximum Packet Size of 1"), "{description}")
        }
        other => panic!("expected the connection to end, got {other:?}"),
    }
}
