//! mqtt-conformance: the catalog of conformance cases, each tied to normative statement ids, and
//! the runner that checks a broker against it (`mqtt-harness check`).
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`statements`] | every numbered statement of MQTT 5.0 (251) and 3.1.1 (140): id, section, level, a summary in our words; tables in `statements/*.tsv` |
//! | [`catalog`] | the cases: YAML scenarios embedded from `cases/<section>/` and probe cases, with their ids, statements, levels and needs |
//! | [`probes`] | the probe cases, in code: one module per spec chapter |
//! | [`context`] | what a probe case works with: recorded connections, names, capabilities |
//! | [`discover`] | what the broker offers, per version: its CONNACK, and probing where 3.1.1 says nothing |
//! | [`limits`] | `check --discover`: the broker's limits, found by bounded searches |
//! | [`runner`] | discovery, then every selected case in every version, concurrent then serial, each bounded |
//! | [`robustness`] | `check --robustness`: hostile but bounded traffic, each case watched by a side client and the broker's memory |
//! | [`netfuzz`] | `check --fuzz`: sessions recorded from the scenario library, mutated from a seed and sent to a broker, its health checked after each |
//! | [`coverage`] | which statements the catalog covers, and why the others are not (`statements/classification.tsv`) |
//!
//! Known deviations of third-party brokers live in `expected/<broker>.yaml` (the expectations
//! schema of `mqtt-reports`).

pub mod catalog;
pub mod context;
pub mod coverage;
pub mod discover;
pub mod limits;
pub mod netfuzz;
pub mod probes;
pub mod robustness;
pub mod runner;
pub mod statements;

/// A name no other run has, for client ids and topics.
pub fn run_id() -> String {
    mqtt_scenarios::live::run_id()
}
