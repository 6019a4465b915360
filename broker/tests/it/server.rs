//! The tokio server over real loopback sockets, always with the real core. Goal: what the server
//! itself guarantees (port 0, accept, ids, a decode error ends processing, prompt shutdown, no
//! task outlives its connection, slow consumers lose QoS 0 messages and nobody waits for them),
//! and that MQTT works end to end through it.
//!
//! Method: each test binds 127.0.0.1:0, runs the server in a task with a oneshot as its shutdown
//! future, and talks to it with `mqtt_client` or the packet-level probe. Time is real, not paused:
//! the sockets are real, and every wait is bounded by a deadline of a few seconds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mqtt_broker::server::{Server, ServerOptions};
use mqtt_broker::{Broker, Config};
use mqtt_client::probe::{Pattern, Probe, ProbeOptions};
use mqtt_client::{Client, ConnectOptions, Message};
use mqtt_protocol::*;

use crate::running::Running;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Polls `condition` every 10 ms until it holds or `within` has passed; says whether it held.
async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

fn connect_packet(version: ProtocolVersion, client_id: &str) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive_s: 60,
        client_id: client_id.into(),
        ..Connect::default()
    }))
}

async fn probe(running: &Running) -> Probe {
    Probe::connect_tcp(running.address, ProbeOptions::client())
        .await
        .expect("the probe connects")
}

#[tokio::test]
async fn the_server_listens_on_port_0_and_accepts_every_connection() {
    let running = Running::start_default().await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(TcpStream::connect(running.address).await.expect("connect"));
    }
    let statistics = running.statistics.clone();
    assert!(
        eventually(WAIT, || load(&statistics.connections_accepted) == 3
            && load(&statistics.connections_open) == 3)
        .await,
        "{statistics:?}"
    );
    drop(streams);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_connections_open_and_close_without_leaving_a_task_behind() {
    // Goal: every connection's reader and writer end when the client goes, whatever it sent.
    // Method: 500 connections, a third silent, a third with a CONNECT, a third with garbage; drop
    // them all; the open count must come back to zero. A connection whose decode error the core
    // leaves open is closed by the server after 1 s here.
    let options = ServerOptions {
        decode_error_close_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    let running = Running::start(Config::default(), options).await;
    let mut streams = Vec::new();
    for index in 0..500 {
        let mut stream = TcpStream::connect(running.address).await.expect("connect");
        let mut bytes = bytes::BytesMut::new();
        match index % 3 {
            0 => {}
            1 => encode(
                &connect_packet(ProtocolVersion::V3_1_1, &format!("c{index}")),
                ProtocolVersion::V3_1_1,
                &mut bytes,
            )
            .expect("a valid CONNECT"),
            _ => bytes.extend_from_slice(&[0x00, 0x00]),
        }
        tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes)
            .await
            .expect("write");
        streams.push(stream);
    }
    let statistics = running.statistics.clone();
    assert!(
        eventually(WAIT, || load(&statistics.connections_accepted) == 500).await,
        "{statistics:?}"
    );
    drop(streams);
    assert!(
        eventually(WAIT, || load(&statistics.connections_open) == 0).await,
        "connections still open: {statistics:?}"
    );
    let statistics = running.stop().await;
    assert_eq!(load(&statistics.connections_accepted), 500);
    assert_eq!(load(&statistics.connections_open), 0);
}

