//! Real third-party clients against the broker: mosquitto_pub / mosquitto_sub (mosquitto-clients
//! 2.0.11) in MQTT 3.1, 3.1.1 and 5.0, and Python paho-mqtt 1.6.1 for 5.0 features, through the
//! scripts in broker/tests/python/. Goal: the broker interoperates with clients it was not written
//! with: round trips at every QoS, retained messages, wills, and the 5.0 properties, topic
//! aliases, shared subscriptions, session resumption and will delay as paho speaks them.
//!
//! Method: each test starts its own server on 127.0.0.1:0 with `Config::default()` and runs the
//! clients as subprocesses (`tokio::process`, killed on drop). Every wait is bounded: a hung client
//! fails the test. A mosquitto_sub is known to be subscribed once its debug output (`-d`, made line
//! buffered with `stdbuf -oL`) shows the SUBACK: the broker handled the SUBSCRIBE before anything
//! published afterwards, so no sleeps are needed. mosquitto_sub prints each message as one tab
//! separated line (`-F`): `MSG topic qos retain length payload`. The paho scripts check everything
//! themselves, print `KEY value` lines and `OK`, and exit non-zero on failure; the tests assert the
//! exit status and the lines. Client ids and topics carry the test's name (tests run in parallel),
//! and ids stay within the 23 characters MQTT 3.1 allows. The clients must be installed (Debian
//! mosquitto-clients, python3-paho-mqtt): a missing one fails the test, saying so.

use std::process::{ExitStatus, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mqtt_broker::Config;
use mqtt_client::probe::{Pattern, Probe, ProbeOptions};
use mqtt_protocol::{
    Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, Will,
};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::running::Running;

/// The longest any single client step may take (connect, subscribe, one message, an exit).
const WAIT: Duration = Duration::from_secs(15);

/// The bound on a whole paho script (each has a shorter watchdog of its own).
const SCRIPT_WAIT: Duration = Duration::from_secs(45);

/// mosquitto_sub's own timeout (`-W`), shorter than [`WAIT`] so that it reports first.
const SUB_TIMEOUT_S: &str = "10";

/// The Python the paho package is installed for (not whatever `python3` is first on PATH).
const PYTHON: &str = "/usr/bin/python3";

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");

/// mosquitto_sub's output format: one line per message, fields separated by tabs.
const FORMAT: &str = r"MSG\t%t\t%q\t%r\t%l\t%p";

/// A protocol version as mosquitto's `-V` names it, and a short tag for ids and topics.
#[derive(Clone, Copy, Debug)]
struct Version {
    flag: &'static str,
    tag: &'static str,
}

const VERSIONS: [Version; 3] = [
    Version {
        flag: "mqttv31",
        tag: "31",
    },
    Version {
        flag: "mqttv311",
        tag: "311",
    },
    Version { flag: "5", tag: "5" },
];

/// One message as mosquitto_sub printed it with [`FORMAT`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Received {
    topic: String,
    qos: u8,
    retain: bool,
    payload: String,
}

impl Received {
    fn new(topic: &str, qos: u8, retain: bool, payload: &str) -> Received {
        Received {
            topic: topic.into(),
            qos,
            retain,
            payload: payload.into(),
        }
    }

    fn parse(line: &str) -> Received {
        let fields: Vec<&str> = line.splitn(6, '\t').collect();
        assert!(fields.len() == 6 && fields[0] == "MSG", "not a message line: {line:?}");
        let length: usize = fields[4].parse().expect("a payload length");
        assert_eq!(length, fields[5].len(), "the payload length printed for {line:?}");
        Received {
            topic: fields[1].into(),
            qos: fields[2].parse().expect("a QoS"),
            retain: match fields[3] {
                "0" => false,
                "1" => true,
                other => panic!("retain flag {other:?} in {line:?}"),
            },
            payload: fields[5].into(),
        }
    }
}

/// The common arguments of both mosquitto tools: where, which version, which client id.
fn base_args(running: &Running, version: Version, client_id: &str) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &running.port(),
        "-V",
        version.flag,
        "-i",
        client_id,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

/// Runs mosquitto_pub to completion (bounded) and asserts that it succeeded: for QoS 1 and 2
/// it exits only once its flow is complete, so the broker has the message when this returns.
async fn mosquitto_pub(running: &Running, version: Version, client_id: &str, args: &[&str]) {
    let mut command = Command::new("mosquitto_pub");
    command
        .args(base_args(running, version, client_id))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("mosquitto_pub {args:?} did not finish within {WAIT:?}"))
        .expect("mosquitto_pub runs (is mosquitto-clients installed?)");
    assert_success("mosquitto_pub", args, &output);
}

