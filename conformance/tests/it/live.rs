//! The catalog against real brokers over loopback. Goal: the reference broker passes every
//! applicable MUST case; mosquitto's verdicts match conformance/expected/mosquitto-2.0.yaml;
//! every planted bug of the reference broker is caught by the cases tagged for it; and a broker
//! that declines the optional features makes the cases that need them not applicable, while the
//! cases about declining pass. Method: `runner::check` against an in-process reference broker
//! (configured, or with a planted bug) and a launched mosquitto. These tests measure real time:
//! they run in the serial timing group (.config/nextest.toml).

use std::path::PathBuf;

use mqtt_broker::{Config, Mutation, Mutations};
use mqtt_conformance::catalog::{catalog, Case};
use mqtt_conformance::context::Endpoint;
use mqtt_conformance::robustness::{self, watch::Watch, watch::MEMORY_GROWTH_MAX_KIB};
use mqtt_conformance::runner::{check, CheckOptions, CheckRun};
use mqtt_loadgen::system::Process;
use mqtt_protocol::{ProtocolVersion, QoS};
use mqtt_reports::{compare, Expectations, Kind, Report, Verdict};
use mqtt_scenarios::live::mosquitto::{Mosquitto, MosquittoConfig};
use mqtt_scenarios::live::ReferenceBroker;
use mqtt_scenarios::scenario::Capability;

fn cases() -> Vec<Case> {
    catalog().unwrap_or_else(|errors| panic!("the catalog loads:\n{errors}"))
}

fn check_reference(config: Config, options: &CheckOptions, catalog: &[Case]) -> CheckRun {
    let broker = ReferenceBroker::start(config).expect("the reference broker starts");
    check(Endpoint::tcp(broker.address()), "", catalog, options, &|| {}).unwrap_or_else(|error| panic!("{error}"))
}

