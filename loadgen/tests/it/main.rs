//! Integration tests of mqtt-loadgen (one test binary): whole runs against the reference broker
//! and against mosquitto, over real loopback sockets.

mod runs;
