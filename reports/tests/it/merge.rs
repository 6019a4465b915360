//! Merging shard reports into one.

use mqtt_reports::*;
use serde_json::json;

use crate::support;

fn shard(seeds: &str, started_at: &str, first_seed: u64) -> Report {
    let mut report = Report::new(Kind::Sim, "0.1.0", started_at, "reference broker (simulated)");
    report.parameters.insert("seeds".to_owned(), json!(seeds));
    report
        .parameters
        .insert("scenarios".to_owned(), json!("scenarios/spec/will"));
    for seed in first_seed..first_seed + 2 {
        let mut case = support::case("will/delay-cancelled-by-resume", "5.0", Verdict::Pass);
        case.seed = Some(seed);
        report.push(case);
    }
    report
}

#[test]
fn two_seed_ranges_merge_into_one_report_that_keeps_both_ranges_visible() {
    let mut second = shard("50..100", "2026-11-29T09:00:00Z", 50);
    second.cases[1].verdict = Verdict::Fail;
    second.finish();
    second.extra.insert("profile".to_owned(), json!({"from": "second"}));
    let mut first = shard("1..50", "2026-11-29T09:10:55Z", 1);
    first.extra.insert("profile".to_owned(), json!({"from": "first"}));

    let merged = merge(vec![first, second]).expect("merged");
    assert_eq!(merged.parameters["seeds"], json!(["1..50", "50..100"]));
    assert_eq!(
        merged.parameters["scenarios"],
        json!("scenarios/spec/will"),
        "equal values stay single"
    );
    let seeds: Vec<Option<u64>> = merged.cases.iter().map(|case| case.seed).collect();
    assert_eq!(seeds, [Some(1), Some(2), Some(50), Some(51)], "cases in input order");
    assert_eq!(
        merged.summary,
        Summary {
            passed: 3,
            failed: 1,
            ..Summary::default()
        }
    );
    assert_eq!(merged.started_at, "2026-11-29T09:00:00Z", "the earliest start");
    assert_eq!(
        merged.extra["profile"],
        json!({"from": "first"}),
        "the first report's section wins"
    );
}

#[test]
fn a_parameter_missing_from_one_report_merges_with_null_for_it() {
    let first = shard("1..50", "2026-11-29T09:10:55Z", 1);
    let mut second = shard("1..50", "2026-11-29T09:10:55Z", 1);
    second.parameters.insert("swarm".to_owned(), json!(8));
    let merged = merge(vec![first, second]).expect("merged");
    assert_eq!(merged.parameters["swarm"], json!([null, 8]));
}

#[test]
fn a_merge_of_one_report_is_that_report() {
    let report = support::report();
    assert_eq!(merge(vec![report.clone()]).expect("merged"), report);
}

#[test]
fn reports_of_different_commands_do_not_merge_and_the_error_names_both() {
    let simulated = shard("1..50", "2026-11-29T09:10:55Z", 1);
    let mut live = shard("1..50", "2026-11-29T09:10:55Z", 1);
    live.kind = Kind::Run;
    let error = merge(vec![simulated, live]).expect_err("refused");
    assert_eq!(
        error,
        MergeError::KindDiffers {
            first: Kind::Sim,
            other: Kind::Run,
            index: 1
        }
    );
    let message = error.to_string();
    assert!(message.contains("`run`") && message.contains("`sim`"), "{message}");
}

#[test]
fn reports_about_different_targets_do_not_merge() {
    let first = shard("1..50", "2026-11-29T09:10:55Z", 1);
    let mut second = shard("50..100", "2026-11-29T09:10:55Z", 50);
    second.target = "mqtt://127.0.0.1:1883".to_owned();
    let error = merge(vec![first, second]).expect_err("refused");
    assert!(matches!(error, MergeError::TargetDiffers { index: 1, .. }), "{error:?}");
    assert!(error.to_string().contains("mqtt://127.0.0.1:1883"), "{error}");
}

#[test]
fn nothing_to_merge_is_an_error() {
    assert_eq!(merge(Vec::new()), Err(MergeError::Empty));
}
