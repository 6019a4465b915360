//! The sans-IO broker core, told the time. Goal: every behaviour of the broker exactly, instant by
//! instant, with no sockets. Method: the harness drives `Broker` with packets and a clock made of
//! millisecond offsets, and checks every packet the core sends is valid for its version.

use std::time::Duration;

use bytes::Bytes;
use mqtt_broker::Config;
use mqtt_protocol::*;

use crate::harness::{connect, payloads, qos, Harness};

use ProtocolVersion::{V3_1_1, V5};

/// A 5.0 CONNECT of `client_id` with a Session Expiry Interval.
fn persistent(client_id: &str, session_expiry_interval_s: u32, clean_start: bool) -> Connect {
    let properties = PropertyFields {
        session_expiry_interval_s: Some(session_expiry_interval_s),
        ..PropertyFields::default()
    };
    Connect {
        clean_start,
        properties: properties.into(),
        ..connect(V5, client_id)
    }
}

fn harness() -> Harness {
    Harness::new(Config::default())
}

fn options(value: u8) -> SubscriptionOptions {
    SubscriptionOptions::with_qos(qos(value))
}

// ---- CONNECT -------------------------------------------------------------------------------

#[test]
fn connack_advertises_limits_and_declined_features_and_never_restates_a_default() {
    let mut h = harness();
    let (_, connack) = h.connect_with(connect(V5, "c"));
    assert_eq!(
        (connack.reason_code, connack.session_present),
        (ReasonCode::SUCCESS, false)
    );
    let p = &connack.properties;
    assert_eq!(p.receive_maximum, Some(1024));
    assert_eq!(p.maximum_packet_size, Some(1024 * 1024));
    assert_eq!(p.topic_alias_maximum, Some(64));
    assert_eq!(p.maximum_qos, None, "Maximum QoS 2 is announced by leaving it out");
    assert_eq!(
        (
            p.retain_available,
            p.wildcard_subscription_available,
            p.subscription_identifier_available,
            p.shared_subscription_available
        ),
        (None, None, None, None),
        "absent means available (5.0 §3.2.2.3.5, .11, .12, .13): 1 would only restate it"
    );

    let mut declining = Harness::new(Config {
        receive_maximum: u16::MAX,
        maximum_packet_size: 268_435_460,
        topic_alias_maximum: 0,
        retain_available: false,
        wildcard_subscription_available: false,
        subscription_identifier_available: false,
        shared_subscription_available: false,
        ..Config::default()
    });
    let (_, connack) = declining.connect_with(connect(V5, "c"));
    let p = &connack.properties;
    assert_eq!(
        (p.receive_maximum, p.maximum_packet_size, p.topic_alias_maximum),
        (None, None, None),
        "65535, the protocol's own limit and 0 are the defaults"
    );
    assert_eq!(
        (
            p.retain_available,
            p.wildcard_subscription_available,
            p.subscription_identifier_available,
            p.shared_subscription_available
        ),
        (Some(false), Some(false), Some(false), Some(false))
    );
}

#[test]
fn maximum_qos_is_announced_only_as_0_or_1() {
    let mut h = Harness::new(Config {
        maximum_qos: QoS::AtLeastOnce,
        ..Config::default()
    });
    let (_, connack) = h.connect_with(connect(V5, "c"));
    assert_eq!(connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
}

#[test]
fn an_empty_5_0_client_id_is_assigned_one_with_any_clean_start() {
    let mut h = harness();
    for clean_start in [true, false] {
        let (_, connack) = h.connect_with(Connect {
            clean_start,
            ..connect(V5, "")
        });
        let assigned = connack
            .properties
            .assigned_client_identifier
            .clone()
            .expect("5.0 MQTT-3.2.2-16");
        assert!(!assigned.is_empty());
    }
}

#[test]
fn an_empty_3_1_1_client_id_with_clean_session_0_is_refused_with_0x02_and_closed() {
    let mut h = harness();
    let (connection, connack) = h.connect_with(Connect {
        clean_start: false,
        ..connect(V3_1_1, "")
    });
    // 0x85 is carried as 3.1.1's return code 0x02 (MQTT-3.1.3-8).
    assert_eq!(connack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert_eq!(connack.reason_code.to_v3_connack(), Some(0x02));
    assert!(h.is_closed(connection));
    let (_, accepted) = h.connect_with(connect(V3_1_1, ""));
    assert_eq!(accepted.reason_code, ReasonCode::SUCCESS);
    assert_eq!(
        accepted.properties.assigned_client_identifier, None,
        "3.1.1 has no such property"
    );
}

#[test]
fn a_second_connect_is_a_protocol_error() {
    let mut h = harness();
    let connection = h.connect("c");
    h.packet(connection, Packet::Connect(Box::new(connect(V5, "c"))));
    assert!(matches!(
        h.take(connection)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::PROTOCOL_ERROR,
            ..
        })]
    ));
    assert!(h.is_closed(connection));
}

#[test]
fn no_connect_within_the_connect_timeout_closes_the_connection_without_a_packet() {
    let mut h = harness();
    let connection = h.open();
    h.advance_ms(9_999);
    assert!(!h.is_closed(connection));
    h.advance_ms(1);
    assert!(h.is_closed(connection));
    assert!(
        h.take(connection).is_empty(),
        "no DISCONNECT before CONNACK (5.0 MQTT-3.14.0-1)"
    );
}

#[test]
fn connections_beyond_the_maximum_are_refused_with_the_code_of_each_version() {
    let mut h = Harness::new(Config {
        connections_max: 1,
        ..Config::default()
    });
    h.connect("first");
    let (c5, connack5) = h.connect_with(connect(V5, "second"));
    assert_eq!(connack5.reason_code, ReasonCode::SERVER_BUSY);
    let (c3, connack3) = h.connect_with(connect(V3_1_1, "third"));
    assert_eq!(
        connack3.reason_code.to_v3_connack(),
        Some(0x03),
        "3.1.1: Server unavailable"
    );
    assert!(h.is_closed(c5) && h.is_closed(c3));
}

// ---- keep alive ----------------------------------------------------------------------------

#[test]
fn a_silent_client_is_closed_at_exactly_one_and_a_half_keep_alives() {
    let mut h = harness();
    let (connection, _) = h.connect_with(Connect {
        keep_alive_s: 10,
        ..connect(V5, "c")
    });
    h.advance_ms(14_999);
    assert!(!h.is_closed(connection), "closed before 1.5 x keep alive");
    h.advance_ms(1);
    assert!(h.is_closed(connection), "5.0 MQTT-3.1.2-22");
    assert!(matches!(
        h.take(connection)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::KEEP_ALIVE_TIMEOUT,
            ..
        })]
    ));
}

#[test]
fn every_packet_from_the_client_restarts_the_keep_alive() {
    let mut h = harness();
    let (connection, _) = h.connect_with(Connect {
        keep_alive_s: 2,
        ..connect(V3_1_1, "c")
    });
    for _ in 0..5 {
        h.advance_ms(2_900);
        h.packet(connection, Packet::PingReq);
        assert_eq!(h.take(connection), [Packet::PingResp]);
    }
    assert!(!h.is_closed(connection));
    h.advance_ms(3_000);
    assert!(h.is_closed(connection));
    assert!(h.take(connection).is_empty(), "3.1.1 has no DISCONNECT from the server");
}

