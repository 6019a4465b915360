//! The robustness cases. Each bounds what it sends (connections, packets, seconds) and what it
//! waits for; the runner's watch ([`super::watch`]) measures the side client and the memory around
//! it. Protocol errors cite their statements; abusive but legal traffic cites none.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::join_all;
use mqtt_client::probe::{CloseReport, Pattern, Probe, ProbeError, ProbeOptions};
use mqtt_protocol::wire::put_variable_byte_integer;
use mqtt_protocol::{
    encode, Disconnect, Packet, Properties, PropertyFields, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions,
};
use mqtt_scenarios::scenario::{CaseLevel, Phase};
use tokio::time::{sleep, Instant};

use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// How long a broker has to end a connection it cannot complete (a packet stalled with keep
/// alive 0, a CONNECT trickled byte by byte) before the case says it holds it without a bound.
pub const HELD_BOUND: Duration = Duration::from_secs(30);

/// 5.0 reason codes a broker may close an abusive connection with, or refuse with, here.
const SERVER_BUSY: u8 = 0x89;
const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
const PACKET_TOO_LARGE: u8 = 0x95;
const QUOTA_EXCEEDED: u8 = 0x97;
const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
const UNSPECIFIED_ERROR: u8 = 0x80;
const MALFORMED_PACKET: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
/// 3.1.1 CONNACK return code 3, Server unavailable (our codec holds it as 5.0's 0x88).
const SERVER_UNAVAILABLE_3_1_1: u8 = 0x88;

/// The robustness cases, in the order they run.
pub static CASES: &[ProbeCase] = &[
    ProbeCase {
        name: "truncated-packets",
        about: "A session's CONNECT, SUBSCRIBE and QoS 1 PUBLISH cut short at bytes inside each packet \
                (after the first byte, the second, the middle, before the last), one connection per cut, \
                each then half-closed by the client: the broker closes every one of them and answers \
                nothing it did not receive whole.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(truncated_packets(context)),
    },
    ProbeCase {
        name: "stalled-packet-keep-alive-0",
        about: "Twenty clients with keep alive 0 (no keep-alive timer) each begin a PUBLISH whose Remaining \
                Length promises up to 256 KiB (within the broker's Maximum Packet Size) and send 16 bytes \
                of it, then nothing: the broker must not hold the partial packets forever; each connection \
                closes within 30 s.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(stalled_packet(context)),
    },
    ProbeCase {
        name: "slow-loris-connect",
        about: "Twenty connections each trickle a CONNECT one byte every 500 ms, each byte well within any \
                connect timeout: the broker closes every one before the CONNECT is whole, within 30 s of \
                the connection opening (a connect timeout counted from the connection, not from the last \
                byte).",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(slow_loris_connect(context)),
    },
    ProbeCase {
        name: "property-flood",
        about: "A CONNECT, a SUBSCRIBE and 40 QoS 1 PUBLISH packets each carrying thousands of User \
                Properties, up to 64 KiB (within the broker's Maximum Packet Size): every one is answered \
                (CONNACK, SUBACK, PUBACK), or refused or closed with a code allowed for it (0x80, 0x89, \
                0x95, 0x97, 0x9F).",
        versions: &["5.0"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(property_flood(context)),
    },
    ProbeCase {
        name: "subscribe-past-limit",
        about: "One client sends 1,000 SUBSCRIBE packets of 10 distinct filters each (10,000 subscriptions, \
                past any per-client limit): every SUBACK answers its packet with one code per filter, each \
                a granted QoS or a refusal (5.0 0x80 or 0x97, 3.1.1 0x80); or the broker closes with 0x89 \
                or 0x97 (3.1.1: closes).",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(subscribe_past_limit(context)),
    },
    ProbeCase {
        name: "connection-flood",
        about: "400 connections opened at 400 per second, each sending CONNECT and staying open: each gets a \
                CONNACK, a refusal (5.0 0x89, 0x97 or 0x9F; 3.1.1 return code 3) or a close, within 5 s.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(connection_flood(context)),
    },
    ProbeCase {
        name: "qos2-ids-never-released",
        about: "A client sends QoS 2 PUBLISH packets under distinct packet ids (up to the broker's Receive \
                Maximum in 5.0, all 65,535 in 3.1.1) and never releases any (no PUBREL): each gets its \
                PUBREC; in 5.0, one more past the Receive Maximum is a protocol error, and the broker \
                closes (DISCONNECT 0x93 if any).",
        versions: &["5.0", "3.1.1"],
        statements: &["5.0:MQTT-4.13.1-1"],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(qos2_ids_never_released(context)),
    },
    ProbeCase {
        name: "publish-storm-unread",
        about: "For 3 s a client publishes QoS 0 and QoS 1 messages as fast as the broker takes them and \
                never reads its acknowledgements, to a subscriber that never reads either: the broker \
                holds them back or closes with an allowed code (0x89, 0x93, 0x97), and its memory stays \
                bounded.",
        versions: &["5.0", "3.1.1"],
        statements: &[],
        level: CaseLevel::Must,
        needs: &[],
        phase: Phase::Serial,
        kills: &[],
        run: |context| Box::pin(publish_storm_unread(context)),
    },
];

fn encoded(packet: &Packet, version: ProtocolVersion) -> Result<BytesMut, Failure> {
    let mut bytes = BytesMut::new();
    encode(packet, version, &mut bytes).map_err(|error| Failure::new(format!("cannot encode: {error}")))?;
    Ok(bytes)
}

fn subscribe(packet_id: u16, filters: Vec<String>, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        subscriptions: filters
            .into_iter()
            .map(|filter| Subscription {
                filter,
                options: SubscriptionOptions::with_qos(qos),
            })
            .collect(),
    })
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

