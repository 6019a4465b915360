//! Renderings of a [`Report`]: JUnit XML for CI, Markdown for pull requests and job summaries, one
//! self-contained HTML file for people, a one-line summary for terminals, and [`write_dir`] that
//! writes them all beside `report.json`.
//!
//! Every rendering groups cases by area (the case id up to its first `/`), in the order the areas
//! first appear in the report, and names a case `id [version]` plus ` seed N` when it has a seed,
//! so that the same case run for both protocol versions or several seeds stays apart. Every
//! rendering is a pure function of the report: the same report gives the same bytes.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::model::{Case, Report, Summary, Tool, TraceLine, Verdict};

/// The file [`write_dir`] writes the JSON report to.
pub const JSON_FILE: &str = "report.json";
/// The file [`write_dir`] writes the JUnit XML to.
pub const JUNIT_FILE: &str = "junit.xml";
/// The file [`write_dir`] writes the HTML report to.
pub const HTML_FILE: &str = "report.html";
/// The file [`write_dir`] writes the Markdown report to.
pub const MARKDOWN_FILE: &str = "report.md";

/// The HTML template; its `.html` name turns minijinja's auto-escaping on.
const HTML_TEMPLATE_NAME: &str = "report.html";
const HTML_TEMPLATE: &str = include_str!("../templates/report.html");

/// `41 passed, 2 failed, 3 not applicable, 0 skipped, 1 informational`, with `, 1 flaky` appended
/// when any case is flaky.
pub fn terminal_summary_line(summary: &Summary) -> String {
    let mut line = format!(
        "{} passed, {} failed, {} not applicable, {} skipped, {} informational",
        summary.passed, summary.failed, summary.not_applicable, summary.skipped, summary.informational
    );
    if summary.flaky > 0 {
        let _ = write!(line, ", {} flaky", summary.flaky);
    }
    line
}

/// Writes `report.json`, `junit.xml`, `report.html` and `report.md` into `dir`, creating it if
/// needed, and returns their paths in that order.
pub fn write_dir(dir: &Path, report: &Report) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        (JSON_FILE, report.to_json_pretty()),
        (JUNIT_FILE, junit(report)),
        (HTML_FILE, html(report)),
        (MARKDOWN_FILE, markdown(report)),
    ];
    let mut paths = Vec::with_capacity(files.len());
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        paths.push(path);
    }
    Ok(paths)
}

/// The cases grouped by area, areas in order of first appearance, cases in report order, each
/// with its position in the report.
fn areas(cases: &[Case]) -> Vec<(&str, Vec<(usize, &Case)>)> {
    let mut areas: Vec<(&str, Vec<(usize, &Case)>)> = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        match areas.iter_mut().find(|(area, _)| *area == case.area()) {
            Some((_, members)) => members.push((index, case)),
            None => areas.push((case.area(), vec![(index, case)])),
        }
    }
    areas
}

