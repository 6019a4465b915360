//! Probe cases of §4.3 to §4.8 (QoS flows, redelivery, receipt, ordering, topics, shared
//! subscriptions): what YAML cannot say, such as packet identifiers compared with those the
//! broker used before, the order of acknowledgements, topics without the run's prefix, and
//! deliveries judged across the members of a shared subscription.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::probe::{Pattern, Probe, ProbeError};
use mqtt_protocol::{
    Packet, Properties, PropertyFields, Publish, PublishAck, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions,
};
use mqtt_scenarios::scenario::{Capability, CaseLevel, Phase};
use tokio::time::Instant;

use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "sender-fresh-packet-ids",
        about: "As the sender of QoS 1 and 2 deliveries the broker gives each new message a packet identifier \
                not in use (none of the PUBLISH packets it has in flight, nor one whose PUBREL awaits its \
                PUBCOMP), sends it with DUP 0 and the delivery's QoS, and answers a PUBREC with a PUBREL of \
                the same identifier.",
        versions: &["5.0", "3.1.1"],
        statements: &[
            "5.0:MQTT-4.3.2-1",
            "5.0:MQTT-4.3.2-2",
            "5.0:MQTT-4.3.3-1",
            "5.0:MQTT-4.3.3-2",
            "5.0:MQTT-4.3.3-4",
            "3.1.1:MQTT-4.3.2-1",
            "3.1.1:MQTT-4.3.3-1",
        ],
        level: CaseLevel::Must,
        needs: &[Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(sender_fresh_packet_ids(context)),
    },
    ProbeCase {
        name: "resend-on-resume-in-order",
        about: "When a subscriber resumes its session, the broker sends again every QoS 1 and 2 PUBLISH it \
                left unacknowledged, in the order it first sent them, each with DUP 1 and its original packet \
                identifier, and the PUBREL (same identifier) of a message already received with PUBREC, \
                whose PUBLISH it does not repeat. (The resend order of section 4.6 is worded for clients; \
                3.1.1 makes the server follow it, 5.0 adds its own rules to it.)",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-4.4.0-1", "MQTT-4.6.0-1", "5.0:MQTT-4.3.3-6", "3.1.1:MQTT-4.3.3-1"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &["no-resend-on-resume"],
        run: |context| Box::pin(resend_on_resume_in_order(context)),
    },
    ProbeCase {
        name: "acks-in-arrival-order",
        about: "The broker sends its PUBACKs in the order the QoS 1 PUBLISH packets arrived and its PUBRECs in \
                the order the QoS 2 ones arrived, whatever their packet identifiers, when a publisher sends \
                them interleaved without waiting. (Section 4.6 words these rules for clients; 3.1.1 makes \
                the server follow them, 5.0 adds its own rules to them.)",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-4.6.0-2", "MQTT-4.6.0-3"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(acks_in_arrival_order(context)),
    },
    ProbeCase {
        name: "pubrels-in-pubrec-order",
        about: "The broker sends its PUBRELs in the order the PUBRECs arrived: a subscriber answering three QoS \
                2 PUBLISH packets with PUBRECs in another order than they came gets the PUBRELs in the order \
                of its PUBRECs, each with the identifier of its PUBREC. (Section 4.6 words this rule for \
                clients; 3.1.1 makes the server follow it, 5.0 adds its own rules to it.)",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-4.6.0-4", "5.0:MQTT-4.3.3-4", "3.1.1:MQTT-4.3.3-1"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(pubrels_in_pubrec_order(context)),
    },
    ProbeCase {
        name: "qos2-id-new-after-refusal",
        about: "After the broker refused a QoS 2 PUBLISH with a PUBREC of 0x80 or more, a PUBLISH reusing its \
                packet identifier is a new message: it is acknowledged with success, completed with PUBCOMP \
                and delivered once, while the refused one never is. Not applicable when the broker accepts \
                both PUBLISH packets built to be refused (a topic of 70 levels, an invalid UTF-8 payload \
                marked as UTF-8).",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.3.3-9"],
        level: CaseLevel::Must,
        needs: &[Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(qos2_id_new_after_refusal(context)),
    },
    ProbeCase {
        name: "dollar-topics-not-matched-by-leading-wildcards",
        about: "Filters that begin with a wildcard (\"#\", \"+/x\", \"+/#\") never match a topic that begins \
                with \"$\": a message published to such a topic reaches a subscriber of its exact name but \
                none of those filters; where the broker does not route clients' \"$\" topics, its own \
                \"$SYS\" messages are the test. Not applicable when no \"$\" message can be seen at all.",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-4.7.2-1"],
        level: CaseLevel::Must,
        needs: &[Capability::WildcardSubscriptions, Capability::Qos1],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(dollar_topics_not_matched(context)),
    },
    ProbeCase {
        name: "shared-one-member-per-message",
        about: "A shared subscription sends each matching message to exactly one member of its group, at the \
                lower of the message's QoS and the QoS granted to that member (members granted QoS 0, 1 and \
                2), while another group on the same filter and a plain subscriber each get every message.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.8.2-3"],
        level: CaseLevel::Must,
        needs: &[Capability::SharedSubscriptions, Capability::Qos2],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(shared_one_member_per_message(context)),
    },
];

