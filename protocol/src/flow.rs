//! The QoS 1 and QoS 2 flows as sans-IO state machines, shared by the broker and the client.
//!
//! Three pieces, each the state of one session (not of one connection):
//!
//! - [`PacketIdAllocator`]: hands out non-zero packet identifiers that are not in use.
//! - [`OutgoingFlows`]: the sender's side of QoS 1 and QoS 2 (5.0 §4.3.2, §4.3.3; 3.1.1 §4.3.2,
//!   §4.3.3): assigns a packet id to each PUBLISH, keeps it until it is acknowledged, answers
//!   PUBREC with PUBREL, enforces the send quota (5.0 §4.9) and resends what is unacknowledged when
//!   the session resumes on a new connection (5.0 §4.4, 3.1.1 §4.4).
//! - [`IncomingFlows`]: the receiver's side: acknowledges each PUBLISH, and for QoS 2 holds the
//!   packet id from PUBLISH to PUBREL so that a resent PUBLISH is acknowledged again but delivered
//!   once (the "Method B" of 5.0 §4.3.3 and 3.1.1 §4.3.3), within the Receive Maximum (5.0 §3.3.4).
//!
//! Nothing here does I/O or reads a clock; every collection is a `BTreeMap`, a `BTreeSet` or a
//! `Vec`, so iteration order, and with it every output, is a function of the inputs alone.
//!
//! # Who calls what
//!
//! Both the broker and the client are senders and receivers: the client sends with an
//! [`OutgoingFlows`] what it publishes and receives with an [`IncomingFlows`] what the server
//! forwards; the broker keeps one of each per session, the other way round.
//!
//! | event on a connection | call |
//! |---|---|
//! | the connection is established (CONNACK sent or received) | [`OutgoingFlows::set_send_quota`] with the peer's Receive Maximum |
//! | ... and it resumes an existing session | then [`OutgoingFlows::resend_on_resume`]; write what it returns |
//! | ... or it starts a new session | [`OutgoingFlows::clear`] and [`IncomingFlows::clear`] |
//! | the application publishes | [`OutgoingFlows::send`]; on [`SendError::QuotaExhausted`] queue the message |
//! | PUBACK received | [`OutgoingFlows::handle_puback`] |
//! | PUBREC received | [`OutgoingFlows::handle_pubrec`]; write the PUBREL it returns |
//! | PUBCOMP received | [`OutgoingFlows::handle_pubcomp`] |
//! | after any of these three acks | [`OutgoingFlows::resend_next`] until `None`, then retry the queue |
//! | PUBLISH received | [`IncomingFlows::handle_publish`]; deliver if told to, write the reply |
//! | PUBREL received | [`IncomingFlows::handle_pubrel`]; write the PUBCOMP it returns |
//!
//! An `Err(FlowError)` is the peer's fault: the caller decides whether to ignore it or to close
//! the connection ([`FlowError::reason_code`] gives the 5.0 code where the spec names one).
//!
//! # Retries
//!
//! Nothing is resent within a connection: 5.0 MQTT-4.4.0-1 allows a resend only when a session
//! resumes on a new connection and forbids it at any other time. 3.1.1 MQTT-4.4.0-1 requires the
//! same resend on reconnection and, while it does not forbid resending at other times, names
//! reconnection as the only time it is required; this module does the same for both versions.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use mqtt_protocol::flow::{IncomingFlows, OutgoingFlows};
//! use mqtt_protocol::{Packet, ProtocolVersion, Publish, QoS};
//!
//! let mut sender = OutgoingFlows::new(32);
//! sender.set_send_quota(10); // the peer's Receive Maximum
//! let mut receiver = IncomingFlows::new(10);
//!
//! let message = Publish {
//!     qos: QoS::ExactlyOnce,
//!     topic: "sensors/1".into(),
//!     payload: Bytes::from_static(b"21.5"),
//!     ..Publish::default()
//! };
//! let publish = sender.send(message).unwrap(); // now carries a packet id
//! let incoming = receiver.handle_publish(&publish).unwrap();
//! assert!(incoming.deliver);
//! let Some(Packet::PubRec(pubrec)) = incoming.reply else { unreachable!() };
//! let pubrel = sender.handle_pubrec(&pubrec).unwrap().expect("a PUBREL to send");
//! let pubcomp = receiver.handle_pubrel(&pubrel, ProtocolVersion::V5);
//! let completed = sender.handle_pubcomp(&pubcomp).unwrap();
//! assert!(!completed.is_error());
//! assert!(sender.is_empty());
//! assert_eq!(receiver.held_count(), 0);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::packet::{Packet, Publish, PublishAck};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion, QoS};

/// Allocates packet identifiers: non-zero, never one that is in use (5.0 MQTT-2.2.1-3,
/// MQTT-2.2.1-4; 3.1.1 MQTT-2.3.1-1, MQTT-2.3.1-2, MQTT-2.3.1-4).
///
/// Allocation is round-robin: it continues after the id handed out last, wraps from 65535 to 1
/// and skips ids in use, so an id just released is not handed out again before the others. A
/// peer that confuses an old acknowledgement with a new flow is then caught sooner.
///
/// The ids in use are a `BTreeSet`, whose size follows the number in use (a 65536-bit set would
/// cost 8 KiB per session however idle). Because allocation is round-robin, the ids in use mostly
/// lie behind the cursor, so the search for a free id is short; its worst case is the length of the
/// run of consecutive ids in use after the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIdAllocator {
    in_use: BTreeSet<u16>,
    in_use_count_max: u16,
    /// Where the next search starts, in 1..=65535.
    next: u16,
}