fn assert_success(what: &str, args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "{what} {args:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running mosquitto_sub, subscribed, its stdout read line by line.
struct MosquittoSub {
    client_id: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: JoinHandle<String>,
    /// Debug lines seen so far, for failure messages.
    transcript: Vec<String>,
}

impl MosquittoSub {
    /// Starts mosquitto_sub with `args` (topics, QoS, count ...) plus debug output and [`FORMAT`],
    /// and returns once it has received its SUBACK granting `granted_qos` for every topic.
    async fn start(
        running: &Running,
        version: Version,
        client_id: &str,
        granted_qos: u8,
        args: &[&str],
    ) -> MosquittoSub {
        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "mosquitto_sub"])
            .args(base_args(running, version, client_id))
            .args(["-d", "-W", SUB_TIMEOUT_S, "-F", FORMAT])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .expect("mosquitto_sub runs (are coreutils' stdbuf and mosquitto-clients installed?)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let mut subscriber = MosquittoSub {
            client_id: client_id.into(),
            child,
            lines,
            stderr,
            transcript: Vec::new(),
        };
        let topic_count = args.iter().filter(|arg| **arg == "-t").count();
        // "Client <id> received SUBACK", then "Subscribed (mid: 1): <granted QoS per topic>".
        subscriber
            .next_line_where(|line| line.contains("received SUBACK"))
            .await;
        let granted = subscriber
            .next_line_where(|line| line.starts_with("Subscribed (mid:"))
            .await;
        let expected = vec![granted_qos.to_string(); topic_count].join(", ");
        assert!(
            granted.ends_with(&format!("): {expected}")),
            "{client_id}: SUBACK {granted:?}, expected {expected} granted"
        );
        subscriber
    }

    /// The next stdout line that satisfies `wanted`, within [`WAIT`]; lines skipped are debug
    /// lines and are kept for failure messages.
    async fn next_line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "{}: mosquitto_sub ended early (status {:?}); output so far: {:#?}",
                    self.client_id,
                    self.child.try_wait(),
                    self.transcript
                ),
                Err(_) => panic!(
                    "{}: nothing expected from mosquitto_sub within {WAIT:?}; output so far: {:#?}",
                    self.client_id, self.transcript
                ),
            };
            if wanted(&line) {
                return line;
            }
            self.transcript.push(line);
        }
    }

    /// The next `count` messages.
    async fn messages(&mut self, count: usize) -> Vec<Received> {
        let mut messages = Vec::new();
        for _ in 0..count {
            let line = self.next_line_where(|line| line.starts_with("MSG\t")).await;
            messages.push(Received::parse(&line));
        }
        messages
    }

    /// Waits (bounded) for mosquitto_sub to exit by itself (after `-C` messages) and asserts
    /// that it exited successfully.
    async fn finished(mut self) {
        let status = timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: mosquitto_sub did not exit within {WAIT:?}", self.client_id))
            .expect("waiting for mosquitto_sub");
        self.assert_exit(status, true).await;
    }

    /// Kills mosquitto_sub with SIGKILL: its socket is closed by the kernel, no DISCONNECT sent.
    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL mosquitto_sub");
        let status = timeout(WAIT, self.child.wait())
            .await
            .expect("a killed process exits")
            .expect("waiting for mosquitto_sub");
        self.assert_exit(status, false).await;
    }

    async fn assert_exit(self, status: ExitStatus, success: bool) {
        let stderr = timeout(WAIT, self.stderr).await.map(|text| text.unwrap_or_default());
        assert_eq!(
            status.success(),
            success,
            "{}: mosquitto_sub exited with {status}; stderr: {stderr:?}; output: {:#?}",
            self.client_id,
            self.transcript
        );
    }
}

