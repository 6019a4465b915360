//! Probe cases of §3.3 to §3.7 (PUBLISH and its acknowledgements): what YAML cannot say. Limits
//! the broker announced (Topic Alias Maximum, Receive Maximum, Maximum Packet Size), malformed
//! PUBLISH packets on the run's own topics, the order of User Properties, the Subscription
//! Identifiers of overlapping subscriptions, and the sizes of the acknowledgements the broker
//! sends a client with a small Maximum Packet Size.

use std::collections::BTreeMap;

use bytes::Bytes;
use mqtt_client::probe::{Pattern, Probe, ProbeError};
use mqtt_protocol::{
    encoded_len, Packet, Properties, PropertyFields, ProtocolVersion, Publish, PublishAck, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions,
};
use mqtt_scenarios::scenario::{Capability, CaseLevel, Phase};

use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "publish-user-properties-in-order",
        about: "User Properties, a repeated name among them, reach QoS 0 and QoS 1 subscribers all there and in the order the publisher wrote them.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.3.2-18", "5.0:MQTT-3.3.2-17"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos1],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(user_properties_in_order(context)),
    },
    ProbeCase {
        name: "publish-subscription-identifiers-overlapping",
        about: "A message matching three subscriptions of one client, two with Subscription Identifiers, carries both identifiers when sent as one copy, or each copy carries its own subscription's identifier.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.3.4-3", "5.0:MQTT-3.3.4-4", "5.0:MQTT-3.3.4-5"],
        level: CaseLevel::Must,
        needs: &[Capability::SubscriptionIdentifiers, Capability::WildcardSubscriptions],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(subscription_identifiers_overlapping(context)),
    },
    ProbeCase {
        name: "topic-alias-up-to-maximum-accepted",
        about: "Topic Alias 1 and the broker's Topic Alias Maximum are both accepted: each is mapped with a topic, then used alone, and every message reaches the subscriber on its topic.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.3.2-12"],
        level: CaseLevel::Must,
        needs: &[Capability::TopicAliases, Capability::Qos1],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(topic_alias_up_to_maximum_accepted(context)),
    },
    ProbeCase {
        name: "topic-alias-above-maximum-closes",
        about: "A PUBLISH with a Topic Alias one above the broker's Topic Alias Maximum is a Protocol Error: the broker closes the connection (should send DISCONNECT 0x94 first), does not forward the message, and serves other clients on.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.3.2-9", "5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos1],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(topic_alias_above_maximum_closes(context)),
    },
    ProbeCase {
        name: "topic-alias-zero-closes",
        about: "A PUBLISH with Topic Alias 0 is a Protocol Error: the broker closes the connection (should send DISCONNECT 0x94 first), does not forward the message, and serves other clients on.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.3.2-8", "5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos1],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(topic_alias_zero_closes(context)),
    },
    ProbeCase {
        name: "topic-alias-from-broker-within-maximum",
        about: "A subscriber that allows Topic Alias Maximum 2 gets messages on four topics with no alias or aliases 1 and 2 only, each resolving to the right topic; one that allows none gets no alias at all.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.3.2-11", "5.0:MQTT-3.3.2-8", "5.0:MQTT-3.1.2-26", "5.0:MQTT-3.1.2-27"],
        level: CaseLevel::Must,
        needs: &[Capability::WildcardSubscriptions],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(topic_alias_from_broker_within_maximum(context)),
    },
    ProbeCase {
        name: "publish-receive-maximum-exceeded-closes",
        about: "A client may have as many unfinished QoS 2 PUBLISH packets as the broker's Receive Maximum, and the broker answers other packets meanwhile; one more is a Protocol Error: the broker closes the connection (should send DISCONNECT 0x93 first).",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.3.4-7", "5.0:MQTT-4.13.1-1"],
        // The client's duty is the MUST; §4.13.1 leaves which errors a receiver detects to the
        // implementation, so a broker that answers otherwise (mosquitto: PUBREC 0x97) is
        // reported, not failed.
        level: CaseLevel::Should,
        needs: &[Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(receive_maximum_exceeded_closes(context)),
    },
    ProbeCase {
        name: "publish-packet-too-large-closes",
        about: "A PUBLISH one byte over the Maximum Packet Size the broker announced is a Protocol Error: the broker closes the connection (should send DISCONNECT 0x95 first), does not forward it, and serves other clients on.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos1],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(packet_too_large_closes(context)),
    },
    ProbeCase {
        name: "publish-acks-within-maximum-packet-size",
        about: "A client announcing Maximum Packet Size 32 gets every PUBACK, PUBREC, PUBREL and PUBCOMP the broker sends it (Success or not) within 32 bytes, so without a Reason String or User Property that would not fit.",
        versions: &["5.0"],
        statements: &[
            "5.0:MQTT-3.4.2-2",
            "5.0:MQTT-3.4.2-3",
            "5.0:MQTT-3.5.2-2",
            "5.0:MQTT-3.5.2-3",
            "5.0:MQTT-3.6.2-2",
            "5.0:MQTT-3.6.2-3",
            "5.0:MQTT-3.7.2-2",
            "5.0:MQTT-3.7.2-3",
            "5.0:MQTT-3.4.2-1",
            "5.0:MQTT-3.1.2-24",
        ],
        level: CaseLevel::Must,
        needs: &[Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(acks_within_maximum_packet_size(context)),
    },
];

/// The Maximum Packet Size the small client of [`acks_within_maximum_packet_size`] announces:
/// room for a CONNACK with the usual properties and for every acknowledgement without a Reason
/// String, not for one with a Reason String of more than a few words.
const SMALL_PACKET_SIZE: u32 = 32;

/// The most unfinished QoS 2 messages [`receive_maximum_exceeded_closes`] sends to reach the
/// broker's Receive Maximum; a broker announcing more is not tried.
const RECEIVE_MAXIMUM_TRIED_MAX: u16 = 5_000;

/// The largest announced Maximum Packet Size [`packet_too_large_closes`] sends one byte over.
const PACKET_SIZE_TRIED_MAX: u32 = 16 * 1024 * 1024;

/// A fresh client connects, pings and gets its answer: the broker still serves after closing a
/// connection on an error.
async fn side_round_trip(context: &Context) -> Result<(), Failure> {
    let mut side = context.connected("side").await?;
    side.send(&Packet::PingReq).await?;
    side.expect(&Pattern::pingresp(), context.wait()).await?;
    Ok(())
}

/// A SUBSCRIBE with one filter (and a Subscription Identifier, if given); its SUBACK must grant
/// `qos`.
async fn subscribe(
    context: &Context,
    probe: &mut Probe,
    packet_id: u16,
    filter: &str,
    qos: QoS,
    identifier: Option<u32>,
) -> Result<(), Failure> {
    let mut properties = Properties::default();
    if let Some(identifier) = identifier {
        properties.subscription_identifiers.push(identifier);
    }
    probe
        .send(&Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            subscriptions: vec![Subscription {
                filter: filter.to_owned(),
                options: SubscriptionOptions::with_qos(qos),
            }],
        }))
        .await?;
    probe
        .expect(
            &Pattern::suback()
                .packet_id(packet_id)
                .reason_codes([ReasonCode(qos.as_u8())]),
            context.wait(),
        )
        .await?;
    Ok(())
}

