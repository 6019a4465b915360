//! Running the catalog against a broker: discovery first (what the broker offers in each
//! version), then every selected case in every selected version, each bounded in time and with
//! client ids and topics of its own. Concurrent cases run several at a time; serial ones (the
//! broker-wide: takeover races, limits, the retained store) one at a time afterwards, beside
//! nothing. A broker that hangs fails a case ("no CONNACK within 5 s"); the harness never hangs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mqtt_client::BrokerUrl;
use mqtt_protocol::ProtocolVersion;
use mqtt_reports::{Case as ReportCase, Evidence, Verdict};
use mqtt_scenarios::engine::Names;
use mqtt_scenarios::live::{self, LiveOptions, TargetSpec};
use mqtt_scenarios::results;
use mqtt_scenarios::scenario::{version_name, CaseLevel, Phase};
use mqtt_scenarios::wire::{hex, instant, Clock, Trace};
use tokio::time::{timeout, Instant};

use crate::catalog::{Body, Case};
use crate::context::{Context, Endpoint, Failure, Finding};
use crate::discover::{discover, Capabilities};
use crate::robustness::watch::{Watch, Watcher, QUIET};

/// The longest one probe case may take, before scaling.
const PROBE_CASE_MAX: Duration = Duration::from_secs(60);

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub versions: Vec<ProtocolVersion>,
    /// `--only`: when any, a case runs only if one selects it.
    pub only: Vec<String>,
    /// `--skip`: a case one selects does not run.
    pub skip: Vec<String>,
    pub strict: bool,
    pub concurrency: usize,
    pub timeout_scale: f64,
    /// Runs each case this many times; differing verdicts make it flaky.
    pub repeat: u32,
    /// The live tolerance of timing windows.
    pub tolerance: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The enhanced authentication method the broker offers for `username` / `password` (5.0
    /// §4.12; `SCRAM-SHA-256` is the one the harness speaks): its cases run only with it.
    pub auth_method: Option<String>,
    /// `check --robustness`: each case runs inside a watch (a side client's round trips, the
    /// broker's memory), which fails it when service or memory is lost.
    pub watch: Option<Watch>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            versions: vec![ProtocolVersion::V5, ProtocolVersion::V3_1_1],
            only: Vec::new(),
            skip: Vec::new(),
            strict: false,
            concurrency: 8,
            timeout_scale: 1.0,
            repeat: 1,
            tolerance: live::TOLERANCE_DEFAULT,
            username: None,
            password: None,
            auth_method: None,
            watch: None,
        }
    }
}

/// The result of a check.
pub struct CheckRun {
    /// One per case and version (and repeat), in catalog order.
    pub cases: Vec<ReportCase>,
    /// What the broker offers, per version it accepted.
    pub capabilities: Vec<Capabilities>,
    /// Which behaviour the broker chose where the spec allows several, by case id and version.
    pub behaviour: BTreeMap<String, Vec<String>>,
}

/// A case's report, and the behaviour it recorded where the spec allows several.
type Ran = (ReportCase, Vec<String>);

/// One case in one version.
#[derive(Debug, Clone, Copy)]
struct Job {
    case: usize,
    version: ProtocolVersion,
}

/// The jobs `options` selects, in catalog order.
pub fn selected(catalog: &[Case], options: &CheckOptions) -> Vec<(usize, ProtocolVersion)> {
    let mut jobs = Vec::new();
    for (index, case) in catalog.iter().enumerate() {
        for version in &options.versions {
            if !case.versions.contains(version) {
                continue;
            }
            let chosen =
                options.only.is_empty() || options.only.iter().any(|pattern| case.selected_by(*version, pattern));
            let skipped = options.skip.iter().any(|pattern| case.selected_by(*version, pattern));
            if chosen && !skipped {
                jobs.push((index, *version));
            }
        }
    }
    jobs
}

/// The command that reruns one case.
pub fn rerun_command(url: &str, case: &Case, version: ProtocolVersion) -> String {
    let robustness = if case.section == crate::robustness::SECTION {
        " --robustness"
    } else {
        ""
    };
    format!(
        "mqtt-harness check{robustness} {url} --only {}:{} --protocol {}",
        version_name(version),
        case.id(version),
        version_name(version)
    )
}

