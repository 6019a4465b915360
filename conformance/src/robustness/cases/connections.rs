//! The cases about what a connection can hold: packets cut short, a packet stalled with keep
//! alive 0, a CONNECT trickled byte by byte, and a flood of connections.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::join_all;
use mqtt_client::probe::{Pattern, Probe, ProbeError};
use mqtt_protocol::wire::put_variable_byte_integer;
use mqtt_protocol::{Packet, QoS, ReasonCode};
use tokio::time::Instant;

use super::{
    closed_as_allowed, codes, disconnect, encoded, publish, subscribe, tally, CONNECTION_RATE_EXCEEDED, HELD_BOUND,
    MALFORMED_PACKET, PROTOCOL_ERROR, QUOTA_EXCEEDED, SERVER_BUSY, SERVER_UNAVAILABLE_3_1_1,
};
use crate::context::{Context, Failure, Finding};

pub(super) async fn truncated_packets(context: Context) -> Result<Finding, Failure> {
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
            Packet::Subscribe(subscribe(1, vec![topic.clone()], QoS::AtLeastOnce)),
            Packet::Publish(publish(
                &topic,
                QoS::AtLeastOnce,
                Some(2),
                Bytes::from_static(b"truncated"),
            )),
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

pub(super) async fn stalled_packet(context: Context) -> Result<Finding, Failure> {
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

pub(super) async fn slow_loris_connect(context: Context) -> Result<Finding, Failure> {
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

pub(super) async fn connection_flood(context: Context) -> Result<Finding, Failure> {
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
