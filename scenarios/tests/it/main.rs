//! Integration tests of mqtt-scenarios' live rigs over real loopback sockets: the fault proxy, the
//! mosquitto launcher, and the client against a real mosquitto through them.

mod against_mosquitto;
mod fault_proxy;
mod live;
mod load;
mod mosquitto;
mod sim;
