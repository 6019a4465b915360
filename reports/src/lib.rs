//! mqtt-reports: the result model and its renderings (terminal, JSON, JUnit XML, HTML with SVG
//! charts, Markdown), and the merging of shard results.
//!
//! Status: not landed yet. This crate doc is the map it will follow.
//!
//! # Layout
//!
//! | module | what will live there |
//! |---|---|
//! | `model` | verdicts, traces, benchmark figures |
//! | `render` | one renderer per format |
//! | `merge` | shard results and HDR histograms combined |
