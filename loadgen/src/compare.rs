//! `--compare`: the same workload against two brokers in alternation (A B, then B A, ...), so that
//! drift on a shared machine weighs on both alike; each figure is the median of its runs, and the
//! ratio A/B is given for each.

use crate::figures::Figures;

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: &'static str,
    pub a: f64,
    pub b: f64,
}

impl Row {
    /// A/B, or `-` when B is 0.
    pub fn ratio(&self) -> Option<f64> {
        (self.b != 0.0).then(|| self.a / self.b)
    }

    pub fn ratio_text(&self) -> String {
        self.ratio()
            .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"))
    }
}

/// Reads one figure from a run.
type Read = fn(&Figures) -> f64;

/// The figures compared, with how to read each from a run.
const FIGURES: &[(&str, Read)] = &[
    ("received msgs/s", |f| f.throughput.received_per_s),
    ("sent msgs/s", |f| f.throughput.sent_per_s),
    ("latency p50 µs", |f| f.latency_us.p50 as f64),
    ("latency p99 µs", |f| f.latency_us.p99 as f64),
    ("latency p99.9 µs", |f| f.latency_us.p999 as f64),
    ("latency max µs", |f| f.latency_us.max as f64),
    ("ack latency p99 µs", |f| f.ack_latency_us.p99 as f64),
    ("lost", |f| f.lost as f64),
    ("duplicated", |f| f.duplicated as f64),
    ("generator CPU µs/msg", |f| f.generator.cpu_us_per_message),
];

/// The comparison of two brokers' runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub rows: Vec<Row>,
    pub rounds: usize,
}

impl Comparison {
    pub fn of(a: &[Figures], b: &[Figures]) -> Comparison {
        let rows = FIGURES
            .iter()
            .map(|(figure, read)| Row {
                figure,
                a: median(a.iter().map(read).collect()),
                b: median(b.iter().map(read).collect()),
            })
            .collect();
        Comparison {
            rows,
            rounds: a.len().min(b.len()),
        }
    }

    /// The comparison as it goes into the report (`compare`).
    pub fn to_json(&self, b: &str) -> serde_json::Value {
        serde_json::json!({
            "b": b,
            "rounds": self.rounds,
            "rows": self.rows.iter().map(|row| serde_json::json!({
                "figure": row.figure,
                "a": row.a,
                "b": row.b,
                "ratio": row.ratio(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The median (the mean of the middle two for an even count); 0 when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_figure_is_the_median_of_its_side_and_the_ratio_divides_them() {
        let run = |received: f64| Figures {
            throughput: crate::figures::Throughput {
                received_per_s: received,
                ..Default::default()
            },
            ..Figures::default()
        };
        let comparison = Comparison::of(&[run(100.0), run(300.0), run(200.0)], &[run(50.0), run(150.0)]);
        let row = &comparison.rows[0];
        assert_eq!((row.a, row.b), (200.0, 100.0));
        assert_eq!(row.ratio_text(), "2.00");
        assert_eq!(comparison.rounds, 2);
        assert_eq!(median(vec![]), 0.0);
        let lost = comparison.rows.iter().find(|row| row.figure == "lost").unwrap();
        assert_eq!(lost.ratio_text(), "-", "0 on B: no ratio");
    }
}
