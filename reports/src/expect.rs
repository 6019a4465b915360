//! Expectations for third-party brokers: which cases a given broker is known to fail, with the
//! statement it deviates from and the evidence, so that CI stays green on known deviations and
//! turns red on any change (a new failure, or a new pass that the file must learn about).
//!
//! The file is YAML, e.g. `scenarios/expected/mosquitto-2.0.yaml`:
//!
//! ```yaml
//! broker: mosquitto 2.0.11
//! kind: run            # which command's results it describes
//! expectations:
//!   - case: will/delay-cancelled-by-resume
//!     version: "5.0"
//!     verdict: fail              # what this broker gets; a case not listed is expected to pass
//!     statement: MQTT-3.1.3-9    # the statement it deviates from
//!     evidence: >
//!       mosquitto publishes the will 5 s after the abrupt close although the client resumed ...
//!     intermittent: false        # true: the deviation shows in some runs only; a pass matches too
//! ```
//!
//! Every error names `path:line:column`. Unknown keys are errors (a misspelt `verdcit` must not
//! silently mean "expected to pass"), as are duplicate entries and entries that expect a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::{Kind, Report, Verdict};

/// The protocol versions an entry may name; anything else is a typo that would never match.
pub const KNOWN_VERSIONS: [&str; 3] = ["3.1", "3.1.1", "5.0"];

/// Larger files are refused before parsing: an expectations file lists deviations, and even a
/// broker failing every case stays far below this.
pub const FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Nesting deeper than this is refused; the format itself needs a depth of 3.
const DEPTH_MAX: usize = 64;

/// Aliases (`*name`) beyond this are refused, which bounds alias expansion ("billion laughs").
const ALIASES_MAX: usize = 100;

/// An expectations file, loaded and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectations {
    /// Where it was read from; error messages and notes name it.
    pub path: PathBuf,
    /// The broker and version it describes, free text: `mosquitto 2.0.11`.
    pub broker: String,
    /// Which command's results it describes.
    pub kind: Kind,
    /// The known deviations, in file order; no two share a (case, version).
    pub entries: Vec<Expectation>,
}

/// One known deviation: this case, for this protocol version, gets this verdict on this broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The case id, e.g. `will/delay-cancelled-by-resume`.
    pub case: String,
    /// The protocol version, one of [`KNOWN_VERSIONS`].
    pub version: String,
    /// The verdict the broker gets; never [`Verdict::Pass`].
    pub verdict: Verdict,
    /// The statement the broker deviates from, e.g. `MQTT-3.1.3-9`.
    pub statement: String,
    /// What the broker does instead, for the reader of the file.
    pub evidence: String,
    /// The deviation shows in some runs and not in others (a broker that checks a timer in
    /// coarse steps, say): this verdict and a pass both match. The evidence says why.
    pub intermittent: bool,
    /// The line of the entry in the file, from 1.
    pub line: u64,
    /// The column of the entry in the file, from 1.
    pub column: u64,
}

/// Why an expectations file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// The file cannot be read.
    #[error("{}: cannot read the expectations file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is larger than [`FILE_BYTES_MAX`].
    #[error("{}: the expectations file has {bytes} bytes, more than the {FILE_BYTES_MAX} allowed", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The YAML is malformed, or does not fit the format (unknown key, bad verdict, missing field,
    /// nesting or aliases beyond the budget).
    #[error("{}: {message}", Place { path, line: *line, column: *column })]
    Format {
        /// The file.
        path: PathBuf,
        /// The line of the problem, from 1; 0 when the parser did not say.
        line: u64,
        /// The column of the problem, from 1; 0 when the parser did not say.
        column: u64,
        /// What is wrong.
        message: String,
    },
    /// Two entries for the same case and version: which one holds would be a guess.
    #[error("{}: duplicate entry for {case} [{version}]; the first is at line {first_line}", Place { path, line: *line, column: *column })]
    DuplicateEntry {
        /// The file.
        path: PathBuf,
        /// The line of the second entry.
        line: u64,
        /// The column of the second entry.
        column: u64,
        /// The case id.
        case: String,
        /// The protocol version.
        version: String,
        /// The line of the first entry.
        first_line: u64,
    },
    /// An entry that expects a pass says what an absent entry already says, and hides a typo'd
    /// verdict.
    #[error("{}: {case} [{version}] expects a pass: a passing case needs no entry", Place { path, line: *line, column: *column })]
    PassingEntry {
        /// The file.
        path: PathBuf,
        /// The line of the verdict.
        line: u64,
        /// The column of the verdict.
        column: u64,
        /// The case id.
        case: String,
        /// The protocol version.
        version: String,
    },
    /// A protocol version no case runs with.
    #[error("{}: unknown protocol version {version:?}: expected one of 3.1, 3.1.1, 5.0 (quote it: \"5.0\")", Place { path, line: *line, column: *column })]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The line of the version.
        line: u64,
        /// The column of the version.
        column: u64,
        /// The version as written.
        version: String,
    },
}