/// A trace as aligned text lines: time, who, direction, what; raw bytes on an indented line below.
fn trace_text(trace: &[TraceLine]) -> String {
    let at_width = trace.iter().map(|line| line.at.chars().count()).max().unwrap_or(0);
    let who_width = trace.iter().map(|line| line.who.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for line in trace {
        let row = format!(
            "{:>at_width$}  {:<who_width$}  {:<2}  {}",
            line.at, line.who, line.direction, line.what
        );
        text.push_str(row.trim_end());
        text.push('\n');
        if let Some(raw_hex) = &line.raw_hex {
            let _ = writeln!(text, "{:at_width$}  {raw_hex}", "");
        }
    }
    text
}

/// `12 ms` below a second, `1.234 s` above.
fn duration_text(duration_ms: u64) -> String {
    if duration_ms < 1_000 {
        format!("{duration_ms} ms")
    } else {
        format!("{}.{:03} s", duration_ms / 1_000, duration_ms % 1_000)
    }
}

/// The evidence of a case as plain text: statements, message, expected/actual, notes, rerun
/// command, trace. Shared by the JUnit failure text.
fn evidence_text(case: &Case) -> String {
    let mut text = String::new();
    if !case.title.is_empty() {
        let _ = writeln!(text, "{}", case.title);
    }
    if !case.statements.is_empty() {
        let _ = writeln!(text, "statements: {}", case.statements.join(", "));
    }
    if !case.evidence.message.is_empty() {
        let _ = writeln!(text, "message: {}", case.evidence.message);
    }
    if let Some(expected) = &case.evidence.expected {
        let _ = writeln!(text, "expected: {expected}");
    }
    if let Some(actual) = &case.evidence.actual {
        let _ = writeln!(text, "actual: {actual}");
    }
    for note in &case.evidence.notes {
        let _ = writeln!(text, "note: {note}");
    }
    if case.flaky {
        let _ = writeln!(text, "flaky: repeated runs of this case got different verdicts");
    }
    if !case.command.is_empty() {
        let _ = writeln!(text, "rerun: {}", case.command);
    }
    if !case.evidence.trace.is_empty() {
        let _ = writeln!(text, "trace:\n{}", trace_text(&case.evidence.trace));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// JUnit XML

/// The report as JUnit XML: one `<testsuite>` per area, one `<testcase>` per case.
///
/// A failure carries the evidence message as its `message` and the whole evidence (statements,
/// expected/actual, rerun command, trace) as its text; not-applicable and skipped cases are
/// `<skipped>` with the reason; informational cases pass, with their notes in `<system-out>`.
///
/// # Panics
///
/// Never in practice: the XML is written into memory, which cannot fail, and quick-junit strips the
/// characters XML cannot hold.
pub fn junit(report: &Report) -> String {
    let mut junit = quick_junit::Report::new(format!("{} {}", report.tool.name, report.kind));
    junit.set_time(Duration::from_millis(
        report.cases.iter().map(|case| case.duration_ms).sum(),
    ));
    for (area, cases) in areas(&report.cases) {
        let mut suite = TestSuite::new(area);
        suite.add_property(Property::new("target", &report.target));
        suite.add_property(Property::new("started_at", &report.started_at));
        suite.add_property(Property::new(
            "tool",
            format!("{} {}", report.tool.name, report.tool.version),
        ));
        suite.set_time(Duration::from_millis(
            cases.iter().map(|(_, case)| case.duration_ms).sum(),
        ));
        for (_, case) in cases {
            suite.add_test_case(junit_case(case));
        }
        junit.add_test_suite(suite);
    }
    junit
        .to_string()
        .expect("JUnit XML is written into memory, which cannot fail")
}

fn junit_case(case: &Case) -> TestCase {
    let status = match case.verdict {
        Verdict::Pass | Verdict::Informational => TestCaseStatus::success(),
        Verdict::Fail => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let message = if case.evidence.message.is_empty() {
                "failed"
            } else {
                &case.evidence.message
            };
            status.set_message(message);
            if !case.statements.is_empty() {
                status.set_type(case.statements.join(", "));
            }
            status.set_description(evidence_text(case));
            status
        }
        Verdict::NotApplicable | Verdict::Skipped => {
            let mut status = TestCaseStatus::skipped();
            let reason = if case.evidence.message.is_empty() {
                case.verdict.label().to_owned()
            } else {
                format!("{}: {}", case.verdict.label(), case.evidence.message)
            };
            status.set_message(reason);
            status.set_type(case.verdict.as_str());
            status
        }
    };
    let mut test_case = TestCase::new(case.label(), status);
    test_case.set_classname(case.area());
    test_case.set_time(Duration::from_millis(case.duration_ms));
    if matches!(case.verdict, Verdict::Pass | Verdict::Informational) {
        let mut out = String::new();
        if !case.evidence.message.is_empty() {
            let _ = writeln!(out, "{}", case.evidence.message);
        }
        for note in &case.evidence.notes {
            let _ = writeln!(out, "note: {note}");
        }
        if case.flaky {
            let _ = writeln!(out, "flaky: repeated runs of this case got different verdicts");
        }
        if !out.is_empty() {
            test_case.set_system_out(out);
        }
    }
    test_case
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// A table cell: one line, with `|` escaped so it does not end the cell.
fn cell(text: &str) -> String {
    text.replace(['\r', '\n'], " ").replace('|', "\\|")
}

/// A fenced code block whose fence is longer than any backtick run inside, so that evidence
/// cannot close it early.
fn code_block(out: &mut String, language: &str, text: &str) {
    let mut longest_run = 0;
    let mut run = 0;
    for character in text.chars() {
        run = if character == '`' { run + 1 } else { 0 };
        longest_run = longest_run.max(run);
    }
    let fence = "`".repeat(longest_run.max(2) + 1);
    let _ = writeln!(out, "{fence}{language}\n{}\n{fence}\n", text.trim_end_matches('\n'));
}

/// The report as Markdown: a title, a summary table, a table per area, then the failures with
/// their evidence, rerun command and trace.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} {}: {}\n",
        report.tool.name,
        report.kind,
        report.target.replace('\n', " ")
    );
    let _ = writeln!(
        out,
        "Started {}, {} {}, schema version {}.\n",
        report.started_at, report.tool.name, report.tool.version, report.schema_version
    );

    out.push_str("| verdict | cases |\n|---|---:|\n");
    for verdict in Verdict::ALL {
        let _ = writeln!(
            out,
            "| {} | {} |",
            summary_label(verdict),
            report.summary.count(verdict)
        );
    }
    if report.summary.flaky > 0 {
        let _ = writeln!(out, "| flaky | {} |", report.summary.flaky);
    }
    let _ = writeln!(out, "| **total** | **{}** |\n", report.summary.total());

    if !report.parameters.is_empty() {
        out.push_str("## Parameters\n\n| parameter | value |\n|---|---|\n");
        for (key, value) in &report.parameters {
            let _ = writeln!(
                out,
                "| {} | `{}` |",
                cell(key),
                cell(&value.to_string()).replace('`', "'")
            );
        }
        out.push('\n');
    }

    for (area, cases) in areas(&report.cases) {
        let _ = writeln!(
            out,
            "## {area}\n\n| case | version | verdict | seed | duration |\n|---|---|---|---:|---:|"
        );
        for (_, case) in cases {
            let verdict = if case.flaky {
                format!("{} (flaky)", case.verdict.label())
            } else {
                case.verdict.label().to_owned()
            };
            let seed = case.seed.map(|seed| seed.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&case.id),
                cell(&case.version),
                verdict,
                seed,
                duration_text(case.duration_ms)
            );
        }
        out.push('\n');
    }

    let failures: Vec<&Case> = report
        .cases
        .iter()
        .filter(|case| case.verdict == Verdict::Fail)
        .collect();
    if !failures.is_empty() {
        out.push_str("## Failures\n\n");
        for case in failures {
            markdown_failure(&mut out, case);
        }
    }

    if !report.extra.is_empty() {
        let sections: Vec<&str> = report.extra.keys().map(String::as_str).collect();
        let _ = writeln!(out, "Other sections in report.json: {}.", sections.join(", "));
    }
    out
}

