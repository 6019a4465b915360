//! Tests of `mqtt_client::probe` against fake brokers written in the tests themselves: a tokio
//! listener on 127.0.0.1:0 whose task reads with mqtt-protocol and writes scripted bytes. Nothing
//! here depends on the client or on mosquitto.
//!
//! Time: the TCP tests run on real time (a paused clock would jump ahead while bytes are in the
//! kernel), so their deadlines are short and their windows generous. The last close-window test
//! runs over an in-memory stream on a paused clock, where the measured time is exact.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_client::probe::{Pattern, Probe, ProbeError, ProbeOptions, PropertyExpectation, TraceDirection};
use mqtt_protocol::raw::RawPacket;
use mqtt_protocol::{
    decode, encode, ConnAck, Connect, DecodeContext, DecodeErrorKind, Disconnect, Packet, PacketType, PropertyId,
    ProtocolVersion, Publish, QoS, ReasonCode, Spec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

/// How long any single step of a fake broker may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a probe waits for a packet that should come at once.
const WITHIN: Duration = Duration::from_secs(2);

/// A fake broker's side of one connection: reads strictly as a server, writes what it is told.
struct FakeConnection {
    stream: TcpStream,
    buffer: BytesMut,
    context: DecodeContext,
}

impl FakeConnection {
    async fn read_packet(&mut self) -> Packet {
        for _ in 0..10_000 {
            if let Some(packet) = decode(&mut self.buffer, &self.context).expect("the probe's packet decodes") {
                if let Packet::Connect(connect) = &packet {
                    self.context.version = Some(connect.protocol);
                }
                return packet;
            }
            let count = timeout(STEP_TIMEOUT, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("the probe sends within the step timeout")
                .expect("reading from the probe");
            assert!(count > 0, "the probe closed before sending a whole packet");
        }
        panic!("no whole packet after 10,000 reads");
    }

    /// The raw bytes of the next packet, whatever they are.
    async fn read_frame(&mut self) -> bytes::Bytes {
        for _ in 0..10_000 {
            if let Some(frame) = mqtt_protocol::split_frame(&mut self.buffer, u32::MAX).expect("frames") {
                return frame.bytes;
            }
            let count = timeout(STEP_TIMEOUT, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("the probe sends within the step timeout")
                .expect("reading from the probe");
            assert!(count > 0, "the probe closed before sending a whole packet");
        }
        panic!("no whole packet after 10,000 reads");
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writing to the probe");
        self.stream.flush().await.expect("flushing to the probe");
    }

    async fn send(&mut self, packet: &Packet) {
        let bytes = encoded(packet, self.context.version.unwrap_or(ProtocolVersion::V5));
        self.write(&bytes).await;
    }
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode(packet, version, &mut bytes).expect("a valid packet");
    bytes
}

/// Binds 127.0.0.1:0 and runs `script` on the first connection; the task ends with the script.
async fn fake_broker<F, Fut>(script: F) -> (SocketAddr, JoinHandle<()>)
where
    F: FnOnce(FakeConnection) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake broker");
    let address = listener.local_addr().expect("the fake broker's address");
    let task = tokio::spawn(async move {
        let (stream, _) = timeout(STEP_TIMEOUT, listener.accept())
            .await
            .expect("the probe connects")
            .expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        script(FakeConnection {
            stream,
            buffer: BytesMut::new(),
            context: DecodeContext::server(),
        })
        .await;
    });
    (address, task)
}

fn connect_packet() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive_s: 60,
        client_id: "probe-1".to_owned(),
        ..Connect::default()
    }))
}

/// A probe connected to `address` that has sent its CONNECT.
async fn connected_probe(address: SocketAddr) -> Probe {
    let mut probe = Probe::connect_tcp(address, ProbeOptions::client())
        .await
        .expect("connect to the fake broker");
    probe.send(&connect_packet()).await.expect("send CONNECT");
    probe
}

