//! The result model: one versioned JSON document per run of a command.
//!
//! Every command (`check`, `sim`, `run`, `bench`) fills the same [`Report`]: a list of [`Case`]s,
//! each with its [`Verdict`] and [`Evidence`], and a [`Summary`] of the verdicts. Evidence arrives
//! already rendered as text (times, directions, packet summaries, raw bytes as hex), so this model
//! needs no codec and any tool can read it.
//!
//! The JSON form is the contract with other tools: field names and enum spellings here are part of
//! schema version [`SCHEMA_VERSION`]. A change that an older reader would misread bumps it, and
//! [`Report::from_json`] refuses any version but its own instead of guessing.
//!
//! A command that measures (bench) adds line [`Chart`]s under the `charts` key of
//! [`Report::extra`] ([`Report::set_charts`]); the renderings draw them ([`Report::charts`]), so
//! that this crate draws figures without knowing the command that computed them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The version of the JSON document this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The name written in [`Tool::name`] by [`Report::new`].
pub const TOOL_NAME: &str = "mqtt-harness";

/// Which command produced a report. Reports of different kinds do not merge, and an expectations
/// file describes one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `mqtt-harness check`: the conformance catalog against a broker.
    Check,
    /// `mqtt-harness sim`: scenarios in simulation, over seeds.
    Sim,
    /// `mqtt-harness run`: scenarios against a live broker, faults through the proxy.
    Run,
    /// `mqtt-harness bench`: load generation.
    Bench,
}

impl Kind {
    /// The spelling used in JSON, in expectation files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::Sim => "sim",
            Kind::Run => "run",
            Kind::Bench => "bench",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The broker did what the statements require.
    Pass,
    /// The broker broke a statement; the evidence says how.
    Fail,
    /// The case does not apply: the broker does not offer what it tests (said so in CONNACK, or
    /// the case needs a protocol version the broker refuses).
    NotApplicable,
    /// The case was not run (filtered out, or a prerequisite failed).
    Skipped,
    /// Nothing to judge, something to know: SHOULD/MAY-level behaviour, measured values.
    Informational,
}

impl Verdict {
    /// Every verdict, in the order reports list them.
    pub const ALL: [Verdict; 5] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::NotApplicable,
        Verdict::Skipped,
        Verdict::Informational,
    ];

    /// The spelling used in JSON and in expectation files (`not_applicable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => "not_applicable",
            Verdict::Skipped => "skipped",
            Verdict::Informational => "informational",
        }
    }

    /// The spelling for people (`not applicable`).
    pub fn label(self) -> &'static str {
        match self {
            Verdict::NotApplicable => "not applicable",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The program that wrote a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// Normally [`TOOL_NAME`]; another tool writing this schema puts its own name here.
    pub name: String,
    /// The writer's version, e.g. `0.1.0`.
    pub version: String,
}

/// How many cases got each verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Cases with [`Verdict::Pass`].
    pub passed: u64,
    /// Cases with [`Verdict::Fail`].
    pub failed: u64,
    /// Cases with [`Verdict::NotApplicable`].
    pub not_applicable: u64,
    /// Cases with [`Verdict::Skipped`].
    pub skipped: u64,
    /// Cases with [`Verdict::Informational`].
    pub informational: u64,
    /// Cases marked flaky; they are also counted once under their verdict.
    pub flaky: u64,
}

impl Summary {
    /// Counts the verdicts of `cases`: each case once under its verdict, and once more under
    /// `flaky` when it is marked so.
    pub fn of(cases: &[Case]) -> Summary {
        let mut summary = Summary::default();
        for case in cases {
            summary.add(case);
        }
        summary
    }

    /// Counts one more case.
    pub fn add(&mut self, case: &Case) {
        *self.count_mut(case.verdict) += 1;
        if case.flaky {
            self.flaky += 1;
        }
    }