fn disconnect() -> Packet {
    Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// How a connection the broker closed ended: `Ok` with a description when it closed without a
/// DISCONNECT or (5.0) with one of `allowed`; a failure naming the code otherwise.
fn closed_as_allowed(context: &Context, report: &CloseReport, allowed: &[u8], what: &str) -> Result<String, Failure> {
    match &report.disconnect {
        None => Ok("closed".to_owned()),
        Some(received) if context.v5() && allowed.contains(&received.reason_code.0) => {
            Ok(format!("closed with DISCONNECT 0x{:02X}", received.reason_code.0))
        }
        Some(received) => Err(Failure::expected(
            format!(
                "{what}: the broker closed with DISCONNECT 0x{:02X}",
                received.reason_code.0
            ),
            format!("a close, or DISCONNECT with {}", codes(allowed)),
            format!("DISCONNECT 0x{:02X}", received.reason_code.0),
        )),
    }
}

fn codes(allowed: &[u8]) -> String {
    let names: Vec<String> = allowed.iter().map(|code| format!("0x{code:02X}")).collect();
    names.join(", ")
}

/// Counts of each description, in first-seen order: "18 closed, 2 closed with DISCONNECT 0x95".
fn tally(items: impl IntoIterator<Item = String>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for item in items {
        match counts.iter_mut().find(|(seen, _)| *seen == item) {
            Some((_, count)) => *count += 1,
            None => counts.push((item, 1)),
        }
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(item, count)| format!("{count} {item}"))
        .collect();
    parts.join(", ")
}

async fn truncated_packets(context: Context) -> Result<Finding, Failure> {
    let version = context.version;
    // One session per cut, each with its own client id of the same length, so the cut positions of
    // the first hold for all.
    let session = |index: usize| -> Result<(Vec<u8>, Vec<usize>), Failure> {
        let name = format!("cut-{index:02}");
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let topic = context.topic(&name);
        for packet in [
            Packet::Connect(Box::new(context.connect_packet(&name))),
            subscribe(1, vec![topic.clone()], QoS::AtLeastOnce),
            publish(&topic, QoS::AtLeastOnce, Some(2), Bytes::from_static(b"truncated")),
        ] {
            bytes.extend_from_slice(&encoded(&packet, version)?);
            ends.push(bytes.len());
        }
        Ok((bytes, ends))
    };
    let (_, ends) = session(0)?;
    let mut cuts = Vec::new();
    let mut start = 0;
    for end in &ends {
        for cut in [start + 1, start + 2, (start + end) / 2, end - 1] {
            if cut > start && cut < *end && !cuts.contains(&cut) {
                cuts.push(cut);
            }
        }
        start = *end;
    }
    let packet_of = |cut: usize| match ends.iter().position(|end| cut < *end) {
        Some(0) => "CONNECT",
        Some(1) => "SUBSCRIBE",
        _ => "PUBLISH",
    };
    let wait = context.wait();
    let runs = cuts.iter().enumerate().map(|(index, cut)| {
        let context = &context;
        async move {
            let (bytes, _) = session(index)?;
            let mut probe = context.open(&format!("cut-{index:02}")).await?;
            probe.send_raw(&bytes[..*cut]).await?;
            probe.shutdown_write().await?;
            let report = probe.expect_close(Duration::ZERO..=wait).await.map_err(|error| {
                Failure::expected(
                    format!(
                        "cut {} bytes into the session (inside its {}) and half-closed: {error}",
                        cut,
                        packet_of(*cut)
                    ),
                    format!("the broker closes the connection within {} s", wait.as_secs()),
                    "still open",
                )
            })?;
            closed_as_allowed(
                context,
                &report,
                &[MALFORMED_PACKET, PROTOCOL_ERROR],
                &format!("cut inside the {}", packet_of(*cut)),
            )
        }
    });
    let outcomes: Vec<Result<String, Failure>> = join_all(runs).await;
    let mut closes = Vec::new();
    for outcome in outcomes {
        closes.push(outcome?);
    }
    context.note(format!(
        "{} cuts at bytes {:?} of a {}-byte session: {}",
        cuts.len(),
        cuts,
        ends.last().copied().unwrap_or_default(),
        tally(closes)
    ));
    Ok(Finding::Pass)
}

/// The fixed header of a QoS 0 PUBLISH whose Remaining Length is `remaining_length`, and the first
/// bytes of its body: a topic and the start of the payload.
fn publish_start(remaining_length: u32, topic: &str, body_bytes: usize) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    bytes.put_u8(0x30);
    put_variable_byte_integer(&mut bytes, remaining_length);
    bytes.put_u16(topic.len() as u16);
    bytes.put_slice(topic.as_bytes());
    let header_len = bytes.len();
    // The payload's first bytes, up to `body_bytes` of the body in all.
    while bytes.len() < header_len + body_bytes.saturating_sub(2 + topic.len()) {
        bytes.put_u8(b'x');
    }
    bytes.to_vec()
}

