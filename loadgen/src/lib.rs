//! mqtt-loadgen: open-loop load against any MQTT broker: throughput, end-to-end latency (HDR
//! histograms) and exact loss accounting, in shards.
//!
//! A run ([`run::run`]) offers a [`Workload`] to a broker on a schedule (open loop: latency is
//! measured from each message's intended send time, so a stalling broker shows as latency, not as
//! a quietly lower rate), accounts for every message per publisher and subscriber (lost,
//! duplicated, reordered against what its QoS promises), and returns [`Figures`] that go into the
//! project's report model and merge exactly across shards.
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`workload`] | the workload: publishers, subscribers, topic groups and shapes, rate, payload, QoS; shards |
//! | [`schedule`] | when each message is due: even or Poisson arrivals, payload sizes, seeded |
//! | [`payload`] | the stamp every payload carries: run, publisher, sequence, intended send time |
//! | [`link`] | one connection without I/O: the client's sans-IO core with its buffers |
//! | [`engine`] | the event-loop threads (epoll and a timerfd): precise pacing, publishing, receiving, accounting |
//! | [`transport`] | what the engine's sockets carry: plain TCP, TLS (rustls, sans-IO), WebSocket (tungstenite's framing), both |
//! | [`track`] | per-stream accounting: lost, duplicated, reordered |
//! | [`measure`] | HDR histograms and the per-second timeline |
//! | [`run`] | one message run start to end, and its figures |
//! | [`figures`] | the figures in the report, their verdicts and charts, the HDR interval log, and the exact merge of shards |
//! | [`connections`] | connection workloads: a connect storm, idle connections held |
//! | [`sessions`] | session workloads: an offline backlog and a resume storm; subscribe churn |
//! | [`search`] | `--max`: the highest rate within a p99 objective and without loss |
//! | [`compare`] | `--compare`: two brokers in alternation, medians and ratios |
//! | [`system`] | `/proc`: CPU time and memory of a process; descriptor limits; the machine |

pub mod compare;
pub mod connections;
pub mod engine;
pub mod figures;
pub mod link;
pub mod measure;
pub mod payload;
pub mod run;
pub mod schedule;
pub mod search;
pub mod sessions;
pub mod system;
pub mod track;
pub mod transport;
pub mod workload;

pub use figures::Figures;
pub use run::{run, Progress, Target};
pub use workload::Workload;