/// Checks `broker`, over its transport (`url` is how commands name it: empty for the embedded one).
/// `done` is told of each finished case. An error is a one-line reason the broker cannot be
/// checked at all.
pub fn check(
    broker: Endpoint,
    url: &str,
    catalog: &[Case],
    options: &CheckOptions,
    done: &(dyn Fn() + Sync),
) -> Result<CheckRun, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a runtime: {error}"))?;
    let names = Names {
        topic_prefix: "mh/discover/".to_owned(),
        client_id_prefix: "mh-".to_owned(),
        username: options.username.clone(),
        password: options.password.clone(),
    };
    let mut capabilities = Vec::new();
    for version in &options.versions {
        let found =
            runtime.block_on(async { timeout(Duration::from_secs(20), discover(&broker, *version, &names)).await });
        match found {
            Ok(Ok(found)) => capabilities.push(found),
            Ok(Err(error)) => return Err(format!("{}: {error}", version_name(*version))),
            Err(_) => {
                return Err(format!(
                    "{}: no answer to discovery within 20 s",
                    version_name(*version)
                ))
            }
        }
    }
    let capabilities_of = |version: ProtocolVersion| capabilities.iter().find(|found| found.version == version);

    let repeat = options.repeat.max(1);
    let jobs: Vec<Job> = selected(catalog, options)
        .into_iter()
        .flat_map(|(case, version)| (0..repeat).map(move |_| Job { case, version }))
        .collect();
    // Scenario cases reach the broker at the address that answered, over the URL's transport.
    let target = TargetSpec::Url(BrokerUrl {
        host: broker.address.ip().to_string(),
        port: broker.address.port(),
        ..broker.url.clone()
    });
    let runner = Runner {
        target,
        live_options: LiveOptions {
            strict: options.strict,
            tolerance: options.tolerance,
            username: options.username.clone(),
            password: options.password.clone(),
            timeout_scale: options.timeout_scale,
            tls: broker.tls.clone(),
            transport_url: Some(broker.url.clone()),
        },
        broker,
        options,
    };
    let results: Mutex<Vec<Option<Ran>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let run_job = |runtime: &tokio::runtime::Runtime, index: usize| {
        let job = jobs[index];
        let case = &catalog[job.case];
        let command = rerun_command(url, case, job.version);
        let declined =
            capabilities_of(job.version).and_then(|found| case.needs.iter().find_map(|need| found.declines(*need)));
        let outcome = match declined {
            Some(reason) => (
                not_applicable(case, job.version, format!("not applicable: {reason}"), command),
                Vec::new(),
            ),
            None => runtime.block_on(runner.run_case(case, job.version, capabilities_of(job.version), command)),
        };
        done();
        results.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[index] = Some(outcome);
    };
    // Concurrent cases first, several at a time; serial ones alone afterwards.
    let (concurrent, serial): (Vec<usize>, Vec<usize>) =
        (0..jobs.len()).partition(|index| catalog[jobs[*index].case].phase == Phase::Concurrent);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency.clamp(1, concurrent.len().max(1)) {
            scope.spawn(|| {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                loop {
                    let position = next.fetch_add(1, Ordering::Relaxed);
                    let Some(index) = concurrent.get(position) else { return };
                    run_job(&runtime, *index);
                }
            });
        }
    });
    for index in serial {
        run_job(&runtime, index);
    }
    let mut cases = Vec::new();
    let mut behaviour = BTreeMap::new();
    for (index, result) in results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .enumerate()
    {
        let job = jobs[index];
        let (case, chosen) = result.unwrap_or_else(|| {
            let case = &catalog[job.case];
            (
                not_applicable(
                    case,
                    job.version,
                    "not run: no runtime could start".to_owned(),
                    String::new(),
                ),
                Vec::new(),
            )
        });
        if !chosen.is_empty() {
            behaviour.insert(format!("{} [{}]", case.id, case.version), chosen);
        }
        cases.push(case);
    }
    if repeat > 1 {
        mark_flaky(&mut cases);
    }
    Ok(CheckRun {
        cases,
        capabilities,
        behaviour,
    })
}

