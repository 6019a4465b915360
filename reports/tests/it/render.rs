//! The renderings: JUnit XML, Markdown, HTML, the terminal line, and the folder of all of them.

use mqtt_reports::render::{JSON_FILE, JUNIT_FILE};
use mqtt_reports::*;

use crate::support;

/// Checks that `xml` is well formed as far as the tests need: tags balance and nest, and no `<`
/// or `&` stands unescaped in text. A tiny check instead of an XML dependency.
fn assert_well_formed(xml: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        for (index, _) in text.match_indices('&') {
            let entity = &text[index..];
            assert!(
                ["&lt;", "&gt;", "&amp;", "&quot;", "&apos;"]
                    .iter()
                    .any(|known| entity.starts_with(known)),
                "unescaped & in {text:?}"
            );
        }
        let end = rest[start..].find('>').expect("every tag closes") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "a < inside tag {tag:?}");
        if tag.starts_with('?') || tag.starts_with('!') {
            // the declaration or a comment
        } else if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "closing tag out of order");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().expect("a tag name"));
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed tags: {open:?}");
}

#[test]
fn junit_has_one_suite_per_area_and_one_testcase_per_case() {
    let xml = junit(&support::report());
    assert_well_formed(&xml);
    assert_eq!(
        xml.matches("<testsuite ").count(),
        4,
        "connect, will, shared, keep-alive:\n{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 6, "{xml}");
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert_eq!(xml.matches("<skipped").count(), 2, "not applicable and skipped:\n{xml}");
    assert!(
        xml.contains(r#"<testsuites name="mqtt-harness sim" tests="6" skipped="2" failures="1" errors="0""#),
        "{xml}"
    );
}

#[test]
fn junit_names_a_case_by_id_version_and_seed_and_carries_its_evidence() {
    let xml = junit(&support::report());
    assert!(
        xml.contains(r#"name="will/delay-cancelled-by-resume [5.0] seed 4711""#),
        "{xml}"
    );
    assert!(xml.contains(r#"name="connect/first-packet [3.1.1]""#), "{xml}");
    assert!(xml.contains("expected: no PUBLISH on will/topic within 6 s"), "{xml}");
    assert!(
        xml.contains("rerun: mqtt-harness sim scenarios/spec/will --seed 4711"),
        "{xml}"
    );
    assert!(
        xml.contains("partition client-a"),
        "the trace is in the failure text:\n{xml}"
    );
    assert!(xml.contains("&lt;script&gt;"), "evidence is escaped:\n{xml}");
    assert!(!xml.contains("<script>"), "{xml}");
    assert!(xml.contains(r#"time="0.012""#), "time from duration_ms:\n{xml}");
}

#[test]
fn junit_skips_not_applicable_cases_with_the_reason_and_passes_informational_ones_with_their_notes() {
    let xml = junit(&support::report());
    assert!(
        xml.contains(r#"message="not applicable: the broker does not offer shared subscriptions""#),
        "{xml}"
    );
    assert!(
        xml.contains("<system-out>note: closed 0.4 s before 1.5 x keep alive"),
        "{xml}"
    );
}

#[test]
fn markdown_lists_the_failure_with_its_rerun_command_and_trace_in_code_blocks() {
    let text = markdown(&support::report());
    assert!(
        text.starts_with("# mqtt-harness sim: reference broker (simulated)\n"),
        "{text}"
    );
    assert!(text.contains("| failed | 1 |"), "{text}");
    let failures = &text[text.find("## Failures").expect("a Failures section")..];
    assert!(
        failures.contains("### will/delay-cancelled-by-resume [5.0] seed 4711"),
        "{failures}"
    );
    assert!(
        failures.contains("- statements: MQTT-3.1.3-9, MQTT-3.1.2-8"),
        "{failures}"
    );
    assert!(
        failures.contains("```sh\nmqtt-harness sim scenarios/spec/will --seed 4711\n```"),
        "{failures}"
    );
    assert!(
        failures.contains("```text\n0.000000  client-a  ->  CONNECT client_id=a will_delay=5\n"),
        "{failures}"
    );
    assert!(
        failures.contains("101000044d5154540502"),
        "raw bytes are in the trace:\n{failures}"
    );
}

#[test]
fn markdown_escapes_pipes_in_table_cells() {
    let text = markdown(&support::report());
    assert!(
        text.contains("| keep-alive/close\\|timing | 5.0 | informational (flaky) |"),
        "{text}"
    );
    assert!(!text.contains("close|timing"), "{text}");
}

#[test]
fn markdown_code_blocks_outlast_backticks_in_the_evidence() {
    let mut report = support::report();
    report.cases[2].command = "echo ```".to_owned();
    report.finish();
    let text = markdown(&report);
    assert!(text.contains("````sh\necho ```\n````"), "{text}");
}

/// The page as a reader sees its text as far as these tests care: minijinja escapes `/` as `&#x2f;`
/// (harmless, browsers show `/`), which the assertions would otherwise have to spell out.
fn html_text(report: &Report) -> String {
    html(report).replace("&#x2f;", "/")
}

#[test]
fn html_is_one_self_contained_file_with_the_summary_numbers() {
    let page = html(&support::report());
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    for external in ["http://", "https://", "<script", "<link", "src="] {
        assert!(!page.contains(external), "{external} in:\n{page}");
    }
    for badge in [
        "2 passed",
        "1 failed",
        "1 not applicable",
        "1 skipped",
        "1 informational",
        "1 flaky",
    ] {
        assert!(page.contains(badge), "{badge} in:\n{page}");
    }
    assert!(page.contains("<style>"), "inline CSS");
    assert!(page.contains("<svg"), "the verdict chart");
    assert_eq!(page.matches("<rect ").count(), 5, "one bar per verdict");
}

#[test]
fn html_shows_each_failure_in_details_with_its_evidence_escaped() {
    let page = html_text(&support::report());
    assert_eq!(page.matches("<details id=").count(), 1, "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(
        page.contains("mqtt-harness sim scenarios/spec/will --seed 4711"),
        "{page}"
    );
    assert!(page.contains("no PUBLISH on will/topic within 6 s"), "{page}");
    assert!(page.contains("partition client-a"), "{page}");
    assert!(
        page.contains(r##"<a href="#failure-2">will/delay-cancelled-by-resume</a>"##),
        "the row links its details:\n{page}"
    );
    assert!(
        !html(&support::report()).contains("<script>"),
        "escaped before the / is restored"
    );
}

#[test]
fn html_shows_extra_sections_and_renders_an_empty_report() {
    let mut report = Report::new(Kind::Check, "0.1.0", "2026-11-29T09:10:55Z", "mqtt://<broker>");
    report
        .extra
        .insert("coverage".to_owned(), serde_json::json!({"statements": 12}));
    let page = html_text(&report);
    assert!(page.contains("mqtt://&lt;broker&gt;"), "{page}");
    assert!(page.contains("<summary>coverage</summary>"), "{page}");
    assert!(page.contains("0 passed"), "{page}");
}

#[test]
fn every_rendering_is_the_same_for_the_same_report() {
    let report = support::report();
    assert_eq!(html(&report), html(&report));
    assert_eq!(junit(&report), junit(&report));
    assert_eq!(markdown(&report), markdown(&report));
}

#[test]
fn the_terminal_line_counts_every_verdict_and_flaky_cases_only_when_there_are_some() {
    let mut summary = Summary {
        passed: 41,
        failed: 2,
        not_applicable: 3,
        skipped: 0,
        informational: 1,
        flaky: 0,
    };
    assert_eq!(
        terminal_summary_line(&summary),
        "41 passed, 2 failed, 3 not applicable, 0 skipped, 1 informational"
    );
    summary.flaky = 2;
    assert_eq!(
        terminal_summary_line(&summary),
        "41 passed, 2 failed, 3 not applicable, 0 skipped, 1 informational, 2 flaky"
    );
}

#[test]
fn write_dir_creates_the_folder_and_writes_the_four_files() {
    let dir = support::temporary_dir("write-dir").join("nested/results");
    let report = support::report();
    let paths = write_dir(&dir, &report).expect("written");
    let names: Vec<String> = paths
        .iter()
        .map(|path| path.file_name().expect("a file").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.json", "junit.xml", "report.html", "report.md"]);
    for path in &paths {
        assert!(
            std::fs::metadata(path).expect("exists").len() > 0,
            "{} is empty",
            path.display()
        );
    }
    let json = std::fs::read_to_string(dir.join(JSON_FILE)).expect("report.json");
    assert_eq!(Report::from_json(&json).expect("reads back"), report);
    assert_eq!(
        std::fs::read_to_string(dir.join(JUNIT_FILE)).expect("junit.xml"),
        junit(&report)
    );
    let _ = std::fs::remove_dir_all(
        dir.parent()
            .and_then(|parent| parent.parent())
            .expect("the test folder"),
    );
}
