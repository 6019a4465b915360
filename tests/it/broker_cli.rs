//! `mqtt-harness broker` as a user runs it: it says where it listens, answers a 3.1.1 CONNECT with
//! CONNACK 0x00, refuses a taken port with a readable message and exit code 1, and stops cleanly on
//! Ctrl-C. Method: run the built binary as a child process (killed when the test ends), talk to it
//! over loopback with std sockets; every wait is bounded (a few seconds, real time).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt_protocol::{decode, encode, ConnAck, Connect, DecodeContext, Packet, ProtocolVersion, ReasonCode};

const WAIT: Duration = Duration::from_secs(10);

/// The broker as a child process, with its stderr read line by line; killed on drop.
struct BrokerProcess {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
}

impl BrokerProcess {
    fn start(listen: &str) -> BrokerProcess {
        BrokerProcess::start_with(&["--listen", listen])
    }

    fn start_with(args: &[&str]) -> BrokerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqtt-harness"))
            .arg("broker")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, stderr_lines) = mpsc::channel();
        // Ends with the child's stderr.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        BrokerProcess { child, stderr_lines }
    }

    /// The next stderr line containing `text`, within `WAIT`; every line seen if none does.
    fn stderr_line_containing(&self, text: &str) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(_) => return Err(seen),
            }
        }
    }

    /// Waits (bounded) for the process to exit.
    fn wait_for_exit(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the system's choice for port 0).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

/// Connects, retrying until the broker accepts (bounded).
fn connect_when_listening(address: SocketAddr, broker: &mut BrokerProcess) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
            Ok(stream) => return stream,
            Err(error) => {
                if let Some(status) = broker.child.try_wait().expect("try_wait") {
                    panic!("the broker exited ({status}) before listening on {address}");
                }
                assert!(
                    Instant::now() < deadline,
                    "{address} does not accept within {WAIT:?}: {error}"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Connects to the broker once it listens, sends a clean-start CONNECT, and returns its answer.
fn connect_and_read(
    address: SocketAddr,
    broker: &mut BrokerProcess,
    version: ProtocolVersion,
    keep_alive_s: u16,
    client_id: &str,
) -> Packet {
    let mut stream = connect_when_listening(address, broker);
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let connect = Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive_s,
        client_id: client_id.into(),
        ..Connect::default()
    }));
    let mut bytes = Vec::new();
    encode(&connect, version, &mut bytes).expect("a valid CONNECT");
    stream.write_all(&bytes).expect("write CONNECT");
    read_packet(&mut stream, version)
}

/// Reads until one whole packet decodes (bounded by the socket's read timeout).
fn read_packet(stream: &mut TcpStream, version: ProtocolVersion) -> Packet {
    let context = DecodeContext::client(version);
    let mut buffer = BytesMut::new();
    let mut chunk = [0u8; 1024];
    // Bounded: every pass reads at least a byte, or fails, and a CONNACK is a few bytes.
    for _ in 0..64 {
        if let Some(packet) = decode(&mut buffer, &context).expect("the broker sends valid packets") {
            return packet;
        }
        let count = stream
            .read(&mut chunk)
            .expect("a packet arrives within the read timeout");
        assert!(count > 0, "the broker closed the connection");
        buffer.extend_from_slice(&chunk[..count]);
    }
    panic!("no whole packet in {} bytes", buffer.len());
}

#[test]
fn broker_listens_where_told_and_answers_a_3_1_1_connect_with_connack_0() {
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
    let mut broker = BrokerProcess::start(&address.to_string());
    let line = broker
        .stderr_line_containing("listening on")
        .unwrap_or_else(|seen| panic!("no listening line; stderr: {seen:#?}"));
    assert!(
        line.contains(&format!("mqtt-harness broker listening on mqtt://{address}")),
        "{line}"
    );

    let answer = connect_and_read(address, &mut broker, ProtocolVersion::V3_1_1, 30, "cli-test");
    match answer {
        Packet::ConnAck(ConnAck {
            session_present,
            reason_code,
            ..
        }) => {
            assert_eq!(reason_code, ReasonCode::SUCCESS);
            assert!(!session_present);
        }
        other => panic!("expected CONNACK, received {other:?}"),
    }
}