async fn stalled_packet(context: Context) -> Result<Finding, Failure> {
    const CONNECTIONS: usize = 20;
    const PROMISE_MAX: u32 = 256 * 1024;
    const SENT: usize = 16;
    let promise = context
        .capabilities
        .maximum_packet_size
        .map_or(PROMISE_MAX, |maximum| maximum.saturating_sub(8).min(PROMISE_MAX))
        .max(64);
    let runs = (0..CONNECTIONS).map(|index| {
        let context = &context;
        async move {
            let name = format!("stall-{index:02}");
            let mut connect = context.connect_packet(&name);
            connect.keep_alive_s = 0;
            let mut probe = context.open(&name).await?;
            probe.send(&Packet::Connect(Box::new(connect))).await?;
            let connack = probe
                .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), context.wait())
                .await?;
            let imposed = match &connack {
                Packet::ConnAck(connack) => connack.properties.server_keep_alive_s.filter(|seconds| *seconds > 0),
                _ => None,
            };
            let topic = context.topic(&name);
            probe.send_raw(&publish_start(promise, &topic, SENT)).await?;
            let started = Instant::now();
            match probe.expect_close_since(started, Duration::ZERO..=HELD_BOUND).await {
                Ok(report) => Ok((report.after, imposed)),
                Err(ProbeError::NotClosed { .. }) => Err(Failure::expected(
                    format!(
                        "{name}: still open {} s after promising {promise} bytes with keep alive 0 and sending {SENT}{}",
                        HELD_BOUND.as_secs(),
                        imposed.map_or(String::new(), |seconds| format!(" (Server Keep Alive {seconds} s)"))
                    ),
                    "a stalled packet is not held without a time bound",
                    "the connection and its partial packet held",
                )),
                Err(error) => Err(Failure::from(error)),
            }
        }
    });
    let outcomes = join_all(runs).await;
    let mut closed_after = Vec::new();
    let mut imposed_keep_alive = None;
    for outcome in outcomes {
        let (after, imposed) = outcome?;
        closed_after.push(after);
        imposed_keep_alive = imposed_keep_alive.or(imposed);
    }
    closed_after.sort();
    context.note(format!(
        "{CONNECTIONS} stalled packets promising {promise} bytes each: closed {:.1} to {:.1} s after the stall{}",
        closed_after.first().copied().unwrap_or_default().as_secs_f64(),
        closed_after.last().copied().unwrap_or_default().as_secs_f64(),
        imposed_keep_alive.map_or(String::new(), |seconds| format!(
            " (the broker imposed a Server Keep Alive of {seconds} s)"
        ))
    ));
    Ok(Finding::Pass)
}

