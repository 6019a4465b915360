//! The live world: real sockets on loopback, and the rigs around the broker under test.
//!
//! These are test rigs, not client features, so they live here and not in mqtt-client: the
//! client library needs neither child processes nor a proxy.
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`fault_proxy`] | a loopback TCP proxy that injects faults: partition, hold, reset, latency, and a dead-link mode that behaves like the simulated network |
//! | [`mosquitto`] | starts a real mosquitto on an ephemeral loopback port, for tests and benchmarks |
//! | [`target`] | the broker under test: the reference broker in-process, a launched mosquitto, or a URL |
//! | [`world`] | running a scenario live: proxies, real-time windows, unique names, cleanup |

pub mod fault_proxy;
pub mod mosquitto;
pub mod target;
pub mod world;

pub use target::{ReferenceBroker, Target, TargetSpec};
pub use world::{run, run_id, run_many, LiveOptions, LiveOutcome, LiveRun, TOLERANCE_DEFAULT};
