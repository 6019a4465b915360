//! `mqtt-harness run`: the same scenarios live against a broker, with faults through a loopback
//! fault proxy, timing windows in real time.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mqtt_client::transport::TlsOptions;
use mqtt_client::BrokerUrl;
use mqtt_protocol::ProtocolVersion;
use mqtt_reports::{compare, Case, Expectations, Kind, Verdict};
use mqtt_scenarios::live::{self, LiveOptions, LiveOutcome, TargetSpec, TOLERANCE_DEFAULT};
use mqtt_scenarios::load::load_paths;
use mqtt_scenarios::results;
use mqtt_scenarios::scenario::{version_name, Scenario};

use super::output::{self, colour, verdict_label};
use super::{reach, Protocol, TlsArgs, EXIT_USAGE};

/// Runs YAML scenarios live against a broker. Faults go through a fault proxy the harness starts
/// on loopback for each client a fault names; windows are measured in real time with a fixed
/// tolerance. Each run uses topic and client id prefixes of its own and clears the retained
/// messages and sessions it left, so a shared broker is fine.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario files, or folders searched for *.yaml (e.g. scenarios/spec).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// The broker, e.g. mqtt://127.0.0.1:1883 (credentials as mqtt://user:pass@host:port).
    /// Without it, the reference broker is started in-process for each run, with the
    /// scenario's configuration.
    #[arg(long, short = 'b', value_name = "URL")]
    pub broker: Option<String>,
    /// The user name every client presents, unless the scenario gives its own.
    #[arg(long, short = 'u', value_name = "USER")]
    pub username: Option<String>,
    /// The password every client presents, unless the scenario gives its own.
    #[arg(long = "pw", short = 'P', visible_alias = "password", value_name = "PASSWORD")]
    pub password: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The broker's known deviations: exit 0 when every verdict matches the file, 1 on any
    /// mismatch (a new failure, or a new pass).
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// The protocol versions to run, among those each scenario lists.
    #[arg(long, value_name = "5.0|3.1.1|all", default_value = "all")]
    pub protocol: Protocol,
    /// SHOULD-level expectations and early arrivals fail instead of being informational.
    #[arg(long)]
    pub strict: bool,
    /// The tolerance added to a window's upper bound, for brokers that keep time in whole
    /// seconds: 1000 ms by default, which this may lower but never raise.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub tolerance_ms: Option<u64>,
    /// Scenario runs at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
    /// Write each run's packet trace to DIR/<area>/<name>/<version>.trace.
    #[arg(long, value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// Write report.json, junit.xml, report.html and report.md to DIR.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Write the JSON result to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let scenarios = match load_paths(&args.paths) {
        Ok(scenarios) => scenarios,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let expectations = match &args.expect {
        Some(path) => match Expectations::load(path) {
            Ok(expectations) => Some(expectations),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => None,
    };
    let (spec, username, password, tls) = match target(&args) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let options = LiveOptions {
        strict: args.strict,
        tolerance: args.tolerance_ms.map_or(TOLERANCE_DEFAULT, Duration::from_millis),
        username,
        password,
        timeout_scale: 1.0,
        tls,
        transport_url: None,
    };
    let jobs: Vec<(usize, ProtocolVersion)> = scenarios
        .iter()
        .enumerate()
        .flat_map(|(index, scenario)| {
            args.protocol
                .filter(&scenario.versions)
                .into_iter()
                .map(move |version| (index, version))
        })
        .collect();
    if jobs.is_empty() {
        eprintln!("no scenario runs in protocol version {}", args.protocol);
        return ExitCode::from(EXIT_USAGE);
    }
    eprintln!(
        "run: {} scenario runs against {}, {} at a time",
        jobs.len(),
        spec.describe(),
        args.concurrency
    );
    let bar = output::progress(jobs.len(), "runs");
    let started = Instant::now();
    let outcomes = live::run_many(&scenarios, &jobs, &spec, &options, args.concurrency as usize, &|| {
        bar.inc(1)
    });
    bar.finish_and_clear();

    let colour = colour();
    let mut report = output::new_report(Kind::Run, &spec.describe());
    report
        .parameters
        .insert("paths".into(), output::shown_paths(&args.paths).into());
    report
        .parameters
        .insert("protocol".into(), args.protocol.to_string().into());
    report.parameters.insert("strict".into(), args.strict.into());
    report
        .parameters
        .insert("tolerance_ms".into(), (options.tolerance.as_millis() as u64).into());
    let mut trace_errors = Vec::new();
    for ((index, version), outcome) in jobs.iter().zip(outcomes) {
        let scenario = &scenarios[*index];
        let command = rerun_command(scenario, *version, &args);
        if let (Some(dir), LiveOutcome::Ran(run)) = (&args.trace_dir, &outcome) {
            let path = output::trace_path(dir, &scenario.id, version_name(*version), None);
            if let Err(error) = output::write_file(&path, &run.trace.render(true)) {
                trace_errors.push(error);
            }
        }
        let case = results::live_case(scenario, *version, &outcome, command, false);
        print_case(&case, colour);
        report.push(case);
    }
    println!(
        "{} runs: {} in {:.1} s",
        jobs.len(),
        mqtt_reports::render::terminal_summary_line(&report.summary),
        started.elapsed().as_secs_f64()
    );
    let mut failed = report.summary.failed > 0;
    if let Some(expectations) = &expectations {
        let comparison = compare(&report, expectations);
        if let Some(wrong) = &comparison.wrong_kind {
            println!("{}: {wrong}", expectations.path.display());
        }
        for mismatch in &comparison.mismatches {
            println!("MISMATCH {mismatch}");
        }
        for not_run in comparison.not_run.iter().take(5) {
            println!("note: {not_run}");
        }
        failed = !comparison.is_match();
        println!(
            "expectations {}: {}",
            expectations.path.display(),
            if failed {
                format!("{} mismatches", comparison.mismatches.len())
            } else {
                "every verdict matches".to_owned()
            }
        );
    }
    output::finish(
        &report,
        args.report_dir.as_deref(),
        args.json.as_deref(),
        failed,
        &trace_errors,
    )
}

