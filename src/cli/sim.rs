//! `mqtt-harness sim`: scenarios under deterministic network simulation, against the reference
//! broker, from seeds that replay exactly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use mqtt_reports::{Kind, Verdict};
use mqtt_scenarios::engine::Verdict as RunVerdict;
use mqtt_scenarios::load::load_paths;
use mqtt_scenarios::scenario::{version_name, Scenario};
use mqtt_scenarios::sim::{self, Job, SimOptions, SimRun};
use mqtt_scenarios::{results, swarm};

use super::output::{self, colour, verdict_label};
use super::{Protocol, EXIT_USAGE};

/// Runs YAML scenarios under simulation. Every run names its seed; a failure prints the
/// expectation or invariant it broke, the seed, and the command that replays it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario files, or folders searched for *.yaml (e.g. scenarios/spec).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Replay exactly this seed.
    #[arg(long, value_name = "S", conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Sweep seeds: N runs 1..=N; A..B runs A up to but not including B (split a sweep across
    /// machines or CI jobs with ranges; `report merge` joins their JSON). Seed 1 when neither.
    #[arg(long, value_name = "N|A..B")]
    pub seeds: Option<SeedRange>,
    /// Per seed, add a random mix of latency, holds and partitions to the scenario's own faults;
    /// the verdict is then the invariants' (no loss, no QoS 2 duplicate, order, liveness).
    #[arg(long)]
    pub swarm: bool,
    /// Write each run's packet trace to DIR/<area>/<name>/<version>/seed-<S>.trace.
    #[arg(long, value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// With --swarm: write each failing run (or, with --seed, the run) as a scenario with its
    /// fault schedule to DIR, to replay it without --swarm or live with `run`.
    #[arg(long, value_name = "DIR", requires = "swarm")]
    pub export: Option<PathBuf>,
    /// The protocol versions to run, among those each scenario lists.
    #[arg(long, value_name = "5.0|3.1.1|all", default_value = "all")]
    pub protocol: Protocol,
    /// SHOULD-level expectations and early arrivals fail instead of being informational.
    #[arg(long)]
    pub strict: bool,
    /// Replace every scenario's simulated tick (1 to 1000 ms).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub tick_ms: Option<u64>,
    /// Runs at once (each run is single-threaded); one per core by default.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Write report.json, junit.xml, report.html and report.md to DIR.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Write the JSON result to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `N` (1..=N) or `A..B` (A up to but not including B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedRange {
    pub start: u64,
    pub end: u64,
}

impl FromStr for SeedRange {
    type Err = String;

    fn from_str(text: &str) -> Result<SeedRange, String> {
        let range = match text.split_once("..") {
            Some((start, end)) => {
                let start = start.parse().map_err(|_| format!("{start:?} is not a seed"))?;
                let end = end.parse().map_err(|_| format!("{end:?} is not a seed"))?;
                SeedRange { start, end }
            }
            None => {
                let count: u64 = text.parse().map_err(|_| format!("{text:?} is neither N nor A..B"))?;
                SeedRange {
                    start: 1,
                    end: count.saturating_add(1),
                }
            }
        };
        if range.end <= range.start {
            return Err(format!("{text} holds no seed"));
        }
        if range.end - range.start > 10_000_000 {
            return Err("more than 10,000,000 seeds in one sweep: split it with A..B ranges".to_owned());
        }
        Ok(range)
    }
}

impl std::fmt::Display for SeedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

