//! mqtt-reports: the result model every command of mqtt-harness fills, and its renderings (JSON,
//! JUnit XML, self-contained HTML with inline SVG, Markdown, a terminal line), the merging of
//! shard results, and the expectations files that keep CI green on a third-party broker's known
//! deviations.
//!
//! This crate depends on none of our crates: evidence reaches it already rendered as text (time,
//! direction, packet summary, raw bytes as hex), so a report can be read, merged and rendered by any
//! command, and by other tools, without the codec. The JSON document is versioned
//! ([`SCHEMA_VERSION`]), and a reader refuses a version it does not know.
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`model`] | [`Report`], [`Case`], [`Verdict`], [`Evidence`], [`TraceLine`], [`Summary`]; line [`Chart`]s ([`Series`], [`Scale`]) under `extra["charts"]`; JSON in and out; [`rfc3339`] timestamps |
//! | [`render`] | [`junit`], [`markdown`] (charts as tables), [`html`] (template in `templates/report.html`; charts as inline SVG), [`terminal_summary_line`], [`write_dir`] |
//! | [`merge`](mod@merge) | [`merge()`]: shards of one run (seed ranges, bench shards) into one report |
//! | [`expect`] | [`Expectations`] files (YAML, errors with `path:line:column`) and [`compare`] of a report against one |
//!
//! # A report, start to finish
//!
//! ```
//! use mqtt_reports::{render, Case, Kind, Report, Verdict};
//!
//! let mut report = Report::new(Kind::Check, "0.1.0", "2026-11-29T09:10:55Z", "mqtt://127.0.0.1:1883");
//! let mut case = Case::new("connect/first-packet", "5.0", Verdict::Fail);
//! case.statements.push("MQTT-3.1.0-1".to_owned());
//! case.evidence.message = "expected the connection closed, got CONNACK".to_owned();
//! report.push(case);
//!
//! assert_eq!(render::terminal_summary_line(&report.summary), "0 passed, 1 failed, 0 not applicable, 0 skipped, 0 informational");
//! let read_back = Report::from_json(&report.to_json_pretty()).unwrap();
//! assert_eq!(read_back, report);
//! ```

// Every public item is documented: other tools read this model, and the docs are its contract.
#![warn(missing_docs)]

pub mod expect;
pub mod merge;
pub mod model;
pub mod render;

pub use expect::{compare, Comparison, ExpectError, Expectation, Expectations, Mismatch, NotRun, WrongKind};
pub use merge::{merge, MergeError};
pub use model::{
    area_of, rfc3339, Case, Chart, Evidence, Kind, Report, ReportError, Scale, Series, Summary, Tool, TraceLine,
    Verdict, CHARTS_KEY, SCHEMA_VERSION, TOOL_NAME,
};
pub use render::{html, junit, markdown, terminal_summary_line, write_dir};