/// The broker under test and the credentials, from `--broker`, `-u` and `-P` (which win over
/// credentials in the URL). A broker that does not answer a TCP connect is an error here, with
/// the reason in one line.
fn target(args: &Args) -> Result<(TargetSpec, Option<String>, Option<String>, TlsOptions), String> {
    let Some(text) = &args.broker else {
        return Ok((
            TargetSpec::Reference,
            args.username.clone(),
            args.password.clone(),
            TlsOptions::default(),
        ));
    };
    let (_, url, tls) = reach(text, &args.tls)?;
    let username = args.username.clone().or_else(|| url.username.clone());
    let password = args.password.clone().or_else(|| url.password.clone());
    Ok((TargetSpec::Url(url), username, password, tls))
}

fn print_case(case: &Case, colour: bool) {
    println!("{} {} [{}]", verdict_label(case.verdict, colour), case.id, case.version);
    let evidence = &case.evidence;
    match case.verdict {
        Verdict::Fail => {
            output::print_evidence(case, "rerun");
        }
        Verdict::NotApplicable => println!("       {}", evidence.message),
        _ => {
            for note in evidence.notes.iter().take(3) {
                println!("       note: {note}");
            }
        }
    }
}

fn rerun_command(scenario: &Scenario, version: ProtocolVersion, args: &Args) -> String {
    let mut command = format!(
        "mqtt-harness run {} --protocol {}",
        output::shown(&scenario.path),
        version_name(version)
    );
    if let Some(broker) = &args.broker {
        // Credentials stay out of printed commands.
        let shown = broker
            .parse::<BrokerUrl>()
            .map_or_else(|_| broker.clone(), |url| url.to_string());
        command.push_str(&format!(" --broker {shown}"));
    }
    if args.strict {
        command.push_str(" --strict");
    }
    command
}
