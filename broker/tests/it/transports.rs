//! TLS and WebSocket, both sides, with certificates made by rcgen for each test: our client over
//! mqtts://, ws:// and wss:// against the reference broker and against mosquitto configured with
//! TLS and WebSocket listeners; mosquitto_pub / mosquitto_sub over TLS (with and without client
//! certificates) and paho-mqtt over WebSocket and WSS against the reference broker. Then bad input:
//! a plain client on the TLS port, a certificate for another host, an expired one, a missing client
//! certificate, an upgrade without the `mqtt` subprotocol. None of them may crash or stall the
//! broker: after each, a good client still gets its round trip.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use mqtt_broker::listener::{ListenSpec, ListenerOptions, MqttListener};
use mqtt_broker::server::Server;
use mqtt_broker::{Broker, Config};
use mqtt_client::transport::tls::ServerTlsOptions;
use mqtt_client::transport::TlsOptions;
use mqtt_client::{Client, ClientError, ConnectOptions, Event, Message};
use mqtt_protocol::{QoS, SubscriptionOptions};
use mqtt_scenarios::live::mosquitto::{Mosquitto, MosquittoConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::certs::Certificates;

/// The longest one step may take (a connect, a round trip, a client process).
const WAIT: Duration = Duration::from_secs(15);

/// The Python the Debian paho package (1.6) is installed for.
const PYTHON: &str = "/usr/bin/python3";

/// The reference broker on the listeners given, on port 0 of 127.0.0.1; stops when dropped.
struct Served {
    urls: Vec<String>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(listens: &[&str], tls: Option<ServerTlsOptions>) -> Served {
        let mut options = ListenerOptions::new();
        options.tls = tls;
        options.handshake_timeout = Duration::from_secs(3);
        let mut listeners = Vec::new();
        for listen in listens {
            let spec: ListenSpec = listen.parse().unwrap();
            listeners.push(
                MqttListener::bind(&spec, &options)
                    .await
                    .unwrap_or_else(|error| panic!("{error}")),
            );
        }
        let urls = listeners.iter().map(MqttListener::describe).collect();
        let server = Server::new(listeners, Broker::new(Config::default()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Served {
            urls,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, scheme: &str) -> String {
        self.urls
            .iter()
            .find(|url| url.starts_with(&format!("{scheme}://")))
            .unwrap_or_else(|| panic!("no {scheme}:// listener among {:?}", self.urls))
            .clone()
    }

    /// The same URL with `localhost` for the host, as a certificate names it.
    fn localhost_url(&self, scheme: &str) -> String {
        self.url(scheme).replace("127.0.0.1", "localhost")
    }

    fn port(&self, scheme: &str) -> u16 {
        let url = self.url(scheme);
        let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
        authority.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Subscribes, publishes one QoS 1 message to itself over `url`, and receives it.
async fn round_trip(url: &str, tls: TlsOptions, name: &str) -> Result<(), ClientError> {
    let mut options = ConnectOptions::new(format!("tls-{name}"));
    options.tls = tls;
    options.connect_timeout = Duration::from_secs(5);
    let (client, mut events) = Client::connect(url, options).await?;
    let topic = format!("transports/{name}");
    client
        .subscribe_one(&topic, SubscriptionOptions::with_qos(QoS::AtLeastOnce))
        .await?;
    client
        .publish_and_wait(Message::new(
            topic.as_str(),
            Bytes::from_static(b"over the wire"),
            QoS::AtLeastOnce,
        ))
        .await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match timeout(deadline - tokio::time::Instant::now(), events.recv()).await {
            Ok(Some(Event::Message(publish))) if publish.topic == topic.as_str() => {
                assert_eq!(&publish.payload[..], b"over the wire");
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(ClientError::Closed("events ended".into())),
            Err(_) => return Err(ClientError::Timeout(WAIT)),
        }
    }
    client.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn our_client_round_trips_over_tls_ws_and_wss_against_the_reference_broker() {
    let certificates = Certificates::make("ours");
    let served = Served::start(
        &["mqtts://127.0.0.1:0", "ws://127.0.0.1:0", "wss://127.0.0.1:0/mqtt"],
        Some(certificates.server_tls("server", false)),
    )
    .await;
    for (scheme, name) in [("mqtts", "tls"), ("ws", "ws"), ("wss", "wss")] {
        let url = served.localhost_url(scheme);
        round_trip(&url, certificates.client_tls(), name)
            .await
            .unwrap_or_else(|error| panic!("{url}: {error}"));
    }
    // By IP address too: the certificate names 127.0.0.1.
    round_trip(&served.url("mqtts"), certificates.client_tls(), "tls-ip")
        .await
        .unwrap();
}

#[tokio::test]
async fn client_certificates_are_required_when_the_broker_has_a_client_ca() {
    let certificates = Certificates::make("client-ca");
    let served = Served::start(&["mqtts://127.0.0.1:0"], Some(certificates.server_tls("server", true))).await;
    let url = served.localhost_url("mqtts");
    round_trip(&url, certificates.client_tls_with_certificate(), "with-certificate")
        .await
        .unwrap();
    let error = round_trip(&url, certificates.client_tls(), "without-certificate")
        .await
        .expect_err("a client without a certificate must be refused");
    // TLS 1.3 reports the refusal after the handshake: at the CONNECT or the CONNACK.
    let message = error.to_string();
    assert!(
        message.contains("certificate")
            || message.contains("closed")
            || message.contains("ended")
            || message.contains("reset"),
        "{message}"
    );
    round_trip(&url, certificates.client_tls_with_certificate(), "still-served")
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_certificates_and_plain_clients_get_a_clear_error_and_cost_nobody_else() {
    let certificates = Certificates::make("bad");
    let served = Served::start(&["mqtts://127.0.0.1:0"], Some(certificates.server_tls("server", false))).await;
    let port = served.port("mqtts");

    // A plain MQTT client on the TLS port: no CONNACK, the broker drops it after the handshake fails.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    plain
        .write_all(&[
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x00,
        ])
        .await
        .unwrap();
    let mut answer = [0u8; 64];
    let read = timeout(WAIT, plain.read(&mut answer))
        .await
        .expect("the broker must not leave it hanging");
    assert!(
        !matches!(read, Ok(n) if n >= 2 && answer[0] == 0x20),
        "a plain CONNECT on the TLS port must get no CONNACK"
    );

    // A client that does not trust the server's CA.
    let untrusting = TlsOptions {
        cafile: Some(certificates.path("client-ca.pem")),
        ..TlsOptions::default()
    };
    let error = round_trip(&served.localhost_url("mqtts"), untrusting, "untrusted")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS handshake with"), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");

    // --insecure accepts it, loudly, elsewhere; the connection works.
    let insecure = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    round_trip(&served.localhost_url("mqtts"), insecure, "insecure")
        .await
        .unwrap();
    round_trip(&served.localhost_url("mqtts"), certificates.client_tls(), "after-bad")
        .await
        .unwrap();

    // A server whose certificate names another host, and one whose certificate expired.
    for (name, expected) in [("other-host", "not valid for name"), ("expired", "expired")] {
        let other = Served::start(&["mqtts://127.0.0.1:0"], Some(certificates.server_tls(name, false))).await;
        let error = round_trip(&other.localhost_url("mqtts"), certificates.client_tls(), name)
            .await
            .unwrap_err();
        assert!(error.to_string().contains(expected), "{name}: {error}");
    }
}

#[tokio::test]
async fn a_websocket_upgrade_without_the_mqtt_subprotocol_is_refused_with_a_reason() {
    let served = Served::start(&["ws://127.0.0.1:0/mqtt"], None).await;
    let port = served.port("ws");
    for (path, protocol, status) in [
        ("/mqtt", "", "400"),
        ("/mqtt", "Sec-WebSocket-Protocol: chat\r\n", "400"),
        ("/elsewhere", "Sec-WebSocket-Protocol: mqtt\r\n", "404"),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = timeout(WAIT, stream.read_to_end(&mut response))
            .await
            .expect("the broker must answer and close");
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{path} {protocol:?}: {response}"
        );
    }
    round_trip(&served.url("ws"), TlsOptions::default(), "ws-after-refusals")
        .await
        .unwrap();
}

/// Runs `program` with `args`, bounded by [`WAIT`]; its stdout, or why it failed.
async fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("{program} could not start (is it installed? scripts/test installs it): {error}"))?;
    let output = timeout(WAIT, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} did not finish within {WAIT:?}"))?
        .map_err(|error| error.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{program} {args:?}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// mosquitto_sub waits for one message while mosquitto_pub sends it; both over TLS.
async fn mosquitto_clients_round_trip(port: u16, tls: &[&str], topic: &str) -> Result<(), String> {
    let port = port.to_string();
    let mut sub_args = vec![
        "-h",
        "localhost",
        "-p",
        &port,
        "-t",
        topic,
        "-C",
        "1",
        "-W",
        "10",
        "-V",
        "5",
    ];
    sub_args.extend_from_slice(tls);
    let sub_args: Vec<String> = sub_args.iter().map(|arg| arg.to_string()).collect();
    let subscriber = tokio::spawn(async move {
        let args: Vec<&str> = sub_args.iter().map(String::as_str).collect();
        run("mosquitto_sub", &args).await
    });
    // mosquitto_sub subscribes within this; the message is retained besides, so a late subscribe
    // still gets it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pub_args = vec![
        "-h",
        "localhost",
        "-p",
        &port,
        "-t",
        topic,
        "-m",
        "hello-tls",
        "-q",
        "1",
        "-r",
        "-V",
        "5",
    ];
    pub_args.extend_from_slice(tls);
    run("mosquitto_pub", &pub_args).await?;
    let received = subscriber.await.map_err(|error| error.to_string())??;
    if received.trim() == "hello-tls" {
        Ok(())
    } else {
        Err(format!("mosquitto_sub printed {received:?}"))
    }
}

#[tokio::test]
async fn mosquitto_pub_and_sub_reach_the_reference_broker_over_tls_with_and_without_client_certificates() {
    let certificates = Certificates::make("mosquitto-clients");
    let cafile = certificates.path("ca.pem").display().to_string();
    let served = Served::start(&["mqtts://127.0.0.1:0"], Some(certificates.server_tls("server", false))).await;
    mosquitto_clients_round_trip(served.port("mqtts"), &["--cafile", &cafile], "mosquitto/tls")
        .await
        .unwrap();

    let required = Served::start(&["mqtts://127.0.0.1:0"], Some(certificates.server_tls("server", true))).await;
    let (cert, key) = (
        certificates.path("client.pem").display().to_string(),
        certificates.path("client.key").display().to_string(),
    );
    mosquitto_clients_round_trip(
        required.port("mqtts"),
        &["--cafile", &cafile, "--cert", &cert, "--key", &key],
        "mosquitto/client-cert",
    )
    .await
    .unwrap();
    let refused = run(
        "mosquitto_pub",
        &[
            "-h",
            "localhost",
            "-p",
            &required.port("mqtts").to_string(),
            "--cafile",
            &cafile,
            "-t",
            "x",
            "-m",
            "x",
            "-q",
            "1",
        ],
    )
    .await;
    assert!(refused.is_err(), "a client without a certificate must be refused");
}

#[tokio::test]
async fn paho_reaches_the_reference_broker_over_websocket_and_secure_websocket() {
    let certificates = Certificates::make("paho");
    let served = Served::start(
        &["ws://127.0.0.1:0/mqtt", "wss://127.0.0.1:0/mqtt"],
        Some(certificates.server_tls("server", false)),
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/websocket.py");
    let cafile = certificates.path("ca.pem").display().to_string();
    for (scheme, port) in [("ws", served.port("ws")), ("wss", served.port("wss"))] {
        let output = run(
            PYTHON,
            &[script, scheme, "localhost", &port.to_string(), "/mqtt", &cafile],
        )
        .await
        .unwrap_or_else(|error| panic!("{scheme}: {error}"));
        assert!(output.lines().any(|line| line == "OK"), "{scheme}: {output}");
    }
}

/// A mosquitto with a TLS and a WebSocket listener besides its plain one.
async fn mosquitto_with_tls_and_websocket(certificates: &Certificates) -> (Mosquitto, u16, u16) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (tls_port, ws_port) = (free(), free());
    // mosquitto drops to its own user when started as root: the files must be readable by it.
    for entry in std::fs::read_dir(&certificates.directory).unwrap() {
        set_readable(&entry.unwrap().path());
    }
    set_readable(&certificates.directory);
    let path = |name: &str| certificates.path(name).display().to_string();
    let config = MosquittoConfig {
        extra_lines: vec![
            format!("listener {tls_port} 127.0.0.1"),
            format!("cafile {}", path("ca.pem")),
            format!("certfile {}", path("server.pem")),
            format!("keyfile {}", path("server.key")),
            format!("listener {ws_port} 127.0.0.1"),
            "protocol websockets".to_owned(),
        ],
        ..MosquittoConfig::default()
    };
    let mosquitto = Mosquitto::start(config).await.unwrap_or_else(|error| panic!("{error}"));
    wait_for_port(tls_port).await;
    wait_for_port(ws_port).await;
    (mosquitto, tls_port, ws_port)
}

fn set_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn wait_for_port(port: u16) {
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(address).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "nothing listens on {address}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn our_client_round_trips_over_tls_and_websocket_against_mosquitto() {
    let certificates = Certificates::make("against-mosquitto");
    let (_mosquitto, tls_port, ws_port) = mosquitto_with_tls_and_websocket(&certificates).await;
    round_trip(
        &format!("mqtts://localhost:{tls_port}"),
        certificates.client_tls(),
        "m-tls",
    )
    .await
    .unwrap();
    round_trip(&format!("ws://127.0.0.1:{ws_port}/mqtt"), TlsOptions::default(), "m-ws")
        .await
        .unwrap();
}
