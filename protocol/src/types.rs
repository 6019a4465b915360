//! Protocol versions, QoS levels, direction and packet types.

use std::fmt;

/// The protocol version a connection speaks, fixed by the CONNECT packet's protocol name and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3. Only its CONNECT differs from 3.1.1 on the wire.
    V3_1,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    #[default]
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name of CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// True for 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }

    /// The specification whose rules govern this version. MQTT 3.1 has no OASIS text; its packets
    /// after CONNECT are those of 3.1.1, whose rules are cited for it.
    pub fn spec(self) -> crate::Spec {
        match self {
            ProtocolVersion::V5 => crate::Spec::V5_0,
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => crate::Spec::V3_1_1,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// Quality of service. The value 3 does not exist on the wire; decoders reject it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit value, or `None` for 3.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Which way a packet travels. Some packets, properties and reason codes are legal one way only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }
}

/// The control packet types (the high nibble of the first byte). 0 is reserved in both versions;
/// 15 is AUTH in 5.0 and reserved in 3.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The packet type for the high nibble of a first byte, or `None` for the reserved value 0.
    pub fn from_nibble(value: u8) -> Option<PacketType> {
        Some(match value {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            _ => return None,
        })
    }

    /// The fixed-header flags every packet type but PUBLISH must carry (5.0 MQTT-2.1.3-1,
    /// 3.1.1 MQTT-2.2.2-1). PUBLISH's flags are DUP, QoS and RETAIN.
    pub fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The directions this packet type may travel in the given version (5.0 §2.1.2, 3.1.1 §2.2.1).
    pub fn allowed(self, version: ProtocolVersion, direction: Direction) -> bool {
        use Direction::*;
        match self {
            PacketType::Connect | PacketType::Subscribe | PacketType::Unsubscribe | PacketType::PingReq => {
                direction == ClientToServer
            }
            PacketType::ConnAck | PacketType::SubAck | PacketType::UnsubAck | PacketType::PingResp => {
                direction == ServerToClient
            }
            PacketType::Publish
            | PacketType::PubAck
            | PacketType::PubRec
            | PacketType::PubRel
            | PacketType::PubComp => true,
            // 3.1.1 has no server DISCONNECT: a server closes the connection instead.
            PacketType::Disconnect => version.is_v5() || direction == ClientToServer,
            PacketType::Auth => version.is_v5(),
        }
    }

    /// The section of the spec that defines this packet, the same number in both versions.
    pub fn section(self) -> &'static str {
        match self {
            PacketType::Connect => "3.1",
            PacketType::ConnAck => "3.2",
            PacketType::Publish => "3.3",
            PacketType::PubAck => "3.4",
            PacketType::PubRec => "3.5",
            PacketType::PubRel => "3.6",
            PacketType::PubComp => "3.7",
            PacketType::Subscribe => "3.8",
            PacketType::SubAck => "3.9",
            PacketType::Unsubscribe => "3.10",
            PacketType::UnsubAck => "3.11",
            PacketType::PingReq => "3.12",
            PacketType::PingResp => "3.13",
            PacketType::Disconnect => "3.14",
            PacketType::Auth => "3.15",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