    /// How many cases got `verdict`.
    pub fn count(&self, verdict: Verdict) -> u64 {
        match verdict {
            Verdict::Pass => self.passed,
            Verdict::Fail => self.failed,
            Verdict::NotApplicable => self.not_applicable,
            Verdict::Skipped => self.skipped,
            Verdict::Informational => self.informational,
        }
    }

    fn count_mut(&mut self, verdict: Verdict) -> &mut u64 {
        match verdict {
            Verdict::Pass => &mut self.passed,
            Verdict::Fail => &mut self.failed,
            Verdict::NotApplicable => &mut self.not_applicable,
            Verdict::Skipped => &mut self.skipped,
            Verdict::Informational => &mut self.informational,
        }
    }

    /// How many cases in all (flaky ones are not counted twice).
    pub fn total(&self) -> u64 {
        Verdict::ALL.iter().map(|verdict| self.count(*verdict)).sum()
    }
}

/// One line of a packet trace, already rendered by whoever recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceLine {
    /// Seconds since the start of the case, with microseconds: `12.340000`.
    pub at: String,
    /// The client's name, or `net` / `broker` for events that belong to no client.
    pub who: String,
    /// `->` sent by `who`, `<-` received by `who`, `!!` a fault or an error, empty for other events.
    pub direction: String,
    /// The packet summary or the event.
    pub what: String,
    /// The packet's bytes as lowercase hex, when raw bytes were requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
}

/// Why a case got its verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// One line: expected vs actual in short, or why the case was skipped. Empty on a plain pass.
    #[serde(default)]
    pub message: String,
    /// What the statements require, when it can be said in one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What the broker did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// Informational findings, e.g. `closed 0.4 s before 1.5 x keep alive`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The packets that prove the verdict; usually kept only for failures, to keep reports small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<TraceLine>,
}

/// One case run once, for one protocol version (and one seed, in simulation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The stable id, e.g. `will/delay-cancelled-by-resume`; the part before the first `/` is the
    /// area that groups cases in renderings.
    pub id: String,
    /// The protocol version it ran with: `5.0` or `3.1.1`. A case run for both versions appears
    /// twice.
    pub version: String,
    /// One line: what it checks.
    #[serde(default)]
    pub title: String,
    /// The normative statement ids it checks for this version, e.g. `MQTT-3.1.2-22`.
    #[serde(default)]
    pub statements: Vec<String>,
    /// The outcome.
    pub verdict: Verdict,
    /// How long the case ran.
    #[serde(default)]
    pub duration_ms: u64,
    /// The simulation seed, when the case ran in simulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Set by repeat runs whose verdicts differed.
    #[serde(default)]
    pub flaky: bool,
    /// Why the verdict.
    #[serde(default)]
    pub evidence: Evidence,
    /// The one-line command that reruns this case alone.
    #[serde(default)]
    pub command: String,
}

impl Case {
    /// A case with the given identity and verdict and nothing else yet.
    pub fn new(id: impl Into<String>, version: impl Into<String>, verdict: Verdict) -> Case {
        Case {
            id: id.into(),
            version: version.into(),
            title: String::new(),
            statements: Vec::new(),
            verdict,
            duration_ms: 0,
            seed: None,
            flaky: false,
            evidence: Evidence::default(),
            command: String::new(),
        }
    }

    /// The area (or spec section) the case belongs to: its id up to the first `/`, or the whole id
    /// when it has none.
    pub fn area(&self) -> &str {
        area_of(&self.id)
    }

    /// `id [version]`, plus ` seed N` when there is a seed: how renderings name a case, so that
    /// two runs of one id stay apart.
    pub fn label(&self) -> String {
        match self.seed {
            Some(seed) => format!("{} [{}] seed {seed}", self.id, self.version),
            None => format!("{} [{}]", self.id, self.version),
        }
    }
}

/// The area of a case id: up to the first `/`.
pub fn area_of(id: &str) -> &str {
    id.split_once('/').map_or(id, |(area, _)| area)
}

/// The key of [`Report::extra`] that holds the charts (see [`Report::charts`]).
pub const CHARTS_KEY: &str = "charts";