/// Runs a paho script from broker/tests/python/ with the broker's port and `args` (bounded by
/// [`SCRIPT_WAIT`]), asserts that it exited 0 with `OK` as its last line, and returns its lines.
async fn paho_script(running: &Running, script: &str, args: &[&str]) -> Vec<String> {
    let mut command = Command::new(PYTHON);
    command
        .arg("-B") // no __pycache__ in the source tree
        .arg(format!("{SCRIPTS}/{script}"))
        .arg(running.port())
        .args(args)
        .current_dir(SCRIPTS)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = timeout(SCRIPT_WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {SCRIPT_WAIT:?}"))
        .unwrap_or_else(|error| panic!("{PYTHON} runs {script}: {error}"));
    // Shown by the test harness when the test fails (or with --nocapture).
    println!("{script} stdout:\n{}", String::from_utf8_lossy(&output.stdout));
    println!("{script} stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    assert_success(script, args, &output);
    let stdout = String::from_utf8(output.stdout).expect("the scripts print UTF-8");
    let lines: Vec<String> = stdout.lines().map(String::from).collect();
    assert_eq!(lines.last().map(String::as_str), Some("OK"), "{script}: {stdout}");
    lines
}

/// The value after `key ` on the one line that starts with it.
fn value_of<'a>(lines: &'a [String], key: &str) -> &'a str {
    let prefix = format!("{key} ");
    let found: Vec<&str> = lines.iter().filter_map(|line| line.strip_prefix(&prefix)).collect();
    assert_eq!(found.len(), 1, "one line starting with {prefix:?} in {lines:#?}");
    found[0]
}

// ---- mosquitto_pub / mosquitto_sub ----------------------------------------------------------

#[tokio::test]
async fn mosquitto_clients_round_trip_qos_0_1_and_2_in_mqtt_3_1_3_1_1_and_5() {
    // Goal: mosquitto_sub receives what mosquitto_pub publishes, in every protocol version, at
    // every QoS, with topic, payload and QoS intact: delivered at the minimum of the published
    // QoS and the granted one (5.0 MQTT-3.8.4-8, 3.1.1 MQTT-3.8.4-6), retain flag 0 for a live
    // subscription (5.0 MQTT-3.3.1-12, 3.1.1 MQTT-3.3.1-9). Also across versions: a 3.1 publisher
    // reaches a 5.0 subscriber and the other way round. An empty payload and a 60 kB one too.
    // Method: per version, a mosquitto_sub at QoS 2 on a wildcard; once its SUBACK is seen, one
    // mosquitto_pub per message, each run to completion; compared by topic (each message has its
    // own, so no order across publishers is assumed).
    let running = Running::start_default().await;
    let large = "0123456789abcdef".repeat(60_000 / 16);
    for version in VERSIONS {
        let tag = version.tag;
        let base = format!("rc/roundtrip/{tag}");
        let filter = format!("{base}/#");
        let mut messages: Vec<(Version, &str, String, String)> = vec![
            (version, "0", "qos0".into(), format!("qos 0 from {tag}")),
            (version, "1", "qos1".into(), format!("qos 1 from {tag}, with ü")),
            (version, "2", "qos2".into(), format!("qos 2 from {tag}")),
            (version, "2", "large".into(), large.clone()),
            (version, "1", "empty".into(), String::new()),
        ];
        for other in VERSIONS.iter().filter(|other| other.tag != tag) {
            messages.push((
                *other,
                "1",
                format!("from{}", other.tag),
                format!("qos 1 from {}", other.tag),
            ));
        }
        let count = messages.len().to_string();
        let sub_id = format!("rc-rt{tag}-sub");
        let mut subscriber =
            MosquittoSub::start(&running, version, &sub_id, 2, &["-q", "2", "-C", &count, "-t", &filter]).await;
        let mut expected = Vec::new();
        for (index, (publisher_version, qos, suffix, payload)) in messages.iter().enumerate() {
            let topic = format!("{base}/{suffix}");
            let pub_id = format!("rc-rt{tag}-pub{index}");
            let mut args = vec!["-q", qos, "-t", &topic];
            if payload.is_empty() {
                args.push("-n");
            } else {
                args.extend(["-m", payload]);
            }
            mosquitto_pub(&running, *publisher_version, &pub_id, &args).await;
            expected.push(Received::new(&topic, qos.parse().unwrap(), false, payload));
        }
        let mut received = subscriber.messages(messages.len()).await;
        subscriber.finished().await;
        received.sort();
        expected.sort();
        assert_eq!(received, expected, "version {}", version.flag);
    }
    stop_checked(running).await;
}

