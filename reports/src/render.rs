//! Renderings of a [`Report`]: JUnit XML for CI, Markdown for pull requests and job summaries, one
//! self-contained HTML file for people, a one-line summary for terminals, and [`write_dir`] that
//! writes them all beside `report.json`.
//!
//! Every rendering groups cases by area (the case id up to its first `/`), in the order the areas
//! first appear in the report, and names a case `id [version]` plus ` seed N` when it has a seed,
//! so that the same case run for both protocol versions or several seeds stays apart. Every
//! rendering is a pure function of the report: the same report gives the same bytes.
//!
//! The line charts a command puts in its report ([`Report::charts`]) are drawn in HTML as inline
//! SVG and listed in Markdown as tables; charts that cannot be read cost a note in their place,
//! never the rendering. The terminal line does not show them.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::model::{Case, Chart, Report, Scale, Summary, Tool, TraceLine, Verdict, CHARTS_KEY};

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

/// The report as Markdown: a title, a summary table, the parameters, the charts (a table each,
/// long series sampled), a table per area, then the failures with their evidence, rerun command
/// and trace.
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

    match report.charts() {
        Ok(charts) if charts.is_empty() => {}
        Ok(charts) => {
            out.push_str("## Charts\n\n");
            for chart in &charts {
                markdown_chart(&mut out, chart);
            }
        }
        Err(problem) => {
            let _ = writeln!(
                out,
                "## Charts\n\nThe charts in report.json cannot be drawn: {}\n",
                problem.replace('\n', " ")
            );
        }
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

    let sections: Vec<&str> = other_sections(report).map(|(key, _)| key.as_str()).collect();
    if !sections.is_empty() {
        let _ = writeln!(out, "Other sections in report.json: {}.", sections.join(", "));
    }
    out
}

/// At most this many points of a series are listed in Markdown: the table is for a quick look in a
/// pull request; the figure in report.html and the numbers in report.json hold them all.
const MARKDOWN_ROWS_PER_SERIES_MAX: usize = 12;

/// The positions of `count` points to list: all of them, or [`MARKDOWN_ROWS_PER_SERIES_MAX`]
/// evenly spaced ones from the first to the last.
fn listed_points(count: usize) -> Vec<usize> {
    if count <= MARKDOWN_ROWS_PER_SERIES_MAX {
        return (0..count).collect();
    }
    (0..MARKDOWN_ROWS_PER_SERIES_MAX)
        .map(|row| row * (count - 1) / (MARKDOWN_ROWS_PER_SERIES_MAX - 1))
        .collect()
}

