//! mqtt-loadgen: open-loop load against any broker: throughput, end-to-end latency (HDR
//! histograms) and loss, in shards.
//!
//! Status: not landed yet. This crate doc is the map it will follow.
//!
//! # Layout
//!
//! | module | what will live there |
//! |---|---|
//! | `schedule` | rates kept by schedule, not by waiting for the broker |
//! | `measure` | latency from intended send time, loss, duplicates, reordering |
//! | `shard` | one slice of a workload, for `bench --shard k/n` |
