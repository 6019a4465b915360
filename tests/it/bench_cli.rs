//! `bench` as a user runs it. Goal: a short QoS 1 run against a broker exits 0 and writes its
//! reports (with the charts); two shards run side by side as two processes merge into exactly
//! the sum of their counts and histograms; bad input (a dead broker, a bad URL, a rate of 0, a
//! shard out of range, a payload too small for its stamp) is one line and exit 2, never a panic
//! or a hang. Method: the built binary as child processes (bounded in time), against the
//! reference broker started in this test process, on its loopback port.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;

use mqtt_broker::Config;
use mqtt_scenarios::live::ReferenceBroker;
use serde_json::Value;

use crate::support::{harness, temp, text};

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

fn count(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count `{key}` in the report"))
}

/// A histogram's buckets from a report, value → count.
fn buckets(value: &Value) -> BTreeMap<u64, u64> {
    let mut buckets = BTreeMap::new();
    for pair in value.as_array().expect("buckets") {
        let (bucket, count) = (pair[0].as_u64().expect("value"), pair[1].as_u64().expect("count"));
        *buckets.entry(bucket).or_default() += count;
    }
    buckets
}

#[test]
fn a_short_qos_1_run_exits_0_with_exact_counts_and_writes_its_reports() {
    let broker = ReferenceBroker::start(Config::default()).expect("the reference broker starts");
    let url = format!("mqtt://{}", broker.address());
    let dir = temp("bench-run");
    let output = harness(&[
        "bench",
        &url,
        "--publishers",
        "2",
        "--subscribers",
        "2",
        "--qos",
        "1",
        "--rate",
        "500",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--report-dir",
        &dir.display().to_string(),
        "--hdr-log",
        &dir.join("latency.hlog").display().to_string(),
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains("PASS delivery/loss"), "{stdout}");
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["kind"], "bench");
    assert_eq!(count(&report, "lost"), 0);
    assert_eq!(count(&report, "received"), count(&report, "expected"));
    assert!(report["latency_us"]["p99"].as_u64().unwrap_or(0) > 0);
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.matches("<svg").count() >= 3, "the charts are drawn");
    let log = std::fs::read_to_string(dir.join("latency.hlog")).expect("the HDR log");
    assert!(log.lines().filter(|line| !line.starts_with('#')).count() >= 2, "{log}");
}