#[test]
fn server_keep_alive_overrides_the_clients_and_is_announced() {
    let mut h = Harness::new(Config {
        server_keep_alive_s: Some(4),
        ..Config::default()
    });
    let (connection, connack) = h.connect_with(Connect {
        keep_alive_s: 100,
        ..connect(V5, "c")
    });
    assert_eq!(connack.properties.server_keep_alive_s, Some(4));
    h.advance_ms(6_000);
    assert!(h.is_closed(connection));
}

#[test]
fn a_3_1_1_client_keeps_its_own_keep_alive_whatever_the_server_keep_alive() {
    // 3.1.1 cannot tell a client another keep alive, so the client's own is the one in force
    // (3.1.1 MQTT-3.1.2-24).
    let mut h = Harness::new(Config {
        server_keep_alive_s: Some(4),
        ..Config::default()
    });
    let (connection, _) = h.connect_with(Connect {
        keep_alive_s: 10,
        ..connect(V3_1_1, "c")
    });
    h.advance_ms(14_999);
    assert!(!h.is_closed(connection), "closed on the server's keep alive");
    h.advance_ms(1);
    assert!(h.is_closed(connection));
}

#[test]
fn the_keep_alive_cap_is_told_to_a_5_0_client_asking_for_more_or_for_none() {
    let config = Config {
        keep_alive_max_s: Some(30),
        ..Config::default()
    };
    for (asked, told) in [(100, Some(30)), (0, Some(30)), (30, None), (10, None)] {
        let mut h = Harness::new(config.clone());
        let (connection, connack) = h.connect_with(Connect {
            keep_alive_s: asked,
            ..connect(V5, "c")
        });
        assert_eq!(connack.properties.server_keep_alive_s, told, "asked for {asked} s");
        // The keep alive in force is the one told, or the client's own: closed after 1.5 times it.
        let in_force = u64::from(told.unwrap_or(asked));
        if in_force > 0 {
            h.advance_ms(in_force * 1500 - 1);
            assert!(!h.is_closed(connection), "asked for {asked} s: closed early");
            h.advance_ms(1);
            assert!(
                h.is_closed(connection),
                "asked for {asked} s: not closed at 1.5 times {in_force} s"
            );
        }
    }
    // 3.1.1 cannot be told: the client keeps its own keep alive, longer than the cap.
    let mut h = Harness::new(config);
    let (connection, _) = h.connect_with(Connect {
        keep_alive_s: 100,
        ..connect(V3_1_1, "c")
    });
    h.advance_ms(149_999);
    assert!(
        !h.is_closed(connection),
        "a 3.1.1 client was held to the cap it was never told"
    );
    h.advance_ms(1);
    assert!(h.is_closed(connection));
}

// ---- QoS and routing -----------------------------------------------------------------------

#[test]
fn messages_are_delivered_at_the_minimum_of_published_and_granted_qos() {
    let mut h = harness();
    let subscriber = h.connect("s");
    let suback = h.subscribe(subscriber, "t/#", options(1));
    assert_eq!(suback.reason_codes, [ReasonCode::GRANTED_QOS_1]);
    let publisher = h.connect("p");
    for (index, level) in [0u8, 1, 2].into_iter().enumerate() {
        h.publish(publisher, "t/x", &format!("m{index}"), qos(level), 10 + index as u16);
    }
    let acks = h.take(publisher);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a), Packet::PubRec(r)] if a.packet_id == 11 && r.packet_id == 12),
        "{acks:?}"
    );
    let delivered = h.publishes(subscriber);
    let levels: Vec<QoS> = delivered.iter().map(|p| p.qos).collect();
    assert_eq!(levels, [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtLeastOnce]);
    assert!(delivered.iter().all(|p| !p.retain && !p.dup));
}

#[test]
fn a_qos2_message_is_delivered_once_even_when_resent_before_pubrel() {
    let mut h = harness();
    let subscriber = h.connect("s");
    h.subscribe(subscriber, "t", options(2));
    let publisher = h.connect("p");
    h.publish(publisher, "t", "once", QoS::ExactlyOnce, 7);
    let resend = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        topic: "t".into(),
        packet_id: Some(7),
        payload: Bytes::from_static(b"once"),
        ..Publish::default()
    };
    h.packet(publisher, Packet::Publish(resend));
    h.packet(publisher, Packet::PubRel(PublishAck::new(7)));
    assert!(
        matches!(&h.take(publisher)[..], [Packet::PubRec(_), Packet::PubRec(_), Packet::PubComp(c)] if c.reason_code == ReasonCode::SUCCESS)
    );
    assert_eq!(payloads(&h.publishes(subscriber)), ["once"]);
}

#[test]
fn overlapping_subscriptions_give_one_copy_at_the_highest_qos_with_every_identifier() {
    let mut h = harness();
    let subscriber = h.connect("s");
    let with_id = |id| {
        Properties::from(PropertyFields {
            subscription_identifiers: vec![id],
            ..PropertyFields::default()
        })
    };
    h.subscribe_with(
        subscriber,
        vec![Subscription {
            filter: "a/+".into(),
            options: options(0),
        }],
        with_id(1),
    );
    h.subscribe_with(
        subscriber,
        vec![Subscription {
            filter: "a/#".into(),
            options: options(1),
        }],
        with_id(2),
    );
    let publisher = h.connect("p");
    h.publish(publisher, "a/b", "x", QoS::AtLeastOnce, 1);
    let delivered = h.publishes(subscriber);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::AtLeastOnce);
    let mut ids = delivered[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn no_local_keeps_a_clients_own_messages_from_it() {
    let mut h = harness();
    let client = h.connect("c");
    h.subscribe(
        client,
        "t",
        SubscriptionOptions {
            no_local: true,
            ..options(0)
        },
    );
    h.publish(client, "t", "mine", QoS::AtMostOnce, 0);
    assert!(h.publishes(client).is_empty(), "5.0 MQTT-3.8.3-3");
}

#[test]
fn dollar_topics_are_not_matched_by_a_leading_wildcard() {
    let mut h = harness();
    let subscriber = h.connect("s");
    h.subscribe(subscriber, "#", options(0));
    h.subscribe(subscriber, "$SYS/#", options(0));
    let publisher = h.connect("p");
    h.publish(publisher, "$SYS/load", "x", QoS::AtMostOnce, 0);
    assert_eq!(h.publishes(subscriber).len(), 1, "only $SYS/# matches (MQTT-4.7.2-1)");
}

#[test]
fn user_properties_and_forwarded_properties_arrive_unchanged_and_in_order() {
    let mut h = harness();
    let subscriber = h.connect("s");
    h.subscribe(subscriber, "t", options(0));
    let publisher = h.connect("p");
    let properties = Properties::from(PropertyFields {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"42")),
        user_properties: vec![
            ("b".into(), "1".into()),
            ("a".into(), "2".into()),
            ("b".into(), "3".into()),
        ],
        ..PropertyFields::default()
    });
    let publish = Publish {
        topic: "t".into(),
        properties: properties.clone(),
        ..Publish::default()
    };
    h.packet(publisher, Packet::Publish(publish));
    assert_eq!(
        h.publishes(subscriber)[0].properties,
        properties,
        "5.0 MQTT-3.3.2-4, -15 to -20"
    );
}

