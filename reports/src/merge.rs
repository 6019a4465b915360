//! Merging reports: shards of one run (seed ranges split across CI jobs, `bench --shard k/n`) become
//! one report, as if one process had run them all.
//!
//! What a merged report holds:
//!
//! - kind, schema version, tool and target: those of the inputs, which must agree on kind, schema
//!   version and target (the tool is the first report's: shards may come from builds that differ
//!   only in version string);
//! - `started_at`: the earliest;
//! - cases: all of them, in input order; the summary recounted;
//! - parameters: a key whose value is the same in every report keeps it; a key whose values differ
//!   becomes a JSON array of the distinct values in input order, so that seed ranges `1..50` and
//!   `50..100` both stay visible. A report that lacks the key contributes `null`. Merging a merged
//!   report again nests such arrays rather than flattening them, since an array value cannot be
//!   told apart from an earlier merge;
//! - `extra`: every key of every report; where reports disagree on a key, the first report's value
//!   is kept and nothing records the disagreement. Sections such as benchmark figures need their
//!   own merge (HDR histograms add up), which the command that owns them does before or after.
//!   The charts ([`Report::charts`]) are such a section: a merged report keeps the first report's,
//!   and the command that merges its own figures (bench does) recomputes its charts from the
//!   merged figures and sets them again ([`Report::set_charts`]).

use std::collections::BTreeMap;

use crate::model::{Kind, Report, Summary};

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
    /// Results of different commands do not add up.
    #[error("cannot merge a `{other}` report (input {index}) into `{first}` reports: all reports must come from the same command")]
    KindDiffers {
        /// The first report's kind.
        first: Kind,
        /// The differing report's kind.
        other: Kind,
        /// The differing report's position in the input, from 0.
        index: usize,
    },
    /// Reports of different schema versions may mean different things by the same field.
    #[error("cannot merge schema version {other} (input {index}) with schema version {first}")]
    SchemaVersionDiffers {
        /// The first report's schema version.
        first: u32,
        /// The differing report's schema version.
        other: u32,
        /// The differing report's position in the input, from 0.
        index: usize,
    },
    /// Results about different brokers do not add up.
    #[error("cannot merge results for `{other}` (input {index}) with results for `{first}`: all reports must have the same target")]
    TargetDiffers {
        /// The first report's target.
        first: String,
        /// The differing report's target.
        other: String,
        /// The differing report's position in the input, from 0.
        index: usize,
    },
}

/// Merges reports of one command against one target into one report (see the module doc for what
/// each field becomes).
pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
    let Some(first) = reports.first() else {
        return Err(MergeError::Empty);
    };
    for (index, report) in reports.iter().enumerate().skip(1) {
        if report.kind != first.kind {
            return Err(MergeError::KindDiffers {
                first: first.kind,
                other: report.kind,
                index,
            });
        }
        if report.schema_version != first.schema_version {
            return Err(MergeError::SchemaVersionDiffers {
                first: first.schema_version,
                other: report.schema_version,
                index,
            });
        }
        if report.target != first.target {
            return Err(MergeError::TargetDiffers {
                first: first.target.clone(),
                other: report.target.clone(),
                index,
            });
        }
    }

    let parameters = merge_parameters(&reports);
    let mut reports = reports.into_iter();
    let Some(mut merged) = reports.next() else {
        return Err(MergeError::Empty);
    };
    merged.parameters = parameters;
    for report in reports {
        // RFC 3339 UTC timestamps of one form order as text.
        if report.started_at < merged.started_at {
            merged.started_at = report.started_at;
        }
        merged.cases.extend(report.cases);
        for (key, value) in report.extra {
            merged.extra.entry(key).or_insert(value);
        }
    }
    merged.summary = Summary::of(&merged.cases);
    Ok(merged)
}

fn merge_parameters(reports: &[Report]) -> BTreeMap<String, serde_json::Value> {
    let mut keys: Vec<&String> = reports.iter().flat_map(|report| report.parameters.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let mut distinct: Vec<serde_json::Value> = Vec::new();
            for report in reports {
                let value = report.parameters.get(key).cloned().unwrap_or(serde_json::Value::Null);
                if !distinct.contains(&value) {
                    distinct.push(value);
                }
            }
            let value = match <[serde_json::Value; 1]>::try_from(distinct) {
                Ok([same_everywhere]) => same_everywhere,
                Err(distinct) => serde_json::Value::Array(distinct),
            };
            (key.clone(), value)
        })
        .collect()
}
