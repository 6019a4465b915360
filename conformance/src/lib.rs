//! mqtt-conformance: the catalog of conformance cases, each tied to normative statement ids, and
//! the runner that checks a broker against it.
//!
//! Status: only the statement tables have landed. The rest of this map is what the crate will follow.
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`statements`] | every numbered statement of MQTT 5.0 (251) and 3.1.1 (140): id, section, level, a summary in our words; tables in `statements/*.tsv` |
//! | `catalog` | (to come) the cases, in folders that follow the spec's sections |
//! | `discovery` | (to come) what a broker says it supports in CONNACK and what it refuses |
//! | `runner` | (to come) parallel, every case bounded in time; pass / fail / skip / not applicable |
//! | `expected` | (to come) known deviations of third-party brokers, with evidence |

pub mod statements;