#[tokio::test]
async fn mosquitto_retained_messages_reach_later_subscribers_and_an_empty_one_deletes_them() {
    // Goal: in every version, a retained message is stored and sent to a later subscriber with
    // the retain flag 1 and its own QoS (3.1.1 MQTT-3.3.1-5, MQTT-3.3.1-8; 5.0 MQTT-3.3.1-5,
    // MQTT-3.3.1-9); a new retained message replaces it; a subscriber already in place gets it
    // with retain 0 (3.1.1 MQTT-3.3.1-9, 5.0 MQTT-3.3.1-12); an empty retained message is
    // delivered like any other but deletes the stored one, and a non-retained message is not
    // stored (3.1.1 MQTT-3.3.1-10..12, 5.0 MQTT-3.3.1-6..8).
    // Method: per version, a `live` mosquitto_sub on base/#; mosquitto_pub -r; a `late`
    // mosquitto_sub per stored state. The deletion is shown without waiting for a timeout: a
    // `final` subscriber on base/# is sent a non-retained `end` message once subscribed; a
    // retained message would have come before it (the broker sends them with the SUBACK).
    let running = Running::start_default().await;
    for version in VERSIONS {
        let tag = version.tag;
        let base = format!("rc/retain/{tag}");
        let kept = format!("{base}/kept");
        let other = format!("{base}/other");
        let end = format!("{base}/end");
        let filter = format!("{base}/#");
        let sub = |name: &str| format!("rc-ret{tag}-{name}");
        let mut live = MosquittoSub::start(
            &running,
            version,
            &sub("live"),
            2,
            &["-q", "2", "-C", "5", "-t", &filter],
        )
        .await;

        let first = format!("kept at qos 1 ({tag})");
        mosquitto_pub(
            &running,
            version,
            &sub("pub1"),
            &["-r", "-q", "1", "-t", &kept, "-m", &first],
        )
        .await;
        let mut late = MosquittoSub::start(
            &running,
            version,
            &sub("late1"),
            2,
            &["-q", "2", "-C", "1", "-t", &kept],
        )
        .await;
        assert_eq!(late.messages(1).await, [Received::new(&kept, 1, true, &first)]);
        late.finished().await;

        let second = format!("replaced at qos 0 ({tag})");
        mosquitto_pub(
            &running,
            version,
            &sub("pub2"),
            &["-r", "-q", "0", "-t", &kept, "-m", &second],
        )
        .await;
        let mut late = MosquittoSub::start(
            &running,
            version,
            &sub("late2"),
            2,
            &["-q", "2", "-C", "1", "-t", &kept],
        )
        .await;
        assert_eq!(late.messages(1).await, [Received::new(&kept, 0, true, &second)]);
        late.finished().await;

        mosquitto_pub(&running, version, &sub("pub3"), &["-r", "-q", "1", "-t", &kept, "-n"]).await;
        mosquitto_pub(
            &running,
            version,
            &sub("pub4"),
            &["-q", "1", "-t", &other, "-m", "not retained"],
        )
        .await;
        let mut last = MosquittoSub::start(
            &running,
            version,
            &sub("final"),
            1,
            &["-q", "1", "-C", "1", "-t", &filter],
        )
        .await;
        mosquitto_pub(&running, version, &sub("pub5"), &["-q", "1", "-t", &end, "-m", "end"]).await;
        assert_eq!(
            last.messages(1).await,
            [Received::new(&end, 1, false, "end")],
            "nothing retained is left under {filter}"
        );
        last.finished().await;

        assert_eq!(
            live.messages(5).await,
            [
                Received::new(&kept, 1, false, &first),
                Received::new(&kept, 0, false, &second),
                Received::new(&kept, 1, false, ""),
                Received::new(&other, 1, false, "not retained"),
                Received::new(&end, 1, false, "end"),
            ],
            "version {}",
            version.flag
        );
        live.finished().await;
    }
    stop_checked(running).await;
}