async fn slow_loris_connect(context: Context) -> Result<Finding, Failure> {
    const CONNECTIONS: usize = 20;
    const BYTE_INTERVAL: Duration = Duration::from_millis(500);
    let runs = (0..CONNECTIONS).map(|index| {
        let context = &context;
        async move {
            let name = format!("loris-{index:02}-");
            let mut connect = context.connect_packet(&name);
            // Long enough that, at one byte per interval, the CONNECT is not whole before the bound.
            connect.client_id.push_str(&"x".repeat(160));
            let bytes = encoded(&Packet::Connect(Box::new(connect)), context.version)?;
            let mut probe = context.open(&name).await?;
            let opened = Instant::now();
            let mut disconnect = None;
            for (sent, byte) in bytes.iter().enumerate() {
                if opened.elapsed() > HELD_BOUND {
                    return Err(Failure::expected(
                        format!(
                            "{name}: still open {} s after opening, {sent} of the CONNECT's {} bytes trickled",
                            HELD_BOUND.as_secs(),
                            bytes.len()
                        ),
                        "the connect timeout counts from the connection, not from the last byte",
                        "the connection held",
                    ));
                }
                if probe.send_raw(&[*byte]).await.is_err() {
                    return Ok(opened.elapsed());
                }
                match probe.receive(BYTE_INTERVAL).await {
                    Err(ProbeError::Timeout { .. }) => {}
                    Err(ProbeError::Closed { .. }) => return Ok(opened.elapsed()),
                    Ok(Packet::Disconnect(received)) if disconnect.is_none() => disconnect = Some(received.reason_code),
                    Ok(other) => {
                        return Err(Failure::expected(
                            format!(
                                "{name}: the broker answered a CONNECT it had {} of {} bytes of",
                                sent + 1,
                                bytes.len()
                            ),
                            "nothing but a close",
                            mqtt_client::probe::trace::summary(&other),
                        ))
                    }
                    Err(error) => return Err(Failure::from(error)),
                }
            }
            Err(Failure::new(format!(
                "{name}: the whole CONNECT was trickled and the connection is still open"
            )))
        }
    });
    let mut closed_after = Vec::new();
    for outcome in join_all(runs).await {
        closed_after.push(outcome?);
    }
    closed_after.sort();
    context.note(format!(
        "{CONNECTIONS} CONNECTs trickled a byte every {} ms: closed {:.1} to {:.1} s after opening",
        BYTE_INTERVAL.as_millis(),
        closed_after.first().copied().unwrap_or_default().as_secs_f64(),
        closed_after.last().copied().unwrap_or_default().as_secs_f64()
    ));
    Ok(Finding::Pass)
}

/// Properties with `count` User Properties `k: v` (7 bytes each on the wire).
fn flood_properties(count: usize) -> Properties {
    Properties::from(PropertyFields {
        user_properties: vec![("k".to_owned(), "v".to_owned()); count],
        ..PropertyFields::default()
    })
}

