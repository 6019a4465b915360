//! `check` as a user runs it. Goal: exit 0 when every applicable MUST case passes, 1 on a
//! mismatch with --expect, 2 with a one-line reason for a broker that is not there, one that never
//! answers, or wrong arguments; --list sends nothing; --report-dir writes the four files. Method:
//! run the built binary (bounded in time) on one case against the embedded broker, and against
//! loopback ports that refuse or say nothing.

use crate::support::{harness, temp, text};
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