#[test]
fn a_taken_port_exits_1_with_a_readable_message() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let address = taken.local_addr().expect("local address");
    let mut broker = BrokerProcess::start(&address.to_string());
    let status = broker.wait_for_exit().expect("the broker exits within the deadline");
    assert_eq!(status.code(), Some(1));
    let expected = format!("cannot listen on mqtt://{address}: address already in use");
    let line = broker
        .stderr_line_containing("cannot listen")
        .unwrap_or_else(|seen| panic!("no error line; stderr: {seen:#?}"));
    assert_eq!(line.trim(), expected);
}

#[test]
fn ctrl_c_stops_the_broker_cleanly_with_exit_0() {
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
    let mut broker = BrokerProcess::start(&address.to_string());
    // Said once the signal handlers are installed.
    broker
        .stderr_line_containing("listening on")
        .unwrap_or_else(|seen| panic!("no listening line; stderr: {seen:#?}"));
    let mut stream = connect_when_listening(address, &mut broker);
    let interrupted = Command::new("kill")
        .args(["-INT", &broker.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let status = broker.wait_for_exit().expect("the broker exits within the deadline");
    assert!(status.success(), "{status}");
    // The connection was closed, not left dangling.
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
}

/// `mqtt-harness check` over the transports: the CLI's broker serves mqtts:// and ws:// (port 0,
/// the ports read from what it prints), `check` passes a case over each with `--cafile`, and a
/// CA that did not sign the broker's certificate, or a TLS listener without a certificate, is a
/// one-line error.
#[test]
fn check_runs_over_tls_and_websocket_against_the_cli_broker() {
    let certificates = crate::certs::Certificates::make("cli");
    let path = |name: &str| certificates.path(name).display().to_string();
    let broker = BrokerProcess::start_with(&[
        "--listen",
        "mqtts://127.0.0.1:0",
        "--listen",
        "ws://127.0.0.1:0",
        "--cert",
        &path("server.pem"),
        "--key",
        &path("server.key"),
    ]);
    let port_of = |scheme: &str| -> String {
        let line = broker
            .stderr_line_containing(&format!("listening on {scheme}://"))
            .unwrap_or_else(|seen| panic!("no {scheme} listener in {seen:?}"));
        let rest = line
            .split(&format!("{scheme}://127.0.0.1:"))
            .nth(1)
            .expect("an address");
        rest.split('/').next().expect("a port").to_owned()
    };
    let (tls_port, ws_port) = (port_of("mqtts"), port_of("ws"));
    let check = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mqtt-harness"))
            .arg("check")
            .args(args)
            .args(["--only", "MQTT-3.1.2-1", "--protocol", "5.0"])
            .stdin(Stdio::null())
            .output()
            .expect("check runs")
    };
    let tls_url = format!("mqtts://localhost:{tls_port}");
    let over_tls = check(&[&tls_url, "--cafile", &path("ca.pem")]);
    assert!(
        over_tls.status.success(),
        "{}",
        String::from_utf8_lossy(&over_tls.stderr)
    );
    assert!(String::from_utf8_lossy(&over_tls.stdout).contains("1 passed"));
    let over_ws = check(&[&format!("ws://127.0.0.1:{ws_port}/mqtt")]);
    assert!(over_ws.status.success(), "{}", String::from_utf8_lossy(&over_ws.stderr));

    let untrusted = check(&[&tls_url, "--cafile", &path("client-ca.pem")]);
    assert_eq!(untrusted.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");

    let mut no_certificate = BrokerProcess::start("mqtts://127.0.0.1:0");
    let status = no_certificate.wait_for_exit().expect("it exits at once");
    assert_eq!(status.code(), Some(1));
    assert!(no_certificate.stderr_line_containing("--cert FILE --key FILE").is_ok());
}

/// The limits of `Config` are flags: a 5.0 client asking for no keep alive is told
/// `--max-keep-alive` as Server Keep Alive, and `--receive-maximum` and `--max-packet-size` are
/// announced; a bad value is refused by the argument parser with exit 2.
#[test]
fn limits_are_command_line_flags_and_reach_the_connack() {
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
    let listen = address.to_string();
    let mut broker = BrokerProcess::start_with(&[
        "--listen",
        &listen,
        "--max-keep-alive",
        "30",
        "--receive-maximum",
        "7",
        "--max-packet-size",
        "4096",
    ]);
    let answer = connect_and_read(address, &mut broker, ProtocolVersion::V5, 0, "cli-limits");
    let Packet::ConnAck(connack) = answer else {
        panic!("expected CONNACK")
    };
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(connack.properties.server_keep_alive_s, Some(30));
    assert_eq!(connack.properties.receive_maximum, Some(7));
    assert_eq!(connack.properties.maximum_packet_size, Some(4096));

    let refused = Command::new(env!("CARGO_BIN_EXE_mqtt-harness"))
        .args(["broker", "--receive-maximum", "0"])
        .output()
        .expect("the binary runs");
    assert_eq!(refused.status.code(), Some(2));
}

/// A scratch folder for one test's files, readable by mosquitto (which drops root's privileges);
/// removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("mqtt-harness-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create the scratch folder");
        make_world_readable(&path, 0o755);
        Scratch(path)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a scratch file");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_world_readable(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `mqtt-harness passwd ARGS`, which must succeed.
fn passwd(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_mqtt-harness"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "passwd {args:?}: {output:?}");
}

/// CONNECT (5.0) with credentials on a fresh connection; the stream (open or closed) and the answer.
fn connect_as(
    address: SocketAddr,
    broker: &mut BrokerProcess,
    client_id: &str,
    user: Option<(&str, &str)>,
) -> (TcpStream, Packet) {
    let mut stream = connect_when_listening(address, broker);
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: client_id.into(),
        user_name: user.map(|(name, _)| name.into()),
        password: user.map(|(_, password)| bytes::Bytes::copy_from_slice(password.as_bytes())),
        ..Connect::default()
    }));
    let mut bytes = Vec::new();
    encode(&connect, ProtocolVersion::V5, &mut bytes).expect("a valid CONNECT");
    stream.write_all(&bytes).expect("write CONNECT");
    let answer = read_packet(&mut stream, ProtocolVersion::V5);
    (stream, answer)
}

