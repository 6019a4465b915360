//! The catalog as data. Goal: it loads, its names are unique, every statement a case cites exists
//! in its version's table, `--only` selects what its help promises, and the coverage bookkeeping
//! is whole: every statement is tested, not testable, or untested with a reason, never two of
//! these. Method: walk the catalog and the tables; no network.

use std::collections::BTreeSet;

use mqtt_conformance::catalog::{catalog, section_of, Case};
use mqtt_conformance::coverage::coverage;
use mqtt_conformance::statements::{parse, V3_1_1_TSV, V5_0_TSV};
use mqtt_protocol::ProtocolVersion;
use mqtt_scenarios::scenario::version_name;

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V5, ProtocolVersion::V3_1_1];

fn loaded() -> Vec<Case> {
    catalog().unwrap_or_else(|errors| panic!("the catalog loads:\n{errors}"))
}

#[test]
fn the_catalog_loads_with_unique_names_and_a_statement_per_version() {
    let cases = loaded();
    assert!(!cases.is_empty());
    let mut names = BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name.clone()), "the name {} is used twice", case.name);
        assert!(!case.versions.is_empty(), "{} runs in no version", case.name);
        for version in &case.versions {
            assert!(
                !case.statements_for(*version).is_empty(),
                "{} cites no statement for {}",
                case.name,
                version_name(*version)
            );
        }
    }
}

#[test]
fn every_cited_statement_exists_in_its_versions_table() {
    let tables = [
        (ProtocolVersion::V5, parse(V5_0_TSV).expect("5.0 table")),
        (ProtocolVersion::V3_1_1, parse(V3_1_1_TSV).expect("3.1.1 table")),
    ];
    let mut problems = Vec::new();
    for case in loaded() {
        for (version, table) in &tables {
            if !case.versions.contains(version) {
                continue;
            }
            for id in case.statements_for(*version) {
                if !table.iter().any(|statement| statement.id == id) {
                    problems.push(format!("{}: {} {id}", case.name, version_name(*version)));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "statements that do not exist:\n{}",
        problems.join("\n")
    );
}

#[test]
fn only_selects_by_statement_prefix_version_section_and_name() {
    let cases = loaded();
    let first = cases.first().expect("a case");
    let version = first.versions[0];
    let id = first.statements_for(version)[0].clone();
    assert!(first.selected_by(version, &id));
    assert!(first.selected_by(version, &format!("{}:{id}", version_name(version))));
    let other = if version == ProtocolVersion::V5 { "3.1.1" } else { "5.0" };
    assert!(
        !first.selected_by(version, &format!("{other}:{id}")),
        "another version's id"
    );
    assert!(first.selected_by(version, &first.name));
    assert!(first.selected_by(version, &first.id(version)));
    let section = section_of(&id).expect("a section");
    assert!(first.selected_by(version, section));
    // MQTT-3.1 is MQTT-3.1.x, not MQTT-3.10.x: prefixes end at a dot or a dash.
    let (major, _) = section.split_once('.').unwrap_or((section, ""));
    assert!(first.selected_by(version, &format!("MQTT-{major}")));
    assert!(!first.selected_by(version, &format!("MQTT-{section}0")));
    assert!(!first.selected_by(version, "no-such-case"));
}

#[test]
fn every_statement_is_tested_or_classified_and_never_both() {
    let cases = loaded();
    let mut problems = Vec::new();
    for version in VERSIONS {
        let found = coverage(&cases, version);
        for id in &found.unclassified {
            problems.push(format!(
                "{}: {id} is neither tested nor classified",
                version_name(version)
            ));
        }
        for problem in &found.inconsistent {
            problems.push(format!("{}: {problem}", version_name(version)));
        }
        assert_eq!(
            found.tested.len() + found.not_testable.len() + found.untested.len() + found.unclassified.len(),
            found.total,
            "{}: every statement counted once",
            version_name(version)
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_catalog_covers_at_least_200_statements_of_5_0_and_110_of_3_1_1() {
    let cases = loaded();
    let v5 = coverage(&cases, ProtocolVersion::V5).tested.len();
    let v3 = coverage(&cases, ProtocolVersion::V3_1_1).tested.len();
    assert!(v5 >= 200 && v3 >= 110, "covered: 5.0 {v5}/251, 3.1.1 {v3}/140");
}
