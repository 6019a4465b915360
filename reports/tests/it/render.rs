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

/// The `<svg>...</svg>` fragments of a page, in order.
fn svgs(page: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("every svg closes") + start + "</svg>".len();
        found.push(&rest[start..end]);
        rest = &rest[end..];
    }
    found
}

/// The values of attribute `name` (`x1`, `points` ...) in `svg`, in order.
fn attribute_values<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
    let pattern = format!(" {name}=\"");
    svg.match_indices(&pattern)
        .map(|(index, _)| {
            let value = &svg[index + pattern.len()..];
            &value[..value.find('"').expect("attribute values close")]
        })
        .collect()
}

/// Checks that every coordinate in `svg` is a finite number inside its view box, and returns how
/// many it checked.
fn assert_coordinates_inside_the_figure(svg: &str) -> usize {
    let number = |text: &str| -> f64 {
        let value: f64 = text
            .parse()
            .unwrap_or_else(|_| panic!("{text:?} is not a number in:\n{svg}"));
        assert!(value.is_finite(), "{text} in:\n{svg}");
        value
    };
    let width = number(attribute_values(svg, "width")[0]);
    let height = number(attribute_values(svg, "height")[0]);
    let mut xs: Vec<f64> = ["x", "x1", "x2", "cx"]
        .iter()
        .flat_map(|name| attribute_values(svg, name))
        .map(number)
        .collect();
    let mut ys: Vec<f64> = ["y", "y1", "y2", "cy"]
        .iter()
        .flat_map(|name| attribute_values(svg, name))
        .map(number)
        .collect();
    for points in attribute_values(svg, "points") {
        for pair in points.split_whitespace() {
            let (x, y) = pair.split_once(',').expect("x,y");
            xs.push(number(x));
            ys.push(number(y));
        }
    }
    for x in &xs {
        assert!((0.0..=width).contains(x), "x {x} outside 0..={width} in:\n{svg}");
    }
    for y in &ys {
        assert!((0.0..=height).contains(y), "y {y} outside 0..={height} in:\n{svg}");
    }
    xs.len() + ys.len()
}

#[test]
fn html_draws_each_chart_as_an_svg_line_chart_with_a_legend_and_the_percentile_ticks() {
    // Goal: bench's two kinds of chart come out as figures a reader can read. Method: render a
    // report with a time series of two series and a percentile spectrum, and look into each <svg>:
    // its title, its lines, its legend, and the ticks that belong to the data's range.
    let page = html_text(&support::bench_report());
    let figures = svgs(&page);
    assert_eq!(figures.len(), 3, "the verdict bars, then one per chart:\n{page}");
    for figure in &figures {
        assert_well_formed(figure);
    }
    let throughput = figures[1];
    assert!(
        throughput.contains("<title>Throughput over time</title>"),
        "{throughput}"
    );
    assert_eq!(throughput.matches("<polyline ").count(), 2, "{throughput}");
    assert_eq!(
        attribute_values(throughput, "points")[0].split_whitespace().count(),
        3,
        "{throughput}"
    );
    for legend in [">sent</text>", ">received</text>", ">messages/s</text>"] {
        assert!(throughput.contains(legend), "{legend} in:\n{throughput}");
    }
    assert!(
        throughput.contains(">1250</text>") && !throughput.contains(">1500</text>"),
        "y runs to the round maximum just above 1004:\n{throughput}"
    );

    let latency = figures[2];
    assert_eq!(latency.matches("<polyline ").count(), 1, "{latency}");
    for tick in [">0</text>", ">90</text>", ">99</text>", ">99.9</text>", ">max</text>"] {
        assert!(latency.contains(tick), "{tick} in:\n{latency}");
    }
    assert!(!latency.contains(">99.99</text>"), "no tick past the data:\n{latency}");
    assert!(
        page.contains("<figcaption>End-to-end latency by percentile</figcaption>"),
        "{page}"
    );
    assert!(
        !page.contains("<summary>charts</summary>"),
        "drawn charts are not listed again as raw JSON:\n{page}"
    );
}

