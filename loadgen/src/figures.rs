//! A run's figures, as they go into the report (`report.json`, `--json`): throughput, latency
//! percentiles, exact accounting, the generator's own cost, the timeline, and the histograms
//! themselves, so that shards merge exactly (histograms are added, never percentiles averaged).
//!
//! In the report the figures are top-level keys beside the fixed ones (`throughput`,
//! `latency_us`, `lost`, ...); [`Figures::into_report`] and [`Figures::from_report`] move them in
//! and out. A histogram is stored as its non-empty buckets, `[[value, count], ...]` with each
//! bucket's highest value: recording those values again into a histogram of the same precision
//! puts every count back in its bucket, so merging loses nothing.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use mqtt_protocol::QoS;
use mqtt_reports::{Case, Chart, Report, Scale, Series, Verdict};
use serde::{Deserialize, Serialize};

use crate::measure;
use crate::system::Machine;

/// The version of the figures' layout in a report: a reader refuses another.
pub const FIGURES_VERSION: u32 = 1;

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let at = |quantile: f64| histogram.value_at_quantile(quantile);
        Percentiles {
            count: histogram.len(),
            min: histogram.min(),
            mean: (histogram.mean() * 10.0).round() / 10.0,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            p9999: at(0.9999),
            max: histogram.max(),
        }
    }
}

/// Messages per second over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// What `--rate` asked for (this shard's part of it).
    pub requested_per_s: f64,
    /// Handed to the broker, by intended send time.
    pub sent_per_s: f64,
    /// Delivered to subscribers (duplicates aside), by arrival time.
    pub received_per_s: f64,
    /// Acknowledged by the broker (QoS 1 and 2).
    pub acknowledged_per_s: f64,
}

/// What the generator itself cost over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Generator {
    pub cpu_seconds: f64,
    /// Of `cpu_seconds`, the time in the generator's own code (the rest is the kernel's: system
    /// calls, and on loopback the TCP work of both ends of each segment the generator sends).
    pub user_cpu_seconds: f64,
    /// CPU per message delivered in the window, publishing and subscribing side together.
    pub cpu_us_per_message: f64,
    /// Of that, in the generator's own code.
    pub user_cpu_us_per_message: f64,
    /// Of the machine's cores, the share the generator used.
    pub cpu_share: f64,
    pub rss_kib: u64,
}

/// One second of the run (warm-up included, `t` counted from the start of the schedule).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimelineSecond {
    pub t: u64,
    pub measured: bool,
    pub scheduled: u64,
    pub sent: u64,
    pub received: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The second's latency histogram (two significant digits), for exact merging.
    pub histogram: Vec<(u64, u64)>,
}

/// One stream (a publisher as one receiver saw it) that lost, duplicated or reordered messages.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamIssue {
    pub publisher: u64,
    /// The subscriber (for a shared group, its lowest-numbered member).
    pub subscriber: u64,
    pub shared: bool,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

/// The most streams with issues a report lists (the totals count them all).
pub const STREAM_ISSUES_MAX: usize = 100;

/// The run's histograms, bucket by bucket (see the module documentation).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Histograms {
    pub latency: Vec<(u64, u64)>,
    pub ack_latency: Vec<(u64, u64)>,
    pub connect_latency: Vec<(u64, u64)>,
    pub schedule_lag: Vec<(u64, u64)>,
}

/// Everything a bench run measured. See the module documentation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Figures {
    pub figures_version: u32,
    /// Shards this result adds up (1 for one process).
    pub shards: u64,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    pub throughput: Throughput,
    /// End-to-end: from the intended send time to the delivery, for messages due in the window.
    pub latency_us: Percentiles,
    /// From the intended send time to the PUBACK (QoS 1) or PUBCOMP (QoS 2).
    pub ack_latency_us: Percentiles,
    /// TCP connect to CONNACK (and SUBACK, for subscribers).
    pub connect_latency_us: Percentiles,
    /// How late the generator handed each message to its connection.
    pub schedule_lag_us: Percentiles,
    /// Messages due by the schedule (warm-up and window).
    pub scheduled: u64,
    pub sent: u64,
    /// Deliveries owed: each message sent times the subscribers (or shared groups) of its topic.
    pub expected: u64,
    /// Deliveries received, duplicates aside.
    pub received: u64,
    /// Deliveries owed and never received.
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Messages due that the generator could not hand to the broker (it pushed back).
    pub not_offered: u64,
    /// Messages not of this run.
    pub foreign: u64,
    /// QoS 1/2 messages the broker refused (reason code 0x80 or more).
    pub refused: u64,
    /// QoS 1/2 messages never acknowledged.
    pub unacknowledged: u64,
    /// Per publisher and receiver, the streams that lost, duplicated or reordered messages (at
    /// most [`STREAM_ISSUES_MAX`], the worst first).
    #[serde(default)]
    pub stream_issues: Vec<StreamIssue>,
    pub generator: Generator,
    pub machine: Machine,
    pub timeline: Vec<TimelineSecond>,
    pub histograms: Histograms,
    /// Connections that ended early, and why.
    pub errors: Vec<String>,
    /// What the reader should know before trusting the figures.
    pub warnings: Vec<String>,
}