fn connack_with_keep_alive(session_present: bool, server_keep_alive_s: u16) -> Packet {
    let mut connack = ConnAck {
        session_present,
        ..ConnAck::default()
    };
    connack.properties.server_keep_alive_s = Some(server_keep_alive_s);
    connack.properties.assigned_client_identifier = Some("auto-1".to_owned());
    Packet::ConnAck(connack)
}

/// A PUBLISH with both QoS bits set, which 5.0 MQTT-3.3.1-4 forbids.
fn publish_with_qos_3() -> bytes::Bytes {
    RawPacket::new(PacketType::Publish, 0b0110)
        .string("a/b")
        .u16(1)
        .properties(|properties| properties)
        .build()
}

#[tokio::test]
async fn expect_matches_a_connack_with_its_properties() {
    // Goal: a CONNACK with properties matches a pattern that checks its code, session present and
    // properties (a value, a presence, an absence). Method: the fake broker answers the CONNECT.
    let (address, broker) = fake_broker(|mut connection| async move {
        assert!(matches!(connection.read_packet().await, Packet::Connect(_)));
        connection.send(&connack_with_keep_alive(false, 5)).await;
        sleep(Duration::from_millis(500)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    let pattern = Pattern::connack()
        .reason_code(ReasonCode::SUCCESS)
        .session_present(false)
        .property(PropertyExpectation::equals(PropertyId::ServerKeepAlive, 5u16))
        .property(PropertyExpectation::present(PropertyId::AssignedClientIdentifier))
        .property(PropertyExpectation::absent(PropertyId::TopicAliasMaximum));
    let packet = probe.expect(&pattern, WITHIN).await.expect("the CONNACK matches");
    let Packet::ConnAck(connack) = packet else {
        panic!("expected a CONNACK, got {packet:?}");
    };
    assert_eq!(connack.properties.server_keep_alive_s, Some(5));
    assert_eq!(probe.version(), Some(ProtocolVersion::V5));
    broker.abort();
}

#[tokio::test]
async fn a_mismatch_lists_every_differing_field() {
    // Goal: a packet that differs from its pattern in several fields is reported with each of them,
    // readably. Method: the fake broker refuses with 0x87 and no properties; the pattern wants
    // success and Server Keep Alive 5.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        let refusal = ConnAck {
            reason_code: ReasonCode::NOT_AUTHORIZED,
            ..ConnAck::default()
        };
        connection.send(&Packet::ConnAck(refusal)).await;
        sleep(Duration::from_millis(500)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    let pattern = Pattern::connack()
        .reason_code(ReasonCode::SUCCESS)
        .session_present(false)
        .property(PropertyExpectation::equals(PropertyId::ServerKeepAlive, 5u16));
    let error = probe.expect(&pattern, WITHIN).await.expect_err("the CONNACK differs");
    let message = error.to_string();
    let ProbeError::Mismatch {
        expected,
        actual,
        differences,
    } = error
    else {
        panic!("expected a mismatch, got {error:?}");
    };
    assert_eq!(*expected, pattern);
    assert!(matches!(*actual, Packet::ConnAck(_)));
    let fields: Vec<&str> = differences.iter().map(|difference| difference.field).collect();
    assert_eq!(fields, ["reason_code", "Server Keep Alive"]);
    assert_eq!(differences[0].expected, "0x00");
    assert_eq!(differences[0].actual, "0x87(Not authorized)");
    assert_eq!(differences[1].expected, "5");
    assert_eq!(differences[1].actual, "absent");
    assert!(
        message.contains("reason_code: expected 0x00, actual 0x87(Not authorized)"),
        "{message}"
    );
    assert!(
        message.contains("Server Keep Alive: expected 5, actual absent"),
        "{message}"
    );
    assert!(probe.trace().to_string().contains("mismatch: expected CONNACK"));
    broker.abort();
}

#[tokio::test]
async fn expect_times_out_when_nothing_arrives() {
    // Goal: a broker that never answers makes the expectation fail after its deadline, not hang.
    // Method: the fake broker reads the CONNECT and stays silent; the deadline is 200 ms.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    let started = Instant::now();
    let error = probe
        .expect(&Pattern::connack(), Duration::from_millis(200))
        .await
        .expect_err("no CONNACK comes");
    let waited = started.elapsed();
    assert!(
        matches!(&error, ProbeError::Timeout { expected, waited } if **expected == Pattern::connack() && *waited == Duration::from_millis(200)),
        "{error:?}"
    );
    assert!(waited >= Duration::from_millis(200), "returned after {waited:?}");
    assert!(waited < Duration::from_secs(2), "returned after {waited:?}");
    assert!(probe
        .trace()
        .to_string()
        .contains("nothing within 200.000 ms; expected CONNACK"));
    broker.abort();
}

#[tokio::test]
async fn a_malformed_publish_is_reported_with_its_rule_and_reason_code() {
    // Goal: a packet from the peer that fails strict decoding is a finding: returned as Malformed
    // with its rule and reason code, in the trace with its raw bytes, and the stream stays
    // readable after it. Method: the fake broker sends a PUBLISH with QoS bits 11, then a valid one.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        connection.send(&connack_with_keep_alive(false, 5)).await;
        connection.write(&publish_with_qos_3()).await;
        let valid = Publish {
            topic: "a/b".into(),
            payload: "ok".into(),
            ..Publish::default()
        };
        connection.send(&Packet::Publish(valid)).await;
        sleep(Duration::from_millis(500)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    probe.expect(&Pattern::connack(), WITHIN).await.expect("CONNACK");
    let error = probe
        .expect(&Pattern::publish(), WITHIN)
        .await
        .expect_err("the PUBLISH is malformed");
    let ProbeError::Malformed(decode_error) = &error else {
        panic!("expected Malformed, got {error:?}");
    };
    assert_eq!(decode_error.rule.spec, Spec::V5_0);
    assert_eq!(decode_error.rule.statement, Some("MQTT-3.3.1-4"));
    assert_eq!(decode_error.reason_code, Some(ReasonCode::MALFORMED_PACKET));
    assert!(matches!(
        decode_error.kind,
        DecodeErrorKind::InvalidFixedHeaderFlags {
            packet_type: PacketType::Publish,
            flags: 0b0110
        }
    ));

    let entry = probe
        .trace()
        .entries()
        .find(|entry| entry.error.is_some())
        .expect("the malformed packet is in the trace");
    assert_eq!(entry.direction, TraceDirection::Received);
    assert_eq!(entry.raw, publish_with_qos_3());
    assert!(entry.packet.is_none());
    let rendered = probe.trace().render(true);
    assert!(
        rendered.contains("<- MALFORMED PUBLISH 10B: breaks 5.0 MQTT-3.3.1-4"),
        "{rendered}"
    );
    assert!(rendered.contains("code=0x81"), "{rendered}");
    assert!(rendered.contains("36 08 00 03 61 2f 62 00 01 00"), "{rendered}");

    let next = probe
        .expect(&Pattern::publish().payload("ok"), WITHIN)
        .await
        .expect("the stream is still readable");
    assert!(matches!(next, Packet::Publish(_)));
    broker.abort();
}

#[tokio::test]
async fn expect_close_reports_a_close_within_its_window() {
    // Goal: a close inside the window is accepted and timed from the last packet the probe sent.
    // Method: the fake broker closes 300 ms after the CONNECT arrives; the window is 250 ms - 2 s.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        sleep(Duration::from_millis(300)).await;
        drop(connection);
    })
    .await;
    let mut probe = connected_probe(address).await;
    let window = Duration::from_millis(250)..=Duration::from_secs(2);
    let report = probe
        .expect_close(window.clone())
        .await
        .expect("closed within the window");
    assert!(window.contains(&report.after), "closed after {:?}", report.after);
    assert!(
        report.after >= Duration::from_millis(300),
        "closed after {:?}",
        report.after
    );
    assert!(report.disconnect.is_none());
    assert_eq!(report.other_count, 0);
    assert!(probe
        .trace()
        .last()
        .is_some_and(|entry| entry.note.as_deref() == Some("closed by peer")));
    broker.await.expect("the fake broker ends");
}

#[tokio::test]
async fn expect_close_returns_the_disconnect_sent_before_the_close() {
    // Goal: a 5.0 DISCONNECT before the close is allowed and returned with its reason code.
    // Method: the fake broker sends DISCONNECT 0x8D (Keep Alive timeout) and closes.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        let disconnect = Disconnect {
            reason_code: ReasonCode::KEEP_ALIVE_TIMEOUT,
            ..Disconnect::default()
        };
        connection.send(&Packet::Disconnect(disconnect)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    let report = probe
        .expect_close(Duration::ZERO..=Duration::from_secs(2))
        .await
        .expect("closed within the window");
    assert_eq!(
        report.disconnect.map(|disconnect| disconnect.reason_code),
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert!(probe
        .trace()
        .to_string()
        .contains("<- DISCONNECT code=0x8D(Keep Alive timeout)"));
    broker.await.expect("the fake broker ends");
}

#[tokio::test]
async fn a_close_before_the_window_opens_is_closed_early() {
    // Goal: closing too soon is its own verdict. Method: the fake broker closes as soon as the
    // CONNECT arrives; the window opens at 500 ms.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    let error = probe
        .expect_close(Duration::from_millis(500)..=Duration::from_secs(2))
        .await
        .expect_err("closed too early");
    assert!(
        matches!(error, ProbeError::ClosedEarly { after, after_min } if after < Duration::from_millis(500) && after_min == Duration::from_millis(500)),
        "{error:?}"
    );
    broker.await.expect("the fake broker ends");
}

#[tokio::test]
async fn a_connection_still_open_when_the_window_ends_is_not_closed() {
    // Goal: a connection that outlives the window fails with NotClosed at the window's end.
    // Method: the fake broker holds the connection for 5 s; the window ends at 200 ms.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        sleep(Duration::from_secs(5)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    let started = Instant::now();
    let error = probe
        .expect_close(Duration::ZERO..=Duration::from_millis(200))
        .await
        .expect_err("still open");
    assert!(
        matches!(error, ProbeError::NotClosed { after_max } if after_max == Duration::from_millis(200)),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    broker.abort();
}

#[tokio::test]
async fn expect_nothing_fails_when_a_packet_arrives() {
    // Goal: silence that is broken is an error carrying the packet. Method: the fake broker sends
    // a PINGRESP 50 ms after the CONNECT; the probe expects nothing for 1 s.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        sleep(Duration::from_millis(50)).await;
        connection.send(&Packet::PingResp).await;
        sleep(Duration::from_secs(2)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    let error = probe
        .expect_nothing(Duration::from_secs(1))
        .await
        .expect_err("a packet came");
    assert!(
        matches!(&error, ProbeError::UnexpectedPacket { packet, .. } if **packet == Packet::PingResp),
        "{error:?}"
    );
    broker.abort();
}

#[tokio::test]
async fn expect_nothing_passes_in_silence_and_reports_a_close_as_closed() {
    // Goal: silence passes; a close during the wait is its own error, not a packet. Method: the
    // fake broker stays silent for 400 ms, then closes; the probe expects nothing twice.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        sleep(Duration::from_millis(400)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    probe
        .expect_nothing(Duration::from_millis(100))
        .await
        .expect("nothing arrives");
    let error = probe
        .expect_nothing(Duration::from_secs(2))
        .await
        .expect_err("the connection closes");
    assert!(matches!(error, ProbeError::Closed { .. }), "{error:?}");
    assert!(probe
        .trace()
        .to_string()
        .contains("nothing for 100.000 ms, as expected"));
    broker.await.expect("the fake broker ends");
}

#[tokio::test]
async fn send_raw_of_an_invalid_packet_is_traced_with_its_bytes_and_verdict() {
    // Goal: raw bytes go out exactly as given and the trace shows them, with the decoder's verdict
    // on them. Method: after its CONNECT the probe sends a PUBLISH with QoS bits 11; the fake
    // broker receives exactly those bytes.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        let frame = connection.read_frame().await;
        assert_eq!(frame, publish_with_qos_3());
    })
    .await;
    let mut probe = connected_probe(address).await;
    probe.send_raw(&publish_with_qos_3()).await.expect("sent");
    broker.await.expect("the fake broker got the bytes");
    let entry = probe.trace().last().expect("an entry");
    assert_eq!(entry.direction, TraceDirection::Sent);
    assert_eq!(entry.raw, publish_with_qos_3());
    let error = entry.error.as_ref().expect("the decoder's verdict");
    assert_eq!(error.rule.statement, Some("MQTT-3.3.1-4"));
    let rendered = probe.trace().to_string();
    assert!(rendered.contains("-> MALFORMED PUBLISH 10B"), "{rendered}");
}

#[tokio::test]
async fn send_raw_of_a_partial_packet_is_traced_as_such() {
    // Goal: bytes that are not a whole packet are recorded as such, not dropped. Method: the probe
    // sends a PINGREQ in two pieces; the fake broker decodes it whole.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        assert_eq!(connection.read_packet().await, Packet::PingReq);
    })
    .await;
    let mut probe = connected_probe(address).await;
    probe.send_raw(&[0xC0]).await.expect("sent");
    probe.send_raw(&[0x00]).await.expect("sent");
    broker.await.expect("the fake broker got the PINGREQ");
    let rendered = probe.trace().to_string();
    assert!(rendered.contains("-> 1B (not a whole packet)"), "{rendered}");
}

#[tokio::test]
async fn trace_display_summarizes_each_packet_on_one_line() {
    // Goal: the trace reads as evidence: one line per packet, with time, arrow and the fields that
    // matter. Method: a CONNECT, a CONNACK with a property, a QoS 1 PUBLISH, then a close.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        connection.send(&connack_with_keep_alive(true, 5)).await;
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "a/b".into(),
            packet_id: Some(7),
            payload: "abc".into(),
            ..Publish::default()
        };
        connection.send(&Packet::Publish(publish)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    probe.expect(&Pattern::connack(), WITHIN).await.expect("CONNACK");
    probe
        .expect(
            &Pattern::publish().qos(QoS::AtLeastOnce).packet_id(7).topic("a/b"),
            WITHIN,
        )
        .await
        .expect("PUBLISH");
    probe.expect_close(Duration::ZERO..=WITHIN).await.expect("closed");
    broker.await.expect("the fake broker ends");

    let rendered = probe.trace().to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines.len(), 4, "{rendered}");
    assert!(
        lines[0].ends_with(" ms -> CONNECT v5.0 client_id=\"probe-1\" clean_start=1 keep_alive=60s"),
        "{rendered}"
    );
    assert!(
        lines[1].ends_with(
            " ms <- CONNACK session_present=1 code=0x00 props=[AssignedClientIdentifier=\"auto-1\", ServerKeepAlive=5]"
        ),
        "{rendered}"
    );
    assert!(
        lines[2].ends_with(" ms <- PUBLISH qos=1 id=7 dup=0 topic=\"a/b\" payload=3B(\"abc\")"),
        "{rendered}"
    );
    assert!(lines[3].ends_with(" ms <- (closed by peer)"), "{rendered}");
    // Times are milliseconds with three decimals, right-aligned.
    let time = lines[1].split(" ms").next().expect("a time").trim();
    assert_eq!(time.split('.').nth(1).map(str::len), Some(3), "{rendered}");

    let with_raw = probe.trace().render(true);
    assert!(with_raw.contains("\n                10 "), "{with_raw}");
}