#[test]
fn html_places_percentiles_a_decade_apart_and_the_maximum_just_past_the_last_one() {
    // Goal: the spectrum is the usual HDR plot: 90, 99 and 99.9 equally far apart, the maximum
    // (p = 100, at infinity on that scale) at finite coordinates a little further right.
    let page = html_text(&support::bench_report());
    let latency = svgs(&page)[2];
    assert!(assert_coordinates_inside_the_figure(latency) > 0);
    let xs: Vec<f64> = attribute_values(latency, "points")[0]
        .split_whitespace()
        .map(|pair| pair.split_once(',').expect("x,y").0.parse().expect("a number"))
        .collect();
    assert_eq!(xs.len(), 6, "0, 50, 90, 99, 99.9, 100");
    let decade = xs[3] - xs[2];
    assert!(decade > 50.0, "{xs:?}");
    assert!(
        (xs[4] - xs[3] - decade).abs() < 0.2,
        "99 to 99.9 is as far as 90 to 99: {xs:?}"
    );
    assert!(
        (xs[2] - xs[0] - decade).abs() < 0.2,
        "0 to 90 is as far as 90 to 99: {xs:?}"
    );
    assert!(
        xs[5] > xs[4] && xs[5] < xs[4] + decade,
        "the maximum just past 99.9: {xs:?}"
    );
}

#[test]
fn html_draws_any_chart_at_finite_coordinates_inside_its_figure() {
    // Goal: no input makes a figure with NaN, infinity, or lines off the picture. Method: edge
    // cases by hand (only maxima, one point, equal values, the extremes of f64, a series long
    // enough to be thinned); `any_chart_draws_inside_its_figure` below tries random ones.
    let spectrum = |points: Vec<(f64, f64)>| Chart {
        title: "edge".to_owned(),
        x_label: "percentile".to_owned(),
        y_label: "µs".to_owned(),
        x_scale: Scale::Percentile,
        series: vec![Series {
            name: "a".to_owned(),
            points,
        }],
    };
    let series = |points: Vec<(f64, f64)>| Chart {
        x_scale: Scale::Linear,
        ..spectrum(points)
    };
    let charts = [
        spectrum(vec![(100.0, 5.0)]),
        spectrum(vec![(100.0, 5.0), (100.0, 7.0)]),
        spectrum(vec![(99.99999999999999, 5.0), (100.0, 6.0)]),
        spectrum(vec![(50.0, 0.0)]),
        series(vec![(3.0, 0.0)]),
        series(vec![(0.0, 2.0), (0.0, 2.0)]),
        series(vec![(-f64::MAX, -f64::MAX), (f64::MAX, f64::MAX)]),
        series(vec![(f64::MIN_POSITIVE, 1e-300), (2.0 * f64::MIN_POSITIVE, 2e-300)]),
        // The smallest subnormal: a span that vanishes when halved.
        series(vec![(0.0, 0.0), (5e-324, 5e-324)]),
        series(
            (0..100_000)
                .map(|second| (f64::from(second), f64::from(second % 97)))
                .collect(),
        ),
    ];
    for chart in charts {
        let mut report = support::report();
        report.set_charts(std::slice::from_ref(&chart));
        let page = html(&report);
        let figure = svgs(&page)[1];
        assert_coordinates_inside_the_figure(figure);
        assert!(
            attribute_values(figure, "points")[0].split_whitespace().count() <= 1_000,
            "long series are thinned: {:?}",
            &chart.series[0].points[..1]
        );
    }
}

fn finite() -> impl proptest::strategy::Strategy<Value = f64> {
    proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO
}

/// A percentile, with its ends (0, and 100, which lies at infinity on the spectrum) likely.
fn percentile() -> impl proptest::strategy::Strategy<Value = f64> {
    proptest::prop_oneof![
        proptest::strategy::Just(0.0),
        proptest::strategy::Just(100.0),
        0.0..=100.0
    ]
}

proptest::proptest! {
    #[test]
    fn any_chart_draws_inside_its_figure(
        spectrum in proptest::bool::ANY,
        points in proptest::collection::vec((finite(), finite(), percentile()), 1..30),
    ) {
        let x_scale = if spectrum { Scale::Percentile } else { Scale::Linear };
        let points = points
            .into_iter()
            .map(|(x, y, percentile)| if spectrum { (percentile, y) } else { (x, y) })
            .collect();
        let mut report = support::report();
        report.set_charts(&[Chart {
            title: "any".to_owned(),
            x_label: String::new(),
            y_label: String::new(),
            x_scale,
            series: vec![Series { name: "a".to_owned(), points }],
        }]);
        assert_coordinates_inside_the_figure(svgs(&html(&report))[1]);
    }
}

