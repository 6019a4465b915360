//! mqtt-protocol against rumqttc's v5 codec, same input, same run.
//!
//! Decode: both decoders read the same bytes (a 5.0 QoS 1 PUBLISH, 64-byte payload, no properties,
//! encoded once by our encoder). Each iteration copies them into a fresh `BytesMut`, as a socket
//! read would, and takes one packet off it through the codec's public API.
//!
//! Encode: both encoders write the same PUBLISH into a cleared, pre-allocated buffer; their output
//! is checked to be byte-identical first.
//!
//! Reported, not a gate; compare runs of the same machine only. The two decoders do not check the
//! same things (see the crate docs), so a ratio is the price of each one's contract.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mqtt_protocol::{decode, encode, DecodeContext, Packet, ProtocolVersion};
use mqtt_protocol_compare::{publish_qos1_64b, publish_qos1_64b_bytes, PACKET_ID, PAYLOAD_LEN, TOPIC};
use rumqttc::v5::mqttbytes::v5 as rumqttc_v5;
use rumqttc::v5::mqttbytes::QoS as RumqttcQoS;

/// The same PUBLISH as rumqttc's typed packet.
fn rumqttc_publish() -> rumqttc_v5::Publish {
    rumqttc_v5::Publish {
        dup: false,
        qos: RumqttcQoS::AtLeastOnce,
        retain: false,
        topic: Bytes::from_static(TOPIC.as_bytes()),
        pkid: PACKET_ID,
        payload: Bytes::from(vec![0x5A; PAYLOAD_LEN]),
        properties: None,
    }
}

/// Outside the timed loops: both codecs agree on the input.
fn check_agreement(encoded: &Bytes, context: &DecodeContext) {
    let mut buf = BytesMut::from(&encoded[..]);
    let ours = decode(&mut buf, context).expect("decodes").expect("a whole packet");
    assert!(buf.is_empty());
    let Packet::Publish(ours) = ours else {
        panic!("not a PUBLISH: {ours:?}")
    };
    assert_eq!(ours.topic, TOPIC);
    assert_eq!(ours.packet_id, Some(PACKET_ID));
    assert_eq!(ours.payload.len(), PAYLOAD_LEN);

    let mut buf = BytesMut::from(&encoded[..]);
    let theirs = rumqttc_v5::Packet::read(&mut buf, None).expect("rumqttc decodes");
    assert!(buf.is_empty());
    let rumqttc_v5::Packet::Publish(theirs) = theirs else {
        panic!("rumqttc: not a PUBLISH: {theirs:?}")
    };
    assert_eq!(theirs.topic, TOPIC.as_bytes());
    assert_eq!(theirs.pkid, PACKET_ID);
    assert_eq!(theirs.qos, RumqttcQoS::AtLeastOnce);
    assert_eq!(theirs.payload, ours.payload);
    assert_eq!(theirs.properties, None);
    assert_eq!(theirs, rumqttc_publish());

    let mut written = BytesMut::new();
    rumqttc_publish().write(&mut written).expect("rumqttc encodes");
    assert_eq!(&written[..], &encoded[..], "the two encoders disagree");
}

fn compare(c: &mut Criterion) {
    let encoded = publish_qos1_64b_bytes();
    let context = DecodeContext::server().with_version(ProtocolVersion::V5);
    check_agreement(&encoded, &context);

    let mut group = c.benchmark_group("compare/decode_publish_qos1_64B");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("mqtt-protocol", |b| {
        b.iter(|| {
            // BytesMut::from copies the bytes, as a socket read into the buffer would.
            let mut buf = BytesMut::from(black_box(&encoded[..]));
            black_box(decode(&mut buf, black_box(&context)).expect("decodes"))
        })
    });
    group.bench_function("rumqttc", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&encoded[..]));
            black_box(rumqttc_v5::Packet::read(&mut buf, black_box(None)).expect("decodes"))
        })
    });
    group.finish();

    let ours = publish_qos1_64b();
    let theirs = rumqttc_publish();
    let mut group = c.benchmark_group("compare/encode_publish_qos1_64B");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("mqtt-protocol", |b| {
        let mut buf = BytesMut::with_capacity(8192);
        b.iter(|| {
            buf.clear();
            encode(black_box(&ours), ProtocolVersion::V5, &mut buf).expect("encodes");
            black_box(buf.len())
        })
    });
    group.bench_function("rumqttc", |b| {
        let mut buf = BytesMut::with_capacity(8192);
        b.iter(|| {
            buf.clear();
            black_box(&theirs).write(&mut buf).expect("encodes");
            black_box(buf.len())
        })
    });
    group.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
