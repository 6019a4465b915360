//! Authentication and authorization over real sockets: a password file written by mosquitto_passwd
//! (the third-party tool) read by the reference broker and used by mosquitto_pub / mosquitto_sub;
//! the ACL at publish, subscribe, delivery (wildcards, retained messages) and for the will;
//! SCRAM-SHA-256 with our client and re-authentication with the probe; a reload that keeps
//! connections; password hashing that does not hold other clients up; and bad input that leaves
//! the broker serving everybody else. (Each refusal code is also a row of broker/ERRORS.md.)

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_broker::security::{Acl, PasswordFile, PasswordHash, Security, SecurityFiles};
use mqtt_broker::server::ServerOptions;
use mqtt_broker::{Broker, Config};
use mqtt_client::probe::{Pattern, Probe, ProbeOptions};
use mqtt_client::scram::{self, ClientExchange, Credentials};
use mqtt_client::{Client, ConnectOptions, Event, LastWill, Message};
use mqtt_protocol::*;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use crate::running::Running;

/// The longest one step may take (a connect, a round trip, a client process).
const WAIT: Duration = Duration::from_secs(15);

/// How long to wait to be sure a message is not coming.
const QUIET: Duration = Duration::from_millis(300);

const ACL: &str = "\
topic read public/#
user alice
topic readwrite alice/#
topic read public/#
topic write will/alice
user bob
topic write public/#
topic write alice/inbox
topic write will/denied
topic write bob/#
";

/// Alice (PBKDF2, as mosquitto_passwd writes it) and bob (SCRAM keys, cheap: 64 iterations).
fn passwords() -> PasswordFile {
    let mut file = PasswordFile::default();
    file.set("alice", PasswordHash::pbkdf2_sha512(b"alice-pw", b"0123456789ab", 101));
    file.set(
        "bob",
        PasswordHash::Scram(Credentials::derive(b"bob-pw", b"0123456789abcdef", 64)),
    );
    file
}

fn security(acl: &str) -> Security {
    let mut security = Security::default();
    security.allow_anonymous = false;
    security.passwords = Some(passwords());
    security.acl = Some(Acl::parse(acl).expect("a valid ACL"));
    security
}

async fn start(security: Security) -> (Running, watch::Sender<Arc<Security>>) {
    let security = Arc::new(security);
    let (updates, receiver) = watch::channel(security.clone());
    let broker = Broker::new(Config::default()).with_security(security);
    let running = Running::try_start_with(broker, ServerOptions::default(), Some(receiver))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    (running, updates)
}

/// Our client, connected as `user` (or anonymously), its events forwarded into a channel.
async fn client(
    running: &Running,
    client_id: &str,
    user: Option<(&str, &str)>,
) -> (Client, mpsc::UnboundedReceiver<Event>) {
    let mut options = ConnectOptions::new(client_id);
    if let Some((user, password)) = user {
        options = options.credentials(user, Bytes::copy_from_slice(password.as_bytes()));
    }
    connect_with(running, options).await
}

async fn connect_with(running: &Running, mut options: ConnectOptions) -> (Client, mpsc::UnboundedReceiver<Event>) {
    options.connect_timeout = Duration::from_secs(5);
    let (client, mut events) = Client::connect(&running.url(), options)
        .await
        .unwrap_or_else(|error| panic!("connecting: {error}"));
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if sender.send(event).is_err() {
                return;
            }
        }
    });
    (client, receiver)
}

/// The messages received within `within`, as (topic, payload).
async fn messages(events: &mut mpsc::UnboundedReceiver<Event>, within: Duration) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut received = Vec::new();
    while let Ok(Some(event)) = timeout(deadline - tokio::time::Instant::now(), events.recv()).await {
        if let Event::Message(message) = event {
            received.push((
                message.topic.to_string(),
                String::from_utf8_lossy(&message.payload).into_owned(),
            ));
        }
    }
    received
}

fn message(topic: &str, payload: &'static str, retain: bool) -> Message {
    let mut message = Message::new(topic, Bytes::from_static(payload.as_bytes()), QoS::AtLeastOnce);
    message.retain = retain;
    message
}