pub fn run(args: Args) -> ExitCode {
    let scenarios = match load_paths(&args.paths) {
        Ok(scenarios) => scenarios,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if scenarios.is_empty() {
        eprintln!("no scenario files under {}", output::shown_paths(&args.paths));
        return ExitCode::from(EXIT_USAGE);
    }
    let seeds = match (args.seed, args.seeds) {
        (Some(seed), _) => SeedRange {
            start: seed,
            end: seed.saturating_add(1),
        },
        (None, Some(range)) => range,
        (None, None) => SeedRange { start: 1, end: 2 },
    };
    let mut jobs = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        for version in args.protocol.filter(&scenario.versions) {
            for seed in seeds.start..seeds.end {
                jobs.push(Job {
                    scenario: index,
                    version,
                    options: SimOptions {
                        seed,
                        swarm: args.swarm,
                        strict: args.strict,
                        tick: args.tick_ms.map(Duration::from_millis),
                        configure: None,
                    },
                });
            }
        }
    }
    if jobs.is_empty() {
        eprintln!("no scenario runs in protocol version {}", args.protocol);
        return ExitCode::from(EXIT_USAGE);
    }
    let threads = args.jobs.unwrap_or_else(output::default_jobs).max(1);
    let version_count = jobs
        .iter()
        .map(|job| (job.scenario, job.version))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    eprintln!(
        "sim: {} scenarios, {version_count} scenario versions x {} seeds ({seeds}) = {} runs on {threads} threads{}",
        scenarios.len(),
        seeds.end - seeds.start,
        jobs.len(),
        if args.swarm { ", swarm" } else { "" }
    );
    let bar = output::progress(jobs.len(), "runs");
    let started = Instant::now();
    let runs = sim::run_many(&scenarios, &jobs, threads, &|_, run| {
        if run.outcome.verdict == RunVerdict::Fail {
            bar.set_message(format!("{} failed", bar.position() + 1));
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    let wall = started.elapsed();

    let colour = colour();
    let mut report = output::new_report(Kind::Sim, "the reference broker (simulated)");
    report
        .parameters
        .insert("paths".into(), output::shown_paths(&args.paths).into());
    report.parameters.insert("seeds".into(), seeds.to_string().into());
    report.parameters.insert("swarm".into(), args.swarm.into());
    report.parameters.insert("strict".into(), args.strict.into());
    report
        .parameters
        .insert("protocol".into(), args.protocol.to_string().into());
    let mut trace_errors = Vec::new();
    let mut simulated = Duration::ZERO;
    // One line per scenario version; a failure's details once per scenario version.
    let mut index = 0;
    while index < jobs.len() {
        let (scenario_index, version) = (jobs[index].scenario, jobs[index].version);
        let scenario = &scenarios[scenario_index];
        let end = jobs[index..]
            .iter()
            .position(|job| (job.scenario, job.version) != (scenario_index, version))
            .map_or(jobs.len(), |offset| index + offset);
        let group = &runs[index..end];
        let failed: Vec<&SimRun> = group
            .iter()
            .filter(|run| run.outcome.verdict == RunVerdict::Fail)
            .collect();
        let informational = group
            .iter()
            .filter(|run| run.outcome.verdict == RunVerdict::Informational)
            .count();
        let verdict = if !failed.is_empty() {
            Verdict::Fail
        } else if informational > 0 {
            Verdict::Informational
        } else {
            Verdict::Pass
        };
        let seed_text = if group.len() == 1 {
            format!("seed {}", group[0].seed)
        } else {
            format!("{}/{} seeds passed", group.len() - failed.len(), group.len())
        };
        println!(
            "{} {} [{}] {seed_text}",
            verdict_label(verdict, colour),
            scenario.id,
            version_name(version)
        );
        let cases: Vec<mqtt_reports::Case> = group
            .iter()
            .map(|run| {
                let record = results::RunRecord {
                    version,
                    outcome: &run.outcome,
                    trace: &run.trace,
                    seed: Some(run.seed),
                    duration_ms: run.simulated.as_millis() as u64,
                };
                let failed = run.outcome.verdict == RunVerdict::Fail;
                results::case(scenario, &record, replay_command(scenario, run, &args), failed)
            })
            .collect();
        if let Some(first) = cases.iter().find(|case| case.verdict == Verdict::Fail) {
            output::print_evidence(first, "replay");
            if failed.len() > 1 {
                let seeds: Vec<String> = failed.iter().take(20).map(|run| run.seed.to_string()).collect();
                println!(
                    "       failing seeds: {}{}",
                    seeds.join(", "),
                    if failed.len() > 20 { ", ..." } else { "" }
                );
            }
        } else if let Some(run) = group.iter().find(|run| !run.outcome.notes.is_empty()) {
            for note in run.outcome.notes.iter().take(3) {
                println!("       note (seed {}): {note}", run.seed);
            }
        }
        for (run, case) in group.iter().zip(cases) {
            simulated += run.simulated;
            let failed = case.verdict == Verdict::Fail;
            report.push(case);
            if let Some(dir) = &args.trace_dir {
                let path = output::trace_path(dir, &scenario.id, version_name(version), Some(run.seed));
                if let Err(error) = output::write_file(&path, &run.trace.render(true)) {
                    trace_errors.push(error);
                }
            }
            if let Some(dir) = &args.export {
                if failed || args.seed.is_some() {
                    match export(scenario, run, dir) {
                        Ok(path) => println!("       exported seed {} as {}", run.seed, output::shown(&path)),
                        Err(error) => println!("       cannot export seed {}: {error}", run.seed),
                    }
                }
            }
        }
        index = end;
    }
    let summary = &report.summary;
    let speed = if wall.as_secs_f64() > 0.0 {
        simulated.as_secs_f64() / wall.as_secs_f64()
    } else {
        0.0
    };
    println!(
        "{} runs: {} in {:.1} s wall, {:.1} s simulated ({speed:.0} simulated s per wall s)",
        jobs.len(),
        mqtt_reports::render::terminal_summary_line(summary),
        wall.as_secs_f64(),
        simulated.as_secs_f64()
    );
    output::finish(
        &report,
        args.report_dir.as_deref(),
        args.json.as_deref(),
        summary.failed > 0,
        &trace_errors,
    )
}

fn replay_command(scenario: &Scenario, run: &SimRun, args: &Args) -> String {
    let mut command = format!(
        "mqtt-harness sim {} --seed {} --protocol {}",
        output::shown(&scenario.path),
        run.seed,
        version_name(run.version)
    );
    if args.swarm {
        command.push_str(" --swarm");
    }
    if args.strict {
        command.push_str(" --strict");
    }
    if let Some(tick) = args.tick_ms {
        command.push_str(&format!(" --tick-ms {tick}"));
    }
    command
}

fn export(scenario: &Scenario, run: &SimRun, dir: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(&scenario.path)
        .map_err(|error| format!("cannot read {}: {error}", scenario.path.display()))?;
    let stem = scenario
        .path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = format!("{stem}-swarm-{}", run.seed);
    let exported = swarm::export(&text, &name, &run.swarm_faults)?;
    // The area folder keeps the case id's area.
    let area = scenario.id.split('/').next().unwrap_or("exported");
    let path = dir.join(area).join(format!("{name}.yaml"));
    output::write_file(&path, &exported)?;
    Ok(path)
}
