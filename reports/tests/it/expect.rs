//! Expectations files: loading with `path:line:column` errors, and comparing reports with them.

use mqtt_reports::*;

use crate::support;

const MOSQUITTO: &str = r#"broker: mosquitto 2.0.11
kind: run            # which command's results it describes: check | run
expectations:
  - case: will/delay-cancelled-by-resume
    version: "5.0"
    verdict: fail
    statement: MQTT-3.1.3-9
    evidence: >
      mosquitto publishes the will 5 s after the abrupt close although the client resumed
  - case: connect/first-packet
    version: "3.1.1"
    verdict: fail
    statement: MQTT-3.1.0-1
    evidence: accepts a PUBLISH before CONNECT
"#;

const PATH: &str = "scenarios/expected/mosquitto-2.0.yaml";

fn load(text: &str) -> Result<Expectations, ExpectError> {
    Expectations::from_yaml(text, PATH)
}

fn mosquitto() -> Expectations {
    load(MOSQUITTO).expect("the example loads")
}

#[test]
fn the_documented_example_loads_with_each_entry_located() {
    let expectations = mosquitto();
    assert_eq!(expectations.broker, "mosquitto 2.0.11");
    assert_eq!(expectations.kind, Kind::Run);
    assert_eq!(expectations.entries.len(), 2);
    let first = &expectations.entries[0];
    assert_eq!(
        (first.case.as_str(), first.version.as_str()),
        ("will/delay-cancelled-by-resume", "5.0")
    );
    assert_eq!(first.verdict, Verdict::Fail);
    assert_eq!(first.statement, "MQTT-3.1.3-9");
    assert!(
        first.evidence.starts_with("mosquitto publishes the will"),
        "{}",
        first.evidence
    );
    assert_eq!(first.line, 4);
    assert_eq!(expectations.entries[1].line, 10);
    assert_eq!(
        expectations
            .get("connect/first-packet", "3.1.1")
            .map(|entry| entry.line),
        Some(10)
    );
    assert!(expectations.get("connect/first-packet", "5.0").is_none());
}

#[test]
fn a_bad_verdict_is_reported_at_its_file_line_and_column() {
    let text = MOSQUITTO.replace(
        "verdict: fail\n    statement: MQTT-3.1.3-9",
        "verdict: broken\n    statement: MQTT-3.1.3-9",
    );
    let error = load(&text).expect_err("refused");
    let message = error.to_string();
    assert!(message.starts_with(&format!("{PATH}:6:14: ")), "{message}");
    assert!(message.contains("broken"), "{message}");
    assert!(!message.contains("at line"), "the location is said once: {message}");
}

#[test]
fn an_unknown_key_is_reported_at_its_file_line_and_column() {
    let text = MOSQUITTO.replace("    statement: MQTT-3.1.0-1", "    statment: MQTT-3.1.0-1");
    let error = load(&text).expect_err("refused");
    let message = error.to_string();
    assert!(message.starts_with(&format!("{PATH}:13:")), "{message}");
    assert!(message.contains("statment"), "{message}");
}

#[test]
fn an_unknown_top_level_key_is_refused_too() {
    let error = load(&format!("{MOSQUITTO}notes: hello\n")).expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{PATH}:15:1: unknown field `notes`")),
        "{error}"
    );
}

