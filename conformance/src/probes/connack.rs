//! Probe cases of §3.2 (CONNACK), §3.8 to §3.11 (SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK), §3.15
//! (AUTH) and §4.12 (enhanced authentication): what YAML cannot say, such as pipelined and
//! malformed CONNECT packets, values the broker announced in its CONNACK (Maximum QoS, Retain
//! Available, Topic Alias Maximum, Maximum Packet Size, Server Keep Alive), client identifiers it
//! assigned, timing, and the sizes of the packets it sent.
//!
//! Where the broker declines a feature (5.0 CONNACK), the cases that use it anyway apply: the
//! close is the MUST, the specific reason code a SHOULD (5.0 §4.13.1). Against a broker that
//! offers the feature they are not applicable.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_client::probe::{trace::summary, Incoming, Pattern, Probe, ProbeError};
use mqtt_protocol::{
    encode, encoded_len, ConnAck, Connect, Disconnect, Packet, Properties, PropertyFields, ProtocolVersion, Publish,
    PublishAck, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, Unsubscribe, Will,
};
use mqtt_scenarios::scenario::{Capability, CaseLevel, Phase};
use tokio::time::Instant;

use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "connack-before-pipelined-subscribe",
        about: "A client that sends its first SUBSCRIBE right behind its CONNECT, in the same write, \
                gets the successful CONNACK first and the SUBACK (with the SUBSCRIBE's packet \
                identifier) after it.",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-3.2.0-1", "MQTT-3.8.4-1", "MQTT-3.8.4-2"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(connack_before_pipelined_subscribe(context)),
    },
    ProbeCase {
        name: "no-second-connack",
        about: "A second CONNECT on a connection the broker has accepted gets no second CONNACK: the \
                broker closes the connection instead.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.0-2"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(no_second_connack(context)),
    },
    ProbeCase {
        name: "refused-connack-session-present-0",
        about: "A CONNECT with Clean Start 0 that the broker refuses gets a CONNACK with a failure code \
                of the CONNACK table and Session Present 0, then the close: in 5.0 one naming an \
                Authentication Method the broker does not offer, for a client id whose session it \
                holds; in 3.1.1 one with an empty client id.",
        versions: &["5.0", "3.1.1"],
        statements: &[
            "5.0:MQTT-3.2.2-6",
            "3.1.1:MQTT-3.2.2-4",
            "5.0:MQTT-3.2.2-7",
            "3.1.1:MQTT-3.2.2-5",
            "5.0:MQTT-3.2.2-8",
        ],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(refused_connack_session_present_0(context)),
    },
    ProbeCase {
        name: "malformed-connect-no-connack",
        about: "A 3.1.1 CONNECT with its reserved flag set fits none of the CONNACK return codes: the \
                broker closes the connection without sending a CONNACK.",
        versions: &["3.1.1"],
        statements: &["3.1.1:MQTT-3.2.2-6"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(malformed_connect_no_connack(context)),
    },
    ProbeCase {
        name: "assigned-client-identifier-unique",
        about: "Two clients that connect at once with an empty client id each get a CONNACK with an \
                Assigned Client Identifier, non-empty, and not the same one.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-16"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(assigned_client_identifier_unique(context)),
    },
    ProbeCase {
        name: "client-keep-alive-applied",
        about: "A broker that sends no Server Keep Alive applies the client's Keep Alive: a client \
                that said 2 s and then stays silent is closed after 2 s at the earliest and 3 s at the \
                latest (plus the tolerance).",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-22"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &["keep-alive-ignored"],
        run: |context| Box::pin(client_keep_alive_applied(context)),
    },
    ProbeCase {
        name: "server-keep-alive-enforced",
        about: "A broker that answers with a Server Keep Alive holds the client to it instead of the \
                client's own 60 s: a client that ignores it and stays silent is closed within one and \
                a half times the Server Keep Alive (applies when it is 1 to 5 s).",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-21"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(server_keep_alive_enforced(context)),
    },
    ProbeCase {
        name: "packet-above-maximum-packet-size-closed",
        about: "A PUBLISH one byte larger than the Maximum Packet Size the broker announced is a \
                protocol error: the broker closes the connection (it should first send DISCONNECT \
                0x95) and goes on serving others.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-15"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(packet_above_maximum_packet_size_closed(context)),
    },
    ProbeCase {
        name: "topic-alias-above-maximum-closed",
        about: "A PUBLISH with a Topic Alias one above the Topic Alias Maximum of the broker's CONNACK \
                is a protocol error: the broker closes the connection (it should first send DISCONNECT \
                0x94) and goes on serving others.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-17"],
        level: CaseLevel::Must,
        needs: &[Capability::TopicAliases],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(topic_alias_above_maximum_closed(context)),
    },
    ProbeCase {
        name: "topic-alias-without-maximum-closed",
        about: "A broker whose CONNACK gave no Topic Alias Maximum (or 0) accepts no Topic Alias: a \
                PUBLISH with Topic Alias 1 makes it close the connection (it should first send \
                DISCONNECT 0x94). Applies to brokers that take no aliases.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-18"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(topic_alias_without_maximum_closed(context)),
    },
    ProbeCase {
        name: "publish-accepted-up-to-maximum-qos",
        about: "A broker that announces no Maximum QoS supports QoS 1 and 2: a PUBLISH at every QoS up \
                to the announced maximum is accepted, with a successful PUBACK, or PUBREC and PUBCOMP.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-9"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(publish_accepted_up_to_maximum_qos(context)),
    },
    ProbeCase {
        name: "will-qos-above-maximum-refused",
        about: "A broker with a Maximum QoS below 2 refuses a CONNECT whose Will QoS is above it: no \
                successful CONNACK, the close (MUST), and CONNACK 0x9B first (SHOULD). Applies to \
                brokers that announce a Maximum QoS.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-12"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(will_qos_above_maximum_refused(context)),
    },
    ProbeCase {
        name: "will-retain-unsupported-refused",
        about: "A broker that says Retain Available 0 refuses a CONNECT whose will has Will Retain 1: no \
                successful CONNACK, the close (MUST), and CONNACK 0x9A first (SHOULD). Applies to \
                brokers without retained messages.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-13"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(will_retain_unsupported_refused(context)),
    },
    ProbeCase {
        name: "publish-above-maximum-qos-closed",
        about: "A PUBLISH above the Maximum QoS the broker announced is a protocol error: the broker \
                closes the connection (it should first send DISCONNECT 0x9B) and goes on serving \
                others. Applies to brokers that announce a Maximum QoS.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-11"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(publish_above_maximum_qos_closed(context)),
    },
    ProbeCase {
        name: "publish-retain-unsupported-closed",
        about: "A PUBLISH with RETAIN 1 to a broker that said Retain Available 0 is a protocol error: \
                the broker closes the connection (it should first send DISCONNECT 0x9A) and goes on \
                serving others. Applies to brokers without retained messages.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.2.2-14"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(publish_retain_unsupported_closed(context)),
    },
    ProbeCase {
        name: "subscribe-wildcard-unsupported-closed",
        about: "A SUBSCRIBE with a wildcard filter to a broker that said Wildcard Subscription Available \
                0 is never granted: the broker closes the connection (a protocol error) or refuses it in \
                the SUBACK, either with 0xA2 advised. Applies to brokers without wildcard subscriptions.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(subscribe_wildcard_unsupported_closed(context)),
    },
    ProbeCase {
        name: "subscribe-shared-unsupported-closed",
        about: "A SUBSCRIBE to a shared subscription, to a broker that said Shared Subscription \
                Available 0, is never granted: the broker closes the connection (a protocol error) or \
                refuses it in the SUBACK, either with 0x9E advised. Applies to brokers without shared \
                subscriptions.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(subscribe_shared_unsupported_closed(context)),
    },
    ProbeCase {
        name: "subscription-identifier-unsupported-closed",
        about: "A SUBSCRIBE with a Subscription Identifier, to a broker that said Subscription \
                Identifier Available 0, is never granted: the broker closes the connection (a protocol \
                error) or refuses it in the SUBACK, either with 0xA1 advised. Applies to brokers \
                without subscription identifiers.",
        versions: &["5.0"],
        statements: &["5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(subscription_identifier_unsupported_closed(context)),
    },
    ProbeCase {
        name: "suback-codes-match-filters",
        about: "A SUBSCRIBE with three filters requesting QoS 2, 0 and 1 is accepted whatever the \
                broker's Maximum QoS, with one SUBACK code per filter, each a granted QoS no higher than \
                requested, in the filters' order: a message published at the highest QoS the broker \
                takes then reaches each filter at the lower of that QoS and the code given in that \
                filter's place.",
        versions: &["5.0", "3.1.1"],
        statements: &[
            "5.0:MQTT-3.8.4-6",
            "3.1.1:MQTT-3.8.4-5",
            "5.0:MQTT-3.8.4-7",
            "5.0:MQTT-3.8.4-8",
            "3.1.1:MQTT-3.8.4-6",
            "MQTT-3.9.3-1",
            "MQTT-3.9.3-2",
            "5.0:MQTT-3.2.2-10",
        ],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(suback_codes_match_filters(context)),
    },
    ProbeCase {
        name: "acks-fit-client-maximum-packet-size",
        about: "With a client Maximum Packet Size of 64 bytes, the CONNACK fits, and a SUBACK and an \
                UNSUBACK whose 59 reason codes alone fill the 64 bytes come without Reason String or \
                User Property; a refused CONNECT with a Maximum Packet Size of 8 gets at most an 8-byte \
                CONNACK.",
        versions: &["5.0"],
        statements: &[
            "5.0:MQTT-3.2.2-19",
            "5.0:MQTT-3.2.2-20",
            "5.0:MQTT-3.9.2-1",
            "5.0:MQTT-3.9.2-2",
            "5.0:MQTT-3.11.2-1",
            "5.0:MQTT-3.11.2-2",
        ],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(acks_fit_client_maximum_packet_size(context)),
    },
    ProbeCase {
        name: "connack-within-small-maximum-packet-size",
        about: "A CONNECT whose Maximum Packet Size is below the broker's usual CONNACK (16, 12, 8 and 5 \
                bytes) gets either a CONNACK that fits, cut down to what the client can do without, or \
                the close: never a connection left open and unanswered (one the broker may even serve, \
                answering a PINGREQ, without ever having acknowledged the CONNECT).",
        versions: &["5.0"],
        statements: &["5.0:MQTT-3.1.2-24", "5.0:MQTT-3.2.0-1", "5.0:MQTT-3.1.4-5"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(connack_within_small_maximum_packet_size(context)),
    },
    ProbeCase {
        name: "unsubscribe-unknown-filter-answered",
        about: "An UNSUBSCRIBE of a filter the client never subscribed to is still answered by an \
                UNSUBACK with its packet identifier (5.0: one reason code, which should be 0x11 No \
                subscription existed), twice in a row.",
        versions: &["5.0", "3.1.1"],
        statements: &["MQTT-3.10.4-5", "MQTT-3.10.4-4", "5.0:MQTT-3.11.3-2"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(unsubscribe_unknown_filter_answered(context)),
    },
    ProbeCase {
        name: "unknown-authentication-method-refused",
        about: "A CONNECT naming an Authentication Method the broker does not know is refused: a \
                CONNACK of 0x80 or above (0x8C or 0x87 expected) or none, then the close; never a \
                successful CONNACK or an AUTH without that same method.",
        versions: &["5.0"],
        statements: &[
            "5.0:MQTT-4.12.0-1",
            "5.0:MQTT-4.12.0-4",
            "5.0:MQTT-4.12.0-5",
            "5.0:MQTT-3.2.2-7",
            "5.0:MQTT-3.2.2-8",
        ],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Concurrent,
        kills: &[],
        run: |context| Box::pin(unknown_authentication_method_refused(context)),
    },
];

/// An Authentication Method no broker offers.
const UNKNOWN_METHOD: &str = "mh-no-such-method";

/// How long the broker has to close a connection the spec says it must close.
const CLOSE_WITHIN_MS: u64 = 2000;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn encoded(packet: &Packet, version: ProtocolVersion) -> Result<BytesMut, Failure> {
    let mut buffer = BytesMut::new();
    encode(packet, version, &mut buffer)
        .map_err(|error| Failure::new(format!("cannot encode {}: {error}", packet.packet_type().name())))?;
    Ok(buffer)
}

/// The size on the wire of a packet the broker sent (decoded strictly, so encoded the same way).
fn size_of(packet: &Packet, version: ProtocolVersion) -> usize {
    encoded_len(packet, version).unwrap_or(usize::MAX)
}

fn subscription(filter: String, qos: QoS) -> Subscription {
    Subscription {
        filter,
        options: SubscriptionOptions::with_qos(qos),
    }
}

fn publish(topic: String, qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Publish {
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

/// Opens a connection, sends `connect`, and returns the CONNACK, whatever its code.
async fn connack_of(context: &Context, client: &str, connect: Connect) -> Result<(Probe, ConnAck), Failure> {
    let mut probe = context.open(client).await?;
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    match probe.expect(&Pattern::connack(), context.wait()).await? {
        Packet::ConnAck(connack) => Ok((probe, connack)),
        other => Err(Failure::expected("expected a CONNACK", "CONNACK", summary(&other))),
    }
}

/// [`connack_of`], which must be a success.
async fn accepted(context: &Context, client: &str, connect: Connect) -> Result<(Probe, ConnAck), Failure> {
    let (probe, connack) = connack_of(context, client, connect).await?;
    if connack.reason_code != ReasonCode::SUCCESS {
        return Err(Failure::expected(
            "the broker refused a plain CONNECT",
            "CONNACK 0x00",
            summary(&Packet::ConnAck(connack)),
        ));
    }
    Ok((probe, connack))
}

/// The first finding that is not a plain pass (both are passes of the MUST).
fn either(first: Finding, second: Finding) -> Finding {
    match first {
        Finding::Pass => second,
        other => other,
    }
}

fn codes_text(codes: &[ReasonCode]) -> String {
    codes
        .iter()
        .map(|code| format!("0x{:02X}", code.0))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The broker must close `probe`'s connection within [`CLOSE_WITHIN_MS`] (the MUST); in 5.0 a
/// DISCONNECT with one of `codes` should come first (5.0 §4.13.1). No packet but that DISCONNECT
/// may come before the close.
async fn judge_close(
    context: &Context,
    probe: &mut Probe,
    codes: &[ReasonCode],
    what: &str,
) -> Result<Finding, Failure> {
    let report = probe
        .expect_close_since(Instant::now(), Duration::ZERO..=context.ms(CLOSE_WITHIN_MS))
        .await
        .map_err(|error| {
            Failure::expected(
                format!("{what}: the broker did not close the connection: {error}"),
                format!("the close within {CLOSE_WITHIN_MS} ms"),
                "the connection stayed open",
            )
        })?;
    if let Some(Incoming::Packet(packet)) = report.others.first() {
        return Err(Failure::expected(
            format!("{what}: the broker answered before it closed the connection"),
            "nothing but a DISCONNECT, then the close",
            summary(packet),
        ));
    }
    if !context.v5() || codes.is_empty() {
        return Ok(Finding::Pass);
    }
    match &report.disconnect {
        Some(disconnect) if codes.contains(&disconnect.reason_code) => Ok(Finding::Pass),
        Some(disconnect) => context.should_not_met(format!(
            "{what}: the DISCONNECT before the close has 0x{:02X}, not {}",
            disconnect.reason_code.0,
            codes_text(codes)
        )),
        None => context.should_not_met(format!(
            "{what}: the broker closed without a DISCONNECT {}",
            codes_text(codes)
        )),
    }
}

/// Another client connects and gets a PINGRESP: the broker goes on serving after a close.
pub(super) async fn still_serving(context: &Context) -> Result<(), Failure> {
    let mut other = context.connected("other").await?;
    other.send(&Packet::PingReq).await?;
    other.expect(&Pattern::pingresp(), context.wait()).await?;
    let _ = other.send(&Packet::Disconnect(Disconnect::default())).await;
    Ok(())
}

/// A CONNECT the broker must refuse: a successful CONNACK fails; a CONNACK with a failure code
/// should carry `code`; either way the connection must close.
async fn judge_refusal(context: &Context, mut probe: Probe, code: ReasonCode, what: &str) -> Result<Finding, Failure> {
    let connack = match probe.receive(context.ms(CLOSE_WITHIN_MS)).await {
        Ok(Packet::ConnAck(connack)) => Some(connack),
        Ok(other) => {
            return Err(Failure::expected(
                format!("{what}: the broker answered with something else than a CONNACK"),
                format!("CONNACK 0x{:02X}, or the close", code.0),
                summary(&other),
            ))
        }
        Err(ProbeError::Closed { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    if let Some(connack) = &connack {
        if connack.reason_code.0 < 0x80 {
            return Err(Failure::expected(
                format!("{what}: the broker accepted the connection"),
                format!("CONNACK 0x{:02X} (or another failure code), then the close", code.0),
                summary(&Packet::ConnAck(connack.clone())),
            ));
        }
        judge_close(context, &mut probe, &[], what).await?;
    }
    match connack {
        Some(connack) if connack.reason_code == code => Ok(Finding::Pass),
        Some(connack) => context.should_not_met(format!(
            "{what}: the CONNACK has 0x{:02X}, not 0x{:02X}",
            connack.reason_code.0, code.0
        )),
        None => context.should_not_met(format!("{what}: the broker closed without a CONNACK 0x{:02X}", code.0)),
    }
}

/// Acknowledges a PUBLISH the broker sent, completing its QoS flow.
async fn acknowledge(context: &Context, probe: &mut Probe, publish: &Publish) -> Result<(), Failure> {
    let Some(packet_id) = publish.packet_id else {
        return Ok(());
    };
    match publish.qos {
        QoS::AtLeastOnce => probe.send(&Packet::PubAck(PublishAck::new(packet_id))).await?,
        QoS::ExactlyOnce => {
            probe.send(&Packet::PubRec(PublishAck::new(packet_id))).await?;
            probe
                .expect(&Pattern::pubrel().packet_id(packet_id), context.wait())
                .await?;
            probe.send(&Packet::PubComp(PublishAck::new(packet_id))).await?;
        }
        QoS::AtMostOnce => {}
    }
    Ok(())
}

/// Publishes as a client and completes the QoS flow; the broker's acknowledgements must succeed.
async fn publish_acknowledged(context: &Context, probe: &mut Probe, publish: Publish) -> Result<(), Failure> {
    let (qos, packet_id) = (publish.qos, publish.packet_id.unwrap_or(0));
    probe.send(&Packet::Publish(publish)).await?;
    let acknowledgement = match qos {
        QoS::AtMostOnce => return Ok(()),
        QoS::AtLeastOnce => {
            probe
                .expect(&Pattern::puback().packet_id(packet_id), context.wait())
                .await?
        }
        QoS::ExactlyOnce => {
            probe
                .expect(&Pattern::pubrec().packet_id(packet_id), context.wait())
                .await?
        }
    };
    let reason = match &acknowledgement {
        Packet::PubAck(ack) | Packet::PubRec(ack) => ack.reason_code,
        _ => ReasonCode::SUCCESS,
    };
    if reason.0 >= 0x80 {
        return Err(Failure::expected(
            format!("the broker refused a QoS {} PUBLISH", qos.as_u8()),
            "an acknowledgement below 0x80",
            summary(&acknowledgement),
        ));
    }
    if qos == QoS::ExactlyOnce {
        probe.send(&Packet::PubRel(PublishAck::new(packet_id))).await?;
        probe
            .expect(&Pattern::pubcomp().packet_id(packet_id), context.wait())
            .await?;
    }
    Ok(())
}

/// The broker's Maximum QoS as this connection's CONNACK says it.
fn maximum_qos(connack: &ConnAck) -> QoS {
    connack.properties.maximum_qos.unwrap_or(QoS::ExactlyOnce)
}

fn qos_above(qos: QoS) -> Option<QoS> {
    match qos {
        QoS::AtMostOnce => Some(QoS::AtLeastOnce),
        QoS::AtLeastOnce => Some(QoS::ExactlyOnce),
        QoS::ExactlyOnce => None,
    }
}

// ---------------------------------------------------------------------------------------------
// §3.2 CONNACK.

/// CONNECT and SUBSCRIBE in one write: CONNACK first, then the SUBACK.
async fn connack_before_pipelined_subscribe(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.open("pipelined").await?;
    let connect = Packet::Connect(Box::new(context.connect_packet("pipelined")));
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 0x0203,
        properties: Properties::default(),
        subscriptions: vec![subscription(context.topic("pipelined/t"), QoS::AtMostOnce)],
    });
    let mut bytes = encoded(&connect, context.version)?;
    bytes.extend_from_slice(&encoded(&subscribe, context.version)?);
    probe.send_raw(&bytes).await?;
    let first = probe.receive(context.wait()).await?;
    match &first {
        Packet::ConnAck(connack) if connack.reason_code == ReasonCode::SUCCESS => {}
        other => {
            return Err(Failure::expected(
                "the first packet is not a successful CONNACK",
                "CONNACK 0x00, then SUBACK",
                summary(other),
            ))
        }
    }
    probe
        .expect(&Pattern::suback().packet_id(0x0203), context.wait())
        .await?;
    Ok(Finding::Pass)
}

/// A second CONNECT: no second CONNACK until the connection ends.
async fn no_second_connack(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.connected("twice").await?;
    probe
        .send(&Packet::Connect(Box::new(context.connect_packet("twice"))))
        .await?;
    let deadline = Instant::now() + context.ms(CLOSE_WITHIN_MS);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match probe.receive(left).await {
            Ok(Packet::ConnAck(connack)) => {
                return Err(Failure::expected(
                    "the broker sent a second CONNACK on the connection",
                    "no second CONNACK (the broker closes the connection)",
                    summary(&Packet::ConnAck(connack)),
                ))
            }
            Ok(_) => continue,
            Err(ProbeError::Closed { .. }) => return Ok(Finding::Pass),
            Err(ProbeError::Timeout { .. }) => {
                return Ok(Finding::Informational(format!(
                    "no second CONNACK, but the broker did not close the connection within {CLOSE_WITHIN_MS} ms"
                )))
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The bytes of a 3.1.1 CONNECT with the protocol level byte and the connect flags changed.
fn v3_connect_bytes(connect: Connect, level: u8, extra_flags: u8) -> Result<BytesMut, Failure> {
    let mut bytes = encoded(&Packet::Connect(Box::new(connect)), ProtocolVersion::V3_1_1)?;
    let name = b"\x00\x04MQTT\x04";
    let at = bytes
        .windows(name.len())
        .position(|window| window == name)
        .ok_or_else(|| Failure::new("the encoded CONNECT has no protocol name"))?;
    bytes[at + 6] = level;
    bytes[at + 7] |= extra_flags;
    Ok(bytes)
}

/// A refused CONNECT for an id with a stored session: Session Present 0, a CONNACK code, close.
async fn refused_connack_session_present_0(context: Context) -> Result<Finding, Failure> {
    let (mut keeper, _) = accepted(&context, "keeper", context.persistent_connect("refused", 60)).await?;
    keeper.send(&Packet::Disconnect(Disconnect::default())).await?;
    keeper.close().await;
    let mut probe = context.open("refused").await?;
    let refused = if context.v5() {
        let mut connect = context.persistent_connect("refused", 60);
        connect.properties.authentication_method = Some(UNKNOWN_METHOD.to_owned());
        probe.send(&Packet::Connect(Box::new(connect))).await?;
        "a CONNECT with an unknown Authentication Method"
    } else {
        // An empty client id with Clean Session 0 (3.1.1 MQTT-3.1.3-8). Protocol level 2 would
        // refuse the stored session's own id, but the recorded wire decodes the answer to a
        // CONNECT it cannot decode by 5.0's rules.
        let connect = Connect {
            client_id: String::new(),
            ..context.persistent_connect("refused", 60)
        };
        probe.send(&Packet::Connect(Box::new(connect))).await?;
        "a CONNECT with an empty client id and Clean Session 0"
    };
    let connack = match probe.receive(context.wait()).await {
        Ok(Packet::ConnAck(connack)) => connack,
        Ok(Packet::Auth(_)) => {
            return Ok(Finding::NotApplicable(format!(
                "the broker began an authentication exchange for {UNKNOWN_METHOD}"
            )))
        }
        Ok(other) => {
            return Err(Failure::expected(
                format!("{refused}: the broker answered with something else than a CONNACK"),
                "a CONNACK with a failure code, or the close",
                summary(&other),
            ))
        }
        Err(ProbeError::Closed { .. }) => {
            return Ok(Finding::Informational(format!(
                "{refused}: the broker closed without a CONNACK, so there was no Session Present to check"
            )))
        }
        Err(error) => return Err(error.into()),
    };
    if connack.reason_code == ReasonCode::SUCCESS {
        // Not this case's statement: the refusal itself belongs to others.
        return Ok(Finding::NotApplicable(format!(
            "the broker accepted {refused}, so there was no refusal to check"
        )));
    }
    if connack.session_present {
        return Err(Failure::expected(
            format!("{refused}: a failing CONNACK with Session Present 1"),
            "Session Present 0",
            summary(&Packet::ConnAck(connack)),
        ));
    }
    judge_close(&context, &mut probe, &[], refused).await?;
    Ok(Finding::Pass)
}

/// 3.1.1: a CONNECT with its reserved flag set is closed without a CONNACK.
async fn malformed_connect_no_connack(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.open("reserved").await?;
    let bytes = v3_connect_bytes(context.connect_packet("reserved"), 4, 0x01)?;
    probe.send_raw(&bytes).await?;
    let report = probe
        .expect_close_since(Instant::now(), Duration::ZERO..=context.ms(CLOSE_WITHIN_MS))
        .await?;
    if let Some(Incoming::Packet(packet)) = report.others.first() {
        return Err(Failure::expected(
            "the broker answered a CONNECT with its reserved flag set",
            "the close, without a CONNACK",
            summary(packet),
        ));
    }
    still_serving(&context).await?;
    Ok(Finding::Pass)
}

/// Two empty client ids at once: two distinct Assigned Client Identifiers.
async fn assigned_client_identifier_unique(context: Context) -> Result<Finding, Failure> {
    let mut assigned = Vec::new();
    let mut probes = Vec::new();
    for client in ["anonymous-1", "anonymous-2"] {
        let connect = Connect {
            client_id: String::new(),
            ..context.connect_packet(client)
        };
        let (probe, connack) = accepted(&context, client, connect).await?;
        match connack.properties.assigned_client_identifier.clone() {
            Some(id) if !id.is_empty() => assigned.push(id),
            _ => {
                return Err(Failure::expected(
                    "the CONNACK for an empty client id has no Assigned Client Identifier",
                    "an Assigned Client Identifier",
                    summary(&Packet::ConnAck(connack)),
                ))
            }
        }
        probes.push(probe);
    }
    if assigned[0] == assigned[1] {
        return Err(Failure::expected(
            "two connections got the same Assigned Client Identifier",
            "two different identifiers",
            format!("{:?} twice", assigned[0]),
        ));
    }
    for mut probe in probes {
        let _ = probe.send(&Packet::Disconnect(Disconnect::default())).await;
    }
    Ok(Finding::Pass)
}

/// Keep Alive 2 s, no Server Keep Alive: closed between 2 s and 3 s (+ tolerance) of silence.
async fn client_keep_alive_applied(context: Context) -> Result<Finding, Failure> {
    let connect = Connect {
        keep_alive_s: 2,
        ..context.connect_packet("silent")
    };
    let (mut probe, connack) = accepted(&context, "silent", connect).await?;
    if let Some(server_keep_alive) = connack.properties.server_keep_alive_s {
        return Ok(Finding::NotApplicable(format!(
            "the broker sent Server Keep Alive {server_keep_alive} s"
        )));
    }
    // 1.5 times the keep alive, plus the live tolerance; never before the keep alive itself.
    let report = probe
        .expect_close(Duration::from_millis(2000)..=Duration::from_millis(3000 + 1000))
        .await?;
    let _ = report;
    Ok(Finding::Pass)
}

/// A Server Keep Alive of 1 to 5 s: a client that ignores it is closed within 1.5 times it.
async fn server_keep_alive_enforced(context: Context) -> Result<Finding, Failure> {
    let (mut probe, connack) = accepted(&context, "told", context.connect_packet("told")).await?;
    let server_keep_alive = match connack.properties.server_keep_alive_s {
        None => {
            return Ok(Finding::NotApplicable(
                "the broker sent no Server Keep Alive".to_owned(),
            ))
        }
        Some(0) => {
            return Ok(Finding::NotApplicable(
                "the broker's Server Keep Alive is 0 (no keep alive)".to_owned(),
            ))
        }
        Some(seconds) if seconds > 5 => {
            return Ok(Finding::NotApplicable(format!(
                "the broker's Server Keep Alive is {seconds} s, too long to wait for here"
            )))
        }
        Some(seconds) => u64::from(seconds),
    };
    probe
        .expect_close(
            Duration::from_millis(server_keep_alive * 1000)..=Duration::from_millis(server_keep_alive * 1500 + 1000),
        )
        .await?;
    Ok(Finding::Pass)
}

/// One byte over the announced Maximum Packet Size: the close, DISCONNECT 0x95 advised.
async fn packet_above_maximum_packet_size_closed(context: Context) -> Result<Finding, Failure> {
    let (mut probe, connack) = accepted(&context, "large", context.connect_packet("large")).await?;
    let Some(maximum) = connack.properties.maximum_packet_size else {
        return Ok(Finding::NotApplicable(
            "the broker announced no Maximum Packet Size".to_owned(),
        ));
    };
    if maximum > 4 * 1024 * 1024 {
        return Ok(Finding::NotApplicable(format!(
            "the broker's Maximum Packet Size is {maximum} bytes, too large to send here"
        )));
    }
    let target = maximum as usize + 1;
    let topic = context.topic("large/t");
    let mut payload_len = target.saturating_sub(topic.len() + 16);
    let packet = loop {
        let candidate = Packet::Publish(Publish {
            payload: Bytes::from(vec![b'x'; payload_len]),
            ..publish(topic.clone(), QoS::AtMostOnce, None, b"")
        });
        let size = size_of(&candidate, context.version);
        if size == target {
            break candidate;
        }
        if size < target {
            payload_len += target - size;
        } else {
            payload_len -= (size - target).min(payload_len);
        }
    };
    // The broker may close before it has read the whole packet: a failed write is no failure.
    let _ = probe.send(&packet).await;
    let finding = judge_close(
        &context,
        &mut probe,
        &[ReasonCode::PACKET_TOO_LARGE],
        "a PUBLISH one byte over the Maximum Packet Size",
    )
    .await?;
    still_serving(&context).await?;
    Ok(finding)
}

/// A PUBLISH with a Topic Alias; the broker must close the connection.
async fn publish_with_alias_closed(
    context: &Context,
    mut probe: Probe,
    alias: u16,
    what: &str,
) -> Result<Finding, Failure> {
    let mut packet = publish(context.topic("alias/t"), QoS::AtMostOnce, None, b"aliased");
    packet.properties = Properties::from(PropertyFields {
        topic_alias: Some(alias),
        ..PropertyFields::default()
    });
    probe.send(&Packet::Publish(packet)).await?;
    let finding = judge_close(context, &mut probe, &[ReasonCode::TOPIC_ALIAS_INVALID], what).await?;
    still_serving(context).await?;
    Ok(finding)
}

async fn topic_alias_above_maximum_closed(context: Context) -> Result<Finding, Failure> {
    let (probe, connack) = accepted(&context, "alias", context.connect_packet("alias")).await?;
    let maximum = connack.properties.topic_alias_maximum.unwrap_or(0);
    if maximum == 0 || maximum == u16::MAX {
        return Ok(Finding::NotApplicable(format!(
            "this connection's Topic Alias Maximum is {maximum}"
        )));
    }
    publish_with_alias_closed(
        &context,
        probe,
        maximum + 1,
        &format!("a Topic Alias of {} over a maximum of {maximum}", maximum + 1),
    )
    .await
}

async fn topic_alias_without_maximum_closed(context: Context) -> Result<Finding, Failure> {
    let (probe, connack) = accepted(&context, "alias", context.connect_packet("alias")).await?;
    if let Some(maximum @ 1..) = connack.properties.topic_alias_maximum {
        return Ok(Finding::NotApplicable(format!(
            "the broker takes topic aliases (Topic Alias Maximum {maximum})"
        )));
    }
    publish_with_alias_closed(&context, probe, 1, "a Topic Alias without a Topic Alias Maximum").await
}

/// Every QoS up to the announced maximum is accepted.
async fn publish_accepted_up_to_maximum_qos(context: Context) -> Result<Finding, Failure> {
    let (mut probe, connack) = accepted(&context, "qos", context.connect_packet("qos")).await?;
    let maximum = maximum_qos(&connack);
    let topic = context.topic("qos/t");
    for (qos, packet_id) in [
        (QoS::AtMostOnce, None),
        (QoS::AtLeastOnce, Some(1)),
        (QoS::ExactlyOnce, Some(2)),
    ] {
        if qos > maximum {
            break;
        }
        publish_acknowledged(
            &context,
            &mut probe,
            publish(topic.clone(), qos, packet_id, b"up-to-max"),
        )
        .await?;
    }
    probe.send(&Packet::PingReq).await?;
    probe.expect(&Pattern::pingresp(), context.wait()).await?;
    Ok(Finding::Pass)
}

/// A will above the Maximum QoS: refused, 0x9B advised.
async fn will_qos_above_maximum_refused(context: Context) -> Result<Finding, Failure> {
    let Some(qos) = qos_above(context.capabilities.maximum_qos) else {
        return Ok(Finding::NotApplicable("the broker supports QoS 2".to_owned()));
    };
    let mut probe = context.open("will").await?;
    let connect = Connect {
        will: Some(Will {
            topic: context.topic("will/t"),
            payload: Bytes::from_static(b"will"),
            qos,
            retain: false,
            properties: Properties::default(),
        }),
        ..context.connect_packet("will")
    };
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    let what = format!("a CONNECT with Will QoS {}", qos.as_u8());
    let finding = judge_refusal(&context, probe, ReasonCode::QOS_NOT_SUPPORTED, &what).await?;
    still_serving(&context).await?;
    Ok(finding)
}

/// A retained will without retain support: refused, 0x9A advised.
async fn will_retain_unsupported_refused(context: Context) -> Result<Finding, Failure> {
    if context.capabilities.retain_available {
        return Ok(Finding::NotApplicable(
            "the broker supports retained messages".to_owned(),
        ));
    }
    let mut probe = context.open("will").await?;
    let connect = Connect {
        will: Some(Will {
            topic: context.topic("will/t"),
            payload: Bytes::from_static(b"will"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
        }),
        ..context.connect_packet("will")
    };
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    let finding = judge_refusal(
        &context,
        probe,
        ReasonCode::RETAIN_NOT_SUPPORTED,
        "a CONNECT with Will Retain 1",
    )
    .await?;
    still_serving(&context).await?;
    Ok(finding)
}

/// A PUBLISH above the Maximum QoS: the close, 0x9B advised.
async fn publish_above_maximum_qos_closed(context: Context) -> Result<Finding, Failure> {
    let (mut probe, connack) = accepted(&context, "over", context.connect_packet("over")).await?;
    let Some(qos) = qos_above(maximum_qos(&connack)) else {
        return Ok(Finding::NotApplicable("the broker supports QoS 2".to_owned()));
    };
    probe
        .send(&Packet::Publish(publish(
            context.topic("over/t"),
            qos,
            Some(1),
            b"over",
        )))
        .await?;
    let what = format!("a QoS {} PUBLISH over the Maximum QoS", qos.as_u8());
    let finding = judge_close(&context, &mut probe, &[ReasonCode::QOS_NOT_SUPPORTED], &what).await?;
    still_serving(&context).await?;
    Ok(finding)
}

/// A retained PUBLISH without retain support: the close, 0x9A advised.
async fn publish_retain_unsupported_closed(context: Context) -> Result<Finding, Failure> {
    let (mut probe, connack) = accepted(&context, "retain", context.connect_packet("retain")).await?;
    if connack.properties.retain_available.unwrap_or(true) {
        return Ok(Finding::NotApplicable(
            "the broker supports retained messages".to_owned(),
        ));
    }
    let mut packet = publish(context.topic("retain/t"), QoS::AtMostOnce, None, b"kept");
    packet.retain = true;
    probe.send(&Packet::Publish(packet)).await?;
    let finding = judge_close(
        &context,
        &mut probe,
        &[ReasonCode::RETAIN_NOT_SUPPORTED],
        "a PUBLISH with RETAIN 1",
    )
    .await?;
    still_serving(&context).await?;
    Ok(finding)
}

/// A SUBSCRIBE for a feature the broker's CONNACK declined. The spec says both that this is a
/// Protocol Error (§3.2.2.3.11 to -13: the close, with `code` in a DISCONNECT) and, in SUBACK's
/// table, that `code` refuses the subscription: either is accepted, never a grant, and the
/// specific code is advised.
async fn subscribe_declined_closed(
    context: &Context,
    declined: impl Fn(&ConnAck) -> bool,
    feature: &str,
    subscribe: Subscribe,
    code: ReasonCode,
) -> Result<Finding, Failure> {
    let (mut probe, connack) = accepted(context, "declined", context.connect_packet("declined")).await?;
    if !declined(&connack) {
        return Ok(Finding::NotApplicable(format!("the broker supports {feature}")));
    }
    probe.send(&Packet::Subscribe(subscribe.clone())).await?;
    let what = format!("a SUBSCRIBE using {feature}");
    let finding = match probe.receive(context.ms(CLOSE_WITHIN_MS)).await {
        Ok(Packet::SubAck(suback)) if suback.packet_id == subscribe.packet_id => {
            if !suback.reason_codes.iter().all(|granted| granted.is_error()) {
                return Err(Failure::expected(
                    format!("{what}: the broker granted what its CONNACK said it does not support"),
                    format!("the close, or a SUBACK refusing with {}", codes_text(&[code])),
                    summary(&Packet::SubAck(suback)),
                ));
            }
            if suback.reason_codes.iter().all(|refused| *refused == code) {
                Finding::Pass
            } else {
                context.should_not_met(format!(
                    "{what}: refused in the SUBACK with {}, not {}",
                    codes_text(&suback.reason_codes),
                    codes_text(&[code])
                ))?
            }
        }
        Ok(Packet::Disconnect(disconnect)) => {
            probe
                .expect_close_since(Instant::now(), Duration::ZERO..=context.ms(CLOSE_WITHIN_MS))
                .await
                .map_err(|error| Failure::new(format!("{what}: a DISCONNECT but no close: {error}")))?;
            if disconnect.reason_code == code {
                Finding::Pass
            } else {
                context.should_not_met(format!(
                    "{what}: the DISCONNECT has 0x{:02X}, not {}",
                    disconnect.reason_code.0,
                    codes_text(&[code])
                ))?
            }
        }
        Err(ProbeError::Closed { .. }) => context.should_not_met(format!(
            "{what}: the broker closed without a DISCONNECT {}",
            codes_text(&[code])
        ))?,
        Ok(other) => {
            return Err(Failure::expected(
                format!("{what}: neither refused nor closed"),
                format!("the close, or a SUBACK refusing with {}", codes_text(&[code])),
                summary(&other),
            ))
        }
        Err(error) => return Err(Failure::new(format!("{what}: neither refused nor closed: {error}"))),
    };
    still_serving(context).await?;
    Ok(finding)
}

async fn subscribe_wildcard_unsupported_closed(context: Context) -> Result<Finding, Failure> {
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![subscription(context.topic("declined/+"), QoS::AtMostOnce)],
    };
    subscribe_declined_closed(
        &context,
        |connack| connack.properties.wildcard_subscription_available == Some(false),
        "wildcard subscriptions",
        subscribe,
        ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    )
    .await
}

async fn subscribe_shared_unsupported_closed(context: Context) -> Result<Finding, Failure> {
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![subscription(
            format!("$share/mh/{}", context.topic("declined/t")),
            QoS::AtMostOnce,
        )],
    };
    subscribe_declined_closed(
        &context,
        |connack| connack.properties.shared_subscription_available == Some(false),
        "shared subscriptions",
        subscribe,
        ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
    )
    .await
}

async fn subscription_identifier_unsupported_closed(context: Context) -> Result<Finding, Failure> {
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties::from(PropertyFields {
            subscription_identifiers: vec![1],
            ..PropertyFields::default()
        }),
        subscriptions: vec![subscription(context.topic("declined/t"), QoS::AtMostOnce)],
    };
    subscribe_declined_closed(
        &context,
        |connack| connack.properties.subscription_identifier_available == Some(false),
        "subscription identifiers",
        subscribe,
        ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// §3.8 to §3.11 SUBSCRIBE to UNSUBACK.

/// Filters requesting QoS 2, 0, 1: codes in order, each obeyed by the delivery.
async fn suback_codes_match_filters(context: Context) -> Result<Finding, Failure> {
    let requested = [
        ("codes/two", QoS::ExactlyOnce),
        ("codes/zero", QoS::AtMostOnce),
        ("codes/one", QoS::AtLeastOnce),
    ];
    let (mut sub, _) = accepted(&context, "sub", context.connect_packet("sub")).await?;
    let subscribe = Subscribe {
        packet_id: 7,
        properties: Properties::default(),
        subscriptions: requested
            .iter()
            .map(|(topic, qos)| subscription(context.topic(topic), *qos))
            .collect(),
    };
    sub.send(&Packet::Subscribe(subscribe)).await?;
    let suback = match sub.expect(&Pattern::suback().packet_id(7), context.wait()).await? {
        Packet::SubAck(suback) => suback,
        other => return Err(Failure::expected("expected a SUBACK", "SUBACK", summary(&other))),
    };
    let text = summary(&Packet::SubAck(suback.clone()));
    if suback.reason_codes.len() != requested.len() {
        return Err(Failure::expected(
            "the SUBACK does not have one reason code per filter",
            format!("{} reason codes", requested.len()),
            text,
        ));
    }
    let mut finding = Finding::Pass;
    let mut granted = Vec::new();
    for ((topic, qos), code) in requested.iter().zip(&suback.reason_codes) {
        if code.0 >= 0x80 {
            if context.v5() {
                return Err(Failure::expected(
                    format!("the broker refused the QoS {} subscription to {topic}", qos.as_u8()),
                    "every requested QoS accepted (at the QoS granted)",
                    text,
                ));
            }
            finding = either(
                finding,
                Finding::Informational(format!("the broker refused the subscription to {topic}")),
            );
            granted.push(None);
            continue;
        }
        match QoS::from_u8(code.0) {
            Some(given) if given <= *qos => granted.push(Some(given)),
            _ => {
                return Err(Failure::expected(
                    format!(
                        "the code for {topic} is no QoS at or below the {} requested",
                        qos.as_u8()
                    ),
                    "a granted QoS no higher than requested, or a failure",
                    text,
                ))
            }
        }
    }
    let (mut publisher, connack) = accepted(&context, "pub", context.connect_packet("pub")).await?;
    let published_qos = if context.v5() {
        maximum_qos(&connack)
    } else {
        context.capabilities.maximum_qos
    };
    for (index, ((topic, _), given)) in requested.iter().zip(&granted).enumerate() {
        let Some(given) = given else { continue };
        let packet_id = (published_qos != QoS::AtMostOnce).then_some(index as u16 + 1);
        publish_acknowledged(
            &context,
            &mut publisher,
            publish(context.topic(topic), published_qos, packet_id, b"by-code"),
        )
        .await?;
        let expected = published_qos.min(*given);
        let received = sub
            .expect(&Pattern::publish().topic(context.topic(topic)), context.wait())
            .await?;
        let Packet::Publish(message) = &received else { continue };
        if message.qos != expected {
            return Err(Failure::expected(
                format!(
                    "a QoS {} message reached {topic}, granted QoS {} in the SUBACK's place {}, at QoS {}",
                    published_qos.as_u8(),
                    given.as_u8(),
                    index + 1,
                    message.qos.as_u8()
                ),
                format!("QoS {}", expected.as_u8()),
                summary(&received),
            ));
        }
        acknowledge(&context, &mut sub, message).await?;
    }
    Ok(finding)
}

/// Client Maximum Packet Size 64: CONNACK, SUBACK and UNSUBACK fit; a refusal with 8 too.
async fn acks_fit_client_maximum_packet_size(context: Context) -> Result<Finding, Failure> {
    const LIMIT: u32 = 64;
    // 1 byte of type, 1 of Remaining Length, 2 of packet id, 1 of Property Length, then codes.
    const FILTERS: usize = LIMIT as usize - 5;
    let version = context.version;
    let too_large = |what: &str, packet: &Packet, limit: u32| -> Failure {
        let properties = match packet {
            Packet::ConnAck(connack) => &connack.properties,
            Packet::SubAck(suback) => &suback.properties,
            Packet::UnsubAck(unsuback) => &unsuback.properties,
            _ => return Failure::new(format!("{what}: unexpected packet")),
        };
        let extra = match (&properties.reason_string, properties.user_properties.is_empty()) {
            (Some(_), false) => "with a Reason String and User Properties",
            (Some(_), true) => "with a Reason String",
            (None, false) => "with User Properties",
            (None, true) => "(without Reason String or User Property)",
        };
        Failure::expected(
            format!(
                "the {what} is {} bytes {extra}, over the client's Maximum Packet Size",
                size_of(packet, version)
            ),
            format!("at most {limit} bytes"),
            summary(packet),
        )
    };
    let mut connect = context.connect_packet("small");
    connect.properties.maximum_packet_size = Some(LIMIT);
    let (mut probe, connack) = accepted(&context, "small", connect).await?;
    let broker_maximum = connack.properties.maximum_packet_size.unwrap_or(u32::MAX) as usize;
    let connack = Packet::ConnAck(connack);
    if size_of(&connack, version) > LIMIT as usize {
        return Err(too_large("CONNACK", &connack, LIMIT));
    }
    // As many filters as fill the SUBACK, unless the SUBSCRIBE would exceed the broker's own
    // Maximum Packet Size.
    let mut filters: Vec<String> = (0..FILTERS)
        .map(|index| context.topic(&format!("small/{index}")))
        .collect();
    let subscribe = loop {
        let subscribe = Subscribe {
            packet_id: 9,
            properties: Properties::default(),
            subscriptions: filters
                .iter()
                .map(|filter| subscription(filter.clone(), QoS::AtMostOnce))
                .collect(),
        };
        if filters.len() == 1 || size_of(&Packet::Subscribe(subscribe.clone()), version) <= broker_maximum {
            break subscribe;
        }
        filters.pop();
    };
    probe.send(&Packet::Subscribe(subscribe)).await?;
    let suback = probe.expect(&Pattern::suback().packet_id(9), context.wait()).await?;
    if size_of(&suback, version) > LIMIT as usize {
        return Err(too_large("SUBACK", &suback, LIMIT));
    }
    // Half subscribed, half never: both kinds of code, the second often explained.
    let unsubscribe = Unsubscribe {
        packet_id: 10,
        properties: Properties::default(),
        filters: filters
            .iter()
            .enumerate()
            .map(|(index, filter)| {
                if index % 2 == 0 {
                    filter.clone()
                } else {
                    // As long as the filter it stands for, so the UNSUBSCRIBE fits as the SUBSCRIBE did.
                    context.topic(&format!("never/{index}"))
                }
            })
            .collect(),
    };
    probe.send(&Packet::Unsubscribe(unsubscribe)).await?;
    let unsuback = probe.expect(&Pattern::unsuback().packet_id(10), context.wait()).await?;
    if size_of(&unsuback, version) > LIMIT as usize {
        return Err(too_large("UNSUBACK", &unsuback, LIMIT));
    }
    let _ = probe.send(&Packet::Disconnect(Disconnect::default())).await;
    // A refusal, where brokers like to explain themselves.
    const REFUSAL_LIMIT: u32 = 8;
    let mut connect = context.connect_packet("refused-small");
    connect.properties.maximum_packet_size = Some(REFUSAL_LIMIT);
    connect.properties.authentication_method = Some(UNKNOWN_METHOD.to_owned());
    let mut refused = context.open("refused-small").await?;
    refused.send(&Packet::Connect(Box::new(connect))).await?;
    match refused.receive(context.ms(CLOSE_WITHIN_MS)).await {
        Ok(Packet::ConnAck(connack))
            if connack.reason_code.0 >= 0x80
                && size_of(&Packet::ConnAck(connack.clone()), version) > REFUSAL_LIMIT as usize =>
        {
            Err(too_large("refusing CONNACK", &Packet::ConnAck(connack), REFUSAL_LIMIT))
        }
        Ok(_) | Err(ProbeError::Closed { .. }) | Err(ProbeError::Timeout { .. }) => Ok(Finding::Pass),
        Err(error) => Err(error.into()),
    }
}

/// The client Maximum Packet Sizes tried by [`connack_within_small_maximum_packet_size`]: around
/// a typical 5.0 CONNACK, down to the smallest one possible (five bytes).
const SMALL_MAXIMUM_PACKET_SIZES: [u32; 4] = [16, 12, 8, 5];

async fn connack_within_small_maximum_packet_size(context: Context) -> Result<Finding, Failure> {
    let version = context.version;
    // All CONNECTs first, then the answers: a broker that answers none costs one wait, not four.
    let mut probes = Vec::new();
    for limit in SMALL_MAXIMUM_PACKET_SIZES {
        let client = format!("tiny{limit}");
        let mut connect = context.connect_packet(&client);
        connect.properties.maximum_packet_size = Some(limit);
        let mut probe = context.open(&client).await?;
        probe.send(&Packet::Connect(Box::new(connect))).await?;
        probes.push((limit, probe));
    }
    let mut outcomes = Vec::new();
    for (limit, mut probe) in probes {
        match probe.receive(context.wait()).await {
            Ok(packet @ Packet::ConnAck(_)) => {
                let size = size_of(&packet, version);
                if size > limit as usize {
                    return Err(Failure::expected(
                        format!("with a Maximum Packet Size of {limit}, the CONNACK is {size} bytes"),
                        format!("a CONNACK of at most {limit} bytes, or the close"),
                        summary(&packet),
                    ));
                }
                outcomes.push(format!("{limit}: a CONNACK of {size} bytes"));
            }
            Ok(other) => {
                return Err(Failure::expected(
                    format!("with a Maximum Packet Size of {limit}, the first packet was not a CONNACK"),
                    "a CONNACK that fits, or the close",
                    summary(&other),
                ))
            }
            Err(ProbeError::Closed { .. }) => outcomes.push(format!("{limit}: closed")),
            Err(ProbeError::Timeout { waited, .. }) => {
                // Open and silent: does the broker serve a connection it never acknowledged?
                probe.send(&Packet::PingReq).await?;
                let served = matches!(probe.receive(context.ms(1000)).await, Ok(Packet::PingResp));
                let served = if served {
                    "; a PINGREQ then got a PINGRESP, so the broker took the connection without a CONNACK"
                } else {
                    ""
                };
                return Err(Failure::expected(
                    format!(
                        "with a Maximum Packet Size of {limit}, no CONNACK within {} ms and the connection still \
                         open{served}",
                        waited.as_millis()
                    ),
                    format!("a CONNACK of at most {limit} bytes, or the close"),
                    "nothing",
                ));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Finding::Informational(outcomes.join("; ")))
}

/// UNSUBSCRIBE of a filter never subscribed: UNSUBACK with the packet id, twice.
async fn unsubscribe_unknown_filter_answered(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.connected("unsub").await?;
    let mut finding = Finding::Pass;
    for packet_id in [0x0A0B, 0xFFFF] {
        let unsubscribe = Unsubscribe {
            packet_id,
            properties: Properties::default(),
            filters: vec![context.topic("unsub/never")],
        };
        probe.send(&Packet::Unsubscribe(unsubscribe)).await?;
        let received = probe.receive(context.wait()).await?;
        let Packet::UnsubAck(unsuback) = &received else {
            return Err(Failure::expected(
                "the UNSUBSCRIBE of a filter never subscribed was not answered by an UNSUBACK",
                format!("UNSUBACK id={packet_id}"),
                summary(&received),
            ));
        };
        if unsuback.packet_id != packet_id {
            return Err(Failure::expected(
                "the UNSUBACK does not carry the UNSUBSCRIBE's packet identifier",
                format!("UNSUBACK id={packet_id}"),
                summary(&received),
            ));
        }
        if context.v5() {
            if unsuback.reason_codes.len() != 1 {
                return Err(Failure::expected(
                    "the UNSUBACK does not have one reason code for the one filter",
                    "one reason code",
                    summary(&received),
                ));
            }
            if unsuback.reason_codes[0] != ReasonCode::NO_SUBSCRIPTION_EXISTED {
                finding = either(
                    finding,
                    context.should_not_met(format!(
                        "the UNSUBACK for a filter never subscribed has 0x{:02X}, not 0x11 (No subscription existed)",
                        unsuback.reason_codes[0].0
                    ))?,
                );
            }
        }
    }
    Ok(finding)
}

// ---------------------------------------------------------------------------------------------
// §3.15 AUTH and §4.12 enhanced authentication.

/// An unknown Authentication Method: refused and closed; never accepted without the method.
async fn unknown_authentication_method_refused(context: Context) -> Result<Finding, Failure> {
    let mut connect = context.connect_packet("auth");
    connect.properties.authentication_method = Some(UNKNOWN_METHOD.to_owned());
    connect.properties.authentication_data = Some(Bytes::from_static(b"mh-data"));
    let mut probe = context.open("auth").await?;
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    let what = "a CONNECT with an unknown Authentication Method";
    let received = match probe.receive(context.wait()).await {
        Ok(packet) => packet,
        Err(ProbeError::Closed { .. }) => {
            still_serving(&context).await?;
            return Ok(Finding::Pass);
        }
        Err(error) => return Err(error.into()),
    };
    let method = match &received {
        Packet::ConnAck(connack) if connack.reason_code.0 >= 0x80 => {
            judge_close(&context, &mut probe, &[], what).await?;
            still_serving(&context).await?;
            return Ok(Finding::Pass);
        }
        Packet::ConnAck(connack) => connack.properties.authentication_method.clone(),
        Packet::Auth(auth) => auth.properties.authentication_method.clone(),
        other => {
            return Err(Failure::expected(
                format!("{what}: the broker answered with something else than CONNACK or AUTH"),
                "a CONNACK of 0x80 or above, or the close",
                summary(other),
            ))
        }
    };
    if method.as_deref() != Some(UNKNOWN_METHOD) {
        return Err(Failure::expected(
            format!("{what}: the broker went on without that Authentication Method"),
            format!("a CONNACK of 0x80 or above, or the close (or a packet naming {UNKNOWN_METHOD})"),
            summary(&received),
        ));
    }
    Ok(Finding::NotApplicable(format!(
        "the broker claims to support the Authentication Method {UNKNOWN_METHOD}"
    )))
}