impl Default for PacketIdAllocator {
    fn default() -> PacketIdAllocator {
        PacketIdAllocator::new()
    }
}

impl PacketIdAllocator {
    /// An allocator over all 65535 ids.
    pub fn new() -> PacketIdAllocator {
        PacketIdAllocator::with_in_use_count_max(u16::MAX)
    }

    /// An allocator that refuses to have more than `in_use_count_max` ids in use at once.
    ///
    /// # Panics
    ///
    /// If `in_use_count_max` is 0.
    pub fn with_in_use_count_max(in_use_count_max: u16) -> PacketIdAllocator {
        assert!(
            in_use_count_max > 0,
            "a packet id allocator needs room for at least one id"
        );
        PacketIdAllocator {
            in_use: BTreeSet::new(),
            in_use_count_max,
            next: 1,
        }
    }

    /// A free id, now in use, or `None` when `in_use_count_max` ids are in use.
    pub fn allocate(&mut self) -> Option<u16> {
        if self.in_use.len() >= usize::from(self.in_use_count_max) {
            return None;
        }
        // Fewer than 65535 ids are in use, so one of the two searches finds a free id.
        let packet_id = self.first_free_from(self.next).or_else(|| self.first_free_from(1))?;
        self.in_use.insert(packet_id);
        self.next = packet_id.checked_add(1).unwrap_or(1);
        Some(packet_id)
    }

    /// Makes `packet_id` free again; false if it was not in use.
    pub fn release(&mut self, packet_id: u16) -> bool {
        self.in_use.remove(&packet_id)
    }

    pub fn is_in_use(&self, packet_id: u16) -> bool {
        self.in_use.contains(&packet_id)
    }

    pub fn in_use_count(&self) -> usize {
        self.in_use.len()
    }

    pub fn in_use_count_max(&self) -> u16 {
        self.in_use_count_max
    }

    /// Frees every id. The cursor stays where it is.
    pub fn clear(&mut self) {
        self.in_use.clear();
    }

    /// The first id at or after `start` (in 1..=65535) that is not in use, or `None` if every id
    /// from `start` to 65535 is in use.
    fn first_free_from(&self, start: u16) -> Option<u16> {
        debug_assert!(start != 0, "packet id 0 is never allocated");
        let mut candidate = start;
        for &packet_id in self.in_use.range(start..) {
            if packet_id != candidate {
                return Some(candidate);
            }
            candidate = candidate.checked_add(1)?;
        }
        Some(candidate)
    }
}

/// Where a sender's QoS 1 or QoS 2 flow stands: which acknowledgement it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowState {
    /// QoS 1: the PUBLISH is unacknowledged until its PUBACK (5.0 MQTT-4.3.2-3, 3.1.1 MQTT-4.3.2-1).
    AwaitingPubAck,
    /// QoS 2: the PUBLISH is unacknowledged until its PUBREC (5.0 MQTT-4.3.3-3, 3.1.1 MQTT-4.3.3-1).
    AwaitingPubRec,
    /// QoS 2: the PUBREL is unacknowledged until its PUBCOMP (5.0 MQTT-4.3.3-5, 3.1.1 MQTT-4.3.3-1).
    AwaitingPubComp,
}

impl FlowState {
    /// The acknowledgement this state waits for.
    pub fn expected_ack(self) -> PacketType {
        match self {
            FlowState::AwaitingPubAck => PacketType::PubAck,
            FlowState::AwaitingPubRec => PacketType::PubRec,
            FlowState::AwaitingPubComp => PacketType::PubComp,
        }
    }
}

impl fmt::Display for FlowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "awaiting {}", self.expected_ack())
    }
}

/// Why [`OutgoingFlows::send`] refused a message. Neither is an error of the peer: the caller
/// keeps the message queued and retries after an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendError {
    /// The window is full: as many QoS 1 and 2 messages are in flight as the send quota and the
    /// in-flight maximum allow, or messages withheld at resume still wait for
    /// [`OutgoingFlows::resend_next`], which go first.
    QuotaExhausted,
    /// Every packet identifier is in use.
    PacketIdsExhausted,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::QuotaExhausted => "the send quota is exhausted (5.0 §4.9)",
            SendError::PacketIdsExhausted => "every packet identifier is in use",
        })
    }
}

impl std::error::Error for SendError {}