// ---- retained messages ---------------------------------------------------------------------

#[test]
fn retained_messages_are_stored_replaced_deleted_and_sent_with_retain_on_subscribe() {
    let mut h = harness();
    let publisher = h.connect("p");
    let retained = |topic: &str, payload: &'static [u8]| Publish {
        retain: true,
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    };
    h.packet(publisher, Packet::Publish(retained("r/1", b"old")));
    h.packet(publisher, Packet::Publish(retained("r/1", b"new")));
    h.packet(publisher, Packet::Publish(retained("r/2", b"gone")));
    h.packet(publisher, Packet::Publish(retained("r/2", b"")));
    let subscriber = h.connect("s");
    h.subscribe(subscriber, "r/#", options(1));
    let delivered = h.publishes(subscriber);
    assert_eq!(payloads(&delivered), ["new"]);
    assert!(
        delivered[0].retain,
        "retained messages on a new subscription carry RETAIN 1"
    );
}

#[test]
fn retain_on_forwarded_messages_follows_retain_as_published_in_5_0_and_is_0_in_3_1_1() {
    let mut h = harness();
    let rap = h.connect("rap");
    h.subscribe(
        rap,
        "t",
        SubscriptionOptions {
            retain_as_published: true,
            ..options(0)
        },
    );
    let plain = h.connect("plain");
    h.subscribe(plain, "t", options(0));
    let (old, _) = h.connect_with(connect(V3_1_1, "old"));
    h.subscribe(old, "t", options(0));
    let publisher = h.connect("p");
    h.publish_retained(publisher, "t", "x");
    assert!(h.publishes(rap)[0].retain, "5.0 MQTT-3.3.1-13");
    assert!(!h.publishes(plain)[0].retain, "5.0 MQTT-3.3.1-12");
    assert!(!h.publishes(old)[0].retain, "3.1.1 MQTT-3.3.1-9");
}

#[test]
fn retain_handling_decides_whether_retained_messages_come_on_subscribe() {
    // 5.0 §3.3.1.3 (Appendix B's MQTT-3.3.1-10 is inverted; the body is right).
    let mut h = harness();
    let publisher = h.connect("p");
    h.publish_retained(publisher, "r", "x");
    let subscriber = h.connect("s");
    let with = |handling| SubscriptionOptions {
        retain_handling: handling,
        ..options(0)
    };
    h.subscribe(subscriber, "r", with(RetainHandling::SendIfNew));
    assert_eq!(h.publishes(subscriber).len(), 1, "1: sent for a new subscription");
    h.subscribe(subscriber, "r", with(RetainHandling::SendIfNew));
    assert_eq!(h.publishes(subscriber).len(), 0, "1: not sent when it already existed");
    h.subscribe(subscriber, "r", with(RetainHandling::SendAtSubscribe));
    assert_eq!(h.publishes(subscriber).len(), 1, "0: sent at every subscribe");
    h.subscribe(subscriber, "r", with(RetainHandling::DoNotSend));
    assert_eq!(h.publishes(subscriber).len(), 0, "2: never sent");
}

#[test]
fn a_retained_message_expires_with_its_message_expiry_interval() {
    let mut h = harness();
    let publisher = h.connect("p");
    let properties = Properties::from(PropertyFields {
        message_expiry_interval_s: Some(5),
        ..PropertyFields::default()
    });
    h.packet(
        publisher,
        Packet::Publish(Publish {
            retain: true,
            topic: "r".into(),
            properties,
            payload: Bytes::from_static(b"x"),
            ..Publish::default()
        }),
    );
    h.advance_ms(2_000);
    let early = h.connect("early");
    h.subscribe(early, "r", options(0));
    let delivered = h.publishes(early);
    assert_eq!(
        delivered[0].properties.message_expiry_interval_s,
        Some(3),
        "counted down (5.0 MQTT-3.3.2-6)"
    );
    h.advance_ms(3_000);
    let late = h.connect("late");
    h.subscribe(late, "r", options(0));
    assert!(h.publishes(late).is_empty(), "expired retained messages are not sent");
}

// ---- shared subscriptions ------------------------------------------------------------------

#[test]
fn a_shared_subscription_gives_each_message_to_one_member_in_turn() {
    let mut h = harness();
    let a = h.connect("a");
    let b = h.connect("b");
    for member in [a, b] {
        h.subscribe(member, "$share/g/jobs/#", options(1));
    }
    let publisher = h.connect("p");
    for index in 0..4 {
        h.publish(publisher, "jobs/x", &format!("j{index}"), QoS::AtMostOnce, 0);
    }
    let (got_a, got_b) = (payloads(&h.publishes(a)), payloads(&h.publishes(b)));
    assert_eq!(got_a.len() + got_b.len(), 4, "each message to exactly one member");
    assert_eq!((got_a.len(), got_b.len()), (2, 2), "round-robin");
}

#[test]
fn a_shared_subscription_gets_no_retained_messages() {
    let mut h = harness();
    let publisher = h.connect("p");
    h.publish_retained(publisher, "r", "x");
    let member = h.connect("m");
    h.subscribe(member, "$share/g/r", options(0));
    assert!(h.publishes(member).is_empty());
}

#[test]
fn an_unacknowledged_shared_qos1_message_goes_to_another_member_when_the_session_ends() {
    let mut h = harness();
    let a = h.connect("a");
    let b = h.connect("b");
    h.subscribe(a, "$share/g/t", options(1));
    h.subscribe(b, "$share/g/t", options(1));
    let publisher = h.connect("p");
    h.publish(publisher, "t", "job", QoS::AtLeastOnce, 1);
    let (to_a, to_b) = (h.publishes(a), h.publishes(b));
    let (holder, other) = if to_a.is_empty() { (b, a) } else { (a, b) };
    assert_eq!(to_a.len() + to_b.len(), 1);
    h.network_lost(holder); // clean start, no expiry: the session ends with the connection
    assert_eq!(payloads(&h.publishes(other)), ["job"]);
}

#[test]
fn an_unacknowledged_shared_qos2_message_is_never_sent_to_another_member() {
    let mut h = harness();
    let a = h.connect("a");
    let b = h.connect("b");
    h.subscribe(a, "$share/g/t", options(2));
    h.subscribe(b, "$share/g/t", options(2));
    let publisher = h.connect("p");
    h.publish(publisher, "t", "job", QoS::ExactlyOnce, 1);
    let holder = if h.publishes(a).is_empty() { b } else { a };
    let other = if holder == a { b } else { a };
    h.network_lost(holder);
    assert!(h.publishes(other).is_empty(), "5.0 MQTT-4.8.2-5");
}