fn connack_code(packet: &Packet) -> ReasonCode {
    match packet {
        Packet::ConnAck(connack) => connack.reason_code,
        other => panic!("expected CONNACK, received {other:?}"),
    }
}

#[test]
fn a_config_file_sets_listeners_limits_and_security_and_flags_win_over_it() {
    let scratch = Scratch::new("config");
    passwd(&["-c", "-b", &scratch.file("passwords", ""), "alice", "secret"]);
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
    let config = scratch.file(
        "broker.yaml",
        &format!(
            "listen: [\"{address}\"]\nsecurity:\n  password_file: passwords\nlimits:\n  max_keep_alive: 30\n  receive_maximum: 9\n"
        ),
    );
    let mut broker = BrokerProcess::start_with(&["--config", &config, "--receive-maximum", "7"]);
    let (_stream, answer) = connect_as(address, &mut broker, "config-alice", Some(("alice", "secret")));
    let Packet::ConnAck(connack) = answer else {
        panic!("expected CONNACK")
    };
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(connack.properties.server_keep_alive_s, Some(30), "from the file");
    assert_eq!(connack.properties.receive_maximum, Some(7), "the flag wins");
    // The file's password file turned anonymous access off.
    let (_stream, answer) = connect_as(address, &mut broker, "config-anonymous", None);
    assert_eq!(connack_code(&answer), ReasonCode::NOT_AUTHORIZED);
}

#[test]
fn bad_config_and_password_files_exit_1_naming_file_line_and_column() {
    let scratch = Scratch::new("bad-config");
    let unknown_key = scratch.file("unknown.yaml", "limits:\n  max_connections: 10\n  max_conections: 5\n");
    let bad_limit = scratch.file("limit.yaml", "limits:\n  max_connections: 0\n");
    let passwords = scratch.file("passwords", "alice:$7$101$AAAA$AAAA\n# fine\nbob\n");
    let bad_password_file = scratch.file("pw.yaml", "security: {password_file: passwords}\n");
    for (args, expected) in [
        (vec!["--config", &unknown_key], format!("{unknown_key}:3:3: ")),
        (
            vec!["--config", &bad_limit],
            format!("{bad_limit}: limits: invalid value '0' for '--max-connections <N>'"),
        ),
        (
            vec!["--password-file", &passwords],
            format!("{passwords}:1: a $7$ hash is 64 bytes"),
        ),
        (vec!["--config", &bad_password_file], format!("{passwords}:1: ")),
        (
            vec!["--config", "/nonexistent/broker.yaml"],
            "/nonexistent/broker.yaml: cannot read it".to_string(),
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_mqtt-harness"))
            .arg("broker")
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.lines().any(|line| line.starts_with(&expected)),
            "{args:?}: want {expected:?}, got {stderr}"
        );
    }
}

