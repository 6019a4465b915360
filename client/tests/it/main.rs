//! Integration tests of mqtt-client: the sans-IO core told the time, and the async client and the
//! probe over real loopback sockets.

mod core;
mod probe;