#[tokio::test]
async fn bytes_arriving_one_at_a_time_still_decode() {
    // Goal: framing copes with any split of the stream. Method: the fake broker writes a CONNACK
    // and a PUBLISH one byte at a time, flushing and pausing after each.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        let mut bytes = encoded(&connack_with_keep_alive(false, 5), ProtocolVersion::V5);
        let publish = Publish {
            topic: "a/b".into(),
            payload: "byte by byte".into(),
            ..Publish::default()
        };
        bytes.extend(encoded(&Packet::Publish(publish), ProtocolVersion::V5));
        for byte in bytes {
            connection.write(&[byte]).await;
            sleep(Duration::from_millis(1)).await;
        }
        sleep(Duration::from_millis(500)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    probe
        .expect(
            &Pattern::connack().property(PropertyExpectation::equals(PropertyId::ServerKeepAlive, 5u16)),
            WITHIN,
        )
        .await
        .expect("CONNACK");
    probe
        .expect(&Pattern::publish().topic("a/b").payload("byte by byte"), WITHIN)
        .await
        .expect("PUBLISH");
    assert!(probe
        .trace()
        .entries()
        .all(|entry| entry.error.is_none() && entry.note.is_none()));
    broker.abort();
}

#[tokio::test]
async fn expect_skipping_passes_over_the_packets_it_is_told_to_skip() {
    // Goal: skipped packets do not fail an expectation but stay in the trace. Method: the fake
    // broker sends two PINGRESPs before the PUBLISH the probe waits for.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        connection.send(&Packet::PingResp).await;
        connection.send(&Packet::PingResp).await;
        let publish = Publish {
            topic: "t".into(),
            ..Publish::default()
        };
        connection.send(&Packet::Publish(publish)).await;
        sleep(Duration::from_millis(500)).await;
    })
    .await;
    let mut probe = connected_probe(address).await;
    probe
        .expect_skipping(&Pattern::publish().topic("t"), WITHIN, &[Pattern::pingresp()])
        .await
        .expect("the PUBLISH after the PINGRESPs");
    let pingresp_count = probe
        .trace()
        .entries()
        .filter(|entry| entry.packet == Some(Packet::PingResp))
        .count();
    assert_eq!(pingresp_count, 2);
    broker.abort();
}

