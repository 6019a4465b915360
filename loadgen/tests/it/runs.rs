//! Whole runs against real brokers. Goal: the accounting is exact, and what goes wrong is seen.
//!
//! - On a healthy broker at QoS 1 and 2, every delivery owed arrives once: the counts are exact
//!   (received = sent × copies, nothing lost, nothing duplicated), for each shape, against the
//!   reference broker and against mosquitto 2.0 (started on an ephemeral loopback port).
//! - When the fault proxy resets the connections in the middle of a run, with messages on their
//!   way, the loss is counted and the connections that ended are reported.
//!
//! Method: short runs (a 200 ms warm-up and a 1 s window at a modest rate), judged on the
//! accounting only: the rate checks belong to benchmarks on a quiet machine, not to tests that
//! run beside others.

use std::time::Duration;

use mqtt_broker::Config;
use mqtt_loadgen::figures::{verdicts, Figures};
use mqtt_loadgen::workload::{Shape, Workload};
use mqtt_loadgen::{run, Target};
use mqtt_protocol::QoS;
use mqtt_reports::Verdict;
use mqtt_scenarios::live::fault_proxy::FaultProxy;
use mqtt_scenarios::live::mosquitto::{Mosquitto, MosquittoConfig};
use mqtt_scenarios::live::ReferenceBroker;

fn workload(publishers: usize, subscribers: usize, qos: QoS, shape: Shape) -> Workload {
    Workload {
        publishers,
        subscribers,
        topics: Workload::default_topics(publishers, subscribers),
        shape,
        qos,
        rate: 1000.0,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
        ..Workload::default()
    }
}

fn target(address: std::net::SocketAddr) -> Target {
    Target::tcp(address, format!("mqtt://{address}"))
}

async fn run_quietly(workload: &Workload, target: &Target) -> Figures {
    run(workload, target, 1, &mut |_| {})
        .await
        .unwrap_or_else(|error| panic!("the run failed: {error}"))
}

/// Every delivery owed arrived exactly once.
fn assert_exact(figures: &Figures, copies: u64, what: &str) {
    assert!(figures.sent > 0, "{what}: nothing sent");
    assert_eq!(figures.expected, figures.sent * copies, "{what}: deliveries owed");
    assert_eq!(
        (figures.received, figures.lost, figures.duplicated, figures.reordered),
        (figures.expected, 0, 0, 0),
        "{what}: {figures:#?}"
    );
    assert!(figures.errors.is_empty(), "{what}: {:?}", figures.errors);
    assert_eq!(figures.foreign, 0, "{what}");
    assert!(
        figures.latency_us.count > 0 && figures.latency_us.p50 > 0,
        "{what}: latency measured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounting_is_exact_at_qos_1_and_2_against_the_reference_broker_in_every_shape() {
    let broker = ReferenceBroker::start(Config::default()).expect("the reference broker starts");
    let target = target(broker.address());
    for (publishers, subscribers, shape, copies) in [
        (2, 2, Shape::Topic, 1),
        (1, 4, Shape::Topic, 4),
        (3, 1, Shape::Wildcard, 1),
        (1, 3, Shape::Shared, 1),
    ] {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let what = format!("{publishers}→{subscribers} {} QoS {}", shape.name(), qos as u8);
            let figures = run_quietly(&workload(publishers, subscribers, qos, shape), &target).await;
            assert_exact(&figures, copies, &what);
            assert!(figures.ack_latency_us.count > 0, "{what}: acknowledgements measured");
            let judged = verdicts(&figures, qos, false, "5.0");
            for id in ["delivery/loss", "delivery/duplicates", "run/connections"] {
                let case = judged.iter().find(|case| case.id == id).expect("judged");
                assert_eq!(case.verdict, Verdict::Pass, "{what}: {id}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounting_is_exact_against_mosquitto_in_both_versions() {
    let mosquitto = Mosquitto::start(MosquittoConfig::default())
        .await
        .expect("mosquitto starts (scripts/test installs it)");
    let target = target(mosquitto.address());
    for version in [
        mqtt_protocol::ProtocolVersion::V5,
        mqtt_protocol::ProtocolVersion::V3_1_1,
    ] {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let workload = Workload {
                version,
                ..workload(2, 2, qos, Shape::Topic)
            };
            let figures = run_quietly(&workload, &target).await;
            assert_exact(&figures, 1, &format!("mosquitto {version} QoS {}", qos as u8));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_in_the_middle_of_a_run_shows_as_loss_and_as_connections_that_ended() {
    let broker = ReferenceBroker::start(Config::default()).expect("the reference broker starts");
    let proxy = FaultProxy::start(broker.address()).await.expect("the proxy starts");
    // Messages spend 50 ms in the proxy: at 2,000 a second, about a hundred are on their way
    // whenever the reset comes.
    proxy.set_latency(Duration::from_millis(50));
    let workload = Workload {
        rate: 2000.0,
        ..workload(1, 1, QoS::AtLeastOnce, Shape::Topic)
    };
    let target = target(proxy.address());
    let running = tokio::spawn({
        let workload = workload.clone();
        async move { run(&workload, &target, 1, &mut |_| {}).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.reset();
    let figures = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the run ends")
        .expect("the run task")
        .expect("the run completes, reporting what went wrong");
    assert!(figures.lost > 0, "messages on their way were lost: {figures:#?}");
    assert_eq!(
        figures.stream_issues.iter().map(|issue| issue.lost).sum::<u64>(),
        figures.lost,
        "the loss is told per publisher and subscriber"
    );
    assert_eq!(
        figures.received + figures.lost,
        figures.expected,
        "every delivery owed is accounted for"
    );
    assert_eq!(figures.errors.len(), 2, "both connections ended: {:?}", figures.errors);
    let judged = verdicts(&figures, QoS::AtLeastOnce, false, "5.0");
    let verdict = |id: &str| judged.iter().find(|case| case.id == id).map(|case| case.verdict);
    assert_eq!(verdict("delivery/loss"), Some(Verdict::Fail));
    assert_eq!(verdict("run/connections"), Some(Verdict::Fail));
    let allowed = verdicts(&figures, QoS::AtLeastOnce, true, "5.0");
    assert_eq!(
        allowed
            .iter()
            .find(|case| case.id == "delivery/loss")
            .map(|case| case.verdict),
        Some(Verdict::Informational),
        "--allow-loss reports the loss without failing on it"
    );
}
