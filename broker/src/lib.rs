//! mqtt-broker: the reference broker, the harness's yardstick. It speaks MQTT 3.1, 3.1.1 and 5.0
//! over any byte stream: what the simulator runs, what the conformance suite must pass in full,
//! and what `mqtt-harness broker` serves over TCP, TLS and WebSocket, with a password file, an ACL
//! and SCRAM-SHA-256 enhanced authentication when configured ([`security`]).
//!
//! # Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`config`] | limits and capabilities, with defaults; each limit's answer is in [`errors`] |
//! | [`core`] | the sans-IO broker: `handle_*(now, ..)` inputs, `poll_*` outputs, no clock |
//! | [`server`] | the tokio server, generic over listener and stream (real TCP, turmoil) |
//! | [`listener`] | listeners by URL: `mqtt://`, `mqtts://`, `ws://`, `wss://`; handshakes off the accept loop, bounded |
//! | [`security`] | authentication (anonymous, password file, certificate name, SCRAM-SHA-256) and the ACL |
//! | [`errors`] | the table of what the broker does on each error, per version (walked by a test) |
//! | `mutations` | planted bugs (feature `mutations` only), each off unless `Config::mutations` names it |
//!
//! # Choices the spec leaves open
//!
//! - **Sessions live in memory.** A broker restart loses every session, subscription, queued and
//!   retained message. Session Expiry and Clean Start / Clean Session behave as the spec says while
//!   the process lives.
//! - **Overlapping subscriptions** of one client (5.0 §3.3.4, 3.1.1 §3.3.5) give one copy of a
//!   message, at the highest QoS granted among the matching subscriptions, carrying every matching
//!   Subscription Identifier (5.0 MQTT-3.3.4-3, -4), with Retain As Published if any matching
//!   subscription has it. A shared subscription matching too gives its own copy.
//! - **Shared subscriptions** (`$share/{group}/{filter}`, 5.0 only; in 3.1.1 it is an ordinary
//!   filter) deliver each message to one member, round-robin, preferring members that are
//!   connected; no retained messages on a shared subscribe. An unacknowledged QoS 1 message goes to
//!   another member when its session ends, unless the member refused it with 0x80 or above (5.0
//!   MQTT-4.8.2-6); a QoS 2 one never does (MQTT-4.8.2-5).
//! - **Queues are bounded.** A session's deliveries wait (offline, or beyond the client's Receive
//!   Maximum) in a queue of at most `Config::queued_messages_max`; when it is full the new message
//!   is dropped. An offline session queues QoS 1 and 2 messages only: QoS 0 ones are dropped, as the
//!   spec allows (5.0 §4.1 lists pending QoS 0 messages as optional session state). Expired messages are
//!   dropped when their turn comes (5.0 MQTT-3.3.2-5).
//! - **One door for every message.** A client's PUBLISH, a will and what the broker publishes
//!   itself (`$SYS`) enter through `publish_message` in [`core`]: retained handling (store, replace, delete
//!   on an empty payload), the retained store's quota (`Config::retained_messages_max`: a new topic
//!   beyond it is delivered but not retained; a 5.0 QoS 1/2 PUBLISH is refused with 0x97 instead)
//!   and message expiry apply to all of them alike.
//! - **A message too large for the client** is dropped as if sent (5.0 MQTT-3.1.2-25), never
//!   resent; other packets lose their Reason String and User Properties first, as the spec asks;
//!   an acknowledgement that still does not fit closes the connection (0x95) rather than leave the
//!   client waiting, and a CONNACK is cut down to what the client can do without first. See
//!   [`errors`], "The client's Maximum Packet Size".
//! - **Every 5.0 error after CONNECT gets a DISCONNECT with a code** before the close: 0x81
//!   Malformed Packet, 0x82 Protocol Error, or the spec's more specific code (5.0 §1.2, §4.13.1);
//!   its name goes along as Reason String. See [`errors`].
//! - **Client ids** the broker assigns are `mqtt-harness-N`. Topic aliases are accepted from
//!   clients (up to `Config::topic_alias_maximum`) and sent to 5.0 clients that allow them: an
//!   alias per topic per connection, first come, first served, up to the client's Topic Alias
//!   Maximum; the name goes once, then the alias with an empty name.
//! - **`$SYS/broker/...`** (version, uptime, clients connected, messages and bytes in and out) is
//!   published retained at QoS 0 through the same door as every message, every
//!   `ServerOptions::sys_interval` (off by default; `mqtt-harness broker` publishes every 10 s).

pub mod config;
pub mod core;
pub mod listener;
#[cfg(feature = "mutations")]
pub mod mutations;
pub mod security;
pub mod server;

/// What the broker does on each error, per version.
#[doc = include_str!("../ERRORS.md")]
pub mod errors {}

pub use config::Config;
pub use core::{Broker, ConnectionId, Output, ServerFigures, Statistics};
#[cfg(feature = "mutations")]
pub use mutations::{Mutation, Mutations, UnknownMutation};
