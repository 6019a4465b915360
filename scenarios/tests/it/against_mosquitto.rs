//! The client against a real mosquitto (Debian's, started by each test on an ephemeral loopback
//! port), in 3.1.1 and 5.0. Goal: the client interoperates with a broker it did not grow up with:
//! QoS 0/1/2 round trips, session resume with resend after the connection is cut, Server Keep
//! Alive, wills, assigned client ids; and it declares a silent broker dead in bounded time.
//! Method: real sockets on 127.0.0.1; faults through the loopback fault proxy; every wait bounded.

use std::time::Duration;

use bytes::BytesMut;
use mqtt_client::{Client, ConnectOptions, Event, Events, LastWill, Message, ReconnectPolicy};
use mqtt_protocol::*;
use mqtt_scenarios::live::fault_proxy::{FaultProxy, Flow};
use mqtt_scenarios::live::mosquitto::{Mosquitto, MosquittoConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{timeout, Instant};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];
const WAIT: Duration = Duration::from_secs(5);

async fn mosquitto(config: MosquittoConfig) -> Mosquitto {
    Mosquitto::start(config)
        .await
        .expect("mosquitto starts (scripts/test installs it)")
}

async fn connect(url: &str, options: ConnectOptions) -> (Client, Events) {
    Client::connect(url, options)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"))
}

/// Waits (bounded) for the next event that `select` picks.
async fn next_event<T>(events: &mut Events, mut select: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Some(event)) => {
                if let Some(found) = select(event) {
                    return found;
                }
            }
            Ok(None) => panic!("the client stopped"),
            Err(_) => panic!("no such event within {WAIT:?}"),
        }
    }
}

/// Decodes every client-to-server packet the proxy recorded on one connection.
fn decode_recorded(bytes: Vec<u8>) -> Vec<Packet> {
    let mut buf = BytesMut::from(&bytes[..]);
    let mut context = DecodeContext::server();
    let mut packets = Vec::new();
    while let Some(packet) = decode(&mut buf, &context).expect("the client sends valid packets") {
        if let Packet::Connect(connect) = &packet {
            context = context.with_version(connect.protocol);
        }
        packets.push(packet);
    }
    packets
}

