//! `check --fuzz DURATION` and `check --fuzz-replay FILE`: network fuzzing of a broker with
//! mutated sessions of the scenario library ([`mqtt_conformance::netfuzz`]), and the replay of an
//! input it saved.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqtt_conformance::catalog::catalog;
use mqtt_conformance::context::Endpoint;
use mqtt_conformance::netfuzz::{self, Outcome};
use mqtt_protocol::ProtocolVersion;
use mqtt_reports::{Case, Kind, Verdict};
use mqtt_scenarios::scenario::version_name;

use super::output;
use super::EXIT_USAGE;

/// What the fuzzing run needs from `check`'s arguments.
pub struct FuzzArgs<'a> {
    pub duration: Duration,
    pub seed: Option<u64>,
    pub dir: &'a Path,
    pub versions: &'a [ProtocolVersion],
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub report_dir: Option<&'a Path>,
    pub json: Option<&'a Path>,
}

/// Fuzzes the broker at `endpoint` (`url` names it in replay commands, `target` in messages).
pub fn run(endpoint: &Endpoint, url: &str, target: &str, args: &FuzzArgs<'_>) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("cannot start a runtime");
        return ExitCode::from(EXIT_USAGE);
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
    });
    let catalog = match catalog() {
        Ok(catalog) => catalog,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let id = mqtt_conformance::run_id();
    let client_id = format!("mh{id}-fuzz");
    let health_client_id = format!("mh{id}-health");
    let sessions: Vec<netfuzz::Session> = netfuzz::record_sessions(&catalog)
        .iter()
        .filter(|session| args.versions.contains(&session.version))
        .map(|session| netfuzz::personalize(session, &client_id, args.username, args.password))
        .collect();
    if sessions.is_empty() {
        eprintln!("no session of the scenario library in the versions asked for");
        return ExitCode::from(EXIT_USAGE);
    }
    eprintln!(
        "check --fuzz: {} of mutated sessions ({} recorded from the scenario library) against {target}, seed {seed}, versions {}",
        humanize(args.duration),
        sessions.len(),
        args.versions.iter().map(|version| version_name(*version)).collect::<Vec<_>>().join(", ")
    );
    let bar = output::progress(args.duration.as_secs() as usize, "s");
    let started = std::time::Instant::now();
    let tick = |_inputs: u64| bar.set_position(started.elapsed().as_secs());
    let run = runtime.block_on(netfuzz::fuzz(
        endpoint,
        &sessions,
        args.duration,
        seed,
        &health_client_id,
        &tick,
    ));
    bar.finish_and_clear();
    let rate = run.inputs as f64 / run.elapsed.as_secs_f64().max(0.001);
    let versions: Vec<&str> = args.versions.iter().map(|version| version_name(*version)).collect();
    let mut case = Case::new("fuzz/mutated-sessions", versions.join("+"), Verdict::Pass);
    case.title = "The broker stays healthy after every mutated session".to_owned();
    case.command = format!(
        "mqtt-harness check {url} --fuzz {} --seed {seed}",
        humanize(args.duration)
    );
    case.duration_ms = run.elapsed.as_millis() as u64;
    case.evidence.notes.push(format!(
        "{} inputs in {:.1} s ({rate:.1}/s) from {} sessions, seed {seed}",
        run.inputs,
        run.elapsed.as_secs_f64(),
        run.sessions
    ));
    let failed = match &run.breaking {
        None => {
            println!(
                "fuzz: {} inputs in {:.1} s ({rate:.1}/s), seed {seed}: the broker stayed healthy after every one",
                run.inputs,
                run.elapsed.as_secs_f64()
            );
            false
        }
        Some(breaking) => {
            case.verdict = Verdict::Fail;
            case.evidence.message = format!("input {}: {:?}", breaking.iteration, breaking.outcome);
            let saved = match breaking.save(args.dir, url) {
                Ok((bin, txt)) => format!("saved to {} ({})", bin.display(), txt.display()),
                Err(error) => format!("could not be saved in {}: {error}", args.dir.display()),
            };
            println!(
                "FAIL fuzz: input {} of seed {seed} ({}, {}) broke the broker: {:?}\n     the input {saved}",
                breaking.iteration,
                breaking.origin,
                breaking.mutations.join("; "),
                breaking.outcome
            );
            case.evidence.notes.push(saved);
            true
        }
    };
    let mut report = output::new_report(Kind::Check, target);
    report
        .parameters
        .insert("fuzz_seconds".into(), args.duration.as_secs().into());
    report.parameters.insert("seed".into(), seed.into());
    report.push(case);
    output::finish(&report, args.report_dir, args.json, failed, &[])
}

/// Sends the bytes of `file` (an input `--fuzz` saved) on one connection in `version`, then checks
/// the broker's health: exit 1 when it is not healthy.
pub fn replay(endpoint: &Endpoint, file: &Path, version: ProtocolVersion) -> ExitCode {
    let input = match std::fs::read(file) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("{}: {error}", file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("cannot start a runtime");
        return ExitCode::from(EXIT_USAGE);
    };
    let health_client_id = format!("mh{}-health", mqtt_conformance::run_id());
    let outcome = runtime.block_on(netfuzz::try_input(endpoint, version, &input, &health_client_id));
    match outcome {
        Outcome::Survived => {
            println!(
                "replay {} ({} bytes, {}): the broker stayed healthy",
                file.display(),
                input.len(),
                version_name(version)
            );
            ExitCode::SUCCESS
        }
        other => {
            println!("FAIL replay {}: {other:?}", file.display());
            ExitCode::from(super::EXIT_FAILED)
        }
    }
}

/// `90s`, `1500ms`: as `--fuzz` takes it back.
fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}