async fn property_flood(context: Context) -> Result<Finding, Failure> {
    const PUBLISHES: u16 = 40;
    const SIZE_MAX: u32 = 64 * 1024;
    const REFUSALS: &[u8] = &[
        UNSPECIFIED_ERROR,
        SERVER_BUSY,
        PACKET_TOO_LARGE,
        QUOTA_EXCEEDED,
        CONNECTION_RATE_EXCEEDED,
    ];
    let size = context
        .capabilities
        .maximum_packet_size
        .map_or(SIZE_MAX, |maximum| maximum.min(SIZE_MAX));
    // Room for the fixed header, the topic, the id and the payload.
    let count = (size.saturating_sub(256) / 7) as usize;
    let wait = context.wait();

    // A CONNECT with the flood.
    let mut connect = context.connect_packet("flood-connect");
    connect.properties = flood_properties(count);
    let mut probe = context.open("flood-connect").await?;
    probe.send(&Packet::Connect(Box::new(connect))).await?;
    let connect_outcome = match probe.receive(wait).await {
        Ok(Packet::ConnAck(connack)) if connack.reason_code.0 < 0x80 => "accepted".to_owned(),
        Ok(Packet::ConnAck(connack)) if REFUSALS.contains(&connack.reason_code.0) => {
            format!("refused with 0x{:02X}", connack.reason_code.0)
        }
        Ok(other) => {
            return Err(Failure::expected(
                format!("a CONNECT with {count} User Properties was answered with a code not allowed"),
                format!("CONNACK 0x00, or a refusal with {}", codes(REFUSALS)),
                mqtt_client::probe::trace::summary(&other),
            ))
        }
        Err(ProbeError::Closed { .. }) => "closed".to_owned(),
        Err(error) => return Err(Failure::from(error)),
    };
    drop(probe);

    // A SUBSCRIBE and PUBLISH packets with the flood, from one client to itself.
    let mut probe = context.connected("flood").await?;
    let topic = context.topic("flood");
    let Packet::Subscribe(mut subscribe) = subscribe(1, vec![topic.clone()], QoS::AtLeastOnce) else {
        return Err(Failure::new("a SUBSCRIBE was expected"));
    };
    subscribe.properties = flood_properties(count);
    probe.send(&Packet::Subscribe(subscribe)).await?;
    let mut acknowledged = 0;
    let mut refused = Vec::new();
    let mut delivered = 0;
    let mut subscribed = false;
    for packet_id in 1..=PUBLISHES {
        let Packet::Publish(mut message) = publish(
            &topic,
            QoS::AtLeastOnce,
            Some(packet_id + 1),
            Bytes::from_static(b"flood"),
        ) else {
            return Err(Failure::new("a PUBLISH was expected"));
        };
        message.properties = flood_properties(count);
        if probe.send(&Packet::Publish(message)).await.is_err() {
            break;
        }
    }
    let deadline = Instant::now() + wait + wait;
    let mut closed = None;
    // Bounded by the deadline: each pass waits for one packet until then.
    while acknowledged + refused.len() < usize::from(PUBLISHES) || (!subscribed && closed.is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match probe.receive(left).await {
            Ok(Packet::SubAck(_)) => subscribed = true,
            Ok(Packet::PubAck(ack)) if ack.reason_code.0 < 0x80 => acknowledged += 1,
            Ok(Packet::PubAck(ack)) if REFUSALS.contains(&ack.reason_code.0) => refused.push(ack.reason_code.0),
            Ok(Packet::Publish(_)) => delivered += 1,
            Ok(Packet::Disconnect(received)) => {
                closed = Some(received.reason_code.0);
                if !REFUSALS.contains(&received.reason_code.0) {
                    return Err(Failure::expected(
                        "the broker closed the flood with a code not allowed",
                        format!("DISCONNECT with {}", codes(REFUSALS)),
                        format!("DISCONNECT 0x{:02X}", received.reason_code.0),
                    ));
                }
            }
            Ok(other) => {
                return Err(Failure::expected(
                    "an answer to a flooded packet not allowed",
                    format!("SUBACK, PUBACK 0x00 or a refusal with {}", codes(REFUSALS)),
                    mqtt_client::probe::trace::summary(&other),
                ))
            }
            Err(ProbeError::Closed { .. }) => break,
            Err(ProbeError::Timeout { .. }) => {
                return Err(Failure::expected(
                    format!(
                        "{} of {PUBLISHES} flooded PUBLISH packets answered within {} s",
                        acknowledged + refused.len(),
                        (wait + wait).as_secs()
                    ),
                    "every packet answered, or the connection closed",
                    "no answer",
                ))
            }
            Err(error) => return Err(Failure::from(error)),
        }
        if closed.is_some() && matches!(probe.receive(wait).await, Err(ProbeError::Closed { .. })) {
            break;
        }
    }
    let _ = probe.send(&disconnect()).await;
    context.note(format!(
        "{count} User Properties per packet ({size} bytes at most): CONNECT {connect_outcome}; SUBSCRIBE {}; \
         {acknowledged} of {PUBLISHES} PUBLISH acknowledged, {} refused{}, {delivered} delivered{}",
        if subscribed { "answered" } else { "not answered" },
        refused.len(),
        if refused.is_empty() {
            String::new()
        } else {
            format!(" ({})", codes(&refused[..1]))
        },
        closed.map_or(String::new(), |code| format!("; closed with DISCONNECT 0x{code:02X}"))
    ));
    Ok(Finding::Pass)
}