#[tokio::test]
async fn a_packet_over_the_size_limit_makes_the_stream_unreadable_but_its_close_is_still_timed() {
    // Goal: a framing error is recorded and returned once, later reads report a close, and
    // expect_close still sees the real close. Method: a probe accepting 64-byte packets receives a
    // 200-byte PUBLISH; the fake broker closes 200 ms later.
    let (address, broker) = fake_broker(|mut connection| async move {
        connection.read_packet().await;
        let publish = Publish {
            topic: "big".into(),
            payload: vec![b'x'; 200].into(),
            ..Publish::default()
        };
        connection.send(&Packet::Publish(publish)).await;
        sleep(Duration::from_millis(200)).await;
    })
    .await;
    let options = ProbeOptions::client().with_maximum_packet_size(64);
    let mut probe = Probe::connect_tcp(address, options).await.expect("connect");
    probe.send(&connect_packet()).await.expect("CONNECT");
    let error = probe.receive(WITHIN).await.expect_err("too large");
    let decode_error = error.decode_error().expect("a decode error");
    assert!(matches!(
        decode_error.kind,
        DecodeErrorKind::PacketTooLarge { maximum: 64, .. }
    ));
    assert_eq!(decode_error.reason_code, Some(ReasonCode::PACKET_TOO_LARGE));
    let error = probe.receive(WITHIN).await.expect_err("unreadable");
    assert!(matches!(error, ProbeError::Closed { .. }), "{error:?}");
    let report = probe
        .expect_close(Duration::from_millis(150)..=WITHIN)
        .await
        .expect("the real close is timed");
    assert!(report.after >= Duration::from_millis(200), "{report:?}");
    broker.await.expect("the fake broker ends");
}

