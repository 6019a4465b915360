//! Which statements the catalog covers, per version: every statement is tested (by which
//! cases), not testable against a broker (a client's duty, or the server's inside), or untested
//! with a reason. The last two come from `statements/classification/<chapter>.tsv`; the first
//! from the cases' own citations. A statement both cited and classified, or neither, is an error that a
//! test catches.

use std::collections::BTreeMap;

use mqtt_protocol::ProtocolVersion;
use mqtt_scenarios::scenario::{parse_version, version_name};
use serde_json::{json, Value};

use crate::catalog::Case;
use crate::statements::{parse, V3_1_1_TSV, V5_0_TSV};

/// Statements no case covers, and why, one file per chapter of the probe cases:
/// `version<TAB>id<TAB>class<TAB>reason`, class `not_testable` or `untested`; `#` lines are
/// comments.
pub const CLASSIFICATION: [(&str, &str); 5] = [
    ("packets.tsv", include_str!("../statements/classification/packets.tsv")),
    ("connect.tsv", include_str!("../statements/classification/connect.tsv")),
    ("connack.tsv", include_str!("../statements/classification/connack.tsv")),
    ("publish.tsv", include_str!("../statements/classification/publish.tsv")),
    (
        "delivery.tsv",
        include_str!("../statements/classification/delivery.tsv"),
    ),
];

/// Why a statement has no case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// It cannot be seen from outside a broker: a client's duty, or the server's inside.
    NotTestable,
    /// It could be, and is not yet.
    Untested,
}

/// The coverage of one version.
#[derive(Debug, Clone, Default)]
pub struct VersionCoverage {
    pub total: usize,
    /// Statement id to the ids of the cases that cite it.
    pub tested: BTreeMap<String, Vec<String>>,
    pub not_testable: BTreeMap<String, String>,
    pub untested: BTreeMap<String, String>,
    /// Cited by no case and not classified either: a gap in the bookkeeping.
    pub unclassified: Vec<String>,
    /// Classified although a case cites it, or classified twice, or unknown.
    pub inconsistent: Vec<String>,
}

impl VersionCoverage {
    pub fn to_json(&self) -> Value {
        let mut statements = serde_json::Map::new();
        for (id, cases) in &self.tested {
            statements.insert(id.clone(), json!({"status": "tested", "cases": cases}));
        }
        for (id, reason) in &self.not_testable {
            statements.insert(id.clone(), json!({"status": "not_testable", "reason": reason}));
        }
        for (id, reason) in &self.untested {
            statements.insert(id.clone(), json!({"status": "untested", "reason": reason}));
        }
        json!({
            "covered": self.tested.len(),
            "total": self.total,
            "not_testable": self.not_testable.len(),
            "untested": self.untested.len(),
            "statements": statements,
        })
    }
}

/// The classification rows of `version`: id to (class, reason), with the rows that do not parse.
fn classification(version: ProtocolVersion) -> (BTreeMap<String, (Class, String)>, Vec<String>) {
    let mut rows = BTreeMap::new();
    let mut broken = Vec::new();
    for (file, text) in CLASSIFICATION {
        for (index, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let parsed = match fields[..] {
                [row_version, id, class, reason] if !reason.trim().is_empty() => {
                    let class = match class {
                        "not_testable" => Some(Class::NotTestable),
                        "untested" => Some(Class::Untested),
                        _ => None,
                    };
                    parse_version(row_version)
                        .zip(class)
                        .map(|(row_version, class)| (row_version, id, class, reason))
                }
                _ => None,
            };
            match parsed {
                Some((row_version, id, class, reason)) if row_version == version => {
                    if rows.insert(id.to_owned(), (class, reason.to_owned())).is_some() {
                        broken.push(format!("{file}:{}: {id} is classified twice", index + 1));
                    }
                }
                Some(_) => {}
                None => broken.push(format!(
                    "{file}:{}: expected version, id, not_testable|untested, reason",
                    index + 1
                )),
            }
        }
    }
    (rows, broken)
}

/// The coverage of `version` by `catalog`.
pub fn coverage(catalog: &[Case], version: ProtocolVersion) -> VersionCoverage {
    let table = match version {
        ProtocolVersion::V5 => V5_0_TSV,
        _ => V3_1_1_TSV,
    };
    let statements = parse(table).unwrap_or_default();
    let mut result = VersionCoverage {
        total: statements.len(),
        ..VersionCoverage::default()
    };
    for case in catalog.iter().filter(|case| case.versions.contains(&version)) {
        for id in case.statements_for(version) {
            result.tested.entry(id).or_default().push(case.id(version));
        }
    }
    let (classified, broken) = classification(version);
    result.inconsistent.extend(broken);
    let known: std::collections::BTreeSet<&str> = statements.iter().map(|statement| statement.id).collect();
    for id in result.tested.keys() {
        if !known.contains(id.as_str()) {
            result.inconsistent.push(format!(
                "{id} is cited by a case but is no {} statement",
                version_name(version)
            ));
        }
    }
    for (id, (class, reason)) in classified {
        if !known.contains(id.as_str()) {
            result
                .inconsistent
                .push(format!("{id} is classified but is no statement"));
        } else if result.tested.contains_key(&id) {
            result
                .inconsistent
                .push(format!("{id} is classified as {class:?} but a case cites it"));
        } else if class == Class::NotTestable {
            result.not_testable.insert(id, reason);
        } else {
            result.untested.insert(id, reason);
        }
    }
    for statement in &statements {
        let id = statement.id;
        if !result.tested.contains_key(id) && !result.not_testable.contains_key(id) && !result.untested.contains_key(id)
        {
            result.unclassified.push(id.to_owned());
        }
    }
    result
}