/// `path:line:column`, or `path` alone when the line is unknown.
struct Place<'a> {
    path: &'a Path,
    line: u64,
    column: u64,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.path.display())
        } else {
            write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
        }
    }
}

/// The file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    broker: String,
    kind: Kind,
    #[serde(default)]
    expectations: Vec<Spanned<EntryText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryText {
    case: String,
    version: Spanned<String>,
    verdict: Spanned<Verdict>,
    statement: String,
    evidence: String,
    #[serde(default)]
    intermittent: bool,
}

impl Expectations {
    /// Reads and validates an expectations file.
    pub fn load(path: impl AsRef<Path>) -> Result<Expectations, ExpectError> {
        let path = path.as_ref();
        let read_error = |source| ExpectError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(read_error)?.len();
        if bytes > FILE_BYTES_MAX {
            return Err(ExpectError::TooLarge {
                path: path.to_owned(),
                bytes,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Expectations::from_yaml(&text, path)
    }

    /// Validates the text of an expectations file; `path` only names it in errors.
    pub fn from_yaml(text: &str, path: impl Into<PathBuf>) -> Result<Expectations, ExpectError> {
        let path = path.into();
        let mut options = serde_saphyr::Options::default();
        // The location goes into our own `path:line:column` prefix; a source snippet would put
        // several lines into what callers print as one.
        options.with_snippet = false;
        options.budget = serde_saphyr::budget! { max_depth: DEPTH_MAX, max_aliases: ALIASES_MAX };
        let file: FileText = serde_saphyr::from_str_with_options(text, options).map_err(|error| {
            let (line, column) = error
                .location()
                .map_or((0, 0), |location| (location.line(), location.column()));
            ExpectError::Format {
                path: path.clone(),
                line,
                column,
                message: message_without_location(&error, line, column),
            }
        })?;

        let mut first_lines: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut entries = Vec::with_capacity(file.expectations.len());
        for spanned in file.expectations {
            let (line, column) = (spanned.referenced.line(), spanned.referenced.column());
            let entry = spanned.value;
            let version = entry.version.value;
            if !KNOWN_VERSIONS.contains(&version.as_str()) {
                return Err(ExpectError::UnknownVersion {
                    path,
                    line: entry.version.referenced.line(),
                    column: entry.version.referenced.column(),
                    version,
                });
            }
            if entry.verdict.value == Verdict::Pass {
                return Err(ExpectError::PassingEntry {
                    path,
                    line: entry.verdict.referenced.line(),
                    column: entry.verdict.referenced.column(),
                    case: entry.case,
                    version,
                });
            }
            if let Some(first_line) = first_lines.get(&(entry.case.clone(), version.clone())) {
                return Err(ExpectError::DuplicateEntry {
                    path,
                    line,
                    column,
                    case: entry.case,
                    version,
                    first_line: *first_line,
                });
            }
            first_lines.insert((entry.case.clone(), version.clone()), line);
            entries.push(Expectation {
                case: entry.case,
                version,
                verdict: entry.verdict.value,
                statement: entry.statement,
                evidence: entry.evidence,
                intermittent: entry.intermittent,
                line,
                column,
            });
        }
        Ok(Expectations {
            path,
            broker: file.broker,
            kind: file.kind,
            entries,
        })
    }

    /// The entry for a case and version, if the broker is expected not to pass it.
    pub fn get(&self, case: &str, version: &str) -> Option<&Expectation> {
        self.entries
            .iter()
            .find(|entry| entry.case == case && entry.version == version)
    }
}

/// serde-saphyr appends ` at line L, column C` to its messages; the location already leads ours.
fn message_without_location(error: &serde_saphyr::Error, line: u64, column: u64) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {line}, column {column}");
    match message.strip_suffix(&suffix) {
        Some(bare) => bare.to_owned(),
        None => message,
    }
}

/// A case whose verdict differs from what the expectations file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The case id.
    pub case: String,
    /// The protocol version.
    pub version: String,
    /// The seed, for a simulated case.
    pub seed: Option<u64>,
    /// What the file says (pass when the case has no entry).
    pub expected: Verdict,
    /// What the report says.
    pub actual: Verdict,
    /// What changed and what to do, e.g. `new pass: update the expectations file`.
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.case, self.version)?;
        if let Some(seed) = self.seed {
            write!(f, " seed {seed}")?;
        }
        write!(f, ": expected {}, got {}: {}", self.expected, self.actual, self.message)
    }
}