fn markdown_failure(out: &mut String, case: &Case) {
    let _ = writeln!(out, "### {}\n", case.label().replace('\n', " "));
    if !case.title.is_empty() {
        let _ = writeln!(out, "{}\n", case.title);
    }
    if !case.statements.is_empty() {
        let _ = writeln!(out, "- statements: {}", case.statements.join(", "));
    }
    if !case.evidence.message.is_empty() {
        let _ = writeln!(out, "- message: {}", case.evidence.message);
    }
    if let Some(expected) = &case.evidence.expected {
        let _ = writeln!(out, "- expected: {expected}");
    }
    if let Some(actual) = &case.evidence.actual {
        let _ = writeln!(out, "- actual: {actual}");
    }
    for note in &case.evidence.notes {
        let _ = writeln!(out, "- note: {note}");
    }
    if case.flaky {
        out.push_str("- flaky: repeated runs of this case got different verdicts\n");
    }
    out.push('\n');
    if !case.command.is_empty() {
        out.push_str("Rerun:\n\n");
        code_block(out, "sh", &case.command);
    }
    if !case.evidence.trace.is_empty() {
        out.push_str("Trace:\n\n");
        code_block(out, "text", &trace_text(&case.evidence.trace));
    }
}

// ---------------------------------------------------------------------------------------------
// HTML