/// A value in a table: six significant digits, no trailing zeros (`1002`, `99.999`, `0.125`);
/// scientific notation for values too large or too small for that.
fn value_text(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs().log10().floor();
    if !(-6.0..15.0).contains(&magnitude) {
        return format!("{value:e}");
    }
    let decimals = (5.0 - magnitude).max(0.0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// One chart as a table of series name, x and y, with a note under it for each series listed only
/// in part.
fn markdown_chart(out: &mut String, chart: &Chart) {
    let _ = writeln!(out, "### {}\n", chart.title.replace(['\r', '\n'], " "));
    if chart.series.iter().all(|series| series.points.is_empty()) {
        out.push_str("No data.\n\n");
        return;
    }
    let _ = writeln!(
        out,
        "| series | {} | {} |\n|---|---:|---:|",
        if chart.x_label.is_empty() {
            "x".to_owned()
        } else {
            cell(&chart.x_label)
        },
        if chart.y_label.is_empty() {
            "y".to_owned()
        } else {
            cell(&chart.y_label)
        }
    );
    let mut sampled = Vec::new();
    for series in &chart.series {
        let name = cell(&series.name);
        if series.points.is_empty() {
            let _ = writeln!(out, "| {name} | no data | |");
            continue;
        }
        let listed = listed_points(series.points.len());
        if listed.len() < series.points.len() {
            sampled.push(format!(
                "{name} shows {} of its {} points",
                listed.len(),
                series.points.len()
            ));
        }
        for index in listed {
            let (x, y) = series.points[index];
            let _ = writeln!(out, "| {name} | {} | {} |", value_text(x), value_text(y));
        }
    }
    out.push('\n');
    if !sampled.is_empty() {
        let _ = writeln!(
            out,
            "A sample: {}, evenly spaced from the first to the last; report.json holds them all.\n",
            sampled.join("; ")
        );
    }
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
    figures: Vec<Figure>,
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

/// One figure of the summary, in the order the template draws them: the verdict bar chart, then
/// the line charts of the report ([`Report::charts`]), each as inline SVG.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Figure {
    Bar(BarChart),
    Line(LineChart),
    /// A chart with no points, or charts that could not be read: a short note in its place.
    Note {
        title: String,
        note: String,
    },
}

/// A horizontal bar chart drawn as inline SVG by the template: one bar per row, lengths scaled to
/// the largest value.
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

/// A line chart drawn as inline SVG by the template, every coordinate computed here: a plot area
/// with ticks and grid lines, axis labels, one polyline per series, and a legend below.
#[derive(Serialize)]
struct LineChart {
    title: String,
    x_label: String,
    y_label: String,
    width: u32,
    height: u32,
    plot_left: u32,
    plot_right: u32,
    plot_top: u32,
    plot_bottom: u32,
    x_ticks: Vec<Tick>,
    y_ticks: Vec<Tick>,
    /// Where the x tick marks end and their labels' baseline.
    x_tick_mark_end: u32,
    x_tick_text_y: u32,
    /// Where the y tick labels end (they are right-aligned there).
    y_tick_text_x: u32,
    x_label_x: u32,
    x_label_y: u32,
    /// The y label is written rotated by -90 degrees around this point.
    y_label_x: u32,
    y_label_y: u32,
    /// Where the legend's line samples start and end, and where its names start.
    legend_line_end: u32,
    legend_text_x: u32,
    series: Vec<LineSeries>,
}

/// A tick of an axis: where it sits (a pixel coordinate, as text) and its label.
#[derive(Serialize)]
struct Tick {
    at: String,
    label: String,
}

#[derive(Serialize)]
struct LineSeries {
    name: String,
    colour: &'static str,
    /// A `stroke-dasharray`, or empty for a solid line: series past the palette's end are dashed
    /// so that they stay apart from the ones sharing their colour.
    dash: &'static str,
    /// The polyline's `points`: `x,y x,y ...`; empty when the series has no points.
    points: String,
    /// Dots on the points, drawn for short series (a percentile spectrum has a handful of points,
    /// and a series of one point draws no line).
    markers: Vec<(String, String)>,
    /// The baseline of its legend row.
    legend_y: u32,
}

const LINE_CHART_WIDTH: u32 = 640;
const PLOT_LEFT: u32 = 72;
/// Room to the right for the last x tick's label, which is centred on the plot's edge.
const PLOT_RIGHT: u32 = 604;
const PLOT_TOP: u32 = 12;
const PLOT_BOTTOM: u32 = 252;
const LEGEND_ROW_HEIGHT: u32 = 18;
/// From the plot's bottom to the first legend row: tick labels, then the x label, then the legend.
const LEGEND_OFFSET: u32 = 62;
/// Roughly how many ticks a value axis gets; the step is rounded, so it gets 4 to 7.
const TICKS_WANTED: f64 = 5.0;
/// A bound on the ticks of a value axis, whatever the rounding does.
const TICKS_MAX: usize = 20;
/// At most this many points of a series are drawn: a long run at a fine interval would make the
/// page megabytes of coordinates no screen can show. Longer series are thinned to the lowest and
/// the highest point of each of `POINTS_DRAWN_MAX / 2` runs of neighbours, which keeps the dips
/// and spikes a reader looks for.
const POINTS_DRAWN_MAX: usize = 1_000;
/// Series with at most this many points get a dot on each.
const MARKED_POINTS_MAX: usize = 40;
/// The percentile ticks of [`Scale::Percentile`], each a power of ten further into the tail.
const PERCENTILE_TICKS: [f64; 6] = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999];
/// How far past the largest other percentile the maximum (100) is drawn, in powers of ten: half
/// a decade, far enough to stand apart, near enough not to look like a tick of its own.
const PERCENTILE_MAXIMUM_GAP: f64 = 0.5;
/// Line colours, from the Okabe-Ito palette, which colour-blind readers can tell apart.
const SERIES_COLOURS: [&str; 7] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
];