/// Worst first (most lost, then duplicated, then reordered), at most [`STREAM_ISSUES_MAX`].
pub fn sort_issues(issues: &mut Vec<StreamIssue>) {
    issues.sort_by_key(|issue| std::cmp::Reverse((issue.lost, issue.duplicated, issue.reordered)));
    issues.truncate(STREAM_ISSUES_MAX);
}

/// A histogram's non-empty buckets.
pub fn buckets(histogram: &Histogram<u64>) -> Vec<(u64, u64)> {
    histogram
        .iter_recorded()
        .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
        .collect()
}

/// Adds `buckets` to `histogram`.
pub fn add_buckets(histogram: &mut Histogram<u64>, buckets: &[(u64, u64)]) {
    for &(value, count) in buckets {
        histogram.saturating_record_n(value.min(measure::LATENCY_US_MAX), count);
    }
}

/// A histogram of three significant digits holding `buckets`.
pub fn histogram_of(buckets: &[(u64, u64)]) -> Histogram<u64> {
    let mut histogram = measure::histogram();
    add_buckets(&mut histogram, buckets);
    histogram
}

impl Figures {
    /// Puts the figures into `report` as top-level keys, with the charts.
    pub fn into_report(self, report: &mut Report) {
        let charts = self.charts();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&self) {
            report.extra.extend(map);
        }
        report.set_charts(&charts);
    }

    /// The figures of a bench report.
    pub fn from_report(report: &Report) -> Result<Figures, String> {
        let map: serde_json::Map<String, serde_json::Value> = report
            .extra
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let version = map.get("figures_version").and_then(serde_json::Value::as_u64);
        match version {
            Some(version) if version == u64::from(FIGURES_VERSION) => {}
            Some(version) => {
                return Err(format!(
                    "bench figures version {version}: this mqtt-harness reads version {FIGURES_VERSION}"
                ))
            }
            None => return Err("not a bench report: it has no figures_version".into()),
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|error| format!("bench figures: {error}"))
    }

    /// Throughput over time and the latency spectrum.
    pub fn charts(&self) -> Vec<Chart> {
        let series = |name: &str, value: fn(&TimelineSecond) -> u64| Series {
            name: name.to_owned(),
            points: self
                .timeline
                .iter()
                .map(|second| (second.t as f64, value(second) as f64))
                .collect(),
        };
        let throughput = Chart {
            title: "Throughput over time (warm-up and drain included)".into(),
            x_label: "seconds since the schedule started".into(),
            y_label: "messages/s".into(),
            x_scale: Scale::Linear,
            series: vec![
                series("sent", |second| second.sent),
                series("received", |second| second.received),
            ],
        };
        let latency_over_time = Chart {
            title: "End-to-end latency over time".into(),
            x_label: "seconds since the schedule started".into(),
            y_label: "µs".into(),
            x_scale: Scale::Linear,
            series: vec![
                series("p50", |second| second.p50_us),
                series("p99", |second| second.p99_us),
            ],
        };
        let spectrum = |name: &str, buckets: &[(u64, u64)]| {
            let histogram = histogram_of(buckets);
            let points = if histogram.is_empty() {
                Vec::new()
            } else {
                [
                    0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
                ]
                .iter()
                .map(|&percentile| (percentile, histogram.value_at_percentile(percentile) as f64))
                .collect()
            };
            Series {
                name: name.to_owned(),
                points,
            }
        };
        let mut latency_series = vec![spectrum("end to end", &self.histograms.latency)];
        if !self.histograms.ack_latency.is_empty() {
            latency_series.push(spectrum("acknowledgement", &self.histograms.ack_latency));
        }
        let latency = Chart {
            title: "Latency by percentile (measured window)".into(),
            x_label: "percentile".into(),
            y_label: "µs".into(),
            x_scale: Scale::Percentile,
            series: latency_series,
        };
        vec![throughput, latency_over_time, latency]
    }

    /// Adds shard results up: counts and rates are summed, histograms added and their percentiles
    /// read again, the timeline added second by second.
    pub fn merge(all: &[Figures]) -> Result<Figures, String> {
        let first = all.first().ok_or("no figures to merge")?;
        let mut merged = Figures {
            figures_version: FIGURES_VERSION,
            machine: first.machine.clone(),
            window_s: first.window_s,
            ..Figures::default()
        };
        let mut latency = measure::histogram();
        let mut ack_latency = measure::histogram();
        let mut connect_latency = measure::histogram();
        let mut schedule_lag = measure::histogram();
        let mut seconds: BTreeMap<u64, (TimelineSecond, Histogram<u64>)> = BTreeMap::new();
        let mut cpu_us_weighted = 0.0;
        for figures in all {
            merged.shards += figures.shards.max(1);
            merged.window_s = merged.window_s.max(figures.window_s);
            let throughput = &mut merged.throughput;
            throughput.requested_per_s += figures.throughput.requested_per_s;
            throughput.sent_per_s += figures.throughput.sent_per_s;
            throughput.received_per_s += figures.throughput.received_per_s;
            throughput.acknowledged_per_s += figures.throughput.acknowledged_per_s;
            merged.scheduled += figures.scheduled;
            merged.sent += figures.sent;
            merged.expected += figures.expected;
            merged.received += figures.received;
            merged.lost += figures.lost;
            merged.duplicated += figures.duplicated;
            merged.reordered += figures.reordered;
            merged.not_offered += figures.not_offered;
            merged.foreign += figures.foreign;
            merged.refused += figures.refused;
            merged.unacknowledged += figures.unacknowledged;
            merged.generator.cpu_seconds += figures.generator.cpu_seconds;
            merged.generator.user_cpu_seconds += figures.generator.user_cpu_seconds;
            merged.generator.rss_kib += figures.generator.rss_kib;
            merged.generator.cpu_share += figures.generator.cpu_share;
            cpu_us_weighted += figures.generator.cpu_seconds * 1e6;
            add_buckets(&mut latency, &figures.histograms.latency);
            add_buckets(&mut ack_latency, &figures.histograms.ack_latency);
            add_buckets(&mut connect_latency, &figures.histograms.connect_latency);
            add_buckets(&mut schedule_lag, &figures.histograms.schedule_lag);
            for second in &figures.timeline {
                let entry = seconds.entry(second.t).or_insert_with(|| {
                    (
                        TimelineSecond {
                            t: second.t,
                            measured: second.measured,
                            ..TimelineSecond::default()
                        },
                        measure::coarse_histogram(),
                    )
                });
                entry.0.scheduled += second.scheduled;
                entry.0.sent += second.sent;
                entry.0.received += second.received;
                for &(value, count) in &second.histogram {
                    entry.1.saturating_record_n(value.min(measure::LATENCY_US_MAX), count);
                }
            }
            merged.errors.extend(figures.errors.iter().cloned());
            merged.stream_issues.extend(figures.stream_issues.iter().cloned());
            for warning in &figures.warnings {
                if !merged.warnings.contains(warning) {
                    merged.warnings.push(warning.clone());
                }
            }
        }
        sort_issues(&mut merged.stream_issues);
        let delivered = merged.throughput.received_per_s * merged.window_s;
        if delivered > 0.0 {
            merged.generator.cpu_us_per_message = cpu_us_weighted / delivered;
            merged.generator.user_cpu_us_per_message = merged.generator.user_cpu_seconds * 1e6 / delivered;
        }
        merged.latency_us = Percentiles::of(&latency);
        merged.ack_latency_us = Percentiles::of(&ack_latency);
        merged.connect_latency_us = Percentiles::of(&connect_latency);
        merged.schedule_lag_us = Percentiles::of(&schedule_lag);
        merged.histograms = Histograms {
            latency: buckets(&latency),
            ack_latency: buckets(&ack_latency),
            connect_latency: buckets(&connect_latency),
            schedule_lag: buckets(&schedule_lag),
        };
        merged.timeline = seconds
            .into_values()
            .map(|(mut second, histogram)| {
                second.p50_us = if histogram.is_empty() {
                    0
                } else {
                    histogram.value_at_quantile(0.5)
                };
                second.p99_us = if histogram.is_empty() {
                    0
                } else {
                    histogram.value_at_quantile(0.99)
                };
                second.histogram = buckets(&histogram);
                second
            })
            .collect();
        Ok(merged)
    }
}

