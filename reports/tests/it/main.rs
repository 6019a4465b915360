//! Integration tests of mqtt-reports, one binary (STYLE rule 7). Everything here is pure except the
//! tests of `write_dir` and `Expectations::load`, which use a fresh folder under the system's
//! temporary directory.

mod expect;
mod merge;
mod model;
mod render;
mod support;
