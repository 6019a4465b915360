//! Maximum Packet Size at its boundaries, over real sockets with the packet-level probe, in both
//! directions.
//!
//! Goal: what the broker sends never exceeds the client's Maximum Packet Size, and a packet the
//! client waits for is never dropped silently (5.0 MQTT-3.1.2-24, -25: a PUBLISH too large is
//! dropped as delivered; an acknowledgement loses its Reason String, or closes the connection with
//! 0x95 when even that is too large; a CONNACK is cut to what the client can do without, or the
//! connection closed); and what a client sends is taken up to the broker's own Maximum Packet Size
//! and refused one byte past it (5.0 §3.2.2.3.6: DISCONNECT 0x95; 3.1.1: the close).
//!
//! Method: each packet is first provoked for a client with no limit and measured (its bytes in
//! the probe's trace), then for a client whose limit is exactly that size, then one byte less.
//! The probe's own strict decoder gets the same limit, so a packet past it would fail the test as
//! a decode error. The sans-IO rules behind it are tested step by step in `core.rs`; this shows
//! them on the wire.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mqtt_broker::server::ServerOptions;
use mqtt_broker::Config;
use mqtt_client::probe::{Pattern, Probe, ProbeOptions};
use mqtt_protocol::*;

use crate::running::Running;

/// How long one answer may take.
const WAIT: Duration = Duration::from_secs(3);
/// How long to be sure nothing comes.
const QUIET: Duration = Duration::from_millis(300);

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A probe connected with a 5.0 CONNECT that accepts packets of at most `maximum` bytes, asks for
/// Response Information and takes one QoS 1 or 2 message at a time (Receive Maximum 1), its own
/// decoder held to the same limit. Returns the probe and what
/// answered the CONNECT: the CONNACK with its size, or `None` if the connection closed instead.
async fn connect(running: &Running, client_id: &str, maximum: Option<u32>) -> (Probe, Option<(ConnAck, u32)>) {
    let options = match maximum {
        Some(maximum) => ProbeOptions::client().with_maximum_packet_size(maximum),
        None => ProbeOptions::client(),
    };
    let mut probe = Probe::connect_tcp(running.address, options)
        .await
        .expect("the probe connects");
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive_s: 60,
        client_id: client_id.into(),
        properties: Properties::from(PropertyFields {
            maximum_packet_size: maximum,
            request_response_information: Some(true),
            receive_maximum: Some(1),
            ..PropertyFields::default()
        }),
        ..Connect::default()
    };
    probe
        .send(&Packet::Connect(Box::new(connect)))
        .await
        .expect("the CONNECT is sent");
    match probe.receive(WAIT).await {
        Ok(Packet::ConnAck(connack)) => {
            let size = last_size(&probe);
            (probe, Some((connack, size)))
        }
        Ok(other) => panic!(
            "{client_id}: {other:?} instead of a CONNACK\n{}",
            probe.trace().render(true)
        ),
        Err(_) if probe.is_closed() => (probe, None),
        Err(error) => panic!("{client_id}: {error}\n{}", probe.trace().render(true)),
    }
}

/// The size on the wire of the last packet the probe received.
fn last_size(probe: &Probe) -> u32 {
    let entry = probe
        .trace()
        .entries()
        .rev()
        .find(|entry| entry.packet.is_some() && entry.direction.arrow() == "<-")
        .expect("a packet was received");
    entry.raw.len() as u32
}

/// The one packet `probe` gets next, with its size; panics with the trace otherwise.
async fn answer(probe: &mut Probe, what: &str) -> (Packet, u32) {
    match probe.receive(WAIT).await {
        Ok(packet) => {
            let size = last_size(probe);
            (packet, size)
        }
        Err(error) => panic!("{what}: {error}\n{}", probe.trace().render(true)),
    }
}

/// The connection must close now, after a DISCONNECT with `code`.
async fn expect_disconnect(probe: &mut Probe, code: ReasonCode, what: &str) {
    let report = probe
        .expect_close(Duration::ZERO..=WAIT)
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}\n{}", probe.trace().render(true)));
    assert_eq!(
        report.disconnect.map(|disconnect| disconnect.reason_code),
        Some(code),
        "{what}\n{}",
        probe.trace().render(true)
    );
}

