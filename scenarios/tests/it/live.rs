//! The scenario library live, over real loopback sockets. Goal: every scenario passes against
//! the reference broker (started in-process for each run), and against a real mosquitto every
//! verdict matches scenarios/expected/mosquitto-2.0.yaml, where each of its deviations is
//! recorded with the statement and the evidence. Method: `live::run_many` over the whole
//! library, several runs at a time; these tests run in the serial timing group (see
//! .config/nextest.toml), since their windows are real time.

use std::path::PathBuf;

use std::time::Duration;

use mqtt_client::{Client, ConnectOptions, Event};
use mqtt_protocol::{QoS, SubscriptionOptions};
use mqtt_reports::{compare, Expectations, Kind, Report};
use mqtt_scenarios::live::mosquitto::{Mosquitto, MosquittoConfig};
use mqtt_scenarios::live::{run_many, LiveOptions, TargetSpec};
use mqtt_scenarios::load::load_paths;
use mqtt_scenarios::results;
use mqtt_scenarios::scenario::{version_name, Scenario};

/// Runs at once: each is mostly waiting, windows have a 1 s tolerance.
const CONCURRENCY: usize = 8;

fn library() -> Vec<Scenario> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec");
    load_paths(&[root]).unwrap_or_else(|errors| panic!("the library loads:\n{errors}"))
}

fn every_version(scenarios: &[Scenario]) -> Vec<(usize, mqtt_protocol::ProtocolVersion)> {
    scenarios
        .iter()
        .enumerate()
        .flat_map(|(index, scenario)| scenario.versions.iter().map(move |version| (index, *version)))
        .collect()
}

/// The report of a live run of the library, as `run` would write it.
fn report(scenarios: &[Scenario], spec: &TargetSpec) -> Report {
    let jobs = every_version(scenarios);
    let outcomes = run_many(scenarios, &jobs, spec, &LiveOptions::default(), CONCURRENCY, &|| {});
    let mut report = Report::new(Kind::Run, "test", "2026-01-01T00:00:00Z", spec.describe());
    for ((index, version), outcome) in jobs.iter().zip(outcomes) {
        let scenario = &scenarios[*index];
        let command = format!("{} [{}]", scenario.id, version_name(*version));
        report.push(results::live_case(scenario, *version, &outcome, command, true));
    }
    report
}

fn failures(report: &Report) -> String {
    report
        .cases
        .iter()
        .filter(|case| case.verdict == mqtt_reports::Verdict::Fail)
        .map(|case| {
            let trace: Vec<String> = case
                .evidence
                .trace
                .iter()
                .map(|line| format!("  {:>11} {} {} {}", line.at, line.who, line.direction, line.what))
                .collect();
            format!(
                "{} [{}]: {}\n{}",
                case.id,
                case.version,
                case.evidence.message,
                trace.join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn the_library_passes_live_against_the_reference_broker() {
    let scenarios = library();
    let report = report(&scenarios, &TargetSpec::Reference);
    assert_eq!(report.summary.failed, 0, "{}", failures(&report));
    assert_eq!(
        report.summary.not_applicable, 0,
        "the reference broker can do what every scenario needs"
    );
}

#[test]
fn the_library_against_mosquitto_matches_its_expectations_file() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mosquitto = runtime
        .block_on(Mosquitto::start(MosquittoConfig::default()))
        .expect("mosquitto starts (scripts/test installs it)");
    let url = mosquitto.url().parse().expect("a URL");
    let scenarios = library();
    let report = report(&scenarios, &TargetSpec::Url(url));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("expected/mosquitto-2.0.yaml");
    let expectations = Expectations::load(&path).unwrap_or_else(|error| panic!("{error}"));
    let comparison = compare(&report, &expectations);
    let mismatches: Vec<String> = comparison.mismatches.iter().map(ToString::to_string).collect();
    assert!(
        comparison.is_match(),
        "mosquitto's verdicts differ from {}:\n{}\n\nfailures:\n{}",
        path.display(),
        mismatches.join("\n"),
        failures(&report)
    );

    // Every run cleared the retained messages it left: a subscriber to every run's topics gets
    // none (retained messages come with the SUBACK, so a short wait after it suffices).
    let retained = runtime.block_on(async {
        let options = ConnectOptions::new("mh-leftovers");
        let (client, mut events) = Client::connect(&mosquitto.url(), options).await.expect("connects");
        client
            .subscribe_one("mh/#", SubscriptionOptions::with_qos(QoS::AtMostOnce))
            .await
            .expect("subscribes");
        let mut left = Vec::new();
        while let Ok(Some(event)) = events.recv_within(Duration::from_millis(1000)).await {
            if let Event::Message(publish) = event {
                left.push(publish.topic);
            }
        }
        left
    });
    assert!(retained.is_empty(), "retained messages left behind: {retained:?}");
    drop(mosquitto);
}
