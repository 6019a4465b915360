//! Differential decoding: mqtt-protocol's decoder against rumqttc's (v4 for 3.1.1, v5 for 5.0) on
//! the same bytes. Where they disagree (one accepts what the other refuses, or both accept and
//! read different packets), the disagreements are grouped by kind and printed with an example
//! each, for a person to decide who is right; the verdicts are recorded in `DIFFERENTIAL.md`.
//!
//! Inputs, in the `decode` fuzz target's format (a selector byte, then the bytes; see
//! `fuzz/fuzz_targets/decode.rs`): every file under the directories given (by default the golden
//! seeds `../../fuzz/seeds/decode` and, when present, the fuzzing corpus `../../fuzz/corpus/decode`),
//! and every single-byte change of each golden seed (each position, each of 256 values), so the
//! run is deterministic and covers every field of every packet type.
//!
//! Only the first packet of each input is compared, with no size limit on either side. Ours reads
//! in the direction the packet type travels (client to server for the types that go both ways),
//! as a server or client of the version the selector names; rumqttc has no notion of direction.
//!
//! Run: `cargo run --release --bin differential [DIR...]` from `protocol/compare`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use mqtt_protocol::{decode, DecodeContext, DecodeError, Direction, Packet, PacketType, ProtocolVersion};

/// Which of rumqttc's codecs reads an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Codec {
    V4,
    V5,
}

/// What a decoder made of the first packet of an input, reduced to what both can say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// A packet: its type, and a summary of the fields both decoders expose.
    Packet { kind: &'static str, summary: String },
    /// Not a whole packet yet.
    Incomplete,
    /// Refused, and why.
    Refused(String),
    /// The decoder panicked.
    Panicked,
}

fn main() {
    let mut directories: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if directories.is_empty() {
        directories.push(PathBuf::from("../../fuzz/seeds/decode"));
        let corpus = PathBuf::from("../../fuzz/corpus/decode");
        if corpus.is_dir() {
            directories.push(corpus);
        }
    }
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    let mut seeds = 0;
    for directory in &directories {
        let files = read_dir_sorted(directory);
        if directory.ends_with("seeds/decode") {
            seeds += files.len();
            for input in &files {
                inputs.extend(single_byte_changes(input));
            }
        }
        inputs.extend(files);
    }
    let mut classes: BTreeMap<String, (usize, Vec<u8>, String)> = BTreeMap::new();
    let mut agreed = 0usize;
    let mut compared = 0usize;
    for input in &inputs {
        let Some((&selector, bytes)) = input.split_first() else {
            continue;
        };
        let Some(version) = version_of(selector, bytes) else {
            continue;
        };
        compared += 1;
        let codec = if version == ProtocolVersion::V5 {
            Codec::V5
        } else {
            Codec::V4
        };
        let ours = ours(bytes, selector, version);
        let theirs = theirs(bytes, codec);
        let class = match (&ours, &theirs) {
            (Reading::Packet { summary: a, .. }, Reading::Packet { summary: b, .. }) if a == b => None,
            (Reading::Incomplete, Reading::Incomplete) | (Reading::Refused(_), Reading::Refused(_)) => None,
            (Reading::Packet { kind, .. }, Reading::Packet { .. }) => {
                Some(format!("{codec:?} {kind}: both accept, read differently"))
            }
            (Reading::Refused(why), Reading::Packet { kind, .. }) => {
                Some(format!("{codec:?} {kind}: ours refuses ({why}), rumqttc accepts"))
            }
            (Reading::Packet { kind, .. }, Reading::Refused(why)) => {
                Some(format!("{codec:?} {kind}: ours accepts, rumqttc refuses ({why})"))
            }
            (_, Reading::Panicked) => Some(format!("{codec:?}: rumqttc panics")),
            (Reading::Panicked, _) => Some(format!("{codec:?}: ours panics")),
            (a, b) => Some(format!(
                "{codec:?} {}: ours {}, rumqttc {}",
                type_name(bytes.first().copied().unwrap_or(0)),
                detail(a),
                detail(b)
            )),
        };
        match class {
            None => agreed += 1,
            Some(class) => {
                let entry = classes
                    .entry(class)
                    .or_insert_with(|| (0, input.clone(), format!("ours: {ours:?}\n    rumqttc: {theirs:?}")));
                entry.0 += 1;
            }
        }
    }
    println!(
        "{compared} inputs ({seeds} golden seeds, their single-byte changes, the corpus files): {agreed} agree, {} disagree in {} kinds",
        compared - agreed,
        classes.len()
    );
    for (class, (count, example, readings)) in &classes {
        println!("\n{count:>7}  {class}");
        println!("    example: {}", hex(example));
        println!("    {readings}");
    }
}

fn detail(reading: &Reading) -> String {
    match reading {
        Reading::Packet { .. } => "accepts".to_owned(),
        Reading::Incomplete => "needs more bytes".to_owned(),
        Reading::Refused(why) => format!("refuses ({why})"),
        Reading::Panicked => "panics".to_owned(),
    }
}

