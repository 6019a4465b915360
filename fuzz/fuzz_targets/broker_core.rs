//! The sans-IO broker fed arbitrary interleavings of several clients' packets (typed, or raw
//! bytes through the strict decoder as the server decodes them), network losses and time steps,
//! under small limits. After every step: `check_invariants()` holds (connections and sessions
//! agree, every queue within its bound, no two in-flight messages with one packet id); and every
//! packet the broker sends encodes, decodes back to itself under our strict client-side decoder,
//! and fits the Maximum Packet Size its client announced.

#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_broker::{Broker, Config, ConnectionId, Output};
use mqtt_protocol::{decode, encode, DecodeContext, Packet, ProtocolVersion};
use tokio::time::Instant;

/// Clients at once, at most: enough for takeovers, shared groups and fan-out.
const CLIENTS: u8 = 4;
/// Steps per input.
const STEPS_MAX: usize = 64;

#[derive(Debug, Arbitrary)]
enum Step {
    /// A new network connection for client slot `client` (closing the one it had).
    Open { client: u8 },
    /// A typed packet, sent as the server would read it: encoded, then strictly decoded.
    Packet { client: u8, packet: Packet },
    /// Raw bytes on the wire.
    Bytes { client: u8, bytes: Vec<u8> },
    /// The network connection is lost.
    Lost { client: u8 },
    /// Time passes (milliseconds, up to a minute and a bit).
    Advance { ms: u16 },
}

/// One client slot's connection as the server sees it.
struct Slot {
    connection: ConnectionId,
    context: DecodeContext,
    buffer: BytesMut,
    /// The version and Maximum Packet Size its CONNECT gave, once connected.
    version: Option<ProtocolVersion>,
    maximum_packet_size: Option<u32>,
}

fn config(u: &mut Unstructured<'_>) -> arbitrary::Result<Config> {
    let small = |u: &mut Unstructured<'_>, most: u16| -> arbitrary::Result<u16> { Ok(u.int_in_range(1..=most)?) };
    Ok(Config {
        connections_max: usize::from(small(u, 8)?),
        maximum_packet_size: u.int_in_range(64..=4096)?,
        receive_maximum: small(u, 4)?,
        inflight_count_max: small(u, 4)?,
        queued_messages_max: usize::from(small(u, 8)?),
        subscriptions_per_client_max: usize::from(small(u, 4)?),
        topic_levels_max: usize::from(small(u, 8)?),
        retained_messages_max: usize::from(small(u, 4)?),
        connect_timeout: Duration::from_secs(u64::from(small(u, 30)?)),
        topic_alias_maximum: u.int_in_range(0..=4)?,
        server_keep_alive_s: if u.arbitrary()? {
            Some(u.int_in_range(1..=60)?)
        } else {
            None
        },
        ..Config::default()
    })
}

fuzz_target!(|input: &[u8]| {
    let mut u = Unstructured::new(input);
    let Ok(config) = config(&mut u) else { return };
    let maximum_packet_size = config.maximum_packet_size;
    let mut broker = Broker::new(config);
    let start = Instant::now();
    let mut now_ms: u64 = 0;
    let mut next_connection: ConnectionId = 1;
    let mut slots: BTreeMap<u8, Slot> = BTreeMap::new();
    let mut owners: BTreeMap<ConnectionId, u8> = BTreeMap::new();
    for _ in 0..STEPS_MAX {
        let Ok(step) = Step::arbitrary(&mut u) else { break };
        let now = start + Duration::from_millis(now_ms);
        match step {
            Step::Open { client } => {
                let client = client % CLIENTS;
                if let Some(old) = slots.remove(&client) {
                    broker.handle_connection_closed(now, old.connection);
                }
                let connection = next_connection;
                next_connection += 1;
                broker.handle_connection_opened(now, connection);
                owners.insert(connection, client);
                slots.insert(
                    client,
                    Slot {
                        connection,
                        context: DecodeContext::server().with_maximum_packet_size(maximum_packet_size),
                        buffer: BytesMut::new(),
                        version: None,
                        maximum_packet_size: None,
                    },
                );
            }
            Step::Packet { client, packet } => {
                let Some(slot) = slots.get_mut(&(client % CLIENTS)) else {
                    continue;
                };
                let version = match &packet {
                    Packet::Connect(connect) => connect.protocol,
                    _ => slot.context.version.unwrap_or(ProtocolVersion::V5),
                };
                let mut bytes = BytesMut::new();
                if encode(&packet, version, &mut bytes).is_err() {
                    continue;
                }
                slot.buffer.extend_from_slice(&bytes);
                feed(&mut broker, now, slot);
            }
            Step::Bytes { client, bytes } => {
                let Some(slot) = slots.get_mut(&(client % CLIENTS)) else {
                    continue;
                };
                slot.buffer.extend_from_slice(&bytes);
                feed(&mut broker, now, slot);
            }
            Step::Lost { client } => {
                if let Some(slot) = slots.remove(&(client % CLIENTS)) {
                    broker.handle_connection_closed(now, slot.connection);
                }
            }
            Step::Advance { ms } => {
                now_ms += u64::from(ms);
                broker.handle_timeout(start + Duration::from_millis(now_ms));
            }
        }
        drain(&mut broker, &mut slots, &owners);
        if let Err(broken) = broker.check_invariants() {
            panic!("an invariant broke: {broken}");
        }
    }
});

/// Decodes what the slot's connection sent, as the server does, and hands it to the core.
fn feed(broker: &mut Broker, now: Instant, slot: &mut Slot) {
    // Bounded: each packet decoded takes bytes off the buffer; an error ends the reading.
    loop {
        match decode(&mut slot.buffer, &slot.context) {
            Ok(None) => return,
            Ok(Some(packet)) => {
                if let Packet::Connect(connect) = &packet {
                    if slot.context.version.is_none() {
                        slot.context = slot.context.with_version(connect.protocol);
                        slot.version = Some(connect.protocol);
                        slot.maximum_packet_size = connect
                            .properties
                            .maximum_packet_size
                            .filter(|_| connect.protocol.is_v5());
                    }
                }
                broker.handle_packet(now, slot.connection, packet);
            }
            Err(error) => {
                broker.handle_decode_error(now, slot.connection, &error);
                slot.buffer.clear();
                return;
            }
        }
    }
}

/// Takes every output: each packet sent must encode, decode back to itself under the strict
/// client-side decoder, and fit its client's Maximum Packet Size.
fn drain(broker: &mut Broker, slots: &mut BTreeMap<u8, Slot>, owners: &BTreeMap<ConnectionId, u8>) {
    while let Some(output) = broker.poll_output() {
        let Output::Send {
            connection,
            version,
            packet,
        } = output
        else {
            continue;
        };
        let mut bytes = BytesMut::new();
        encode(&packet, version, &mut bytes)
            .unwrap_or_else(|error| panic!("the broker sent a packet that does not encode: {error}: {packet:?}"));
        let slot = owners.get(&connection).and_then(|client| slots.get(client));
        if let Some(maximum) = slot.and_then(|slot| slot.maximum_packet_size) {
            assert!(
                bytes.len() <= maximum as usize,
                "{} bytes sent past the client's Maximum Packet Size of {maximum}: {packet:?}",
                bytes.len()
            );
        }
        let context = DecodeContext::client(version);
        let decoded = decode(&mut bytes, &context)
            .unwrap_or_else(|error| panic!("our strict decoder refuses what the broker sent: {error}: {packet:?}"))
            .expect("a whole packet");
        assert_eq!(decoded, packet, "the packet sent does not decode back to itself");
    }
}
