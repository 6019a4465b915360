//! Judging one expectation against a client's wire: a pure function of what the wire holds and
//! the time, so the driver can ask again whenever the wire changes or a deadline passes, and
//! `any_of` is just the same question asked of each alternative.
//!
//! Windows: an expectation with `window_ms: [min, max]` must be met in `[ref + min, ref + max +
//! tolerance]`, where `ref` is its `since`; before `ref + min - early_tolerance` it is early. The
//! tolerances are the world's: a tick per hop under `sim`, a documented constant live. The driver
//! keeps waiting `grace` past a deadline, so that news of what happened before it (a packet that
//! crossed to the driver's host) reaches it; the verdict still uses the instants recorded where
//! the packets were seen.

use std::collections::BTreeMap;
use std::time::Duration;

use mqtt_client::probe::Pattern;
use mqtt_protocol::topic::matches;
use mqtt_protocol::{Packet, PacketType};

use super::Names;
use crate::scenario::{Expect, ExpectKind, MessagesPlan, Since, Timing};
use crate::wire::{instant, ClosedBy, Way, WireState};

/// What the judging of one step needs besides the wire.
pub struct Context<'a> {
    /// Multiplies `within` (not windows); 1 when 0.
    pub timeout_scale: f64,
    /// The step's start.
    pub start: Duration,
    /// Packets before this index of the wire are not looked at (a step's action and its
    /// expectation look only at what followed the action).
    pub from_index: usize,
    /// The connection a `closed` expectation is about.
    pub connection: Option<usize>,
    pub marks: &'a BTreeMap<String, Duration>,
    /// When the client last sent a packet on `connection`, at the step's start.
    pub last_sent: Option<Duration>,
    pub tolerance: Duration,
    pub early_tolerance: Duration,
    pub grace: Duration,
    pub strict: bool,
    pub names: &'a Names,
}