fn reason_string(packet: &Packet) -> Option<&str> {
    let properties = match packet {
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => &ack.properties,
        Packet::Disconnect(disconnect) => &disconnect.properties,
        Packet::ConnAck(connack) => &connack.properties,
        _ => return None,
    };
    properties.reason_string.as_deref()
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: Bytes) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id,
        payload,
        ..Publish::default()
    })
}

#[tokio::test]
async fn a_connack_is_whole_at_the_limit_cut_one_byte_under_and_absent_when_nothing_fits() {
    let config = Config {
        server_keep_alive_s: Some(30),
        ..Config::default()
    };
    let running = Running::start(config, ServerOptions::default()).await;
    // One id length throughout: the CONNACKs differ only in what was cut.
    let (_, whole) = connect(&running, "k0", None).await;
    let (whole, whole_size) = whole.expect("a CONNACK");
    assert!(whole.properties.response_information.is_some());

    let (_, at_limit) = connect(&running, "k1", Some(whole_size)).await;
    let (connack, size) = at_limit.expect("a CONNACK exactly at the limit");
    assert_eq!(size, whole_size);
    assert!(connack.properties.response_information.is_some(), "whole at the limit");

    let (_, under) = connect(&running, "k2", Some(whole_size - 1)).await;
    let (connack, size) = under.expect("a CONNACK one byte under");
    assert!(size < whole_size);
    assert_eq!(connack.properties.response_information, None, "the first thing cut");
    assert_eq!(connack.properties.receive_maximum, whole.properties.receive_maximum);

    // The smallest the broker can cut a CONNACK to: Receive Maximum and Maximum Packet Size stay.
    let bare = Packet::ConnAck(ConnAck {
        properties: Properties::from(PropertyFields {
            receive_maximum: whole.properties.receive_maximum,
            maximum_packet_size: whole.properties.maximum_packet_size,
            ..PropertyFields::default()
        }),
        ..ConnAck::default()
    });
    let bare = encoded_len(&bare, V5).expect("encodable") as u32;
    let (_, smallest) = connect(&running, "k3", Some(bare)).await;
    assert_eq!(smallest.expect("the bare CONNACK fits").1, bare);
    let (probe, none) = connect(&running, "k4", Some(bare - 1)).await;
    assert!(none.is_none(), "closed, never a CONNACK past the limit");
    assert!(probe.is_closed());
    assert_eq!(running.statistics.required_packets_too_large.load(Ordering::Relaxed), 1);
    running.stop().await;
}

#[tokio::test]
async fn acknowledgements_and_disconnects_lose_their_reason_string_one_byte_past_the_limit() {
    // Each provocation gets a packet whose reason code is not Success, named in a Reason String.
    // Topic levels are limited to two, so "a/b/c" is refused with 0x90.
    let config = Config {
        topic_levels_max: 2,
        ..Config::default()
    };
    let running = Running::start(config, ServerOptions::default()).await;
    let cases: [(PacketType, Packet); 5] = [
        (
            PacketType::PubAck,
            publish("a/b/c", QoS::AtLeastOnce, Some(1), Bytes::from_static(b"x")),
        ),
        (
            PacketType::PubRec,
            publish("a/b/c", QoS::ExactlyOnce, Some(1), Bytes::from_static(b"x")),
        ),
        // A PUBREL for an id not held: PUBCOMP 0x92 (5.0 §3.7.2.1).
        (PacketType::PubComp, Packet::PubRel(PublishAck::new(9))),
        // A PUBREC for an id not in flight: PUBREL 0x92 (5.0 §4.3.3).
        (PacketType::PubRel, Packet::PubRec(PublishAck::new(9))),
        // More than three levels: a DISCONNECT 0x90 for a QoS 0 PUBLISH, which has no ack.
        (
            PacketType::Disconnect,
            publish("a/b/c", QoS::AtMostOnce, None, Bytes::from_static(b"x")),
        ),
    ];
    for (index, (expected, provocation)) in cases.iter().enumerate() {
        let what = expected.name();
        let (mut probe, _) = connect(&running, &format!("w{index}"), None).await;
        probe.send(provocation).await.expect("sent");
        let (whole, whole_size) = answer(&mut probe, what).await;
        assert_eq!(whole.packet_type(), *expected);
        assert!(reason_string(&whole).is_some(), "{what} names its code: {whole:?}");

        let (mut probe, _) = connect(&running, &format!("x{index}"), Some(whole_size)).await;
        probe.send(provocation).await.expect("sent");
        let (packet, size) = answer(&mut probe, what).await;
        assert_eq!(
            (&packet, size),
            (&whole, whole_size),
            "{what} exactly at the limit: whole"
        );

        let (mut probe, _) = connect(&running, &format!("y{index}"), Some(whole_size - 1)).await;
        probe.send(provocation).await.expect("sent");
        let (packet, _) = answer(&mut probe, what).await;
        assert_eq!(packet.packet_type(), *expected, "{what} one byte over: still sent");
        assert_eq!(
            reason_string(&packet),
            None,
            "{what} one byte over: without its Reason String"
        );
    }
    assert_eq!(running.statistics.required_packets_too_large.load(Ordering::Relaxed), 0);
    running.stop().await;
}