#[tokio::test]
async fn qos_0_1_2_round_trip_through_mosquitto_in_3_1_1_and_5_0() {
    let broker = mosquitto(MosquittoConfig::default()).await;
    for version in VERSIONS {
        let (subscriber, mut messages) = connect(
            &broker.url(),
            ConnectOptions::new(format!("sub-{version}")).version(version),
        )
        .await;
        let suback = subscriber
            .subscribe_one("rt/#", SubscriptionOptions::with_qos(QoS::ExactlyOnce))
            .await
            .unwrap();
        assert_eq!(suback.reason_codes, [ReasonCode::GRANTED_QOS_2]);
        let (publisher, _events) = connect(
            &broker.url(),
            ConnectOptions::new(format!("pub-{version}")).version(version),
        )
        .await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let topic = format!("rt/{}", qos.as_u8());
            let outcome = publisher
                .publish_and_wait(Message::new(topic.clone(), format!("{version} {qos:?}"), qos))
                .await
                .unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::SUCCESS, "{version} {qos:?}");
            let received = messages.next_message(WAIT).await.unwrap();
            assert_eq!(
                (received.topic.as_str(), received.qos),
                (topic.as_str(), qos),
                "{version}"
            );
            assert_eq!(received.payload, format!("{version} {qos:?}"));
        }
        publisher.disconnect().await.unwrap();
        subscriber.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn an_unacknowledged_publish_is_resent_with_dup_and_the_same_id_after_the_connection_is_cut() {
    // Method: the proxy lets the client's PUBLISH reach mosquitto but drops the broker's answer,
    // then cuts the connection; the client reconnects through the proxy, and the proxy's record
    // of the second connection shows what the client resent.
    let broker = mosquitto(MosquittoConfig::default()).await;
    for version in VERSIONS {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let proxy = FaultProxy::start_recording(broker.address()).await.unwrap();
            let (watcher, mut watched) = connect(
                &broker.url(),
                ConnectOptions::new(format!("watch-{version}-{qos:?}")).version(version),
            )
            .await;
            let topic = format!("resume/{version}/{}", qos.as_u8());
            watcher
                .subscribe_one(&topic, SubscriptionOptions::with_qos(QoS::AtMostOnce))
                .await
                .unwrap();

            let options = ConnectOptions::new(format!("resume-{version}-{qos:?}"))
                .version(version)
                .session_expiry_interval_s(60)
                .clean_start(!matches!(version, ProtocolVersion::V3_1_1))
                .reconnect(ReconnectPolicy {
                    delay_initial: Duration::from_millis(50),
                    ..ReconnectPolicy::default()
                });
            let url = format!("mqtt://{}", proxy.address());
            let (client, mut events) = connect(&url, options).await;
            proxy.partition_flow(Flow::BrokerToClient);
            let handle = client.publish(Message::new(topic.clone(), "m1", qos)).await.unwrap();
            // mosquitto has answered (PUBACK or PUBREC) once the proxy has dropped bytes towards the
            // client. (It releases a QoS 2 message to subscribers only at PUBREL, so the watcher
            // cannot tell for QoS 2.)
            let deadline = Instant::now() + WAIT;
            while proxy.bytes_dropped(Flow::BrokerToClient) == 0 {
                assert!(
                    Instant::now() < deadline,
                    "{version} {qos:?}: mosquitto never answered the PUBLISH"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            proxy.repair_flow(Flow::BrokerToClient);
            proxy.reset();
            // The first Connected event is the initial connection's: wait for the reconnect's.
            next_event(&mut events, |event| {
                matches!(event, Event::Reconnecting { .. }).then_some(())
            })
            .await;
            let session_present = next_event(&mut events, |event| match event {
                Event::Connected { session_present, .. } => Some(session_present),
                _ => None,
            })
            .await;
            assert!(session_present, "{version} {qos:?}: the session must resume");
            let outcome = handle.wait().await.unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::SUCCESS);
            assert_eq!(
                watched.next_message(WAIT).await.unwrap().payload,
                "m1",
                "{version} {qos:?}"
            );

            let first = decode_recorded(proxy.recorded(0, Flow::ClientToBroker));
            let second = decode_recorded(proxy.recorded(1, Flow::ClientToBroker));
            let Some(Packet::Publish(original)) = first.iter().find(|p| matches!(p, Packet::Publish(_))) else {
                panic!("{version} {qos:?}: no PUBLISH on the first connection: {first:?}")
            };
            assert!(!original.dup);
            let Packet::Connect(reconnect) = &second[0] else {
                panic!("{second:?}")
            };
            assert!(
                !reconnect.clean_start,
                "{version} {qos:?}: the reconnect resumes the session"
            );
            let Packet::Publish(resent) = &second[1] else {
                panic!("{version} {qos:?}: {second:?}")
            };
            assert!(resent.dup, "{version} {qos:?}: the resend carries DUP");
            assert_eq!(
                resent.packet_id, original.packet_id,
                "{version} {qos:?}: same packet id"
            );
            assert_eq!(resent.payload, "m1");
            client.disconnect().await.unwrap();
            watcher.disconnect().await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_client_adopts_mosquittos_server_keep_alive_and_pings_on_it() {
    // mosquitto 2.0 refuses a max_keepalive below 10 s, so this test idles for 10 s.
    let broker = mosquitto(MosquittoConfig {
        max_keepalive_s: Some(10),
        ..MosquittoConfig::default()
    })
    .await;
    let (client, _events) = connect(&broker.url(), ConnectOptions::new("ka").keep_alive_s(60)).await;
    assert_eq!(
        client.info().keep_alive,
        Some(Duration::from_secs(10)),
        "5.0 MQTT-3.2.2-21"
    );
    let connected_at = Instant::now();
    let deadline = connected_at + Duration::from_secs(12);
    while client
        .statistics()
        .pings_sent
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "no PINGREQ within 12 s of an idle 10 s keep alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        connected_at.elapsed() >= Duration::from_millis(9900),
        "pinged before the keep alive was up"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        client.info().connected,
        "mosquitto answered the PINGREQ and kept the connection"
    );
    client.disconnect().await.unwrap();
}

/// A listener that completes CONNECT / CONNACK, then reads everything and answers nothing.
async fn silent_broker(version: ProtocolVersion) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        loop {
            if let Ok(Some(Packet::Connect(_))) = decode(&mut buf, &DecodeContext::server()) {
                break;
            }
            if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
        let mut connack = BytesMut::new();
        encode(&Packet::ConnAck(ConnAck::default()), version, &mut connack).unwrap();
        socket.write_all(&connack).await.unwrap();
        let mut sink = [0u8; 1024];
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    address
}

#[tokio::test]
async fn a_broker_silent_after_connack_is_declared_dead_within_keep_alive_plus_the_ping_timeout() {
    // The stated bound: the client pings after one idle keep alive (1 s) and declares the broker
    // dead when no PINGRESP comes within ping_timeout (1 s): 2 s, plus 500 ms of scheduling slack.
    for version in VERSIONS {
        let address = silent_broker(version).await;
        let mut options = ConnectOptions::new("silent").version(version).keep_alive_s(1);
        options.ping_timeout = Duration::from_secs(1);
        let (client, mut events) = connect(&format!("mqtt://{address}"), options).await;
        let connected_at = Instant::now();
        let reason = next_event(&mut events, |event| match event {
            Event::Disconnected { reason } => Some(reason),
            _ => None,
        })
        .await;
        let elapsed = connected_at.elapsed();
        assert!(reason.contains("PINGRESP"), "{version}: {reason}");
        assert!(
            elapsed >= Duration::from_millis(1950),
            "{version}: declared dead early, after {elapsed:?}"
        );
        assert!(
            elapsed <= Duration::from_millis(2500),
            "{version}: declared dead late, after {elapsed:?}"
        );
        assert_eq!(
            client
                .statistics()
                .pings_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}

#[tokio::test]
async fn the_will_reaches_subscribers_when_the_connection_is_cut() {
    let broker = mosquitto(MosquittoConfig::default()).await;
    for version in VERSIONS {
        let (watcher, mut watched) = connect(
            &broker.url(),
            ConnectOptions::new(format!("will-watch-{version}")).version(version),
        )
        .await;
        let topic = format!("will/{version}");
        watcher
            .subscribe_one(&topic, SubscriptionOptions::with_qos(QoS::AtLeastOnce))
            .await
            .unwrap();
        let proxy = FaultProxy::start(broker.address()).await.unwrap();
        let will = LastWill {
            topic: topic.clone(),
            payload: "gone".into(),
            qos: QoS::AtLeastOnce,
            ..LastWill::default()
        };
        let (_client, _events) = connect(
            &format!("mqtt://{}", proxy.address()),
            ConnectOptions::new(format!("will-{version}"))
                .version(version)
                .will(will),
        )
        .await;
        proxy.reset();
        let message = watched.next_message(WAIT).await.unwrap();
        assert_eq!(
            (message.topic.as_str(), &message.payload[..]),
            (topic.as_str(), &b"gone"[..])
        );
    }
}

#[tokio::test]
async fn an_empty_client_id_in_5_0_is_replaced_by_the_assigned_one() {
    let broker = mosquitto(MosquittoConfig::default()).await;
    let (client, _events) = connect(&broker.url(), ConnectOptions::new("")).await;
    let client_id = client.info().client_id;
    assert!(
        !client_id.is_empty(),
        "mosquitto assigns an id and the client adopts it"
    );
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_dead_broker_is_reported_as_connection_refused_to_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Err(error) = Client::connect(&format!("mqtt://127.0.0.1:{port}"), ConnectOptions::new("c")).await else {
        panic!("nothing listens there")
    };
    assert_eq!(error.to_string(), format!("connection refused to 127.0.0.1:{port}"));
}

#[test]
fn broker_urls_parse_with_default_ports_and_readable_errors() {
    use mqtt_client::options::Scheme;
    let url: mqtt_client::BrokerUrl = "mqtt://broker.local".parse().unwrap();
    assert_eq!(
        (url.scheme, url.host.as_str(), url.port),
        (Scheme::Mqtt, "broker.local", 1883)
    );
    let url: mqtt_client::BrokerUrl = "mqtts://[::1]:8884".parse().unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.authority()),
        ("::1", 8884, "[::1]:8884".to_owned())
    );
    let url: mqtt_client::BrokerUrl = "ws://h".parse().unwrap();
    assert_eq!((url.port, url.path.as_str()), (80, "/mqtt"));
    let error = "127.0.0.1:1883".parse::<mqtt_client::BrokerUrl>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "`127.0.0.1:1883` has no scheme: write it as mqtt://host:port"
    );
    assert!("mqtt://h:notaport".parse::<mqtt_client::BrokerUrl>().is_err());
    assert!("http://h".parse::<mqtt_client::BrokerUrl>().is_err());
}