/// The per-second latency histograms as an HDR interval log (the standard text format: one line
/// per second with the histogram base64-encoded, V2 deflated), values in microseconds, for
/// HdrHistogram's own plotting and analysis tools.
pub fn interval_log(figures: &Figures) -> Result<String, String> {
    use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut text = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("mqtt-harness bench: end-to-end latency in microseconds, one histogram per second")
        .add_comment("of the schedule (warm-up and drain included; the measured window is tagged `window`)")
        .begin_log_with(&mut text, &mut serializer)
        .map_err(|error| format!("cannot write the interval log: {error}"))?;
    for second in &figures.timeline {
        let mut histogram = measure::coarse_histogram();
        for &(value, count) in &second.histogram {
            histogram.saturating_record_n(value.min(measure::LATENCY_US_MAX), count);
        }
        let tag = if second.measured {
            hdrhistogram::serialization::interval_log::Tag::new("window")
        } else {
            None
        };
        writer
            .write_histogram(
                &histogram,
                std::time::Duration::from_secs(second.t),
                std::time::Duration::from_secs(1),
                tag,
            )
            .map_err(|error| format!("cannot write the interval log: {error}"))?;
    }
    drop(writer);
    String::from_utf8(text).map_err(|error| format!("the interval log is not text: {error}"))
}

