//! Reports to test with: one of every verdict, with the evidence renderings must carry.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use mqtt_reports::{Case, Chart, Kind, Report, Scale, Series, TraceLine, Verdict};

/// A case with a title, a statement, a duration and a rerun command.
pub fn case(id: &str, version: &str, verdict: Verdict) -> Case {
    let mut case = Case::new(id, version, verdict);
    case.title = format!("{id} behaves");
    case.statements = vec!["MQTT-3.1.2-22".to_owned()];
    case.duration_ms = 12;
    case.command = format!("mqtt-harness check mqtt://127.0.0.1:1883 --case {id} --version {version}");
    case
}

/// A failure with everything a failure can carry, including text that must be escaped.
pub fn failure() -> Case {
    let mut case = case("will/delay-cancelled-by-resume", "5.0", Verdict::Fail);
    case.seed = Some(4711);
    case.statements = vec!["MQTT-3.1.3-9".to_owned(), "MQTT-3.1.2-8".to_owned()];
    case.evidence.message = "expected no will, got PUBLISH will/topic <script>alert(1)</script>".to_owned();
    case.evidence.expected = Some("no PUBLISH on will/topic within 6 s".to_owned());
    case.evidence.actual = Some("PUBLISH will/topic at 5.002 s | qos 0".to_owned());
    case.evidence.trace = vec![
        TraceLine {
            at: "0.000000".to_owned(),
            who: "client-a".to_owned(),
            direction: "->".to_owned(),
            what: "CONNECT client_id=a will_delay=5".to_owned(),
            raw_hex: Some("101000044d5154540502".to_owned()),
        },
        TraceLine {
            at: "1.000000".to_owned(),
            who: "net".to_owned(),
            direction: "!!".to_owned(),
            what: "partition client-a".to_owned(),
            raw_hex: None,
        },
        TraceLine {
            at: "5.002000".to_owned(),
            who: "watcher".to_owned(),
            direction: "<-".to_owned(),
            what: "PUBLISH will/topic <script>".to_owned(),
            raw_hex: None,
        },
    ];
    case.command = "mqtt-harness sim scenarios/spec/will --seed 4711".to_owned();
    case
}

/// One case of every verdict across three areas, one flaky, one with a `|` in its id.
pub fn report() -> Report {
    let mut report = Report::new(
        Kind::Sim,
        "0.1.0",
        "2026-11-29T09:10:55Z",
        "reference broker (simulated)",
    );
    report.parameters.insert("seeds".to_owned(), "1..50".into());
    report.parameters.insert("tolerance".to_owned(), 0.25.into());
    report.push(case("connect/first-packet", "5.0", Verdict::Pass));
    report.push(case("connect/first-packet", "3.1.1", Verdict::Pass));
    report.push(failure());
    let mut not_applicable = case("shared/round-robin", "5.0", Verdict::NotApplicable);
    not_applicable.evidence.message = "the broker does not offer shared subscriptions".to_owned();
    report.push(not_applicable);
    report.push(case("shared/round-robin", "3.1.1", Verdict::Skipped));
    let mut informational = case("keep-alive/close|timing", "5.0", Verdict::Informational);
    informational.evidence.notes = vec!["closed 0.4 s before 1.5 x keep alive".to_owned()];
    informational.flaky = true;
    report.push(informational);
    report
}

/// The two charts bench draws, as in the example of the charts' JSON shape: a throughput time
/// series of two series, and a latency percentile spectrum that ends at the maximum (100).
pub fn charts() -> Vec<Chart> {
    vec![
        Chart {
            title: "Throughput over time".to_owned(),
            x_label: "seconds since the start of the measured window".to_owned(),
            y_label: "messages/s".to_owned(),
            x_scale: Scale::Linear,
            series: vec![
                Series {
                    name: "sent".to_owned(),
                    points: vec![(0.0, 1000.0), (1.0, 1002.0), (2.0, 999.5)],
                },
                Series {
                    name: "received".to_owned(),
                    points: vec![(0.0, 998.0), (1.0, 1004.0), (2.0, 1001.25)],
                },
            ],
        },
        Chart {
            title: "End-to-end latency by percentile".to_owned(),
            x_label: "percentile".to_owned(),
            y_label: "µs".to_owned(),
            x_scale: Scale::Percentile,
            series: vec![Series {
                name: "end to end".to_owned(),
                points: vec![
                    (0.0, 80.0),
                    (50.0, 120.0),
                    (90.0, 300.0),
                    (99.0, 500.0),
                    (99.9, 900.0),
                    (100.0, 1500.0),
                ],
            }],
        },
    ]
}

/// A bench report with the two [`charts`] and one informational case.
pub fn bench_report() -> Report {
    let mut report = Report::new(Kind::Bench, "0.1.0", "2026-11-29T09:10:55Z", "mqtt://127.0.0.1:1883");
    report.push(case("bench/throughput", "5.0", Verdict::Informational));
    report.set_charts(&charts());
    report
}

/// A fresh, empty folder for one test.
pub fn temporary_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mqtt-reports-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}
