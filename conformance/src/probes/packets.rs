//! Probe cases of chapters 1 and 2 (data representation, packet format), 3.12 to 3.14 (PINGREQ,
//! PINGRESP, DISCONNECT) and 4.13 (handling errors): what YAML cannot say, such as raw CONNECT
//! packets, the exact bytes the broker sent, and identifiers computed from what it sent.

use bytes::Bytes;
use mqtt_client::probe::{Incoming, Pattern, Probe, TraceDirection};
use mqtt_protocol::{
    Connect, Packet, PacketType, Properties, PropertyFields, Publish, PublishAck, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions, Unsubscribe,
};
use mqtt_scenarios::scenario::{Capability, CaseLevel, Phase};

use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "broker-output-well-formed",
        about: "The broker sends each kind of packet of a session (CONNACK, SUBACK, PUBLISH at QoS 0, 1 \
                and 2, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, PINGRESP) in its strict shape: \
                reserved flags as listed, well-formed strings and string pairs, minimal Variable Byte \
                Integers, a QoS 0 PUBLISH without packet identifier, a zero Property Length where there \
                are no properties, and every acknowledgement under the identifier of the packet it \
                answers.",
        versions: &["5.0", "3.1.1"],
        statements: &[
            "5.0:MQTT-2.2.1-5",
            "3.1.1:MQTT-2.3.1-6",
            "5.0:MQTT-2.2.1-6",
            "3.1.1:MQTT-2.3.1-7",
            "5.0:MQTT-2.2.1-2",
            "3.1.1:MQTT-2.3.1-5",
            "5.0:MQTT-2.1.3-1",
            "3.1.1:MQTT-2.2.2-1",
            "5.0:MQTT-2.2.2-1",
            "5.0:MQTT-1.5.4-1",
            "3.1.1:MQTT-1.5.3-1",
            "5.0:MQTT-1.5.5-1",
            "5.0:MQTT-1.5.7-1",
            "MQTT-3.12.4-1",
        ],
        level: CaseLevel::Must,
        needs: &[Capability::Qos1, Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(broker_output_well_formed(context)),
    },
    ProbeCase {
        name: "server-packet-ids-distinct",
        about: "Each QoS 1 and QoS 2 PUBLISH the broker sends gets a non-zero packet identifier that no \
                other exchange in flight on the session uses; identifiers the client uses for its own \
                PUBLISH packets meanwhile are a separate set and change nothing.",
        versions: &["5.0", "3.1.1"],
        statements: &["5.0:MQTT-2.2.1-4", "3.1.1:MQTT-2.3.1-1"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos1, Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(server_packet_ids_distinct(context)),
    },
    ProbeCase {
        name: "null-in-client-id-closes",
        about: "A CONNECT whose client identifier encodes U+0000 is malformed: the broker does not accept \
                it (it may answer with a failing CONNACK) and closes the connection; other clients go on \
                being served.",
        versions: &["5.0", "3.1.1"],
        statements: &[
            "5.0:MQTT-1.5.4-2",
            "3.1.1:MQTT-1.5.3-2",
            "5.0:MQTT-4.13.1-1",
            "3.1.1:MQTT-4.8.0-1",
        ],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(null_in_client_id_closes(context)),
    },
    ProbeCase {
        name: "no-disconnect-before-connack",
        about: "Before it has accepted a connection with a CONNACK below 0x80 the broker sends no \
                DISCONNECT: a PINGREQ instead of a CONNECT, a CONNECT with its reserved flag set, and a \
                CONNECT naming an authentication method the broker does not offer each end in a close, \
                at most after a failing CONNACK.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.14.0-1", "5.0:MQTT-4.13.2-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(no_disconnect_before_connack(context)),
    },
    ProbeCase {
        name: "server-disconnect-well-formed",
        about: "A DISCONNECT the broker sends (here on a session takeover, on a second CONNECT and on a \
                Topic Alias 0) uses a DISCONNECT reason code, carries no Session Expiry Interval, fits \
                the Maximum Packet Size the client announced (leaving out Reason String and User \
                Properties if need be), and is the last packet on the connection, which the broker \
                then closes.",
        versions: &["5.0"],
        statements: &[
            "5.0:MQTT-3.14.2-1",
            "5.0:MQTT-3.14.2-2",
            "5.0:MQTT-3.14.2-3",
            "5.0:MQTT-3.14.2-4",
            "5.0:MQTT-3.14.4-1",
            "5.0:MQTT-3.14.4-2",
        ],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(server_disconnect_well_formed(context)),
    },
];