type Outcome<T> = Result<T, Failure>;

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Outcome<()> {
    if condition {
        Ok(())
    } else {
        Err(Failure::new(message()))
    }
}

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

fn publish(topic: &str, payload: &[u8], qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// SUBSCRIBE with packet identifier 1 to `filters`, each at its QoS; expects the SUBACK granting
/// exactly those QoS.
async fn subscribe(context: &Context, probe: &mut Probe, filters: &[(&str, QoS)]) -> Outcome<()> {
    let subscriptions = filters
        .iter()
        .map(|(filter, qos)| Subscription {
            filter: (*filter).to_owned(),
            options: SubscriptionOptions::with_qos(*qos),
        })
        .collect();
    probe
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions,
        }))
        .await?;
    let granted = filters.iter().map(|(_, qos)| ReasonCode(qos.as_u8()));
    probe
        .expect(&Pattern::suback().packet_id(1).reason_codes(granted), context.wait())
        .await?;
    Ok(())
}

/// Publishes `payload` and completes the flow of its QoS (PUBACK; PUBREC, PUBREL, PUBCOMP), with
/// `packet_id` for QoS 1 and 2.
async fn publish_completed(
    context: &Context,
    probe: &mut Probe,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    packet_id: u16,
) -> Outcome<()> {
    let wait = context.wait();
    let id = (qos != QoS::AtMostOnce).then_some(packet_id);
    probe.send(&Packet::Publish(publish(topic, payload, qos, id))).await?;
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            probe.expect(&Pattern::puback().packet_id(packet_id), wait).await?;
        }
        QoS::ExactlyOnce => {
            probe.expect(&Pattern::pubrec().packet_id(packet_id), wait).await?;
            probe.send(&Packet::PubRel(PublishAck::new(packet_id))).await?;
            probe.expect(&Pattern::pubcomp().packet_id(packet_id), wait).await?;
        }
    }
    Ok(())
}

/// The next PUBLISH, within the case's wait.
async fn next_publish(context: &Context, probe: &mut Probe) -> Outcome<Publish> {
    match probe.expect(&Pattern::publish(), context.wait()).await? {
        Packet::Publish(publish) => Ok(publish),
        other => Err(Failure::new(format!(
            "expected a PUBLISH, got {:?}",
            other.packet_type()
        ))),
    }
}

fn packet_id_of(publish: &Publish) -> Outcome<u16> {
    let packet_id = publish.packet_id.ok_or_else(|| {
        Failure::new(format!(
            "a QoS {} PUBLISH (\"{}\") without packet identifier",
            publish.qos.as_u8(),
            text(&publish.payload)
        ))
    })?;
    ensure(packet_id != 0, || {
        format!("the PUBLISH \"{}\" has packet identifier 0", text(&publish.payload))
    })?;
    Ok(packet_id)
}

/// A round trip: once the PINGRESP is back, the broker has read everything sent before.
async fn round_trip(context: &Context, probe: &mut Probe) -> Outcome<()> {
    probe.send(&Packet::PingReq).await?;
    probe.expect(&Pattern::pingresp(), context.wait()).await?;
    Ok(())
}

