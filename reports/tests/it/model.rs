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

#[test]
fn charts_read_back_exactly_what_was_set() {
    // Goal: the charts bench sets are the charts every rendering draws, to the last bit.
    // Method: set charts whose numbers do not print short (a third, 1e-300, 99.999), write the
    // report as JSON, read it back, and compare the charts and the whole report.
    let mut charts = support::charts();
    charts[0].series[0].points.push((1.0 / 3.0, 1e-300));
    charts[1].series[0].points.insert(5, (99.999, 1234.5678901234567));
    let mut report = support::report();
    report.set_charts(&charts);
    let read_back = Report::from_json(&report.to_json_pretty()).expect("reads back");
    assert_eq!(read_back.charts().expect("charts read"), charts);
    assert_eq!(read_back, report);
}

#[test]
fn charts_are_written_in_the_shape_the_load_generator_and_other_tools_use() {
    // Goal: the JSON shape is a contract with bench and with other tools, so it is checked
    // literally in both directions, not only through a round trip of our own types.
    let report = support::bench_report();
    let value: serde_json::Value = serde_json::from_str(&report.to_json_pretty()).expect("JSON");
    let throughput = &value["charts"][0];
    assert_eq!(throughput["title"], json!("Throughput over time"));
    assert_eq!(throughput["x_scale"], json!("linear"));
    assert_eq!(throughput["series"][0]["name"], json!("sent"));
    assert_eq!(throughput["series"][0]["points"][1], json!([1.0, 1002.0]));
    assert_eq!(value["charts"][1]["x_scale"], json!("percentile"));

    let mut written_by_bench = Report::new(Kind::Bench, "0.1.0", "2026-11-29T09:10:55Z", "mqtt://127.0.0.1:1883");
    written_by_bench.extra.insert(
        CHARTS_KEY.to_owned(),
        json!([
            { "title": "Throughput over time", "x_label": "seconds since the start of the measured window",
              "y_label": "messages/s", "x_scale": "linear",
              "series": [ { "name": "sent", "points": [[0, 1000.0], [1, 1002.0]] } ] },
            { "title": "End-to-end latency by percentile", "x_label": "percentile", "y_label": "µs",
              "x_scale": "percentile",
              "series": [ { "name": "end to end", "points": [[0.0, 80.0], [99.9, 900.0], [100.0, 1500.0]] } ] }
        ]),
    );
    let charts = written_by_bench.charts().expect("the documented shape reads");
    assert_eq!(charts.len(), 2);
    assert_eq!(charts[0].x_scale, Scale::Linear);
    assert_eq!(charts[0].series[0].points, [(0.0, 1000.0), (1.0, 1002.0)]);
    assert_eq!(charts[1].x_scale, Scale::Percentile);
    assert_eq!(charts[1].series[0].points[2], (100.0, 1500.0));
}

#[test]
fn a_report_without_charts_has_none_and_setting_none_leaves_an_empty_list() {
    let mut report = support::report();
    assert_eq!(report.charts(), Ok(Vec::new()));
    report.set_charts(&[]);
    assert_eq!(report.extra[CHARTS_KEY], json!([]));
    assert_eq!(report.charts(), Ok(Vec::new()));
}

#[test]
fn malformed_charts_are_an_error_that_names_where_and_what_is_wrong() {
    // Goal: a malformed section costs its charts, not the report, and the error leads to the
    // broken value. Method: one malformation at a time on the documented shape; each report still
    // reads, and `charts()` names the path and the problem.
    let good = || {
        json!({ "title": "t", "x_label": "x", "y_label": "y", "x_scale": "linear",
                "series": [ { "name": "a", "points": [[0, 1.0], [1, 2.0]] } ] })
    };
    let mut missing_scale = good();
    missing_scale.as_object_mut().expect("an object").remove("x_scale");
    let mut unknown_scale = good();
    unknown_scale["x_scale"] = json!("log");
    let mut short_point = good();
    short_point["series"][0]["points"][1] = json!([1]);
    let mut text_point = good();
    text_point["series"][0]["points"][0] = json!([0, "fast"]);
    let mut nameless_series = good();
    nameless_series["series"][0]
        .as_object_mut()
        .expect("an object")
        .remove("name");
    let mut percentile_past_100 = good();
    percentile_past_100["x_scale"] = json!("percentile");
    percentile_past_100["series"][0]["points"][1] = json!([150, 2.0]);
    let cases = [
        (
            json!({"title": "t"}),
            "charts: expected an array of charts, found an object",
        ),
        (
            json!([good(), "a chart"]),
            "charts[1]: invalid type: string \"a chart\"",
        ),
        (json!([good(), missing_scale]), "charts[1]: missing field `x_scale`"),
        (
            json!([unknown_scale]),
            "charts[0]: unknown variant `log`, expected `linear` or `percentile`",
        ),
        (
            json!([short_point]),
            "charts[0].series[0].points[1]: invalid length 1, expected a tuple of size 2",
        ),
        (
            json!([text_point]),
            "charts[0].series[0].points[0]: invalid type: string \"fast\", expected f64",
        ),
        (json!([nameless_series]), "charts[0].series[0]: missing field `name`"),
        (
            json!([percentile_past_100]),
            "charts[0].series[0].points[1]: x is 150, but a percentile lies between 0 and 100",
        ),
    ];
    for (charts, expected) in cases {
        let mut report = support::report();
        report.extra.insert(CHARTS_KEY.to_owned(), charts);
        let read_back = Report::from_json(&report.to_json_pretty()).expect("the report itself still reads");
        let error = read_back.charts().expect_err(expected);
        assert!(error.starts_with(expected), "expected {expected:?}, got {error:?}");
    }
}

#[test]
#[should_panic(
    expected = "chart 1 (\"End-to-end latency by percentile\") cannot be written: series[0].points[2]: [90, NaN] is not a pair of finite numbers"
)]
fn set_charts_refuses_a_point_that_is_not_a_number() {
    let mut charts = support::charts();
    charts[1].series[0].points[2].1 = f64::NAN;
    support::report().set_charts(&charts);
}

#[test]
#[should_panic(expected = "series[0].points[0]: x is -1, but a percentile lies between 0 and 100")]
fn set_charts_refuses_a_percentile_below_0() {
    let mut charts = support::charts();
    charts[1].series[0].points[0].0 = -1.0;
    support::report().set_charts(&charts);
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |float| float.is_finite())
}

fn chart() -> impl Strategy<Value = Chart> {
    let scale = prop::sample::select(vec![Scale::Linear, Scale::Percentile]);
    // A percentile beside each point, with its ends likely, for the percentile scale to use as x.
    let percentile = prop_oneof![Just(0.0), Just(100.0), 0.0..=100.0];
    let points = prop::collection::vec((finite(), finite(), percentile), 0..6);
    (
        text(),
        text(),
        text(),
        scale,
        prop::collection::vec((text(), points), 0..3),
    )
        .prop_map(|(title, x_label, y_label, x_scale, series)| Chart {
            title,
            x_label,
            y_label,
            x_scale,
            series: series
                .into_iter()
                .map(|(name, points)| Series {
                    name,
                    points: points
                        .into_iter()
                        .map(|(x, y, percentile)| {
                            if x_scale == Scale::Percentile {
                                (percentile, y)
                            } else {
                                (x, y)
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
}

proptest! {
    #[test]
    fn any_charts_read_back_exactly(charts in prop::collection::vec(chart(), 0..3)) {
        let mut report = support::report();
        report.set_charts(&charts);
        let read_back = Report::from_json(&report.to_json_pretty()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(read_back.charts().map_err(TestCaseError::fail)?, charts);
    }
}