fn publish(topic: &str, payload: &str, qos: QoS, packet_id: Option<u16>, properties: Properties) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties,
        payload: Bytes::from(payload.to_owned().into_bytes()),
    })
}

/// A Variable Byte Integer.
fn variable_byte_integer(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            break;
        }
    }
}

/// A 5.0 PUBLISH as bytes, whatever the rules say: `properties` is the encoded property list
/// (without its length).
fn raw_publish(qos: u8, topic: &str, packet_id: Option<u16>, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    if let Some(packet_id) = packet_id {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    variable_byte_integer(properties.len(), &mut body);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    let mut packet = vec![0x30 | (qos << 1)];
    variable_byte_integer(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// The Topic Alias property, encoded.
fn topic_alias_property(alias: u16) -> Vec<u8> {
    let mut property = vec![0x23];
    property.extend_from_slice(&alias.to_be_bytes());
    property
}

/// The close that must follow a Protocol Error, with the DISCONNECT reason code the spec
/// recommends checked as a SHOULD.
async fn expect_close_with(context: &Context, probe: &mut Probe, code: ReasonCode) -> Result<Option<String>, Failure> {
    let report = match probe.expect_close(std::time::Duration::ZERO..=context.wait()).await {
        Ok(report) => report,
        Err(ProbeError::NotClosed { .. }) => {
            return Err(Failure::expected(
                "the broker did not close the connection after the Protocol Error",
                format!("the connection closed (DISCONNECT {code} first, as a SHOULD)"),
                format!("still open after {:?}", context.wait()),
            ))
        }
        Err(error) => return Err(error.into()),
    };
    Ok(match report.disconnect {
        Some(disconnect) if disconnect.reason_code == code => None,
        Some(disconnect) => Some(format!(
            "the broker sent DISCONNECT {} before closing; the spec names {code}",
            disconnect.reason_code
        )),
        None => Some(format!("the broker closed without DISCONNECT {code}")),
    })
}

/// Nothing on `topic` reached `subscriber`: a short wait for a forwarded message that must not
/// come.
async fn expect_not_forwarded(context: &Context, subscriber: &mut Probe, what: &str) -> Result<(), Failure> {
    match subscriber.expect_nothing(context.ms(300)).await {
        Ok(()) => Ok(()),
        Err(ProbeError::UnexpectedPacket { packet, .. }) => Err(Failure::expected(
            format!("the broker forwarded {what}"),
            "nothing for the subscriber",
            mqtt_client::probe::trace::summary(&packet),
        )),
        Err(error) => Err(error.into()),
    }
}

fn finish(note: Option<String>, context: &Context) -> Result<Finding, Failure> {
    match note {
        Some(note) => context.should_not_met(note),
        None => Ok(Finding::Pass),
    }
}

/// User Properties in order, with a repeated name, to a QoS 0 and a QoS 1 subscriber.
async fn user_properties_in_order(context: Context) -> Result<Finding, Failure> {
    let topic = context.topic("up/order");
    let mut sub0 = context.connected("sub0").await?;
    subscribe(&context, &mut sub0, 1, &topic, QoS::AtMostOnce, None).await?;
    let mut sub1 = context.connected("sub1").await?;
    subscribe(&context, &mut sub1, 1, &topic, QoS::AtLeastOnce, None).await?;
    let sent: Vec<(String, String)> = [
        ("zone", "b"),
        ("step", "1"),
        ("zone", "a"),
        ("alpha", "z"),
        ("zone", "b"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    let mut publisher = context.connected("pub").await?;
    let properties = Properties::from(PropertyFields {
        user_properties: sent.clone(),
        ..PropertyFields::default()
    });
    publisher
        .send(&publish(&topic, "ordered", QoS::AtLeastOnce, Some(1), properties))
        .await?;
    publisher
        .expect(&Pattern::puback().packet_id(1), context.wait())
        .await?;
    for (name, subscriber) in [("sub0", &mut sub0), ("sub1", &mut sub1)] {
        let received = subscriber
            .expect(
                &Pattern::publish().topic(topic.clone()).payload("ordered"),
                context.wait(),
            )
            .await?;
        let Packet::Publish(received) = received else {
            unreachable!("the pattern matches PUBLISH only");
        };
        if received.properties.user_properties != sent {
            return Err(Failure::expected(
                format!("{name}: the User Properties were not forwarded as published, in order"),
                format!("{sent:?}"),
                format!("{:?}", received.properties.user_properties),
            ));
        }
        if received.qos == QoS::AtLeastOnce {
            if let Some(packet_id) = received.packet_id {
                subscriber.send(&Packet::PubAck(PublishAck::new(packet_id))).await?;
            }
        }
    }
    Ok(Finding::Pass)
}

/// Three overlapping subscriptions, two with identifiers; one copy must carry both identifiers,
/// several copies one each (and the one without an identifier none).
async fn subscription_identifiers_overlapping(context: Context) -> Result<Finding, Failure> {
    let mut sub = context.connected("sub").await?;
    subscribe(&context, &mut sub, 1, &context.topic("si/#"), QoS::AtMostOnce, Some(7)).await?;
    subscribe(
        &context,
        &mut sub,
        2,
        &context.topic("si/a"),
        QoS::AtMostOnce,
        Some(300),
    )
    .await?;
    subscribe(&context, &mut sub, 3, &context.topic("si/+"), QoS::AtMostOnce, None).await?;
    let mut publisher = context.connected("pub").await?;
    let topic = context.topic("si/a");
    publisher
        .send(&publish(&topic, "tagged", QoS::AtMostOnce, None, Properties::default()))
        .await?;
    let first = sub
        .expect(
            &Pattern::publish().topic(topic.clone()).payload("tagged"),
            context.wait(),
        )
        .await?;
    let mut copies = vec![first];
    loop {
        match sub.receive(context.ms(500)).await {
            Ok(packet) => copies.push(packet),
            Err(ProbeError::Timeout { .. }) => break,
            Err(error) => return Err(error.into()),
        }
    }
    let mut identifier_sets: Vec<Vec<u32>> = Vec::new();
    for copy in &copies {
        let Packet::Publish(copy) = copy else {
            return Err(Failure::expected(
                "an unexpected packet among the copies",
                "PUBLISH copies of the message only",
                mqtt_client::probe::trace::summary(copy),
            ));
        };
        let mut identifiers = copy.properties.subscription_identifiers.clone();
        identifiers.sort_unstable();
        identifier_sets.push(identifiers);
    }
    identifier_sets.sort();
    let acceptable = match identifier_sets.len() {
        1 => identifier_sets[0] == [7, 300],
        3 => identifier_sets == [vec![], vec![7], vec![300]],
        _ => false,
    };
    if acceptable {
        Ok(Finding::Pass)
    } else {
        Err(Failure::expected(
            "the copies do not carry the Subscription Identifiers of the subscriptions they answer",
            "one copy with identifiers 7 and 300, or three copies with 7, 300 and none",
            format!("{} copies with identifiers {identifier_sets:?}", identifier_sets.len()),
        ))
    }
}

/// Alias 1 and alias = the broker's maximum, each mapped and then used alone.
async fn topic_alias_up_to_maximum_accepted(context: Context) -> Result<Finding, Failure> {
    let maximum = context.capabilities.topic_alias_maximum;
    let mut sub = context.connected("sub").await?;
    subscribe(&context, &mut sub, 1, &context.topic("tam/#"), QoS::AtLeastOnce, None).await?;
    let mut publisher = context.connected("pub").await?;
    let mut expected = Vec::new();
    let mut packet_id = 0;
    for (alias, name) in [(1, "low"), (maximum, "high")] {
        let topic = context.topic(&format!("tam/{name}"));
        let properties = Properties::from(PropertyFields {
            topic_alias: Some(alias),
            ..PropertyFields::default()
        });
        packet_id += 1;
        let payload = format!("{name}-mapped");
        publisher
            .send(&publish(
                &topic,
                &payload,
                QoS::AtLeastOnce,
                Some(packet_id),
                properties,
            ))
            .await?;
        publisher
            .expect(&Pattern::puback().packet_id(packet_id), context.wait())
            .await?;
        expected.push((topic.clone(), payload));
        packet_id += 1;
        let payload = format!("{name}-alone");
        publisher
            .send_raw(&raw_publish(
                1,
                "",
                Some(packet_id),
                &topic_alias_property(alias),
                payload.as_bytes(),
            ))
            .await?;
        publisher
            .expect(&Pattern::puback().packet_id(packet_id), context.wait())
            .await?;
        expected.push((topic, payload));
    }
    for (topic, payload) in expected {
        let received = sub
            .expect(&Pattern::publish().topic(topic).payload(payload), context.wait())
            .await?;
        if let Packet::Publish(Publish {
            packet_id: Some(packet_id),
            ..
        }) = received
        {
            sub.send(&Packet::PubAck(PublishAck::new(packet_id))).await?;
        }
    }
    Ok(Finding::Pass)
}

/// Alias = the broker's maximum + 1.
async fn topic_alias_above_maximum_closes(context: Context) -> Result<Finding, Failure> {
    let maximum = context.capabilities.topic_alias_maximum;
    if maximum == u16::MAX {
        return Ok(Finding::NotApplicable(
            "the broker's Topic Alias Maximum is 65535: no alias is above it".to_owned(),
        ));
    }
    let topic = context.topic("taa/over");
    let mut sub = context.connected("sub").await?;
    subscribe(&context, &mut sub, 1, &topic, QoS::AtLeastOnce, None).await?;
    let mut publisher = context.connected("pub").await?;
    publisher
        .send_raw(&raw_publish(
            1,
            &topic,
            Some(1),
            &topic_alias_property(maximum + 1),
            b"beyond",
        ))
        .await?;
    let note = expect_close_with(&context, &mut publisher, ReasonCode::TOPIC_ALIAS_INVALID).await?;
    expect_not_forwarded(&context, &mut sub, "a message with a Topic Alias above the maximum").await?;
    side_round_trip(&context).await?;
    finish(note, &context)
}

/// Alias 0, on a topic a subscriber listens to.
async fn topic_alias_zero_closes(context: Context) -> Result<Finding, Failure> {
    let topic = context.topic("taz/zero");
    let mut sub = context.connected("sub").await?;
    subscribe(&context, &mut sub, 1, &topic, QoS::AtLeastOnce, None).await?;
    let mut publisher = context.connected("pub").await?;
    publisher
        .send_raw(&raw_publish(1, &topic, Some(1), &topic_alias_property(0), b"zero"))
        .await?;
    let note = expect_close_with(&context, &mut publisher, ReasonCode::TOPIC_ALIAS_INVALID).await?;
    expect_not_forwarded(&context, &mut sub, "a message with Topic Alias 0").await?;
    side_round_trip(&context).await?;
    finish(note, &context)
}

/// What one subscriber of [`topic_alias_from_broker_within_maximum`] received: the (topic,
/// payload) of each PUBLISH with its aliases resolved, or the rule the broker broke.
async fn receive_resolving_aliases(
    context: &Context,
    subscriber: &mut Probe,
    name: &str,
    maximum: u16,
    count: usize,
) -> Result<Vec<(String, String)>, Failure> {
    let mut mappings: BTreeMap<u16, String> = BTreeMap::new();
    let mut received = Vec::new();
    while received.len() < count {
        let packet = subscriber.expect(&Pattern::publish(), context.wait()).await?;
        let Packet::Publish(publish) = packet else {
            unreachable!("the pattern matches PUBLISH only");
        };
        let topic = match publish.properties.topic_alias {
            None => publish.topic.to_string(),
            Some(alias) if alias == 0 || alias > maximum => {
                return Err(Failure::expected(
                    format!("{name}: the broker sent a Topic Alias the client did not allow"),
                    format!("no Topic Alias, or one from 1 to {maximum}"),
                    format!("Topic Alias {alias} on {:?}", publish.topic),
                ))
            }
            Some(alias) if publish.topic.is_empty() => match mappings.get(&alias) {
                Some(topic) => topic.clone(),
                None => {
                    return Err(Failure::expected(
                        format!("{name}: the broker used Topic Alias {alias} before mapping it"),
                        "an alias with an empty topic only after a PUBLISH that mapped it",
                        format!("Topic Alias {alias} with an empty topic"),
                    ))
                }
            },
            Some(alias) => {
                mappings.insert(alias, publish.topic.to_string());
                publish.topic.to_string()
            }
        };
        received.push((topic, String::from_utf8_lossy(&publish.payload).into_owned()));
    }
    Ok(received)
}

/// Twelve messages on four topics to a subscriber allowing aliases 1 and 2 and to one allowing
/// none.
async fn topic_alias_from_broker_within_maximum(context: Context) -> Result<Finding, Failure> {
    let filter = context.topic("tab/#");
    let mut connect = context.connect_packet("small");
    connect.properties = Properties::from(PropertyFields {
        topic_alias_maximum: Some(2),
        ..PropertyFields::default()
    });
    let mut small = context.connect("small", connect).await?;
    subscribe(&context, &mut small, 1, &filter, QoS::AtMostOnce, None).await?;
    let mut none = context.connected("none").await?;
    subscribe(&context, &mut none, 1, &filter, QoS::AtMostOnce, None).await?;
    let mut publisher = context.connected("pub").await?;
    let mut sent = Vec::new();
    for round in 1..=3 {
        for name in ["north", "east", "south", "west"] {
            let topic = context.topic(&format!("tab/{name}/reading"));
            let payload = format!("{name}-{round}");
            publisher
                .send(&publish(&topic, &payload, QoS::AtMostOnce, None, Properties::default()))
                .await?;
            sent.push((topic, payload));
        }
    }
    for (name, subscriber, maximum) in [("small", &mut small, 2), ("none", &mut none, 0)] {
        let received = receive_resolving_aliases(&context, subscriber, name, maximum, sent.len()).await?;
        if received != sent {
            return Err(Failure::expected(
                format!("{name}: the messages, aliases resolved, are not the ones published"),
                format!("{sent:?}"),
                format!("{received:?}"),
            ));
        }
    }
    Ok(Finding::Pass)
}

/// Receive Maximum unfinished QoS 2 messages, a PINGREQ, then one more.
async fn receive_maximum_exceeded_closes(context: Context) -> Result<Finding, Failure> {
    let maximum = context.capabilities.receive_maximum;
    if maximum > RECEIVE_MAXIMUM_TRIED_MAX {
        return Ok(Finding::NotApplicable(format!(
            "the broker's Receive Maximum is {maximum}: this case fills at most {RECEIVE_MAXIMUM_TRIED_MAX}"
        )));
    }
    let topic = context.topic("rmx/unfinished");
    let mut publisher = context.connected("pub").await?;
    for packet_id in 1..=maximum {
        publisher
            .send(&publish(
                &topic,
                "held",
                QoS::ExactlyOnce,
                Some(packet_id),
                Properties::default(),
            ))
            .await?;
    }
    for packet_id in 1..=maximum {
        publisher
            .expect(&Pattern::pubrec().packet_id(packet_id), context.wait())
            .await?;
    }
    // At the limit the connection still works.
    publisher.send(&Packet::PingReq).await?;
    publisher.expect(&Pattern::pingresp(), context.wait()).await?;
    publisher
        .send(&publish(
            &topic,
            "one-too-many",
            QoS::ExactlyOnce,
            Some(maximum + 1),
            Properties::default(),
        ))
        .await?;
    let note = expect_close_with(&context, &mut publisher, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED).await?;
    side_round_trip(&context).await?;
    finish(note, &context)
}

/// A QoS 1 PUBLISH of exactly the broker's Maximum Packet Size plus one byte.
async fn packet_too_large_closes(context: Context) -> Result<Finding, Failure> {
    let Some(maximum) = context.capabilities.maximum_packet_size else {
        return Ok(Finding::NotApplicable(
            "the broker announced no Maximum Packet Size".to_owned(),
        ));
    };
    if maximum > PACKET_SIZE_TRIED_MAX {
        return Ok(Finding::NotApplicable(format!(
            "the broker's Maximum Packet Size is {maximum}: this case sends at most {PACKET_SIZE_TRIED_MAX} bytes"
        )));
    }
    let topic = context.topic("big/one-over");
    let mut sub = context.connected("sub").await?;
    subscribe(&context, &mut sub, 1, &topic, QoS::AtLeastOnce, None).await?;
    let target = maximum as usize + 1;
    let mut payload_len = target.saturating_sub(topic.len() + 16);
    let packet = loop {
        let packet = raw_publish(1, &topic, Some(1), &[], &vec![b'x'; payload_len]);
        match packet.len() {
            len if len == target => break packet,
            len if len < target => payload_len += target - len,
            len => payload_len -= len - target,
        }
    };
    let mut publisher = context.connected("pub").await?;
    // The broker may close while the packet is still on its way: a failed send is not a failure.
    let _ = publisher.send_raw(&packet).await;
    let note = expect_close_with(&context, &mut publisher, ReasonCode::PACKET_TOO_LARGE).await?;
    expect_not_forwarded(&context, &mut sub, "a PUBLISH larger than its Maximum Packet Size").await?;
    side_round_trip(&context).await?;
    finish(note, &context)
}

/// The statements a too large acknowledgement of this type breaks.
fn size_rule(packet: &Packet) -> &'static str {
    match packet {
        Packet::PubAck(_) => "5.0 MQTT-3.4.2-2/-3",
        Packet::PubRec(_) => "5.0 MQTT-3.5.2-2/-3",
        Packet::PubRel(_) => "5.0 MQTT-3.6.2-2/-3",
        Packet::PubComp(_) => "5.0 MQTT-3.7.2-2/-3",
        _ => "5.0 MQTT-3.1.2-24",
    }
}

/// The next packet must match `pattern` and fit in [`SMALL_PACKET_SIZE`].
async fn expect_small(context: &Context, probe: &mut Probe, pattern: &Pattern) -> Result<Packet, Failure> {
    let packet = probe.expect(pattern, context.wait()).await?;
    check_small(&packet)?;
    Ok(packet)
}

fn check_small(packet: &Packet) -> Result<(), Failure> {
    let size = encoded_len(packet, ProtocolVersion::V5).map_err(|error| {
        Failure::new(format!(
            "cannot measure {}: {error}",
            mqtt_client::probe::trace::summary(packet)
        ))
    })?;
    if size > SMALL_PACKET_SIZE as usize {
        return Err(Failure::expected(
            format!(
                "the broker sent a packet larger than the client's Maximum Packet Size ({})",
                size_rule(packet)
            ),
            format!("at most {SMALL_PACKET_SIZE} bytes"),
            format!("{size} bytes: {}", mqtt_client::probe::trace::summary(packet)),
        ));
    }
    Ok(())
}

/// Every acknowledgement the broker sends a client with Maximum Packet Size 32: for its QoS 1 and
/// QoS 2 PUBLISH packets, a QoS 2 delivery to it, a PUBREL and a PUBREC for identifiers the
/// broker does not know, and PUBLISH packets with a Payload Format Indicator their payload
/// belies (which a broker may refuse with 0x99).
async fn acks_within_maximum_packet_size(context: Context) -> Result<Finding, Failure> {
    let mut connect = context.connect_packet("small");
    connect.properties = Properties::from(PropertyFields {
        maximum_packet_size: Some(SMALL_PACKET_SIZE),
        request_problem_information: Some(true),
        ..PropertyFields::default()
    });
    let mut small = context.open("small").await?;
    small.send(&Packet::Connect(Box::new(connect))).await?;
    expect_small(
        &context,
        &mut small,
        &Pattern::connack().reason_code(ReasonCode::SUCCESS),
    )
    .await?;
    let inbox = context.topic("s");
    subscribe(&context, &mut small, 1, &inbox, QoS::ExactlyOnce, None).await?;
    let elsewhere = context.topic("a/nobody");

    // PUBACK and PUBREC, then PUBCOMP, for its own messages (Success, or 0x10 No matching
    // subscribers).
    small
        .send(&publish(
            &elsewhere,
            "1",
            QoS::AtLeastOnce,
            Some(1),
            Properties::default(),
        ))
        .await?;
    expect_small(&context, &mut small, &Pattern::puback().packet_id(1)).await?;
    small
        .send(&publish(
            &elsewhere,
            "2",
            QoS::ExactlyOnce,
            Some(2),
            Properties::default(),
        ))
        .await?;
    expect_small(&context, &mut small, &Pattern::pubrec().packet_id(2)).await?;
    small.send(&Packet::PubRel(PublishAck::new(2))).await?;
    expect_small(&context, &mut small, &Pattern::pubcomp().packet_id(2)).await?;

    // A QoS 2 delivery to it: the broker's PUBREL.
    let mut publisher = context.connected("pub").await?;
    publisher
        .send(&publish(&inbox, "d", QoS::ExactlyOnce, Some(1), Properties::default()))
        .await?;
    publisher
        .expect(&Pattern::pubrec().packet_id(1), context.wait())
        .await?;
    publisher.send(&Packet::PubRel(PublishAck::new(1))).await?;
    publisher
        .expect(&Pattern::pubcomp().packet_id(1), context.wait())
        .await?;
    let delivery = expect_small(
        &context,
        &mut small,
        &Pattern::publish().topic(inbox.clone()).qos(QoS::ExactlyOnce),
    )
    .await?;
    let Packet::Publish(Publish {
        packet_id: Some(delivered_id),
        ..
    }) = delivery
    else {
        unreachable!("a QoS 2 PUBLISH has a packet identifier");
    };
    small.send(&Packet::PubRec(PublishAck::new(delivered_id))).await?;
    expect_small(&context, &mut small, &Pattern::pubrel().packet_id(delivered_id)).await?;
    small.send(&Packet::PubComp(PublishAck::new(delivered_id))).await?;

    // Identifiers the broker does not know: PUBCOMP (likely 0x92) for the PUBREL; for the
    // PUBREC a PUBREL (likely 0x92) or nothing.
    small.send(&Packet::PubRel(PublishAck::new(600))).await?;
    expect_small(&context, &mut small, &Pattern::pubcomp().packet_id(600)).await?;
    small.send(&Packet::PubRec(PublishAck::new(601))).await?;
    match small.receive(context.ms(500)).await {
        Ok(packet) => {
            check_small(&packet)?;
            Pattern::pubrel().packet_id(601).matches(&packet).map_err(|_| {
                Failure::expected(
                    "an unexpected answer to a PUBREC for an unknown packet identifier",
                    "a PUBREL with that identifier, or nothing",
                    mqtt_client::probe::trace::summary(&packet),
                )
            })?;
        }
        Err(ProbeError::Timeout { .. }) => {}
        Err(error) => return Err(error.into()),
    }

    // A payload that is not UTF-8 although the Payload Format Indicator says it is: the broker
    // may refuse it (PUBACK / PUBREC 0x99, or DISCONNECT 0x99), and whatever it sends must fit.
    let mut bad = context.open("bad").await?;
    let mut connect = context.connect_packet("bad");
    connect.properties = Properties::from(PropertyFields {
        maximum_packet_size: Some(SMALL_PACKET_SIZE),
        request_problem_information: Some(true),
        ..PropertyFields::default()
    });
    bad.send(&Packet::Connect(Box::new(connect))).await?;
    expect_small(&context, &mut bad, &Pattern::connack().reason_code(ReasonCode::SUCCESS)).await?;
    let claims_utf8 = || {
        Properties::from(PropertyFields {
            payload_format_indicator: Some(1),
            ..PropertyFields::default()
        })
    };
    for (qos, packet_id) in [(QoS::AtLeastOnce, 3), (QoS::ExactlyOnce, 4)] {
        let mut packet = publish(&elsewhere, "", qos, Some(packet_id), claims_utf8());
        if let Packet::Publish(publish) = &mut packet {
            publish.payload = Bytes::from_static(&[0xC3, 0x28]);
        }
        bad.send(&packet).await?;
        match bad.receive(context.wait()).await {
            Ok(answer @ (Packet::PubAck(_) | Packet::PubRec(_))) => {
                check_small(&answer)?;
                if let Packet::PubRec(rec) = &answer {
                    if rec.reason_code.0 < 0x80 {
                        bad.send(&Packet::PubRel(PublishAck::new(packet_id))).await?;
                        expect_small(&context, &mut bad, &Pattern::pubcomp().packet_id(packet_id)).await?;
                    }
                }
            }
            Ok(answer @ Packet::Disconnect(_)) => {
                check_small(&answer)?;
                break;
            }
            Ok(other) => {
                return Err(Failure::expected(
                    "an unexpected answer to a QoS 1/2 PUBLISH",
                    "PUBACK, PUBREC or DISCONNECT",
                    mqtt_client::probe::trace::summary(&other),
                ))
            }
            Err(ProbeError::Closed { .. }) => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Finding::Pass)
}