/// Reconnects `client` to its session (Clean Start 0, expiry 60 s) and expects CONNACK Success
/// with Session Present 1.
async fn resume(context: &Context, client: &str) -> Outcome<Probe> {
    let mut probe = context.open(client).await?;
    probe
        .send(&Packet::Connect(Box::new(context.persistent_connect(client, 60))))
        .await?;
    probe
        .expect(
            &Pattern::connack()
                .reason_code(ReasonCode::SUCCESS)
                .session_present(true),
            context.wait(),
        )
        .await?;
    Ok(probe)
}

/// Everything that arrives for `duration`, answering each PUBLISH as its QoS requires and each
/// PUBREL with PUBCOMP; the PUBLISH packets received.
async fn receive_acking(probe: &mut Probe, duration: Duration) -> Outcome<Vec<Publish>> {
    let deadline = Instant::now() + duration;
    let mut received = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(received);
        }
        match probe.receive(left).await {
            Ok(Packet::Publish(publish)) => {
                match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => probe.send(&Packet::PubAck(PublishAck::new(id))).await?,
                    (QoS::ExactlyOnce, Some(id)) => probe.send(&Packet::PubRec(PublishAck::new(id))).await?,
                    _ => {}
                }
                received.push(publish);
            }
            Ok(Packet::PubRel(pubrel)) => probe.send(&Packet::PubComp(PublishAck::new(pubrel.packet_id))).await?,
            Ok(_) => {}
            Err(ProbeError::Timeout { .. }) => return Ok(received),
            Err(error) => return Err(error.into()),
        }
    }
}

async fn sender_fresh_packet_ids(context: Context) -> Outcome<Finding> {
    let wait = context.wait();
    let topic = context.topic("fi/t");
    let mut sub = context.connected("sub").await?;
    subscribe(&context, &mut sub, &[(&topic, QoS::ExactlyOnce)]).await?;
    let mut publisher = context.connected("pub").await?;

    // Three QoS 1 and three QoS 2 messages, none acknowledged by the subscriber yet.
    let first: [(&[u8], QoS); 6] = [
        (b"a1", QoS::AtLeastOnce),
        (b"b1", QoS::ExactlyOnce),
        (b"a2", QoS::AtLeastOnce),
        (b"b2", QoS::ExactlyOnce),
        (b"a3", QoS::AtLeastOnce),
        (b"b3", QoS::ExactlyOnce),
    ];
    for (index, (payload, qos)) in first.iter().enumerate() {
        publish_completed(&context, &mut publisher, &topic, payload, *qos, index as u16 + 1).await?;
    }
    let mut ids: BTreeMap<String, u16> = BTreeMap::new();
    for (payload, qos) in first {
        let received = next_publish(&context, &mut sub).await?;
        check_fresh(&received, payload, qos)?;
        let packet_id = packet_id_of(&received)?;
        if let Some((other, _)) = ids.iter().find(|(_, known)| **known == packet_id) {
            return Err(Failure::new(format!(
                "packet identifier {packet_id} was given to \"{}\" while \"{other}\" still held it",
                text(payload)
            )));
        }
        ids.insert(text(payload), packet_id);
    }

    // a1 is acknowledged, so its identifier is free again; b1 gets its PUBREL, and its
    // identifier stays in use until the PUBCOMP.
    sub.send(&Packet::PubAck(PublishAck::new(ids["a1"]))).await?;
    sub.send(&Packet::PubRec(PublishAck::new(ids["b1"]))).await?;
    let pubrel = sub.expect(&Pattern::pubrel(), wait).await?;
    if let Packet::PubRel(pubrel) = &pubrel {
        ensure(pubrel.packet_id == ids["b1"], || {
            format!(
                "the PUBREL answering the PUBREC for identifier {} carries identifier {}",
                ids["b1"], pubrel.packet_id
            )
        })?;
    }

    // Two new messages must take identifiers none of a2, a3, b1 (PUBREL unacknowledged), b2, b3
    // holds.
    let busy: BTreeSet<u16> = ["a2", "a3", "b1", "b2", "b3"].iter().map(|name| ids[*name]).collect();
    let second: [(&[u8], QoS); 2] = [(b"a4", QoS::AtLeastOnce), (b"b4", QoS::ExactlyOnce)];
    for (index, (payload, qos)) in second.iter().enumerate() {
        publish_completed(&context, &mut publisher, &topic, payload, *qos, index as u16 + 10).await?;
    }
    for (payload, qos) in second {
        let received = next_publish(&context, &mut sub).await?;
        check_fresh(&received, payload, qos)?;
        let packet_id = packet_id_of(&received)?;
        ensure(!busy.contains(&packet_id), || {
            format!(
                "\"{}\" got packet identifier {packet_id}, which an unfinished exchange still holds (in use: {busy:?})",
                text(payload)
            )
        })?;
        ensure(ids.get("a4").is_none_or(|a4| *a4 != packet_id), || {
            format!("\"b4\" got packet identifier {packet_id}, which \"a4\" still holds")
        })?;
        ids.insert(text(payload), packet_id);
    }

    // Everything settles under its own identifier.
    sub.send(&Packet::PubComp(PublishAck::new(ids["b1"]))).await?;
    for name in ["a2", "a3", "a4"] {
        sub.send(&Packet::PubAck(PublishAck::new(ids[name]))).await?;
    }
    for name in ["b2", "b3", "b4"] {
        sub.send(&Packet::PubRec(PublishAck::new(ids[name]))).await?;
        sub.expect(&Pattern::pubrel().packet_id(ids[name]), wait).await?;
        sub.send(&Packet::PubComp(PublishAck::new(ids[name]))).await?;
    }
    round_trip(&context, &mut sub).await?;
    Ok(Finding::Pass)
}

