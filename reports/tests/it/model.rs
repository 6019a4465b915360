//! The result model: JSON in and out, schema versions, summary counting.

use std::collections::BTreeMap;

use mqtt_reports::*;
use proptest::prelude::*;
use serde_json::json;

use crate::support;

#[test]
fn a_report_reads_back_equal_to_what_was_written() {
    let report = support::report();
    let read_back = Report::from_json(&report.to_json_pretty()).expect("a report reads back");
    assert_eq!(read_back, report);
}

#[test]
fn the_json_uses_the_documented_spellings_and_leaves_out_what_is_empty() {
    // Goal: other tools read this document, so its field names and enum spellings are checked
    // literally, not only through a round trip of our own types.
    let mut report = Report::new(Kind::Check, "0.1.0", "2026-11-29T09:10:55Z", "mqtt://127.0.0.1:1883");
    report.push(Case::new("connect/first-packet", "5.0", Verdict::NotApplicable));
    let value: serde_json::Value = serde_json::from_str(&report.to_json_pretty()).expect("JSON");
    assert_eq!(value["schema_version"], json!(SCHEMA_VERSION));
    assert_eq!(value["kind"], json!("check"));
    assert_eq!(value["tool"], json!({"name": "mqtt-harness", "version": "0.1.0"}));
    assert_eq!(value["summary"]["not_applicable"], json!(1));
    let case = &value["cases"][0];
    assert_eq!(case["verdict"], json!("not_applicable"));
    assert!(case.get("seed").is_none(), "no seed key without a seed: {case}");
    assert!(
        case["evidence"].get("trace").is_none(),
        "no trace key without a trace: {case}"
    );
    assert!(
        case["evidence"].get("expected").is_none(),
        "no expected key without one: {case}"
    );
    assert!(value.get("extra").is_none(), "no extra key without sections: {value}");
}

#[test]
fn a_section_a_command_adds_sits_at_the_top_of_the_document() {
    let mut report = support::report();
    report
        .extra
        .insert("coverage".to_owned(), json!({"5.0": {"covered": 1, "total": 251}}));
    let value: serde_json::Value = serde_json::from_str(&report.to_json_pretty()).expect("JSON");
    assert_eq!(value["coverage"]["5.0"]["covered"], json!(1));
    assert_eq!(Report::from_json(&report.to_json_pretty()).expect("reads back"), report);
}