// ---- sessions ------------------------------------------------------------------------------

#[test]
fn a_session_resumes_within_its_expiry_with_queued_messages_and_ends_after_it() {
    let mut h = harness();
    let persistent = |clean_start| persistent("s", 10, clean_start);
    let (subscriber, _) = h.connect_with(persistent(true));
    h.subscribe(subscriber, "t", options(1));
    h.network_lost(subscriber);
    let publisher = h.connect("p");
    h.publish(publisher, "t", "while away", QoS::AtLeastOnce, 1);
    h.publish(publisher, "t", "qos0 is not queued", QoS::AtMostOnce, 0);
    h.advance_ms(9_000);
    let (subscriber, connack) = h.connect_with(persistent(false));
    assert!(connack.session_present, "5.0 MQTT-3.2.2-3");
    assert_eq!(payloads(&h.publishes(subscriber)), ["while away"]);
    h.network_lost(subscriber);
    h.advance_ms(10_000);
    let (_, connack) = h.connect_with(persistent(false));
    assert!(!connack.session_present, "the session expired");
}

#[test]
fn an_unacknowledged_delivery_is_resent_with_dup_and_the_same_id_on_resume() {
    let mut h = harness();
    let persistent = |clean_start| Connect {
        clean_start,
        ..connect(V3_1_1, "s")
    };
    let (subscriber, _) = h.connect_with(Connect {
        clean_start: false,
        ..connect(V3_1_1, "s")
    });
    h.subscribe(subscriber, "t", options(1));
    let publisher = h.connect("p");
    h.publish(publisher, "t", "m", QoS::AtLeastOnce, 1);
    let first = h.publishes(subscriber).remove(0);
    h.network_lost(subscriber);
    let (subscriber, connack) = h.connect_with(persistent(false));
    assert!(connack.session_present);
    let resent = h.publishes(subscriber);
    assert_eq!(resent.len(), 1);
    assert!(resent[0].dup && resent[0].packet_id == first.packet_id && !first.dup);
}

#[test]
fn the_clients_receive_maximum_bounds_unacknowledged_deliveries() {
    let mut h = harness();
    let (subscriber, _) = h.connect_with(Connect {
        properties: Properties::from(PropertyFields {
            receive_maximum: Some(2),
            ..PropertyFields::default()
        }),
        ..connect(V5, "s")
    });
    h.subscribe(subscriber, "t", options(1));
    let publisher = h.connect("p");
    for index in 0..3 {
        h.publish(publisher, "t", &format!("m{index}"), QoS::AtLeastOnce, index + 1);
    }
    let first = h.publishes(subscriber);
    assert_eq!(payloads(&first), ["m0", "m1"], "5.0 MQTT-3.3.4-9");
    h.packet(subscriber, Packet::PubAck(PublishAck::new(first[0].packet_id.unwrap())));
    assert_eq!(payloads(&h.publishes(subscriber)), ["m2"]);
}

#[test]
fn exceeding_our_receive_maximum_is_disconnect_0x93() {
    let mut h = Harness::new(Config {
        receive_maximum: 2,
        ..Config::default()
    });
    let publisher = h.connect("p");
    for packet_id in 1..=3 {
        h.publish(publisher, "t", "x", QoS::ExactlyOnce, packet_id);
    }
    let sent = h.take(publisher);
    assert!(
        matches!(sent.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        "{sent:?}"
    );
}

// ---- wills ---------------------------------------------------------------------------------

fn with_will(client_id: &str, delay_s: Option<u32>, expiry_s: Option<u32>) -> Connect {
    Connect {
        will: Some(Will {
            topic: "will".into(),
            payload: Bytes::from(client_id.to_owned()),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::from(PropertyFields {
                will_delay_interval_s: delay_s,
                ..PropertyFields::default()
            }),
        }),
        properties: Properties::from(PropertyFields {
            session_expiry_interval_s: expiry_s,
            ..PropertyFields::default()
        }),
        ..connect(V5, client_id)
    }
}

fn watcher(h: &mut Harness) -> mqtt_broker::ConnectionId {
    let watcher = h.connect("watcher");
    h.subscribe(watcher, "will", options(1));
    watcher
}

#[test]
fn the_will_is_published_on_network_loss_and_not_after_a_normal_disconnect() {
    let mut h = harness();
    let watcher = watcher(&mut h);
    let (lost, _) = h.connect_with(with_will("lost", None, None));
    let (polite, _) = h.connect_with(with_will("polite", None, None));
    h.network_lost(lost);
    h.packet(polite, Packet::Disconnect(Disconnect::default()));
    assert_eq!(payloads(&h.publishes(watcher)), ["lost"]);
}

#[test]
fn disconnect_with_will_message_publishes_the_will() {
    let mut h = harness();
    let watcher = watcher(&mut h);
    let (client, _) = h.connect_with(with_will("c", None, None));
    h.packet(
        client,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            ..Disconnect::default()
        }),
    );
    assert_eq!(payloads(&h.publishes(watcher)), ["c"]);
}

#[test]
fn the_will_waits_for_its_delay_and_a_resuming_reconnect_cancels_it() {
    let mut h = harness();
    let watcher = watcher(&mut h);
    let (client, _) = h.connect_with(with_will("late", Some(5), Some(60)));
    h.network_lost(client);
    h.advance_ms(4_999);
    assert!(h.publishes(watcher).is_empty());
    h.advance_ms(1);
    assert_eq!(payloads(&h.publishes(watcher)), ["late"], "published after the delay");

    let (client, _) = h.connect_with(with_will("back", Some(5), Some(60)));
    h.network_lost(client);
    h.advance_ms(3_000);
    h.connect_with(Connect {
        clean_start: false,
        ..with_will("back", Some(5), Some(60))
    });
    h.advance_ms(5_000);
    assert!(h.publishes(watcher).is_empty(), "5.0 MQTT-3.1.3-9");
}

#[test]
fn the_will_goes_out_when_the_session_ends_before_its_delay() {
    let mut h = harness();
    let watcher = watcher(&mut h);
    let (client, _) = h.connect_with(with_will("short", Some(30), Some(2)));
    h.network_lost(client);
    h.advance_ms(2_000);
    assert_eq!(payloads(&h.publishes(watcher)), ["short"]);
}

#[test]
fn a_takeover_disconnects_the_old_connection_with_0x8e_and_publishes_its_will() {
    let mut h = harness();
    let watcher = watcher(&mut h);
    let (old, _) = h.connect_with(with_will("twin", None, None));
    let (_new, connack) = h.connect_with(connect(V5, "twin"));
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert!(matches!(
        h.take(old)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SESSION_TAKEN_OVER,
            ..
        })]
    ));
    assert!(h.is_closed(old));
    assert_eq!(payloads(&h.publishes(watcher)), ["twin"]);
}

