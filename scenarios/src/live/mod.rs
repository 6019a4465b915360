//! The live world: real sockets on loopback, and the rigs around the broker under test.