/// A first delivery: the payload expected, at `qos`, DUP 0.
fn check_fresh(received: &Publish, payload: &[u8], qos: QoS) -> Outcome<()> {
    ensure(received.payload.as_ref() == payload, || {
        format!(
            "expected the PUBLISH \"{}\" next, got \"{}\"",
            text(payload),
            text(&received.payload)
        )
    })?;
    ensure(received.qos == qos, || {
        format!(
            "\"{}\" arrived at QoS {}, expected {}",
            text(payload),
            received.qos.as_u8(),
            qos.as_u8()
        )
    })?;
    ensure(!received.dup, || {
        format!("the first delivery of \"{}\" has DUP 1", text(payload))
    })
}

async fn resend_on_resume_in_order(context: Context) -> Outcome<Finding> {
    let wait = context.wait();
    let (one, two) = (context.topic("rs/one"), context.topic("rs/two"));
    let mut sub = context.connect("sub", context.persistent_connect("sub", 60)).await?;
    subscribe(
        &context,
        &mut sub,
        &[(&one, QoS::ExactlyOnce), (&two, QoS::ExactlyOnce)],
    )
    .await?;
    let mut publisher = context.connected("pub").await?;

    // Interleaved QoS 1 and 2 messages on two topics; b1 will have had its PUBREC.
    let messages: [(&[u8], QoS, &str); 6] = [
        (b"a1", QoS::AtLeastOnce, "rs/one"),
        (b"b1", QoS::ExactlyOnce, "rs/two"),
        (b"a2", QoS::AtLeastOnce, "rs/one"),
        (b"b2", QoS::ExactlyOnce, "rs/two"),
        (b"a3", QoS::AtLeastOnce, "rs/one"),
        (b"b3", QoS::ExactlyOnce, "rs/two"),
    ];
    for (index, (payload, qos, topic)) in messages.iter().enumerate() {
        publish_completed(
            &context,
            &mut publisher,
            &context.topic(topic),
            payload,
            *qos,
            index as u16 + 1,
        )
        .await?;
    }
    let mut first: Vec<Publish> = Vec::new();
    for (payload, qos, _) in messages {
        let received = next_publish(&context, &mut sub).await?;
        check_fresh(&received, payload, qos)?;
        packet_id_of(&received)?;
        first.push(received);
    }
    let b1 = first[1].packet_id.unwrap_or_default();
    sub.send(&Packet::PubRec(PublishAck::new(b1))).await?;
    sub.expect(&Pattern::pubrel().packet_id(b1), wait).await?;
    // The connection breaks with a1, a2, b2, a3, b3 unacknowledged and b1's PUBREL too.
    sub.close().await;

    let mut sub = resume(&context, "sub").await?;

    // Five PUBLISH resends and one PUBREL, in any interleaving of the two kinds.
    let expected: Vec<&Publish> = first
        .iter()
        .filter(|publish| publish.payload.as_ref() != b"b1")
        .collect();
    let mut resent: Vec<Publish> = Vec::new();
    let mut pubrel_seen = false;
    let deadline = Instant::now() + wait;
    while resent.len() < expected.len() || !pubrel_seen {
        let left = deadline.saturating_duration_since(Instant::now());
        let packet = sub.receive(left).await.map_err(|error| {
            Failure::expected(
                format!("the resumed session did not bring every resend: {error}"),
                "a1, a2, b2, a3, b3 again with DUP 1, and the PUBREL of b1",
                format!(
                    "{} PUBLISH resent ({}), PUBREL {}",
                    resent.len(),
                    resent
                        .iter()
                        .map(|publish| text(&publish.payload))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if pubrel_seen { "seen" } else { "not seen" }
                ),
            )
        })?;
        match packet {
            Packet::Publish(publish) => {
                ensure(publish.payload.as_ref() != b"b1", || {
                    "the broker sent the PUBLISH of b1 again after its PUBREL had gone out".to_owned()
                })?;
                resent.push(publish);
            }
            Packet::PubRel(pubrel) => {
                ensure(pubrel.packet_id == b1, || {
                    format!(
                        "a PUBREL for identifier {} came; b1's PUBREL had identifier {b1}",
                        pubrel.packet_id
                    )
                })?;
                ensure(!pubrel_seen, || "the PUBREL of b1 came twice".to_owned())?;
                pubrel_seen = true;
            }
            other => {
                return Err(Failure::new(format!(
                    "unexpected {:?} while the session resumed",
                    other.packet_type()
                )))
            }
        }
    }
    for (original, again) in expected.iter().zip(&resent) {
        ensure(again.payload == original.payload, || {
            format!(
                "the resends are out of order: expected {}, got {}",
                expected
                    .iter()
                    .map(|publish| text(&publish.payload))
                    .collect::<Vec<_>>()
                    .join(", "),
                resent
                    .iter()
                    .map(|publish| text(&publish.payload))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        ensure(again.dup, || {
            format!("the resend of \"{}\" has DUP 0", text(&again.payload))
        })?;
        ensure(again.packet_id == original.packet_id, || {
            format!(
                "\"{}\" was resent with packet identifier {:?}, first sent with {:?}",
                text(&again.payload),
                again.packet_id,
                original.packet_id
            )
        })?;
        ensure(again.qos == original.qos && again.topic == original.topic, || {
            format!("the resend of \"{}\" changed its QoS or topic", text(&again.payload))
        })?;
    }

    // Everything settles; nothing more comes on a further resume.
    sub.send(&Packet::PubComp(PublishAck::new(b1))).await?;
    for again in &resent {
        let packet_id = again.packet_id.unwrap_or_default();
        if again.qos == QoS::AtLeastOnce {
            sub.send(&Packet::PubAck(PublishAck::new(packet_id))).await?;
        } else {
            sub.send(&Packet::PubRec(PublishAck::new(packet_id))).await?;
            sub.expect(&Pattern::pubrel().packet_id(packet_id), wait).await?;
            sub.send(&Packet::PubComp(PublishAck::new(packet_id))).await?;
        }
    }
    round_trip(&context, &mut sub).await?;
    sub.close().await;
    let mut sub = resume(&context, "sub").await?;
    sub.expect_nothing(context.ms(1000)).await?;
    sub.send(&Packet::Disconnect(Default::default())).await?;
    Ok(Finding::Pass)
}

async fn acks_in_arrival_order(context: Context) -> Outcome<Finding> {
    let wait = context.wait();
    let topic = context.topic("ao/t");
    let mut publisher = context.connected("pub").await?;
    // Interleaved, identifiers in no order, all sent before any answer is read.
    let sent: [(u16, QoS); 7] = [
        (10, QoS::AtLeastOnce),
        (20, QoS::ExactlyOnce),
        (3, QoS::AtLeastOnce),
        (12, QoS::ExactlyOnce),
        (7, QoS::AtLeastOnce),
        (15, QoS::ExactlyOnce),
        (1, QoS::AtLeastOnce),
    ];
    let mut bytes = bytes::BytesMut::new();
    for (packet_id, qos) in sent {
        let payload = format!("m{packet_id}");
        mqtt_protocol::encode(
            &Packet::Publish(publish(&topic, payload.as_bytes(), qos, Some(packet_id))),
            context.version,
            &mut bytes,
        )
        .map_err(|error| Failure::new(format!("cannot encode a PUBLISH: {error}")))?;
    }
    publisher.send_raw(&bytes).await?;
    let mut pubacks = Vec::new();
    let mut pubrecs = Vec::new();
    while pubacks.len() + pubrecs.len() < sent.len() {
        match publisher.receive(wait).await? {
            Packet::PubAck(ack) => pubacks.push(ack.packet_id),
            Packet::PubRec(ack) => pubrecs.push(ack.packet_id),
            other => {
                return Err(Failure::new(format!(
                    "unexpected {:?} among the acknowledgements",
                    other.packet_type()
                )))
            }
        }
    }
    let expected_pubacks: Vec<u16> = sent
        .iter()
        .filter(|(_, qos)| *qos == QoS::AtLeastOnce)
        .map(|(id, _)| *id)
        .collect();
    let expected_pubrecs: Vec<u16> = sent
        .iter()
        .filter(|(_, qos)| *qos == QoS::ExactlyOnce)
        .map(|(id, _)| *id)
        .collect();
    if pubacks != expected_pubacks {
        return Err(Failure::expected(
            "the PUBACKs are not in the order the QoS 1 PUBLISH packets arrived",
            format!("PUBACK ids {expected_pubacks:?}"),
            format!("PUBACK ids {pubacks:?}"),
        ));
    }
    if pubrecs != expected_pubrecs {
        return Err(Failure::expected(
            "the PUBRECs are not in the order the QoS 2 PUBLISH packets arrived",
            format!("PUBREC ids {expected_pubrecs:?}"),
            format!("PUBREC ids {pubrecs:?}"),
        ));
    }
    for packet_id in expected_pubrecs {
        publisher.send(&Packet::PubRel(PublishAck::new(packet_id))).await?;
        publisher.expect(&Pattern::pubcomp().packet_id(packet_id), wait).await?;
    }
    Ok(Finding::Pass)
}

async fn pubrels_in_pubrec_order(context: Context) -> Outcome<Finding> {
    let wait = context.wait();
    let topic = context.topic("po/t");
    let mut sub = context.connected("sub").await?;
    subscribe(&context, &mut sub, &[(&topic, QoS::ExactlyOnce)]).await?;
    let mut publisher = context.connected("pub").await?;
    for (index, payload) in [b"p1", b"p2", b"p3"].iter().enumerate() {
        publish_completed(
            &context,
            &mut publisher,
            &topic,
            *payload,
            QoS::ExactlyOnce,
            index as u16 + 1,
        )
        .await?;
    }
    let mut ids = Vec::new();
    for payload in [b"p1", b"p2", b"p3"] {
        let received = next_publish(&context, &mut sub).await?;
        check_fresh(&received, payload, QoS::ExactlyOnce)?;
        ids.push(packet_id_of(&received)?);
    }
    // PUBRECs for the third, the first, then the second, in one write.
    let order = [ids[2], ids[0], ids[1]];
    let mut bytes = bytes::BytesMut::new();
    for packet_id in order {
        mqtt_protocol::encode(&Packet::PubRec(PublishAck::new(packet_id)), context.version, &mut bytes)
            .map_err(|error| Failure::new(format!("cannot encode a PUBREC: {error}")))?;
    }
    sub.send_raw(&bytes).await?;
    let mut pubrels = Vec::new();
    for _ in order {
        match sub.receive(wait).await? {
            Packet::PubRel(pubrel) => pubrels.push(pubrel.packet_id),
            other => {
                return Err(Failure::new(format!(
                    "expected a PUBREL, got {:?}",
                    other.packet_type()
                )))
            }
        }
    }
    if pubrels != order {
        return Err(Failure::expected(
            "the PUBRELs are not in the order the PUBRECs arrived",
            format!("PUBREL ids {order:?}"),
            format!("PUBREL ids {pubrels:?}"),
        ));
    }
    for packet_id in order {
        sub.send(&Packet::PubComp(PublishAck::new(packet_id))).await?;
    }
    round_trip(&context, &mut sub).await?;
    Ok(Finding::Pass)
}

async fn qos2_id_new_after_refusal(context: Context) -> Outcome<Finding> {
    let wait = context.wait();
    // Two PUBLISH packets a broker may refuse: a topic of 70 levels, and a payload marked UTF-8
    // that is not. The subscriber listens to the second too (a broker refusing the first would
    // refuse a filter that deep as well), so a refused message that got through would show.
    let deep = context.topic(&format!("rj{}", "/l".repeat(70)));
    let (bad, topic) = (context.topic("rj/bad"), context.topic("rj/ok"));
    let mut sub = context.connected("sub").await?;
    subscribe(
        &context,
        &mut sub,
        &[(&bad, QoS::ExactlyOnce), (&topic, QoS::ExactlyOnce)],
    )
    .await?;
    let mut publisher = context.connected("pub").await?;
    const ID: u16 = 9;
    let mut bad_utf8 = publish(&bad, b"\xff\xfe", QoS::ExactlyOnce, Some(ID));
    bad_utf8.properties = Properties::from(PropertyFields {
        payload_format_indicator: Some(1),
        ..PropertyFields::default()
    });
    let candidates = [
        (
            "a topic of 70 levels",
            publish(&deep, b"deep", QoS::ExactlyOnce, Some(ID)),
        ),
        ("a payload marked UTF-8 that is not", bad_utf8),
    ];
    let mut refused = None;
    for (what, candidate) in candidates {
        publisher.send(&Packet::Publish(candidate)).await?;
        let Packet::PubRec(pubrec) = publisher.expect(&Pattern::pubrec().packet_id(ID), wait).await? else {
            return Err(Failure::new("expected a PUBREC"));
        };
        if pubrec.reason_code.0 >= 0x80 {
            refused = Some((what, pubrec.reason_code));
            break;
        }
        // Accepted: finish it, and try the next.
        publisher.send(&Packet::PubRel(PublishAck::new(ID))).await?;
        publisher.expect(&Pattern::pubcomp().packet_id(ID), wait).await?;
    }
    let Some((what, code)) = refused else {
        return Ok(Finding::NotApplicable(
            "the broker accepted both PUBLISH packets built to be refused, so no PUBREC of 0x80 or more could be provoked"
                .to_owned(),
        ));
    };

    // The same identifier, no PUBREL in between: a new message.
    publisher
        .send(&Packet::Publish(publish(&topic, b"new", QoS::ExactlyOnce, Some(ID))))
        .await?;
    let Packet::PubRec(pubrec) = publisher.expect(&Pattern::pubrec().packet_id(ID), wait).await? else {
        return Err(Failure::new("expected a PUBREC"));
    };
    ensure(pubrec.reason_code.0 < 0x80, || {
        format!(
            "after refusing {what} with 0x{:02X}, the broker refused a valid PUBLISH reusing identifier {ID} with 0x{:02X}",
            code.0, pubrec.reason_code.0
        )
    })?;
    publisher.send(&Packet::PubRel(PublishAck::new(ID))).await?;
    publisher
        .expect(&Pattern::pubcomp().packet_id(ID).reason_code(ReasonCode::SUCCESS), wait)
        .await?;
    let received = receive_acking(&mut sub, context.ms(1000)).await?;
    let payloads: Vec<String> = received.iter().map(|publish| text(&publish.payload)).collect();
    ensure(payloads == ["new"], || {
        format!("the subscriber should have got \"new\" once and nothing else, got {payloads:?}")
    })?;
    Ok(Finding::Pass)
}

async fn dollar_topics_not_matched(context: Context) -> Outcome<Finding> {
    let wait = context.wait();
    // A "$" topic of this run: the run's client id prefix keeps it apart from other runs.
    let dollar = format!("${}/x", context.client_id("dollar"));
    let mut wild = context.connected("wild").await?;
    subscribe(
        &context,
        &mut wild,
        &[
            ("#", QoS::AtMostOnce),
            ("+/x", QoS::AtMostOnce),
            ("+/#", QoS::AtMostOnce),
        ],
    )
    .await?;
    let mut exact = context.connected("exact").await?;
    subscribe(&context, &mut exact, &[(&dollar, QoS::AtLeastOnce)]).await?;
    // "$SYS/#" too, where the broker has such topics; a refusal is no finding.
    exact
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 2,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: "$SYS/#".to_owned(),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        }))
        .await?;
    exact.expect(&Pattern::suback().packet_id(2), wait).await?;

    let mut publisher = context.connected("pub").await?;
    publisher
        .send(&Packet::Publish(publish(&dollar, b"dollar", QoS::AtLeastOnce, Some(1))))
        .await?;
    // The broker may refuse a client's "$" topic (5.0 section 4.7.2 says it should keep clients
    // from exchanging messages on them): an acknowledgement of any code, or a close, will do.
    let _ = publisher.expect(&Pattern::puback().packet_id(1), wait).await;

    // What reaches the exact subscriber shows which "$" messages exist.
    let seen = receive_acking(&mut exact, context.ms(1500)).await?;
    let own = seen.iter().any(|publish| publish.topic == dollar);
    let sys = seen.iter().filter(|publish| publish.topic.starts_with("$SYS")).count();

    // The wildcard subscriber must have none of them.
    let caught = receive_acking(&mut wild, context.ms(200)).await?;
    if let Some(wrong) = caught.iter().find(|publish| publish.topic.starts_with('$')) {
        return Err(Failure::expected(
            "a filter beginning with a wildcard matched a topic beginning with $",
            "no PUBLISH on a topic beginning with $ for the filters #, +/x, +/#",
            format!("PUBLISH topic=\"{}\"", wrong.topic),
        ));
    }
    match (own, sys) {
        (true, _) => Ok(Finding::Pass),
        (false, 0) => Ok(Finding::NotApplicable(
            "no message on a topic beginning with $ reached even its exact subscriber (the broker does not route clients' $ topics and published no $SYS message)"
                .to_owned(),
        )),
        (false, count) => Ok(Finding::Informational(format!(
            "the broker did not route the client's message on {dollar}; {count} of its own $SYS messages went to $SYS/# and none to the wildcard filters"
        ))),
    }
}