async fn run(program: &str, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {WAIT:?}"))
        .unwrap_or_else(|error| panic!("{program} does not run ({error}): is mosquitto installed?"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_from_mosquitto_passwd_admits_its_users_to_mosquitto_pub_and_sub_and_no_one_else() {
    let directory = std::env::temp_dir().join(format!("mqtt-harness-passwd-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let file = directory.join("passwords");
    let path = file.to_str().unwrap();
    let created = run("mosquitto_passwd", &["-c", "-b", path, "carol", "carol-pw"]).await;
    assert!(created.status.success(), "mosquitto_passwd failed: {created:?}");
    let files = SecurityFiles {
        password_file: Some(file.clone()),
        ..SecurityFiles::default()
    };
    let security = files.load().unwrap_or_else(|error| panic!("{error}"));
    assert!(!security.allow_anonymous, "a password file turns anonymous access off");
    let (running, _updates) = start(security).await;
    let port = running.port();
    let common = ["-h", "127.0.0.1", "-p", &port];

    let mut subscriber = Command::new("mosquitto_sub");
    subscriber
        .args(common)
        .args([
            "-u",
            "carol",
            "-P",
            "carol-pw",
            "-t",
            "secured/t",
            "-C",
            "1",
            "-W",
            "10",
            "-q",
            "1",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let subscriber = subscriber.output();
    let publisher = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        run(
            "mosquitto_pub",
            &[
                &common[..],
                &[
                    "-u",
                    "carol",
                    "-P",
                    "carol-pw",
                    "-t",
                    "secured/t",
                    "-m",
                    "hello",
                    "-q",
                    "1",
                ],
            ]
            .concat(),
        )
        .await
    };
    let (subscribed, published) = tokio::join!(timeout(WAIT, subscriber), publisher);
    let subscribed = subscribed.expect("mosquitto_sub finished").expect("mosquitto_sub runs");
    assert!(published.status.success(), "mosquitto_pub as carol: {published:?}");
    assert_eq!(
        String::from_utf8_lossy(&subscribed.stdout).trim(),
        "hello",
        "{subscribed:?}"
    );

    // Refusals, as the real client reports them: 3.1.1 return codes 4 and 5, 5.0 0x86 and 0x87.
    for (version, credentials, expected) in [
        ("mqttv311", &["-u", "carol", "-P", "wrong"][..], "CONNACK (4)"),
        ("mqttv311", &[][..], "CONNACK (5)"),
        ("mqttv5", &["-u", "dave", "-P", "carol-pw"][..], "CONNACK (134)"),
        ("mqttv5", &[][..], "CONNACK (135)"),
    ] {
        let args = [
            &common[..],
            &["-V", version, "-d", "-t", "secured/t", "-m", "x"],
            credentials,
        ]
        .concat();
        let output = run("mosquitto_pub", &args).await;
        let transcript = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "mosquitto_pub {args:?} was let in");
        assert!(
            transcript.contains(expected),
            "mosquitto_pub {args:?}: want {expected}, got {transcript}"
        );
    }
    running.stop().await;
    std::fs::remove_dir_all(&directory).unwrap();
}

#[tokio::test]
async fn the_acl_holds_at_publish_subscribe_and_delivery_of_retained_and_wildcard_messages() {
    let (running, _updates) = start(security(ACL)).await;
    let (alice, mut alice_events) = client(&running, "acl-alice", Some(("alice", "alice-pw"))).await;
    let (bob, _bob_events) = client(&running, "acl-bob", Some(("bob", "bob-pw"))).await;

    // Retained before anybody subscribes: one alice may read, one she may not.
    bob.publish_and_wait(message("public/news", "for everyone", true))
        .await
        .unwrap();
    alice
        .publish_and_wait(message("alice/diary", "mine", true))
        .await
        .unwrap();
    bob.publish_and_wait(message("bob/notes", "bob's", true)).await.unwrap();
    // 5.0: a denied QoS 1 publish is answered 0x87 and goes nowhere.
    let denied = bob
        .publish_and_wait(message("alice/diary", "forged", true))
        .await
        .unwrap();
    assert_eq!(denied.reason_code, ReasonCode::NOT_AUTHORIZED);

    // A wildcard over everything is granted (a read rule overlaps it), and delivers only what
    // alice may read, retained messages included.
    let suback = alice
        .subscribe_one("#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GRANTED_QOS_1]);
    let mut retained = messages(&mut alice_events, QUIET).await;
    retained.sort();
    assert_eq!(
        retained,
        [
            ("alice/diary".into(), "mine".into()),
            ("public/news".into(), "for everyone".into())
        ]
    );
    bob.publish_and_wait(message("alice/inbox", "a letter", false))
        .await
        .unwrap();
    bob.publish_and_wait(message("public/weather", "sun", false))
        .await
        .unwrap();
    let allowed = bob
        .publish_and_wait(message("bob/secret", "not for alice", false))
        .await
        .unwrap();
    assert_eq!(allowed.reason_code, ReasonCode::SUCCESS, "bob may write bob/#");
    assert_eq!(
        messages(&mut alice_events, QUIET).await,
        [
            ("alice/inbox".into(), "a letter".into()),
            ("public/weather".into(), "sun".into())
        ]
    );

    // Subscriptions no read rule can match are refused: 0x87 in 5.0, 0x80 in 3.1.1.
    let refused = bob
        .subscribe_one("alice/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(refused.reason_codes, [ReasonCode::NOT_AUTHORIZED]);
    let (old, _old_events) = connect_with(
        &running,
        ConnectOptions::new("acl-bob-311")
            .version(ProtocolVersion::V3_1_1)
            .credentials("bob", Bytes::from_static(b"bob-pw")),
    )
    .await;
    let refused = old
        .subscribe_one("alice/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(refused.reason_codes, [ReasonCode::UNSPECIFIED_ERROR]);
    // 3.1.1: a denied QoS 1 publish is acknowledged as usual, and dropped.
    let outcome = old
        .publish_and_wait(message("alice/diary", "forged in 3.1.1", false))
        .await
        .unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::SUCCESS);
    assert_eq!(messages(&mut alice_events, QUIET).await, []);
    running.stop().await;
}

#[tokio::test]
async fn a_will_is_checked_against_the_acl_when_it_is_published() {
    // carol may read every will; alice may publish hers to will/alice, bob his to will/denied only.
    let mut secured = security(&format!("{ACL}user carol\ntopic read will/#\n"));
    let mut with_carol = passwords();
    with_carol.set("carol", PasswordHash::pbkdf2_sha512(b"carol-pw", b"0123456789ab", 101));
    secured.passwords = Some(with_carol);
    let (running, _updates) = start(secured).await;
    let (reader, mut reader_events) = client(&running, "will-reader", Some(("carol", "carol-pw"))).await;
    reader
        .subscribe_one("will/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))
        .await
        .unwrap();

    for (client_id, user, password, topic) in [
        ("will-alice", "alice", "alice-pw", "will/alice"),
        ("will-bob", "bob", "bob-pw", "will/not-his"),
    ] {
        let options = ConnectOptions::new(client_id)
            .credentials(user, Bytes::copy_from_slice(password.as_bytes()))
            .will(LastWill {
                topic: topic.into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                ..LastWill::default()
            });
        let mut probe = Probe::connect_tcp(running.address, ProbeOptions::client())
            .await
            .unwrap();
        probe
            .send(&Packet::Connect(Box::new(options.to_connect())))
            .await
            .unwrap();
        probe
            .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
            .await
            .unwrap();
        // Gone without a DISCONNECT: the will goes out if its client may publish to its topic.
        drop(probe);
    }
    assert_eq!(
        messages(&mut reader_events, Duration::from_secs(1)).await,
        [("will/alice".into(), "gone".into())]
    );
    running.stop().await;
}

#[tokio::test]
async fn scram_sha_256_signs_in_our_client_and_re_authenticates_on_the_same_connection() {
    let (running, _updates) = start(security(ACL)).await;
    // Our client, end to end: the CONNECT carries client-first, the server's challenge is answered.
    let (bob, mut bob_events) = connect_with(
        &running,
        ConnectOptions::new("scram-bob").scram_sha_256("bob", b"bob-pw"),
    )
    .await;
    // bob may write public/# but not read it: the subscription is refused, the publish is not.
    let suback = bob
        .subscribe_one("public/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::NOT_AUTHORIZED]);
    let outcome = bob
        .publish_and_wait(message("public/scram", "signed in", false))
        .await
        .unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::SUCCESS);
    assert_eq!(messages(&mut bob_events, QUIET).await, []);
    bob.disconnect().await.unwrap();

    // The probe, step by step: the server proves it holds bob's keys too, the successful CONNACK
    // names the method (MQTT-4.12.0-5), and re-authentication ends in AUTH 0x00 (§4.12.1).
    let mut probe = Probe::connect_tcp(running.address, ProbeOptions::client())
        .await
        .unwrap();
    let server_final = exchange(&mut probe, b"bob-pw", false).await;
    let Packet::ConnAck(connack) = probe
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
        .await
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(connack.properties.authentication_method.as_deref(), Some(scram::METHOD));
    server_final
        .verify_server_final(connack.properties.authentication_data.as_deref().unwrap_or_default())
        .expect("the server-final message proves the server");
    let again = exchange(&mut probe, b"bob-pw", true).await;
    let success = Pattern::packet_type(PacketType::Auth).reason_code(ReasonCode::SUCCESS);
    let Packet::Auth(auth) = probe.expect(&success, WAIT).await.unwrap() else {
        unreachable!()
    };
    again
        .verify_server_final(auth.properties.authentication_data.as_deref().unwrap_or_default())
        .unwrap();
    probe.send(&Packet::PingReq).await.unwrap();
    probe.expect(&Pattern::pingresp(), WAIT).await.unwrap();

    // A wrong proof: CONNACK 0x86, and the broker serves the next client as before.
    let mut intruder = Probe::connect_tcp(running.address, ProbeOptions::client())
        .await
        .unwrap();
    exchange(&mut intruder, b"guess", false).await;
    intruder
        .expect(
            &Pattern::connack().reason_code(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            WAIT,
        )
        .await
        .unwrap();
    probe.send(&Packet::PingReq).await.unwrap();
    probe.expect(&Pattern::pingresp(), WAIT).await.unwrap();
    running.stop().await;
}

/// Sends bob's client-first (in CONNECT, or AUTH 0x19 to re-authenticate), answers the challenge,
/// and returns the exchange, to check the server's final message with.
async fn exchange(probe: &mut Probe, password: &[u8], reauthenticate: bool) -> ClientExchange {
    let mut client = ClientExchange::new("bob", password, &scram::random_nonce());
    let mut properties = Properties::default();
    properties.authentication_method = Some(scram::METHOD.into());
    properties.authentication_data = Some(Bytes::from(client.client_first()));
    let first = if reauthenticate {
        Packet::Auth(Auth {
            reason_code: ReasonCode::RE_AUTHENTICATE,
            properties,
        })
    } else {
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            client_id: "scram-probe".into(),
            properties,
            ..Connect::default()
        }))
    };
    probe.send(&first).await.unwrap();
    let challenge = Pattern::packet_type(PacketType::Auth).reason_code(ReasonCode::CONTINUE_AUTHENTICATION);
    let Packet::Auth(server_first) = probe.expect(&challenge, WAIT).await.unwrap() else {
        unreachable!()
    };
    assert_eq!(
        server_first.properties.authentication_method.as_deref(),
        Some(scram::METHOD),
        "MQTT-4.12.0-5"
    );
    let client_final = client
        .client_final(
            server_first
                .properties
                .authentication_data
                .as_deref()
                .unwrap_or_default(),
        )
        .unwrap();
    let mut properties = Properties::default();
    properties.authentication_method = Some(scram::METHOD.into());
    properties.authentication_data = Some(Bytes::from(client_final));
    probe
        .send(&Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties,
        }))
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn a_reload_changes_what_connected_clients_may_do_without_dropping_them() {
    let (running, updates) = start(security(ACL)).await;
    let (alice, mut alice_events) = client(&running, "reload-alice", Some(("alice", "alice-pw"))).await;
    alice
        .subscribe_one("alice/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    let (bob, _bob_events) = client(&running, "reload-bob", Some(("bob", "bob-pw"))).await;
    let before = bob
        .publish_and_wait(message("alice/anything", "before", false))
        .await
        .unwrap();
    assert_eq!(before.reason_code, ReasonCode::NOT_AUTHORIZED);
    updates
        .send(Arc::new(security(&format!(
            "{ACL}user bob\ntopic write alice/anything\n"
        ))))
        .unwrap();
    // The reload reaches the broker task between two packets: retry until it has.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let after = bob
            .publish_and_wait(message("alice/anything", "after", false))
            .await
            .unwrap();
        if after.reason_code == ReasonCode::SUCCESS {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the reload never took effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        messages(&mut alice_events, QUIET).await,
        [("alice/anything".into(), "after".into())]
    );
    running.stop().await;
}

/// How long one slow password check takes, by its iteration count.
const HASH_TIME: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_their_timing_while_slow_password_checks_run_off_the_broker_task() {
    // One hash of about 400 ms: calibrated on this machine.
    let probe_iterations = 2_000;
    let started = std::time::Instant::now();
    assert!(!PasswordHash::pbkdf2_sha512(b"x", b"salt", probe_iterations).verify(b"y"));
    let per_iteration = started.elapsed() / probe_iterations;
    let iterations = (HASH_TIME.as_nanos() / per_iteration.as_nanos().max(1)).clamp(1000, 5_000_000) as u32;
    let mut file = PasswordFile::default();
    file.set(
        "slow",
        PasswordHash::pbkdf2_sha512(b"slow-pw", b"0123456789ab", iterations),
    );
    let mut security = Security::default();
    security.passwords = Some(file);
    let (running, _updates) = start(security).await;

    // An anonymous client already in.
    let mut side = Probe::connect_tcp(running.address, ProbeOptions::client())
        .await
        .unwrap();
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: "side".into(),
        ..Connect::default()
    };
    side.send(&Packet::Connect(Box::new(connect))).await.unwrap();
    side.expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
        .await
        .unwrap();

    // The side client pings in a loop while six CONNECTs whose passwords take HASH_TIME each to
    // check come in. A broker that hashed on its one task would leave a ping waiting for the hash
    // in progress (measured with the hashing moved there: a 970 ms round trip, against 20 ms); hashing on the blocking
    // pool, no round trip comes near half of one hash.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let pinger = tokio::spawn(async move {
        let mut longest = Duration::ZERO;
        loop {
            let sent = std::time::Instant::now();
            side.send(&Packet::PingReq).await.unwrap();
            side.expect(&Pattern::pingresp(), WAIT).await.unwrap();
            longest = longest.max(sent.elapsed());
            if stopped.try_recv().is_ok() {
                return longest;
            }
        }
    });
    let mut burst = Vec::new();
    for index in 0..6 {
        let mut probe = Probe::connect_tcp(running.address, ProbeOptions::client())
            .await
            .unwrap();
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            client_id: format!("slow-{index}"),
            user_name: Some("slow".into()),
            password: Some(Bytes::from_static(b"slow-pw")),
            ..Connect::default()
        };
        probe.send(&Packet::Connect(Box::new(connect))).await.unwrap();
        burst.push(probe);
    }
    for probe in &mut burst {
        probe
            .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
            .await
            .unwrap();
    }
    stop.send(()).unwrap();
    let longest = timeout(WAIT, pinger).await.unwrap().unwrap();
    assert!(
        longest < HASH_TIME / 2,
        "a ping waited {longest:?} while password checks of {HASH_TIME:?} each ran: the hashing held the broker up"
    );
    running.stop().await;
}

#[tokio::test]
async fn the_client_certificates_common_name_is_the_user_name_the_acl_sees() {
    use mqtt_broker::listener::{common_name, ListenSpec, ListenerOptions, MqttListener};
    use mqtt_broker::server::Server;

    let certificates = crate::certs::Certificates::make("identity");
    let pem = std::fs::read_to_string(certificates.path("client.pem")).unwrap();
    let der = pem_body(&pem);
    assert_eq!(common_name(&der).as_deref(), Some("client-1"));
    assert_eq!(
        common_name(b"\x30\x03\x02\x01"),
        None,
        "a truncated certificate is no name, not a panic"
    );

    let mut options = ListenerOptions::new();
    options.tls = Some(certificates.server_tls("server", true));
    let spec: ListenSpec = "mqtts://127.0.0.1:0".parse().unwrap();
    let listener = MqttListener::bind(&spec, &options).await.unwrap();
    let url = listener.describe().replace("127.0.0.1", "localhost");
    let mut security = Security::default();
    security.use_identity_as_username = true;
    security.acl = Some(Acl::parse("pattern readwrite devices/%u/#\n").unwrap());
    let broker = Broker::new(Config::default()).with_security(Arc::new(security));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(vec![listener], broker).run(async {
        let _ = stopped.await;
    }));

    let mut connect = ConnectOptions::new("identity-device");
    connect.tls = certificates.client_tls_with_certificate();
    connect.connect_timeout = Duration::from_secs(5);
    let (device, _events) = Client::connect(&url, connect)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let own = device
        .publish_and_wait(message("devices/client-1/t", "mine", false))
        .await
        .unwrap();
    assert_eq!(own.reason_code, ReasonCode::SUCCESS);
    let other = device
        .publish_and_wait(message("devices/client-2/t", "not mine", false))
        .await
        .unwrap();
    assert_eq!(other.reason_code, ReasonCode::NOT_AUTHORIZED);
    device.disconnect().await.unwrap();
    let _ = stop.send(());
    timeout(WAIT, server).await.unwrap().unwrap();
}

/// The DER bytes of the first PEM block.
fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}
