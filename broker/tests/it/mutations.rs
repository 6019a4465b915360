//! The planted bugs of the `mutations` feature. Goal: each mutation is a real bug where it is
//! meant to be, and nothing while it is off, so a scenario or conformance case that fails only
//! with it on has caught that bug. Method: each test runs one scenario on the sans-IO core twice,
//! with the mutation off and on, and checks the correct behaviour and then the broken one. Time is
//! the harness's clock of millisecond offsets, moved by hand.

// The feature gate is here rather than on `mod mutations;` in main.rs: scripts/test checks that
// every file under tests/it is declared there with a plain `mod` line.
#![cfg(feature = "mutations")]

use bytes::Bytes;
use mqtt_broker::{Config, Mutation, Mutations, UnknownMutation};
use mqtt_protocol::*;

use crate::harness::{connect, payloads, qos, Harness};

use ProtocolVersion::{V3_1_1, V5};

/// A core with `mutations` switched on and the defaults otherwise.
fn harness(mutations: Mutations) -> Harness {
    Harness::new(Config {
        mutations,
        ..Config::default()
    })
}

/// The two runs of every test: off (a correct broker), then on.
fn off_and_on(mutation: Mutation) -> [Mutations; 2] {
    [Mutations::new(), Mutations::from(mutation)]
}

fn options(value: u8) -> SubscriptionOptions {
    SubscriptionOptions::with_qos(qos(value))
}

/// A 5.0 CONNECT of `client_id` with a Session Expiry Interval and a Receive Maximum.
fn persistent(client_id: &str, session_expiry_interval_s: u32, clean_start: bool, receive_maximum: u16) -> Connect {
    let properties = PropertyFields {
        session_expiry_interval_s: Some(session_expiry_interval_s),
        receive_maximum: Some(receive_maximum),
        ..PropertyFields::default()
    };
    Connect {
        clean_start,
        properties: properties.into(),
        ..connect(V5, client_id)
    }
}

/// A QoS 1 will on `topic` with the client id as payload.
fn with_will(version: ProtocolVersion, client_id: &str, topic: &str, retain: bool) -> Connect {
    Connect {
        will: Some(Will {
            topic: topic.into(),
            payload: Bytes::from(client_id.to_owned()),
            qos: QoS::AtLeastOnce,
            retain,
            properties: Properties::default(),
        }),
        ..connect(version, client_id)
    }
}

#[test]
fn no_resend_on_resume_leaves_unacknowledged_publishes_unsent_when_a_session_resumes() {
    // 5.0 MQTT-4.4.0-1: a QoS 1 and a QoS 2 delivery left unacknowledged are resent, with DUP 1
    // and their packet ids, when the session resumes. The subscriber resumes with Receive
    // Maximum 1, so one is resent at once and the other only after the first is acknowledged:
    // both ways out (at resume, and withheld until the window opens) are covered.
    let scenario = |mutations| {
        let mut h = harness(mutations);
        let (subscriber, _) = h.connect_with(persistent("s", 60, true, 10));
        h.subscribe(subscriber, "t", options(2));
        let publisher = h.connect("p");
        h.publish(publisher, "t", "m1", QoS::AtLeastOnce, 1);
        h.publish(publisher, "t", "m2", QoS::ExactlyOnce, 2);
        let first = h.publishes(subscriber);
        assert_eq!(payloads(&first), ["m1", "m2"], "delivered, never acknowledged");
        h.network_lost(subscriber);

        let (subscriber, connack) = h.connect_with(persistent("s", 60, false, 1));
        assert!(connack.session_present);
        let at_resume = h.publishes(subscriber);
        let m1_packet_id = first[0].packet_id.expect("QoS 1");
        h.packet(subscriber, Packet::PubAck(PublishAck::new(m1_packet_id)));
        let after_ack = h.publishes(subscriber);
        for resent in at_resume.iter().chain(&after_ack) {
            let original = first.iter().find(|publish| publish.payload == resent.payload);
            assert!(resent.dup && original.is_some_and(|original| original.packet_id == resent.packet_id));
        }
        (payloads(&at_resume), payloads(&after_ack))
    };
    let [off, on] = off_and_on(Mutation::NoResendOnResume);
    assert_eq!(scenario(off), (vec!["m1".to_owned()], vec!["m2".to_owned()]));
    assert_eq!(scenario(on), (vec![], vec![]), "nothing resent");
}

