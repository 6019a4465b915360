//! Integration tests of mqtt-broker (one test binary, STYLE rule 7): the sans-IO core told the
//! time, the server over real sockets, real third-party clients, the error table. Simulation lives in mqtt-scenarios.

mod certs;
mod core;
mod errors;
mod harness;
mod mutations;
mod packet_size;
mod real_clients;
mod running;
mod security;
mod server;
mod transports;
