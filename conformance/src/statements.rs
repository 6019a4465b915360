//! The numbered normative statements of MQTT 5.0 and 3.1.1, from the project's own tables.
//!
//! `conformance/statements/v5.0.tsv` (251 rows) and `v3.1.1.tsv` (140 rows) list every statement
//! id of each specification with its section, its level (the strongest keyword: MUST, SHOULD or
//! MAY) and a one-line summary in our own words. The same id can mean different things in the two
//! versions (5.0 `MQTT-3.1.2-24` is not 3.1.1 `MQTT-3.1.2-24`), so a statement is always read from
//! the table of its version.
//!
//! The format: UTF-8, one row per line, fields separated by tabs; lines starting with `#` are
//! comments; the first other line is the header `id<TAB>section<TAB>level<TAB>summary`.
//!
//! ```
//! use mqtt_conformance::statements::{parse, Level, V5_0_TSV};
//!
//! let statements = parse(V5_0_TSV).expect("the 5.0 table is well-formed");
//! let keep_alive = statements.iter().find(|s| s.id == "MQTT-3.1.2-22").expect("a known id");
//! assert_eq!((keep_alive.section, keep_alive.level), ("3.1.2", Level::Must));
//! ```

use std::collections::HashMap;
use std::fmt;

/// The MQTT 5.0 table, as shipped with the crate.
pub const V5_0_TSV: &str = include_str!("../statements/v5.0.tsv");

/// The MQTT 3.1.1 table, as shipped with the crate.
pub const V3_1_1_TSV: &str = include_str!("../statements/v3.1.1.tsv");

/// The header line every table starts with (after its comments).
pub const HEADER: &str = "id\tsection\tlevel\tsummary";

/// The strongest keyword of a statement (MUST NOT counts as MUST, SHOULD NOT as SHOULD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Must,
    Should,
    May,
}

impl Level {
    /// The keyword as the tables write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }

    fn parse(text: &str) -> Option<Level> {
        match text {
            "MUST" => Some(Level::Must),
            "SHOULD" => Some(Level::Should),
            "MAY" => Some(Level::May),
            _ => None,
        }
    }
}

/// One row of a table: a numbered normative statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    /// As the specification prints it, e.g. `MQTT-3.1.2-24`.
    pub id: &'a str,
    /// The section named inside the id, e.g. `3.1.2`.
    pub section: &'a str,
    pub level: Level,
    /// Who the statement binds and what it requires, paraphrased on one line.
    pub summary: &'a str,
}

/// Why a table was refused, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The first line that is not a comment is not [`HEADER`] (line 0: the table has no such line).
    MissingHeader,
    /// A row does not have exactly 4 tab-separated fields.
    FieldCount {
        found: usize,
    },
    /// The id is not `MQTT-<dotted section>-<number>`.
    InvalidId {
        id: String,
    },
    /// The section column is not the section inside the id.
    SectionMismatch {
        id: String,
        section: String,
    },
    /// The level is not MUST, SHOULD or MAY.
    InvalidLevel {
        level: String,
    },
    EmptySummary,
    /// The id already appeared on `first_line`.
    DuplicateId {
        id: String,
        first_line: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            ParseErrorKind::MissingHeader => write!(f, "expected the header {HEADER:?}"),
            ParseErrorKind::FieldCount { found } => write!(f, "{found} tab-separated fields, expected 4"),
            ParseErrorKind::InvalidId { id } => write!(f, "id {id:?} is not MQTT-<dotted section>-<number>"),
            ParseErrorKind::SectionMismatch { id, section } => {
                write!(f, "section {section:?} is not the section of {id}")
            }
            ParseErrorKind::InvalidLevel { level } => write!(f, "level {level:?} is not MUST, SHOULD or MAY"),
            ParseErrorKind::EmptySummary => write!(f, "empty summary"),
            ParseErrorKind::DuplicateId { id, first_line } => write!(f, "{id} already on line {first_line}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The section inside an id (`MQTT-3.1.2-24` gives `3.1.2`), or `None` when the id does not have
/// the shape `MQTT-<n>.<n>[.<n>...]-<n>` (decimal numbers).
pub fn section_of(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("MQTT-")?;
    let (section, number) = rest.rsplit_once('-')?;
    let decimal = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let parts_ok = section.split('.').all(decimal) && section.split('.').count() >= 2;
    (parts_ok && decimal(number)).then_some(section)
}

/// Reads a table: comments skipped, the header required, every row checked (field count, id
/// shape, section, level, non-empty summary, unique id). Stops at the first broken row.
pub fn parse(text: &str) -> Result<Vec<Statement<'_>>, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.starts_with('#'));
    let header = lines.next();
    if header.map(|(_, text)| text) != Some(HEADER) {
        let line = header.map_or(0, |(line, _)| line);
        return Err(ParseError {
            line,
            kind: ParseErrorKind::MissingHeader,
        });
    }
    let mut statements = Vec::new();
    let mut first_line_of: HashMap<&str, usize> = HashMap::new();
    for (line, row) in lines {
        let error = |kind| ParseError { line, kind };
        let fields: Vec<&str> = row.split('\t').collect();
        let [id, section, level, summary] = fields[..] else {
            return Err(error(ParseErrorKind::FieldCount { found: fields.len() }));
        };
        let Some(id_section) = section_of(id) else {
            return Err(error(ParseErrorKind::InvalidId { id: id.to_owned() }));
        };
        if id_section != section {
            return Err(error(ParseErrorKind::SectionMismatch {
                id: id.to_owned(),
                section: section.to_owned(),
            }));
        }
        let Some(level) = Level::parse(level) else {
            return Err(error(ParseErrorKind::InvalidLevel {
                level: level.to_owned(),
            }));
        };
        if summary.trim().is_empty() {
            return Err(error(ParseErrorKind::EmptySummary));
        }
        if let Some(&first_line) = first_line_of.get(id) {
            return Err(error(ParseErrorKind::DuplicateId {
                id: id.to_owned(),
                first_line,
            }));
        }
        first_line_of.insert(id, line);
        statements.push(Statement {
            id,
            section,
            level,
            summary,
        });
    }
    Ok(statements)
}