/// A will with Will Retain 1 on `topic`, QoS 0, and a Message Expiry Interval if given.
fn retained_will(
    version: ProtocolVersion,
    client_id: &str,
    topic: &str,
    payload: &str,
    expiry_s: Option<u32>,
) -> Connect {
    Connect {
        will: Some(Will {
            topic: topic.into(),
            payload: Bytes::from(payload.to_owned()),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::from(PropertyFields {
                message_expiry_interval_s: expiry_s,
                ..PropertyFields::default()
            }),
        }),
        ..connect(version, client_id)
    }
}

/// What a new subscriber to `filter` is sent at once: the retained messages.
fn retained_for_new_subscriber(
    h: &mut Harness,
    version: ProtocolVersion,
    client_id: &str,
    filter: &str,
) -> Vec<Publish> {
    let (subscriber, _) = h.connect_with(connect(version, client_id));
    h.subscribe(subscriber, filter, options(1));
    h.publishes(subscriber)
}

#[test]
fn a_will_with_will_retain_is_stored_as_the_retained_message_in_both_versions() {
    // Goal: 5.0 MQTT-3.1.2-15 and 3.1.1 MQTT-3.1.2-17: a will published with Will Retain 1 is a
    // retained message like any other: a subscriber already in place gets it (RETAIN as its
    // version and Retain As Published say), and a later subscriber gets it from the store, with
    // RETAIN 1. The regression: the will was routed but never stored.
    for version in [V5, V3_1_1] {
        let mut h = harness();
        let (watcher, _) = h.connect_with(connect(version, "watcher"));
        h.subscribe(watcher, "will/#", options(1));
        let (client, _) = h.connect_with(retained_will(version, "c", "will/c", "offline", None));
        h.network_lost(client);
        assert_eq!(payloads(&h.publishes(watcher)), ["offline"], "{version:?}: routed");
        let late = retained_for_new_subscriber(&mut h, version, "late", "will/#");
        assert_eq!(payloads(&late), ["offline"], "{version:?}: stored");
        assert!(late[0].retain, "{version:?}: sent from the store with RETAIN 1");
        assert_eq!(late[0].qos, QoS::AtMostOnce);
        assert_eq!(h.broker.statistics().retained_messages, 1);
    }
}

#[test]
fn a_retained_will_with_an_empty_payload_deletes_the_retained_message() {
    // Goal: 5.0 MQTT-3.3.1-6, 3.1.1 MQTT-3.3.1-10 apply to a will as to a PUBLISH: a retained
    // message with no payload removes the one stored for its topic.
    for version in [V5, V3_1_1] {
        let mut h = harness();
        let publisher = h.connect("p");
        h.publish_retained(publisher, "will/c", "online");
        let (client, _) = h.connect_with(retained_will(version, "c", "will/c", "", None));
        h.network_lost(client);
        assert!(
            retained_for_new_subscriber(&mut h, version, "late", "will/#").is_empty(),
            "{version:?}: the empty will deleted the retained message"
        );
        assert_eq!(h.broker.statistics().retained_messages, 0);
    }
}

#[test]
fn a_retained_will_is_delivered_but_not_stored_when_the_retained_store_is_full() {
    // Goal: the retained store's quota holds for wills too: a will for a new topic beyond it is
    // delivered to the subscribers in place but not stored (nobody is left to tell), while a
    // will replacing a stored topic is stored.
    let mut h = Harness::new(Config {
        retained_messages_max: 1,
        ..Config::default()
    });
    let watcher = watcher(&mut h);
    let publisher = h.connect("p");
    h.publish_retained(publisher, "kept", "first");
    let (client, _) = h.connect_with(retained_will(V5, "c", "will", "offline", None));
    h.network_lost(client);
    assert_eq!(payloads(&h.publishes(watcher)), ["offline"], "delivered");
    assert!(
        retained_for_new_subscriber(&mut h, V5, "late", "will").is_empty(),
        "not stored"
    );
    let (client, _) = h.connect_with(retained_will(V5, "c2", "kept", "replaced", None));
    h.network_lost(client);
    assert_eq!(
        payloads(&retained_for_new_subscriber(&mut h, V5, "later", "kept")),
        ["replaced"],
        "a replacement needs no room"
    );
}

#[test]
fn a_retained_will_expires_with_its_message_expiry_interval() {
    // Goal: 5.0 §3.1.3.2.4: the will's Message Expiry Interval is the retained message's: it is
    // counted down from the will's publication and the message is gone after it.
    let mut h = harness();
    let (client, _) = h.connect_with(retained_will(V5, "c", "will/c", "offline", Some(5)));
    h.advance_ms(10_000);
    h.network_lost(client);
    h.advance_ms(2_000);
    let early = retained_for_new_subscriber(&mut h, V5, "early", "will/#");
    assert_eq!(payloads(&early), ["offline"]);
    assert_eq!(
        early[0].properties.message_expiry_interval_s,
        Some(3),
        "counted down from the will's publication"
    );
    h.advance_ms(3_000);
    assert!(
        retained_for_new_subscriber(&mut h, V5, "late", "will/#").is_empty(),
        "expired"
    );
}

#[test]
fn disconnect_setting_a_session_expiry_when_connect_had_none_is_a_protocol_error_and_publishes_the_will() {
    let mut h = harness();
    let watcher = watcher(&mut h);
    let (client, _) = h.connect_with(with_will("c", None, None));
    let disconnect = Disconnect {
        properties: Properties::from(PropertyFields {
            session_expiry_interval_s: Some(60),
            ..PropertyFields::default()
        }),
        ..Disconnect::default()
    };
    h.packet(client, Packet::Disconnect(disconnect));
    assert!(matches!(
        h.take(client)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::PROTOCOL_ERROR,
            ..
        })]
    ));
    assert_eq!(payloads(&h.publishes(watcher)), ["c"]);
}

// ---- topic aliases, expiry, sizes, limits ----------------------------------------------------

#[test]
fn topic_aliases_map_per_connection_and_invalid_ones_disconnect() {
    let mut h = harness();
    let subscriber = h.connect("s");
    h.subscribe(subscriber, "long/topic", options(0));
    let publisher = h.connect("p");
    let aliased = |topic: &str, alias| Publish {
        topic: topic.into(),
        properties: Properties::from(PropertyFields {
            topic_alias: Some(alias),
            ..PropertyFields::default()
        }),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    };
    h.packet(publisher, Packet::Publish(aliased("long/topic", 3)));
    h.packet(publisher, Packet::Publish(aliased("", 3)));
    let delivered = h.publishes(subscriber);
    assert_eq!(delivered.len(), 2);
    assert!(delivered
        .iter()
        .all(|p| p.topic == "long/topic" && p.properties.topic_alias.is_none()));
    h.packet(publisher, Packet::Publish(aliased("", 4)));
    assert!(matches!(
        h.take(publisher)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::PROTOCOL_ERROR,
            ..
        })]
    ));

    let other = h.connect("o");
    h.packet(other, Packet::Publish(aliased("t", 65)));
    assert!(matches!(
        h.take(other)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::TOPIC_ALIAS_INVALID,
            ..
        })]
    ));
}