/// How a chart places its x values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// In proportion: x is drawn where it lies between the smallest and the largest x, as a time
    /// series wants.
    Linear,
    /// As a percentile spectrum (the usual HDR histogram plot): x is a percentile from 0 to 100,
    /// drawn at log10(1 / (1 - x/100)), so that 90, 99, 99.9 and 99.99 lie equally far apart and
    /// the tail, where latency problems show, gets as much room as the body. The maximum (100),
    /// which would lie at infinity, is drawn a little past the largest other percentile.
    Percentile,
}

/// A line chart a command adds to its report: named series of `(x, y)` points over two labelled
/// axes. In JSON, one object of the `charts` array (see [`Report::charts`]); the renderings draw
/// it as an SVG line chart (HTML) or list it as a table (Markdown).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// What the chart shows, e.g. `Throughput over time`.
    pub title: String,
    /// What x measures, with its unit, e.g. `seconds since the start of the measured window`.
    pub x_label: String,
    /// What y measures, with its unit, e.g. `messages/s`.
    pub y_label: String,
    /// How x is placed; y is always placed in proportion, from 0 (or below, for negative values).
    pub x_scale: Scale,
    /// The lines, one per thing measured, drawn in this order.
    pub series: Vec<Series>,
}

/// One line of a [`Chart`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The name the legend shows, e.g. `sent`.
    pub name: String,
    /// `(x, y)` points, joined in this order; `[x, y]` pairs in JSON. Finite numbers only (JSON
    /// has no NaN or infinity), and with [`Scale::Percentile`] every x lies between 0 and 100.
    pub points: Vec<(f64, f64)>,
}