/// Where an expectation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Ask again at `until` (or when the wire changes).
    Pending {
        until: Duration,
    },
    Met(Met),
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Met {
    /// Wire records the expectation takes, so that later expectations do not match them again.
    pub consumed: Vec<usize>,
    /// Informational findings, which make a passing run informational: an early arrival the
    /// spec allows, a SHOULD not met.
    pub notes: Vec<String>,
    /// Which of the behaviours the spec allows happened (an `any_of`): recorded, not a finding.
    pub behaviour: Vec<String>,
    /// The packet matched, for the acks a probe sends after it.
    pub matched: Option<(PacketType, Option<u16>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub expected: String,
    pub actual: String,
}

/// The bounds of an expectation: when it may be met, and when waiting ends.
struct Bounds {
    /// Before this an arrival is early (`None`: no lower bound).
    early_before: Option<Duration>,
    /// The window's lower bound as written, for messages.
    low: Option<Duration>,
    /// After this it is late.
    deadline: Duration,
}

fn bounds(timing: &Timing, cx: &Context<'_>) -> Result<Bounds, Failure> {
    let Some((min, max)) = timing.window else {
        return Ok(Bounds {
            early_before: None,
            low: None,
            deadline: cx.start + scaled(timing.within, cx.timeout_scale),
        });
    };
    let reference = match &timing.since {
        Since::Step => Some(cx.start),
        Since::LastSent => cx.last_sent,
        Since::Mark(name) => cx.marks.get(name).copied(),
    };
    let Some(reference) = reference else {
        return Err(Failure {
            message: format!("the window is measured since {}, which has not happened", timing.since),
            expected: String::new(),
            actual: String::new(),
        });
    };
    Ok(Bounds {
        early_before: Some((reference + min).saturating_sub(cx.early_tolerance)),
        low: Some(reference + min),
        deadline: reference + max + cx.tolerance,
    })
}

fn scaled(duration: Duration, scale: f64) -> Duration {
    if scale > 0.0 && scale.is_finite() {
        duration.mul_f64(scale)
    } else {
        duration
    }
}

fn window_text(timing: &Timing, cx: &Context<'_>) -> String {
    match timing.window {
        Some((min, max)) => format!(
            "within [{}, {}] ms of {} (+{} ms tolerance)",
            min.as_millis(),
            max.as_millis(),
            timing.since,
            cx.tolerance.as_millis()
        ),
        None => format!("within {} ms", timing.within.as_millis()),
    }
}

/// Judges `expect` on `state` at `now`.
pub fn check(expect: &Expect, state: &WireState, now: Duration, cx: &Context<'_>) -> Status {
    let status = check_kind(expect, state, now, cx);
    match status {
        Status::Failed(failure) if expect.timing.should && !cx.strict => Status::Met(Met {
            notes: vec![format!("SHOULD not met: {}", failure.message)],
            ..Met::default()
        }),
        other => other,
    }
}

fn check_kind(expect: &Expect, state: &WireState, now: Duration, cx: &Context<'_>) -> Status {
    let bounds = match bounds(&expect.timing, cx) {
        Ok(bounds) => bounds,
        Err(failure) => return Status::Failed(failure),
    };
    let give_up_at = bounds.deadline + cx.grace;
    match &expect.kind {
        ExpectKind::Packet(pattern) => {
            let pattern = cx.names.pattern(pattern);
            check_packet(&pattern, expect, &bounds, state, now, cx)
        }
        ExpectKind::Nothing { duration, of } => {
            let end = cx.start + *duration;
            // Anything on the current connection not taken by an expectation counts, also what
            // came just before the step: two packets of one burst arrive at one instant, and the
            // second is as unexpected as a later one.
            let offending = state.records.iter().skip(cx.from_index).find(|record| {
                record.way == Way::Received
                    && !record.consumed
                    && cx.connection.is_none_or(|connection| record.connection >= connection)
                    && record.at <= end
                    && record.packet.as_ref().is_some_and(|packet| match of {
                        Some(packet_type) => packet.packet_type() == *packet_type,
                        // Our client's keep-alive traffic is not news.
                        None => packet.packet_type() != PacketType::PingResp,
                    })
            });
            let what = of.map_or("packet".to_owned(), |packet_type| packet_type.name().to_owned());
            match offending {
                Some(record) => Status::Failed(Failure {
                    message: format!("a {what} arrived at {} while none was expected", instant(record.at)),
                    expected: format!("no {what} for {} ms from {}", duration.as_millis(), instant(cx.start)),
                    actual: record.summary.clone(),
                }),
                None if now >= end + cx.grace => Status::Met(Met::default()),
                None => Status::Pending { until: end + cx.grace },
            }
        }
        ExpectKind::Closed => {
            let expected = format!("the broker closes the connection {}", window_text(&expect.timing, cx));
            let Some(connection) = cx.connection.and_then(|index| state.connections.get(index)) else {
                return Status::Failed(Failure {
                    message: "the client has no connection to watch".to_owned(),
                    expected,
                    actual: "never connected".to_owned(),
                });
            };
            match &connection.closed {
                Some((at, ClosedBy::Broker, how)) => judge_instant(*at, &bounds, expect, cx, &expected, how),
                Some((at, ClosedBy::Client, how)) => Status::Failed(Failure {
                    message: format!("the client closed the connection first, at {}", instant(*at)),
                    expected,
                    actual: how.clone(),
                }),
                None if now >= give_up_at => Status::Failed(Failure {
                    message: format!("the connection is still open at {}", instant(bounds.deadline)),
                    expected,
                    actual: "open".to_owned(),
                }),
                None => Status::Pending { until: give_up_at },
            }
        }
        ExpectKind::Messages(plan) => check_messages(plan, &bounds, state, now, cx),
        ExpectKind::AnyOf(alternatives) => {
            let mut failures = Vec::new();
            let mut until: Option<Duration> = None;
            for (index, alternative) in alternatives.iter().enumerate() {
                match check(alternative, state, now, cx) {
                    Status::Met(mut met) => {
                        met.behaviour.push(format!(
                            "alternative {} of {}: {}",
                            index + 1,
                            alternatives.len(),
                            describe(alternative)
                        ));
                        return Status::Met(met);
                    }
                    Status::Failed(failure) => failures.push(failure),
                    Status::Pending { until: at } => until = Some(until.map_or(at, |known| known.min(at))),
                }
            }
            match until {
                Some(until) => Status::Pending { until },
                None => Status::Failed(Failure {
                    message: format!(
                        "none of the {} allowed behaviours happened: {}",
                        alternatives.len(),
                        failures
                            .iter()
                            .map(|failure| failure.message.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    expected: alternatives.iter().map(describe).collect::<Vec<_>>().join(" | "),
                    actual: failures
                        .iter()
                        .map(|failure| failure.actual.as_str())
                        .filter(|actual| !actual.is_empty())
                        .collect::<Vec<_>>()
                        .join(" | "),
                }),
            }
        }
    }
}

fn check_packet(
    pattern: &Pattern,
    expect: &Expect,
    bounds: &Bounds,
    state: &WireState,
    now: Duration,
    cx: &Context<'_>,
) -> Status {
    let expected = format!("{pattern} {}", window_text(&expect.timing, cx));
    let found = state
        .records
        .iter()
        .enumerate()
        .skip(cx.from_index)
        .find(|(_, record)| {
            record.way == Way::Received
                && !record.consumed
                && record
                    .packet
                    .as_ref()
                    .is_some_and(|packet| pattern.matches(packet).is_ok())
        });
    if let Some((index, record)) = found {
        let status = judge_instant(record.at, bounds, expect, cx, &expected, &record.summary);
        return match status {
            Status::Met(mut met) => {
                met.consumed.push(index);
                met.matched = record
                    .packet
                    .as_ref()
                    .map(|packet| (packet.packet_type(), packet_id(packet)));
                Status::Met(met)
            }
            other => other,
        };
    }
    if now < bounds.deadline + cx.grace {
        return Status::Pending {
            until: bounds.deadline + cx.grace,
        };
    }
    // What came instead: the same packet type first, with how each differs.
    let mut actual = Vec::new();
    for record in state.records.iter().skip(cx.from_index) {
        if record.way != Way::Received || record.consumed {
            continue;
        }
        let Some(packet) = &record.packet else {
            actual.push(format!("{} {}", instant(record.at), record.summary));
            continue;
        };
        if pattern.packet_type.is_none_or(|wanted| wanted == packet.packet_type()) {
            let differences = pattern
                .matches(packet)
                .err()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            actual.push(format!("{} {} ({differences})", instant(record.at), record.summary));
        }
    }
    let closed = cx
        .connection
        .and_then(|index| state.connections.get(index))
        .and_then(|connection| connection.closed.as_ref())
        .map(|(at, by, how)| {
            let who = if *by == ClosedBy::Broker {
                "the broker"
            } else {
                "the client"
            };
            format!("; the connection was closed by {who} at {} ({how})", instant(*at))
        })
        .unwrap_or_default();
    let what = pattern.packet_type.map_or("packet", |packet_type| packet_type.name());
    Status::Failed(Failure {
        message: format!("no matching {what} by {}{closed}", instant(bounds.deadline)),
        expected,
        actual: if actual.is_empty() {
            format!("no {what} arrived")
        } else {
            actual.join("\n")
        },
    })
}

/// Judges the instant something happened against the bounds.
fn judge_instant(
    at: Duration,
    bounds: &Bounds,
    expect: &Expect,
    cx: &Context<'_>,
    expected: &str,
    what: &str,
) -> Status {
    if at > bounds.deadline {
        return Status::Failed(Failure {
            message: format!(
                "late: at {}, {} ms after the deadline {}",
                instant(at),
                (at - bounds.deadline).as_millis(),
                instant(bounds.deadline)
            ),
            expected: expected.to_owned(),
            actual: format!("{} {what}", instant(at)),
        });
    }
    if let (Some(early_before), Some(low)) = (bounds.early_before, bounds.low) {
        if at < early_before {
            let message = format!(
                "early: at {}, {} ms before the window opens at {}",
                instant(at),
                (low - at).as_millis(),
                instant(low)
            );
            if expect.timing.early_informational && !cx.strict {
                return Status::Met(Met {
                    notes: vec![format!("{message} (allowed: informational)")],
                    ..Met::default()
                });
            }
            return Status::Failed(Failure {
                message,
                expected: expected.to_owned(),
                actual: format!("{} {what}", instant(at)),
            });
        }
    }
    Status::Met(Met::default())
}

fn check_messages(plan: &MessagesPlan, bounds: &Bounds, state: &WireState, now: Duration, cx: &Context<'_>) -> Status {
    let filter = plan.topic.as_ref().map(|topic| cx.names.topic(topic));
    let received: Vec<(Duration, &[u8], bool)> = state
        .records
        .iter()
        .filter(|record| record.way == Way::Received)
        .filter_map(|record| match &record.packet {
            Some(Packet::Publish(publish)) if filter.as_ref().is_none_or(|filter| matches(filter, &publish.topic)) => {
                Some((record.at, publish.payload.as_ref(), publish.dup))
            }
            _ => None,
        })
        .collect();
    let payloads: Vec<&[u8]> = received.iter().map(|(_, payload, _)| *payload).collect();
    let mut firsts: Vec<&[u8]> = Vec::new();
    for payload in &payloads {
        if !firsts.contains(payload) {
            firsts.push(payload);
        }
    }
    let text = |list: &[&[u8]]| {
        list.iter()
            .map(|payload| String::from_utf8_lossy(payload).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut expected_parts = Vec::new();
    // Each condition: met now, not yet (may still be), or broken for good.
    let mut all_met = true;
    let mut broken: Option<String> = None;
    let sequence =
        |wanted: &Vec<bytes::Bytes>, got: &[&[u8]], name: &str, all_met: &mut bool, broken: &mut Option<String>| {
            let wanted: Vec<&[u8]> = wanted.iter().map(|payload| payload.as_ref()).collect();
            if got.len() > wanted.len() || got.iter().zip(&wanted).any(|(a, b)| a != b) {
                *broken = Some(format!("{name} [{}], expected [{}]", text(got), text(&wanted)));
            } else if got.len() < wanted.len() {
                *all_met = false;
            }
        };
    if let Some(wanted) = &plan.payloads {
        expected_parts.push(format!(
            "payloads [{}]",
            text(&wanted.iter().map(|p| p.as_ref()).collect::<Vec<_>>())
        ));
        sequence(wanted, &payloads, "payloads", &mut all_met, &mut broken);
    }
    if let Some(wanted) = &plan.first_arrivals {
        expected_parts.push(format!(
            "first arrivals [{}]",
            text(&wanted.iter().map(|p| p.as_ref()).collect::<Vec<_>>())
        ));
        sequence(wanted, &firsts, "first arrivals", &mut all_met, &mut broken);
    }
    if let Some(at_least) = plan.at_least {
        expected_parts.push(format!("at least {at_least} messages"));
        if payloads.len() < at_least {
            all_met = false;
        }
    }
    let at_deadline = now >= bounds.deadline + cx.grace;
    if let Some(count) = plan.count {
        expected_parts.push(format!("exactly {count} messages"));
        if payloads.len() > count {
            broken = Some(format!("{} messages, more than {count}", payloads.len()));
        } else if payloads.len() < count || !at_deadline {
            // An exact count is judged when the wait ends: more could still come.
            all_met = false;
        }
    }
    let on_topic = filter.map_or(String::new(), |filter| format!(" on {filter}"));
    let expected = format!(
        "{}{on_topic} by {}",
        expected_parts.join(", "),
        instant(bounds.deadline)
    );
    let actual = format!(
        "{} messages: [{}]{}",
        payloads.len(),
        text(&payloads),
        if received.iter().any(|(_, _, dup)| *dup) {
            " (some with DUP)"
        } else {
            ""
        }
    );
    if let Some(reason) = broken {
        return Status::Failed(Failure {
            message: format!("received {reason}"),
            expected,
            actual,
        });
    }
    if all_met {
        return Status::Met(Met::default());
    }
    if at_deadline {
        return Status::Failed(Failure {
            message: format!("not all messages arrived by {}", instant(bounds.deadline)),
            expected,
            actual,
        });
    }
    Status::Pending {
        until: bounds.deadline + cx.grace,
    }
}

fn packet_id(packet: &Packet) -> Option<u16> {
    match packet {
        Packet::Publish(publish) => publish.packet_id,
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => Some(ack.packet_id),
        Packet::SubAck(suback) => Some(suback.packet_id),
        Packet::UnsubAck(unsuback) => Some(unsuback.packet_id),
        _ => None,
    }
}

/// One line for an expectation, for evidence.
pub fn describe(expect: &Expect) -> String {
    match &expect.kind {
        ExpectKind::Packet(pattern) => pattern.to_string(),
        ExpectKind::Nothing { duration, of } => format!(
            "no {} for {} ms",
            of.map_or("packet", |packet_type| packet_type.name()),
            duration.as_millis()
        ),
        ExpectKind::Closed => "closed by the broker".to_owned(),
        ExpectKind::Messages(_) => "messages".to_owned(),
        ExpectKind::AnyOf(alternatives) => alternatives.iter().map(describe).collect::<Vec<_>>().join(" | "),
    }
}
