//! mqtt-client: an async MQTT 3.1.1 / 5.0 client for applications, the simulator and the load
//! generator, and [`probe`], a packet-level client that does exactly what it is told.
//!
//! Both stand on `mqtt-protocol`: one codec, and the QoS flows as sans-IO state machines. The
//! client's protocol logic ([`core`]) is itself sans-IO and is told the time, so it runs
//! unchanged over real TCP and under simulation; only [`connection`] and [`transport`] do I/O.
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`options`] | connect options (every 5.0 CONNECT property, will, credentials), broker URLs |
//! | [`core`] | the sans-IO client: `handle_*(now, ..)` inputs, `poll_*` outputs, no clock |
//! | [`connection`] | the async client over any stream: [`Client`], its event stream, reconnect with backoff |
//! | [`transport`] | the stream seam: anything `AsyncRead + AsyncWrite`; dialers for TCP, TLS ([`transport::tls`]: rustls, both sides' setup) and WebSocket ([`transport::ws`]: both handshakes, the byte-stream adapter) |
//! | [`probe`] | send typed packets or raw bytes, expect patterns within deadlines, record traces |
//! | [`scram`] | SCRAM-SHA-256 for 5.0 enhanced authentication, both roles, sans-IO (nonces given) |

pub mod connection;
pub mod core;
pub mod options;
pub mod probe;
pub mod scram;
pub mod transport;

pub use connection::{Client, ClientError, ConnectionInfo, Event, Events, PublishHandle, PublishOutcome};
pub use core::Message;
pub use options::{BrokerUrl, ConnectOptions, LastWill, ReconnectPolicy};