/// A packet of the peer that does not fit the flows: the peer broke the protocol. No state was
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// An acknowledgement that no flow expects: `state` is `None` when no flow uses the packet
    /// id, else the state of the flow that does, which waits for another kind of acknowledgement
    /// (a PUBACK for a QoS 2 message, a PUBREC for a QoS 1 message, a PUBCOMP before the PUBREC,
    /// a second PUBREC). 5.0 MQTT-2.2.1-5 and 3.1.1 MQTT-2.3.1-6 require an acknowledgement to
    /// carry the packet id of the PUBLISH it answers.
    Unsolicited {
        packet_id: u16,
        ack: PacketType,
        state: Option<FlowState>,
    },
    /// A QoS 2 PUBLISH with a new packet id while `receive_maximum` ids are already held. In 5.0
    /// the receiver disconnects with 0x93 Receive Maximum exceeded (5.0 §3.3.4).
    ReceiveMaximumExceeded { packet_id: u16, receive_maximum: u16 },
    /// A QoS 1 or 2 PUBLISH without a packet id, or with packet id 0 (5.0 §2.2.1, 3.1.1
    /// MQTT-2.3.1-1). The strict decoder never produces one.
    InvalidPacketId { qos: QoS, packet_id: Option<u16> },
}

impl FlowError {
    /// The 5.0 reason code for a DISCONNECT over this error. An acknowledgement for a packet id
    /// no flow expects it for is a Protocol Error (0x82): the packet parses, but it does not fit
    /// the receiver's state (5.0 §1.2's definition; §3.14.2.1 describes 0x82 as an unexpected or
    /// out-of-order packet). `Some` for every error; 3.1.1 callers ignore it.
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            FlowError::Unsolicited { .. } => Some(ReasonCode::PROTOCOL_ERROR),
            FlowError::ReceiveMaximumExceeded { .. } => Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
            FlowError::InvalidPacketId { .. } => Some(ReasonCode::MALFORMED_PACKET),
        }
    }

    /// The packet that answers this error without closing the connection, if there is one: a
    /// PUBREC whose packet id no flow uses is answered with a PUBREL, so that the receiver stops
    /// holding the id. In 5.0 that PUBREL carries 0x92 Packet Identifier not found, which 5.0
    /// §3.6.2.1 describes as a session mismatch (or normal during recovery); 3.1.1 has no reason
    /// codes, so its PUBREL is plain.
    pub fn reply(&self, version: ProtocolVersion) -> Option<Packet> {
        match *self {
            FlowError::Unsolicited {
                packet_id,
                ack: PacketType::PubRec,
                state: None,
            } => {
                let mut pubrel = PublishAck::new(packet_id);
                if version.is_v5() {
                    pubrel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                Some(Packet::PubRel(pubrel))
            }
            _ => None,
        }
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::Unsolicited {
                packet_id,
                ack,
                state: None,
            } => {
                write!(f, "unsolicited {ack} for packet id {packet_id}: no flow uses it")
            }
            FlowError::Unsolicited {
                packet_id,
                ack,
                state: Some(state),
            } => {
                write!(f, "unsolicited {ack} for packet id {packet_id}: its flow is {state}")
            }
            FlowError::ReceiveMaximumExceeded {
                packet_id,
                receive_maximum,
            } => write!(
                f,
                "QoS 2 PUBLISH with packet id {packet_id} while {receive_maximum} ids are held: \
                 Receive Maximum exceeded (5.0 §3.3.4)"
            ),
            FlowError::InvalidPacketId { qos, packet_id: None } => {
                write!(f, "QoS {} PUBLISH without a packet id", qos.as_u8())
            }
            FlowError::InvalidPacketId {
                qos,
                packet_id: Some(packet_id),
            } => {
                write!(
                    f,
                    "QoS {} PUBLISH with packet id {packet_id}, which must be non-zero",
                    qos.as_u8()
                )
            }
        }
    }
}

impl std::error::Error for FlowError {}

/// A sender's flow that ended: the packet id is free again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Completed {
    pub packet_id: u16,
    /// AtLeastOnce for a PUBACK, ExactlyOnce for a PUBCOMP; the flow's own for a discard.
    pub qos: QoS,
    /// The reason code of the acknowledgement that ended the flow.
    pub reason_code: ReasonCode,
}

impl Completed {
    /// Whether the receiver refused the message (a PUBACK with a reason code of 0x80 or more).
    /// The message counts as acknowledged and is not resent (5.0 MQTT-4.4.0-2); a broker must not
    /// offer it to another member of a shared subscription (5.0 MQTT-4.8.2-6).
    pub fn is_error(&self) -> bool {
        self.reason_code.is_error()
    }
}

/// One of the sender's flows, as [`OutgoingFlows::inflight`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflightMessage<'a> {
    pub packet_id: u16,
    pub state: FlowState,
    /// The PUBLISH as first sent (DUP 0) while it waits for PUBACK or PUBREC; `None` once the
    /// PUBREL is sent, the message having been discarded then (5.0 §4.3.3 figure 4.3).
    pub publish: Option<&'a Publish>,
    /// Whether the PUBLISH was withheld at the last resume and waits for
    /// [`OutgoingFlows::resend_next`].
    pub resend_pending: bool,
}

/// What a flow keeps: its unacknowledged packet, the one it would resend.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unacknowledged {
    /// A QoS 1 PUBLISH awaiting PUBACK or a QoS 2 PUBLISH awaiting PUBREC, as first sent.
    Publish(Publish),
    /// The PUBREL of a QoS 2 flow awaiting PUBCOMP.
    PubRel(PublishAck),
}

impl Unacknowledged {
    fn state(&self) -> FlowState {
        match self {
            Unacknowledged::Publish(publish) if publish.qos == QoS::AtLeastOnce => FlowState::AwaitingPubAck,
            Unacknowledged::Publish(_) => FlowState::AwaitingPubRec,
            Unacknowledged::PubRel(_) => FlowState::AwaitingPubComp,
        }
    }

