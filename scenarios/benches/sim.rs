//! What the simulation costs: simulated seconds per wall second for each scenario of the library
//! (one thread, `SIM_BENCH_SEEDS` seeds each, 20 by default), then the wall time of the whole
//! library x `SIM_BENCH_SWEEP` seeds (100 by default) on every core, as `sim --seeds 100` runs it.
//! Figures are reported, not gates: the machine is shared.
//!
//! `cargo bench -p mqtt-scenarios --bench sim`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mqtt_scenarios::engine::Verdict;
use mqtt_scenarios::load::load_paths;
use mqtt_scenarios::scenario::version_name;
use mqtt_scenarios::sim::{self, Job, SimOptions};

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec");
    let scenarios = load_paths(&[root]).unwrap_or_else(|errors| panic!("{errors}"));
    let seeds = env_count("SIM_BENCH_SEEDS", 20);
    let sweep = env_count("SIM_BENCH_SWEEP", 100);

    println!(
        "{:<58} {:>7} {:>6} {:>11} {:>9} {:>12}",
        "scenario", "version", "runs", "simulated s", "wall ms", "sim s/wall s"
    );
    let mut slowest: Vec<(f64, String)> = Vec::new();
    for scenario in &scenarios {
        for version in &scenario.versions {
            let started = Instant::now();
            let mut simulated = Duration::ZERO;
            for seed in 1..=seeds {
                let run = sim::run(
                    scenario,
                    *version,
                    &SimOptions {
                        seed,
                        ..SimOptions::default()
                    },
                );
                assert_ne!(
                    run.outcome.verdict,
                    Verdict::Fail,
                    "{} seed {seed}: {:?}",
                    scenario.id,
                    run.outcome.failure
                );
                simulated += run.simulated;
            }
            let wall = started.elapsed();
            let speed = simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9);
            println!(
                "{:<58} {:>7} {:>6} {:>11.1} {:>9.1} {:>12.0}",
                scenario.id,
                version_name(*version),
                seeds,
                simulated.as_secs_f64(),
                wall.as_secs_f64() * 1000.0,
                speed
            );
            slowest.push((speed, format!("{} [{}]", scenario.id, version_name(*version))));
        }
    }
    slowest.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((speed, name)) = slowest.first() {
        println!("slowest: {name} at {speed:.0} simulated s per wall s");
    }

    let mut jobs = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        for version in &scenario.versions {
            for seed in 1..=sweep {
                jobs.push(Job {
                    scenario: index,
                    version: *version,
                    options: SimOptions {
                        seed,
                        ..SimOptions::default()
                    },
                });
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    let started = Instant::now();
    let runs = sim::run_many(&scenarios, &jobs, threads, &|_, _| {});
    let wall = started.elapsed();
    let simulated: Duration = runs.iter().map(|run| run.simulated).sum();
    let failed = runs.iter().filter(|run| run.outcome.verdict == Verdict::Fail).count();
    println!(
        "library: {} scenarios, {} runs ({sweep} seeds) on {threads} threads: {:.1} s wall, {:.0} s simulated, {:.0} simulated s per wall s, {failed} failed",
        scenarios.len(),
        jobs.len(),
        wall.as_secs_f64(),
        simulated.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9)
    );
}