/// Where a percentile lies on the spectrum axis, log10(1 / (1 - p/100)): 0 for 0, 1 for 90, 2 for
/// 99, 3 for 99.9. `None` for 100 (and for anything so close that `1 - p/100` rounds to 0), which
/// lies at infinity.
fn percentile_position(percentile: f64) -> Option<f64> {
    let remaining = 1.0 - percentile.clamp(0.0, 100.0) / 100.0;
    (remaining > 0.0).then(|| -remaining.log10())
}

/// How an axis turns a value into a position along it.
enum Placement {
    /// The value is the position.
    Proportional,
    /// The value is a percentile, placed by [`percentile_position`]; the maximum at `maximum_at`.
    Percentile { maximum_at: f64 },
}

/// One axis: the positions it spans, its ticks (position, label), and its placement of values.
struct Axis {
    low: f64,
    high: f64,
    ticks: Vec<(f64, String)>,
    placement: Placement,
}

impl Axis {
    /// How far along the axis `value` lies, 0 at `low` and 1 at `high`.
    fn fraction(&self, value: f64) -> f64 {
        let position = match self.placement {
            Placement::Proportional => value,
            Placement::Percentile { maximum_at } => percentile_position(value).unwrap_or(maximum_at),
        };
        fraction_between(self.low, self.high, position)
    }
}

/// How far `position` lies from `low` to `high`. Halved first, so that a span wider than the
/// largest f64 (from -1e308 to 1e308) does not overflow to infinity; a span so small that it
/// vanishes when halved (between subnormal numbers) gives 0 rather than NaN.
fn fraction_between(low: f64, high: f64, position: f64) -> f64 {
    let fraction = (position / 2.0 - low / 2.0) / (high / 2.0 - low / 2.0);
    if fraction.is_finite() {
        fraction
    } else {
        0.0
    }
}

/// A round step, 1, 2, 2.5 or 5 times a power of ten, that cuts `span` into about
/// [`TICKS_WANTED`] pieces; `None` when the span is too large or too small for one.
fn nice_step(span: f64) -> Option<f64> {
    let rough = span / TICKS_WANTED;
    let magnitude = 10f64.powf(rough.log10().floor());
    let mantissa = rough / magnitude;
    let round = if mantissa <= 1.0 {
        1.0
    } else if mantissa <= 2.0 {
        2.0
    } else if mantissa <= 2.5 {
        2.5
    } else if mantissa <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = round * magnitude;
    (step.is_finite() && step > 0.0).then_some(step)
}

/// A value axis over `low..=high` (`low < high`), with ticks at multiples of a round step. With
/// `round_ends`, the ends move out to the nearest multiples, as the y axis's "nice maximum".
fn value_axis(low: f64, high: f64, round_ends: bool) -> Axis {
    let (divisor, suffix) = unit_for(low.abs().max(high.abs()));
    let Some(step) = nice_step(high - low) else {
        // No round step: the ends alone, as they are.
        return Axis {
            low,
            high,
            ticks: vec![
                (low, tick_text(low, None, divisor, suffix)),
                (high, tick_text(high, None, divisor, suffix)),
            ],
            placement: Placement::Proportional,
        };
    };
    let (low, high) = if round_ends {
        let rounded = ((low / step).floor() * step, (high / step).ceil() * step);
        if rounded.0.is_finite() && rounded.1.is_finite() {
            rounded
        } else {
            (low, high)
        }
    } else {
        (low, high)
    };
    let first = (low / step).ceil() * step;
    let ticks = (0..TICKS_MAX)
        .map(|index| first + index as f64 * step)
        .take_while(|value| *value <= high + step * 1e-9)
        // A tick a rounding error away from 0 is 0, not `-0.0` or `0.000001`.
        .map(|value| if (value / step).abs() < 1e-9 { 0.0 } else { value })
        .map(|value| (value, tick_text(value, Some(step), divisor, suffix)))
        .collect();
    Axis {
        low,
        high,
        ticks,
        placement: Placement::Proportional,
    }
}