/// The packet type a first byte names, as both decoders' tables do.
fn type_name(first_byte: u8) -> &'static str {
    PacketType::from_nibble(first_byte >> 4).map_or("reserved type", PacketType::name)
}

fn read_dir_sorted(directory: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        eprintln!("cannot read {}", directory.display());
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    paths.sort();
    paths.iter().filter_map(|path| std::fs::read(path).ok()).collect()
}

/// Every input that differs from `input` in one byte after the selector.
fn single_byte_changes(input: &[u8]) -> Vec<Vec<u8>> {
    let mut changed = Vec::new();
    for position in 1..input.len() {
        for value in 0..=255u8 {
            if input[position] != value {
                let mut copy = input.to_vec();
                copy[position] = value;
                changed.push(copy);
            }
        }
    }
    changed
}

/// The version an input is read in: the selector's, or (selector 0, before any version is known)
/// the CONNECT's protocol level. `None`: 3.1 (rumqttc does not read it), or no version and not a
/// CONNECT (ours refuses anything else before a CONNECT, rumqttc has no such state).
fn version_of(selector: u8, bytes: &[u8]) -> Option<ProtocolVersion> {
    match selector & 0x03 {
        1 => None,
        2 => Some(ProtocolVersion::V3_1_1),
        3 => Some(ProtocolVersion::V5),
        _ if bytes.first().map(|byte| byte >> 4) != Some(1) => None,
        _ => {
            // Fixed header, remaining length (1 to 4 bytes), protocol name (2 + 4), level.
            let length_bytes = bytes.iter().skip(1).take(4).position(|byte| byte & 0x80 == 0)? + 1;
            match bytes.get(1 + length_bytes + 6) {
                Some(5) => Some(ProtocolVersion::V5),
                Some(4) => Some(ProtocolVersion::V3_1_1),
                _ => None,
            }
        }
    }
}

/// The direction a packet type travels (client to server for those that go both ways).
fn direction_of(first_byte: u8) -> Direction {
    match first_byte >> 4 {
        2 | 9 | 11 | 13 => Direction::ServerToClient,
        _ => Direction::ClientToServer,
    }
}

fn ours(bytes: &[u8], selector: u8, version: ProtocolVersion) -> Reading {
    let context = DecodeContext {
        version: (selector & 0x03 != 0).then_some(version),
        direction: direction_of(bytes.first().copied().unwrap_or(0)),
        maximum_packet_size: DecodeContext::MAXIMUM_PACKET_SIZE_MAX,
    };
    let mut buffer = BytesMut::from(bytes);
    match catch_unwind(AssertUnwindSafe(|| decode(&mut buffer, &context))) {
        Ok(Ok(Some(packet))) => summarize_ours(&packet),
        Ok(Ok(None)) => Reading::Incomplete,
        Ok(Err(error)) => Reading::Refused(our_reason(&error)),
        Err(_) => Reading::Panicked,
    }
}

fn our_reason(error: &DecodeError) -> String {
    let kind = format!("{:?}", error.kind);
    // The variant's name, without the fields that differ from input to input.
    let name = kind.split([' ', '(', '{']).next().unwrap_or_default();
    format!("{name}, {}", error.rule)
}

fn theirs(bytes: &[u8], codec: Codec) -> Reading {
    let mut buffer = BytesMut::from(bytes);
    let result = catch_unwind(AssertUnwindSafe(|| match codec {
        Codec::V4 => match rumqttc::mqttbytes::v4::Packet::read(&mut buffer, usize::MAX) {
            Ok(packet) => summarize_v4(&packet),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Reading::Incomplete,
            Err(error) => Reading::Refused(variant(&format!("{error:?}"))),
        },
        Codec::V5 => match rumqttc::v5::mqttbytes::v5::Packet::read(&mut buffer, None) {
            Ok(packet) => summarize_v5(&packet),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Reading::Incomplete,
            Err(error) => Reading::Refused(variant(&format!("{error:?}"))),
        },
    }));
    result.unwrap_or(Reading::Panicked)
}

fn variant(debug: &str) -> String {
    debug.split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
}

/// The fields both decoders expose: type, packet id, QoS, topic bytes, payload length, client id.
fn summarize_ours(packet: &Packet) -> Reading {
    let kind = packet.packet_type().name();
    let summary = match packet {
        Packet::Publish(publish) => format!(
            "qos={} retain={} dup={} id={:?} topic={:?} payload={}",
            publish.qos as u8,
            publish.retain,
            publish.dup,
            publish.packet_id,
            String::from_utf8_lossy(publish.topic.as_bytes()),
            publish.payload.len()
        ),
        Packet::Connect(connect) => format!(
            "client_id={:?} keep_alive={} clean={}",
            connect.client_id, connect.keep_alive_s, connect.clean_start
        ),
        Packet::Subscribe(subscribe) => format!(
            "id={} filters={:?}",
            subscribe.packet_id,
            subscribe
                .subscriptions
                .iter()
                .map(|s| s.filter.as_str())
                .collect::<Vec<_>>()
        ),
        Packet::Unsubscribe(unsubscribe) => format!("id={} filters={:?}", unsubscribe.packet_id, unsubscribe.filters),
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            format!("id={}", ack.packet_id)
        }
        Packet::SubAck(ack) => format!("id={} codes={}", ack.packet_id, ack.reason_codes.len()),
        Packet::UnsubAck(ack) => format!("id={}", ack.packet_id),
        _ => String::new(),
    };
    Reading::Packet { kind, summary }
}