    fn publish(&self) -> Option<&Publish> {
        match self {
            Unacknowledged::Publish(publish) => Some(publish),
            Unacknowledged::PubRel(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Flow {
    /// The flow's place in the resend order: its PUBLISH's while it waits for PUBACK or PUBREC,
    /// its PUBREC's once it waits for PUBCOMP.
    sequence: u64,
    packet: Unacknowledged,
}

/// The sender's side of the QoS 1 and QoS 2 flows of one session.
///
/// It is session state (5.0 §4.1, 3.1.1 §3.1.2.4): keep it while the session lives, across
/// connections, and [`clear`](OutgoingFlows::clear) it when the session is discarded.
///
/// # The window
///
/// A new QoS 1 or 2 PUBLISH may be sent while fewer flows are in flight than the window,
/// `min(send quota, inflight_count_max)`. The send quota is the peer's Receive Maximum in 5.0
/// (5.0 §4.9, MQTT-3.3.4-7, MQTT-3.3.4-9), set for each connection with
/// [`set_send_quota`](OutgoingFlows::set_send_quota); 3.1.1 has no Receive Maximum, so its callers
/// pass their own in-flight limit. A flow counts until it ends: a QoS 2 flow waiting for its
/// PUBCOMP still counts, as 5.0 §4.9 returns quota only on PUBACK, PUBCOMP, or PUBREC with an
/// error. QoS 0 messages are never held back (5.0 §4.9 leaves that to the sender).
///
/// # Resume beyond the quota
///
/// A session can resume on a connection whose peer grants a smaller Receive Maximum than there
/// are flows in flight. [`resend_on_resume`](OutgoingFlows::resend_on_resume) then resends every
/// PUBREL (only PUBLISH packets may wait for quota: 5.0 MQTT-3.3.4-8, MQTT-3.3.4-10) but only as
/// many PUBLISH packets as the window has room for (5.0 MQTT-3.3.4-7, MQTT-3.3.4-9); the others are
/// withheld, in order, and [`resend_next`](OutgoingFlows::resend_next) releases them one by one as
/// acknowledgements free the window, before any new message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFlows {
    inflight_count_max: u16,
    send_quota: u16,
    packet_ids: PacketIdAllocator,
    /// Every flow, by packet id.
    flows: BTreeMap<u16, Flow>,
    /// Sequence → packet id: the resend order.
    order: BTreeMap<u64, u16>,
    /// The sequences of flows whose PUBLISH was withheld at the last resume.
    resend_pending: BTreeSet<u64>,
    sequence_next: u64,
}

impl OutgoingFlows {
    /// No flow in flight; at most `inflight_count_max` at once. The send quota starts at 65535
    /// (the 5.0 Receive Maximum when the property is absent), so the window is
    /// `inflight_count_max` until [`set_send_quota`](OutgoingFlows::set_send_quota).
    ///
    /// # Panics
    ///
    /// If `inflight_count_max` is 0.
    pub fn new(inflight_count_max: u16) -> OutgoingFlows {
        assert!(
            inflight_count_max > 0,
            "the in-flight maximum must allow at least one message"
        );
        OutgoingFlows {
            inflight_count_max,
            send_quota: u16::MAX,
            packet_ids: PacketIdAllocator::new(),
            flows: BTreeMap::new(),
            order: BTreeMap::new(),
            resend_pending: BTreeSet::new(),
            sequence_next: 0,
        }
    }

    /// Sets the send quota for a new connection: in 5.0 the Receive Maximum of the peer (65535
    /// when its CONNECT or CONNACK has none), which is not session state (5.0 §4.9); in 3.1.1 the
    /// caller's own in-flight limit.
    ///
    /// # Panics
    ///
    /// If `receive_maximum` is 0: 5.0 MQTT-4.9.0-1 requires a non-zero quota, and the decoder
    /// rejects a Receive Maximum of 0 as a Protocol Error.
    pub fn set_send_quota(&mut self, receive_maximum: u16) {
        assert!(
            receive_maximum > 0,
            "the send quota must be non-zero (5.0 MQTT-4.9.0-1)"
        );
        self.send_quota = receive_maximum;
    }

    pub fn send_quota(&self) -> u16 {
        self.send_quota
    }

    pub fn inflight_count_max(&self) -> u16 {
        self.inflight_count_max
    }

    /// `min(send quota, inflight_count_max)`: how many flows may be in flight on this connection.
    pub fn window(&self) -> usize {
        usize::from(self.send_quota.min(self.inflight_count_max))
    }

    /// Whether [`send`](OutgoingFlows::send) would accept a QoS 1 or 2 message now (packet ids
    /// permitting).
    pub fn can_send(&self) -> bool {
        self.resend_pending.is_empty() && self.flows.len() < self.window()
    }

    /// Prepares `publish` for writing.
    ///
    /// QoS 0: returned with DUP 0 and no packet id (5.0 MQTT-4.3.1-1, MQTT-2.2.1-2; 3.1.1
    /// MQTT-4.3.1-1, MQTT-2.3.1-5), not tracked, never held back.
    ///
    /// QoS 1 and 2: given a packet id not in use and DUP 0 (5.0 MQTT-4.3.2-1, MQTT-4.3.2-2,
    /// MQTT-4.3.3-1, MQTT-4.3.3-2; 3.1.1 MQTT-4.3.2-1, MQTT-4.3.3-1), whatever it carried, and
    /// kept until acknowledged. Its topic should be the topic name rather than a Topic Alias:
    /// aliases belong to one connection (5.0 §3.3.2.3.4) and the message may be resent on another.
    pub fn send(&mut self, mut publish: Publish) -> Result<Publish, SendError> {
        publish.dup = false;
        let qos = publish.qos;
        if qos == QoS::AtMostOnce {
            publish.packet_id = None;
            return Ok(publish);
        }
        if !self.can_send() {
            return Err(SendError::QuotaExhausted);
        }
        let packet_id = self.packet_ids.allocate().ok_or(SendError::PacketIdsExhausted)?;
        publish.packet_id = Some(packet_id);
        let packet = Unacknowledged::Publish(publish.clone());
        let sequence = self.next_sequence();
        self.flows.insert(packet_id, Flow { sequence, packet });
        self.order.insert(sequence, packet_id);
        debug_assert!(self.flows.len() <= usize::from(self.inflight_count_max));
        Ok(publish)
    }

    /// Ends the QoS 1 flow of `puback.packet_id` and frees its id (5.0 MQTT-4.3.2-3, 3.1.1
    /// MQTT-2.3.1-3). A reason code of 0x80 or more ends it too: the message is not resent (5.0
    /// MQTT-4.4.0-2) and [`Completed::is_error`] says so. Either way the quota is returned (5.0
    /// §4.9).
    pub fn handle_puback(&mut self, puback: &PublishAck) -> Result<Completed, FlowError> {
        self.expect(puback.packet_id, PacketType::PubAck, FlowState::AwaitingPubAck)?;
        self.end(puback.packet_id);
        Ok(Completed {
            packet_id: puback.packet_id,
            qos: QoS::AtLeastOnce,
            reason_code: puback.reason_code,
        })
    }

    /// Moves the QoS 2 flow of `pubrec.packet_id` on: with a reason code below 0x80 the message is
    /// discarded, the flow waits for PUBCOMP and the PUBREL to write is returned, with the same
    /// packet id (5.0 MQTT-4.3.3-4, MQTT-4.3.3-5; 3.1.1 MQTT-4.3.3-1); with 0x80 or more the flow
    /// ends, its id is free and nothing is sent (5.0 MQTT-4.4.0-2, §4.3.3).
    ///
    /// On an error whose packet id no flow uses, [`FlowError::reply`] gives the PUBREL that lets
    /// the receiver release it.
    pub fn handle_pubrec(&mut self, pubrec: &PublishAck) -> Result<Option<PublishAck>, FlowError> {
        let packet_id = pubrec.packet_id;
        self.expect(packet_id, PacketType::PubRec, FlowState::AwaitingPubRec)?;
        if pubrec.reason_code.is_error() {
            self.end(packet_id);
            return Ok(None);
        }
        // PUBRELs are resent in the order their PUBRECs arrived (5.0 MQTT-4.6.0-4, 3.1.1
        // MQTT-4.6.0-4): the flow takes a new place in the order.
        let sequence = self.next_sequence();
        let pubrel = PublishAck::new(packet_id);
        let Some(flow) = self.flows.get_mut(&packet_id) else {
            unreachable!("expect() found the flow of packet id {packet_id}")
        };
        self.order.remove(&flow.sequence);
        // A PUBREC for a PUBLISH withheld at resume: the receiver had it already; no need to resend.
        self.resend_pending.remove(&flow.sequence);
        flow.sequence = sequence;
        flow.packet = Unacknowledged::PubRel(pubrel.clone());
        self.order.insert(sequence, packet_id);
        Ok(Some(pubrel))
    }

    /// Ends the QoS 2 flow of `pubcomp.packet_id`, which must have sent its PUBREL, and frees its
    /// id (5.0 §4.3.3, 3.1.1 MQTT-2.3.1-3). A PUBCOMP with 0x92 Packet Identifier not found ends
    /// it too: the receiver has no state left for it.
    pub fn handle_pubcomp(&mut self, pubcomp: &PublishAck) -> Result<Completed, FlowError> {
        self.expect(pubcomp.packet_id, PacketType::PubComp, FlowState::AwaitingPubComp)?;
        self.end(pubcomp.packet_id);
        Ok(Completed {
            packet_id: pubcomp.packet_id,
            qos: QoS::ExactlyOnce,
            reason_code: pubcomp.reason_code,
        })
    }

    /// The packets to write when a connection resumes this session, in order (5.0 MQTT-4.4.0-1,
    /// 3.1.1 MQTT-4.4.0-1). Call it once per resumed connection, after
    /// [`set_send_quota`](OutgoingFlows::set_send_quota) and before any new message.
    ///
    /// - Each PUBLISH waiting for PUBACK or PUBREC again, with its original packet id and DUP 1
    ///   (5.0 MQTT-3.3.1-1, MQTT-3.3.1-3; 3.1.1 MQTT-3.3.1-1, MQTT-2.3.1-3), in the order they were
    ///   first sent (5.0 MQTT-4.6.0-1, 3.1.1 MQTT-4.6.0-1), as far as the window allows; the rest
    ///   are withheld for [`resend_next`](OutgoingFlows::resend_next) (see the type's
    ///   documentation).
    /// - Each PUBREL waiting for PUBCOMP, unchanged (its flags are fixed, 5.0 MQTT-3.6.1-1), in
    ///   the order the PUBRECs arrived (5.0 MQTT-4.6.0-4, 3.1.1 MQTT-4.6.0-4). The PUBLISH of such
    ///   a flow is never resent (5.0 MQTT-4.3.3-6, 3.1.1 MQTT-4.3.3-1).
    ///
    /// The two kinds are interleaved in the order of the events that produced them.
    pub fn resend_on_resume(&mut self) -> Vec<Packet> {
        self.resend_pending.clear();
        let window = self.window();
        let mut packets = Vec::with_capacity(self.flows.len());
        for (&sequence, packet_id) in &self.order {
            let Some(flow) = self.flows.get(packet_id) else {
                unreachable!("the order names packet id {packet_id}, which has no flow")
            };
            match &flow.packet {
                Unacknowledged::PubRel(pubrel) => packets.push(Packet::PubRel(pubrel.clone())),
                Unacknowledged::Publish(publish) => {
                    // Once one PUBLISH is withheld, every later one is too: `packets` only grows.
                    if packets.len() < window {
                        packets.push(Packet::Publish(Publish {
                            dup: true,
                            ..publish.clone()
                        }));
                    } else {
                        self.resend_pending.insert(sequence);
                    }
                }
            }
        }
        packets
    }

    /// The next PUBLISH withheld at resume, with DUP 1 and its original packet id, if the window
    /// now has room for it; `None` otherwise. Call it after every acknowledgement until it returns
    /// `None`, before sending new messages. It never returns anything within a connection that
    /// did not resume with more flows than its window.
    pub fn resend_next(&mut self) -> Option<Publish> {
        let &sequence = self.resend_pending.first()?;
        let written_count = self.flows.len() - self.resend_pending.len();
        if written_count >= self.window() {
            return None;
        }
        self.resend_pending.remove(&sequence);
        let publish = self
            .order
            .get(&sequence)
            .and_then(|packet_id| self.flows.get(packet_id))
            .and_then(|flow| flow.packet.publish());
        let Some(publish) = publish else {
            unreachable!("a withheld resend (sequence {sequence}) is a flow waiting for PUBACK or PUBREC")
        };
        Some(Publish {
            dup: true,
            ..publish.clone()
        })
    }

    /// Ends the flow of `packet_id` as if the peer had acknowledged it, when its PUBLISH can no
    /// longer be sent: a session resumed on a connection whose peer now accepts smaller packets
    /// than the PUBLISH in flight (5.0 MQTT-3.1.2-25: discarded unsent, and the sender behaves as
    /// if it had completed sending it). Frees the id and the quota, and returns what ended; `None`,
    /// changing nothing, if no flow uses `packet_id` or it has moved on to its PUBREL (a PUBREL
    /// always fits where a CONNACK did).
    pub fn discard(&mut self, packet_id: u16) -> Option<Completed> {
        let qos = self.flows.get(&packet_id)?.packet.publish()?.qos;
        self.end(packet_id);
        Some(Completed {
            packet_id,
            qos,
            reason_code: ReasonCode::SUCCESS,
        })
    }

    /// How many PUBLISH packets withheld at resume still wait for
    /// [`resend_next`](OutgoingFlows::resend_next).
    pub fn resend_pending_count(&self) -> usize {
        self.resend_pending.len()
    }

    /// How many QoS 1 and 2 flows have not ended, whatever they wait for.
    pub fn inflight_count(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The state of the flow using `packet_id`, if one does.
    pub fn state(&self, packet_id: u16) -> Option<FlowState> {
        self.flows.get(&packet_id).map(|flow| flow.packet.state())
    }

    /// The flows in resend order: PUBLISH packets in the order they were sent, PUBRELs in the order
    /// their PUBRECs arrived.
    pub fn inflight(&self) -> impl Iterator<Item = InflightMessage<'_>> + '_ {
        self.order.iter().filter_map(move |(sequence, packet_id)| {
            let flow = self.flows.get(packet_id)?;
            Some(InflightMessage {
                packet_id: *packet_id,
                state: flow.packet.state(),
                publish: flow.packet.publish(),
                resend_pending: self.resend_pending.contains(sequence),
            })
        })
    }

    /// Checks what must always hold, cheaply enough to call after every step in tests and
    /// fuzzing: never more flows than the in-flight maximum, every flow's packet id allocated and
    /// in the resend order exactly once, and the withheld
    /// resends among the flows. The error says what broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.flows.len() > usize::from(self.inflight_count_max) {
            return Err(format!(
                "{} flows in flight, above the maximum of {}",
                self.flows.len(),
                self.inflight_count_max
            ));
        }
        // Ids in use beyond the flows' are SUBSCRIBE and UNSUBSCRIBE ids (allocate_packet_id).
        if self.order.len() != self.flows.len() || self.packet_ids.in_use_count() < self.flows.len() {
            return Err(format!(
                "{} flows, {} in the resend order, {} packet ids in use",
                self.flows.len(),
                self.order.len(),
                self.packet_ids.in_use_count()
            ));
        }
        let mut seen = BTreeSet::new();
        for packet_id in self.order.values() {
            if !self.flows.contains_key(packet_id) || !self.packet_ids.is_in_use(*packet_id) || !seen.insert(*packet_id)
            {
                return Err(format!(
                    "packet id {packet_id} in the resend order is not one live flow"
                ));
            }
        }
        if let Some(sequence) = self
            .resend_pending
            .iter()
            .find(|sequence| !self.order.contains_key(sequence))
        {
            return Err(format!("a withheld resend (sequence {sequence}) has no flow"));
        }
        Ok(())
    }

    /// Discards every flow and frees every packet id, as when the session ends (Clean Start,
    /// or expiry).
    pub fn clear(&mut self) {
        self.flows.clear();
        self.order.clear();
        self.resend_pending.clear();
        self.packet_ids.clear();
    }

    /// A packet id for a SUBSCRIBE or UNSUBSCRIBE, from the same space as the PUBLISH ids: a
    /// client's SUBSCRIBE, UNSUBSCRIBE and QoS > 0 PUBLISH packets must not share an id in use
    /// (5.0 MQTT-2.2.1-3, 3.1.1 MQTT-2.3.1-2). `None` when every id is in use.
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        self.packet_ids.allocate()
    }

    /// Frees an id from [`allocate_packet_id`](OutgoingFlows::allocate_packet_id), on its SUBACK
    /// or UNSUBACK. False, changing nothing, if it is not in use or a PUBLISH flow holds it (a
    /// peer's SUBACK must not free a PUBLISH's id).
    pub fn release_packet_id(&mut self, packet_id: u16) -> bool {
        !self.flows.contains_key(&packet_id) && self.packet_ids.release(packet_id)
    }

    /// Packet ids in use, by flows and by SUBSCRIBE and UNSUBSCRIBE packets.
    pub fn packet_ids_in_use_count(&self) -> usize {
        self.packet_ids.in_use_count()
    }

    /// Whether `packet_id` is in use, by a flow or by a SUBSCRIBE or UNSUBSCRIBE.
    pub fn is_packet_id_in_use(&self, packet_id: u16) -> bool {
        self.packet_ids.is_in_use(packet_id)
    }

    fn next_sequence(&mut self) -> u64 {
        let sequence = self.sequence_next;
        // 2^64 sequences: not reachable at any message rate.
        self.sequence_next += 1;
        sequence
    }

    /// Ok if the flow of `packet_id` is in `state`, else the error for an unsolicited `ack`.
    fn expect(&self, packet_id: u16, ack: PacketType, state: FlowState) -> Result<(), FlowError> {
        match self.state(packet_id) {
            Some(actual) if actual == state => Ok(()),
            actual => Err(FlowError::Unsolicited {
                packet_id,
                ack,
                state: actual,
            }),
        }
    }

    /// Removes the flow of `packet_id`, which exists, and frees its id.
    fn end(&mut self, packet_id: u16) {
        let Some(flow) = self.flows.remove(&packet_id) else {
            unreachable!("expect() found the flow of packet id {packet_id}")
        };
        self.order.remove(&flow.sequence);
        self.resend_pending.remove(&flow.sequence);
        let released = self.packet_ids.release(packet_id);
        debug_assert!(released, "a flow's packet id {packet_id} is in use");
    }
}

/// What to do with a received PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Whether to deliver the message onward (to subscribers, or to the application). False for a
    /// QoS 2 PUBLISH whose packet id is still held: a resend of a message already delivered.
    pub deliver: bool,
    /// The PUBACK or PUBREC to write, with Success; `None` for QoS 0.
    pub reply: Option<Packet>,
}