#[test]
fn keep_alive_ignored_never_closes_a_silent_client() {
    // 5.0 MQTT-3.1.2-22, 3.1.1 MQTT-3.1.2-24: a client silent for 1.5 times its keep alive is
    // closed. With the mutation it is still open ten minutes later, and nothing was sent to it.
    for version in [V5, V3_1_1] {
        let scenario = |mutations| {
            let mut h = harness(mutations);
            let (client, _) = h.connect_with(Connect {
                keep_alive_s: 10,
                ..connect(version, "c")
            });
            h.advance_ms(15_000);
            let closed_at_deadline = h.is_closed(client);
            h.advance_ms(600_000);
            (closed_at_deadline, h.is_closed(client), h.take(client).len())
        };
        let [off, on] = off_and_on(Mutation::KeepAliveIgnored);
        let disconnects = usize::from(version.is_v5()); // 5.0 says why: DISCONNECT 0x8D
        assert_eq!(scenario(off), (true, true, disconnects), "{version:?}");
        assert_eq!(scenario(on), (false, false, 0), "{version:?}");
    }
}

#[test]
fn will_on_normal_disconnect_publishes_the_will_after_disconnect_0x00() {
    // 5.0 and 3.1.1 MQTT-3.14.4-3: a normal DISCONNECT discards the will. With the mutation a
    // subscriber to the will's topic gets it anyway.
    for version in [V5, V3_1_1] {
        let scenario = |mutations| {
            let mut h = harness(mutations);
            let watcher = h.connect("watcher");
            h.subscribe(watcher, "will", options(1));
            let (client, _) = h.connect_with(with_will(version, "polite", "will", false));
            h.packet(client, Packet::Disconnect(Disconnect::default()));
            assert!(h.is_closed(client));
            payloads(&h.publishes(watcher))
        };
        let [off, on] = off_and_on(Mutation::WillOnNormalDisconnect);
        assert!(scenario(off).is_empty(), "{version:?}");
        assert_eq!(scenario(on), ["polite"], "{version:?}");
    }
}

#[test]
fn session_outlives_expiry_keeps_a_session_past_its_expiry_interval() {
    // 5.0 MQTT-4.1.0-2 (§3.1.2.11.2): a disconnected session is discarded once its Session Expiry
    // Interval has passed, so a resuming CONNECT finds none. With the mutation it is still there.
    let scenario = |mutations| {
        let mut h = harness(mutations);
        let (client, _) = h.connect_with(persistent("s", 10, true, 10));
        h.subscribe(client, "t", options(1));
        h.network_lost(client);
        h.advance_ms(9_999);
        let sessions_before = h.broker.statistics().sessions;
        h.advance_ms(1);
        let sessions_after = h.broker.statistics().sessions;
        let (_, connack) = h.connect_with(persistent("s", 10, false, 10));
        (sessions_before, sessions_after, connack.session_present)
    };
    let [off, on] = off_and_on(Mutation::SessionOutlivesExpiry);
    assert_eq!(scenario(off), (1, 0, false));
    assert_eq!(scenario(on), (1, 1, true));
}

#[test]
fn qos2_delivered_twice_delivers_a_resend_before_pubrel_again() {
    // 5.0 MQTT-4.3.3-10, 3.1.1 MQTT-4.3.3-2: a QoS 2 PUBLISH resent (DUP 1, same packet id)
    // before its PUBREL is acknowledged with PUBREC again but not delivered again. With the
    // mutation the subscriber gets it twice; the publisher sees no difference.
    let scenario = |mutations| {
        let mut h = harness(mutations);
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
        let acks = h.take(publisher);
        assert!(
            matches!(&acks[..], [Packet::PubRec(_), Packet::PubRec(_), Packet::PubComp(c)] if c.reason_code == ReasonCode::SUCCESS),
            "{acks:?}"
        );
        payloads(&h.publishes(subscriber))
    };
    let [off, on] = off_and_on(Mutation::Qos2DeliveredTwice);
    assert_eq!(scenario(off), ["once"]);
    assert_eq!(scenario(on), ["once", "once"]);
}

