//! The typed control packets of MQTT 3.1.1 and 5.0 (all 15, AUTH included).
//!
//! One set of types serves both versions: fields only 5.0 has (properties, reason codes) are empty
//! or Success in 3.1.1. 3.1.1's CONNACK return codes and SUBACK return codes are carried as the 5.0
//! reason codes of the same meaning (see [`crate::reason`]).

use bytes::Bytes;

use crate::bytestr::ByteStr;
use crate::property::Properties;
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion, QoS};

/// A control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PublishAck),
    PubRec(PublishAck),
    PubRel(PublishAck),
    PubComp(PublishAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT (§3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Connect {
    /// Fixed by the protocol name and level on the wire.
    pub protocol: ProtocolVersion,
    /// Clean Start in 5.0, Clean Session in 3.1.1.
    pub clean_start: bool,
    pub keep_alive_s: u16,
    pub properties: Properties,
    /// May be empty.
    pub client_id: String,
    pub will: Option<Will>,
    pub user_name: Option<String>,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_option_bytes))]
    pub password: Option<Bytes>,
}

/// The will of a CONNECT (§3.1.2.5 - §3.1.3.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Will {
    pub topic: String,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_bytes))]
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 only: Will Delay Interval, Payload Format Indicator, Message Expiry Interval, Content
    /// Type, Response Topic, Correlation Data, User Properties.
    pub properties: Properties,
}

/// CONNACK (§3.2). In 3.1.1, `reason_code` holds the 5.0 code equivalent to the return code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnAck {
    pub session_present: bool,
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH (§3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty in 5.0 when a Topic Alias stands for it. A decoded topic shares the packet's bytes.
    pub topic: ByteStr,
    /// Present exactly when QoS > 0, never 0.
    pub packet_id: Option<u16>,
    pub properties: Properties,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_bytes))]
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP (§3.4 - §3.7): the same shape; [`Packet`] says which.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PublishAck {
    pub packet_id: u16,
    /// Always Success in 3.1.1.
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

impl PublishAck {
    pub fn new(packet_id: u16) -> PublishAck {
        PublishAck {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }
}

/// Retain Handling of a subscription (5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription does not already exist.
    SendIfNew = 1,
    /// Do not send them.
    DoNotSend = 2,
}

/// Subscription options (5.0 §3.8.3.1; in 3.1.1 only the QoS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    pub fn with_qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    /// The options byte (5.0 §3.8.3.1).
    pub fn to_byte(self) -> u8 {
        self.qos.as_u8()
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Subscription {
    pub filter: String,
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (§3.8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Subscribe {
    pub packet_id: u16,
    pub properties: Properties,
    /// At least one.
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK (§3.9): one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubAck {
    pub packet_id: u16,
    pub properties: Properties,
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE (§3.10).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub properties: Properties,
    /// At least one.
    pub filters: Vec<String>,
}

/// UNSUBACK (§3.11). 3.1.1's carries only the packet id: `reason_codes` is then empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UnsubAck {
    pub packet_id: u16,
    pub properties: Properties,
    pub reason_codes: Vec<ReasonCode>,
}

/// DISCONNECT (§3.14). Always Normal disconnection with no properties in 3.1.1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Disconnect {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// AUTH (5.0 §3.15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

#[cfg(feature = "arbitrary")]
pub(crate) fn arbitrary_bytes(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Bytes> {
    Ok(Bytes::from(<Vec<u8> as arbitrary::Arbitrary>::arbitrary(u)?))
}

#[cfg(feature = "arbitrary")]
pub(crate) fn arbitrary_option_bytes(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Option<Bytes>> {
    Ok(<Option<Vec<u8>> as arbitrary::Arbitrary>::arbitrary(u)?.map(Bytes::from))
}