#[tokio::test]
async fn a_suback_or_unsuback_past_the_limit_closes_the_connection_with_0x95() {
    let running = Running::start_default().await;
    let filters = |count: usize| -> Vec<String> { (0..count).map(|i| format!("f/{i}")).collect() };
    // Twelve codes make a SUBACK larger than any CONNACK the broker sends by default.
    let count = 12;
    let limit = encoded_len(
        &Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::SUCCESS; count],
        }),
        V5,
    )
    .expect("encodable") as u32;
    for unsubscribe in [false, true] {
        let what = if unsubscribe { "UNSUBACK" } else { "SUBACK" };
        let request = |filters: Vec<String>| -> Packet {
            if unsubscribe {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: 1,
                    properties: Properties::default(),
                    filters,
                })
            } else {
                Packet::Subscribe(Subscribe {
                    packet_id: 1,
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
        let (mut probe, connack) = connect(&running, &format!("{what}-fits"), Some(limit)).await;
        assert!(connack.is_some());
        probe.send(&request(filters(count))).await.expect("sent");
        let (packet, size) = answer(&mut probe, what).await;
        assert_eq!(
            (packet.packet_type().name(), size),
            (what, limit),
            "exactly at the limit"
        );

        let (mut probe, _) = connect(&running, &format!("{what}-over"), Some(limit)).await;
        probe.send(&request(filters(count + 1))).await.expect("sent");
        expect_disconnect(&mut probe, ReasonCode::PACKET_TOO_LARGE, what).await;
    }
    assert_eq!(running.statistics.required_packets_too_large.load(Ordering::Relaxed), 2);
    running.stop().await;
}

#[tokio::test]
async fn a_publish_past_the_clients_limit_is_dropped_as_delivered_and_blocks_nothing() {
    let running = Running::start_default().await;
    // Measure the PUBLISH the subscriber gets.
    let payload = Bytes::from(vec![b'p'; 100]);
    let (mut measure, _) = connect(&running, "measure", None).await;
    measure
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: "size/t".into(),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
        }))
        .await
        .expect("sent");
    measure.expect(&Pattern::suback(), WAIT).await.expect("SUBACK");
    let (mut publisher, _) = connect(&running, "publisher", None).await;
    publisher
        .send(&publish("size/t", QoS::AtLeastOnce, Some(1), payload.clone()))
        .await
        .expect("sent");
    publisher.expect(&Pattern::puback(), WAIT).await.expect("PUBACK");
    let (_, whole_size) = answer(&mut measure, "PUBLISH").await;

    // Topics of one length, so that each PUBLISH below is whole_size bytes.
    for (limit, delivered, topic) in [(whole_size, true, "size/x"), (whole_size - 1, false, "size/y")] {
        let (mut subscriber, _) = connect(&running, &format!("sub-{limit}"), Some(limit)).await;
        // Receive Maximum 1: a QoS 1 message dropped as delivered must not hold the one place,
        // so the small one after it arrives.
        subscriber
            .send(&Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                subscriptions: vec![Subscription {
                    filter: topic.into(),
                    options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                }],
            }))
            .await
            .expect("sent");
        subscriber.expect(&Pattern::suback(), WAIT).await.expect("SUBACK");
        publisher
            .send(&publish(topic, QoS::AtLeastOnce, Some(2), payload.clone()))
            .await
            .expect("sent");
        publisher.expect(&Pattern::puback(), WAIT).await.expect("PUBACK");
        publisher
            .send(&publish(topic, QoS::AtLeastOnce, Some(3), Bytes::from_static(b"small")))
            .await
            .expect("sent");
        publisher.expect(&Pattern::puback(), WAIT).await.expect("PUBACK");
        let (first, size) = answer(&mut subscriber, "PUBLISH").await;
        if delivered {
            assert_eq!(size, whole_size, "exactly at the limit: delivered");
            let Packet::Publish(first) = &first else {
                panic!("a PUBLISH expected: {first:?}")
            };
            let packet_id = first.packet_id.expect("QoS 1");
            subscriber
                .send(&Packet::PubAck(PublishAck::new(packet_id)))
                .await
                .expect("sent");
            let (second, _) = answer(&mut subscriber, "PUBLISH").await;
            assert!(matches!(second, Packet::Publish(Publish { ref payload, .. }) if &payload[..] == b"small"));
        } else {
            assert!(
                matches!(first, Packet::Publish(Publish { ref payload, .. }) if &payload[..] == b"small"),
                "one byte over: dropped (5.0 MQTT-3.1.2-25), and the next one is not held up: {first:?}"
            );
        }
        subscriber.expect_nothing(QUIET).await.expect("nothing else");
    }
    running.stop().await;
}