/// `mqtt-harness passwd` writes a file mosquitto reads as its own, and SIGHUP makes the broker
/// take a user added since, while a client connected before stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_files_are_mosquittos_format_and_sighup_reloads_them_without_dropping_clients() {
    let scratch = Scratch::new("passwd");
    let passwords = scratch.file("passwords", "");
    passwd(&["-c", "-b", &passwords, "alice", "secret"]);
    make_world_readable(std::path::Path::new(&passwords), 0o644);

    // mosquitto takes our file.
    let mosquitto =
        mqtt_scenarios::live::mosquitto::Mosquitto::start(mqtt_scenarios::live::mosquitto::MosquittoConfig {
            extra_lines: vec![format!("password_file {passwords}")],
            ..Default::default()
        })
        .await
        .expect("mosquitto starts");
    let port = mosquitto.port().to_string();
    for (password, admitted) in [("secret", true), ("wrong", false)] {
        let output = tokio::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-u",
                "alice",
                "-P",
                password,
                "-t",
                "t",
                "-m",
                "x",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("mosquitto_pub runs");
        assert_eq!(
            output.status.success(),
            admitted,
            "mosquitto with password {password}: {output:?}"
        );
    }
    drop(mosquitto);

    tokio::task::spawn_blocking(move || {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
        let mut broker = BrokerProcess::start_with(&["--listen", &address.to_string(), "--password-file", &passwords]);
        let (mut alice, answer) = connect_as(address, &mut broker, "reload-alice", Some(("alice", "secret")));
        assert_eq!(connack_code(&answer), ReasonCode::SUCCESS);
        let (_stream, answer) = connect_as(address, &mut broker, "reload-bob", Some(("bob", "hunter2")));
        assert_eq!(connack_code(&answer), ReasonCode::BAD_USER_NAME_OR_PASSWORD);

        passwd(&["-b", &passwords, "bob", "hunter2"]);
        let hung_up = Command::new("kill")
            .args(["-HUP", &broker.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(hung_up.success());
        broker
            .stderr_line_containing("2 user(s) in the password file")
            .unwrap_or_else(|seen| panic!("no reload line; stderr: {seen:#?}"));
        let (_stream, answer) = connect_as(address, &mut broker, "reload-bob", Some(("bob", "hunter2")));
        assert_eq!(connack_code(&answer), ReasonCode::SUCCESS);
        // alice, connected before the reload, is still served.
        let mut ping = Vec::new();
        encode(&Packet::PingReq, ProtocolVersion::V5, &mut ping).expect("a valid PINGREQ");
        alice.write_all(&ping).expect("write PINGREQ");
        assert_eq!(read_packet(&mut alice, ProtocolVersion::V5), Packet::PingResp);
    })
    .await
    .expect("the reload test ran");
}

#[test]
fn packet_timeout_closes_a_connection_that_stops_in_the_middle_of_a_packet() {
    // Goal: `--packet-timeout 1` bounds how long a begun packet may stay partial, even with keep
    // alive 0. Method: CONNECT (keep alive 0), CONNACK, then 3 bytes of a PUBLISH promising 100;
    // the broker must close between 0.5 s and 3 s later (the read sees the end of the stream).
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
    let mut broker = BrokerProcess::start_with(&["--listen", &address.to_string(), "--packet-timeout", "1"]);
    let mut stream = connect_when_listening(address, &mut broker);
    let mut connect = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive_s: 0,
            client_id: "stall".into(),
            ..Connect::default()
        })),
        ProtocolVersion::V3_1_1,
        &mut connect,
    )
    .expect("a valid CONNECT");
    stream.write_all(&connect).expect("send CONNECT");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    stream
        .write_all(&[0x30, 100, 0x00])
        .expect("send the start of a PUBLISH");
    let started = Instant::now();
    let mut rest = [0u8; 16];
    let read = stream.read(&mut rest);
    let waited = started.elapsed();
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "nothing but the close: {read:?}"
    );
    assert!(
        (Duration::from_millis(500)..=Duration::from_secs(3)).contains(&waited),
        "closed after {waited:?}"
    );
    drop(broker);
}
