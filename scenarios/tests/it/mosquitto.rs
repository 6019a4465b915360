//! Tests of `mqtt_scenarios::live::mosquitto`: a real mosquitto started on an ephemeral port,
//! spoken to with raw packets from the shared codec (not the client, so these tests stand on
//! their own).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_protocol::{decode, encode, ConnAck, Connect, DecodeContext, Packet, ProtocolVersion, ReasonCode};
use mqtt_scenarios::live::mosquitto::{Mosquitto, MosquittoConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

/// How long any single network step of these tests may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `address`, sends a CONNECT with `keep_alive_s` in `version`, and returns the
/// CONNACK.
async fn connect(address: SocketAddr, version: ProtocolVersion, client_id: &str, keep_alive_s: u16) -> ConnAck {
    let mut stream = timeout(STEP_TIMEOUT, TcpStream::connect(address))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect failed");
    let connect = Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive_s,
        client_id: client_id.to_owned(),
        ..Connect::default()
    }));
    let mut out = BytesMut::new();
    encode(&connect, version, &mut out).expect("CONNECT encodes");
    timeout(STEP_TIMEOUT, stream.write_all(&out))
        .await
        .expect("writing CONNECT timed out")
        .expect("writing CONNECT failed");
    let context = DecodeContext::client(version);
    let mut received = BytesMut::with_capacity(1024);
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(packet) = decode(&mut received, &context).expect("the broker's reply decodes") {
            match packet {
                Packet::ConnAck(connack) => return connack,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut received))
            .await
            .expect("no CONNACK within 5 s")
            .expect("reading CONNACK failed");
        assert_ne!(read, 0, "the broker closed the connection instead of sending CONNACK");
    }
}

/// Waits (at most 5 s) until connecting to `address` is refused.
async fn refused_within_deadline(address: SocketAddr) -> bool {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        match timeout(Duration::from_millis(200), TcpStream::connect(address)).await {
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => return true,
            _ => sleep(Duration::from_millis(20)).await,
        }
    }
    false
}

#[tokio::test]
async fn mosquitto_starts_on_an_ephemeral_port_and_accepts_an_mqtt_3_1_1_connect() {
    // Goal: the broker is up and speaks MQTT once start returns. Method: start with the defaults,
    // check the address and URL agree with the port, send a 3.1.1 CONNECT over a raw socket and
    // expect a successful CONNACK; the log shows mosquitto's startup lines.
    let broker = Mosquitto::start(MosquittoConfig::default())
        .await
        .expect("mosquitto starts");
    assert_ne!(broker.port(), 0);
    assert_eq!(broker.address(), SocketAddr::from(([127, 0, 0, 1], broker.port())));
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));
    assert_ne!(broker.pid(), 0);

    let connack = connect(broker.address(), ProtocolVersion::V3_1_1, "it-mosquitto-311", 30).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "log:\n{}", broker.log());
    assert!(!connack.session_present);
    assert!(broker.log().contains("running"), "log:\n{}", broker.log());
    broker.stop().await;
}

#[tokio::test]
async fn two_mosquittos_run_at_once_on_different_ports() {
    // Goal: tests can run brokers side by side. Method: start two, check their ports and
    // directories differ and that each answers a CONNECT.
    let (first, second) = tokio::join!(
        Mosquitto::start(MosquittoConfig::default()),
        Mosquitto::start(MosquittoConfig::default())
    );
    let (first, second) = (first.expect("first starts"), second.expect("second starts"));
    assert_ne!(first.port(), second.port());
    assert_ne!(first.directory(), second.directory());
    assert_ne!(first.pid(), second.pid());
    for broker in [&first, &second] {
        let connack = connect(broker.address(), ProtocolVersion::V3_1_1, "it-mosquitto-two", 30).await;
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "log:\n{}", broker.log());
    }
}

#[tokio::test]
async fn dropping_a_mosquitto_stops_the_process_and_removes_its_directory() {
    // Goal: a broker never outlives its handle. Method: start one, drop it, then expect its port
    // to refuse connections (bounded wait) and its temporary directory to be gone.
    let broker = Mosquitto::start(MosquittoConfig::default())
        .await
        .expect("mosquitto starts");
    let address = broker.address();
    let directory = broker.directory().to_path_buf();
    assert!(directory.join("mosquitto.conf").is_file());
    drop(broker);
    assert!(
        refused_within_deadline(address).await,
        "{address} still accepts connections after drop"
    );
    assert!(!directory.exists(), "{} still exists after drop", directory.display());
}

#[tokio::test]
async fn stopping_a_mosquitto_closes_its_port() {
    // Goal: the async stop also ends the process. Method: stop, then expect a refused connect.
    let broker = Mosquitto::start(MosquittoConfig::default())
        .await
        .expect("mosquitto starts");
    let address = broker.address();
    broker.stop().await;
    assert!(
        refused_within_deadline(address).await,
        "{address} still accepts connections after stop"
    );
}

#[tokio::test]
async fn max_keepalive_shows_up_as_server_keep_alive_in_a_5_0_connack() {
    // Goal: MosquittoConfig reaches mosquitto. Method: set max_keepalive to 10 s, connect with
    // 5.0 asking for 60 s, and expect CONNACK's Server Keep Alive to say 10.
    let config = MosquittoConfig {
        max_keepalive_s: Some(10),
        ..MosquittoConfig::default()
    };
    let broker = Mosquitto::start(config).await.expect("mosquitto starts");
    let connack = connect(broker.address(), ProtocolVersion::V5, "it-mosquitto-keepalive", 60).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS, "log:\n{}", broker.log());
    assert_eq!(
        connack.properties.server_keep_alive_s,
        Some(10),
        "log:\n{}",
        broker.log()
    );
}

#[tokio::test]
async fn a_configuration_mosquitto_rejects_fails_at_once_with_its_log() {
    // Goal: a bad option is reported clearly, not retried on other ports. Method: mosquitto 2.0
    // refuses max_keepalive below 10; expect one attempt and mosquitto's own complaint.
    let config = MosquittoConfig {
        max_keepalive_s: Some(2),
        ..MosquittoConfig::default()
    };
    let error = Mosquitto::start(config)
        .await
        .expect_err("mosquitto refuses max_keepalive 2");
    let message = error.to_string();
    assert!(message.contains("(attempts: 1)"), "{message}");
    assert!(message.contains("max_keepalive"), "{message}");
}

#[test]
fn the_installed_mosquitto_reports_a_version() {
    // Goal: reports can name the broker version. Method: parse `mosquitto -h`; a dotted number.
    let version = mqtt_scenarios::live::mosquitto::version().expect("mosquitto -h names a version");
    assert!(
        version.split('.').all(|part| part.parse::<u32>().is_ok()),
        "odd version {version:?}"
    );
}
