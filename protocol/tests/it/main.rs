//! Integration tests of mqtt-protocol, one binary (STYLE rule 7). Nothing here touches a clock or
//! a socket: the codec is pure, so every test is exact and fast.

mod flow;
mod golden;
mod roundtrip;
mod rules;
mod support;
mod topic;