/// Thousands (`k`), millions (`M`) or billions (`G`) for an axis reaching `largest`, so that tick
/// labels stay short: `250k` rather than `250000`.
fn unit_for(largest: f64) -> (f64, &'static str) {
    if largest >= 1e10 {
        (1e9, "G")
    } else if largest >= 1e7 {
        (1e6, "M")
    } else if largest >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// A tick label: `value` in the axis's unit, with as many decimals as the step needs (`0.25`
/// needs two), and zero as `0`. Values beyond the units, or steps too fine for nine decimals, are written in
/// scientific notation.
fn tick_text(value: f64, step: Option<f64>, divisor: f64, suffix: &str) -> String {
    if value == 0.0 {
        // Not `0k` or `0.0`: zero needs no unit and no decimals.
        return "0".to_owned();
    }
    let scaled = value / divisor;
    let decimals = match step {
        Some(step) => {
            let scaled_step = step / divisor;
            (0..=9).find(|decimals| {
                let shifted = scaled_step * 10f64.powi(*decimals);
                (shifted - shifted.round()).abs() < 1e-6 * shifted.abs().max(1.0)
            })
        }
        None => None,
    };
    match decimals {
        Some(decimals) if scaled.abs() < 1e6 => format!("{scaled:.*}{suffix}", decimals as usize),
        _ => format!("{value:.3e}"),
    }
}

/// The x axis of a percentile spectrum: from the smallest percentile to just past the largest,
/// with the ticks of [`PERCENTILE_TICKS`] that lie in that range, and a `max` tick where the
/// maximum is drawn when there is one.
fn percentile_axis(percentiles: &[f64]) -> Axis {
    let finite: Vec<f64> = percentiles
        .iter()
        .filter_map(|percentile| percentile_position(*percentile))
        .collect();
    let has_maximum = finite.len() < percentiles.len();
    let finite_low = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let finite_high = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (finite_low, finite_high) = if finite.is_empty() {
        // Only maxima: no percentile tick belongs to the data, so none is drawn.
        (0.0, f64::NEG_INFINITY)
    } else {
        (finite_low, finite_high)
    };
    let maximum_at = finite_high.max(finite_low) + PERCENTILE_MAXIMUM_GAP;
    let low = finite_low;
    let high = if has_maximum {
        maximum_at
    } else {
        finite_high.max(finite_low)
    };
    // A single percentile: widen to one decade, so that it has an axis to sit on.
    let high = if high > low { high } else { low + 1.0 };
    // Positions such as -log10(1 - 0.999) land a rounding error off their decade.
    let tolerance = 1e-9;
    let mut ticks: Vec<(f64, String)> = PERCENTILE_TICKS
        .iter()
        .filter_map(|percentile| percentile_position(*percentile).map(|position| (position, percentile)))
        .filter(|(position, _)| *position >= finite_low - tolerance && *position <= finite_high + tolerance)
        .map(|(position, percentile)| (position, percentile.to_string()))
        .collect();
    if has_maximum {
        ticks.push((maximum_at, "max".to_owned()));
    }
    Axis {
        low,
        high,
        ticks,
        placement: Placement::Percentile { maximum_at },
    }
}

/// At most [`POINTS_DRAWN_MAX`] points of `points`, in order (see there).
fn points_to_draw(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= POINTS_DRAWN_MAX {
        return points.to_vec();
    }
    let run_count = POINTS_DRAWN_MAX / 2;
    let mut drawn = Vec::with_capacity(POINTS_DRAWN_MAX);
    for run in 0..run_count {
        // Every run holds at least one point, since there are more points than runs.
        let neighbours = &points[run * points.len() / run_count..(run + 1) * points.len() / run_count];
        let mut lowest = 0;
        let mut highest = 0;
        for (index, point) in neighbours.iter().enumerate() {
            if point.1 < neighbours[lowest].1 {
                lowest = index;
            }
            if point.1 > neighbours[highest].1 {
                highest = index;
            }
        }
        drawn.push(neighbours[lowest.min(highest)]);
        if lowest != highest {
            drawn.push(neighbours[lowest.max(highest)]);
        }
    }
    assert!(drawn.len() <= POINTS_DRAWN_MAX, "{} points drawn", drawn.len());
    drawn
}

/// A pixel coordinate as the SVG holds it: one decimal is finer than a screen shows.
fn coordinate(pixel: f64) -> String {
    format!("{pixel:.1}")
}

/// The figure of one chart: a line chart, or a note when it has no point to draw.
fn line_figure(chart: &Chart) -> Figure {
    let xs: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.0))
        .collect();
    let ys: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.1))
        .collect();
    if xs.is_empty() {
        return Figure::Note {
            title: chart.title.clone(),
            note: "No data.".to_owned(),
        };
    }
    let x_axis = match chart.x_scale {
        Scale::Linear => {
            let low = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let high = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if high > low {
                value_axis(low, high, false)
            } else {
                // One x value: centre it on an axis of its own size (or of 1 around 0).
                let pad = (low.abs() / 2.0).max(0.5);
                value_axis(low - pad, low + pad, false)
            }
        }
        Scale::Percentile => percentile_axis(&xs),
    };
    // y from 0 (or below, for negative values) to a round maximum.
    let y_low = ys.iter().copied().fold(0.0, f64::min);
    let y_high = ys.iter().copied().fold(0.0, f64::max);
    let y_axis = value_axis(y_low, if y_high > y_low { y_high } else { y_low + 1.0 }, true);

    let plot_width = f64::from(PLOT_RIGHT - PLOT_LEFT);
    let plot_height = f64::from(PLOT_BOTTOM - PLOT_TOP);
    let x_pixel = |fraction: f64| f64::from(PLOT_LEFT) + fraction * plot_width;
    let y_pixel = |fraction: f64| f64::from(PLOT_BOTTOM) - fraction * plot_height;
    let series: Vec<LineSeries> = chart
        .series
        .iter()
        .zip(0u32..)
        .map(|(series, index)| {
            let pixels: Vec<(String, String)> = points_to_draw(&series.points)
                .iter()
                .map(|(x, y)| {
                    (
                        coordinate(x_pixel(x_axis.fraction(*x))),
                        coordinate(y_pixel(y_axis.fraction(*y))),
                    )
                })
                .collect();
            let palette_index = index as usize % SERIES_COLOURS.len();
            LineSeries {
                name: series.name.clone(),
                colour: SERIES_COLOURS[palette_index],
                dash: if index as usize >= SERIES_COLOURS.len() {
                    "6 3"
                } else {
                    ""
                },
                points: pixels
                    .iter()
                    .map(|(x, y)| format!("{x},{y}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                markers: if pixels.len() <= MARKED_POINTS_MAX {
                    pixels
                } else {
                    Vec::new()
                },
                legend_y: PLOT_BOTTOM + LEGEND_OFFSET + index.saturating_mul(LEGEND_ROW_HEIGHT),
            }
        })
        .collect();
    let series_count = u32::try_from(series.len()).unwrap_or(u32::MAX);
    Figure::Line(LineChart {
        title: chart.title.clone(),
        x_label: chart.x_label.clone(),
        y_label: chart.y_label.clone(),
        width: LINE_CHART_WIDTH,
        height: (PLOT_BOTTOM + LEGEND_OFFSET - LEGEND_ROW_HEIGHT / 2)
            .saturating_add(series_count.saturating_mul(LEGEND_ROW_HEIGHT)),
        plot_left: PLOT_LEFT,
        plot_right: PLOT_RIGHT,
        plot_top: PLOT_TOP,
        plot_bottom: PLOT_BOTTOM,
        x_ticks: x_axis
            .ticks
            .iter()
            .map(|(position, label)| Tick {
                at: coordinate(x_pixel(fraction_between(x_axis.low, x_axis.high, *position))),
                label: label.clone(),
            })
            .collect(),
        y_ticks: y_axis
            .ticks
            .iter()
            .map(|(position, label)| Tick {
                at: coordinate(y_pixel(fraction_between(y_axis.low, y_axis.high, *position))),
                label: label.clone(),
            })
            .collect(),
        x_tick_mark_end: PLOT_BOTTOM + 5,
        x_tick_text_y: PLOT_BOTTOM + 18,
        y_tick_text_x: PLOT_LEFT - 6,
        x_label_x: (PLOT_LEFT + PLOT_RIGHT) / 2,
        x_label_y: PLOT_BOTTOM + 38,
        y_label_x: 16,
        y_label_y: (PLOT_TOP + PLOT_BOTTOM) / 2,
        legend_line_end: PLOT_LEFT + 24,
        legend_text_x: PLOT_LEFT + 30,
        series,
    })
}