/// What the HTML template sees. Everything is computed here, so the template only lays out.
#[derive(Serialize)]
struct HtmlView<'a> {
    title: String,
    started_at: &'a str,
    tool: &'a Tool,
    schema_version: u32,
    flaky: u64,
    summary_line: String,
    badges: Vec<Badge>,
    charts: Vec<BarChart>,
    parameters: Vec<(String, String)>,
    areas: Vec<HtmlArea<'a>>,
    failures: Vec<HtmlCase<'a>>,
    extra: Vec<(String, String)>,
}

#[derive(Serialize)]
struct Badge {
    class: &'static str,
    label: &'static str,
    count: u64,
}

#[derive(Serialize)]
struct HtmlArea<'a> {
    name: &'a str,
    cases: Vec<HtmlCase<'a>>,
}

/// The fields of a case the template shows, listed one by one rather than serializing the case:
/// its JSON form leaves out absent values (which the template, strict about undefined values,
/// needs present as `none`) and carries the trace, which the template takes as text.
#[derive(Serialize)]
struct HtmlCase<'a> {
    id: &'a str,
    version: &'a str,
    title: &'a str,
    statements: &'a [String],
    flaky: bool,
    command: &'a str,
    label: String,
    verdict_class: &'static str,
    verdict_label: &'static str,
    duration: String,
    seed: Option<u64>,
    message: &'a str,
    expected: Option<&'a str>,
    actual: Option<&'a str>,
    notes: &'a [String],
    /// The id of its failure details, to link the table row to them; empty when not a failure.
    anchor: String,
    trace: String,
}

/// A horizontal bar chart drawn as inline SVG by the template: one bar per row, lengths scaled to
/// the largest value. Later sections (benchmark figures) add charts to the same list.
#[derive(Serialize)]
struct BarChart {
    title: String,
    width: u32,
    height: u32,
    /// Where every bar starts; the labels sit left of it.
    bar_x: u32,
    bars: Vec<Bar>,
}

#[derive(Serialize)]
struct Bar {
    class: &'static str,
    label: String,
    value: String,
    /// The baseline of the label and value texts.
    text_y: u32,
    /// The top of the bar.
    bar_y: u32,
    bar_height: u32,
    length: u32,
    /// Where the value is written, just right of the bar's end.
    value_x: u32,
}

const CHART_LABEL_WIDTH: u32 = 120;
const CHART_BAR_WIDTH_MAX: u32 = 300;
const CHART_ROW_HEIGHT: u32 = 22;

fn bar_chart(title: &str, rows: &[(&'static str, String, u64)]) -> BarChart {
    let largest = rows.iter().map(|(_, _, value)| *value).max().unwrap_or(0).max(1);
    let bars = rows
        .iter()
        .zip(0u32..)
        .map(|((class, label, value), index)| {
            // u128: the product of a u64 and a u32 cannot overflow it, and the quotient is at
            // most CHART_BAR_WIDTH_MAX.
            let length = u32::try_from(u128::from(*value) * u128::from(CHART_BAR_WIDTH_MAX) / u128::from(largest))
                .unwrap_or(CHART_BAR_WIDTH_MAX);
            let top = index * CHART_ROW_HEIGHT;
            Bar {
                class,
                label: label.clone(),
                value: value.to_string(),
                text_y: top + CHART_ROW_HEIGHT / 2 + 4,
                bar_y: top + 3,
                bar_height: CHART_ROW_HEIGHT - 6,
                length,
                value_x: CHART_LABEL_WIDTH + length + 6,
            }
        })
        .collect::<Vec<_>>();
    let rows_count = u32::try_from(bars.len()).unwrap_or(u32::MAX);
    BarChart {
        title: title.to_owned(),
        width: CHART_LABEL_WIDTH + CHART_BAR_WIDTH_MAX + 60,
        height: rows_count.saturating_mul(CHART_ROW_HEIGHT),
        bar_x: CHART_LABEL_WIDTH,
        bars,
    }
}

fn verdict_class(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::NotApplicable => "na",
        Verdict::Skipped => "skip",
        Verdict::Informational => "info",
    }
}

/// How a summary counts a verdict: `2 passed`, `1 not applicable`.
fn summary_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "passed",
        Verdict::Fail => "failed",
        Verdict::NotApplicable => "not applicable",
        Verdict::Skipped => "skipped",
        Verdict::Informational => "informational",
    }
}

