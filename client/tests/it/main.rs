//! Integration tests of mqtt-client: the sans-IO core told the time, and the async client, the
//! probe, the fault proxy and the mosquitto launcher over real loopback sockets.

mod against_mosquitto;
mod core;
mod fault_proxy;
mod mosquitto;
mod probe;