#[test]
fn two_shards_in_two_processes_merge_into_the_sum_of_their_counts_and_histograms() {
    let broker = ReferenceBroker::start(Config::default()).expect("the reference broker starts");
    let url = format!("mqtt://{}", broker.address());
    let dir = temp("bench-shards");
    let shard_path = |k: usize| dir.join(format!("s{k}.json")).display().to_string();
    let shards: Vec<_> = (0..2)
        .map(|k| {
            let (url, path) = (url.clone(), shard_path(k));
            std::thread::spawn(move || {
                harness(&[
                    "bench",
                    &url,
                    "--publishers",
                    "4",
                    "--subscribers",
                    "4",
                    "--qos",
                    "1",
                    "--rate",
                    "800",
                    "--duration",
                    "1s",
                    "--warmup",
                    "200ms",
                    "--shard",
                    &format!("{k}/2"),
                    "--json",
                    &path,
                ])
            })
        })
        .collect();
    for (k, shard) in shards.into_iter().enumerate() {
        let output = shard.join().expect("the shard's thread");
        assert_eq!(
            output.status.code(),
            Some(0),
            "shard {k}: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    }
    let merged_path = dir.join("merged.json");
    let output = harness(&[
        "report",
        "merge",
        &shard_path(0),
        &shard_path(1),
        "--json",
        &merged_path.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shards = [
        read_json(Path::new(&shard_path(0))),
        read_json(Path::new(&shard_path(1))),
    ];
    let merged = read_json(&merged_path);
    for key in ["sent", "expected", "received", "lost", "duplicated"] {
        assert_eq!(
            count(&merged, key),
            shards.iter().map(|shard| count(shard, key)).sum::<u64>(),
            "{key}"
        );
    }
    assert_eq!(count(&merged, "shards"), 2);
    let mut sum = buckets(&shards[0]["histograms"]["latency"]);
    for (bucket, count) in buckets(&shards[1]["histograms"]["latency"]) {
        *sum.entry(bucket).or_default() += count;
    }
    assert_eq!(
        buckets(&merged["histograms"]["latency"]),
        sum,
        "histograms added, bucket by bucket"
    );
    let rate = |report: &Value| report["throughput"]["requested_per_s"].as_f64().expect("a rate");
    assert!(
        (rate(&merged) - 800.0).abs() < 1e-6,
        "the shards' parts add up to the rate asked for"
    );
    assert_eq!(
        merged["cases"].as_array().expect("cases").len(),
        5,
        "judged once, on the merged figures"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("its address").port()
        // Dropped here: nothing listens on it any more.
    };
    let dead_url = format!("mqtt://127.0.0.1:{dead}");
    let past = (std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let late = harness(&["bench", "--rate", "100", "--duration", "1s", "--start-at", &past]);
    assert_eq!(late.status.code(), Some(1), "{}", text(&late.stderr));
    assert!(
        text(&late.stderr).contains("after --start-at"),
        "{}",
        text(&late.stderr)
    );
    let cases: [(&[&str], &str); 6] = [
        (
            &["bench", &dead_url, "--rate", "100"],
            "connection refused to 127.0.0.1",
        ),
        (&["bench", "127.0.0.1:1883", "--rate", "100"], "has no scheme"),
        (&["bench", "--rate", "0"], "--rate"),
        (&["bench", "--shard", "3/2"], "shard"),
        (&["bench", "--payload-bytes", "8"], "at least 24 bytes"),
        (&["bench", "--topics", "5"], "--topics 5"),
    ];
    for (args, expected) in cases {
        let output = harness(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `bench` over TLS and WebSocket: the same exact counts at QoS 1 over mqtts://, ws:// and wss://
/// (the reference broker's listeners, certificates made by rcgen), the connection workloads too;
/// a broker whose certificate the CA file does not vouch for is one line and exit 2.
#[test]
fn bench_runs_over_tls_and_websocket_with_exact_counts() {
    use mqtt_broker::listener::{ListenSpec, ListenerOptions, MqttListener};
    use mqtt_broker::server::Server;

    let certificates = crate::certs::Certificates::make("bench-transports");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut options = ListenerOptions::new();
    options.tls = Some(certificates.server_tls("server", false));
    let mut listeners = Vec::new();
    for listen in ["mqtts://127.0.0.1:0", "ws://127.0.0.1:0/mqtt", "wss://127.0.0.1:0/mqtt"] {
        let spec: ListenSpec = listen.parse().expect("a listen URL");
        listeners.push(runtime.block_on(MqttListener::bind(&spec, &options)).expect("bound"));
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|listener| listener.describe().replace("127.0.0.1", "localhost"))
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(
        Server::new(listeners, mqtt_broker::Broker::new(Config::default())).run(async {
            let _ = stopped.await;
        }),
    );
    let cafile = certificates.path("ca.pem").display().to_string();
    for url in &urls {
        let dir = temp("bench-transports");
        let output = harness(&[
            "bench",
            url,
            "--cafile",
            &cafile,
            "--qos",
            "1",
            "--rate",
            "500",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--report-dir",
            &dir.display().to_string(),
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url}: {}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        let report = read_json(&dir.join("report.json"));
        assert_eq!(count(&report, "lost"), 0, "{url}");
        assert_eq!(count(&report, "received"), count(&report, "expected"), "{url}");
        let idle = harness(&[
            "bench",
            url,
            "--cafile",
            &cafile,
            "--workload",
            "idle",
            "--connections",
            "50",
            "--hold",
            "200ms",
        ]);
        assert_eq!(idle.status.code(), Some(0), "{url}: {}", text(&idle.stdout));
        assert!(
            text(&idle.stdout).contains("50 of 50 connected"),
            "{url}: {}",
            text(&idle.stdout)
        );
    }
    // No CA file: the broker's certificate is not trusted.
    let untrusted = harness(&["bench", &urls[0], "--rate", "100", "--duration", "1s"]);
    let stderr = text(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TLS handshake") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let _ = stop.send(());
    runtime.block_on(server).expect("the server stops");
}