async fn subscribe_past_limit(context: Context) -> Result<Finding, Failure> {
    const PACKETS: u16 = 1000;
    const FILTERS: usize = 10;
    const BATCH: u16 = 50;
    let refusals: &[u8] = if context.v5() {
        &[UNSPECIFIED_ERROR, QUOTA_EXCEEDED]
    } else {
        &[UNSPECIFIED_ERROR]
    };
    let closes: &[u8] = &[SERVER_BUSY, QUOTA_EXCEEDED];
    let mut probe = context.connected("subscriber").await?;
    let mut granted = 0;
    let mut refused: Vec<u8> = Vec::new();
    let mut closed = None;
    'batches: for first in (1..=PACKETS).step_by(usize::from(BATCH)) {
        let last = (first + BATCH - 1).min(PACKETS);
        let mut batch = BytesMut::new();
        for packet_id in first..=last {
            let filters = (0..FILTERS)
                .map(|index| context.topic(&format!("many/{packet_id}/{index}")))
                .collect();
            batch.extend_from_slice(&encoded(
                &subscribe(packet_id, filters, QoS::AtMostOnce),
                context.version,
            )?);
        }
        if probe.send_raw(&batch).await.is_err() {
            closed = Some("closed while sending".to_owned());
            break;
        }
        for packet_id in first..=last {
            match probe.receive(context.wait()).await {
                Ok(Packet::SubAck(suback)) => {
                    if suback.packet_id != packet_id || suback.reason_codes.len() != FILTERS {
                        return Err(Failure::expected(
                            "a SUBACK that does not answer its SUBSCRIBE",
                            format!("SUBACK id {packet_id} with {FILTERS} codes"),
                            format!(
                                "SUBACK id {} with {} codes",
                                suback.packet_id,
                                suback.reason_codes.len()
                            ),
                        ));
                    }
                    for code in suback.reason_codes {
                        if code.0 <= 2 {
                            granted += 1;
                        } else if refusals.contains(&code.0) {
                            refused.push(code.0);
                        } else {
                            return Err(Failure::expected(
                                format!("SUBACK {packet_id} refused a filter with a code not allowed here"),
                                format!("a granted QoS or {}", codes(refusals)),
                                format!("0x{:02X}", code.0),
                            ));
                        }
                    }
                }
                Ok(Packet::Disconnect(received)) => {
                    let report = probe.expect_close(Duration::ZERO..=context.wait()).await?;
                    let mut report = report;
                    report.disconnect = Some(received);
                    closed = Some(closed_as_allowed(
                        &context,
                        &report,
                        closes,
                        "past the subscription limit",
                    )?);
                    break 'batches;
                }
                Ok(other) => {
                    return Err(Failure::expected(
                        "an answer to a SUBSCRIBE that is not a SUBACK",
                        "SUBACK",
                        mqtt_client::probe::trace::summary(&other),
                    ))
                }
                Err(ProbeError::Closed { .. }) => {
                    closed = Some("closed".to_owned());
                    break 'batches;
                }
                Err(error) => return Err(Failure::from(error)),
            }
        }
    }
    if closed.is_none() {
        let _ = probe.send(&disconnect()).await;
    }
    refused.sort();
    refused.dedup();
    context.note(format!(
        "{} filters in {PACKETS} SUBSCRIBE packets: {granted} granted, {} refused{}{}",
        usize::from(PACKETS) * FILTERS,
        usize::from(PACKETS) * FILTERS - granted,
        if refused.is_empty() {
            String::new()
        } else {
            format!(" ({})", codes(&refused))
        },
        closed.map_or(String::new(), |how| format!("; the connection {how}"))
    ));
    Ok(Finding::Pass)
}