/// Judges the figures against what the run's QoS promises, as report cases:
///
/// - `delivery/loss`: no delivery owed may be lost at QoS 1 and 2 (unless `allow_loss`); at QoS 0
///   loss is allowed and only reported;
/// - `delivery/duplicates`: none at QoS 2 (exactly once); reported at QoS 1 (at least once allows
///   them) and QoS 0;
/// - `delivery/order`: messages overtaking others on an ordered stream, reported;
/// - `rate/offered`: every message due was handed to the broker, at 95% or more of the requested
///   rate in the window;
/// - `run/connections`: no connection ended before the run did.
pub fn verdicts(figures: &Figures, qos: QoS, allow_loss: bool, version: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut case = |id: &str, title: String, verdict: Verdict, message: String| {
        let mut case = Case::new(id, version, verdict);
        case.title = title;
        case.evidence.message = message;
        cases.push(case);
    };
    let qos_number = qos as u8;
    let loss_verdict = match (figures.lost, qos) {
        (0, _) => Verdict::Pass,
        (_, QoS::AtMostOnce) => Verdict::Informational,
        _ if allow_loss => Verdict::Informational,
        _ => Verdict::Fail,
    };
    case(
        "delivery/loss",
        format!("every delivery owed at QoS {qos_number} arrived"),
        loss_verdict,
        format!("{} of {} deliveries owed were lost", figures.lost, figures.expected),
    );
    let duplicate_verdict = match (figures.duplicated, qos) {
        (0, _) => Verdict::Pass,
        (_, QoS::ExactlyOnce) => Verdict::Fail,
        _ => Verdict::Informational,
    };
    case(
        "delivery/duplicates",
        format!("no delivery arrived twice where QoS {qos_number} forbids it"),
        duplicate_verdict,
        format!("{} deliveries arrived more than once", figures.duplicated),
    );
    case(
        "delivery/order",
        "messages of one publisher on one topic arrived in order".into(),
        if figures.reordered == 0 {
            Verdict::Pass
        } else {
            Verdict::Informational
        },
        format!("{} deliveries overtook an earlier message", figures.reordered),
    );
    let requested = figures.throughput.requested_per_s;
    let offered = figures.not_offered == 0 && figures.throughput.sent_per_s >= requested * RATE_OFFERED_SHARE;
    case(
        "rate/offered",
        "the requested rate was offered to the broker".into(),
        if offered { Verdict::Pass } else { Verdict::Fail },
        format!(
            "{:.0} of {:.0} messages/s requested were sent in the window; {} messages due could not be handed to the broker (it pushed back, or the generator fell behind)",
            figures.throughput.sent_per_s, requested, figures.not_offered
        ),
    );
    case(
        "run/connections",
        "every connection lasted the whole run".into(),
        if figures.errors.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        figures.errors.first().cloned().map_or_else(String::new, |first| {
            format!("{} connections ended early; the first: {first}", figures.errors.len())
        }),
    );
    cases
}