#[test]
fn a_duplicate_entry_is_reported_at_the_second_entry() {
    let text = MOSQUITTO.replace(
        "  - case: connect/first-packet\n    version: \"3.1.1\"",
        "  - case: will/delay-cancelled-by-resume\n    version: \"5.0\"",
    );
    let error = load(&text).expect_err("refused");
    assert!(
        matches!(
            error,
            ExpectError::DuplicateEntry {
                line: 10,
                first_line: 4,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.starts_with(&format!("{PATH}:10:")), "{message}");
    assert!(message.contains("will/delay-cancelled-by-resume [5.0]"), "{message}");
    assert!(message.contains("line 4"), "{message}");
}

#[test]
fn an_entry_that_expects_a_pass_is_refused() {
    let text = MOSQUITTO.replace(
        "verdict: fail\n    statement: MQTT-3.1.0-1",
        "verdict: pass\n    statement: MQTT-3.1.0-1",
    );
    let error = load(&text).expect_err("refused");
    let message = error.to_string();
    assert!(message.starts_with(&format!("{PATH}:12:14: ")), "{message}");
    assert!(message.contains("a passing case needs no entry"), "{message}");
}

#[test]
fn an_unknown_protocol_version_is_refused_at_the_version() {
    let text = MOSQUITTO.replace("version: \"3.1.1\"", "version: \"5\"");
    let error = load(&text).expect_err("refused");
    assert!(error.to_string().starts_with(&format!("{PATH}:11:14: ")), "{error}");
}

#[test]
fn an_unquoted_version_reads_as_written() {
    // YAML would make 5.0 a float; deserialized into a string it keeps its spelling.
    let expectations = load(&MOSQUITTO.replace("version: \"5.0\"", "version: 5.0")).expect("loads");
    assert_eq!(expectations.entries[0].version, "5.0");
}

#[test]
fn a_missing_statement_is_refused() {
    let text = MOSQUITTO.replace("    statement: MQTT-3.1.0-1\n", "");
    let error = load(&text).expect_err("refused");
    assert!(
        matches!(error, ExpectError::Format { line, .. } if line > 0),
        "{error:?}"
    );
    assert!(error.to_string().contains("statement"), "{error}");
}

/// An expectations file whose entries all name their statement through one alias.
fn file_with_aliases(entries: usize) -> String {
    let mut text = String::from("broker: mosquitto 2.0.11\nkind: run\nexpectations:\n");
    for index in 0..entries {
        let statement = if index == 0 {
            "&statement MQTT-3.1.3-9"
        } else {
            "*statement"
        };
        text.push_str(&format!(
            "  - case: will/case-{index}\n    version: \"5.0\"\n    verdict: fail\n    statement: {statement}\n    evidence: e\n"
        ));
    }
    text
}

#[test]
fn aliases_beyond_the_budget_are_refused() {
    // Goal: alias expansion is bounded. The format holds only scalars, so the nesting bound can
    // never be reached by a file that would otherwise load (a collection where a scalar belongs is
    // refused first); the alias bound can, with many aliases to one scalar.
    let entries = load(&file_with_aliases(100))
        .expect("99 aliases are within the budget")
        .entries;
    assert!(entries.iter().all(|entry| entry.statement == "MQTT-3.1.3-9"));
    let error = load(&file_with_aliases(150)).expect_err("149 aliases are refused");
    assert!(
        matches!(error, ExpectError::Format { line, .. } if line > 0),
        "{error:?}"
    );
    assert!(error.to_string().contains("budget"), "{error}");
}

#[test]
fn a_collection_where_a_scalar_belongs_is_refused_at_once() {
    let deep = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
    let error = load(&MOSQUITTO.replace("broker: mosquitto 2.0.11", &format!("broker: {deep}"))).expect_err("refused");
    assert!(error.to_string().starts_with(&format!("{PATH}:1:9: ")), "{error}");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = support::temporary_dir("expectations");
    let path = dir.join("mosquitto-2.0.yaml");
    std::fs::write(&path, MOSQUITTO.replace("kind: run", "kind: walk")).expect("written");
    let message = Expectations::load(&path).expect_err("refused").to_string();
    assert!(message.starts_with(&format!("{}:2:7: ", path.display())), "{message}");

    std::fs::write(&path, MOSQUITTO).expect("written");
    assert_eq!(Expectations::load(&path).expect("loads").path, path);

    let missing = dir.join("missing.yaml");
    let error = Expectations::load(&missing).expect_err("refused");
    assert!(matches!(error, ExpectError::Read { .. }), "{error:?}");
    let _ = std::fs::remove_dir_all(dir);
}

fn run_report() -> Report {
    let mut report = Report::new(Kind::Run, "0.1.0", "2026-11-29T09:10:55Z", "mqtt://127.0.0.1:1883");
    report.push(support::case("will/delay-cancelled-by-resume", "5.0", Verdict::Fail));
    report.push(support::case("connect/first-packet", "3.1.1", Verdict::Fail));
    report.push(support::case("connect/first-packet", "5.0", Verdict::Pass));
    report
}

#[test]
fn a_report_that_matches_its_expectations_has_no_mismatch() {
    let comparison = compare(&run_report(), &mosquitto());
    assert!(comparison.is_match(), "{comparison:?}");
    assert!(comparison.not_run.is_empty());
}

#[test]
fn a_new_failure_and_a_new_pass_are_both_mismatches() {
    let mut report = run_report();
    report.cases[0].verdict = Verdict::Pass; // expected to fail
    report.cases[2].verdict = Verdict::Fail; // expected to pass
    report.cases[2].evidence.message = "no CONNACK within 5 s".to_owned();
    report.finish();
    let comparison = compare(&report, &mosquitto());
    assert!(!comparison.is_match());
    let found: Vec<(&str, &str, Verdict, Verdict)> = comparison
        .mismatches
        .iter()
        .map(|mismatch| {
            (
                mismatch.case.as_str(),
                mismatch.version.as_str(),
                mismatch.expected,
                mismatch.actual,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("will/delay-cancelled-by-resume", "5.0", Verdict::Fail, Verdict::Pass),
            ("connect/first-packet", "5.0", Verdict::Pass, Verdict::Fail),
        ]
    );
    assert!(comparison.mismatches[0]
        .message
        .starts_with("new pass: update the expectations file"));
    assert_eq!(
        comparison.mismatches[1].to_string(),
        "connect/first-packet [5.0]: expected pass, got fail: new failure: no CONNACK within 5 s"
    );
}

#[test]
fn not_applicable_and_skipped_cases_are_counted_but_never_mismatches() {
    let mut report = run_report();
    report.cases[0].verdict = Verdict::NotApplicable; // expected to fail
    report.cases[2].verdict = Verdict::Skipped; // expected to pass
    report.finish();
    let comparison = compare(&report, &mosquitto());
    assert!(comparison.is_match(), "{comparison:?}");
    assert_eq!(comparison.not_compared, 2);
}

#[test]
fn an_informational_verdict_counts_as_a_pass() {
    let mut report = run_report();
    report.cases[2].verdict = Verdict::Informational;
    report.cases[1].verdict = Verdict::Informational; // expected to fail: a new pass
    report.finish();
    let comparison = compare(&report, &mosquitto());
    assert_eq!(comparison.mismatches.len(), 1, "{comparison:?}");
    assert_eq!(comparison.mismatches[0].case, "connect/first-packet");
    assert_eq!(comparison.mismatches[0].version, "3.1.1");
}

#[test]
fn every_seed_of_a_case_is_compared() {
    let mut report = Report::new(Kind::Run, "0.1.0", "2026-11-29T09:10:55Z", "mqtt://127.0.0.1:1883");
    for (seed, verdict) in [(1, Verdict::Fail), (2, Verdict::Pass), (3, Verdict::Pass)] {
        let mut case = support::case("will/delay-cancelled-by-resume", "5.0", verdict);
        case.seed = Some(seed);
        report.push(case);
    }
    let comparison = compare(&report, &mosquitto());
    let seeds: Vec<Option<u64>> = comparison.mismatches.iter().map(|mismatch| mismatch.seed).collect();
    assert_eq!(seeds, [Some(2), Some(3)]);
    assert!(comparison.mismatches[0]
        .to_string()
        .starts_with("will/delay-cancelled-by-resume [5.0] seed 2: "));
}

#[test]
fn entries_for_cases_the_report_did_not_run_are_notes_not_mismatches() {
    let mut report = run_report();
    report.cases.remove(0);
    report.finish();
    let comparison = compare(&report, &mosquitto());
    assert!(comparison.is_match(), "{comparison:?}");
    assert_eq!(comparison.not_run.len(), 1);
    assert_eq!(
        comparison.not_run[0].to_string(),
        "will/delay-cancelled-by-resume [5.0] (line 4) was not run"
    );
}

#[test]
fn a_file_for_another_command_compares_nothing_and_says_so() {
    let mut report = run_report();
    report.kind = Kind::Check;
    let comparison = compare(&report, &mosquitto());
    assert!(!comparison.is_match());
    assert!(comparison.mismatches.is_empty());
    let wrong_kind = comparison.wrong_kind.expect("the kinds differ");
    assert_eq!(
        wrong_kind.to_string(),
        "the expectations file describes `run` results, but this report comes from `check`"
    );
}

#[test]
fn an_intermittent_deviation_matches_a_failure_and_a_pass_alike() {
    let text = "broker: b\nkind: run\nexpectations:\n  - case: a/flaky\n    version: \"5.0\"\n    verdict: fail\n    statement: MQTT-3.1.2-22\n    evidence: checks its timer every 5 s\n    intermittent: true\n  - case: a/steady\n    version: \"5.0\"\n    verdict: fail\n    statement: MQTT-3.1.2-22\n    evidence: always\n";
    let expectations = Expectations::from_yaml(text, "intermittent.yaml").expect("loads");
    for verdict in [Verdict::Fail, Verdict::Pass] {
        let mut report = Report::new(Kind::Run, "1", "2026-01-01T00:00:00Z", "t");
        report.push(Case::new("a/flaky", "5.0", verdict));
        report.push(Case::new("a/steady", "5.0", Verdict::Fail));
        assert!(
            compare(&report, &expectations).is_match(),
            "{verdict:?} matches an intermittent entry"
        );
    }
    let mut report = Report::new(Kind::Run, "1", "2026-01-01T00:00:00Z", "t");
    report.push(Case::new("a/steady", "5.0", Verdict::Pass));
    assert!(
        !compare(&report, &expectations).is_match(),
        "a steady deviation that passes is a new pass"
    );
}
