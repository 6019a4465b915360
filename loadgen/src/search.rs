//! `--max`: the highest rate a broker sustains within a latency objective and without loss.
//!
//! From the starting rate the search doubles while the objective holds, then bisects between the
//! last rate that held and the first that did not, until they are within [`PRECISION`] of each
//! other. If the starting rate already fails, it halves until one holds. Each step is a whole run
//! (warm-up and window), and the number of steps is bounded by [`STEPS_MAX`].

use std::future::Future;
use std::time::Duration;

use crate::figures::{Figures, RATE_OFFERED_SHARE};

/// Whether a run at `rate` held the `--max` objective: p99 within `slo_p99`, nothing lost, every
/// message offered at 95% or more of the rate, no connection ended early.
pub fn holds(figures: &Figures, rate: f64, slo_p99: Duration) -> bool {
    figures.lost == 0
        && figures.not_offered == 0
        && figures.errors.is_empty()
        && figures.throughput.sent_per_s >= rate * RATE_OFFERED_SHARE
        && figures.latency_us.count > 0
        && Duration::from_micros(figures.latency_us.p99) <= slo_p99
}

/// The search stops when the bracket is this narrow, relative to its lower end.
pub const PRECISION: f64 = 0.1;

/// The most runs one search makes.
pub const STEPS_MAX: usize = 16;

/// The highest rate that did not exceed this is not searched beyond: 10 million messages per second.
pub const RATE_MAX: f64 = 10_000_000.0;

/// The lowest rate tried when going down.
pub const RATE_MIN: f64 = 1.0;

/// Runs `step(rate)` (whether the objective held, and the run's figures) at the rates the search
/// picks; returns the highest rate that held, with its figures, or `None` if none did.
pub async fn highest_rate<F, Fut>(start: f64, step: &mut F) -> Result<Option<(f64, Figures)>, String>
where
    F: FnMut(f64) -> Fut,
    Fut: Future<Output = Result<(bool, Figures), String>>,
{
    let mut best: Option<(f64, Figures)> = None;
    let mut failed_at: Option<f64> = None;
    let mut rate = start.clamp(RATE_MIN, RATE_MAX);
    for _ in 0..STEPS_MAX {
        let (holds, figures) = step(rate).await?;
        if holds {
            best = Some((rate, figures));
        } else {
            failed_at = Some(rate);
        }
        let held = best.as_ref().map(|(rate, _)| *rate);
        rate = match (held, failed_at) {
            (Some(low), None) if low >= RATE_MAX => break,
            (Some(low), None) => (low * 2.0).min(RATE_MAX),
            (None, Some(high)) if high <= RATE_MIN => break,
            (None, Some(high)) => (high / 2.0).max(RATE_MIN),
            (Some(low), Some(high)) if (high - low) / low <= PRECISION => break,
            (Some(low), Some(high)) => ((low + high) / 2.0).round(),
            (None, None) => unreachable!("a step either held or did not"),
        };
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker that holds up to `limit`; returns the rates tried too.
    async fn search(start: f64, limit: f64) -> (Option<f64>, Vec<f64>) {
        let mut tried = Vec::new();
        let mut step = |rate: f64| {
            tried.push(rate);
            async move { Ok((rate <= limit, Figures::default())) }
        };
        let found = highest_rate(start, &mut step).await.unwrap().map(|(rate, _)| rate);
        (found, tried)
    }

    #[tokio::test]
    async fn it_finds_the_limit_within_its_precision_in_few_steps() {
        let (found, tried) = search(1000.0, 37_000.0).await;
        let found = found.unwrap();
        assert!((37_000.0 / (1.0 + PRECISION)..=37_000.0).contains(&found), "{found}");
        assert!(tried.len() <= 12, "{tried:?}");
        let (found, _) = search(1000.0, 300.0).await;
        let found = found.unwrap();
        assert!(
            (300.0 / (1.0 + PRECISION)..=300.0).contains(&found),
            "going down: {found}"
        );
        let (found, tried) = search(1000.0, 0.0).await;
        assert_eq!(found, None, "nothing holds");
        assert!(tried.len() <= STEPS_MAX);
    }
}