/// Merges bench reports of one run's shards into one: the report model's own merge (kind, target,
/// parameters), the figures added exactly, the cases judged again on the merged figures, the
/// charts drawn again.
pub fn merge_reports(reports: Vec<Report>) -> Result<Report, String> {
    // Connection and session workloads carry no message figures: their reports merge as any do.
    if reports
        .first()
        .is_some_and(|report| !report.extra.contains_key("figures_version"))
    {
        return mqtt_reports::merge(reports).map_err(|error| error.to_string());
    }
    check_shards(&reports)?;
    let figures: Vec<Figures> = reports
        .iter()
        .enumerate()
        .map(|(index, report)| Figures::from_report(report).map_err(|error| format!("input {index}: {error}")))
        .collect::<Result<_, _>>()?;
    let merged_figures = Figures::merge(&figures)?;
    let first = reports.first().ok_or("no reports to merge")?;
    let qos = match first.parameters.get("qos").and_then(serde_json::Value::as_u64) {
        Some(0) => QoS::AtMostOnce,
        Some(1) => QoS::AtLeastOnce,
        Some(2) => QoS::ExactlyOnce,
        _ => return Err("the reports do not say their QoS (parameters.qos)".into()),
    };
    let allow_loss = first
        .parameters
        .get("allow_loss")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let version = first.cases.first().map(|case| case.version.clone()).unwrap_or_default();
    let mut merged = mqtt_reports::merge(reports).map_err(|error| error.to_string())?;
    merged.cases.clear();
    for case in verdicts(&merged_figures, qos, allow_loss, &version) {
        merged.push(case);
    }
    merged.finish();
    merged_figures.into_report(&mut merged);
    Ok(merged)
}

