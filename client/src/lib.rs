//! mqtt-client: an async MQTT 3.1.1 / 5.0 client for applications, the simulator and the load
//! generator, and `probe`, a packet-level client that does exactly what it is told.
//!
//! Status: not landed yet (issue "The client library and the packet-level probe"). This crate doc
//! is the map it will follow.
//!
//! # Layout
//!
//! | module | what will live there |
//! |---|---|
//! | `core` | the sans-IO client state machine on `mqtt_protocol::flow`, time passed in |
//! | `connection` | the async driver over any stream (TCP now; TLS, WebSocket, turmoil later) |
//! | `options` | connect options, every 5.0 CONNECT property, URLs |
//! | `probe` | send typed packets or raw bytes, expect patterns within deadlines, record traces |
