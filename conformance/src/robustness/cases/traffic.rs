//! The cases about what a connected client can send: packets full of User Properties,
//! subscriptions past the limit, QoS 2 ids never released, and a storm whose acknowledgements are
//! never read.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_client::probe::{Pattern, ProbeError, ProbeOptions};
use mqtt_protocol::{Packet, Properties, PropertyFields, QoS, ReasonCode};
use tokio::time::{sleep, Instant};

use super::{
    closed_as_allowed, codes, disconnect, encoded, publish, subscribe, CONNECTION_RATE_EXCEEDED, PACKET_TOO_LARGE,
    QUOTA_EXCEEDED, RECEIVE_MAXIMUM_EXCEEDED, SERVER_BUSY, UNSPECIFIED_ERROR,
};
use crate::context::{Context, Failure, Finding};

/// Properties with `count` User Properties `k: v` (7 bytes each on the wire).
fn flood_properties(count: usize) -> Properties {
    Properties::from(PropertyFields {
        user_properties: vec![("k".to_owned(), "v".to_owned()); count],
        ..PropertyFields::default()
    })
}

pub(super) async fn property_flood(context: Context) -> Result<Finding, Failure> {
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
    let mut flooded = subscribe(1, vec![topic.clone()], QoS::AtLeastOnce);
    flooded.properties = flood_properties(count);
    probe.send(&Packet::Subscribe(flooded)).await?;
    let mut acknowledged = 0;
    let mut refused = Vec::new();
    let mut delivered = 0;
    let mut subscribed = false;
    for packet_id in 1..=PUBLISHES {
        let mut message = publish(
            &topic,
            QoS::AtLeastOnce,
            Some(packet_id + 1),
            Bytes::from_static(b"flood"),
        );
        message.properties = flood_properties(count);
        if probe.send(&Packet::Publish(message)).await.is_err() {
            break;
        }
    }
    let deadline = Instant::now() + wait + wait;
    let mut closed = None;
    // Bounded by the deadline: each pass waits for one packet until then.
    let mut answered = 0;
    while answered < usize::from(PUBLISHES) || !subscribed {
        let left = deadline.saturating_duration_since(Instant::now());
        match probe.receive(left).await {
            Ok(Packet::SubAck(_)) => subscribed = true,
            Ok(Packet::PubAck(ack)) if ack.reason_code.0 < 0x80 => {
                acknowledged += 1;
                answered += 1;
            }
            Ok(Packet::PubAck(ack)) if REFUSALS.contains(&ack.reason_code.0) => {
                refused.push(ack.reason_code.0);
                answered += 1;
            }
            Ok(Packet::Publish(_)) => delivered += 1,
            Ok(Packet::Disconnect(received)) => {
                if !REFUSALS.contains(&received.reason_code.0) {
                    return Err(Failure::expected(
                        "the broker closed the flood with a code not allowed",
                        format!("DISCONNECT with {}", codes(REFUSALS)),
                        format!("DISCONNECT 0x{:02X}", received.reason_code.0),
                    ));
                }
                // The close follows a DISCONNECT: nothing more to wait for.
                closed = Some(format!("closed with DISCONNECT 0x{:02X}", received.reason_code.0));
                break;
            }
            Ok(other) => {
                return Err(Failure::expected(
                    "an answer to a flooded packet not allowed",
                    format!("SUBACK, PUBACK 0x00 or a refusal with {}", codes(REFUSALS)),
                    mqtt_client::probe::trace::summary(&other),
                ))
            }
            Err(ProbeError::Closed { .. }) => {
                closed = Some("closed".to_owned());
                break;
            }
            Err(ProbeError::Timeout { .. }) => {
                return Err(Failure::expected(
                    format!(
                        "{answered} of {PUBLISHES} flooded PUBLISH packets answered within {} s",
                        (wait + wait).as_secs()
                    ),
                    "every packet answered, or the connection closed",
                    "no answer",
                ))
            }
            Err(error) => return Err(Failure::from(error)),
        }
    }
    if closed.is_none() {
        let _ = probe.send(&disconnect()).await;
    }
    refused.sort();
    refused.dedup();
    context.note(format!(
        "{count} User Properties per packet ({size} bytes at most): CONNECT {connect_outcome}; SUBSCRIBE {}; \
         {acknowledged} of {PUBLISHES} PUBLISH acknowledged, {} refused{}, {delivered} delivered{}",
        if subscribed { "answered" } else { "not answered" },
        answered - acknowledged,
        if refused.is_empty() {
            String::new()
        } else {
            format!(" ({})", codes(&refused))
        },
        closed.map_or(String::new(), |how| format!("; the connection {how}"))
    ));
    Ok(Finding::Pass)
}

pub(super) async fn subscribe_past_limit(context: Context) -> Result<Finding, Failure> {
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
                &Packet::Subscribe(subscribe(packet_id, filters, QoS::AtMostOnce)),
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

pub(super) async fn qos2_ids_never_released(context: Context) -> Result<Finding, Failure> {
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
                &Packet::Publish(publish(
                    &topic,
                    QoS::ExactlyOnce,
                    Some(packet_id as u16),
                    Bytes::from_static(b"2"),
                )),
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
            .send(&Packet::Publish(publish(
                &topic,
                QoS::ExactlyOnce,
                Some(extra),
                Bytes::from_static(b"2"),
            )))
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

pub(super) async fn publish_storm_unread(context: Context) -> Result<Finding, Failure> {
    const STORM: Duration = Duration::from_secs(3);
    const BATCH_BYTES: usize = 64 * 1024;
    const CLOSES: &[u8] = &[SERVER_BUSY, RECEIVE_MAXIMUM_EXCEEDED, QUOTA_EXCEEDED];
    let topic = context.topic("storm");
    let mut sink = context.connected("sink").await?;
    sink.send(&Packet::Subscribe(subscribe(1, vec![topic.clone()], QoS::AtLeastOnce)))
        .await?;
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
            &Packet::Publish(publish(&topic, qos, packet_id, payload.clone())),
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