#[tokio::test]
async fn mosquitto_will_is_published_when_the_client_is_killed_and_not_after_a_disconnect() {
    // Goal: in every version, the will of a client whose network connection ends without a
    // DISCONNECT is published (3.1.1 MQTT-3.1.2-8, 5.0 MQTT-3.1.2-8: mosquitto's default session
    // expiry is 0, so the session ends at once and the will goes with it), while the will of a
    // client that sent DISCONNECT is discarded (3.1.1 MQTT-3.14.4-3, 5.0 MQTT-3.14.4-3).
    // Method: per version, a `watcher` mosquitto_sub on base/out/#. A `polite` mosquitto_sub with
    // a will exits normally after one message (DISCONNECT); then a `doomed` one with a will is
    // killed with SIGKILL, so the kernel closes its socket. The watcher's first message must be
    // the doomed will: the polite one, if wrongly sent, would have come first.
    let running = Running::start_default().await;
    for version in VERSIONS {
        let tag = version.tag;
        let base = format!("rc/will/{tag}");
        let watched = format!("{base}/out/#");
        let polite_will = format!("{base}/out/polite");
        let doomed_will = format!("{base}/out/doomed");
        let trigger = format!("{base}/in/trigger");
        let unused = format!("{base}/in/unused");
        let id = |name: &str| format!("rc-will{tag}-{name}");
        let mut watcher = MosquittoSub::start(
            &running,
            version,
            &id("watch"),
            1,
            &["-q", "1", "-C", "1", "-t", &watched],
        )
        .await;

        let polite_payload = format!("polite will ({tag})");
        let mut polite = MosquittoSub::start(
            &running,
            version,
            &id("polite"),
            0,
            &[
                "-C",
                "1",
                "-t",
                &trigger,
                "--will-topic",
                &polite_will,
                "--will-payload",
                &polite_payload,
                "--will-qos",
                "1",
            ],
        )
        .await;
        mosquitto_pub(&running, version, &id("trigger"), &["-t", &trigger, "-m", "go"]).await;
        assert_eq!(polite.messages(1).await, [Received::new(&trigger, 0, false, "go")]);
        polite.finished().await;

        let doomed_payload = format!("doomed will ({tag})");
        let doomed = MosquittoSub::start(
            &running,
            version,
            &id("doomed"),
            0,
            &[
                "-t",
                &unused,
                "--will-topic",
                &doomed_will,
                "--will-payload",
                &doomed_payload,
                "--will-qos",
                "1",
            ],
        )
        .await;
        doomed.kill().await;
        assert_eq!(
            watcher.messages(1).await,
            [Received::new(&doomed_will, 1, false, &doomed_payload)],
            "version {}",
            version.flag
        );
        watcher.finished().await;
    }
    stop_checked(running).await;
}

#[tokio::test]
async fn a_will_with_will_retain_is_retained_for_a_late_mosquitto_sub_and_a_late_probe() {
    // Goal: the regression of a will with Will Retain 1 that was routed but never stored (5.0
    // MQTT-3.1.2-15, 3.1.1 MQTT-3.1.2-17), with a real client on each side, in 3.1.1 and 5.0.
    // Method: per version, (1) the probe connects with a retained QoS 0 will and drops its socket
    // without DISCONNECT; a watcher probe subscribed beforehand shows the will went out; then a
    // late mosquitto_sub must get it with RETAIN 1. (2) A mosquitto_sub with `--will-retain` is
    // killed; a late probe subscribing afterwards must be sent the will with RETAIN 1.
    let running = Running::start_default().await;
    for version in &VERSIONS[1..] {
        let tag = version.tag;
        let protocol = if tag == "5" {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let connect = |client_id: &str, will: Option<Will>| {
            Packet::Connect(Box::new(Connect {
                protocol,
                clean_start: true,
                keep_alive_s: 60,
                client_id: client_id.into(),
                will,
                ..Connect::default()
            }))
        };
        let connected_probe = |client_id: String, will: Option<Will>| {
            let packet = connect(&client_id, will);
            let address = running.address;
            async move {
                let mut probe = Probe::connect_tcp(address, ProbeOptions::client())
                    .await
                    .expect("the probe connects");
                probe.send(&packet).await.expect("CONNECT sent");
                probe
                    .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), WAIT)
                    .await
                    .expect("CONNACK 0");
                probe
            }
        };
        let subscribe = |filter: &str| {
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                subscriptions: vec![Subscription {
                    filter: filter.into(),
                    options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
                }],
            })
        };

        // (1) The probe's will, a late mosquitto_sub.
        let topic = format!("rc/willret/{tag}/probe");
        let mut watcher = connected_probe(format!("rc-wr{tag}-watch"), None).await;
        watcher.send(&subscribe(&topic)).await.expect("SUBSCRIBE sent");
        watcher.expect(&Pattern::suback(), WAIT).await.expect("SUBACK");
        let will = Will {
            topic: topic.clone(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
        };
        let doomed = connected_probe(format!("rc-wr{tag}-doomed"), Some(will)).await;
        doomed.close().await;
        watcher
            .expect(&Pattern::publish().topic(topic.as_str()).payload("offline"), WAIT)
            .await
            .expect("the will went out");
        let mut late = MosquittoSub::start(
            &running,
            *version,
            &format!("rc-wr{tag}-late"),
            0,
            &["-C", "1", "-t", &topic],
        )
        .await;
        assert_eq!(
            late.messages(1).await,
            [Received::new(&topic, 0, true, "offline")],
            "version {}: the will was retained",
            version.flag
        );
        late.finished().await;

        // (2) mosquitto_sub's will, a late probe.
        let topic = format!("rc/willret/{tag}/sub");
        let payload = format!("gone ({tag})");
        let doomed = MosquittoSub::start(
            &running,
            *version,
            &format!("rc-wr{tag}-killed"),
            0,
            &[
                "-t",
                &format!("rc/willret/{tag}/unused"),
                "--will-topic",
                &topic,
                "--will-payload",
                &payload,
                "--will-retain",
            ],
        )
        .await;
        doomed.kill().await;
        watcher.send(&subscribe(&topic)).await.expect("SUBSCRIBE sent");
        watcher.expect(&Pattern::suback(), WAIT).await.expect("SUBACK");
        // Subscribed before or after the will went out: the first copy comes from the store
        // (RETAIN 1) or, with the subscription already in place, live (RETAIN 0).
        let mut late = connected_probe(format!("rc-wr{tag}-lateprobe"), None).await;
        watcher
            .expect(&Pattern::publish().topic(topic.as_str()), WAIT)
            .await
            .expect("the will went out");
        late.send(&subscribe(&topic)).await.expect("SUBSCRIBE sent");
        late.expect(&Pattern::suback(), WAIT).await.expect("SUBACK");
        late.expect(
            &Pattern::publish()
                .topic(topic.as_str())
                .payload(payload.as_str())
                .retain(true),
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("version {}: the retained will: {error}", version.flag));
    }
    stop_checked(running).await;
}

