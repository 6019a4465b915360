//! The statement tables (`conformance/statements/*.tsv`), checked row by row from their raw text,
//! and the parser of `mqtt_conformance::statements` checked against them and against broken input.

use std::collections::HashMap;

use mqtt_conformance::statements::{parse, section_of, Level, ParseErrorKind, HEADER, V3_1_1_TSV, V5_0_TSV};

/// Both tables with their version and the number of numbered statements its specification has.
const TABLES: [(&str, &str, usize); 2] = [("5.0", V5_0_TSV, 251), ("3.1.1", V3_1_1_TSV, 140)];

/// The rows of a table after its comments and header: (1-based line number, tab-separated fields).
fn rows(table: &str) -> Vec<(usize, Vec<&str>)> {
    let mut lines = table.lines().enumerate().filter(|(_, line)| !line.starts_with('#'));
    let (_, header) = lines.next().expect("a header line after the comments");
    assert_eq!(header, HEADER, "the header line");
    lines
        .map(|(index, line)| (index + 1, line.split('\t').collect()))
        .collect()
}

#[test]
fn every_row_has_four_tab_separated_fields() {
    for (version, table, _) in TABLES {
        for (line, fields) in rows(table) {
            assert_eq!(fields.len(), 4, "{version} line {line}: {fields:?}");
        }
    }
}

#[test]
fn ids_are_unique_within_each_version() {
    for (version, table, _) in TABLES {
        let mut first_line_of = HashMap::new();
        for (line, fields) in rows(table) {
            if let Some(first) = first_line_of.insert(fields[0], line) {
                panic!("{version} {} on lines {first} and {line}", fields[0]);
            }
        }
    }
}

#[test]
fn ids_have_the_shape_mqtt_dotted_section_dash_number() {
    for (version, table, _) in TABLES {
        for (line, fields) in rows(table) {
            let id = fields[0];
            let rest = id
                .strip_prefix("MQTT-")
                .unwrap_or_else(|| panic!("{version} line {line}: {id}"));
            let (section, number) = rest
                .rsplit_once('-')
                .unwrap_or_else(|| panic!("{version} line {line}: {id}"));
            let decimal = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
            assert!(
                section.split('.').count() >= 2,
                "{version} line {line}: {id} has no dotted section"
            );
            assert!(section.split('.').all(decimal), "{version} line {line}: {id}");
            assert!(decimal(number), "{version} line {line}: {id}");
        }
    }
}

#[test]
fn the_section_column_is_the_section_inside_the_id() {
    for (version, table, _) in TABLES {
        for (line, fields) in rows(table) {
            let (id, section) = (fields[0], fields[1]);
            assert_eq!(section_of(id), Some(section), "{version} line {line}: {id}");
        }
    }
}

#[test]
fn the_level_is_must_should_or_may() {
    for (version, table, _) in TABLES {
        for (line, fields) in rows(table) {
            assert!(
                ["MUST", "SHOULD", "MAY"].contains(&fields[2]),
                "{version} line {line}: {:?}",
                fields[2]
            );
        }
    }
}

#[test]
fn summaries_are_non_empty_single_lines_without_tabs() {
    for (version, table, _) in TABLES {
        for (line, fields) in rows(table) {
            // A tab inside a summary would show up as a fifth field.
            assert_eq!(fields.len(), 4, "{version} line {line}");
            let summary = fields[3];
            assert!(!summary.trim().is_empty(), "{version} line {line}: empty summary");
            assert!(!summary.contains('\r'), "{version} line {line}: carriage return");
            // "About 160 characters" is the house limit; a little slack, not a second paragraph.
            assert!(
                summary.chars().count() <= 170,
                "{version} line {line}: {} characters",
                summary.len()
            );
        }
    }
}

#[test]
fn the_tables_hold_251_statements_of_5_0_and_140_of_3_1_1() {
    for (version, table, count) in TABLES {
        assert_eq!(rows(table).len(), count, "{version}");
    }
}

#[test]
fn the_parser_reads_both_tables_whole() {
    for (version, table, count) in TABLES {
        let statements = parse(table).unwrap_or_else(|error| panic!("{version}: {error}"));
        assert_eq!(statements.len(), count, "{version}");
    }
    let v5 = parse(V5_0_TSV).expect("the 5.0 table parses");
    let keep_alive = v5.iter().find(|s| s.id == "MQTT-3.1.2-22").expect("5.0 MQTT-3.1.2-22");
    assert_eq!((keep_alive.section, keep_alive.level), ("3.1.2", Level::Must));
    assert!(keep_alive.summary.starts_with("Server:"), "{}", keep_alive.summary);
}

#[test]
fn the_parser_refuses_each_kind_of_broken_row() {
    let table = |rows: &str| format!("# a comment\n{HEADER}\n{rows}");
    let cases = [
        ("MQTT-1.2.3-1\t1.2.3\tMUST", ParseErrorKind::FieldCount { found: 3 }),
        (
            "MQTT-1.2.3-1\t1.2.3\tMUST\ta\tb",
            ParseErrorKind::FieldCount { found: 5 },
        ),
        (
            "MQTT-1-2.3-1\t1.2.3\tMUST\ta",
            ParseErrorKind::InvalidId {
                id: "MQTT-1-2.3-1".into(),
            },
        ),
        (
            "MQTT-1.2.3\t1.2\tMUST\ta",
            ParseErrorKind::InvalidId {
                id: "MQTT-1.2.3".into(),
            },
        ),
        (
            "MQTT-3-1\t3\tMUST\ta",
            ParseErrorKind::InvalidId { id: "MQTT-3-1".into() },
        ),
        (
            "MQTT-1.2.3-1\t1.2.4\tMUST\ta",
            ParseErrorKind::SectionMismatch {
                id: "MQTT-1.2.3-1".into(),
                section: "1.2.4".into(),
            },
        ),
        (
            "MQTT-1.2.3-1\t1.2.3\tMUST NOT\ta",
            ParseErrorKind::InvalidLevel {
                level: "MUST NOT".into(),
            },
        ),
        ("MQTT-1.2.3-1\t1.2.3\tMUST\t ", ParseErrorKind::EmptySummary),
    ];
    for (row, kind) in cases {
        let error = parse(&table(row)).expect_err(row);
        assert_eq!((error.line, error.kind), (3, kind), "{row:?}");
    }
    let duplicate = table("MQTT-1.2.3-1\t1.2.3\tMUST\ta\nMQTT-1.2.3-1\t1.2.3\tMAY\tb");
    let error = parse(&duplicate).expect_err("a duplicate id");
    assert_eq!(
        (error.line, error.kind),
        (
            4,
            ParseErrorKind::DuplicateId {
                id: "MQTT-1.2.3-1".into(),
                first_line: 3
            }
        )
    );
    let headless = parse("# only a comment\nMQTT-1.2.3-1\t1.2.3\tMUST\ta").expect_err("no header");
    assert_eq!((headless.line, headless.kind), (2, ParseErrorKind::MissingHeader));
    assert_eq!(parse("").expect_err("empty").kind, ParseErrorKind::MissingHeader);
}

#[test]
fn the_parser_accepts_a_table_of_comments_and_header_alone() {
    assert_eq!(parse(&format!("# nothing yet\n{HEADER}\n")), Ok(Vec::new()));
}
