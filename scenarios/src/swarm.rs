//! `--swarm`: per seed, a random mix of faults on top of the scenario's own, drawn from the seed
//! so that a failing seed replays exactly; and the export of such a run as an explicit scenario
//! with its fault schedule, so that the same faults can be replayed live.
//!
//! What is drawn, per client: link latency (10 to 80 ms, from some instant on), holds (100 ms to
//! 1.5 s, which TCP rides out), and, for clients that reconnect on their own, partitions (0.5 to
//! 4 s, which kill the connection). Never turmoil's fail rate: its TCP does not retransmit, so a
//! lost segment is a dead connection, which partitions already model honestly.

use std::time::Duration;

use crate::scenario::{Direction, Fault, Scenario, StepKind};

/// A small, seeded generator (SplitMix64): the same seed, the same faults, on every machine.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed ^ 0x005E_ED0F_5CE2_A1D0)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high]`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low + 1)
    }
}

/// The time over which swarm faults are spread: the scenario's waits and windows, plus a little,
/// at most 30 s.
fn horizon(scenario: &Scenario) -> Duration {
    let waits: Duration = scenario
        .steps
        .iter()
        .map(|step| match &step.kind {
            StepKind::Wait(duration) | StepKind::WaitPast(duration) => *duration,
            _ => Duration::ZERO,
        })
        .sum();
    (waits + Duration::from_secs(2)).min(Duration::from_secs(30))
}

/// The faults `--swarm` adds for `seed`, by instant.
pub fn schedule(seed: u64, scenario: &Scenario) -> Vec<(Duration, Fault)> {
    let mut random = SplitMix64::new(seed);
    let horizon_ms = horizon(scenario).as_millis() as u64;
    let mut faults = Vec::new();
    for (name, plan) in &scenario.clients {
        let count = random.between(0, 3);
        for _ in 0..count {
            let at = random.between(200, horizon_ms.max(400));
            let kind = random.between(0, if plan.reconnect.is_some() { 2 } else { 1 });
            let client = name.clone();
            match kind {
                0 => faults.push((
                    Duration::from_millis(at),
                    Fault::Latency {
                        client,
                        latency: Duration::from_millis(random.between(10, 80)),
                    },
                )),
                1 => {
                    let length = random.between(100, 1500);
                    faults.push((Duration::from_millis(at), Fault::Hold { client: client.clone() }));
                    faults.push((Duration::from_millis(at + length), Fault::Release { client }));
                }
                _ => {
                    let length = random.between(500, 4000);
                    faults.push((
                        Duration::from_millis(at),
                        Fault::Partition {
                            client: client.clone(),
                            direction: Direction::Both,
                        },
                    ));
                    faults.push((Duration::from_millis(at + length), Fault::Repair { client }));
                }
            }
        }
    }
    faults.sort_by_key(|(at, _)| *at);
    faults
}

/// One fault as a `faults:` entry.
pub fn fault_yaml(at: Duration, fault: &Fault) -> String {
    let at_ms = at.as_millis();
    match fault {
        Fault::Partition { client, direction } => {
            let verb = match direction {
                Direction::Both => "partition",
                Direction::ToBroker => "partition_to_broker",
                Direction::FromBroker => "partition_from_broker",
            };
            format!("{{ at_ms: {at_ms}, {verb}: {client} }}")
        }
        Fault::Repair { client } => format!("{{ at_ms: {at_ms}, repair: {client} }}"),
        Fault::Hold { client } => format!("{{ at_ms: {at_ms}, hold: {client} }}"),
        Fault::Release { client } => format!("{{ at_ms: {at_ms}, release: {client} }}"),
        Fault::Reset { client } => format!("{{ at_ms: {at_ms}, reset: {client} }}"),
        Fault::Latency { client, latency } => format!(
            "{{ at_ms: {at_ms}, latency: {{ client: {client}, ms: {} }} }}",
            latency.as_millis()
        ),
        Fault::BrokerCrash => format!("{{ at_ms: {at_ms}, broker: crash }}"),
        Fault::BrokerRestart => format!("{{ at_ms: {at_ms}, broker: restart }}"),
    }
}

/// The scenario file `text` (named `name`) rewritten as `new_name`, with `faults` added to its
/// `faults:` schedule, so that a swarm run can be replayed as an ordinary scenario (and live).
/// Only a block-style `faults:` list (or none) can be extended; anything else is an error.
pub fn export(text: &str, new_name: &str, faults: &[(Duration, Fault)]) -> Result<String, String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let Some(name_line) = lines.iter().position(|line| line.starts_with("name:")) else {
        return Err("the scenario has no top-level `name:` line".to_owned());
    };
    lines[name_line] = format!("name: {new_name}");
    let entries: Vec<String> = faults
        .iter()
        .map(|(at, fault)| format!("  - {}", fault_yaml(*at, fault)))
        .collect();
    match lines.iter().position(|line| line.starts_with("faults:")) {
        Some(index) => {
            let rest = lines[index]["faults:".len()..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                return Err("its `faults:` is not a block list; add the faults by hand".to_owned());
            }
            let mut end = index + 1;
            while end < lines.len() && (lines[end].starts_with(' ') || lines[end].trim().is_empty()) {
                end += 1;
            }
            for (offset, entry) in entries.into_iter().enumerate() {
                lines.insert(end + offset, entry);
            }
        }
        None => {
            lines.push("# The faults of a --swarm run, replayed as a schedule.".to_owned());
            lines.push("faults:".to_owned());
            lines.extend(entries);
        }
    }
    let mut exported = lines.join("\n");
    exported.push('\n');
    Ok(exported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_a_pure_function_of_its_seed() {
        let first: Vec<u64> = (0..5)
            .scan(SplitMix64::new(7), |random, _| Some(random.next_u64()))
            .collect();
        let again: Vec<u64> = (0..5)
            .scan(SplitMix64::new(7), |random, _| Some(random.next_u64()))
            .collect();
        let other: Vec<u64> = (0..5)
            .scan(SplitMix64::new(8), |random, _| Some(random.next_u64()))
            .collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        let mut random = SplitMix64::new(1);
        assert!((0..1000).all(|_| (3..=9).contains(&random.between(3, 9))));
    }

    #[test]
    fn export_renames_and_appends_a_schedule() {
        let text = "name: a\nclients:\n  x: {}\nsteps:\n  - wait_ms: 10\n";
        let faults = [(Duration::from_millis(5), Fault::Hold { client: "x".to_owned() })];
        let exported = export(text, "a-seed-3", &faults).expect("exports");
        assert!(exported.starts_with("name: a-seed-3\n"));
        assert!(exported.ends_with("faults:\n  - { at_ms: 5, hold: x }\n"));
    }

    #[test]
    fn export_extends_an_existing_block_schedule() {
        let text = "name: a\nfaults:\n  - { at_ms: 1, hold: x }\nsteps: []\n";
        let faults = [(Duration::from_millis(9), Fault::Release { client: "x".to_owned() })];
        let exported = export(text, "b", &faults).expect("exports");
        assert_eq!(
            exported,
            "name: b\nfaults:\n  - { at_ms: 1, hold: x }\n  - { at_ms: 9, release: x }\nsteps: []\n"
        );
        assert!(export("name: a\nfaults: []\n", "b", &faults).is_err());
    }
}