fn publish_summary(qos: u8, retain: bool, dup: bool, pkid: u16, topic: &[u8], payload: usize) -> String {
    format!(
        "qos={qos} retain={retain} dup={dup} id={:?} topic={:?} payload={payload}",
        (qos > 0).then_some(pkid),
        String::from_utf8_lossy(topic)
    )
}

fn summarize_v4(packet: &rumqttc::mqttbytes::v4::Packet) -> Reading {
    use rumqttc::mqttbytes::v4::Packet as P;
    let (kind, summary) = match packet {
        P::Publish(p) => (
            "PUBLISH",
            publish_summary(
                p.qos as u8,
                p.retain,
                p.dup,
                p.pkid,
                p.topic.as_bytes(),
                p.payload.len(),
            ),
        ),
        P::Connect(c) => (
            "CONNECT",
            format!(
                "client_id={:?} keep_alive={} clean={}",
                c.client_id, c.keep_alive, c.clean_session
            ),
        ),
        P::Subscribe(s) => (
            "SUBSCRIBE",
            format!(
                "id={} filters={:?}",
                s.pkid,
                s.filters.iter().map(|f| f.path.as_str()).collect::<Vec<_>>()
            ),
        ),
        P::Unsubscribe(u) => ("UNSUBSCRIBE", format!("id={} filters={:?}", u.pkid, u.topics)),
        P::PubAck(a) => ("PUBACK", format!("id={}", a.pkid)),
        P::PubRec(a) => ("PUBREC", format!("id={}", a.pkid)),
        P::PubRel(a) => ("PUBREL", format!("id={}", a.pkid)),
        P::PubComp(a) => ("PUBCOMP", format!("id={}", a.pkid)),
        P::SubAck(a) => ("SUBACK", format!("id={} codes={}", a.pkid, a.return_codes.len())),
        P::UnsubAck(a) => ("UNSUBACK", format!("id={}", a.pkid)),
        P::ConnAck(_) => ("CONNACK", String::new()),
        P::PingReq => ("PINGREQ", String::new()),
        P::PingResp => ("PINGRESP", String::new()),
        P::Disconnect => ("DISCONNECT", String::new()),
    };
    Reading::Packet { kind, summary }
}

fn summarize_v5(packet: &rumqttc::v5::mqttbytes::v5::Packet) -> Reading {
    use rumqttc::v5::mqttbytes::v5::Packet as P;
    let (kind, summary) = match packet {
        P::Publish(p) => (
            "PUBLISH",
            publish_summary(p.qos as u8, p.retain, p.dup, p.pkid, &p.topic, p.payload.len()),
        ),
        P::Connect(c, _, _) => (
            "CONNECT",
            format!(
                "client_id={:?} keep_alive={} clean={}",
                c.client_id, c.keep_alive, c.clean_start
            ),
        ),
        P::Subscribe(s) => (
            "SUBSCRIBE",
            format!(
                "id={} filters={:?}",
                s.pkid,
                s.filters.iter().map(|f| f.path.as_str()).collect::<Vec<_>>()
            ),
        ),
        P::Unsubscribe(u) => ("UNSUBSCRIBE", format!("id={} filters={:?}", u.pkid, u.filters)),
        P::PubAck(a) => ("PUBACK", format!("id={}", a.pkid)),
        P::PubRec(a) => ("PUBREC", format!("id={}", a.pkid)),
        P::PubRel(a) => ("PUBREL", format!("id={}", a.pkid)),
        P::PubComp(a) => ("PUBCOMP", format!("id={}", a.pkid)),
        P::SubAck(a) => ("SUBACK", format!("id={} codes={}", a.pkid, a.return_codes.len())),
        P::UnsubAck(a) => ("UNSUBACK", format!("id={}", a.pkid)),
        P::ConnAck(_) => ("CONNACK", String::new()),
        P::PingReq(_) => ("PINGREQ", String::new()),
        P::PingResp(_) => ("PINGRESP", String::new()),
        P::Disconnect(_) => ("DISCONNECT", String::new()),
        P::Auth(_) => ("AUTH", String::new()),
    };
    Reading::Packet { kind, summary }
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(64).map(|byte| format!("{byte:02X}")).collect();
    let more = if bytes.len() > 64 {
        format!(" ... ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(" "))
}