// ---- paho-mqtt (5.0) --------------------------------------------------------------------------

#[tokio::test]
async fn paho_publish_properties_reach_the_subscriber_unchanged() {
    // Goal: user properties (order and duplicates kept), content type, response topic,
    // correlation data, payload format indicator reach a paho subscriber unchanged, and the
    // message expiry interval arrives at most as sent (5.0 MQTT-3.3.2-4, -6, -15..18, -20), at
    // QoS 0, 1 and 2. Method: tests/python/properties_v5.py (paho publisher and subscriber).
    let running = Running::start_default().await;
    let lines = paho_script(&running, "properties_v5.py", &[]).await;
    for qos in 0..=2 {
        assert_eq!(
            value_of(&lines, &format!("QOS{qos} USER_PROPERTIES")),
            "[('b', '2'), ('a', '1'), ('b', '1'), ('zü', 'x y'), ('empty', '')]"
        );
        assert_eq!(
            value_of(&lines, &format!("QOS{qos} CONTENT_TYPE")),
            "'application/json; charset=utf-8'"
        );
        assert_eq!(
            value_of(&lines, &format!("QOS{qos} CORRELATION_DATA")),
            "0001636f7272ff"
        );
        assert_eq!(value_of(&lines, &format!("QOS{qos} PAYLOAD_FORMAT_INDICATOR")), "1");
        let expiry: u32 = value_of(&lines, &format!("QOS{qos} MESSAGE_EXPIRY")).parse().unwrap();
        assert!((3599..=3600).contains(&expiry), "message expiry {expiry}");
    }
    stop_checked(running).await;
}

#[tokio::test]
async fn paho_topic_aliases_are_resolved_to_their_topics() {
    // Goal: a paho publisher sets aliases (topic + alias), uses them (empty topic + alias),
    // re-maps one and uses the highest alias the broker allows (5.0 MQTT-3.3.2-12); the subscriber
    // gets every message under its real topic; an alias is unknown on another connection
    // (MQTT-3.3.2-7), so using it there ends that connection. Method: tests/python/topic_alias.py.
    let running = Running::start_default().await;
    let lines = paho_script(&running, "topic_alias.py", &[]).await;
    assert_eq!(
        value_of(&lines, "TOPIC_ALIAS_MAXIMUM"),
        Config::default().topic_alias_maximum.to_string()
    );
    for (payload, topic) in [
        ("p1-set", "/one"),
        ("p2-use", "/one"),
        ("p3-use-qos0", "/one"),
        ("p4-remap", "/two"),
        ("p5-use-qos2", "/two"),
        ("p6-set-max", "/three"),
        ("p7-use-max", "/three"),
        ("p8-alias-1-kept", "/two"),
    ] {
        let received = value_of(&lines, &format!("MESSAGE {payload}"));
        assert!(
            received.ends_with(topic),
            "{payload} arrived on {received}, expected …{topic}"
        );
    }
    // 0x82 Protocol Error; paho 1.6.1 reports a DISCONNECT without properties as a lost
    // connection (7), so either shows that the broker ended the connection.
    assert!(["130", "7"].contains(&value_of(&lines, "UNKNOWN_ALIAS_DISCONNECT")));
    stop_checked(running).await;
}