async fn connection_flood(context: Context) -> Result<Finding, Failure> {
    const CONNECTIONS: usize = 400;
    const INTERVAL: Duration = Duration::from_micros(2500);
    let refusals: &[u8] = if context.v5() {
        &[SERVER_BUSY, QUOTA_EXCEEDED, CONNECTION_RATE_EXCEEDED]
    } else {
        &[SERVER_UNAVAILABLE_3_1_1]
    };
    mqtt_loadgen::system::ensure_file_descriptors(CONNECTIONS as u64).map_err(Failure::new)?;
    let started = Instant::now();
    let runs = (0..CONNECTIONS).map(|index| {
        let context = &context;
        async move {
            tokio::time::sleep_until(started + INTERVAL * index as u32).await;
            let name = format!("flood-{index:03}");
            let Ok(mut probe) = context.open(&name).await else {
                return Ok(("not accepted (TCP)".to_owned(), None));
            };
            probe
                .send(&Packet::Connect(Box::new(context.connect_packet(&name))))
                .await?;
            match probe.receive(context.wait()).await {
                Ok(Packet::ConnAck(connack)) if connack.reason_code == ReasonCode::SUCCESS => {
                    Ok(("accepted".to_owned(), Some(probe)))
                }
                Ok(Packet::ConnAck(connack)) if refusals.contains(&connack.reason_code.0) => {
                    Ok((format!("refused with 0x{:02X}", connack.reason_code.0), None))
                }
                Ok(other) => Err(Failure::expected(
                    format!("{name}: an answer to CONNECT not allowed in a flood"),
                    format!("CONNACK 0x00 or a refusal with {}", codes(refusals)),
                    mqtt_client::probe::trace::summary(&other),
                )),
                Err(ProbeError::Closed { .. }) => Ok(("closed".to_owned(), None)),
                Err(ProbeError::Timeout { .. }) => Err(Failure::expected(
                    format!("{name}: no answer to CONNECT within {} s", context.wait().as_secs()),
                    "CONNACK, a refusal or a close",
                    "nothing",
                )),
                Err(error) => Err(Failure::from(error)),
            }
        }
    });
    let outcomes: Vec<Result<(String, Option<Probe>), Failure>> = join_all(runs).await;
    let elapsed = started.elapsed();
    let mut held = Vec::new();
    let mut kinds = Vec::new();
    for outcome in outcomes {
        let (kind, probe) = outcome?;
        kinds.push(kind);
        held.extend(probe);
    }
    let closing = held.iter_mut().map(|probe| async move {
        let _ = probe.send(&disconnect()).await;
    });
    join_all(closing).await;
    context.note(format!(
        "{CONNECTIONS} connections in {:.1} s: {}",
        elapsed.as_secs_f64(),
        tally(kinds)
    ));
    Ok(Finding::Pass)
}

async fn qos2_ids_never_released(context: Context) -> Result<Finding, Failure> {
    const BATCH: u32 = 512;
    const REFUSALS: &[u8] = &[UNSPECIFIED_ERROR, QUOTA_EXCEEDED];
    const CLOSES: &[u8] = &[SERVER_BUSY, RECEIVE_MAXIMUM_EXCEEDED, QUOTA_EXCEEDED];
    let receive_maximum = if context.v5() {
        u32::from(context.capabilities.receive_maximum)
    } else {
        u32::from(u16::MAX)
    };
    let count = receive_maximum.clamp(1, u32::from(u16::MAX));
    let mut probe = context.connected("unreleased").await?;
    let topic = context.topic("unreleased");
    let mut accepted = 0u32;
    let mut refused = 0u32;
    let mut first = 1u32;
    let mut closed = None;
    // Bounded: each pass sends a batch of new ids, up to `count`.
    while first <= count && closed.is_none() {
        let last = (first + BATCH - 1).min(count);
        let mut batch = BytesMut::new();
        for packet_id in first..=last {
            batch.extend_from_slice(&encoded(
                &publish(
                    &topic,
                    QoS::ExactlyOnce,
                    Some(packet_id as u16),
                    Bytes::from_static(b"2"),
                ),
                context.version,
            )?);
        }
        if probe.send_raw(&batch).await.is_err() {
            break;
        }
        for packet_id in first..=last {
            match probe.receive(context.wait()).await {
                Ok(Packet::PubRec(ack)) if ack.packet_id == packet_id as u16 && ack.reason_code.0 < 0x80 => {
                    accepted += 1
                }
                Ok(Packet::PubRec(ack))
                    if ack.packet_id == packet_id as u16 && REFUSALS.contains(&ack.reason_code.0) =>
                {
                    refused += 1
                }
                // A broker may bound what it holds for a client by closing (with an allowed code).
                Ok(Packet::Disconnect(received)) => {
                    let mut report = probe.expect_close(Duration::ZERO..=context.wait()).await?;
                    report.disconnect = Some(received);
                    closed = Some(closed_as_allowed(&context, &report, CLOSES, "unreleased QoS 2 ids")?);
                    break;
                }
                Err(ProbeError::Closed { .. }) => {
                    closed = Some("closed".to_owned());
                    break;
                }
                Err(error) => return Err(Failure::from(error)),
                Ok(other) => {
                    return Err(Failure::expected(
                        format!("QoS 2 PUBLISH {packet_id} of {count} unreleased was not answered with its PUBREC"),
                        format!("PUBREC {packet_id} (0x00, or {})", codes(REFUSALS)),
                        mqtt_client::probe::trace::summary(&other),
                    ))
                }
            }
        }
        first = last + 1;
    }
    let mut past = String::new();
    if let Some(how) = &closed {
        past = format!("; the connection {how} after {} ids", accepted + refused);
    } else if context.v5() && count < u32::from(u16::MAX) && refused == 0 {
        // One more than the Receive Maximum allows: a protocol error, and the connection closes.
        let extra = (count + 1) as u16;
        probe
            .send(&publish(
                &topic,
                QoS::ExactlyOnce,
                Some(extra),
                Bytes::from_static(b"2"),
            ))
            .await?;
        let report = probe
            .expect_close(Duration::ZERO..=context.wait())
            .await
            .map_err(|error| {
                Failure::expected(
                    format!("QoS 2 PUBLISH {extra}, past the Receive Maximum of {count} unreleased: {error}"),
                    "the broker closes the connection (DISCONNECT 0x93 if any)",
                    "still open",
                )
            })?;
        past = format!(
            "; one more: {}",
            closed_as_allowed(
                &context,
                &report,
                &[RECEIVE_MAXIMUM_EXCEEDED],
                "past the Receive Maximum"
            )?
        );
    } else {
        let _ = probe.send(&disconnect()).await;
    }
    context.note(format!(
        "{count} QoS 2 ids never released: {accepted} PUBREC accepted, {refused} refused{past}"
    ));
    Ok(Finding::Pass)
}

