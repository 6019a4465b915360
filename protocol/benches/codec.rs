//! Codec speed: decode and encode of PUBLISH (64 B and 4 KiB payloads, with and without
//! properties) and of CONNECT, in 5.0, and the same without properties in 3.1.1 (`v3.1.1_...`).
//! Reported, not a gate; compare runs of the same machine only.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqtt_protocol::*;

fn publish(payload_len: usize, with_properties: bool) -> Packet {
    let mut properties = Properties::default();
    if with_properties {
        properties.message_expiry_interval_s = Some(60);
        properties.content_type = Some("application/json".into());
        properties.correlation_data = Some(Bytes::from_static(b"0123456789abcdef"));
        properties.user_properties = vec![("trace".into(), "4711".into())];
    }
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "site/42/device/1042/temperature".into(),
        packet_id: Some(7),
        properties,
        payload: Bytes::from(vec![0x5A; payload_len]),
        ..Publish::default()
    })
}

fn connect(protocol: ProtocolVersion) -> Packet {
    let properties = match protocol {
        ProtocolVersion::V5 => Properties::from(PropertyFields {
            session_expiry_interval_s: Some(3600),
            receive_maximum: Some(100),
            ..PropertyFields::default()
        }),
        _ => Properties::default(),
    };
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive_s: 30,
        properties,
        client_id: "bench-client-0001".into(),
        will: Some(Will {
            topic: "clients/0001/status".into(),
            payload: Bytes::from_static(b"offline"),
            ..Will::default()
        }),
        user_name: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
    }))
}

fn cases() -> Vec<(String, Packet, ProtocolVersion, DecodeContext)> {
    let mut cases = Vec::new();
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let server = DecodeContext::server().with_version(version);
        let prefix = if version.is_v5() { "" } else { "v3.1.1_" };
        for payload_len in [64, 4096] {
            for with_properties in [false, true] {
                if with_properties && !version.is_v5() {
                    continue;
                }
                let name = format!(
                    "{prefix}publish_{payload_len}B{}",
                    if with_properties { "_properties" } else { "" }
                );
                cases.push((name, publish(payload_len, with_properties), version, server));
            }
        }
        cases.push((
            format!("{prefix}connect"),
            connect(version),
            version,
            DecodeContext::server(),
        ));
    }
    cases
}

fn codec(c: &mut Criterion) {
    let mut decode_group = c.benchmark_group("codec/decode");
    for (name, packet, version, context) in cases() {
        let mut encoded = BytesMut::new();
        encode(&packet, version, &mut encoded).expect("valid packet");
        let encoded = encoded.freeze();
        decode_group.throughput(Throughput::Bytes(encoded.len() as u64));
        decode_group.bench_with_input(BenchmarkId::from_parameter(&name), &encoded, |b, encoded| {
            b.iter(|| {
                // BytesMut::from copies the bytes, as a socket read into the buffer would.
                let mut buf = BytesMut::from(&encoded[..]);
                black_box(decode(&mut buf, &context).expect("decodes"))
            })
        });
    }
    decode_group.finish();

    let mut encode_group = c.benchmark_group("codec/encode");
    for (name, packet, version, _) in cases() {
        let mut buf = BytesMut::with_capacity(8192);
        encode_group.throughput(Throughput::Bytes(encoded_len(&packet, version).expect("valid") as u64));
        encode_group.bench_with_input(BenchmarkId::from_parameter(&name), &packet, |b, packet| {
            b.iter(|| {
                buf.clear();
                encode(black_box(packet), version, &mut buf).expect("encodes");
                black_box(buf.len())
            })
        });
    }
    encode_group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
