//! `check` as a user runs it. Goal: exit 0 when every applicable MUST case passes, 1 on a
//! mismatch with --expect, 2 with a one-line reason for a broker that is not there, one that never
//! answers, or wrong arguments; --list sends nothing; --report-dir writes the four files. Method:
//! run the built binary (bounded in time) on one case against the embedded broker, and against
//! loopback ports that refuse or say nothing.

use crate::support::{harness, harness_within, temp, text};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const ONE_CASE: &str = "connack-is-the-first-packet";

#[test]
fn list_names_every_case_and_sends_nothing() {
    let output = harness(&["check", "mqtt://127.0.0.1:1", "--list"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&format!("MQTT-3.2.0-1/{ONE_CASE}")), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|line| line.ends_with("cases in 2 versions")),
        "{stdout}"
    );
}

#[test]
fn one_case_against_the_embedded_broker_passes_and_writes_the_reports() {
    let dir = temp("reports");
    let reports = dir.join("out");
    let output = harness(&[
        "check",
        "--only",
        ONE_CASE,
        "--report-dir",
        &reports.display().to_string(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!("PASS MQTT-3.2.0-1/{ONE_CASE} [5.0]")),
        "{stdout}"
    );
    for file in ["report.json", "junit.xml", "report.html", "report.md"] {
        assert!(reports.join(file).is_file(), "{file} written");
    }
    let json = std::fs::read_to_string(reports.join("report.json")).expect("report.json");
    assert!(
        json.contains("\"coverage\"") && json.contains("\"total\": 251"),
        "coverage section"
    );
    assert!(json.contains("\"broker\""), "the broker's identity and CONNACK");
}

#[test]
fn an_unexpected_pass_against_the_expectations_is_exit_1() {
    let dir = temp("expect");
    let expect = dir.join("expected.yaml");
    std::fs::write(
        &expect,
        format!("broker: test\nkind: check\nexpectations:\n  - case: MQTT-3.2.0-1/{ONE_CASE}\n    version: \"5.0\"\n    verdict: fail\n    statement: MQTT-3.2.0-1\n    evidence: made up for the test\n"),
    )
    .expect("written");
    let output = harness(&["check", "--only", ONE_CASE, "--expect", &expect.display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("MISMATCH"));
}

#[test]
fn a_broker_that_refuses_or_never_answers_is_one_line_and_exit_2() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let output = harness(&["check", &format!("mqtt://127.0.0.1:{port}")]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr).trim(),
        format!("connection refused to 127.0.0.1:{port}")
    );

    // Accepts connections and says nothing: discovery gives up with the reason.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let url = format!("mqtt://{}", silent.local_addr().expect("an address"));
    let started = Instant::now();
    let output = harness(&["check", &url, "--protocol", "5.0"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no CONNACK"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn wrong_arguments_are_exit_2() {
    assert_eq!(harness(&["check", "--timeout-scale", "0"]).status.code(), Some(2));
    assert_eq!(harness(&["check", "--protocol", "4"]).status.code(), Some(2));
    assert_eq!(harness(&["check", "--only", "no-such-case"]).status.code(), Some(2));
}

#[test]
fn the_robustness_suite_passes_on_the_reference_broker_in_a_process_of_its_own() {
    // Goal: `check --robustness` without a URL starts the reference broker as a child process,
    // runs every robustness case in both versions beside the side client, reports the broker's
    // memory around each, and every case passes. Method: the built binary, bounded in time.
    let dir = temp("robustness");
    let json = dir.join("robustness.json");
    let output = harness_within(
        &["check", "--robustness", "--json", &json.display().to_string()],
        Duration::from_secs(300),
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    let names = [
        "truncated-packets",
        "stalled-packet-keep-alive-0",
        "slow-loris-connect",
        "property-flood",
        "subscribe-past-limit",
        "connection-flood",
        "qos2-ids-never-released",
        "publish-storm-unread",
    ];
    for name in names {
        assert!(
            stdout.contains(&format!("PASS robustness/{name} [5.0]")),
            "{name}: {stdout}"
        );
        if name != "property-flood" {
            assert!(
                stdout.contains(&format!("PASS robustness/{name} [3.1.1]")),
                "{name}: {stdout}"
            );
        }
    }
    assert_eq!(stdout.matches("note: broker RSS: before").count(), 15, "{stdout}");
    assert_eq!(
        stdout.matches("note: side client round trip: before p50").count(),
        15,
        "{stdout}"
    );
    assert!(stdout.contains("15 cases: 15 passed"), "{stdout}");
    let report = std::fs::read_to_string(&json).expect("the JSON report");
    assert!(report.contains("robustness/publish-storm-unread"), "{report}");
}

#[test]
fn fuzzing_the_reference_broker_keeps_it_healthy_and_a_dead_broker_fails_with_the_input_saved() {
    // Goal: `check --fuzz` sends mutated sessions and finds the reference broker healthy after
    // each; when the broker dies mid-run, the run fails (exit 1), names the input and saves it
    // with a replay command, and `--fuzz-replay` replays a saved input. Method: the built binary
    // against its own child broker for 5 s; then against a mosquitto this test stops once its log
    // shows 20 health checks of a 30 s run.
    let output = harness(&["check", "--fuzz", "5s", "--seed", "3"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("the broker stayed healthy after every one"), "{stdout}");
    assert!(stdout.contains("seed 3"), "{stdout}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mosquitto = runtime
        .block_on(mqtt_scenarios::live::mosquitto::Mosquitto::start(
            mqtt_scenarios::live::mosquitto::MosquittoConfig::default(),
        ))
        .expect("mosquitto starts");
    let url = format!("mqtt://127.0.0.1:{}", mosquitto.port());
    let dir = temp("fuzz");
    let fuzz_dir = dir.join("saved");
    let fuzz_dir_text = fuzz_dir.display().to_string();
    let url_for_run = url.clone();
    let run = std::thread::spawn(move || {
        harness(&[
            "check",
            &url_for_run,
            "--fuzz",
            "30s",
            "--seed",
            "9",
            "--fuzz-dir",
            &fuzz_dir_text,
        ])
    });
    // Stopped once the run is well under way: 20 health checks in mosquitto's log (bounded).
    let under_way = Instant::now() + Duration::from_secs(30);
    while mosquitto.log().matches("-health").count() < 20 {
        assert!(
            Instant::now() < under_way,
            "the fuzzing run never got going:\n{}",
            mosquitto.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    runtime.block_on(mosquitto.stop());
    let output = run.join().expect("the run ends");
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("broke the broker") && stdout.contains("Unhealthy"),
        "{stdout}"
    );
    let saved: Vec<std::path::PathBuf> = std::fs::read_dir(&fuzz_dir)
        .expect("the fuzz directory")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    let bin = saved
        .iter()
        .find(|path| path.extension().is_some_and(|extension| extension == "bin"))
        .unwrap_or_else(|| panic!("no .bin saved: {saved:?}"));
    let note = std::fs::read_to_string(bin.with_extension("txt")).expect("the note beside it");
    assert!(
        note.contains("seed 9") && note.contains("--fuzz-replay") && note.contains(&url),
        "{note}"
    );

    // The saved input, replayed against a broker that is up: it survives.
    let version = if note.contains("version: 5.0") { "5.0" } else { "3.1.1" };
    let output = harness(&[
        "check",
        "--fuzz-replay",
        &bin.display().to_string(),
        "--protocol",
        version,
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}