#[test]
fn a_message_too_large_for_the_client_is_dropped_as_if_sent() {
    let mut h = harness();
    let (subscriber, _) = h.connect_with(Connect {
        properties: Properties::from(PropertyFields {
            maximum_packet_size: Some(32),
            ..PropertyFields::default()
        }),
        ..connect(V5, "s")
    });
    h.subscribe(subscriber, "t", options(1));
    let publisher = h.connect("p");
    h.publish(publisher, "t", &"x".repeat(64), QoS::AtLeastOnce, 1);
    h.publish(publisher, "t", "fits", QoS::AtLeastOnce, 2);
    assert_eq!(payloads(&h.publishes(subscriber)), ["fits"], "5.0 MQTT-3.1.2-24, -25");
}

#[test]
fn queued_messages_expire_and_forwarded_ones_count_their_expiry_down() {
    let mut h = harness();
    let persistent = |clean_start| persistent("s", 100, clean_start);
    let (subscriber, _) = h.connect_with(persistent(true));
    h.subscribe(subscriber, "t", options(1));
    h.network_lost(subscriber);
    let publisher = h.connect("p");
    let expiring = |payload: &'static [u8], seconds| Publish {
        qos: QoS::AtLeastOnce,
        topic: "t".into(),
        packet_id: Some(seconds as u16),
        properties: Properties::from(PropertyFields {
            message_expiry_interval_s: Some(seconds),
            ..PropertyFields::default()
        }),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    };
    h.packet(publisher, Packet::Publish(expiring(b"short", 2)));
    h.packet(publisher, Packet::Publish(expiring(b"long", 10)));
    h.advance_ms(3_000);
    let (subscriber, _) = h.connect_with(persistent(false));
    let delivered = h.publishes(subscriber);
    assert_eq!(payloads(&delivered), ["long"], "5.0 MQTT-3.3.2-5");
    assert_eq!(
        delivered[0].properties.message_expiry_interval_s,
        Some(7),
        "5.0 MQTT-3.3.2-6"
    );
}

#[test]
fn subscriptions_beyond_the_limit_are_refused_per_filter() {
    let mut h = Harness::new(Config {
        subscriptions_per_client_max: 1,
        ..Config::default()
    });
    let client = h.connect("c");
    let two = vec![
        Subscription {
            filter: "a".into(),
            options: options(0),
        },
        Subscription {
            filter: "b".into(),
            options: options(0),
        },
    ];
    let suback = h.subscribe_with(client, two.clone(), Properties::default());
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::GRANTED_QOS_0, ReasonCode::QUOTA_EXCEEDED]
    );
    let (old, _) = h.connect_with(connect(V3_1_1, "old"));
    let suback = h.subscribe_with(old, two, Properties::default());
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::GRANTED_QOS_0, ReasonCode::UNSPECIFIED_ERROR],
        "3.1.1: 0x80"
    );
}

#[test]
fn unsubscribe_answers_each_filter_and_stops_delivery() {
    let mut h = harness();
    let client = h.connect("c");
    h.subscribe(client, "t", options(0));
    h.packet(
        client,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 5,
            properties: Properties::default(),
            filters: vec!["t".into(), "u".into()],
        }),
    );
    let Packet::UnsubAck(unsuback) = h.take(client).remove(0) else {
        panic!("an UNSUBACK")
    };
    assert_eq!(
        unsuback.reason_codes,
        [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
    let publisher = h.connect("p");
    h.publish(publisher, "t", "x", QoS::AtMostOnce, 0);
    assert!(h.publishes(client).is_empty());
}

#[test]
fn shutdown_sends_5_0_clients_server_shutting_down_and_closes_everyone() {
    let mut h = harness();
    let v5 = h.connect("five");
    let (v3, _) = h.connect_with(connect(V3_1_1, "three"));
    let now = h.now();
    h.broker.handle_shutdown(now);
    h.advance_ms(0);
    assert!(matches!(
        h.take(v5)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
            ..
        })]
    ));
    assert!(h.take(v3).is_empty());
    assert!(h.is_closed(v5) && h.is_closed(v3));
}

#[test]
fn the_next_timeout_is_the_earliest_deadline() {
    let mut h = harness();
    h.connect_with(Connect {
        keep_alive_s: 4,
        ..connect(V5, "a")
    });
    assert_eq!(h.next_timeout_ms(), Some(6_000));
    let _ = Duration::ZERO;
}

// ---- the client's Maximum Packet Size --------------------------------------------------------
//
// Every packet the harness sees is checked against the Maximum Packet Size of its connection's
// CONNECT; these tests walk the boundaries: a packet exactly at the limit goes whole, one byte
// over loses what may go, and a required packet that still does not fit closes the connection.

/// A 5.0 CONNECT of `client_id` that accepts packets of at most `maximum` bytes (none if `None`),
/// asking for Response Information.
fn limited(client_id: &str, maximum: Option<u32>) -> Connect {
    Connect {
        keep_alive_s: 10,
        properties: Properties::from(PropertyFields {
            maximum_packet_size: maximum,
            request_response_information: Some(true),
            ..PropertyFields::default()
        }),
        ..connect(V5, client_id)
    }
}

fn size_of(packet: Packet) -> u32 {
    encoded_len(&packet, V5).expect("encodable") as u32
}

#[test]
fn a_connack_too_large_loses_only_what_the_client_can_do_without_then_the_connection_closes() {
    let config = Config {
        server_keep_alive_s: Some(30),
        ..Config::default()
    };
    let mut h = Harness::new(config.clone());
    // Ids of one length: every CONNACK below differs only in what was cut.
    let (_, whole) = h.connect_with(limited("c0", None));
    let p = &whole.properties;
    assert!(p.response_information.is_some() && p.topic_alias_maximum.is_some() && p.server_keep_alive_s.is_some());
    let whole_size = size_of(Packet::ConnAck(whole.clone()));

    let (_, connack) = h.connect_with(limited("c1", Some(whole_size)));
    assert_eq!(
        size_of(Packet::ConnAck(connack.clone())),
        whole_size,
        "exactly at the limit: whole"
    );
    assert!(connack.properties.response_information.is_some());

    // One byte short: Response Information goes first (the server may always withhold it).
    let (_, connack) = h.connect_with(limited("c2", Some(whole_size - 1)));
    let p = &connack.properties;
    assert_eq!(p.response_information, None);
    assert_eq!((p.topic_alias_maximum, p.server_keep_alive_s), (Some(64), Some(30)));
    let without_response = size_of(Packet::ConnAck(connack.clone()));

    // Then Topic Alias Maximum: the connection is then held to no aliases at all.
    let (connection, connack) = h.connect_with(limited("c3", Some(without_response - 1)));
    let p = &connack.properties;
    assert_eq!((p.topic_alias_maximum, p.server_keep_alive_s), (None, Some(30)));
    let without_aliases = size_of(Packet::ConnAck(connack.clone()));
    let aliased = Publish {
        topic: "t".into(),
        properties: Properties::from(PropertyFields {
            topic_alias: Some(1),
            ..PropertyFields::default()
        }),
        ..Publish::default()
    };
    h.packet(connection, Packet::Publish(aliased));
    assert!(
        matches!(
            h.take(connection)[..],
            [Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::TOPIC_ALIAS_INVALID,
                ..
            })]
        ),
        "an alias above the maximum this connection was offered (none)"
    );

    // Then Server Keep Alive: both sides keep the client's own (10 s).
    let (connection, connack) = h.connect_with(limited("c4", Some(without_aliases - 1)));
    let p = &connack.properties;
    assert_eq!(p.server_keep_alive_s, None);
    assert_eq!(p.receive_maximum, Some(1024), "a limit is never cut");
    assert_eq!(p.maximum_packet_size, Some(1024 * 1024), "a limit is never cut");
    let bare = size_of(Packet::ConnAck(connack.clone()));
    h.advance_ms(14_999);
    assert!(!h.is_closed(connection));
    h.advance_ms(1);
    assert!(
        h.is_closed(connection),
        "closed at 1.5 x the client's keep alive, not the server's"
    );

    // Nothing left to cut: no CONNACK, no session, the connection closed and counted.
    let sessions = h.broker.statistics().sessions;
    let connection = h.open();
    h.packet(connection, Packet::Connect(Box::new(limited("c5", Some(bare - 1)))));
    assert!(
        h.take(connection).is_empty(),
        "never a CONNACK past the limit (5.0 MQTT-3.1.2-24)"
    );
    assert!(h.is_closed(connection), "never accepted and left unanswered");
    let statistics = h.broker.statistics();
    assert_eq!(
        statistics.sessions, sessions,
        "no session for a connection never acknowledged"
    );
    assert_eq!(statistics.required_packets_too_large, 1);
}