#[test]
fn a_report_of_another_schema_version_is_refused_with_both_versions_named() {
    let mut value: serde_json::Value = serde_json::from_str(&support::report().to_json_pretty()).expect("JSON");
    value["schema_version"] = json!(2);
    let error = Report::from_json(&value.to_string()).expect_err("version 2 is refused");
    assert!(
        matches!(error, ReportError::UnsupportedSchemaVersion { found: 2 }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("schema version 2 is not supported"), "{message}");
    assert!(
        message.contains(&format!("schema version {SCHEMA_VERSION} only")),
        "{message}"
    );
}

#[test]
fn a_newer_schema_version_is_refused_even_when_its_fields_changed_shape() {
    // The version is read before anything else, so the error names the version and not a field.
    let error = Report::from_json(r#"{"schema_version": 7, "kind": {"new": "shape"}}"#).expect_err("refused");
    assert!(
        matches!(error, ReportError::UnsupportedSchemaVersion { found: 7 }),
        "{error:?}"
    );
}

#[test]
fn a_document_without_a_schema_version_is_refused() {
    let error = Report::from_json(r#"{"kind": "check"}"#).expect_err("refused");
    assert!(matches!(error, ReportError::MissingSchemaVersion), "{error:?}");
}

#[test]
fn text_that_is_not_json_is_refused_as_json() {
    let error = Report::from_json("kind: check").expect_err("refused");
    assert!(matches!(error, ReportError::Json(_)), "{error:?}");
}

#[test]
fn the_summary_counts_each_case_once_under_its_verdict_and_flaky_cases_again() {
    let report = support::report();
    let summary = Summary::of(&report.cases);
    assert_eq!(
        summary,
        Summary {
            passed: 2,
            failed: 1,
            not_applicable: 1,
            skipped: 1,
            informational: 1,
            flaky: 1
        }
    );
    assert_eq!(summary.total(), 6);
    assert_eq!(report.summary, summary, "push keeps the summary current");
}

#[test]
fn finish_recounts_the_summary_after_cases_were_edited_directly() {
    let mut report = support::report();
    report.cases[0].verdict = Verdict::Fail;
    report.cases[0].flaky = true;
    report.finish();
    assert_eq!(report.summary.passed, 1);
    assert_eq!(report.summary.failed, 2);
    assert_eq!(report.summary.flaky, 2);
}

#[test]
fn a_case_belongs_to_the_area_before_the_first_slash() {
    assert_eq!(Case::new("will/delay/cancelled", "5.0", Verdict::Pass).area(), "will");
    assert_eq!(Case::new("MQTT-3.1.2-22", "5.0", Verdict::Pass).area(), "MQTT-3.1.2-22");
    assert_eq!(
        support::failure().label(),
        "will/delay-cancelled-by-resume [5.0] seed 4711"
    );
}

#[test]
fn rfc3339_formats_a_leap_day() {
    assert_eq!(
        rfc3339(std::time::Duration::from_secs(1_709_164_800)),
        "2024-02-29T00:00:00Z"
    );
}

fn text() -> impl Strategy<Value = String> {
    // Any characters, control characters and quotes included: JSON must carry them all.
    ".{0,12}"
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        // Finite floats only: JSON has no NaN or infinity.
        any::<f64>()
            .prop_filter("finite", |float| float.is_finite())
            .prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop::sample::select(Verdict::ALL.to_vec())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(vec![Kind::Check, Kind::Sim, Kind::Run, Kind::Bench])
}

fn trace_line() -> impl Strategy<Value = TraceLine> {
    (text(), text(), text(), text(), prop::option::of("[0-9a-f]{0,16}")).prop_map(
        |(at, who, direction, what, raw_hex)| TraceLine {
            at,
            who,
            direction,
            what,
            raw_hex,
        },
    )
}

fn evidence() -> impl Strategy<Value = Evidence> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(trace_line(), 0..3),
    )
        .prop_map(|(message, expected, actual, notes, trace)| Evidence {
            message,
            expected,
            actual,
            notes,
            trace,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        (text(), text(), text(), prop::collection::vec(text(), 0..3)),
        (verdict(), any::<u64>(), prop::option::of(any::<u64>()), any::<bool>()),
        (evidence(), text()),
    )
        .prop_map(
            |((id, version, title, statements), (verdict, duration_ms, seed, flaky), (evidence, command))| Case {
                id,
                version,
                title,
                statements,
                verdict,
                duration_ms,
                seed,
                flaky,
                evidence,
                command,
            },
        )
}

fn report() -> impl Strategy<Value = Report> {
    (
        (kind(), text(), text(), text(), text()),
        prop::collection::btree_map(text(), json_value(), 0..4),
        prop::collection::vec(case(), 0..5),
        prop::collection::btree_map(text(), json_value(), 0..3),
    )
        .prop_map(
            |((kind, tool_version, started_at, target, tool_name), parameters, cases, extra)| {
                let mut report = Report::new(kind, tool_version, started_at, target);
                report.tool.name = tool_name;
                report.parameters = parameters;
                for case in cases {
                    report.push(case);
                }
                // Sections sit beside the fixed keys, so they never take one of their names.
                report.extra = extra
                    .into_iter()
                    .map(|(key, value)| (format!("section_{key}"), value))
                    .collect();
                report
            },
        )
}

proptest! {
    #[test]
    fn any_report_reads_back_exactly(report in report()) {
        let read_back = Report::from_json(&report.to_json_pretty()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(read_back, report);
    }
}

#[test]
fn parameters_keep_their_json_types_through_a_round_trip() {
    let mut report = support::report();
    report.parameters = BTreeMap::from([
        ("swarm".to_owned(), json!({"clients": 50, "loss": 0.01})),
        ("seeds".to_owned(), json!([1, 2, 3])),
        ("strict".to_owned(), json!(true)),
        ("tolerance".to_owned(), json!(0.1)),
    ]);
    let read_back = Report::from_json(&report.to_json_pretty()).expect("reads back");
    assert_eq!(read_back.parameters, report.parameters);
}