/// Cases run more than once whose verdicts differ are flaky: every run of them says so.
fn mark_flaky(cases: &mut [ReportCase]) {
    let mut verdicts: BTreeMap<(String, String), Vec<Verdict>> = BTreeMap::new();
    for case in cases.iter() {
        verdicts
            .entry((case.id.clone(), case.version.clone()))
            .or_default()
            .push(case.verdict);
    }
    for case in cases.iter_mut() {
        let seen = &verdicts[&(case.id.clone(), case.version.clone())];
        if seen.iter().any(|verdict| *verdict != seen[0]) {
            case.flaky = true;
            let failed = seen.iter().filter(|verdict| **verdict == Verdict::Fail).count();
            case.evidence
                .notes
                .push(format!("flaky: {failed} of {} runs failed", seen.len()));
        }
    }
}

fn base_case(case: &Case, version: ProtocolVersion, verdict: Verdict, command: String) -> ReportCase {
    let mut report = ReportCase::new(case.id(version), version_name(version), verdict);
    report.title = case.about.clone();
    report.statements = case.statements_for(version);
    report.command = command;
    report
}

fn not_applicable(case: &Case, version: ProtocolVersion, reason: String, command: String) -> ReportCase {
    let mut report = base_case(case, version, Verdict::NotApplicable, command);
    report.evidence.message = reason;
    report
}

/// What every case of one check shares.
struct Runner<'a> {
    broker: Endpoint,
    target: TargetSpec,
    live_options: LiveOptions,
    options: &'a CheckOptions,
}

