//! Integration tests of mqtt-conformance, one binary (STYLE rule 7): the statement tables
//! (complete and well-formed), the catalog as data (names, citations, `--only`, coverage), and
//! the catalog live against the reference broker, its planted bugs and mosquitto.

mod catalog;
mod live;
mod statements;