#[test]
fn will_not_retained_routes_a_retained_will_without_storing_it() {
    // 5.0 MQTT-3.1.2-15, 3.1.1 MQTT-3.1.2-17: a will with Will Retain 1 is published as a retained
    // message: a subscriber in place gets it, and so does a later one, from the store. With the
    // mutation (the bug fixed in 8d348e3) the first still gets it, the later one gets nothing.
    for version in [V5, V3_1_1] {
        let scenario = |mutations| {
            let mut h = harness(mutations);
            let (watcher, _) = h.connect_with(connect(version, "watcher"));
            h.subscribe(watcher, "will/#", options(1));
            let (client, _) = h.connect_with(with_will(version, "c", "will/c", true));
            h.network_lost(client);
            let routed = payloads(&h.publishes(watcher));
            let (late, _) = h.connect_with(connect(version, "late"));
            h.subscribe(late, "will/#", options(1));
            let stored = h.publishes(late);
            assert!(
                stored.iter().all(|publish| publish.retain),
                "{version:?}: from the store"
            );
            (routed, payloads(&stored), h.broker.statistics().retained_messages)
        };
        let [off, on] = off_and_on(Mutation::WillNotRetained);
        let c = || vec!["c".to_owned()];
        assert_eq!(scenario(off), (c(), c(), 1), "{version:?}");
        assert_eq!(scenario(on), (c(), vec![], 0), "{version:?}");
    }
}

#[test]
fn every_name_round_trips_and_an_unknown_name_lists_the_valid_ones() {
    for &mutation in Mutation::ALL {
        let name = mutation.name();
        assert_eq!(name.parse::<Mutation>(), Ok(mutation));
        assert_eq!(mutation.to_string(), name);
        assert!(
            name.bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'),
            "{name} is kebab-case"
        );
        assert!(!mutation.description().is_empty() && !mutation.description().contains('\n'));
    }
    let mut names: Vec<&str> = Mutation::ALL.iter().map(|mutation| mutation.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Mutation::ALL.len(), "names are distinct");

    let error = "keep-alive-ignore".parse::<Mutation>().expect_err("no such mutation");
    assert_eq!(
        error,
        UnknownMutation {
            name: "keep-alive-ignore".into()
        }
    );
    let message = error.to_string();
    assert!(message.contains("\"keep-alive-ignore\""), "{message}");
    for mutation in Mutation::ALL {
        assert!(message.contains(mutation.name()), "{message} lists {mutation}");
    }
}

#[test]
fn a_default_config_switches_no_mutation_on_and_from_names_switches_on_those_named() {
    let default = Config::default().mutations;
    assert!(default.is_empty());
    assert!(Mutation::ALL.iter().all(|&mutation| !default.contains(mutation)));

    let named = Mutations::from_names(["qos2-delivered-twice", "keep-alive-ignored"]).expect("known names");
    assert_eq!(
        named.iter().collect::<Vec<_>>(),
        [Mutation::KeepAliveIgnored, Mutation::Qos2DeliveredTwice],
        "in declaration order"
    );
    assert_eq!(named.to_string(), "keep-alive-ignored,qos2-delivered-twice");
    assert_eq!(Mutations::from_names(named.to_string().split(',')), Ok(named));

    let mut mutations = Mutations::new();
    assert!(mutations.insert(Mutation::WillNotRetained));
    assert!(!mutations.insert(Mutation::WillNotRetained), "already on");
    assert_eq!(
        Mutations::from_names(["will-not-retained", "no-such-bug"]),
        Err(UnknownMutation {
            name: "no-such-bug".into()
        })
    );
}