/// `Ok(())` when `condition` holds, else a failure saying `message`.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(Failure::new(message()))
    }
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    }
}

fn subscribe(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: filter.to_owned(),
            options: SubscriptionOptions::with_qos(qos),
        }],
    })
}

/// The raw bytes of the last packet of `packet_type` the probe received.
fn last_received_raw(probe: &Probe, packet_type: PacketType) -> Option<Bytes> {
    probe
        .trace()
        .entries()
        .rev()
        .find(|entry| {
            entry.direction == TraceDirection::Received
                && entry
                    .packet
                    .as_ref()
                    .is_some_and(|packet| packet.packet_type() == packet_type)
        })
        .map(|entry| entry.raw.clone())
}

/// The Remaining Length field of a whole packet: its value and how many bytes it took.
fn remaining_length(raw: &[u8]) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for (index, byte) in raw.iter().skip(1).take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// The fewest bytes a Variable Byte Integer holding `value` takes.
fn minimal_length(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The received PUBLISH `packet` as a `Publish`, or a failure.
fn as_publish(packet: Packet) -> Result<Publish, Failure> {
    match packet {
        Packet::Publish(publish) => Ok(publish),
        other => Err(Failure::new(format!(
            "expected a PUBLISH, got {:?}",
            other.packet_type()
        ))),
    }
}

async fn broker_output_well_formed(context: Context) -> Result<Finding, Failure> {
    let wait = context.wait();
    let filter = context.topic("shape/#");
    let (plain, rich, one, two) = (
        context.topic("shape/plain"),
        context.topic("shape/\u{FEFF}rich-\u{E4}"),
        context.topic("shape/one"),
        context.topic("shape/two"),
    );

    let mut sub = context.connected("sub").await?;
    sub.send(&subscribe(0xBEEF, &filter, QoS::ExactlyOnce)).await?;
    sub.expect(&Pattern::suback().packet_id(0xBEEF), wait).await?;
    let mut publisher = context.connected("pub").await?;

    // QoS 0, no properties: no packet identifier, and in 5.0 a Property Length of zero. Both
    // show in the payload: a packet identifier or a missing Property Length would shift it.
    publisher
        .send(&Packet::Publish(publish(&plain, QoS::AtMostOnce, None, b"zero")))
        .await?;
    let received = as_publish(sub.expect(&Pattern::publish().topic(&plain), wait).await?)?;
    ensure(
        received.packet_id.is_none() && received.payload.as_ref() == b"zero",
        || format!("the QoS 0 PUBLISH arrived as {received:?}, not with payload \"zero\" and no packet identifier"),
    )?;
    // (A broker that added properties of its own would leave nothing to check here; the SUBACK
    // and UNSUBACK below, which decode only with their Property Length, still show the rule.)
    if context.v5() && received.properties.is_empty() {
        let raw = last_received_raw(&sub, PacketType::Publish).unwrap_or_default();
        let topic_end = remaining_length(&raw).map_or(0, |(_, len)| 1 + len) + 2 + plain.len();
        ensure(raw.get(topic_end) == Some(&0), || {
            format!("the byte after the topic is not a zero Property Length: {raw:02X?}")
        })?;
    }

    // 5.0: strings with U+FEFF and a non-ASCII letter, user properties (string pairs) in order,
    // and a payload long enough for a two-byte Remaining Length.
    let payload: &'static [u8] = &[b'p'; 300];
    let mut rich_publish = publish(&rich, QoS::AtMostOnce, None, payload);
    let user_properties = vec![
        ("n\u{FEFF}me".to_owned(), "v\u{E4}lue".to_owned()),
        ("k".to_owned(), "v".to_owned()),
        ("k".to_owned(), "w".to_owned()),
    ];
    if context.v5() {
        rich_publish.properties = Properties::from(PropertyFields {
            content_type: Some("text/plain; charset=\u{E4}".to_owned()),
            user_properties: user_properties.clone(),
            ..PropertyFields::default()
        });
    }
    publisher.send(&Packet::Publish(rich_publish)).await?;
    let received = as_publish(sub.expect(&Pattern::publish().topic(&rich), wait).await?)?;
    ensure(received.payload.as_ref() == payload, || {
        format!("the 300-byte payload arrived as {} bytes", received.payload.len())
    })?;
    let raw = last_received_raw(&sub, PacketType::Publish).unwrap_or_default();
    let (value, len) = remaining_length(&raw).ok_or_else(|| Failure::new("no Remaining Length"))?;
    ensure(len == minimal_length(value), || {
        format!("Remaining Length {value} takes {len} bytes, not the fewest")
    })?;
    if context.v5() {
        ensure(received.properties.user_properties == user_properties, || {
            format!(
                "the user properties arrived as {:?}, sent as {user_properties:?}",
                received.properties.user_properties
            )
        })?;
    }

    // QoS 1 and 2, each acknowledgement under the identifier of the PUBLISH it answers: the
    // publisher's own, and towards the subscriber a non-zero one the broker chose, which its
    // PUBREL repeats.
    publisher
        .send(&Packet::Publish(publish(&one, QoS::AtLeastOnce, Some(0x1234), b"one")))
        .await?;
    publisher.expect(&Pattern::puback().packet_id(0x1234), wait).await?;
    let received = as_publish(
        sub.expect(&Pattern::publish().topic(&one).qos(QoS::AtLeastOnce), wait)
            .await?,
    )?;
    let one_id = received
        .packet_id
        .ok_or_else(|| Failure::new("a QoS 1 PUBLISH without packet identifier"))?;
    sub.send(&Packet::PubAck(PublishAck::new(one_id))).await?;

    publisher
        .send(&Packet::Publish(publish(&two, QoS::ExactlyOnce, Some(0x5678), b"two")))
        .await?;
    publisher.expect(&Pattern::pubrec().packet_id(0x5678), wait).await?;
    publisher.send(&Packet::PubRel(PublishAck::new(0x5678))).await?;
    publisher.expect(&Pattern::pubcomp().packet_id(0x5678), wait).await?;
    let received = as_publish(
        sub.expect(&Pattern::publish().topic(&two).qos(QoS::ExactlyOnce), wait)
            .await?,
    )?;
    let two_id = received
        .packet_id
        .ok_or_else(|| Failure::new("a QoS 2 PUBLISH without packet identifier"))?;
    sub.send(&Packet::PubRec(PublishAck::new(two_id))).await?;
    sub.expect(&Pattern::pubrel().packet_id(two_id), wait).await?;
    sub.send(&Packet::PubComp(PublishAck::new(two_id))).await?;

    sub.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 0x0BAD,
        properties: Properties::default(),
        filters: vec![filter.clone()],
    }))
    .await?;
    sub.expect(&Pattern::unsuback().packet_id(0x0BAD), wait).await?;
    sub.send(&Packet::PingReq).await?;
    sub.expect(&Pattern::pingresp(), wait).await?;
    publisher.send(&Packet::PingReq).await?;
    publisher.expect(&Pattern::pingresp(), wait).await?;
    // Nothing else was owed: anything still arriving would be unexplained.
    sub.expect_nothing(context.ms(300)).await?;
    Ok(Finding::Pass)
}