#[test]
fn a_refusal_connack_is_sent_where_it_fits_and_the_connection_just_closed_where_not() {
    let mut h = harness();
    let refused = |client_id: &str, maximum| Connect {
        properties: Properties::from(PropertyFields {
            maximum_packet_size: Some(maximum),
            authentication_method: Some("no-such-method".into()),
            ..PropertyFields::default()
        }),
        ..connect(V5, client_id)
    };
    let refusal = size_of(Packet::ConnAck(ConnAck {
        reason_code: ReasonCode::BAD_AUTHENTICATION_METHOD,
        ..ConnAck::default()
    }));
    let connection = h.open();
    h.packet(connection, Packet::Connect(Box::new(refused("a", refusal))));
    assert!(matches!(
        h.take(connection)[..],
        [Packet::ConnAck(ConnAck {
            reason_code: ReasonCode::BAD_AUTHENTICATION_METHOD,
            ..
        })]
    ));
    let connection = h.open();
    h.packet(connection, Packet::Connect(Box::new(refused("b", refusal - 1))));
    assert!(h.take(connection).is_empty());
    assert!(h.is_closed(connection));
    assert_eq!(h.broker.statistics().required_packets_too_large, 1);
}

/// The acknowledgements with a reason code other than Success carry its name as Reason String:
/// exactly at their whole size they go whole, one byte under it they go without it.
#[test]
fn acknowledgements_lose_their_reason_string_one_byte_past_the_limit_and_are_never_dropped() {
    type Provoke = fn(&mut Harness, mqtt_broker::ConnectionId);
    let cases: [(&str, Provoke); 4] = [
        ("PUBACK", |h, connection| {
            // Three topic levels, above the limit of two: 0x90 Topic Name invalid.
            h.publish(connection, "a/b/c", "x", QoS::AtLeastOnce, 1);
        }),
        ("PUBREC", |h, connection| {
            h.publish(connection, "a/b/c", "x", QoS::ExactlyOnce, 1);
        }),
        ("PUBCOMP", |h, connection| {
            // A PUBREL for a packet id not held: PUBCOMP 0x92 (5.0 §3.7.2.1).
            h.packet(connection, Packet::PubRel(PublishAck::new(9)));
        }),
        ("PUBREL", |h, connection| {
            // A PUBREC for a packet id not in flight: PUBREL 0x92 (5.0 §4.3.3).
            h.packet(connection, Packet::PubRec(PublishAck::new(9)));
        }),
    ];
    for (name, provoke) in cases {
        let mut h = Harness::new(Config {
            topic_levels_max: 2,
            ..Config::default()
        });
        let (connection, _) = h.connect_with(limited("w", None));
        provoke(&mut h, connection);
        let [whole] = &h.take(connection)[..] else {
            panic!("{name}: one answer expected")
        };
        assert_eq!(whole.packet_type().name(), name);
        let reason_string = match whole {
            Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
                assert!(
                    ack.reason_code.is_error() || ack.reason_code.0 == 0x92,
                    "{name}: {ack:?}"
                );
                ack.properties.reason_string.clone()
            }
            other => panic!("{name}: {other:?}"),
        };
        assert!(reason_string.is_some(), "{name} names its code");
        let whole_size = size_of(whole.clone());

        let (connection, _) = h.connect_with(limited("x", Some(whole_size)));
        provoke(&mut h, connection);
        assert_eq!(
            h.take(connection),
            std::slice::from_ref(whole),
            "{name} exactly at the limit"
        );

        let (connection, _) = h.connect_with(limited("y", Some(whole_size - 1)));
        provoke(&mut h, connection);
        let answers = h.take(connection);
        let [Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack)] = &answers[..]
        else {
            panic!("{name} one byte over: {answers:?}")
        };
        assert_eq!(ack.properties.reason_string, None, "{name}: 5.0 MQTT-3.4.2-2 and twins");
        assert!(!h.is_closed(connection), "{name}: the stripped one fits");
    }
}

#[test]
fn a_suback_or_unsuback_that_cannot_fit_closes_the_connection_with_0x95() {
    // With no problem information to cut, only the number of reason codes sets the size.
    let filters = |count: usize| -> Vec<String> { (0..count).map(|i| format!("f/{i}")).collect() };
    let suback_size = |count: usize| {
        size_of(Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::SUCCESS; count],
        }))
    };
    // Twelve codes: at least as large as the CONNACK, which must fit first.
    let limit = suback_size(12);
    for unsubscribe in [false, true] {
        let mut h = harness();
        let connect = |client_id: &str| Connect {
            properties: Properties::from(PropertyFields {
                maximum_packet_size: Some(limit),
                ..PropertyFields::default()
            }),
            ..connect(V5, client_id)
        };
        let (connection, _) = h.connect_with(connect("fits"));
        let request = |packet_id, filters: Vec<String>| -> Packet {
            if unsubscribe {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    properties: Properties::default(),
                    filters,
                })
            } else {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    properties: Properties::default(),
                    subscriptions: filters
                        .into_iter()
                        .map(|filter| Subscription {
                            filter,
                            options: SubscriptionOptions::default(),
                        })
                        .collect(),
                })
            }
        };
        h.packet(connection, request(1, filters(12)));
        let answers = h.take(connection);
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(size_of(answers[0].clone()), limit, "exactly at the limit");

        let (connection, _) = h.connect_with(connect("over"));
        h.packet(connection, request(2, filters(13)));
        assert!(
            matches!(
                h.take(connection)[..],
                [Packet::Disconnect(Disconnect {
                    reason_code: ReasonCode::PACKET_TOO_LARGE,
                    ..
                })]
            ),
            "one code more: never dropped silently"
        );
        assert!(h.is_closed(connection));
        assert_eq!(h.broker.statistics().required_packets_too_large, 1);
    }
}