async fn publish_storm_unread(context: Context) -> Result<Finding, Failure> {
    const STORM: Duration = Duration::from_secs(3);
    const BATCH_BYTES: usize = 64 * 1024;
    const CLOSES: &[u8] = &[SERVER_BUSY, RECEIVE_MAXIMUM_EXCEEDED, QUOTA_EXCEEDED];
    let topic = context.topic("storm");
    let mut sink = context.connected("sink").await?;
    sink.send(&subscribe(1, vec![topic.clone()], QoS::AtLeastOnce)).await?;
    sink.expect(&Pattern::suback(), context.wait()).await?;

    let options = ProbeOptions::client()
        .with_version(context.version)
        .with_send_timeout(Duration::from_secs(1));
    let mut storm = context.open_with("storm", options).await?;
    storm
        .send(&Packet::Connect(Box::new(context.connect_packet("storm"))))
        .await?;
    storm
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), context.wait())
        .await?;
    // One batch of messages, QoS 0 and QoS 1 in turn, sent again and again.
    let payload = Bytes::from(vec![b's'; 64]);
    let mut batch = BytesMut::new();
    let mut per_batch = 0u64;
    while batch.len() < BATCH_BYTES {
        let qos = if per_batch.is_multiple_of(2) {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let packet_id = (qos != QoS::AtMostOnce).then_some((per_batch % 60_000 + 1) as u16);
        batch.extend_from_slice(&encoded(
            &publish(&topic, qos, packet_id, payload.clone()),
            context.version,
        )?);
        per_batch += 1;
    }
    let batch = batch.freeze();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut stopped = "the storm ran its course".to_owned();
    // Bounded by the storm's duration (and each send by the probe's send timeout).
    while started.elapsed() < STORM {
        match storm.send_raw(&batch).await {
            Ok(()) => sent += per_batch,
            Err(ProbeError::SendTimeout { .. }) => {
                stopped = "the broker held the storm back (it stopped reading)".to_owned();
                // Held back is survival; wait out the storm's time without sending.
                sleep(STORM.saturating_sub(started.elapsed())).await;
                break;
            }
            Err(_) => {
                stopped = "the storm's connection ended".to_owned();
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    // Whatever the broker said to the storm: a DISCONNECT must carry an allowed code.
    let mut storm_end = String::new();
    if let Ok(report) = storm.expect_close(Duration::ZERO..=Duration::from_millis(100)).await {
        storm_end = format!(
            "; the storm's connection {}",
            closed_as_allowed(&context, &report, CLOSES, "the storm")?
        );
    }
    context.note(format!(
        "{sent} messages ({:.1} MB) in {:.1} s without reading: {stopped}{storm_end}",
        (sent * (batch.len() as u64 / per_batch)) as f64 / 1e6,
        elapsed.as_secs_f64()
    ));
    drop(storm);
    drop(sink);
    Ok(Finding::Pass)
}