#[tokio::test]
async fn what_a_client_sends_is_taken_up_to_the_brokers_limit_and_refused_one_byte_past_it() {
    const LIMIT: u32 = 256;
    let config = Config {
        maximum_packet_size: LIMIT,
        ..Config::default()
    };
    let running = Running::start(config, ServerOptions::default()).await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        // A QoS 1 PUBLISH of exactly `size` bytes in `version`.
        let sized = |size: u32| {
            // Measured on a payload long enough that the remaining length takes two bytes, as it
            // does at the sizes used here.
            let probe = publish("in/t", QoS::AtLeastOnce, Some(1), Bytes::from(vec![b'i'; 200]));
            let overhead = encoded_len(&probe, version).expect("encodable") as u32 - 200;
            let packet = publish(
                "in/t",
                QoS::AtLeastOnce,
                Some(1),
                Bytes::from(vec![b'i'; (size - overhead) as usize]),
            );
            assert_eq!(encoded_len(&packet, version).expect("encodable") as u32, size);
            packet
        };
        for (size, taken) in [(LIMIT, true), (LIMIT + 1, false)] {
            let what = format!("{version} PUBLISH of {size} bytes");
            let mut probe = Probe::connect_tcp(running.address, ProbeOptions::client())
                .await
                .expect("the probe connects");
            let connect = Connect {
                protocol: version,
                clean_start: true,
                keep_alive_s: 60,
                client_id: format!("in-{version}-{size}"),
                ..Connect::default()
            };
            probe.send(&Packet::Connect(Box::new(connect))).await.expect("sent");
            probe.expect(&Pattern::connack(), WAIT).await.expect("CONNACK");
            probe.send(&sized(size)).await.expect("sent");
            if taken {
                probe
                    .expect(&Pattern::puback(), WAIT)
                    .await
                    .unwrap_or_else(|error| panic!("{what}: {error}"));
            } else if version.is_v5() {
                expect_disconnect(&mut probe, ReasonCode::PACKET_TOO_LARGE, &what).await;
            } else {
                let report = probe
                    .expect_close(Duration::ZERO..=WAIT)
                    .await
                    .unwrap_or_else(|error| panic!("{what}: {error}"));
                assert!(report.disconnect.is_none(), "3.1.1 servers send no DISCONNECT");
            }
        }
    }
    running.stop().await;
}