async fn server_packet_ids_distinct(context: Context) -> Result<Finding, Failure> {
    let wait = context.wait();
    let filter = context.topic("ids/#");
    let topic = context.topic("ids/t");
    let mut sub = context.connected("sub").await?;
    sub.send(&subscribe(1, &filter, QoS::ExactlyOnce)).await?;
    sub.expect(&Pattern::suback().packet_id(1), wait).await?;
    let mut publisher = context.connected("pub").await?;

    const PAYLOADS: [&[u8]; 6] = [b"a1", b"a2", b"a3", b"b1", b"b2", b"b3"];
    for (index, payload) in PAYLOADS.iter().enumerate() {
        let packet_id = index as u16 + 1;
        if index < 3 {
            publisher
                .send(&Packet::Publish(publish(
                    &topic,
                    QoS::AtLeastOnce,
                    Some(packet_id),
                    payload,
                )))
                .await?;
            publisher.expect(&Pattern::puback().packet_id(packet_id), wait).await?;
        } else {
            publisher
                .send(&Packet::Publish(publish(
                    &topic,
                    QoS::ExactlyOnce,
                    Some(packet_id),
                    payload,
                )))
                .await?;
            publisher.expect(&Pattern::pubrec().packet_id(packet_id), wait).await?;
            publisher.send(&Packet::PubRel(PublishAck::new(packet_id))).await?;
            publisher.expect(&Pattern::pubcomp().packet_id(packet_id), wait).await?;
        }
    }

    // The subscriber acknowledges nothing: all six stay in flight at once.
    let mut in_flight = Vec::new();
    for _ in PAYLOADS {
        let received = as_publish(sub.expect(&Pattern::publish().topic(&topic), wait).await?)?;
        let packet_id = received
            .packet_id
            .ok_or_else(|| Failure::new("a QoS 1 or 2 PUBLISH without packet identifier"))?;
        ensure(packet_id != 0, || "a PUBLISH with packet identifier 0".to_owned())?;
        ensure(in_flight.iter().all(|(known, _)| *known != packet_id), || {
            format!("packet identifier {packet_id} was given to a second PUBLISH while the first was in flight")
        })?;
        in_flight.push((packet_id, received.qos));
    }

    // The client's own identifiers are a set of their own: a PUBLISH under one the broker is
    // using is acknowledged under that identifier and disturbs none of the broker's exchanges.
    let shared_id = in_flight.first().map_or(1, |(packet_id, _)| *packet_id);
    let own = context.topic("ids-own/t");
    sub.send(&Packet::Publish(publish(
        &own,
        QoS::AtLeastOnce,
        Some(shared_id),
        b"own",
    )))
    .await?;
    sub.expect(&Pattern::puback().packet_id(shared_id), wait).await?;

    // Every exchange of the broker is still open and settles under its own identifier.
    for (packet_id, qos) in &in_flight {
        if *qos == QoS::ExactlyOnce {
            sub.send(&Packet::PubRec(PublishAck::new(*packet_id))).await?;
            sub.expect(&Pattern::pubrel().packet_id(*packet_id), wait).await?;
            sub.send(&Packet::PubComp(PublishAck::new(*packet_id))).await?;
        } else {
            sub.send(&Packet::PubAck(PublishAck::new(*packet_id))).await?;
        }
    }
    sub.send(&Packet::PingReq).await?;
    sub.expect(&Pattern::pingresp(), wait).await?;
    Ok(Finding::Pass)
}

