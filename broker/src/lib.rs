//! mqtt-broker: the reference broker, the harness's yardstick.
//!
//! Status: not landed yet (issue "The reference broker"). This crate doc is the map it will follow.
//!
//! # Layout
//!
//! | module | what will live there |
//! |---|---|
//! | `core` | the sans-IO broker: `handle_*(now, ..)` inputs, `poll_*` outputs, no clock |
//! | `session` | sessions, Clean Start, Session Expiry, offline queues (bounded) |
//! | `router` | the subscription tree (from `mqtt_protocol::topic`), shared subscriptions, retained store |
//! | `will` | wills and the Will Delay Interval |
//! | `limits` | configurable limits and the answer each maps to |
//! | `server` | the tokio server, generic over stream and listener (real TCP, turmoil) |
