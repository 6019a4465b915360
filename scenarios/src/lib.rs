//! mqtt-scenarios: YAML spec scenarios and the engine that runs them, simulated (turmoil, the
//! reference broker, a seed, a fault schedule) or live (real sockets to any broker, faults
//! through a loopback proxy).
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`schema`] | the YAML form of a scenario, as serde reads it |
//! | [`load`] | loading files and folders, with every problem as `file:line:column` |
//! | [`scenario`] | a scenario as the engine runs it: checked and resolved |
//! | [`wire`] | the recording stream: every packet each client sent and received, and the run's trace |
//! | [`engine`] | the driver, the client actors, expectations and invariants, over a [`engine::World`] |
//! | [`sim`] | the simulated world: turmoil, the reference broker, seeds, faults, byte-identical traces |
//! | [`swarm`] | random faults from a seed, and their export as an explicit schedule |
//! | [`results`] | a run's outcome as a case of the shared result model (`mqtt-reports`) |
//! | [`live`] | the live world's rigs: the fault proxy (with a dead-link mode that partitions as the simulation does), launching mosquitto |
pub mod engine;
pub mod live;
pub mod load;
pub mod results;
pub mod scenario;
pub mod schema;
pub mod sim;
pub mod swarm;
pub mod wire;