#[tokio::test]
async fn after_a_decode_error_nothing_more_reaches_the_core_and_the_connection_closes() {
    // Goal: MQTT-3.1.4-6 on the server's side: after bytes that fail decoding, the reader hands
    // nothing more to the core (not even the valid CONNECT that follows), and the connection is
    // closed: by the core, or by the server if the core leaves it open past the timeout.
    // Method: a probe sends packet type 0 (reserved) and a valid CONNECT in one write.
    let options = ServerOptions {
        decode_error_close_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    };
    let running = Running::start(Config::default(), options).await;
    let mut probe = probe(&running).await;
    let mut bytes = bytes::BytesMut::from(&[0x00u8, 0x00][..]);
    encode(
        &connect_packet(ProtocolVersion::V3_1_1, "after-garbage"),
        ProtocolVersion::V3_1_1,
        &mut bytes,
    )
    .expect("a valid CONNECT");
    probe.send_raw(&bytes).await.expect("send");
    let report = probe
        .expect_close(Duration::ZERO..=Duration::from_secs(3))
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", probe.trace()));
    assert!(
        report
            .others
            .iter()
            .all(|incoming| !matches!(incoming, mqtt_client::probe::Incoming::Packet(Packet::ConnAck(_)))),
        "the CONNECT after the garbage was answered: {}",
        probe.trace()
    );
    let statistics = running.statistics.clone();
    assert!(eventually(WAIT, || load(&statistics.connections_open) == 0).await);
    assert_eq!(load(&statistics.decode_errors), 1);
    assert_eq!(
        load(&statistics.packets_received),
        0,
        "nothing after the decode error reached the core"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_reader_stops_reading_after_a_decode_error() {
    // Goal: after a decode error the server does not even read (TCP holds the client back) while
    // the core decides. Method: with a long close timeout, send garbage, then keep writing until
    // a write stalls; the bytes must stop being taken long before the 64 MiB offered are.
    let options = ServerOptions {
        decode_error_close_timeout: Duration::from_secs(30),
        ..ServerOptions::default()
    };
    let running = Running::start(Config::default(), options).await;
    let mut stream = TcpStream::connect(running.address).await.expect("connect");
    let garbage = vec![0u8; 64 * 1024];
    let mut written_byte_count = 0usize;
    let writing = timeout(Duration::from_secs(3), async {
        // Bounded: 1024 writes of 64 KiB at most.
        for _ in 0..1024 {
            if tokio::io::AsyncWriteExt::write_all(&mut stream, &garbage)
                .await
                .is_err()
            {
                // The core closed the connection after the decode error: also fine.
                return "closed";
            }
            written_byte_count += garbage.len();
        }
        "all written"
    })
    .await;
    assert_ne!(
        writing,
        Ok("all written"),
        "the server kept taking bytes after a decode error"
    );
    if writing.is_err() {
        // Stalled: what was taken fits in the socket buffers, not in 64 MiB.
        assert!(
            written_byte_count < 32 * 1024 * 1024,
            "{written_byte_count} bytes taken"
        );
    }
    let statistics = running.statistics.clone();
    assert_eq!(load(&statistics.decode_errors), 1);
    assert_eq!(load(&statistics.packets_received), 0);
    drop(stream);
    running.stop().await;
}

#[tokio::test]
async fn shutdown_ends_run_promptly_closes_every_connection_and_the_listener() {
    let running = Running::start_default().await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(TcpStream::connect(running.address).await.expect("connect"));
    }
    let statistics = running.statistics.clone();
    assert!(eventually(WAIT, || load(&statistics.connections_open) == 3).await);
    let address = running.address;
    let started = Instant::now();
    let statistics = running.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "run took {:?} to stop",
        started.elapsed()
    );
    assert_eq!(load(&statistics.connections_open), 0);
    for mut stream in streams {
        let mut byte = [0u8; 1];
        let read = timeout(WAIT, stream.read(&mut byte)).await.expect("the close arrives");
        assert!(matches!(read, Ok(0) | Err(_)), "the connection is closed: {read:?}");
    }
    assert!(TcpStream::connect(address).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn several_listeners_feed_one_broker() {
    let listeners = vec![
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    ];
    let server = Server::new(listeners, Broker::new(Config::default()));
    let addresses = server.local_addrs().expect("addresses");
    let statistics = server.statistics();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let _first = TcpStream::connect(addresses[0]).await.expect("connect to the first");
    let _second = TcpStream::connect(addresses[1]).await.expect("connect to the second");
    assert!(eventually(WAIT, || load(&statistics.connections_accepted) == 2).await);
    let _ = stop.send(());
    timeout(WAIT, task).await.expect("stops").expect("no panic");
}

// The tests below need the core's behaviour (CONNECT, SUBSCRIBE, PUBLISH, shutdown).

#[tokio::test]
async fn a_3_1_1_connect_through_the_server_gets_connack_0_and_pings_are_answered() {
    let running = Running::start_default().await;
    let mut probe = probe(&running).await;
    probe
        .send(&connect_packet(ProtocolVersion::V3_1_1, "probe-311"))
        .await
        .expect("send");
    let result = probe
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
        .await;
    result.unwrap_or_else(|error| panic!("{error}\n{}", probe.trace()));
    probe.send(&Packet::PingReq).await.expect("send");
    probe
        .expect(&Pattern::pingresp(), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", probe.trace()));
    let statistics = running.stop().await;
    assert_eq!(load(&statistics.packets_received), 2);
    assert_eq!(load(&statistics.packets_sent), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_client_publishes_and_subscribes_through_the_server_in_3_1_1_and_5_0() {
    let running = Running::start_default().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (subscriber, mut messages) = Client::connect(
            &running.url(),
            ConnectOptions::new(format!("sub-{version}")).version(version),
        )
        .await
        .expect("the subscriber connects");
        let suback = subscriber
            .subscribe_one("server/+/t", SubscriptionOptions::with_qos(QoS::AtLeastOnce))
            .await
            .expect("subscribe");
        assert_eq!(suback.reason_codes, [ReasonCode::GRANTED_QOS_1]);
        let (publisher, _events) = Client::connect(
            &running.url(),
            ConnectOptions::new(format!("pub-{version}")).version(version),
        )
        .await
        .expect("the publisher connects");
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let payload = format!("{version} {qos:?}");
            publisher
                .publish_and_wait(Message::new("server/a/t", Bytes::from(payload.clone()), qos))
                .await
                .expect("publish");
            let received = messages.next_message(WAIT).await.expect("the message arrives");
            assert_eq!(received.topic, "server/a/t");
            assert_eq!(received.payload, payload.as_bytes());
        }
        publisher.disconnect().await.expect("disconnect");
        subscriber.disconnect().await.expect("disconnect");
    }
    running.stop().await;
}

#[tokio::test]
async fn shutdown_sends_5_0_clients_disconnect_0x8b_before_closing() {
    let running = Running::start_default().await;
    let mut probe = probe(&running).await;
    probe
        .send(&connect_packet(ProtocolVersion::V5, "probe-5"))
        .await
        .expect("send");
    probe
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", probe.trace()));
    let stopping = tokio::spawn(running.stop());
    let report = probe
        .expect_close(Duration::ZERO..=WAIT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", probe.trace()));
    let disconnect = report.disconnect.expect("a DISCONNECT before the close");
    assert_eq!(disconnect.reason_code, ReasonCode::SERVER_SHUTTING_DOWN);
    stopping.await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_loses_qos_0_messages_and_nobody_waits_for_it() {
    // Goal: the slow-consumer policy. Method: a probe subscribes at QoS 0 and never reads again; a
    // publisher sends 16 KiB QoS 0 messages until the server reports drops (bounded: 64 MiB); then
    // another client still gets an answer at once.
    let config = Config {
        outgoing_packets_max: 16,
        ..Config::default()
    };
    let running = Running::start(config, ServerOptions::default()).await;
    let mut slow = probe(&running).await;
    slow.send(&connect_packet(ProtocolVersion::V3_1_1, "slow"))
        .await
        .expect("send");
    slow.expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", slow.trace()));
    slow.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: "flood".into(),
            options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
        }],
    }))
    .await
    .expect("send");
    slow.expect(&Pattern::suback(), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", slow.trace()));

    let (publisher, _events) = Client::connect(
        &running.url(),
        ConnectOptions::new("flooder").version(ProtocolVersion::V3_1_1),
    )
    .await
    .expect("the publisher connects");
    let payload = Bytes::from(vec![0x5Au8; 16 * 1024]);
    let statistics = running.statistics.clone();
    let mut published_count = 0;
    while load(&statistics.publishes_dropped) == 0 && published_count < 4096 {
        publisher
            .publish_and_wait(Message::new("flood", payload.clone(), QoS::AtMostOnce))
            .await
            .expect("publish");
        published_count += 1;
        if published_count % 64 == 0 {
            // Let the broker task catch up with what the publisher's connection queued.
            sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(
        eventually(WAIT, || load(&statistics.publishes_dropped) > 0).await,
        "no drop after {published_count} messages: {statistics:?}"
    );

    let mut other = probe(&running).await;
    let started = Instant::now();
    other
        .send(&connect_packet(ProtocolVersion::V3_1_1, "other"))
        .await
        .expect("send");
    other
        .expect(
            &Pattern::connack().reason_code(ReasonCode::SUCCESS),
            Duration::from_secs(2),
        )
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", other.trace()));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(slow);
    running.stop().await;
}

/// A client acknowledges a resent message, closes, and reconnects at once: the acknowledgement
/// must count, though the new CONNECT is read on another connection, possibly first (connections
/// are read in parallel). The server holds a takeover CONNECT until the old connection's end has
/// reached the core; without that, a run of these went wrong up to a quarter of the time (the
/// message was resent again). 3.1.1 with Clean Session 0, 40 rounds on a 2-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_sent_just_before_a_reconnect_is_not_overtaken_by_the_new_connect() {
    let running = Running::start_default().await;
    let options = || ProbeOptions::client().with_version(ProtocolVersion::V3_1_1);
    let connect = |client_id: &str| {
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: false,
            keep_alive_s: 60,
            client_id: client_id.to_owned(),
            ..Connect::default()
        }))
    };
    let mut publisher = Probe::connect_tcp(running.address, options()).await.unwrap();
    publisher.send(&connect("overtake-pub")).await.unwrap();
    publisher.expect(&Pattern::connack(), WAIT).await.unwrap();
    for round in 0..40u16 {
        let client_id = format!("overtake-{round}");
        let topic = format!("overtake/{round}");
        let mut first = Probe::connect_tcp(running.address, options()).await.unwrap();
        first.send(&connect(&client_id)).await.unwrap();
        first.expect(&Pattern::connack(), WAIT).await.unwrap();
        first
            .send(&Packet::Subscribe(Subscribe {
                packet_id: 1,
                subscriptions: vec![Subscription {
                    filter: topic.clone(),
                    options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                }],
                ..Subscribe::default()
            }))
            .await
            .unwrap();
        first.expect(&Pattern::suback(), WAIT).await.unwrap();
        publisher
            .send(&Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: topic.as_str().into(),
                packet_id: Some(round + 1),
                payload: Bytes::from_static(b"m"),
                ..Publish::default()
            }))
            .await
            .unwrap();
        first.expect(&Pattern::publish(), WAIT).await.unwrap();
        drop(first); // no PUBACK: it is resent on the next connection
        let mut second = Probe::connect_tcp(running.address, options()).await.unwrap();
        second.send(&connect(&client_id)).await.unwrap();
        second.expect(&Pattern::connack(), WAIT).await.unwrap();
        let resent = second.expect(&Pattern::publish(), WAIT).await.unwrap();
        let Packet::Publish(resent) = resent else {
            unreachable!()
        };
        second
            .send(&Packet::PubAck(PublishAck::new(resent.packet_id.unwrap())))
            .await
            .unwrap();
        drop(second);
        let mut third = Probe::connect_tcp(running.address, options()).await.unwrap();
        third.send(&connect(&client_id)).await.unwrap();
        third.expect(&Pattern::connack(), WAIT).await.unwrap();
        third
            .expect_nothing(Duration::from_millis(20))
            .await
            .unwrap_or_else(|error| panic!("round {round}: the acknowledged message came again: {error}"));
    }
}

