//! A run's outcome as a case of the shared result model (`mqtt-reports`): the verdict, the
//! statements, the evidence (expected, actual, notes, the packet trace) and the command that
//! reruns it. Evidence reaches the model already rendered, so the model needs no codec.

use mqtt_protocol::ProtocolVersion;
use mqtt_reports::{Case, Evidence, TraceLine, Verdict as ReportVerdict};

use crate::engine::{Outcome, Verdict};
use crate::scenario::{version_name, Scenario};
use crate::wire::{hex, instant, Trace};

/// The most trace lines a case carries; a longer trace keeps its end, where failures show.
pub const CASE_TRACE_LINES_MAX: usize = 2000;

/// One run, as the result model needs it.
pub struct RunRecord<'a> {
    pub version: ProtocolVersion,
    pub outcome: &'a Outcome,
    pub trace: &'a Trace,
    /// The seed of a simulated run.
    pub seed: Option<u64>,
    /// Simulated time under `sim`, real time live.
    pub duration_ms: u64,
}

/// The case for one run. The trace goes in when `with_trace` (failures, or on request).
pub fn case(scenario: &Scenario, run: &RunRecord<'_>, command: String, with_trace: bool) -> Case {
    let RunRecord {
        version,
        outcome,
        trace,
        seed,
        duration_ms,
    } = *run;
    let verdict = match outcome.verdict {
        Verdict::Pass => ReportVerdict::Pass,
        Verdict::Fail => ReportVerdict::Fail,
        Verdict::Informational => ReportVerdict::Informational,
    };
    let mut case = Case::new(scenario.id.clone(), version_name(version), verdict);
    case.title = scenario.about.clone();
    case.statements = scenario.statements_for(version);
    case.duration_ms = duration_ms;
    case.seed = seed;
    case.command = command;
    let behaviour = outcome.behaviour.iter().map(|line| format!("behaviour: {line}"));
    let mut evidence = Evidence {
        notes: outcome.notes.iter().cloned().chain(behaviour).collect(),
        ..Evidence::default()
    };
    if let Some(failure) = &outcome.failure {
        evidence.message = match failure.line {
            Some(line) => format!("{}:{line}: {}", scenario.path.display(), failure.message),
            None => failure.message.clone(),
        };
        evidence.expected = (!failure.expected.is_empty()).then(|| failure.expected.clone());
        evidence.actual = (!failure.actual.is_empty()).then(|| failure.actual.clone());
    }
    if with_trace {
        let lines = trace.lines();
        let skip = lines.len().saturating_sub(CASE_TRACE_LINES_MAX);
        evidence.trace = lines
            .into_iter()
            .skip(skip)
            .map(|line| TraceLine {
                at: instant(line.at),
                who: line.who,
                direction: line.arrow.symbol().to_owned(),
                what: line.what,
                raw_hex: line.raw.map(|raw| hex(&raw)),
            })
            .collect();
    }
    case.evidence = evidence;
    case
}

/// The case for a run that could not apply to the target.
pub fn not_applicable(scenario: &Scenario, version: ProtocolVersion, reason: String, command: String) -> Case {
    let mut case = Case::new(scenario.id.clone(), version_name(version), ReportVerdict::NotApplicable);
    case.title = scenario.about.clone();
    case.statements = scenario.statements_for(version);
    case.command = command;
    case.evidence.message = reason;
    case
}

/// The case for one job of a live run: not applicable with the reason, or the run's case (with
/// its trace when it failed, or when `with_trace`).
pub fn live_case(
    scenario: &Scenario,
    version: ProtocolVersion,
    outcome: &crate::live::LiveOutcome,
    command: String,
    with_trace: bool,
) -> Case {
    match outcome {
        crate::live::LiveOutcome::NotApplicable(reason) => not_applicable(scenario, version, reason.clone(), command),
        crate::live::LiveOutcome::Ran(run) => {
            let record = RunRecord {
                version,
                outcome: &run.outcome,
                trace: &run.trace,
                seed: None,
                duration_ms: run.elapsed.as_millis() as u64,
            };
            let failed = run.outcome.verdict == Verdict::Fail;
            case(scenario, &record, command, with_trace || failed)
        }
    }
}