async fn null_in_client_id_closes(context: Context) -> Result<Finding, Failure> {
    // CONNECT, keep alive 60, Clean Start, client id "a" U+0000 "b".
    let bytes: &[u8] = if context.v5() {
        &[
            0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x03, b'a', 0x00, b'b',
        ]
    } else {
        &[
            0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03, b'a', 0x00, b'b',
        ]
    };
    let mut probe = context.open("null-id").await?;
    probe.send_raw(bytes).await?;
    let report = probe.expect_close(std::time::Duration::ZERO..=context.wait()).await?;
    refuse_success(&report.others, "a client identifier holding U+0000")?;
    side_round_trip(&context).await?;
    Ok(Finding::Pass)
}

/// Fails when one of `packets` is a CONNACK accepting the connection.
fn refuse_success(packets: &[Incoming], what: &str) -> Result<(), Failure> {
    for incoming in packets {
        if let Incoming::Packet(Packet::ConnAck(connack)) = incoming {
            ensure(connack.reason_code != ReasonCode::SUCCESS, || {
                format!("the broker accepted a CONNECT with {what}")
            })?;
        }
    }
    Ok(())
}

/// Another client connects and gets a PINGRESP: the broker still serves.
async fn side_round_trip(context: &Context) -> Result<(), Failure> {
    let mut side = context.connected("side").await?;
    side.send(&Packet::PingReq).await?;
    side.expect(&Pattern::pingresp(), context.wait()).await?;
    Ok(())
}

async fn no_disconnect_before_connack(context: Context) -> Result<Finding, Failure> {
    let window = std::time::Duration::ZERO..=context.wait();

    // A PINGREQ first.
    let mut first = context.open("ping-first").await?;
    first.send(&Packet::PingReq).await?;
    let report = first.expect_close(window.clone()).await?;
    ensure(report.disconnect.is_none(), || {
        "a DISCONNECT came before any CONNACK (after a PINGREQ sent first)".to_owned()
    })?;

    // A CONNECT with the reserved flag set: the typed CONNECT with its flags byte changed.
    let mut bytes = bytes::BytesMut::new();
    mqtt_protocol::encode(
        &Packet::Connect(Box::new(context.connect_packet("reserved"))),
        context.version,
        &mut bytes,
    )
    .map_err(|error| Failure::new(format!("cannot encode the CONNECT: {error}")))?;
    // Fixed header (2 bytes here), protocol name (6), level (1), then the flags.
    bytes[9] |= 0x01;
    let mut reserved = context.open("reserved").await?;
    reserved.send_raw(&bytes).await?;
    let report = reserved.expect_close(window.clone()).await?;
    ensure(report.disconnect.is_none(), || {
        "a DISCONNECT came before a successful CONNACK (after a CONNECT with its reserved flag set)".to_owned()
    })?;
    refuse_success(&report.others, "its reserved flag set")?;

    // An authentication method no broker offers: a CONNACK 0x80 or above (0x8C) at most, then
    // the close, whether or not the CONNACK was sent.
    let mut connect = context.connect_packet("auth");
    connect.properties = Properties::from(PropertyFields {
        authentication_method: Some("mqtt-harness-no-such-method".to_owned()),
        ..PropertyFields::default()
    });
    let mut auth = context.open("auth").await?;
    auth.send(&Packet::Connect(Box::new(connect))).await?;
    let report = auth.expect_close(window).await?;
    ensure(report.disconnect.is_none(), || {
        "a DISCONNECT came before a successful CONNACK (after a CONNECT with an unknown authentication method)"
            .to_owned()
    })?;
    refuse_success(&report.others, "an authentication method it does not offer")?;
    Ok(Finding::Pass)
}

