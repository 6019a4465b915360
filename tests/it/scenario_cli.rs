//! `sim`, `run` and `report` as a user runs them. Goal: the exit codes (0 pass, 1 a failure or
//! an expectation mismatch, 2 bad input), the file:line:column of a bad scenario, a replay
//! command that replays, byte-identical traces for one seed, results that merge and render, and
//! a readable line for a broker that is not there. Method: run the built binary as a child
//! process (bounded in time) on scenarios written to a temporary folder or from the library.

use crate::support::{harness, temp, text};
use std::net::TcpListener;
use std::path::Path;

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
    std::fs::write(path, contents).expect("written");
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_bad_scenario_file_is_refused_with_its_line_and_column_and_exit_2() {
    let dir = temp("bad");
    let bad = dir.join("area/bad.yaml");
    write(
        &bad,
        "name: bad\nclients:\n  a: {client_id: x}\nsteps:\n  - a: {publish: {topic: t, qos: high}}\n",
    );
    let output = harness(&["sim", &shown(&bad), "--seed", "1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad.yaml:5:34: expected a QoS (0, 1 or 2), found \"high\""),
        "{stderr}"
    );
}

#[test]
fn a_failing_scenario_exits_1_and_its_replay_command_replays_it() {
    let dir = temp("failing");
    let scenario = dir.join("area/never.yaml");
    write(
        &scenario,
        "name: never\nclients:\n  a: {}\nsteps:\n  - a: { connect: {} }\n  - a: { expect: { publish: { topic: nothing }, within_ms: 500 } }\n",
    );
    let output = harness(&["sim", &shown(&scenario), "--seeds", "3..5"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("FAIL area/never [5.0] 0/2 seeds passed"), "{stdout}");
    assert!(
        stdout.contains("never.yaml:6: a: no matching PUBLISH by 0."),
        "{stdout}"
    );
    let replay = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("replay: mqtt-harness "))
        .expect("a replay command");
    assert!(replay.contains("--seed 3 --protocol 5.0"), "{replay}");
    let args: Vec<&str> = replay.split(' ').collect();
    let again = harness(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stdout).contains("FAIL area/never [5.0] seed 3"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn the_same_seed_writes_the_same_traces_with_swarm_faults() {
    let dir = temp("traces");
    let scenario = "scenarios/spec/qos/qos1-resent-after-partition.yaml";
    for run in ["a", "b"] {
        let trace_dir = shown(&dir.join(run));
        let output = harness(&["sim", scenario, "--seed", "4711", "--swarm", "--trace-dir", &trace_dir]);
        assert!(output.status.code().is_some(), "{}", text(&output.stderr));
    }
    let trace = |run: &str| {
        let path = dir
            .join(run)
            .join("qos/qos1-resent-after-partition/5.0/seed-4711.trace");
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    };
    let first = trace("a");
    assert!(first.lines().count() > 20, "{first}");
    assert!(
        first.contains(" net -- "),
        "the swarm's faults are in the trace: {first}"
    );
    assert_eq!(first, trace("b"), "same seed, same trace");
}

#[test]
fn sim_results_of_two_seed_ranges_merge_and_render() {
    let dir = temp("merge");
    let scenario = "scenarios/spec/keep-alive/silent-client-closed.yaml";
    let first = shown(&dir.join("first.json"));
    let second = shown(&dir.join("second.json"));
    for (range, json) in [("1..3", &first), ("3..5", &second)] {
        let output = harness(&["sim", scenario, "--seeds", range, "--json", json]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    }
    let merged = shown(&dir.join("merged.json"));
    let output = harness(&["report", "merge", &first, &second, "--json", &merged]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("8 cases"), "{}", text(&output.stdout));
    let json = std::fs::read_to_string(&merged).expect("the merged file");
    for seed in 1..5 {
        assert!(json.contains(&format!("\"seed\": {seed}")), "seed {seed} in {json}");
    }
    assert!(
        json.contains("\"1..3\"") && json.contains("\"3..5\""),
        "both ranges stay visible"
    );
    let (html, md, junit) = (dir.join("r.html"), dir.join("r.md"), dir.join("r.xml"));
    let output = harness(&[
        "report",
        "render",
        &merged,
        "--html",
        &shown(&html),
        "--md",
        &shown(&md),
        "--junit",
        &shown(&junit),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let junit = std::fs::read_to_string(&junit).expect("junit");
    assert_eq!(junit.matches("<testcase").count(), 8, "{junit}");
    assert!(std::fs::read_to_string(&md)
        .expect("markdown")
        .contains("keep-alive/silent-client-closed"));
    assert!(std::fs::read_to_string(&html).expect("html").contains("<html"));
    let output = harness(&[
        "report",
        "merge",
        &first,
        "--json",
        &shown(&dir.join("x.json")),
        "--no-such",
    ]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_broker_that_is_not_there_is_one_line_and_exit_2() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let output = harness(&["run", "scenarios/spec/keep-alive", "--broker", &url]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr).trim(),
        format!("connection refused to 127.0.0.1:{port}")
    );
}

#[test]
fn run_against_the_reference_broker_passes_and_an_unexpected_pass_is_a_mismatch() {
    let dir = temp("run");
    let json = shown(&dir.join("run.json"));
    let scenario = "scenarios/spec/will/normal-disconnect-discards-will.yaml";
    let output = harness(&["run", scenario, "--json", &json]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("PASS will/normal-disconnect-discards-will [5.0]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS will/normal-disconnect-discards-will [3.1.1]"),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(&json)
        .expect("the result")
        .contains("\"kind\": \"run\""));

    // An expectations file that says it fails: passing now is a mismatch, exit 1.
    let expect = dir.join("expected.yaml");
    write(
        &expect,
        "broker: test\nkind: run\nexpectations:\n  - case: will/normal-disconnect-discards-will\n    version: \"5.0\"\n    verdict: fail\n    statement: MQTT-3.14.4-3\n    evidence: made up for the test\n",
    );
    let output = harness(&["run", scenario, "--expect", &shown(&expect)]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("MISMATCH"), "{}", text(&output.stdout));
}

#[test]
fn a_scenario_the_target_cannot_serve_is_not_applicable_with_the_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("mqtt://{}", listener.local_addr().expect("an address"));
    // Accept and drop: a URL target cannot be restarted, so nothing is ever run against it.
    let output = harness(&[
        "run",
        "scenarios/spec/broker/restart-forgets-sessions.yaml",
        "--broker",
        &url,
    ]);
    drop(listener);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("N/A  broker/restart-forgets-sessions [5.0]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not applicable: it crashes and restarts the broker"),
        "{stdout}"
    );
}
