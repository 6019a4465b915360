//! Accounting of one publisher's messages as one receiver sees them: which sequence numbers came,
//! which are missing, which came twice, which came late.
//!
//! A receiver is a subscriber, or a whole shared group (its members' arrivals are recorded in one
//! tracker). What each QoS promises decides what is a failure, not this module: it only counts.
//!
//! - **Lost**: sequence numbers the publisher sent that never arrived.
//! - **Duplicated**: a sequence number that arrived again: allowed at QoS 1 (at least once), a
//!   broken promise at QoS 0 and 2 (at most once, exactly once).
//! - **Reordered**: a sequence number that arrived after a higher one, counted only where MQTT
//!   promises order (one topic, one QoS, one publisher, a non-shared subscription) and not for a
//!   QoS 1 redelivery marked DUP, which may legally overtake nothing.
//!
//! Memory: the sequence numbers seen are kept as the gaps below the highest one, a range per gap,
//! so a run without loss costs a few words. At most [`GAPS_MAX`] gaps are kept: past that, the
//! oldest gap is given up as lost, and a late arrival into it would count as a duplicate. The
//! report says when that happened.

use std::collections::BTreeMap;

/// The most gaps one tracker keeps (about 48 bytes each).
pub const GAPS_MAX: usize = 100_000;

/// How a message arrived, as far as its sequence number tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The highest so far (possibly after a gap).
    InOrder,
    /// Below the highest, filling a gap.
    Late,
    /// Seen already.
    Duplicate,
}

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    /// One past the highest sequence number seen.
    next: u64,
    /// Sequence numbers below `next` not seen: `start -> end` (end excluded).
    gaps: BTreeMap<u64, u64>,
    /// Sequence numbers in gaps given up to keep the bound.
    forgotten: u64,
    pub received: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

impl Tracker {
    /// Records `sequence`. `redelivery` marks a QoS 1/2 PUBLISH with DUP set; `ordered` says
    /// whether order is promised on this stream.
    pub fn record(&mut self, sequence: u64, redelivery: bool, ordered: bool) -> Arrival {
        if sequence >= self.next {
            if sequence > self.next {
                self.gaps.insert(self.next, sequence);
                if self.gaps.len() > GAPS_MAX {
                    if let Some((start, end)) = self.gaps.pop_first() {
                        self.forgotten += end - start;
                    }
                }
            }
            self.next = sequence + 1;
            self.received += 1;
            return Arrival::InOrder;
        }
        let gap = self
            .gaps
            .range(..=sequence)
            .next_back()
            .map(|(&start, &end)| (start, end))
            .filter(|&(_, end)| sequence < end);
        let Some((start, end)) = gap else {
            self.duplicated += 1;
            return Arrival::Duplicate;
        };
        self.gaps.remove(&start);
        if start < sequence {
            self.gaps.insert(start, sequence);
        }
        if sequence + 1 < end {
            self.gaps.insert(sequence + 1, end);
        }
        self.received += 1;
        if ordered && !redelivery {
            self.reordered += 1;
        }
        Arrival::Late
    }

    /// Messages of the `published` sent that never arrived.
    pub fn lost(&self, published: u64) -> u64 {
        let gaps: u64 = self
            .gaps
            .values()
            .zip(self.gaps.keys())
            .map(|(end, start)| end - start)
            .sum();
        gaps + self.forgotten + published.saturating_sub(self.next)
    }

    /// Whether gaps were given up to keep the bound (late arrivals into them count as duplicates).
    pub fn overflowed(&self) -> bool {
        self.forgotten > 0
    }

    /// One past the highest sequence number seen.
    pub fn highest_next(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_arrivals_cost_nothing_and_the_tail_counts_as_lost() {
        let mut tracker = Tracker::default();
        for sequence in 0..1000 {
            assert_eq!(tracker.record(sequence, false, true), Arrival::InOrder);
        }
        assert!(tracker.gaps.is_empty());
        assert_eq!(tracker.lost(1000), 0);
        assert_eq!(tracker.lost(1003), 3, "sent but never seen");
    }

    #[test]
    fn a_late_arrival_fills_its_gap_and_counts_as_reordered_unless_redelivered_or_unordered() {
        let mut tracker = Tracker::default();
        tracker.record(0, false, true);
        tracker.record(4, false, true);
        assert_eq!(tracker.lost(5), 3);
        assert_eq!(tracker.record(2, false, true), Arrival::Late);
        assert_eq!(tracker.record(1, true, true), Arrival::Late, "a DUP redelivery");
        assert_eq!(tracker.record(2, false, true), Arrival::Duplicate);
        assert_eq!(tracker.reordered, 1);
        assert_eq!(tracker.duplicated, 1);
        assert_eq!(tracker.lost(5), 1);
        let mut shared = Tracker::default();
        shared.record(1, false, false);
        shared.record(0, false, false);
        assert_eq!(shared.reordered, 0, "no order promised");
    }

    proptest! {
        #[test]
        fn the_counts_match_a_brute_force_count(arrivals in proptest::collection::vec(0u64..200, 0..400)) {
            let mut tracker = Tracker::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut duplicated = 0;
            for &sequence in &arrivals {
                if !seen.insert(sequence) {
                    duplicated += 1;
                }
                tracker.record(sequence, false, false);
            }
            prop_assert_eq!(tracker.received, seen.len() as u64);
            prop_assert_eq!(tracker.duplicated, duplicated);
            prop_assert_eq!(tracker.lost(200), 200 - seen.len() as u64);
        }
    }
}