/// `$SYS/broker/...`: published through the broker's one door for messages, retained, so a client
/// that subscribes later finds them; refreshed every interval; never matched by `#` (MQTT-4.7.2-1).
#[tokio::test]
async fn system_topics_are_published_retained_and_only_to_those_who_ask_for_them() {
    let options = ServerOptions {
        sys_interval: Some(Duration::from_millis(200)),
        ..ServerOptions::default()
    };
    let running = Running::start(Config::default(), options).await;
    let (everything, mut everything_events) = Client::connect(&running.url(), ConnectOptions::new("sys-hash"))
        .await
        .unwrap();
    everything
        .subscribe_one("#", SubscriptionOptions::with_qos(QoS::AtMostOnce))
        .await
        .unwrap();
    sleep(Duration::from_millis(300)).await;
    let (watcher, mut events) = Client::connect(&running.url(), ConnectOptions::new("sys-watcher"))
        .await
        .unwrap();
    watcher
        .subscribe_one("$SYS/broker/#", SubscriptionOptions::with_qos(QoS::AtMostOnce))
        .await
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 7 && Instant::now() < deadline {
        if let Ok(Some(mqtt_client::Event::Message(publish))) = events.recv_within(WAIT).await {
            // The first copy of each: the retained one, sent on the SUBSCRIBE.
            seen.entry(publish.topic.to_string())
                .or_insert((String::from_utf8_lossy(&publish.payload).into_owned(), publish.retain));
        }
    }
    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "$SYS/broker/bytes/received",
            "$SYS/broker/bytes/sent",
            "$SYS/broker/clients/connected",
            "$SYS/broker/messages/received",
            "$SYS/broker/messages/sent",
            "$SYS/broker/uptime",
            "$SYS/broker/version",
        ]
    );
    assert!(seen["$SYS/broker/version"].0.starts_with("mqtt-harness "));
    assert!(seen["$SYS/broker/uptime"].0.ends_with(" seconds"));
    let connected: u64 = seen["$SYS/broker/clients/connected"].0.parse().unwrap();
    assert!((1..=2).contains(&connected), "{connected}");
    let received: u64 = seen["$SYS/broker/bytes/received"].0.parse().unwrap();
    assert!(received > 0);
    // A late subscriber finds them retained.
    assert!(seen.values().all(|(_, retain)| *retain), "{seen:?}");
    // `#` never matches a topic starting with `$`.
    while let Ok(Some(event)) = everything_events.recv_within(Duration::from_millis(300)).await {
        if let mqtt_client::Event::Message(publish) = event {
            panic!("`#` received {}", publish.topic);
        }
    }
}

