//! Codec speed: decode and encode of PUBLISH (64 B and 4 KiB payloads, with and without
//! properties) and of CONNECT. Reported, not a gate; compare runs of the same machine only.

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

fn connect() -> Packet {
    let properties = Properties::from(PropertyFields {
        session_expiry_interval_s: Some(3600),
        receive_maximum: Some(100),
        ..PropertyFields::default()
    });
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
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

fn cases() -> Vec<(String, Packet, DecodeContext)> {
    let server = DecodeContext::server().with_version(ProtocolVersion::V5);
    let mut cases = Vec::new();
    for payload_len in [64, 4096] {
        for with_properties in [false, true] {
            let name = format!(
                "publish_{payload_len}B{}",
                if with_properties { "_properties" } else { "" }
            );
            cases.push((name, publish(payload_len, with_properties), server));
        }
    }
    cases.push(("connect".into(), connect(), DecodeContext::server()));
    cases
}

fn codec(c: &mut Criterion) {
    let mut decode_group = c.benchmark_group("codec/decode");
    for (name, packet, context) in cases() {
        let mut encoded = BytesMut::new();
        encode(&packet, ProtocolVersion::V5, &mut encoded).expect("valid packet");
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
    for (name, packet, _) in cases() {
        let mut buf = BytesMut::with_capacity(8192);
        encode_group.throughput(Throughput::Bytes(
            encoded_len(&packet, ProtocolVersion::V5).expect("valid") as u64,
        ));
        encode_group.bench_with_input(BenchmarkId::from_parameter(&name), &packet, |b, packet| {
            b.iter(|| {
                buf.clear();
                encode(black_box(packet), ProtocolVersion::V5, &mut buf).expect("encodes");
                black_box(buf.len())
            })
        });
    }
    encode_group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