#[test]
fn html_escapes_chart_titles_labels_and_series_names() {
    let mut charts = support::charts();
    charts[0].title = "Throughput <script>alert(1)</script>".to_owned();
    charts[0].y_label = "messages & <b>bytes</b>".to_owned();
    charts[0].series[0].name = "sent \"quoted\" <i>".to_owned();
    let mut report = support::bench_report();
    report.set_charts(&charts);
    let raw = html(&report);
    assert!(!raw.contains("<script>"), "{raw}");
    assert!(!raw.contains("<b>") && !raw.contains("<i>"), "{raw}");
    let page = html_text(&report);
    assert!(
        page.contains("<title>Throughput &lt;script&gt;alert(1)&lt;/script&gt;</title>"),
        "{page}"
    );
    assert!(
        page.contains(r#"aria-label="Throughput &lt;script&gt;alert(1)&lt;/script&gt;""#),
        "{page}"
    );
    assert!(page.contains("messages &amp; &lt;b&gt;bytes&lt;/b&gt;"), "{page}");
    assert!(page.contains("sent &quot;quoted&quot; &lt;i&gt;"), "{page}");
    for figure in svgs(&page) {
        assert_well_formed(figure);
    }
}

#[test]
fn html_writes_a_note_instead_of_a_figure_for_a_chart_without_points() {
    let mut charts = support::charts();
    charts[0].series.clear();
    charts[1].series[0].points.clear();
    let mut with_an_empty_series = support::charts().remove(0);
    with_an_empty_series.series[1].points.clear();
    charts.push(with_an_empty_series);
    let mut report = support::bench_report();
    report.set_charts(&charts);
    let page = html_text(&report);
    let figures = svgs(&page);
    assert_eq!(
        figures.len(),
        2,
        "the verdict bars and the chart with one series left:\n{page}"
    );
    assert_eq!(page.matches(r#"<p class="note">No data.</p>"#).count(), 2, "{page}");
    assert!(page.contains("<figcaption>Throughput over time</figcaption>"), "{page}");
    assert_eq!(figures[1].matches("<polyline ").count(), 1, "{}", figures[1]);
    assert!(figures[1].contains(">received (no data)</text>"), "{}", figures[1]);
}

#[test]
fn html_says_why_malformed_charts_cannot_be_drawn_and_keeps_them_as_raw_json() {
    let mut report = support::report();
    report.extra.insert(
        CHARTS_KEY.to_owned(),
        serde_json::json!([{"title": "Throughput over time"}]),
    );
    let page = html_text(&report);
    assert_eq!(svgs(&page).len(), 1, "the verdict bars only:\n{page}");
    assert!(
        page.contains("The charts in report.json cannot be drawn: charts[0]: missing field `x_label`"),
        "{page}"
    );
    assert!(page.contains("<summary>charts</summary>"), "{page}");
}

#[test]
fn markdown_lists_each_chart_as_a_table_of_series_and_points() {
    let text = markdown(&support::bench_report());
    let charts = &text[text.find("## Charts\n").expect("a Charts section")..];
    assert!(
        charts.contains(
            "### Throughput over time\n\n\
             | series | seconds since the start of the measured window | messages/s |\n\
             |---|---:|---:|\n\
             | sent | 0 | 1000 |\n\
             | sent | 1 | 1002 |\n\
             | sent | 2 | 999.5 |\n\
             | received | 0 | 998 |\n"
        ),
        "{charts}"
    );
    assert!(
        charts.contains("| end to end | 99.9 | 900 |\n| end to end | 100 | 1500 |\n"),
        "{charts}"
    );
    assert!(!charts.contains("A sample"), "short series are listed whole:\n{charts}");
    assert!(!text.contains("Other sections in report.json"), "{text}");
}

#[test]
fn markdown_lists_a_sample_of_a_long_series_and_says_so() {
    let mut charts = support::charts();
    charts[0].series[0].points = (0..=3_600).map(|second| (f64::from(second), 1_000.0)).collect();
    let mut report = support::bench_report();
    report.set_charts(&charts);
    let text = markdown(&report);
    assert_eq!(text.matches("| sent |").count(), 12, "{text}");
    assert!(text.contains("| sent | 0 | 1000 |\n| sent | 327 | 1000 |"), "{text}");
    assert!(
        text.contains("| sent | 3600 | 1000 |\n| received |"),
        "first and last are listed:\n{text}"
    );
    assert!(
        text.contains("A sample: sent shows 12 of its 3601 points, evenly spaced from the first to the last"),
        "{text}"
    );
}

#[test]
fn markdown_says_when_a_chart_has_no_data_or_the_charts_cannot_be_read() {
    let mut charts = support::charts();
    charts[1].series.clear();
    let mut report = support::bench_report();
    report.set_charts(&charts);
    let text = markdown(&report);
    assert!(
        text.contains("### End-to-end latency by percentile\n\nNo data.\n"),
        "{text}"
    );

    report.extra.insert(CHARTS_KEY.to_owned(), serde_json::json!("soon"));
    let text = markdown(&report);
    assert!(
        text.contains("The charts in report.json cannot be drawn: charts: expected an array of charts, found a string"),
        "{text}"
    );
    assert!(text.contains("Other sections in report.json: charts."), "{text}");
}