fn describe_failures(run: &CheckRun) -> String {
    run.cases
        .iter()
        .filter(|case| case.verdict == Verdict::Fail)
        .map(|case| {
            let trace: Vec<String> = case
                .evidence
                .trace
                .iter()
                .rev()
                .take(25)
                .rev()
                .map(|line| format!("    {:>11} {} {} {}", line.at, line.who, line.direction, line.what))
                .collect();
            format!(
                "{} [{}]: {}\n  expected: {}\n  actual: {}\n{}",
                case.id,
                case.version,
                case.evidence.message,
                case.evidence.expected.clone().unwrap_or_default(),
                case.evidence.actual.clone().unwrap_or_default(),
                trace.join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The run's verdicts match the expectations file at `file` (relative to this crate), or the
/// mismatches and the failures' traces are the panic message.
fn assert_matches_expectations(run: &CheckRun, url: &str, file: &str) {
    let mut report = Report::new(Kind::Check, "test", "2026-01-01T00:00:00Z", url.to_owned());
    for case in run.cases.clone() {
        report.push(case);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file);
    let expectations = Expectations::load(&path).unwrap_or_else(|error| panic!("{error}"));
    let comparison = compare(&report, &expectations);
    let mismatches: Vec<String> = comparison.mismatches.iter().map(ToString::to_string).collect();
    assert!(
        comparison.is_match(),
        "mosquitto's verdicts differ from {}:\n{}\n\nfailures:\n{}",
        path.display(),
        mismatches.join("\n"),
        describe_failures(run)
    );
}

/// mosquitto over WebSocket: the §6 cases' verdicts match conformance/expected/mosquitto-2.0-websocket.yaml
/// (it takes text frames as MQTT bytes).
#[test]
fn mosquitto_over_websocket_matches_its_expectations_file() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ws_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let config = MosquittoConfig {
        extra_lines: vec![
            format!("listener {ws_port} 127.0.0.1"),
            "protocol websockets".to_owned(),
        ],
        ..MosquittoConfig::default()
    };
    let mosquitto = runtime.block_on(Mosquitto::start(config)).expect("mosquitto starts");
    let address: std::net::SocketAddr = format!("127.0.0.1:{ws_port}").parse().expect("an address");
    // Bounded: mosquitto opens its listeners together; the plain one already answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "mosquitto's WebSocket listener never opened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = format!("ws://{address}/mqtt");
    let endpoint = Endpoint::new(url.parse().expect("a URL"), address, Default::default()).expect("an endpoint");
    let options = CheckOptions {
        only: vec!["6".into()],
        ..CheckOptions::default()
    };
    let run = check(endpoint, &url, &cases(), &options, &|| {}).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(run.cases.len(), 6, "the three §6 cases in both versions");
    assert_matches_expectations(&run, &url, "expected/mosquitto-2.0-websocket.yaml");
    drop(mosquitto);
}

/// Strict: the SHOULD cases count too. A reference broker meets the SHOULDs as well as the MUSTs,
/// or broker/ERRORS.md says why it deliberately differs (nothing does today).
#[test]
fn the_reference_broker_passes_every_applicable_must_and_should_case() {
    let catalog = cases();
    let options = CheckOptions {
        strict: true,
        ..CheckOptions::default()
    };
    let run = check_reference(Config::default(), &options, &catalog);
    assert!(!run.cases.is_empty());
    let failed = run.cases.iter().filter(|case| case.verdict == Verdict::Fail).count();
    assert_eq!(failed, 0, "{}", describe_failures(&run));
}

#[test]
fn mosquitto_matches_its_expectations_file() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mosquitto = runtime
        .block_on(Mosquitto::start(MosquittoConfig::default()))
        .expect("mosquitto starts (scripts/test installs it)");
    let catalog = cases();
    let run = check(
        Endpoint::tcp(mosquitto.address()),
        &mosquitto.url(),
        &catalog,
        &CheckOptions::default(),
        &|| {},
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert_matches_expectations(&run, &mosquitto.url(), "expected/mosquitto-2.0.yaml");
    drop(mosquitto);
}

#[test]
fn every_planted_bug_is_caught_by_the_cases_tagged_for_it() {
    let catalog = cases();
    let mut problems = Vec::new();
    for mutation in Mutation::ALL {
        let tagged: Vec<&Case> = catalog
            .iter()
            .filter(|case| case.kills.iter().any(|kill| kill == mutation.name()))
            .collect();
        if tagged.is_empty() {
            problems.push(format!("no case is tagged to catch {}", mutation.name()));
            continue;
        }
        let options = CheckOptions {
            only: tagged.iter().map(|case| case.name.clone()).collect(),
            ..CheckOptions::default()
        };
        let config = Config {
            mutations: Mutations::from(*mutation),
            ..Config::default()
        };
        let run = check_reference(config, &options, &catalog);
        for case in &run.cases {
            if case.verdict != Verdict::Fail && case.verdict != Verdict::NotApplicable {
                problems.push(format!(
                    "{} [{}] is tagged to catch {} but got {:?}",
                    case.id,
                    case.version,
                    mutation.name(),
                    case.verdict
                ));
            }
        }
        if !run.cases.iter().any(|case| case.verdict == Verdict::Fail) {
            problems.push(format!("nothing caught {}", mutation.name()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_broker_declining_optional_features_makes_their_cases_not_applicable() {
    let catalog = cases();
    let config = Config {
        maximum_qos: QoS::AtLeastOnce,
        retain_available: false,
        wildcard_subscription_available: false,
        subscription_identifier_available: false,
        shared_subscription_available: false,
        topic_alias_maximum: 0,
        ..Config::default()
    };
    let options = CheckOptions {
        versions: vec![ProtocolVersion::V5],
        ..CheckOptions::default()
    };
    let run = check_reference(config, &options, &catalog);
    let failed = run.cases.iter().filter(|case| case.verdict == Verdict::Fail).count();
    assert_eq!(failed, 0, "{}", describe_failures(&run));
    // Every case that needs a declined feature is not applicable, with the broker's reason.
    let declined = [
        Capability::Qos2,
        Capability::Retain,
        Capability::WildcardSubscriptions,
        Capability::SubscriptionIdentifiers,
        Capability::SharedSubscriptions,
        Capability::TopicAliases,
    ];
    let mut checked = 0;
    for case in catalog
        .iter()
        .filter(|case| case.versions.contains(&ProtocolVersion::V5))
    {
        if !case.needs.iter().any(|need| declined.contains(need)) {
            continue;
        }
        let id = case.id(ProtocolVersion::V5);
        let found = run
            .cases
            .iter()
            .find(|reported| reported.id == id)
            .unwrap_or_else(|| panic!("{id} ran"));
        assert_eq!(
            found.verdict,
            Verdict::NotApplicable,
            "{id} needs what the broker declines"
        );
        assert!(
            found.evidence.message.starts_with("not applicable: the broker"),
            "{id}: {}",
            found.evidence.message
        );
        checked += 1;
    }
    assert!(checked > 10, "only {checked} cases need a declined feature");
}

/// The cases of enhanced authentication and of MQTT over WebSocket run, and pass, against the
/// reference broker served over ws:// with a SCRAM user (`check ws://... --auth-method
/// SCRAM-SHA-256 -u -P`); over plain TCP without the option they are not applicable.
#[test]
fn enhanced_authentication_and_websocket_cases_pass_on_the_reference_broker_over_ws() {
    use std::sync::Arc;

    use mqtt_broker::listener::{ListenSpec, ListenerOptions, MqttListener};
    use mqtt_broker::security::{PasswordFile, PasswordHash, Security};
    use mqtt_broker::server::Server;
    use mqtt_broker::Broker;
    use mqtt_client::scram::Credentials;

    let names = [
        "scram-exchange-names-the-method-throughout",
        "scram-wrong-proof-refused",
        "auth-answer-without-continue-refused",
        "reauthentication-ends-in-auth-success",
        "reauthentication-wrong-proof-closes",
        "reauthentication-with-another-method-closes",
        "websocket-subprotocol-mqtt-selected",
        "websocket-packets-across-frame-boundaries",
        "websocket-text-frame-closes",
    ];
    let catalog = cases();
    let mut passwords = PasswordFile::default();
    passwords.set(
        "checker",
        PasswordHash::Scram(Credentials::derive(b"checker-pw", b"conformance-salt", 256)),
    );
    let mut security = Security::default();
    security.passwords = Some(passwords);
    security.allow_anonymous = true;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let spec: ListenSpec = "ws://127.0.0.1:0/mqtt".parse().unwrap();
    let listener = runtime
        .block_on(MqttListener::bind(&spec, &ListenerOptions::new()))
        .unwrap();
    let address = mqtt_broker::server::Listener::local_addr(&listener).unwrap();
    let url: mqtt_client::BrokerUrl = format!("ws://127.0.0.1:{}/mqtt", address.port()).parse().unwrap();
    let broker = Broker::new(Config::default()).with_security(Arc::new(security));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(Server::new(vec![listener], broker).run(async {
        let _ = stopped.await;
    }));

    let options = CheckOptions {
        only: names.iter().map(|name| name.to_string()).collect(),
        strict: true,
        username: Some("checker".into()),
        password: Some("checker-pw".into()),
        auth_method: Some("SCRAM-SHA-256".into()),
        ..CheckOptions::default()
    };
    let endpoint = Endpoint::new(url, address, Default::default()).unwrap();
    let run = check(endpoint, "", &catalog, &options, &|| {}).unwrap_or_else(|error| panic!("{error}"));
    let _ = stop.send(());
    runtime.block_on(server).unwrap();
    // 6 authentication cases (5.0 only) and 3 WebSocket cases in both versions.
    assert_eq!(run.cases.len(), 6 + 3 * 2);
    for case in &run.cases {
        assert_eq!(
            case.verdict,
            Verdict::Pass,
            "{} [{}]: {}",
            case.id,
            case.version,
            describe_failures(&run)
        );
    }

    // Over TCP, without --auth-method: not applicable, each saying what it needs.
    let options = CheckOptions {
        only: names.iter().map(|name| name.to_string()).collect(),
        ..CheckOptions::default()
    };
    let run = check_reference(Config::default(), &options, &catalog);
    for case in &run.cases {
        assert_eq!(case.verdict, Verdict::NotApplicable, "{} [{}]", case.id, case.version);
    }
}

/// mosquitto under `check --robustness`: the verdicts match
/// conformance/expected/mosquitto-2.0-robustness.yaml (partial packets and trickled CONNECTs held
/// without a bound; a QoS 2 PUBLISH past the Receive Maximum refused instead of closing), with its
/// memory read from its process around each case.
#[test]
fn mosquitto_under_the_robustness_suite_matches_its_expectations_file() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mosquitto = runtime
        .block_on(Mosquitto::start(MosquittoConfig::default()))
        .expect("mosquitto starts");
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", mosquitto.port()).parse().expect("an address");
    let url = format!("mqtt://{address}");
    let options = CheckOptions {
        watch: Some(Watch {
            memory: Some(Process::Pid(mosquitto.pid())),
            memory_growth_max_kib: MEMORY_GROWTH_MAX_KIB,
        }),
        ..CheckOptions::default()
    };
    let run = check(Endpoint::tcp(address), &url, &robustness::catalog(), &options, &|| {})
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(run.cases.len(), 15, "eight cases, property-flood in 5.0 only");
    for case in &run.cases {
        assert!(
            case.evidence
                .notes
                .iter()
                .any(|note| note.starts_with("broker RSS: before")),
            "{} [{}]: no memory figures: {:?}",
            case.id,
            case.version,
            case.evidence.notes
        );
    }
    assert_matches_expectations(&run, &url, "expected/mosquitto-2.0-robustness.yaml");
    drop(mosquitto);
}