async fn shared_one_member_per_message(context: Context) -> Outcome<Finding> {
    let filter = context.topic("sh/t");
    let group = |name: &str| format!("$share/{name}/{filter}");
    let grants = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut members = Vec::new();
    for (index, qos) in grants.iter().enumerate() {
        let name = format!("member{index}");
        let mut member = context.connected(&name).await?;
        subscribe(&context, &mut member, &[(&group("g"), *qos)]).await?;
        members.push((name, *qos, member));
    }
    let mut alone = context.connected("alone").await?;
    subscribe(&context, &mut alone, &[(&group("h"), QoS::ExactlyOnce)]).await?;
    let mut plain = context.connected("plain").await?;
    subscribe(&context, &mut plain, &[(&filter, QoS::ExactlyOnce)]).await?;

    let mut publisher = context.connected("pub").await?;
    const COUNT: u16 = 9;
    let payloads: Vec<String> = (1..=COUNT).map(|index| format!("s{index}")).collect();
    for (index, payload) in payloads.iter().enumerate() {
        publish_completed(
            &context,
            &mut publisher,
            &filter,
            payload.as_bytes(),
            QoS::ExactlyOnce,
            index as u16 + 1,
        )
        .await?;
    }

    let everything = |received: &[Publish]| -> Vec<String> {
        let mut all: Vec<String> = received.iter().map(|publish| text(&publish.payload)).collect();
        all.sort();
        all
    };
    let mut sorted = payloads.clone();
    sorted.sort();
    let plain_got = receive_acking(&mut plain, context.ms(1500)).await?;
    ensure(everything(&plain_got) == sorted, || {
        format!(
            "the plain subscriber should have every message once, got {:?}",
            everything(&plain_got)
        )
    })?;
    let alone_got = receive_acking(&mut alone, context.ms(100)).await?;
    ensure(everything(&alone_got) == sorted, || {
        format!(
            "the only member of the second group should have every message once, got {:?}",
            everything(&alone_got)
        )
    })?;

    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, granted, member) in members.iter_mut() {
        for received in receive_acking(member, context.ms(100)).await? {
            ensure(received.qos == *granted, || {
                format!(
                    "{name}, granted QoS {}, got \"{}\" at QoS {}",
                    granted.as_u8(),
                    text(&received.payload),
                    received.qos.as_u8()
                )
            })?;
            holders.entry(text(&received.payload)).or_default().push(name.clone());
        }
    }
    for payload in &payloads {
        let got = holders.get(payload).cloned().unwrap_or_default();
        ensure(got.len() == 1, || {
            format!("\"{payload}\" should reach exactly one member of the group, it reached {got:?}")
        })?;
    }
    ensure(holders.len() == payloads.len(), || {
        format!("the members got messages that were never published: {holders:?}")
    })?;
    Ok(Finding::Pass)
}
