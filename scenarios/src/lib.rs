//! mqtt-scenarios: YAML scenarios and the engine that runs them, simulated (turmoil, a seed, a
//! fault schedule) or live (real sockets, faults through a loopback proxy).
//!
//! Status: not landed yet. This crate doc is the map it will follow.
//!
//! # Layout
//!
//! | module | what will live there |
//! |---|---|
//! | `schema` | the scenario types and their YAML form |
//! | `load` | loading with file:line:column errors |
//! | `engine` | steps, expectations and timing windows, independent of the world they run in |
//! | `sim` | the turmoil driver: reference broker, seeds, faults, byte-identical traces |
//! | `live` | the live driver and the fault proxy |