#[tokio::test]
async fn a_typed_packet_the_role_may_not_send_is_refused_and_not_sent() {
    // Goal: the typed path sends only valid packets; a client may not send a CONNACK. Method: a
    // client probe over an in-memory stream tries to.
    let (client_end, _broker_end) = tokio::io::duplex(1024);
    let mut probe = Probe::new(client_end, ProbeOptions::client());
    let error = probe
        .send(&Packet::ConnAck(ConnAck::default()))
        .await
        .expect_err("refused");
    assert!(matches!(error, ProbeError::Encode(_)), "{error:?}");
    assert!(probe.trace().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_close_window_is_measured_exactly_in_simulated_time() {
    // Goal: the probe keeps time with tokio's clock, so under simulation a close is timed exactly.
    // Method: time is paused (it advances only when every task waits); a client probe and a probe
    // in the server role, as the fake broker, talk over an in-memory stream. The broker closes
    // 300 ms after the CONNECT, and the client sees it after exactly 300 ms. (The window ends at
    // 301 ms: a deadline at the very instant of the close may fire first.)
    let (client_end, broker_end) = tokio::io::duplex(4096);
    let mut client = Probe::new(client_end, ProbeOptions::client().with_version(ProtocolVersion::V3_1_1));
    let broker = tokio::spawn(async move {
        let mut broker = Probe::new(broker_end, ProbeOptions::server());
        broker.expect(&Pattern::connect(), WITHIN).await.expect("CONNECT");
        assert_eq!(
            broker.version(),
            Some(ProtocolVersion::V5),
            "the CONNECT fixes the version"
        );
        sleep(Duration::from_millis(300)).await;
        broker.close().await
    });
    client.send(&connect_packet()).await.expect("CONNECT");
    assert_eq!(
        client.version(),
        Some(ProtocolVersion::V5),
        "the CONNECT sent fixes the version"
    );
    let report = client
        .expect_close(Duration::from_millis(300)..=Duration::from_millis(301))
        .await
        .expect("closed at 300 ms");
    assert_eq!(report.after, Duration::from_millis(300));
    assert_eq!(report.at, Duration::from_millis(300));
    let broker_trace = broker.await.expect("the broker task ends");
    assert!(broker_trace
        .to_string()
        .contains("     0.000 ms <- CONNECT v5.0 client_id=\"probe-1\""));
    assert!(broker_trace
        .to_string()
        .contains("   300.000 ms -> (closed by the probe)"));
}

#[test]
fn a_pattern_of_another_packet_type_reports_only_the_type() {
    // Goal: comparing a PUBLISH pattern with a CONNACK says "wrong type", not a list of missing
    // fields. Method: match directly, no I/O.
    let differences = Pattern::publish()
        .topic("a/b")
        .matches(&Packet::ConnAck(ConnAck::default()))
        .expect_err("a CONNACK is not a PUBLISH");
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].field, "packet_type");
    assert_eq!(differences[0].expected, "PUBLISH");
    assert_eq!(differences[0].actual, "CONNACK");
}

#[test]
fn a_pattern_without_a_type_reports_fields_the_packet_does_not_have() {
    // Goal: a field the packet type lacks is a difference that says so. Method: a topic-only
    // pattern against a PINGRESP; an empty pattern matches anything.
    let differences = Pattern::default()
        .topic("a/b")
        .matches(&Packet::PingResp)
        .expect_err("a PINGRESP has no topic");
    assert_eq!(differences[0].field, "topic");
    assert_eq!(differences[0].actual, "none (PINGRESP has no topic)");
    assert_eq!(Pattern::any().matches(&Packet::PingResp), Ok(()));
}