#[tokio::test]
async fn paho_shared_subscription_delivers_each_message_to_exactly_one_member() {
    // Goal: two paho members of $share/g/<topic> get each of N messages exactly once between
    // them, both get some, and a plain subscriber on the topic gets all N (5.0 §4.8.2).
    // Method: tests/python/shared_subscriptions.py with N = 40.
    let running = Running::start_default().await;
    let lines = paho_script(&running, "shared_subscriptions.py", &["40"]).await;
    let a: usize = value_of(&lines, "COUNT a").parse().unwrap();
    let b: usize = value_of(&lines, "COUNT b").parse().unwrap();
    assert!(a > 0 && b > 0 && a + b == 40, "member a got {a}, member b {b}");
    assert_eq!(value_of(&lines, "COUNT plain"), "40");
    stop_checked(running).await;
}

#[tokio::test]
async fn paho_session_resumes_with_the_messages_queued_while_away() {
    // Goal: a paho 5.0 client with Clean Start 0 and Session Expiry 60 s gets Session Present 0,
    // then 1 when it comes back (5.0 MQTT-3.2.2-3), with the QoS 1 messages published while it was
    // away, in order, minus the one whose expiry passed (MQTT-3.1.2-5, MQTT-3.3.2-5, -6).
    // Method: tests/python/session_resume.py.
    let running = Running::start_default().await;
    let lines = paho_script(&running, "session_resume.py", &[]).await;
    assert_eq!(value_of(&lines, "SESSION_PRESENT first"), "0");
    assert_eq!(value_of(&lines, "SESSION_PRESENT resumed"), "1");
    assert_eq!(value_of(&lines, "MESSAGE queued-1"), "None");
    let expiry: u32 = value_of(&lines, "MESSAGE queued-3-long").parse().unwrap();
    assert!(
        (50..=58).contains(&expiry),
        "message expiry {expiry} after more than 2 s in the queue"
    );
    assert_eq!(value_of(&lines, "MESSAGE queued-4"), "None");
    assert!(
        !lines.iter().any(|line| line.contains("queued-2-expires")),
        "{lines:#?}"
    );
    stop_checked(running).await;
}

#[tokio::test]
async fn paho_will_is_delayed_by_its_will_delay_interval() {
    // Goal: a will with a 2 s Will Delay Interval arrives 2 s after the client's socket closed
    // abruptly, not before; one with a delay longer than the session expiry (1 s) arrives when the
    // session ends; one whose client reconnects within the delay never does (5.0 MQTT-3.1.2-8,
    // MQTT-3.1.3-9). Method: tests/python/will_delay.py (timings measured by the script on the
    // monotonic clock, from the close of the socket to the arrival at a paho watcher).
    let running = Running::start_default().await;
    let lines = paho_script(&running, "will_delay.py", &[]).await;
    let delayed: f64 = value_of(&lines, "WILL delayed").parse().unwrap();
    assert!(
        (2.0..=4.0).contains(&delayed),
        "the delayed will came {delayed} s after the close"
    );
    let session_end: f64 = value_of(&lines, "WILL session-end").parse().unwrap();
    assert!(
        (1.0..=3.0).contains(&session_end),
        "the session-end will came {session_end} s after the close"
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("WILL reconnected")),
        "{lines:#?}"
    );
    stop_checked(running).await;
}

/// Stops the server (bounded) and checks that no real client ever sent it a packet it could not
/// decode: strict decoding and real clients agree on the wire format.
async fn stop_checked(running: Running) {
    let statistics = running.stop().await;
    assert_eq!(
        statistics.decode_errors.load(Ordering::Relaxed),
        0,
        "a real client sent a packet the broker could not decode"
    );
}
