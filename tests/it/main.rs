//! Tests of the `mqtt-harness` binary itself, run as a user would run it (one test binary,
//! STYLE rule 7).

mod bench_cli;
mod broker_cli;
/// The broker's test certificates, shared rather than written twice.
#[path = "../../broker/tests/it/certs.rs"]
mod certs;
mod check_cli;
mod cli;
mod scenario_cli;
mod support;