/// The receiver's side of the QoS 1 and QoS 2 flows of one session.
///
/// QoS 1 needs no state: every PUBLISH is delivered and acknowledged, a resend included (5.0
/// MQTT-4.3.2-4, MQTT-4.3.2-5; 3.1.1 MQTT-4.3.2-2). QoS 2 follows Method B of 5.0 §4.3.3 (and 3.1.1
/// §4.3.3): the message is delivered when its PUBLISH first arrives and its packet id held until
/// the PUBREL, so a resent PUBLISH is acknowledged with PUBREC again but not delivered again (5.0
/// MQTT-4.3.3-8, MQTT-4.3.3-10, MQTT-4.3.3-11, MQTT-4.3.3-12; 3.1.1 MQTT-4.3.3-2).
///
/// The held ids are session state (5.0 §4.1, 3.1.1 §3.1.2.4): they survive a connection that
/// resumes the session; [`clear`](IncomingFlows::clear) them when the session is discarded.
///
/// Replies are returned at once, so writing them as they come keeps PUBACKs and PUBRECs in the
/// order of their PUBLISHes (5.0 MQTT-4.6.0-2, MQTT-4.6.0-3). For the same reason only held QoS 2
/// ids count towards the Receive Maximum: a QoS 1 PUBLISH is acknowledged as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingFlows {
    receive_maximum: u16,
    /// QoS 2 packet ids between PUBLISH and PUBREL; never more than `receive_maximum`.
    held: BTreeSet<u16>,
}

