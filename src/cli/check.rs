//! `mqtt-harness check`: the conformance suite against a broker, or against the reference broker
//! started in-process when no URL is given.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mqtt_broker::Config;
use mqtt_conformance::catalog::{self, catalog, section_of};
use mqtt_conformance::context::Endpoint;
use mqtt_conformance::coverage::{coverage, VersionCoverage};
use mqtt_conformance::robustness::{self, watch::Watch, watch::MEMORY_GROWTH_MAX_KIB};
use mqtt_conformance::runner::{self, CheckOptions};
use mqtt_loadgen::system::Process;
use mqtt_loadgen::workload::parse_duration;
use mqtt_protocol::ProtocolVersion;
use mqtt_reports::{compare, Expectations, Kind, Verdict};
use mqtt_scenarios::live::{ReferenceBroker, TOLERANCE_DEFAULT};
use mqtt_scenarios::scenario::version_name;
use serde_json::json;

use super::child_broker::ChildBroker;
use super::fuzz;
use super::output::{self, colour, verdict_label};
use super::{reach, Protocol, TlsArgs, EXIT_USAGE};

/// Checks a broker against the conformance catalog: every case tied to the normative statements
/// it checks, in MQTT 5.0 and 3.1.1. Exit 0 when every applicable MUST case passes (and SHOULD
/// cases under --strict; with --expect, when every verdict matches the file), 1 otherwise, 2 when
/// the broker cannot be reached or the arguments are wrong.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker, e.g. mqtt://127.0.0.1:1883 (credentials as mqtt://user:pass@host:port).
    /// Without it, the reference broker is started in-process on a loopback port and checked.
    #[arg(value_name = "URL")]
    pub broker: Option<String>,
    /// The protocol versions to check.
    #[arg(long, value_name = "5.0|3.1.1|all", default_value = "all")]
    pub protocol: Protocol,
    /// Run only the cases this selects (repeatable): a statement id or its prefix (MQTT-3.1 is
    /// MQTT-3.1.x, not MQTT-3.10.x), one version's (5.0:MQTT-3.1.2-24), a section (3.3), a case.
    #[arg(long, value_name = "ID")]
    pub only: Vec<String>,
    /// Leave out the cases this selects (repeatable), as --only selects them.
    #[arg(long, value_name = "ID")]
    pub skip: Vec<String>,
    /// List the catalog (id, version, level, statements, needs) and send nothing.
    #[arg(long)]
    pub list: bool,
    /// Print which statements the catalog covers, and why the others are not, and send nothing.
    #[arg(long)]
    pub coverage: bool,
    /// Find the broker's limits (accepted packet size, client id length, topic levels, in-flight
    /// window, keep-alive cap, offline queue) and print them as JSON, instead of checking.
    #[arg(long)]
    pub discover: bool,
    /// SHOULD-level cases count: their failures fail the check.
    #[arg(long)]
    pub strict: bool,
    /// The broker's known deviations: exit 0 when every verdict matches the file, 1 on any
    /// mismatch (a new failure, or a new pass).
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// The user name every case presents.
    #[arg(long, short = 'u', value_name = "USER")]
    pub username: Option<String>,
    /// The password every case presents.
    #[arg(long = "pw", short = 'P', visible_alias = "password", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// 5.0 enhanced authentication the broker offers for -u/-P (5.0 §4.12): the cases of the
    /// exchange and of re-authentication run with it (without it they are not applicable)
    #[arg(long, value_name = "METHOD", value_parser = ["SCRAM-SHA-256"], requires_all = ["username", "password"])]
    pub auth_method: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Cases at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
    /// Multiplies how long cases wait for answers (not the spec's timing windows), for slow brokers.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub timeout_scale: f64,
    /// Runs each case N times and reports the flaky ones (never a silent retry).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// The tolerance added to a timing window's upper bound: 1000 ms by default, which this may
    /// lower but never raise.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub tolerance_ms: Option<u64>,
    /// Write report.json, junit.xml, report.html and report.md to DIR.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Write the JSON result to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Read the YAML cases from DIR instead of the built-in catalog (for writing cases).
    #[arg(long, value_name = "DIR")]
    pub cases: Option<PathBuf>,
    /// Run the robustness suite instead of the conformance catalog: truncated and stalled packets,
    /// slow-loris CONNECTs, property floods, subscription and connection floods, QoS 2 ids never
    /// released, publish storms; each beside a side client whose round trips before, during and
    /// after are reported. Opt-in: some cases are shaped like a denial of service. Without a URL
    /// the reference broker runs in a process of its own, so that its memory is measured.
    #[arg(long, conflicts_with_all = ["coverage", "discover", "cases"])]
    pub robustness: bool,
    /// The process id of the broker (on this machine): --robustness reports its resident memory
    /// around each case, and fails a case during which it grows by more than 256 MiB.
    #[arg(long, value_name = "PID", requires = "robustness")]
    pub broker_pid: Option<u32>,
    /// Network fuzzing for DURATION (90s, 10m) instead of checking: sessions recorded from the
    /// scenario library, mutated from --seed, each sent on a fresh connection and followed by a
    /// health check (a fresh CONNECT and PINGREQ answered). An input after which the broker is not
    /// healthy, or that it answers with a packet that does not decode, is saved to --fuzz-dir and
    /// the run fails (exit 1). Without a URL the reference broker runs in a process of its own.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          conflicts_with_all = ["robustness", "coverage", "discover", "list", "expect"])]
    pub fuzz: Option<Duration>,
    /// The seed of --fuzz's mutations: the same seed replays the same inputs [default: from the
    /// clock, printed]
    #[arg(long, value_name = "N", requires = "fuzz")]
    pub seed: Option<u64>,
    /// Where --fuzz saves an input that broke the broker (the bytes, and a note of what they are
    /// and how to replay them).
    #[arg(long, value_name = "DIR", default_value = "mqtt-harness-fuzz")]
    pub fuzz_dir: PathBuf,
    /// Sends the bytes of FILE (an input --fuzz saved) on one connection in the --protocol
    /// version, then checks the broker's health: exit 1 when it is not healthy.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["fuzz", "robustness", "list", "coverage", "discover"])]
    pub fuzz_replay: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    if !(args.timeout_scale.is_finite() && (0.1..=100.0).contains(&args.timeout_scale)) {
        eprintln!("--timeout-scale: {} is not between 0.1 and 100", args.timeout_scale);
        return ExitCode::from(EXIT_USAGE);
    }
    let loaded = match &args.cases {
        Some(dir) => catalog::catalog_from(dir),
        None if args.robustness => Ok(robustness::catalog()),
        None => catalog(),
    };
    let catalog = match loaded {
        Ok(catalog) => catalog,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let versions = args.protocol.filter(&[ProtocolVersion::V5, ProtocolVersion::V3_1_1]);
    let options = CheckOptions {
        versions: versions.clone(),
        only: args.only.clone(),
        skip: args.skip.clone(),
        strict: args.strict,
        concurrency: args.concurrency as usize,
        timeout_scale: args.timeout_scale,
        repeat: args.repeat,
        tolerance: args.tolerance_ms.map_or(TOLERANCE_DEFAULT, Duration::from_millis),
        username: args.username.clone(),
        password: args.password.clone(),
        auth_method: args.auth_method.clone(),
        watch: None,
    };
    let jobs = runner::selected(&catalog, &options);
    if args.list {
        for (index, version) in &jobs {
            println!("{}", catalog::describe(&catalog[*index], *version));
        }
        println!("{} cases in {} versions", jobs.len(), versions.len());
        return ExitCode::SUCCESS;
    }
    let coverages: Vec<(ProtocolVersion, VersionCoverage)> = versions
        .iter()
        .map(|version| (*version, coverage(&catalog, *version)))
        .collect();
    if args.coverage {
        print_coverage(&coverages);
        return ExitCode::SUCCESS;
    }
    let coverages = if args.robustness { Vec::new() } else { coverages };
    if jobs.is_empty() {
        eprintln!("no case selected (see --list)");
        return ExitCode::from(EXIT_USAGE);
    }
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
    // The embedded broker, or the address of the one at the URL (reachable, or exit 2).
    let mut embedded = None;
    let mut child = None;
    let (endpoint, url, target, mut options) = match &args.broker {
        None if args.robustness || args.fuzz.is_some() || args.fuzz_replay.is_some() => match ChildBroker::start() {
            Ok(broker) => {
                let address = broker.address;
                child = Some(broker);
                (
                    Endpoint::tcp(address),
                    String::new(),
                    "the reference broker (a process of its own)".to_owned(),
                    options,
                )
            }
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => match ReferenceBroker::start(Config::default()) {
            Ok(broker) => {
                let address = broker.address();
                embedded = Some(broker);
                (
                    Endpoint::tcp(address),
                    String::new(),
                    "the reference broker (embedded)".to_owned(),
                    options,
                )
            }
            Err(error) => {
                eprintln!("the embedded broker did not start: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        Some(text) => match reach(text, &args.tls)
            .and_then(|(address, url, tls)| Endpoint::new(url, address, tls).map_err(|error| error.to_string()))
        {
            Ok(endpoint) => {
                let mut options = options;
                options.username = options.username.or_else(|| endpoint.url.username.clone());
                options.password = options.password.or_else(|| endpoint.url.password.clone());
                let url = endpoint.url.to_string();
                (endpoint, url.clone(), url, options)
            }
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    if let Some(file) = &args.fuzz_replay {
        let Some(version) = versions.first().copied().filter(|_| versions.len() == 1) else {
            eprintln!("--fuzz-replay: say the input's version with --protocol 5.0 or --protocol 3.1.1");
            return ExitCode::from(EXIT_USAGE);
        };
        let code = fuzz::replay(&endpoint, file, version);
        drop(child);
        return code;
    }
    if let Some(duration) = args.fuzz {
        let code = fuzz::run(
            &endpoint,
            if url.is_empty() { "URL" } else { &url },
            &target,
            &fuzz::FuzzArgs {
                duration,
                seed: args.seed,
                dir: &args.fuzz_dir,
                versions: &versions,
                username: options.username.as_deref(),
                password: options.password.as_deref(),
                report_dir: args.report_dir.as_deref(),
                json: args.json.as_deref(),
            },
        );
        drop(child);
        return code;
    }
    if args.discover {
        let limits = discover_limits(&endpoint, &versions, &options);
        drop(embedded);
        return match limits {
            Ok(limits) => {
                println!("{limits:#}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    if args.robustness {
        let memory = match (&child, args.broker_pid) {
            (_, Some(pid)) => Some(Process::Pid(pid)),
            (Some(child), None) => Some(Process::Pid(child.pid())),
            (None, None) => None,
        };
        options.watch = Some(Watch {
            memory,
            memory_growth_max_kib: MEMORY_GROWTH_MAX_KIB,
        });
        eprintln!(
            "check --robustness: {} cases against {target}, one at a time, each beside a side client{}",
            jobs.len() * options.repeat as usize,
            if memory.is_some() {
                " and the broker's memory"
            } else {
                ""
            }
        );
    } else {
        eprintln!(
            "check: {} cases against {target}, {} at a time",
            jobs.len() * options.repeat as usize,
            options.concurrency
        );
    }
    let bar = output::progress(jobs.len() * options.repeat as usize, "cases");
    let started = Instant::now();
    let result = runner::check(endpoint, &url, &catalog, &options, &|| bar.inc(1));
    bar.finish_and_clear();
    drop(embedded);
    drop(child);
    let run = match result {
        Ok(run) => run,
        Err(error) => {
            eprintln!("cannot check {target}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let colour = colour();
    let mut report = output::new_report(Kind::Check, &target);
    report
        .parameters
        .insert("protocol".into(), args.protocol.to_string().into());
    report.parameters.insert("strict".into(), args.strict.into());
    report.parameters.insert("only".into(), json!(args.only));
    report.parameters.insert("skip".into(), json!(args.skip));
    report.parameters.insert("repeat".into(), args.repeat.into());
    report
        .parameters
        .insert("timeout_scale".into(), args.timeout_scale.into());
    let mut coverage_json = serde_json::Map::new();
    for (version, found) in &coverages {
        coverage_json.insert(version_name(*version).to_owned(), found.to_json());
    }
    report.extra.insert("coverage".into(), coverage_json.into());
    report.extra.insert("behaviour".into(), json!(run.behaviour));
    let brokers: BTreeMap<&str, serde_json::Value> = run
        .capabilities
        .iter()
        .map(|found| (version_name(found.version), found.to_json()))
        .collect();
    report
        .extra
        .insert("broker".into(), json!({"target": target, "versions": brokers}));

    // Terminal: grouped by section, a line per case.
    let mut by_section: BTreeMap<String, Vec<&mqtt_reports::Case>> = BTreeMap::new();
    for case in &run.cases {
        let section = match case.id.split_once('/') {
            Some((robustness::SECTION, _)) => robustness::SECTION,
            _ => case.statements.first().and_then(|id| section_of(id)).unwrap_or("0"),
        }
        .to_owned();
        by_section.entry(section).or_default().push(case);
    }
    let mut sections: Vec<(String, Vec<&mqtt_reports::Case>)> = by_section.into_iter().collect();
    sections.sort_by_key(|(section, _)| section_key(section));
    for (section, cases) in &sections {
        println!("§{section}");
        for case in cases {
            println!(
                "  {} {} [{}]",
                verdict_label(case.verdict, colour),
                case.id,
                case.version
            );
            match case.verdict {
                Verdict::Fail => output::print_evidence(case, "rerun"),
                Verdict::NotApplicable => println!("       {}", case.evidence.message),
                _ => {
                    let shown = if args.robustness { usize::MAX } else { 2 };
                    for note in case.evidence.notes.iter().take(shown) {
                        println!("       note: {note}");
                    }
                }
            }
        }
    }
    for case in run.cases {
        report.push(case);
    }
    let covered: Vec<String> = coverages
        .iter()
        .map(|(version, found)| format!("{} {}/{}", version_name(*version), found.tested.len(), found.total))
        .collect();
    println!(
        "{} cases: {} in {:.1} s{}",
        report.cases.len(),
        mqtt_reports::render::terminal_summary_line(&report.summary),
        started.elapsed().as_secs_f64(),
        if covered.is_empty() {
            String::new()
        } else {
            format!("; statements covered: {}", covered.join(", "))
        }
    );
    let failed = match &expectations {
        Some(expectations) => {
            let comparison = compare(&report, expectations);
            if let Some(wrong) = &comparison.wrong_kind {
                println!("{}: {wrong}", expectations.path.display());
            }
            for mismatch in &comparison.mismatches {
                println!("MISMATCH {mismatch}");
            }
            println!(
                "expectations {}: {}",
                expectations.path.display(),
                if comparison.is_match() {
                    "every verdict matches".to_owned()
                } else {
                    format!("{} mismatches", comparison.mismatches.len())
                }
            );
            !comparison.is_match()
        }
        None => report.summary.failed > 0,
    };
    output::finish(&report, args.report_dir.as_deref(), args.json.as_deref(), failed, &[])
}

/// The limits of the broker at `address` in each version, as one JSON object by version.
fn discover_limits(
    endpoint: &Endpoint,
    versions: &[ProtocolVersion],
    options: &CheckOptions,
) -> Result<serde_json::Value, String> {
    /// The whole search, for every version, ends within this.
    const BOUND: Duration = Duration::from_secs(600);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a runtime: {error}"))?;
    let id = mqtt_conformance::run_id();
    let names = mqtt_scenarios::engine::Names {
        topic_prefix: format!("mh/{id}/"),
        client_id_prefix: format!("mh{id}-"),
        username: options.username.clone(),
        password: options.password.clone(),
    };
    runtime.block_on(async {
        tokio::time::timeout(BOUND, async {
            let mut found = serde_json::Map::new();
            for version in versions {
                eprintln!("discovering the limits in {} ...", version_name(*version));
                let limits = mqtt_conformance::limits::discover_limits(endpoint.clone(), *version, &names).await;
                found.insert(version_name(*version).to_owned(), limits);
            }
            serde_json::Value::Object(found)
        })
        .await
        .map_err(|_| format!("the search did not end within {} s", BOUND.as_secs()))
    })
}

/// `3.10.1` after `3.9.2`: sections compare number by number.
fn section_key(section: &str) -> Vec<u32> {
    section
        .split('.')
        .map(|part| part.parse().unwrap_or(u32::MAX))
        .collect()
}

fn print_coverage(coverages: &[(ProtocolVersion, VersionCoverage)]) {
    for (version, found) in coverages {
        println!(
            "{}: {} of {} statements tested, {} not testable against a broker, {} untested, {} unclassified",
            version_name(*version),
            found.tested.len(),
            found.total,
            found.not_testable.len(),
            found.untested.len(),
            found.unclassified.len()
        );
        for (id, cases) in &found.tested {
            println!("  tested        {id:<16} {}", cases.join(", "));
        }
        for (id, reason) in &found.not_testable {
            println!("  not testable  {id:<16} {reason}");
        }
        for (id, reason) in &found.untested {
            println!("  untested      {id:<16} {reason}");
        }
        for id in &found.unclassified {
            println!("  unclassified  {id}");
        }
        for problem in &found.inconsistent {
            println!("  inconsistent  {problem}");
        }
    }
}
