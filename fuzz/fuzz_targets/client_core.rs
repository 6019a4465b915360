//! The client's sans-IO core fed arbitrary server packets (typed, or raw bytes through the strict
//! client-side decoder), application requests, connection losses and time steps. After every
//! step: `check_invariants()` holds (no two in-flight messages with one packet id, queues within
//! their bounds, aliases within the server's maximum); and every packet the client sends
//! encodes, decodes back to itself under our strict server-side decoder, and fits the Maximum
//! Packet Size the server announced.

#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mqtt_client::core::{ClientCore, Message};
use mqtt_client::ConnectOptions;
use mqtt_protocol::{
    decode, encode, DecodeContext, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscription,
    SubscriptionOptions,
};
use tokio::time::Instant;

const STEPS_MAX: usize = 64;

#[derive(Debug, Arbitrary)]
enum Step {
    Connect,
    /// A typed packet from the server: encoded, then strictly decoded as the client reads it.
    ServerPacket(Packet),
    ServerBytes(Vec<u8>),
    Publish {
        topic: u8,
        qos: u8,
        payload: Vec<u8>,
        retain: bool,
    },
    Subscribe {
        topic: u8,
        qos: u8,
    },
    Unsubscribe {
        topic: u8,
    },
    Disconnect,
    Lost,
    Advance {
        ms: u16,
    },
}

fn options(u: &mut Unstructured<'_>) -> arbitrary::Result<ConnectOptions> {
    let mut options = ConnectOptions::new("fuzz");
    options.version = if u.arbitrary()? {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    options.clean_start = u.arbitrary()?;
    options.keep_alive_s = u.int_in_range(0..=30)?;
    options.session_expiry_interval_s = if u.arbitrary()? {
        Some(u.int_in_range(0..=60)?)
    } else {
        None
    };
    options.receive_maximum = if u.arbitrary()? {
        Some(u.int_in_range(1..=4)?)
    } else {
        None
    };
    options.maximum_packet_size = if u.arbitrary()? {
        Some(u.int_in_range(32..=4096)?)
    } else {
        None
    };
    options.topic_alias_maximum = if u.arbitrary()? {
        Some(u.int_in_range(0..=4)?)
    } else {
        None
    };
    options.outgoing_topic_aliases = u.arbitrary()?;
    options.inflight_count_max = u.int_in_range(1..=4)?;
    options.pending_count_max = u.int_in_range(1..=8)?;
    Ok(options)
}

fn qos(value: u8) -> QoS {
    QoS::from_u8(value % 3).unwrap_or(QoS::AtMostOnce)
}

fuzz_target!(|input: &[u8]| {
    let mut u = Unstructured::new(input);
    let Ok(options) = options(&mut u) else { return };
    let version = options.version;
    let mut core = ClientCore::new(options);
    let start = Instant::now();
    let mut now_ms: u64 = 0;
    let mut buffer = BytesMut::new();
    let context = DecodeContext::client(version);
    // Whether a network connection is open: `connect` is for a client without one (its contract),
    // and a close the core asks for ends it, as the I/O layer does.
    let mut open = false;
    for _ in 0..STEPS_MAX {
        let Ok(step) = Step::arbitrary(&mut u) else { break };
        let now = start + Duration::from_millis(now_ms);
        match step {
            Step::Connect => {
                if !open {
                    buffer.clear();
                    core.connect(now);
                    open = true;
                }
            }
            Step::ServerPacket(packet) => {
                let mut bytes = BytesMut::new();
                if open && encode(&packet, version, &mut bytes).is_ok() {
                    buffer.extend_from_slice(&bytes);
                    open = feed(&mut core, now, &mut buffer, &context);
                }
            }
            Step::ServerBytes(bytes) => {
                if open {
                    buffer.extend_from_slice(&bytes);
                    open = feed(&mut core, now, &mut buffer, &context);
                }
            }
            Step::Publish {
                topic,
                qos: level,
                payload,
                retain,
            } => {
                let mut message = Message::new(format!("fuzz/{}", topic % 4), Bytes::from(payload), qos(level));
                message.retain = retain;
                let _ = core.publish(message);
            }
            Step::Subscribe { topic, qos: level } => {
                let subscription = Subscription {
                    filter: format!("fuzz/{}", topic % 4),
                    options: SubscriptionOptions::with_qos(qos(level)),
                };
                let _ = core.subscribe(vec![subscription], Properties::default());
            }
            Step::Unsubscribe { topic } => {
                let _ = core.unsubscribe(vec![format!("fuzz/{}", topic % 4)], Properties::default());
            }
            Step::Disconnect => {
                if open {
                    // DISCONNECT goes out, then the I/O layer closes the connection.
                    core.disconnect(ReasonCode::SUCCESS, Properties::default());
                    drain(&mut core, now, version);
                    buffer.clear();
                    core.handle_connection_lost(now);
                    open = false;
                }
            }
            Step::Lost => {
                if open {
                    buffer.clear();
                    core.handle_connection_lost(now);
                    open = false;
                }
            }
            Step::Advance { ms } => {
                now_ms += u64::from(ms);
                let later = start + Duration::from_millis(now_ms);
                if core.handle_timeout(later).is_err() && open {
                    core.handle_connection_lost(later);
                    open = false;
                }
            }
        }
        drain(&mut core, start + Duration::from_millis(now_ms), version);
        while core.poll_event().is_some() {}
        if let Err(broken) = core.check_invariants() {
            panic!("an invariant broke: {broken}");
        }
    }
});

/// Decodes what the server sent and hands it to the core; false when the core closed the
/// connection (which the I/O layer then reports lost).
fn feed(core: &mut ClientCore, now: Instant, buffer: &mut BytesMut, context: &DecodeContext) -> bool {
    loop {
        let closed = match decode(buffer, context) {
            Ok(None) => return true,
            Ok(Some(packet)) => core.handle_packet(now, packet).is_err(),
            Err(error) => {
                let _ = core.handle_decode_error(&error);
                true
            }
        };
        if closed {
            buffer.clear();
            core.handle_connection_lost(now);
            return false;
        }
    }
}

/// Every packet the client sends must encode, fit the server's Maximum Packet Size, and decode
/// back to itself as a server strictly decodes it.
fn drain(core: &mut ClientCore, now: Instant, version: ProtocolVersion) {
    let maximum = core.server_limits().maximum_packet_size;
    while let Some(packet) = core.poll_transmit(now) {
        let mut bytes = BytesMut::new();
        encode(&packet, version, &mut bytes)
            .unwrap_or_else(|error| panic!("the client sent a packet that does not encode: {error}: {packet:?}"));
        if let Some(maximum) = maximum {
            assert!(
                bytes.len() <= maximum as usize,
                "{} bytes sent past the server's Maximum Packet Size of {maximum}: {packet:?}",
                bytes.len()
            );
        }
        let context = match packet {
            Packet::Connect(_) => DecodeContext::server(),
            _ => DecodeContext::server().with_version(version),
        };
        let decoded = decode(&mut bytes, &context)
            .unwrap_or_else(|error| panic!("our strict decoder refuses what the client sent: {error}: {packet:?}"))
            .expect("a whole packet");
        assert_eq!(decoded, packet, "the packet sent does not decode back to itself");
    }
}
