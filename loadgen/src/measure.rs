//! Histograms and the per-second timeline.
//!
//! Latencies are recorded in microseconds in HDR histograms: three significant digits for the
//! run's totals (exact enough to add shards together and read any percentile), two for the
//! per-second timeline (a chart, not a verdict). Values beyond the range are recorded at its top,
//! so a broker that stalls for longer than an hour still counts, as an hour.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The largest latency a histogram tells apart: an hour, in microseconds.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// A histogram for a run's totals (3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
}

/// A histogram for one second of the timeline (2 significant digits: about a tenth the memory).
pub fn coarse_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 2).expect("valid bounds")
}

/// Records `duration` in microseconds (at least 1).
pub fn record(histogram: &mut Histogram<u64>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).max(1);
    histogram.saturating_record(micros.min(LATENCY_US_MAX));
}

/// What one second of the run saw.
#[derive(Debug, Clone)]
pub struct Second {
    /// Messages whose send this second was due (scheduled).
    pub scheduled: u64,
    /// Messages written this second.
    pub sent: u64,
    /// Deliveries received this second.
    pub received: u64,
    /// End-to-end latency of the deliveries received this second.
    pub latency: Histogram<u64>,
}

/// The run second by second, from the start of the schedule (warm-up included). Shared by the
/// publisher thread and the subscriber tasks, each of which adds what it counted once per second
/// (never per message), so the lock is cold.
#[derive(Debug, Clone)]
pub struct Timeline {
    start: Instant,
    seconds: Vec<Second>,
}

impl Timeline {
    /// A timeline of at most `length` (rounded up to whole seconds) from `start`; later instants
    /// count in the last second.
    pub fn new(start: Instant, length: Duration) -> Timeline {
        let count = length.as_secs() as usize + 1;
        Timeline {
            start,
            seconds: (0..count)
                .map(|_| Second {
                    scheduled: 0,
                    sent: 0,
                    received: 0,
                    latency: coarse_histogram(),
                })
                .collect(),
        }
    }

    pub fn shared(self) -> SharedTimeline {
        Arc::new(Mutex::new(self))
    }

    /// The second `instant` falls in.
    pub fn index(&self, instant: Instant) -> usize {
        let index = instant.saturating_duration_since(self.start).as_secs() as usize;
        index.min(self.seconds.len() - 1)
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }

    /// Adds `counts` to second `index`.
    pub fn add(&mut self, index: usize, counts: &SecondCounts) {
        let index = index.min(self.seconds.len() - 1);
        let second = &mut self.seconds[index];
        second.scheduled += counts.scheduled;
        second.sent += counts.sent;
        second.received += counts.received;
        if let Some(latency) = &counts.latency {
            // Same bounds and precision: adding cannot fail.
            let _ = second.latency.add(latency);
        }
    }
}

/// A timeline shared between threads.
pub type SharedTimeline = Arc<Mutex<Timeline>>;

/// What one task counted in the current second, flushed into the timeline when the second ends.
#[derive(Debug, Default)]
pub struct SecondCounts {
    pub index: usize,
    pub scheduled: u64,
    pub sent: u64,
    pub received: u64,
    pub latency: Option<Histogram<u64>>,
}

impl SecondCounts {
    /// Moves to second `index`, flushing what was counted before into `timeline` first.
    pub fn at(&mut self, index: usize, timeline: &SharedTimeline) {
        if index != self.index {
            self.flush(timeline);
            self.index = index;
        }
    }

    /// Adds what was counted to `timeline` and starts over in the same second.
    pub fn flush(&mut self, timeline: &SharedTimeline) {
        if self.scheduled == 0 && self.sent == 0 && self.received == 0 {
            return;
        }
        if let Ok(mut timeline) = timeline.lock() {
            timeline.add(self.index, self);
        }
        self.scheduled = 0;
        self.sent = 0;
        self.received = 0;
        if let Some(latency) = &mut self.latency {
            latency.reset();
        }
    }

    /// Records one delivery's latency this second.
    pub fn record_latency(&mut self, latency: Duration) {
        record(self.latency.get_or_insert_with(coarse_histogram), latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_second_and_late_ones_in_the_last() {
        let start = Instant::now();
        let timeline = Timeline::new(start, Duration::from_secs(3)).shared();
        let mut counts = SecondCounts::default();
        for (at_ms, latency_us) in [(100, 50), (900, 70), (1500, 90), (9000, 1000)] {
            let index = timeline.lock().unwrap().index(start + Duration::from_millis(at_ms));
            counts.at(index, &timeline);
            counts.received += 1;
            counts.record_latency(Duration::from_micros(latency_us));
        }
        counts.flush(&timeline);
        let timeline = timeline.lock().unwrap();
        let received: Vec<u64> = timeline.seconds().iter().map(|second| second.received).collect();
        assert_eq!(received, [2, 1, 0, 1]);
        assert_eq!(timeline.seconds()[0].latency.len(), 2);
        let last = &timeline.seconds()[3].latency;
        assert!(
            last.equivalent(last.max(), 1000),
            "two significant digits: {}",
            last.max()
        );
    }

    #[test]
    fn a_latency_past_the_range_counts_at_its_top() {
        let mut histogram = histogram();
        record(&mut histogram, Duration::from_secs(100_000));
        record(&mut histogram, Duration::ZERO);
        assert_eq!(histogram.len(), 2);
        assert_eq!(histogram.min(), 1);
        assert!(histogram.max() >= LATENCY_US_MAX);
    }
}