/// The figures of the report's charts, or one note saying why they cannot be drawn.
fn chart_figures(report: &Report) -> Vec<Figure> {
    match report.charts() {
        Ok(charts) => charts.iter().map(line_figure).collect(),
        Err(problem) => vec![Figure::Note {
            title: "Charts".to_owned(),
            note: format!("The charts in report.json cannot be drawn: {problem}"),
        }],
    }
}

/// The sections of `extra` that renderings list as such: all but the charts when they are drawn.
fn other_sections(report: &Report) -> impl Iterator<Item = (&String, &serde_json::Value)> {
    let charts_drawn = report.charts().is_ok();
    report
        .extra
        .iter()
        .filter(move |(key, _)| !(charts_drawn && key.as_str() == CHARTS_KEY))
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

/// The report as one self-contained HTML file: inline CSS, inline SVG (the verdict bar chart and
/// the report's line charts), no scripts, no external links, so that it can be attached to a CI
/// run or mailed and still open. Every value from the
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
        figures: std::iter::once(Figure::Bar(bar_chart("Verdicts", &chart_rows)))
            .chain(chart_figures(report))
            .collect(),
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
        extra: other_sections(report)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_ticks_lie_one_power_of_ten_apart_and_the_maximum_at_no_finite_place() {
        for (index, percentile) in PERCENTILE_TICKS.iter().enumerate() {
            let position = percentile_position(*percentile).expect("finite below 100");
            assert!((position - index as f64).abs() < 1e-9, "{percentile} at {position}");
        }
        assert_eq!(percentile_position(100.0), None);
        assert_eq!(percentile_position(99.999_999_999_999_999), None, "rounds to 100");
    }

    #[test]
    fn a_long_series_is_thinned_to_its_bound_and_keeps_its_dips_and_spikes() {
        // Goal: thinning keeps what a reader looks for. Method: a flat series of 100,000 points
        // with one dip and one spike, each a single point.
        let mut points: Vec<(f64, f64)> = (0..100_000).map(|index| (f64::from(index), 50.0)).collect();
        points[31_337].1 = 0.0;
        points[77_777].1 = 100.0;
        let drawn = points_to_draw(&points);
        assert!(drawn.len() <= POINTS_DRAWN_MAX, "{}", drawn.len());
        assert!(drawn.contains(&(31_337.0, 0.0)), "the dip is drawn");
        assert!(drawn.contains(&(77_777.0, 100.0)), "the spike is drawn");
        assert!(drawn.windows(2).all(|pair| pair[0].0 < pair[1].0), "in order");
        assert_eq!(
            points_to_draw(&points[..POINTS_DRAWN_MAX]),
            points[..POINTS_DRAWN_MAX],
            "short series whole"
        );
    }

    #[test]
    fn tick_labels_carry_the_decimals_and_unit_their_axis_needs() {
        let labels = |low, high| -> Vec<String> {
            value_axis(low, high, true)
                .ticks
                .into_iter()
                .map(|tick| tick.1)
                .collect()
        };
        assert_eq!(labels(0.0, 1004.0), ["0", "250", "500", "750", "1000", "1250"]);
        assert_eq!(labels(0.0, 1.0), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(labels(0.0, 1.1), ["0", "0.25", "0.50", "0.75", "1.00", "1.25"]);
        assert_eq!(labels(0.0, 123_456.0), ["0", "25k", "50k", "75k", "100k", "125k"]);
        assert_eq!(labels(-3.5, 2.0), ["-4", "-2", "0", "2"]);
    }

    #[test]
    fn table_values_keep_six_significant_digits_and_drop_trailing_zeros() {
        assert_eq!(value_text(1002.0), "1002");
        assert_eq!(value_text(99.999), "99.999");
        assert_eq!(value_text(0.125), "0.125");
        assert_eq!(value_text(123.456_789), "123.457");
        assert_eq!(value_text(0.0), "0");
        assert_eq!(value_text(-2.5), "-2.5");
        assert_eq!(value_text(1.5e-7), "1.5e-7");
    }
}