impl Runner<'_> {
    /// Runs one case in one version; its report case and the behaviour it recorded.
    async fn run_case(
        &self,
        case: &Case,
        version: ProtocolVersion,
        capabilities: Option<&Capabilities>,
        command: String,
    ) -> Ran {
        let (broker, target, live_options, options) = (&self.broker, &self.target, &self.live_options, self.options);
        let started = Instant::now();
        match &case.body {
            Body::Scenario(scenario) => {
                if let Some(requirement) = scenario.requires.iter().next() {
                    let reason = format!(
                        "not applicable: it needs {}, which check does not do to a broker",
                        requirement.name()
                    );
                    return (not_applicable(case, version, reason, command), Vec::new());
                }
                let local = tokio::task::LocalSet::new();
                let run = local
                    .run_until(live::run(scenario, version, target, live_options))
                    .await;
                let record = results::RunRecord {
                    version,
                    outcome: &run.outcome,
                    trace: &run.trace,
                    seed: None,
                    duration_ms: run.elapsed.as_millis() as u64,
                };
                let failed = run.outcome.verdict == mqtt_scenarios::engine::Verdict::Fail;
                let mut report = results::case(scenario, &record, command, failed);
                report.id = case.id(version);
                report = profile(case, report);
                (report, run.outcome.behaviour.clone())
            }
            Body::Probe(run) => {
                let id = crate::run_id();
                let names = Names {
                    topic_prefix: format!("mh/{id}/"),
                    client_id_prefix: format!("mh{id}-"),
                    username: options.username.clone(),
                    password: options.password.clone(),
                };
                let scale = options.timeout_scale.max(0.01);
                let mut watcher = None;
                if let Some(watch) = options.watch {
                    let wait = crate::context::WAIT.mul_f64(scale);
                    match Watcher::start(broker.clone(), version, names.clone(), watch, wait).await {
                        Ok(started) => watcher = Some(started),
                        Err(error) => {
                            let mut report = base_case(case, version, Verdict::Fail, command);
                            report.evidence.message = format!("before the case: {error}");
                            return (report, Vec::new());
                        }
                    }
                    tokio::time::sleep(QUIET).await;
                }
                let start = Instant::now();
                let notes: std::rc::Rc<std::cell::RefCell<Vec<String>>> = Default::default();
                let context = Context {
                    version,
                    broker: broker.clone(),
                    names,
                    capabilities: capabilities.cloned().unwrap_or_else(|| Capabilities::all(version)),
                    auth_method: options.auth_method.clone(),
                    strict: options.strict,
                    scale,
                    tolerance: options.tolerance,
                    trace: Trace::default(),
                    clock: Clock::new(move || start.elapsed()),
                    wires: Default::default(),
                    notes: notes.clone(),
                };
                let trace = context.trace.clone();
                if let Some(watcher) = &mut watcher {
                    watcher.case_starts();
                }
                let bound = PROBE_CASE_MAX.mul_f64(options.timeout_scale.max(1.0));
                let local = tokio::task::LocalSet::new();
                let future = (run)(context);
                let result = match local.run_until(timeout(bound, future)).await {
                    Ok(result) => result,
                    Err(_) => Err(Failure::new(format!(
                        "the case did not end within {} s",
                        bound.as_secs()
                    ))),
                };
                let result = result.and_then(|finding| malformed(&trace).map_or(Ok(finding), Err));
                let mut notes = notes.take();
                let result = match watcher {
                    Some(mut watcher) => {
                        watcher.case_ends();
                        tokio::time::sleep(QUIET).await;
                        let (watched, lost) = watcher.finish();
                        notes.extend(watched);
                        match (result, lost) {
                            (Ok(_), Some(failure)) => Err(failure),
                            (result, _) => result,
                        }
                    }
                    None => result,
                };
                let verdict = match &result {
                    Ok(Finding::Pass) => Verdict::Pass,
                    Ok(Finding::Informational(_)) => Verdict::Informational,
                    Ok(Finding::NotApplicable(_)) => Verdict::NotApplicable,
                    Err(_) if case.level != CaseLevel::Must && !options.strict => Verdict::Informational,
                    Err(_) => Verdict::Fail,
                };
                let mut report = base_case(case, version, verdict, command);
                report.duration_ms = started.elapsed().as_millis() as u64;
                let mut evidence = match result {
                    Ok(Finding::Pass) => Evidence::default(),
                    Ok(Finding::Informational(note)) => Evidence {
                        notes: vec![note],
                        ..Evidence::default()
                    },
                    Ok(Finding::NotApplicable(reason)) => Evidence {
                        message: format!("not applicable: {reason}"),
                        ..Evidence::default()
                    },
                    Err(failure) if verdict == Verdict::Informational => Evidence {
                        notes: vec![format!("{} not met: {}", case.level.name(), failure.message)],
                        ..Evidence::default()
                    },
                    Err(failure) => Evidence {
                        message: failure.message,
                        expected: (!failure.expected.is_empty()).then_some(failure.expected),
                        actual: (!failure.actual.is_empty()).then_some(failure.actual),
                        notes: Vec::new(),
                        trace: trace_lines(&trace),
                    },
                };
                evidence.notes.extend(notes);
                report.evidence = evidence;
                (profile(case, report), Vec::new())
            }
        }
    }
}

/// A MAY case records which behaviour the broker chose: when it passes, its verdict is
/// informational, so the choice shows in the behaviour profile.
fn profile(case: &Case, mut report: ReportCase) -> ReportCase {
    if case.level == CaseLevel::May && report.verdict == Verdict::Pass {
        report.verdict = Verdict::Informational;
    }
    report
}

/// The first packet the broker sent that did not decode, as a failure.
fn malformed(trace: &Trace) -> Option<Failure> {
    trace
        .lines()
        .into_iter()
        .find(|line| line.arrow == mqtt_scenarios::wire::Arrow::Received && line.what.starts_with("malformed"))
        .map(|line| {
            Failure::expected(
                format!(
                    "{}: the broker sent a packet that does not decode: {}",
                    line.who, line.what
                ),
                "every packet the broker sends is well-formed",
                format!("{} {}", instant(line.at), line.what),
            )
        })
}

fn trace_lines(trace: &Trace) -> Vec<mqtt_reports::TraceLine> {
    trace
        .lines()
        .into_iter()
        .map(|line| mqtt_reports::TraceLine {
            at: instant(line.at),
            who: line.who,
            direction: line.arrow.symbol().to_owned(),
            what: line.what,
            raw_hex: line.raw.map(|raw| hex(&raw)),
        })
        .collect()
}