/// The report comes from another command than the file describes; no case was compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongKind {
    /// The kind the expectations file describes.
    pub expected: Kind,
    /// The kind of the report.
    pub actual: Kind,
}

impl fmt::Display for WrongKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the expectations file describes `{}` results, but this report comes from `{}`",
            self.expected, self.actual
        )
    }
}

/// An entry of the expectations file whose case and version the report does not contain: not a
/// mismatch, since a user may run a subset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotRun {
    /// The case id.
    pub case: String,
    /// The protocol version.
    pub version: String,
    /// The entry's line in the file.
    pub line: u64,
}

impl fmt::Display for NotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] (line {}) was not run", self.case, self.version, self.line)
    }
}

/// The outcome of comparing a report with an expectations file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Set when the file describes another command; then nothing else was compared.
    pub wrong_kind: Option<WrongKind>,
    /// Every case whose verdict differs from the expected one, in report order.
    pub mismatches: Vec<Mismatch>,
    /// Cases not compared because they were not applicable or skipped: what a broker supports, or
    /// what a user filtered, is not a deviation.
    pub not_compared: u64,
    /// Entries whose case and version the report does not contain, in file order.
    pub not_run: Vec<NotRun>,
}

impl Comparison {
    /// True when the report matches the expectations: the command exits 0.
    pub fn is_match(&self) -> bool {
        self.wrong_kind.is_none() && self.mismatches.is_empty()
    }
}

/// What a verdict means for a comparison.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    NotRun,
}

fn outcome(verdict: Verdict) -> Outcome {
    match verdict {
        // An informational case found nothing wrong.
        Verdict::Pass | Verdict::Informational => Outcome::Passed,
        Verdict::Fail => Outcome::Failed,
        Verdict::NotApplicable | Verdict::Skipped => Outcome::NotRun,
    }
}

/// Compares every case of `report` with what `expectations` says the broker gets; a case without an
/// entry is expected to pass. Cases sharing an id and version (seeds, repeats) are each compared.
pub fn compare(report: &Report, expectations: &Expectations) -> Comparison {
    let mut comparison = Comparison::default();
    if report.kind != expectations.kind {
        comparison.wrong_kind = Some(WrongKind {
            expected: expectations.kind,
            actual: report.kind,
        });
        return comparison;
    }
    let entries: BTreeMap<(&str, &str), &Expectation> = expectations
        .entries
        .iter()
        .map(|entry| ((entry.case.as_str(), entry.version.as_str()), entry))
        .collect();

    for case in &report.cases {
        let entry = entries.get(&(case.id.as_str(), case.version.as_str())).copied();
        let expected = entry.map_or(Verdict::Pass, |entry| entry.verdict);
        let actual = outcome(case.verdict);
        if actual == Outcome::NotRun {
            comparison.not_compared += 1;
            continue;
        }
        let expected_outcome = outcome(expected);
        let intermittent_pass = entry.is_some_and(|entry| entry.intermittent) && actual == Outcome::Passed;
        if actual == expected_outcome || intermittent_pass {
            continue;
        }
        let mut message = match actual {
            Outcome::Passed => "new pass: update the expectations file".to_owned(),
            _ if case.evidence.message.is_empty() => "new failure".to_owned(),
            _ => format!("new failure: {}", case.evidence.message),
        };
        if let Some(entry) = entry {
            message.push_str(&format!(
                " (line {} says {} against {})",
                entry.line, entry.verdict, entry.statement
            ));
        }
        comparison.mismatches.push(Mismatch {
            case: case.id.clone(),
            version: case.version.clone(),
            seed: case.seed,
            expected,
            actual: case.verdict,
            message,
        });
    }

    let ran: BTreeSet<(&str, &str)> = report
        .cases
        .iter()
        .map(|case| (case.id.as_str(), case.version.as_str()))
        .collect();
    for entry in &expectations.entries {
        if !ran.contains(&(entry.case.as_str(), entry.version.as_str())) {
            comparison.not_run.push(NotRun {
                case: entry.case.clone(),
                version: entry.version.clone(),
                line: entry.line,
            });
        }
    }
    comparison
}