/// Refuses reports that are not the shards of one run: a workload parameter that differs, a
/// shard given twice, or one missing.
fn check_shards(reports: &[Report]) -> Result<(), String> {
    let Some(first) = reports.first() else {
        return Err("no reports to merge".into());
    };
    for (index, report) in reports.iter().enumerate().skip(1) {
        for (key, value) in &first.parameters {
            if matches!(key.as_str(), "shard" | "start_at" | "max_rate") {
                continue;
            }
            let other = report.parameters.get(key);
            if other != Some(value) {
                return Err(format!(
                    "input {index} ran another workload: {key} is {} there and {value} in input 0; only shards of one run merge",
                    other.map_or_else(|| "absent".to_owned(), ToString::to_string)
                ));
            }
        }
    }
    let mut count_expected = None;
    let mut seen = std::collections::BTreeSet::new();
    for (index, report) in reports.iter().enumerate() {
        let shard = report
            .parameters
            .get("shard")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| text.parse::<crate::workload::Shard>().ok())
            .ok_or_else(|| format!("input {index} does not say which shard it is (parameters.shard)"))?;
        if *count_expected.get_or_insert(shard.count) != shard.count {
            return Err(format!("input {index} is shard {shard}, of another split than input 0"));
        }
        if !seen.insert(shard.index) {
            return Err(format!("shard {shard} is given twice (input {index})"));
        }
    }
    let count = count_expected.unwrap_or(1);
    let missing: Vec<String> = (0..count)
        .filter(|index| !seen.contains(index))
        .map(|index| format!("{index}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shards {} are missing: the merged figures would be those of part of the run",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The share of the requested rate a run must send in its window.
pub const RATE_OFFERED_SHARE: f64 = 0.95;

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(values: &[u64], received: u64) -> Figures {
        let mut latency = measure::histogram();
        for &value in values {
            latency.record(value).unwrap();
        }
        let mut second = measure::coarse_histogram();
        second.record(values[0]).unwrap();
        Figures {
            figures_version: FIGURES_VERSION,
            shards: 1,
            window_s: 1.0,
            throughput: Throughput {
                received_per_s: received as f64,
                ..Throughput::default()
            },
            received,
            expected: received + 1,
            lost: 1,
            latency_us: Percentiles::of(&latency),
            histograms: Histograms {
                latency: buckets(&latency),
                ..Histograms::default()
            },
            timeline: vec![TimelineSecond {
                t: 0,
                measured: true,
                received,
                histogram: buckets(&second),
                ..TimelineSecond::default()
            }],
            ..Figures::default()
        }
    }

    #[test]
    fn merged_histograms_equal_the_sum_of_the_shards_and_percentiles_are_read_again() {
        let one = shard(&[100, 200, 300], 3);
        let two = shard(&[10_000, 20_000], 2);
        let merged = Figures::merge(&[one.clone(), two.clone()]).unwrap();
        let mut sum = histogram_of(&one.histograms.latency);
        sum.add(histogram_of(&two.histograms.latency)).unwrap();
        assert_eq!(histogram_of(&merged.histograms.latency), sum);
        assert_eq!(merged.latency_us, Percentiles::of(&sum));
        assert_eq!(
            (merged.received, merged.expected, merged.lost, merged.shards),
            (5, 7, 2, 2)
        );
        assert_eq!(merged.throughput.received_per_s, 5.0);
        assert_eq!(merged.timeline.len(), 1);
        assert_eq!(merged.timeline[0].received, 5);
        assert!(
            merged.latency_us.p99 >= 19_000,
            "the slow shard's tail shows: {:?}",
            merged.latency_us
        );
    }

    #[test]
    fn the_interval_log_has_one_histogram_per_second_that_reads_back() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        let figures = Figures {
            timeline: vec![
                TimelineSecond {
                    t: 0,
                    histogram: vec![(100, 3)],
                    ..TimelineSecond::default()
                },
                TimelineSecond {
                    t: 1,
                    measured: true,
                    histogram: vec![(200, 5)],
                    ..TimelineSecond::default()
                },
            ],
            ..Figures::default()
        };
        let log = interval_log(&figures).unwrap();
        let intervals: Vec<_> = IntervalLogIterator::new(log.as_bytes())
            .filter_map(|entry| match entry {
                Ok(LogEntry::Interval(interval)) => Some(interval),
                _ => None,
            })
            .collect();
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[1].tag().map(|tag| tag.as_str()), Some("window"));
        assert_eq!(intervals[1].start_timestamp(), std::time::Duration::from_secs(1));
    }

    #[test]
    fn only_all_the_shards_of_one_run_merge() {
        let shard = |text: &str, rate: f64| {
            let mut report = Report::new(mqtt_reports::Kind::Bench, "0", "2026-11-29T00:00:00Z", "mqtt://x");
            report.parameters.insert("shard".into(), serde_json::json!(text));
            report.parameters.insert("rate".into(), serde_json::json!(rate));
            report
        };
        assert_eq!(check_shards(&[shard("0/2", 10.0), shard("1/2", 10.0)]), Ok(()));
        let twice = check_shards(&[shard("0/2", 10.0), shard("0/2", 10.0)]).unwrap_err();
        assert!(twice.contains("given twice"), "{twice}");
        let missing = check_shards(&[shard("0/3", 10.0), shard("2/3", 10.0)]).unwrap_err();
        assert!(missing.contains("1/3 are missing"), "{missing}");
        let other = check_shards(&[shard("0/2", 10.0), shard("1/2", 20.0)]).unwrap_err();
        assert!(other.contains("rate is 20.0 there"), "{other}");
        let split = check_shards(&[shard("0/2", 10.0), shard("1/3", 10.0)]).unwrap_err();
        assert!(split.contains("another split"), "{split}");
    }

    #[test]
    fn buckets_round_trip_exactly() {
        let mut histogram = measure::histogram();
        for value in [1, 7, 999, 1_000, 1_001, 123_456, 98_765_432] {
            histogram.record_n(value, value % 7 + 1).unwrap();
        }
        assert_eq!(histogram_of(&buckets(&histogram)), histogram);
    }

    #[test]
    fn figures_go_into_a_report_and_come_back() {
        let figures = shard(&[100], 1);
        let mut report = Report::new(mqtt_reports::Kind::Bench, "0", "2026-11-29T00:00:00Z", "mqtt://x");
        figures.clone().into_report(&mut report);
        assert!(report.extra.contains_key("latency_us") && report.extra.contains_key("lost"));
        assert_eq!(report.charts().unwrap().len(), 3);
        let back = Report::from_json(&report.to_json_pretty()).unwrap();
        assert_eq!(Figures::from_report(&back).unwrap(), figures);
        let mut other = back.clone();
        other.extra.insert("figures_version".into(), serde_json::json!(99));
        assert!(Figures::from_report(&other).unwrap_err().contains("version 99"));
    }
}