impl Chart {
    /// The first thing wrong with the chart that its types cannot rule out: a point that is not
    /// finite, or a percentile outside 0 to 100. The problem names the point by its path, e.g.
    /// `series[0].points[3]: ...`.
    fn check(&self) -> Result<(), String> {
        for (series_index, series) in self.series.iter().enumerate() {
            for (point_index, &(x, y)) in series.points.iter().enumerate() {
                if !x.is_finite() || !y.is_finite() {
                    return Err(format!(
                        "series[{series_index}].points[{point_index}]: [{x}, {y}] is not a pair of finite numbers"
                    ));
                }
                if self.x_scale == Scale::Percentile && !(0.0..=100.0).contains(&x) {
                    return Err(format!(
                        "series[{series_index}].points[{point_index}]: x is {x}, but a percentile lies between 0 and 100"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Reads the value of the `charts` key, naming the first thing wrong by its path in the document
/// (`charts[1].series[0].points[2]: invalid length 1, expected a tuple of size 2`).
fn charts_from_value(value: &serde_json::Value) -> Result<Vec<Chart>, String> {
    let serde_json::Value::Array(items) = value else {
        return Err(format!(
            "{CHARTS_KEY}: expected an array of charts, found {}",
            json_kind(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| chart_from_value(item, &format!("{CHARTS_KEY}[{index}]")))
        .collect()
}

/// Reads one chart at `path`. The series and their points are read one by one first, because
/// serde's error for the whole chart would only say what is wrong, not in which series or point.
fn chart_from_value(value: &serde_json::Value, path: &str) -> Result<Chart, String> {
    if let Some(serde_json::Value::Array(series_list)) = value.get("series") {
        for (series_index, series) in series_list.iter().enumerate() {
            let series_path = format!("{path}.series[{series_index}]");
            if let Some(serde_json::Value::Array(points)) = series.get("points") {
                for (point_index, point) in points.iter().enumerate() {
                    <(f64, f64)>::deserialize(point)
                        .map_err(|error| format!("{series_path}.points[{point_index}]: {error}"))?;
                }
            }
            Series::deserialize(series).map_err(|error| format!("{series_path}: {error}"))?;
        }
    }
    let chart = Chart::deserialize(value).map_err(|error| format!("{path}: {error}"))?;
    chart.check().map_err(|problem| format!("{path}.{problem}"))?;
    Ok(chart)
}

/// What a JSON value is, for error messages: `an object`, `null`.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The results of one run of one command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA_VERSION`] for a report this crate wrote or accepted.
    pub schema_version: u32,
    /// Which command produced it.
    pub kind: Kind,
    /// Which program wrote it.
    pub tool: Tool,
    /// When the run started, RFC 3339 in UTC (see [`rfc3339`]).
    pub started_at: String,
    /// What ran: `reference broker (simulated)`, `mqtt://127.0.0.1:1883`, ...
    pub target: String,
    /// The command's options (seeds, swarm, tolerance ...), so a report says how to repeat it.
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The verdict counts; kept current by [`Report::push`], recomputed by [`Report::finish`].
    pub summary: Summary,
    /// The cases, in the order they ran.
    pub cases: Vec<Case>,
    /// Sections a command adds beyond cases (check: `coverage`, `behaviour`, `broker`; bench:
    /// figures, and [`CHARTS_KEY`] read by [`Report::charts`]), at the top level of the document beside the fixed keys; keys a reader does not
    /// know land here too, so they survive a round trip.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Why a JSON document is not a report this crate can read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The text is not JSON, or not shaped like a report.
    #[error("not a mqtt-harness report: {0}")]
    Json(#[from] serde_json::Error),
    /// The document has no `schema_version`, so its shape is unknown.
    #[error(
        "not a mqtt-harness report: it has no schema_version (this mqtt-harness reads schema version {SCHEMA_VERSION})"
    )]
    MissingSchemaVersion,
    /// The document follows another version of the schema; reading it anyway could misread it.
    #[error("report schema version {found} is not supported: this mqtt-harness reads schema version {SCHEMA_VERSION} only; use the mqtt-harness that wrote it")]
    UnsupportedSchemaVersion {
        /// The version the document declares.
        found: u64,
    },
}

impl Report {
    /// An empty report of `kind`, written by mqtt-harness `tool_version`.
    pub fn new(
        kind: Kind,
        tool_version: impl Into<String>,
        started_at: impl Into<String>,
        target: impl Into<String>,
    ) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            kind,
            tool: Tool {
                name: TOOL_NAME.to_owned(),
                version: tool_version.into(),
            },
            started_at: started_at.into(),
            target: target.into(),
            parameters: BTreeMap::new(),
            summary: Summary::default(),
            cases: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Appends a case and counts it in the summary.
    pub fn push(&mut self, case: Case) {
        self.summary.add(&case);
        self.cases.push(case);
    }

    /// Recounts the summary from the cases; needed after editing `cases` directly (marking cases
    /// flaky, say), since only [`Report::push`] keeps the summary current.
    pub fn finish(&mut self) {
        self.summary = Summary::of(&self.cases);
    }

    /// The report as indented JSON, the form `report.json` holds.
    ///
    /// # Panics
    ///
    /// Never in practice: serialization fails only for non-string map keys or non-finite numbers,
    /// and this model has neither (`serde_json::Value` cannot hold NaN).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes: string keys, finite numbers")
    }

    /// Reads a report, refusing any schema version but [`SCHEMA_VERSION`].
    ///
    /// The version is read first and on its own, so a document of another version gets an error
    /// that names the version rather than a confusing complaint about some field.
    pub fn from_json(text: &str) -> Result<Report, ReportError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            schema_version: Option<u64>,
        }
        let probe: VersionOnly = serde_json::from_str(text)?;
        match probe.schema_version {
            None => Err(ReportError::MissingSchemaVersion),
            Some(found) if found != u64::from(SCHEMA_VERSION) => Err(ReportError::UnsupportedSchemaVersion { found }),
            Some(_) => Ok(serde_json::from_str(text)?),
        }
    }

    /// The charts under [`CHARTS_KEY`] in [`Report::extra`]; none when the key is absent.
    ///
    /// The section is read here rather than when the report is read, so that a malformed chart
    /// costs its figures, not the report: the error names the first thing wrong by its path,
    /// e.g. ``charts[1]: missing field `x_scale` `` or `charts[0].series[1].points[2]: ...`, and
    /// the renderings show it in place of the charts. Keys of a chart this crate does not know are
    /// ignored.
    pub fn charts(&self) -> Result<Vec<Chart>, String> {
        match self.extra.get(CHARTS_KEY) {
            None => Ok(Vec::new()),
            Some(value) => charts_from_value(value),
        }
    }

    /// Puts `charts` under [`CHARTS_KEY`] in [`Report::extra`], replacing any there, for the
    /// renderings to draw. [`Report::charts`] reads back exactly what was set.
    ///
    /// # Panics
    ///
    /// When a point is not finite or a percentile lies outside 0 to 100 (the message names the
    /// chart and the point). JSON cannot hold the first, no axis can place the second, and both are
    /// bugs in the command that computed the figures (a rate over a window of zero length, say);
    /// failing here, in that command, beats writing a report whose charts no reader accepts.
    pub fn set_charts(&mut self, charts: &[Chart]) {
        for (index, chart) in charts.iter().enumerate() {
            if let Err(problem) = chart.check() {
                panic!("chart {index} ({:?}) cannot be written: {problem}", chart.title);
            }
        }
        let value = serde_json::to_value(charts).expect("checked charts serialize: string keys, finite numbers");
        self.extra.insert(CHARTS_KEY.to_owned(), value);
    }
}

/// Formats a time as RFC 3339 in UTC with whole seconds, e.g. `2026-11-29T09:10:55Z`.
///
/// The caller reads the clock (`SystemTime::now().duration_since(UNIX_EPOCH)`), which keeps this
/// function pure and lets simulated runs pass their fixed epoch. Sub-second parts are dropped so
/// that every timestamp has the same form and timestamps order as text (merging relies on it).
/// Years past 9999 are written with more digits; RFC 3339 has no form for them.
pub fn rfc3339(since_unix_epoch: Duration) -> String {
    const SECONDS_PER_DAY: u64 = 86_400;
    let seconds = since_unix_epoch.as_secs();
    let days = seconds / SECONDS_PER_DAY;
    let second_of_day = seconds % SECONDS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian date of `days` after 1970-01-01.
///
/// Howard Hinnant's `civil_from_days`, restricted to dates from 1970 on (which keeps every
/// quantity unsigned): shift the epoch to 0000-03-01 so that the leap day ends each year, split
/// into 400-year eras of 146,097 days, then find the year of the era and the day of that year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719,468 days lie between 0000-03-01 and 1970-01-01.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097; // [0, 146096]
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11], 0 = March
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }; // [1, 12]
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> String {
        rfc3339(Duration::from_secs(seconds))
    }

    #[test]
    fn the_epoch_is_the_first_of_january_1970() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn known_instants_format_as_their_calendar_dates() {
        // Checked against `date -u -d @N`.
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z"); // 2000 is a leap year (divisible by 400)
        assert_eq!(at(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(at(1_078_099_199), "2004-02-29T23:59:59Z");
        assert_eq!(at(1_709_164_800), "2024-02-29T00:00:00Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z"); // day 366 of a leap year
        assert_eq!(at(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(at(1_795_943_455), "2026-11-29T09:10:55Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z"); // 2100 is not a leap year: no Feb 29
        assert_eq!(at(4_107_456_000), "2100-02-28T00:00:00Z");
        assert_eq!(at(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn sub_second_parts_are_dropped() {
        assert_eq!(rfc3339(Duration::from_millis(1_999)), "1970-01-01T00:00:01Z");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walks 1,000 years day by day and checks the calendar arithmetic against a naive count,
        // which catches any off-by-one at month, year and era boundaries.
        let mut expected = (1970u64, 1u64, 1u64);
        for days in 0..(1_000 * 366) {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            let (year, month, day) = expected;
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let month_length = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expected = if day < month_length {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
        }
    }
}
