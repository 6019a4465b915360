//! The scenario library under simulation. Goal: every scenario passes against the reference
//! broker for several seeds; a run is a pure function of its seed (the same seed gives the same
//! trace, byte for byte, with and without `--swarm`); and the library catches every bug planted
//! in the broker. Method: load scenarios/spec and run each scenario in each of its versions with
//! `sim::run_many`, comparing verdicts and rendered traces.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use mqtt_broker::{Mutation, Mutations};
use mqtt_scenarios::engine::Verdict;
use mqtt_scenarios::load::load_paths;
use mqtt_scenarios::scenario::{version_name, Scenario};
use mqtt_scenarios::sim::{self, Job, SimOptions, SimRun};

fn library() -> Vec<Scenario> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec");
    load_paths(&[root]).unwrap_or_else(|errors| panic!("the library loads:\n{errors}"))
}

/// Every scenario in every version, for each seed, with `options` as the template.
fn jobs(scenarios: &[Scenario], seeds: std::ops::Range<u64>, options: &SimOptions) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        for version in &scenario.versions {
            for seed in seeds.clone() {
                jobs.push(Job {
                    scenario: index,
                    version: *version,
                    options: SimOptions {
                        seed,
                        ..options.clone()
                    },
                });
            }
        }
    }
    jobs
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get())
}

fn describe(scenarios: &[Scenario], job: &Job, run: &SimRun) -> String {
    format!(
        "{} [{}] seed {}: {:?}",
        scenarios[job.scenario].id,
        version_name(job.version),
        run.seed,
        run.outcome.failure
    )
}

#[test]
fn every_scenario_passes_under_simulation_for_three_seeds() {
    let scenarios = library();
    let jobs = jobs(&scenarios, 1..4, &SimOptions::default());
    let runs = sim::run_many(&scenarios, &jobs, threads(), &|_, _| {});
    let failures: Vec<String> = jobs
        .iter()
        .zip(&runs)
        .filter(|(_, run)| run.outcome.verdict == Verdict::Fail)
        .map(|(job, run)| format!("{}\n{}", describe(&scenarios, job, run), run.trace.render(false)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_same_seed_replays_the_same_trace_byte_for_byte() {
    let scenarios = library();
    for swarm in [false, true] {
        let options = SimOptions {
            swarm,
            ..SimOptions::default()
        };
        let jobs = jobs(&scenarios, 4711..4712, &options);
        let first = sim::run_many(&scenarios, &jobs, threads(), &|_, _| {});
        let second = sim::run_many(&scenarios, &jobs, threads(), &|_, _| {});
        for ((job, a), b) in jobs.iter().zip(&first).zip(&second) {
            let (a_text, b_text) = (a.trace.render(true), b.trace.render(true));
            assert!(a_text.lines().count() > 3, "a trace worth comparing: {a_text}");
            if a_text != b_text {
                let line = a_text
                    .lines()
                    .zip(b_text.lines())
                    .position(|(x, y)| x != y)
                    .unwrap_or_default();
                panic!(
                    "{} (swarm {swarm}) diverged at line {line}:\n  first:  {:?}\n  second: {:?}",
                    describe(&scenarios, job, a),
                    a_text.lines().nth(line),
                    b_text.lines().nth(line)
                );
            }
        }
    }
}

#[test]
fn another_seed_shapes_another_interleaving() {
    let scenarios = library();
    let one = sim::run_many(
        &scenarios,
        &jobs(&scenarios, 1..2, &SimOptions::default()),
        threads(),
        &|_, _| {},
    );
    let two = sim::run_many(
        &scenarios,
        &jobs(&scenarios, 2..3, &SimOptions::default()),
        threads(),
        &|_, _| {},
    );
    let differing = one
        .iter()
        .zip(&two)
        .filter(|(a, b)| a.trace.render(false) != b.trace.render(false))
        .count();
    assert!(differing > 0, "seeds 1 and 2 gave the same run for every scenario");
}

#[test]
fn the_library_catches_every_bug_planted_in_the_broker() {
    let scenarios = library();
    let mut caught: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for mutation in Mutation::ALL {
        let options = SimOptions {
            configure: Some(Arc::new(move |config: &mut mqtt_broker::Config| {
                config.mutations = Mutations::from(*mutation);
            })),
            ..SimOptions::default()
        };
        let jobs = jobs(&scenarios, 1..2, &options);
        let runs = sim::run_many(&scenarios, &jobs, threads(), &|_, _| {});
        let killers: Vec<String> = jobs
            .iter()
            .zip(&runs)
            .filter(|(_, run)| run.outcome.verdict == Verdict::Fail)
            .map(|(job, _)| format!("{} [{}]", scenarios[job.scenario].id, version_name(job.version)))
            .collect();
        caught.insert(mutation.name(), killers);
    }
    eprintln!("planted bug -> the scenario runs that catch it:\n{caught:#?}");
    let missed: Vec<&&str> = caught
        .iter()
        .filter(|(_, killers)| killers.is_empty())
        .map(|(name, _)| name)
        .collect();
    assert!(missed.is_empty(), "no scenario catches {missed:?}");
}

#[test]
fn a_swarm_run_exported_as_a_schedule_replays_the_same_run_without_swarm() {
    // Goal: a failing swarm seed can be kept as an ordinary scenario (and run live). Method:
    // export a swarm run's faults into the scenario's text, load it, run it with the same seed
    // and no swarm: the trace must be the swarm run's, line for line.
    let scenarios = library();
    let scenario = scenarios
        .iter()
        .find(|scenario| scenario.id == "qos/qos1-resent-after-partition")
        .expect("the scenario is in the library");
    let version = scenario.versions[0];
    let (seed, swarm_run) = (1..50)
        .map(|seed| {
            let options = SimOptions {
                seed,
                swarm: true,
                ..SimOptions::default()
            };
            (seed, sim::run(scenario, version, &options))
        })
        .find(|(_, run)| run.swarm_faults.len() >= 2)
        .expect("a seed with swarm faults");
    let text = std::fs::read_to_string(&scenario.path).expect("the scenario's text");
    let name = format!("qos1-resent-after-partition-swarm-{seed}");
    let exported = mqtt_scenarios::swarm::export(&text, &name, &swarm_run.swarm_faults).expect("exports");
    let dir = std::env::temp_dir()
        .join(format!("mqtt-scenarios-export-{}", std::process::id()))
        .join("qos");
    std::fs::create_dir_all(&dir).expect("a folder");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, &exported).expect("written");
    let replayed_scenario =
        mqtt_scenarios::load::load_file(&path).unwrap_or_else(|errors| panic!("{errors}\n{exported}"));
    let replay = sim::run(
        &replayed_scenario,
        version,
        &SimOptions {
            seed,
            ..SimOptions::default()
        },
    );
    assert_eq!(
        swarm_run.trace.render(true),
        replay.trace.render(true),
        "seed {seed}: the exported schedule replays the swarm run"
    );
}
