//! mqtt-scenarios: YAML spec scenarios and the engine that runs them, simulated (turmoil, the
//! reference broker, a seed, a fault schedule) or live (real sockets to any broker, faults
//! through a loopback proxy).
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`live`] | the live world's rigs: the fault proxy (with a dead-link mode that partitions as the simulation does), launching mosquitto |
pub mod live;