#[test]
fn a_qos_1_message_too_large_for_the_client_counts_as_delivered_and_frees_its_place() {
    let mut h = harness();
    // Receive Maximum 1: a too-large message that held its place would block the next for ever.
    let subscriber_connect = |clean_start, maximum| Connect {
        clean_start,
        properties: Properties::from(PropertyFields {
            maximum_packet_size: Some(maximum),
            receive_maximum: Some(1),
            session_expiry_interval_s: Some(100),
            ..PropertyFields::default()
        }),
        ..connect(V5, "s")
    };
    let (subscriber, _) = h.connect_with(subscriber_connect(true, 64));
    h.subscribe(subscriber, "t", options(1));
    let publisher = h.connect("p");
    h.publish(publisher, "t", &"x".repeat(64), QoS::AtLeastOnce, 1);
    h.publish(publisher, "t", "small", QoS::AtLeastOnce, 2);
    let delivered = h.publishes(subscriber);
    assert_eq!(payloads(&delivered), ["small"], "5.0 MQTT-3.1.2-25: as if sent");
    let dropped = h.broker.statistics().messages_dropped;
    assert_eq!(dropped, 1);
    let small_id = delivered[0].packet_id.expect("QoS 1");
    h.packet(subscriber, Packet::PubAck(PublishAck::new(small_id)));

    // A message in flight when the session resumes on a connection that accepts less: discarded
    // as delivered, never resent, and the window is free for the next.
    h.publish(publisher, "t", &"y".repeat(40), QoS::AtLeastOnce, 3);
    let delivered = h.publishes(subscriber);
    assert_eq!(delivered.len(), 1, "in flight, not acknowledged");
    let whole = size_of(Packet::Publish(Publish {
        dup: true,
        ..delivered[0].clone()
    }));
    h.network_lost(subscriber);
    let (subscriber, connack) = h.connect_with(subscriber_connect(false, whole - 1));
    assert!(connack.session_present);
    assert!(h.take(subscriber).is_empty(), "not resent past the limit");
    assert_eq!(h.broker.statistics().messages_dropped, dropped + 1);
    h.publish(publisher, "t", "next", QoS::AtLeastOnce, 4);
    let next = h.publishes(subscriber);
    assert_eq!(payloads(&next), ["next"]);
    h.packet(
        subscriber,
        Packet::PubAck(PublishAck::new(next[0].packet_id.expect("QoS 1"))),
    );

    // The same exactly at the limit: resent whole.
    h.network_lost(subscriber);
    let (subscriber, _) = h.connect_with(subscriber_connect(false, whole));
    h.publish(publisher, "t", &"z".repeat(40), QoS::AtLeastOnce, 5);
    assert_eq!(h.publishes(subscriber).len(), 1);
    h.network_lost(subscriber);
    let (subscriber, _) = h.connect_with(subscriber_connect(false, whole));
    let resent = h.publishes(subscriber);
    assert_eq!(payloads(&resent), [&"z".repeat(40)[..]]);
    assert!(resent[0].dup, "5.0 MQTT-3.3.1-1");
}

// ---- topic aliases towards the client --------------------------------------------------------

fn with_topic_alias_maximum(connect: Connect, maximum: u16) -> Connect {
    let mut connect = connect;
    connect.properties.topic_alias_maximum = Some(maximum);
    connect
}

/// (topic, alias) of each delivery.
fn aliased(publishes: &[Publish]) -> Vec<(String, Option<u16>)> {
    publishes
        .iter()
        .map(|publish| (publish.topic.to_string(), publish.properties.topic_alias))
        .collect()
}

#[test]
fn the_broker_sends_topic_aliases_up_to_the_clients_maximum() {
    let mut h = harness();
    let (subscriber, _) = h.connect_with(with_topic_alias_maximum(connect(V5, "s"), 2));
    h.subscribe(subscriber, "a/#", options(0));
    let (plain, _) = h.connect_with(connect(V5, "plain"));
    h.subscribe(plain, "a/#", options(0));
    let publisher = h.connect("p");
    for topic in ["a/1", "a/1", "a/2", "a/3", "a/1", "a/2"] {
        h.publish(publisher, topic, "m", qos(0), 0);
    }
    assert_eq!(
        aliased(&h.publishes(subscriber)),
        [
            ("a/1".to_owned(), Some(1)),
            (String::new(), Some(1)),
            ("a/2".to_owned(), Some(2)),
            ("a/3".to_owned(), None),
            (String::new(), Some(1)),
            (String::new(), Some(2)),
        ]
    );
    // A client that allowed none gets none.
    assert!(aliased(&h.publishes(plain))
        .iter()
        .all(|(topic, alias)| !topic.is_empty() && alias.is_none()));
}

#[test]
fn a_resent_publish_carries_its_topic_on_the_new_connection() {
    let mut h = harness();
    let resumable = |clean_start| {
        let mut connect = with_topic_alias_maximum(connect(V5, "s"), 4);
        connect.clean_start = clean_start;
        connect.properties.session_expiry_interval_s = Some(60);
        connect
    };
    let (first, _) = h.connect_with(resumable(true));
    h.subscribe(first, "t", options(1));
    let publisher = h.connect("p");
    h.publish(publisher, "t", "one", qos(1), 1);
    h.publish(publisher, "t", "two", qos(1), 2);
    assert_eq!(
        aliased(&h.publishes(first)),
        [("t".to_owned(), Some(1)), (String::new(), Some(1))]
    );
    h.network_lost(first);
    let (second, connack) = h.connect_with(resumable(false));
    assert!(connack.session_present);
    // Aliases live and die with a connection: the resends name their topic, then use a new alias.
    let resent = h.publishes(second);
    assert_eq!(aliased(&resent), [("t".to_owned(), Some(1)), (String::new(), Some(1))]);
    assert!(resent.iter().all(|publish| publish.dup));
}

#[test]
fn a_publish_too_large_for_the_client_does_not_use_up_an_alias() {
    let mut h = harness();
    let mut small = with_topic_alias_maximum(connect(V5, "s"), 1);
    small.properties.maximum_packet_size = Some(64);
    let (subscriber, _) = h.connect_with(small);
    h.subscribe(subscriber, "big/#", options(0));
    let publisher = h.connect("p");
    h.publish(publisher, "big/1", &"x".repeat(200), qos(0), 0);
    h.publish(publisher, "big/2", "small", qos(0), 0);
    h.publish(publisher, "big/2", "small again", qos(0), 0);
    assert_eq!(
        aliased(&h.publishes(subscriber)),
        [("big/2".to_owned(), Some(1)), (String::new(), Some(1))]
    );
}
