//! Integration tests of mqtt-conformance, one binary (STYLE rule 7). Goal: the statement tables the
//! project ships are complete and well-formed, so that every citation of a statement id can be
//! checked against them. Method: read the tables as text (no parser in between) and check each
//! property on every row, then check that the crate's parser accepts both tables and refuses
//! broken ones. No clock, no network.

mod statements;
