//! When each message is due: the schedule that keeps the offered rate whatever the broker does
//! (open loop). A publisher sends message `k` at its due time, or as soon after it as it can, and
//! stamps it with the due time, so that a broker that stalls shows up as latency rather than as a
//! quietly lower rate.

use std::time::{Duration, Instant};

use crate::workload::{Arrivals, PayloadSize};

/// A small seeded generator (SplitMix64): the same seed, the same gaps and sizes on every machine.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed ^ 0x6C6F_6164_6765_6E21)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[low, high]`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }
}

/// The due times of one publisher's messages, from `start`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    arrivals: Arrivals,
    /// Mean gap between messages, in nanoseconds.
    gap_ns: f64,
    /// The offset of the next message from `start`, in nanoseconds.
    next_ns: f64,
    /// Messages scheduled so far (the sequence number of the next one).
    sequence: u64,
    random: Random,
    payload: PayloadSize,
}

impl Schedule {
    /// `rate` messages per second from `start`. `phase` (from 0 to 1) offsets an even schedule by
    /// that fraction of a gap, so that publishers of one rate do not all send at the same instants.
    pub fn new(start: Instant, rate: f64, arrivals: Arrivals, phase: f64, seed: u64, payload: PayloadSize) -> Schedule {
        let gap_ns = 1e9 / rate;
        let mut random = Random::new(seed);
        let next_ns = match arrivals {
            Arrivals::Even => gap_ns * phase.clamp(0.0, 1.0),
            Arrivals::Poisson => exponential(&mut random, gap_ns),
        };
        Schedule {
            start,
            arrivals,
            gap_ns,
            next_ns,
            sequence: 0,
            random,
            payload,
        }
    }

    /// When the next message is due.
    pub fn due(&self) -> Instant {
        self.start + Duration::from_nanos(self.next_ns as u64)
    }

    /// The next message's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Takes the next message: its sequence number, due time and payload size; the schedule moves
    /// on to the one after.
    pub fn take(&mut self) -> (u64, Instant, usize) {
        let taken = (self.sequence, self.due(), self.payload_size());
        self.sequence += 1;
        self.next_ns += match self.arrivals {
            Arrivals::Even => self.gap_ns,
            Arrivals::Poisson => exponential(&mut self.random, self.gap_ns),
        };
        taken
    }

    fn payload_size(&mut self) -> usize {
        if self.payload.is_fixed() {
            self.payload.min
        } else {
            self.random.between(self.payload.min, self.payload.max)
        }
    }
}

/// An exponential gap of mean `mean_ns`.
fn exponential(random: &mut Random, mean_ns: f64) -> f64 {
    -mean_ns * random.unit().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_schedule_keeps_its_rate_exactly_and_is_offset_by_its_phase() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, 1000.0, Arrivals::Even, 0.5, 1, PayloadSize::fixed(64));
        let (first, due, size) = schedule.take();
        assert_eq!((first, size), (0, 64));
        assert_eq!(due - start, Duration::from_micros(500));
        for _ in 1..1000 {
            schedule.take();
        }
        assert_eq!(
            schedule.due() - start,
            Duration::from_micros(1_000_500),
            "no drift over 1000 gaps"
        );
    }

    #[test]
    fn a_poisson_schedule_has_the_mean_rate_and_replays_from_its_seed() {
        let start = Instant::now();
        let mut one = Schedule::new(
            start,
            10_000.0,
            Arrivals::Poisson,
            0.0,
            7,
            PayloadSize { min: 24, max: 100 },
        );
        let mut two = one.clone();
        let mut sizes = Vec::new();
        for _ in 0..100_000 {
            let taken = one.take();
            assert_eq!(taken, two.take(), "same seed, same schedule");
            sizes.push(taken.2);
        }
        let seconds = (one.due() - start).as_secs_f64();
        assert!(
            (seconds - 10.0).abs() < 0.2,
            "100,000 messages at 10,000/s took {seconds} s"
        );
        assert!(sizes.iter().all(|size| (24..=100).contains(size)));
        assert!(
            sizes.contains(&24) && sizes.contains(&100),
            "both ends of the range occur"
        );
    }
}