async fn server_disconnect_well_formed(context: Context) -> Result<Finding, Failure> {
    // The size of this broker's CONNACK, so that the limit lets it through and little else.
    let mut measure = context.connected("measure").await?;
    let connack_size = last_received_raw(&measure, PacketType::ConnAck)
        .map_or(0, |raw| raw.len() as u32)
        .max(8);
    measure.send(&Packet::Disconnect(Default::default())).await?;
    let limited = |mut connect: Connect| {
        connect.properties.maximum_packet_size = Some(connack_size);
        connect
    };

    let mut disconnects = Vec::new();
    // A takeover: the first connection of a client id gets closed.
    let taken = context
        .connect("taken", limited(context.connect_packet("taken")))
        .await?;
    let mut taken = taken;
    let _second = context.connected("taken").await?;
    if let Some(code) = judge_server_disconnect(&context, &mut taken, connack_size, "the takeover").await? {
        disconnects.push(code);
    }
    // A second CONNECT.
    let mut twice = context
        .connect("twice", limited(context.connect_packet("twice")))
        .await?;
    twice
        .send(&Packet::Connect(Box::new(context.connect_packet("twice"))))
        .await?;
    if let Some(code) = judge_server_disconnect(&context, &mut twice, connack_size, "a second CONNECT").await? {
        disconnects.push(code);
    }
    // A PUBLISH with Topic Alias 0 (QoS 1, topic "ta/z", id 12, payload "z0").
    let mut alias = context
        .connect("alias", limited(context.connect_packet("alias")))
        .await?;
    alias
        .send_raw(&[
            0x32, 0x0E, 0x00, 0x04, b't', b'a', b'/', b'z', 0x00, 0x0C, 0x03, 0x23, 0x00, 0x00, b'z', b'0',
        ])
        .await?;
    if let Some(code) = judge_server_disconnect(&context, &mut alias, connack_size, "a Topic Alias 0").await? {
        disconnects.push(code);
    }
    if disconnects.is_empty() {
        return Ok(Finding::NotApplicable(
            "the broker closed every connection without a DISCONNECT, so there was none to check".to_owned(),
        ));
    }
    Ok(Finding::Pass)
}

/// Waits for the close of `probe`; if a DISCONNECT came first, checks that it fits `maximum`
/// and that nothing came after it. The decoder already checked its reason code and properties.
async fn judge_server_disconnect(
    context: &Context,
    probe: &mut Probe,
    maximum: u32,
    after: &str,
) -> Result<Option<ReasonCode>, Failure> {
    let report = probe.expect_close(std::time::Duration::ZERO..=context.wait()).await?;
    let Some(disconnect) = report.disconnect else {
        return Ok(None);
    };
    let raw = last_received_raw(probe, PacketType::Disconnect).unwrap_or_default();
    ensure(raw.len() as u32 <= maximum, || {
        format!(
            "the DISCONNECT after {after} is {} bytes, over the Maximum Packet Size {maximum} the client announced",
            raw.len()
        )
    })?;
    let mut seen_disconnect = false;
    for entry in probe.trace().entries() {
        if entry.direction != TraceDirection::Received {
            continue;
        }
        match &entry.packet {
            Some(Packet::Disconnect(_)) => seen_disconnect = true,
            Some(packet) if seen_disconnect => {
                return Err(Failure::new(format!(
                    "the broker sent a {:?} after its DISCONNECT (after {after})",
                    packet.packet_type()
                )))
            }
            _ => {}
        }
    }
    Ok(Some(disconnect.reason_code))
}