#[tokio::test]
async fn a_packet_not_whole_within_the_packet_timeout_ends_the_connection_and_publishes_the_will() {
    // Goal: a client with keep alive 0 (no keep-alive timer) that begins a packet and never ends
    // it, or trickles it, cannot hold its connection and partial buffer forever; a client whose
    // packets keep completing is never cut, however long the stream of them lasts.
    // Method: packet timeout 600 ms. A watcher subscribes to the will topic. Client "stall" sends
    // a PUBLISH header promising 1000 bytes and 10 of them; client "trickle" sends one byte of a
    // PUBLISH every 100 ms; client "steady" sends whole PINGREQs, each split across two writes
    // 100 ms apart, for 1.5 s (past the timeout in all). The first two must close within 0.4 to
    // 1.5 s of their first byte and publish their wills; "steady" gets every PINGRESP.
    let options = ServerOptions {
        packet_timeout: Duration::from_millis(600),
        ..ServerOptions::default()
    };
    let running = Running::start(Config::default(), options).await;
    let mut watcher = probe(&running).await;
    watcher
        .send(&connect_packet(ProtocolVersion::V5, "watcher"))
        .await
        .expect("send");
    watcher.expect(&Pattern::connack(), WAIT).await.expect("CONNACK");
    watcher
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: "wills/#".into(),
                options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            }],
        }))
        .await
        .expect("send");
    watcher.expect(&Pattern::suback(), WAIT).await.expect("SUBACK");

    let connected = |name: &'static str| {
        let address = running.address;
        async move {
            let mut probe = Probe::connect_tcp(address, ProbeOptions::client())
                .await
                .expect("connects");
            let mut connect = match connect_packet(ProtocolVersion::V5, name) {
                Packet::Connect(connect) => connect,
                _ => unreachable!("a CONNECT"),
            };
            connect.keep_alive_s = 0;
            connect.will = Some(Will {
                topic: format!("wills/{name}"),
                payload: Bytes::from_static(b"gone"),
                ..Will::default()
            });
            probe.send(&Packet::Connect(connect)).await.expect("send");
            probe.expect(&Pattern::connack(), WAIT).await.expect("CONNACK");
            probe
        }
    };
    let mut stall = connected("stall").await;
    let mut trickle = connected("trickle").await;
    let mut steady = connected("steady").await;

    let started = Instant::now();
    // PUBLISH QoS 0, remaining length 1000 (0xE8 0x07), then 10 of the 1000 bytes.
    stall
        .send_raw(&[0x30, 0xE8, 0x07, 0x00, 0x05, b't', b'o', b'p', b'i', b'c', 0x00, 1, 2])
        .await
        .expect("send");
    let trickled = async {
        let publish = [0x30u8, 0x20, 0x00, 0x05, b't', b'o', b'p', b'i', b'c', 0x00];
        for byte in publish {
            if trickle.send_raw(&[byte]).await.is_err() {
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
        trickle
            .expect_close_since(started, Duration::from_millis(400)..=Duration::from_millis(1500))
            .await
    };
    let steadily = async {
        for _ in 0..16 {
            steady.send_raw(&[0xC0]).await.expect("the steady client is not cut");
            sleep(Duration::from_millis(100)).await;
            steady.send_raw(&[0x00]).await.expect("the steady client is not cut");
            steady.expect(&Pattern::pingresp(), WAIT).await.expect("PINGRESP");
        }
    };
    let stalled = stall.expect_close_since(started, Duration::from_millis(400)..=Duration::from_millis(1500));
    let (stalled, trickled, ()) = tokio::join!(stalled, trickled, steadily);
    stalled.unwrap_or_else(|error| panic!("the stalled client: {error}\n{}", stall.trace()));
    trickled.unwrap_or_else(|error| panic!("the trickling client: {error}\n{}", trickle.trace()));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "steady ran past the timeout"
    );

    let mut wills = Vec::new();
    for _ in 0..2 {
        match watcher.expect(&Pattern::publish(), WAIT).await.expect("a will") {
            Packet::Publish(publish) => wills.push(publish.topic),
            other => panic!("not a PUBLISH: {other:?}"),
        }
    }
    wills.sort();
    assert_eq!(wills, ["wills/stall", "wills/trickle"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_never_reads_its_acknowledgements_stops_being_read() {
    // Goal: the acknowledgements of a client that never reads cannot pile up in the broker
    // without a bound: once its unwritten queue passes what a subscriber's can hold, the broker
    // stops reading it and it is held back through TCP. Before this, the broker read such a
    // client as fast as it could send and queued every PUBACK.
    // Method: outgoing_packets_max 100 and an in-flight window of 10, so the pause comes at 1,134
    // unwritten packets. A probe publishes QoS 1 in 64 KiB batches without reading, for at most
    // 30 s (the kernel's socket buffers take megabytes of PUBACKs first: about 6 s here): a write
    // must wait a full second (held back), and the broker's count of packets received must then
    // stand still.
    let config = Config {
        outgoing_packets_max: 100,
        inflight_count_max: 10,
        ..Config::default()
    };
    let running = Running::start(config, ServerOptions::default()).await;
    let options = ProbeOptions::client().with_send_timeout(Duration::from_secs(1));
    let mut probe = Probe::connect_tcp(running.address, options).await.expect("connects");
    probe
        .send(&connect_packet(ProtocolVersion::V3_1_1, "storm"))
        .await
        .expect("send");
    probe.expect(&Pattern::connack(), WAIT).await.expect("CONNACK");
    let mut batch = bytes::BytesMut::new();
    let mut packet_id: u16 = 0;
    while batch.len() < 64 * 1024 {
        packet_id += 1;
        encode(
            &Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: "storm".into(),
                packet_id: Some(packet_id),
                payload: Bytes::from_static(b"0123456789"),
                ..Publish::default()
            }),
            ProtocolVersion::V3_1_1,
            &mut batch,
        )
        .expect("a valid PUBLISH");
    }
    let started = Instant::now();
    let held_back = loop {
        match probe.send_raw(&batch).await {
            Ok(()) if started.elapsed() < Duration::from_secs(30) => {}
            Ok(()) => break false,
            Err(mqtt_client::probe::ProbeError::SendTimeout { .. }) => break true,
            Err(error) => panic!("the connection failed: {error}"),
        }
    };
    let received = load(&running.statistics.packets_received);
    assert!(
        held_back,
        "30 s of publishing, never held back; {received} packets received"
    );
    sleep(Duration::from_millis(500)).await;
    let later = load(&running.statistics.packets_received);
    assert_eq!(received, later, "the broker kept reading a client that does not read");
    running.stop().await;
}