impl IncomingFlows {
    /// At most `receive_maximum` QoS 2 ids held at once: in 5.0 the Receive Maximum this side
    /// announced in its CONNECT or CONNACK (65535 when absent); in 3.1.1 the caller's own limit.
    ///
    /// # Panics
    ///
    /// If `receive_maximum` is 0, which 5.0 does not allow (5.0 §3.1.2.11.3, §3.2.2.3.3).
    pub fn new(receive_maximum: u16) -> IncomingFlows {
        assert!(receive_maximum > 0, "the Receive Maximum must be non-zero");
        IncomingFlows {
            receive_maximum,
            held: BTreeSet::new(),
        }
    }

    pub fn receive_maximum(&self) -> u16 {
        self.receive_maximum
    }

    /// Handles a received PUBLISH: whether to deliver it and what to reply.
    ///
    /// An error changes nothing: [`FlowError::ReceiveMaximumExceeded`] when a new QoS 2 id arrives
    /// while `receive_maximum` are held (5.0 §3.3.4: disconnect with 0x93), and
    /// [`FlowError::InvalidPacketId`] for a QoS 1 or 2 PUBLISH without a non-zero id.
    pub fn handle_publish(&mut self, publish: &Publish) -> Result<Incoming, FlowError> {
        let packet_id = match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {
                return Ok(Incoming {
                    deliver: true,
                    reply: None,
                })
            }
            (_, Some(packet_id)) if packet_id != 0 => packet_id,
            (qos, packet_id) => return Err(FlowError::InvalidPacketId { qos, packet_id }),
        };
        if publish.qos == QoS::AtLeastOnce {
            let reply = Some(Packet::PubAck(PublishAck::new(packet_id)));
            return Ok(Incoming { deliver: true, reply });
        }
        let reply = Some(Packet::PubRec(PublishAck::new(packet_id)));
        if self.held.contains(&packet_id) {
            // A resend (or a peer reusing an id in use): acknowledge again, deliver once.
            return Ok(Incoming { deliver: false, reply });
        }
        if self.held.len() >= usize::from(self.receive_maximum) {
            return Err(FlowError::ReceiveMaximumExceeded {
                packet_id,
                receive_maximum: self.receive_maximum,
            });
        }
        self.held.insert(packet_id);
        Ok(Incoming { deliver: true, reply })
    }

    /// The acknowledgement of `publish` with `reason_code` instead of Success (5.0 only), for a
    /// PUBLISH that [`handle_publish`](IncomingFlows::handle_publish) just told to deliver and the
    /// caller refused or found no subscriber for: 0x10 No matching subscribers, 0x87 Not
    /// authorized, ... (5.0 §3.4.2.1, §3.5.2.1). `None` for QoS 0.
    ///
    /// A QoS 2 PUBREC with 0x80 or more releases the held id, as the next PUBLISH with that id is
    /// a new message (5.0 MQTT-4.3.3-9); below 0x80 the id stays held until the PUBREL. Do not
    /// call it for a duplicate (`deliver` false): that would release the id of a message already
    /// delivered.
    pub fn acknowledge_with(&mut self, publish: &Publish, reason_code: ReasonCode) -> Option<Packet> {
        let packet_id = publish.packet_id.filter(|&packet_id| packet_id != 0)?;
        let ack = PublishAck {
            reason_code,
            ..PublishAck::new(packet_id)
        };
        match publish.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(ack)),
            QoS::ExactlyOnce => {
                if reason_code.is_error() {
                    self.held.remove(&packet_id);
                }
                Some(Packet::PubRec(ack))
            }
        }
    }

    /// Handles a received PUBREL: releases its packet id and returns the PUBCOMP to write, with
    /// the same id (5.0 MQTT-4.3.3-11, 3.1.1 MQTT-4.3.3-2). For an id not held, in 5.0 the PUBCOMP
    /// carries 0x92 Packet Identifier not found (5.0 §3.7.2.1: normal when recovering a session,
    /// else a session mismatch); 3.1.1 has no reason codes and answers with a plain PUBCOMP.
    pub fn handle_pubrel(&mut self, pubrel: &PublishAck, version: ProtocolVersion) -> PublishAck {
        let mut pubcomp = PublishAck::new(pubrel.packet_id);
        if !self.held.remove(&pubrel.packet_id) && version.is_v5() {
            pubcomp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        pubcomp
    }

    /// Whether `packet_id` is held: its QoS 2 PUBLISH arrived, its PUBREL has not.
    pub fn is_held(&self, packet_id: u16) -> bool {
        self.held.contains(&packet_id)
    }

    /// How many QoS 2 ids are held.
    /// Never more QoS 2 ids held than the Receive Maximum announced.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.held.len() > usize::from(self.receive_maximum) {
            return Err(format!(
                "{} QoS 2 ids held, above the Receive Maximum of {}",
                self.held.len(),
                self.receive_maximum
            ));
        }
        Ok(())
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// The held ids, ascending.
    pub fn held(&self) -> impl Iterator<Item = u16> + '_ {
        self.held.iter().copied()
    }

    /// Forgets every held id, as when the session ends.
    pub fn clear(&mut self) {
        self.held.clear();
    }
}