fn html_case(case: &Case, index: usize) -> HtmlCase<'_> {
    HtmlCase {
        id: &case.id,
        version: &case.version,
        title: &case.title,
        statements: &case.statements,
        flaky: case.flaky,
        command: &case.command,
        label: case.label(),
        verdict_class: verdict_class(case.verdict),
        verdict_label: case.verdict.label(),
        duration: duration_text(case.duration_ms),
        seed: case.seed,
        message: &case.evidence.message,
        expected: case.evidence.expected.as_deref(),
        actual: case.evidence.actual.as_deref(),
        notes: &case.evidence.notes,
        anchor: if case.verdict == Verdict::Fail {
            format!("failure-{index}")
        } else {
            String::new()
        },
        trace: trace_text(&case.evidence.trace),
    }
}

/// The report as one self-contained HTML file: inline CSS, inline SVG, no scripts, no external
/// links, so that it can be attached to a CI run or mailed and still open. Every value from the
/// report is escaped by minijinja's auto-escaping, since evidence holds whatever a broker sent.
///
/// # Panics
///
/// Never in practice: the template is embedded and the tests render it with every verdict and
/// every optional field; a template error is a bug in this crate.
pub fn html(report: &Report) -> String {
    let mut environment = minijinja::Environment::new();
    // Strict: a misspelt field in the template fails the tests instead of rendering as nothing.
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    environment
        .add_template(HTML_TEMPLATE_NAME, HTML_TEMPLATE)
        .expect("the embedded HTML template parses");
    let template = environment
        .get_template(HTML_TEMPLATE_NAME)
        .expect("the embedded HTML template was just added");

    let badges: Vec<Badge> = Verdict::ALL
        .iter()
        .map(|verdict| Badge {
            class: verdict_class(*verdict),
            label: summary_label(*verdict),
            count: report.summary.count(*verdict),
        })
        .collect();
    let chart_rows: Vec<(&'static str, String, u64)> = badges
        .iter()
        .map(|badge| (badge.class, badge.label.to_owned(), badge.count))
        .collect();
    let view = HtmlView {
        started_at: &report.started_at,
        tool: &report.tool,
        schema_version: report.schema_version,
        flaky: report.summary.flaky,
        title: format!("{} {}: {}", report.tool.name, report.kind, report.target),
        summary_line: terminal_summary_line(&report.summary),
        badges,
        charts: vec![bar_chart("Verdicts", &chart_rows)],
        parameters: report
            .parameters
            .iter()
            .map(|(key, value)| (key.clone(), value.to_string()))
            .collect(),
        areas: areas(&report.cases)
            .into_iter()
            .map(|(name, cases)| HtmlArea {
                name,
                cases: cases.into_iter().map(|(index, case)| html_case(case, index)).collect(),
            })
            .collect(),
        failures: report
            .cases
            .iter()
            .enumerate()
            .filter(|(_, case)| case.verdict == Verdict::Fail)
            .map(|(index, case)| html_case(case, index))
            .collect(),
        extra: report
            .extra
            .iter()
            .map(|(key, value)| {
                (
                    key.clone(),
                    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()),
                )
            })
            .collect(),
    };
    template
        .render(minijinja::Value::from(minijinja::value::Serde(&view)))
        .expect("the embedded HTML template renders every report")
}
