//! mqtt-conformance: the catalog of conformance cases, each tied to normative statement ids, and
//! the runner that checks a broker against it.
//!
//! Status: not landed yet. This crate doc is the map it will follow.
//!
//! # Layout
//!
//! | module | what will live there |
//! |---|---|
//! | `catalog` | the cases, in folders that follow the spec's sections |
//! | `discovery` | what a broker says it supports in CONNACK and what it refuses |
//! | `runner` | parallel, every case bounded in time; pass / fail / skip / not applicable |
//! | `expected` | known deviations of third-party brokers, with evidence |
