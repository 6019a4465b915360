//! MQTT 5.0 properties (5.0 §2.2.2): every identifier with its wire type and the packets it may
//! appear in, and [`Properties`], the typed set one packet (or a will) carries.
//!
//! One struct serves every packet; which fields may be set depends on the packet and is enforced by
//! the decoder (a property not allowed is a Malformed Packet, 5.0 §2.2.2.2) and by the encoder.
//! User Properties keep their order (5.0 MQTT-3.3.2-18); Subscription Identifiers keep theirs.

use bytes::{BufMut, Bytes};

use crate::types::{PacketType, QoS};
use crate::wire::{put_binary, put_string, put_variable_byte_integer, variable_byte_integer_len};

/// How a property's value is written (5.0 §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Byte,
    TwoByteInteger,
    FourByteInteger,
    VariableByteInteger,
    Utf8String,
    BinaryData,
    Utf8StringPair,
}

/// Where a property is found: in a packet's properties, or in CONNECT's will properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyTarget {
    Packet(PacketType),
    Will,
}

macro_rules! property_ids {
    ($($variant:ident = $id:literal, $name:literal, $wire:ident, [$($target:ident),*];)*) => {
        /// A 5.0 property identifier.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum PropertyId {
            $($variant = $id,)*
        }

        impl PropertyId {
            /// Every property identifier, ascending.
            pub const ALL: &'static [PropertyId] = &[$(PropertyId::$variant,)*];

            pub fn from_u8(id: u8) -> Option<PropertyId> {
                match id {
                    $($id => Some(PropertyId::$variant),)*
                    _ => None,
                }
            }

            /// The name the spec gives it.
            pub fn name(self) -> &'static str {
                match self {
                    $(PropertyId::$variant => $name,)*
                }
            }

            pub fn wire_type(self) -> WireType {
                match self {
                    $(PropertyId::$variant => WireType::$wire,)*
                }
            }

            /// Whether 5.0 allows this property there (5.0 §2.2.2.2).
            pub fn allowed_in(self, target: PropertyTarget) -> bool {
                match self {
                    $(PropertyId::$variant => property_ids!(@allowed target, [$($target),*]),)*
                }
            }
        }
    };
    (@allowed $target:ident, [$($allowed:ident),*]) => {
        false $(|| property_ids!(@one $target, $allowed))*
    };
    (@one $target:ident, Will) => { $target == PropertyTarget::Will };
    (@one $target:ident, $packet:ident) => { $target == PropertyTarget::Packet(PacketType::$packet) };
}

property_ids! {
    PayloadFormatIndicator = 0x01, "Payload Format Indicator", Byte, [Publish, Will];
    MessageExpiryInterval = 0x02, "Message Expiry Interval", FourByteInteger, [Publish, Will];
    ContentType = 0x03, "Content Type", Utf8String, [Publish, Will];
    ResponseTopic = 0x08, "Response Topic", Utf8String, [Publish, Will];
    CorrelationData = 0x09, "Correlation Data", BinaryData, [Publish, Will];
    SubscriptionIdentifier = 0x0B, "Subscription Identifier", VariableByteInteger, [Publish, Subscribe];
    SessionExpiryInterval = 0x11, "Session Expiry Interval", FourByteInteger, [Connect, ConnAck, Disconnect];
    AssignedClientIdentifier = 0x12, "Assigned Client Identifier", Utf8String, [ConnAck];
    ServerKeepAlive = 0x13, "Server Keep Alive", TwoByteInteger, [ConnAck];
    AuthenticationMethod = 0x15, "Authentication Method", Utf8String, [Connect, ConnAck, Auth];
    AuthenticationData = 0x16, "Authentication Data", BinaryData, [Connect, ConnAck, Auth];
    RequestProblemInformation = 0x17, "Request Problem Information", Byte, [Connect];
    WillDelayInterval = 0x18, "Will Delay Interval", FourByteInteger, [Will];
    RequestResponseInformation = 0x19, "Request Response Information", Byte, [Connect];
    ResponseInformation = 0x1A, "Response Information", Utf8String, [ConnAck];
    ServerReference = 0x1C, "Server Reference", Utf8String, [ConnAck, Disconnect];
    ReasonString = 0x1F, "Reason String", Utf8String, [ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth];
    ReceiveMaximum = 0x21, "Receive Maximum", TwoByteInteger, [Connect, ConnAck];
    TopicAliasMaximum = 0x22, "Topic Alias Maximum", TwoByteInteger, [Connect, ConnAck];
    TopicAlias = 0x23, "Topic Alias", TwoByteInteger, [Publish];
    MaximumQoS = 0x24, "Maximum QoS", Byte, [ConnAck];
    RetainAvailable = 0x25, "Retain Available", Byte, [ConnAck];
    UserProperty = 0x26, "User Property", Utf8StringPair, [Connect, ConnAck, Publish, Will, PubAck, PubRec, PubRel, PubComp, Subscribe, SubAck, Unsubscribe, UnsubAck, Disconnect, Auth];
    MaximumPacketSize = 0x27, "Maximum Packet Size", FourByteInteger, [Connect, ConnAck];
    WildcardSubscriptionAvailable = 0x28, "Wildcard Subscription Available", Byte, [ConnAck];
    SubscriptionIdentifierAvailable = 0x29, "Subscription Identifier Available", Byte, [ConnAck];
    SharedSubscriptionAvailable = 0x2A, "Shared Subscription Available", Byte, [ConnAck];
}

impl PropertyId {
    /// Whether the property may appear more than once in one packet: User Property anywhere, and
    /// Subscription Identifier in a PUBLISH (one per matching subscription, 5.0 §3.3.2.3.8).
    pub fn repeatable_in(self, target: PropertyTarget) -> bool {
        match self {
            PropertyId::UserProperty => true,
            PropertyId::SubscriptionIdentifier => target == PropertyTarget::Packet(PacketType::Publish),
            _ => false,
        }
    }

    /// Whether a Byte property may only be 0 or 1 (5.0 §3.1.2.11, §3.2.2.3). Payload Format
    /// Indicator is one of them: its two values are its only defined ones (5.0 §3.3.2.3.2).
    pub fn is_boolean(self) -> bool {
        matches!(
            self,
            PropertyId::PayloadFormatIndicator
                | PropertyId::RequestProblemInformation
                | PropertyId::RequestResponseInformation
                | PropertyId::MaximumQoS
                | PropertyId::RetainAvailable
                | PropertyId::WildcardSubscriptionAvailable
                | PropertyId::SubscriptionIdentifierAvailable
                | PropertyId::SharedSubscriptionAvailable
        )
    }

    /// Whether the value 0 is a Protocol Error (Receive Maximum, Maximum Packet Size, Subscription
    /// Identifier; 5.0 §3.1.2.11.3, §3.1.2.11.4, §3.3.2.3.8). Topic Alias 0 is also forbidden but
    /// has its own code, 0x94 (5.0 §3.3.4).
    pub fn zero_is_protocol_error(self) -> bool {
        matches!(
            self,
            PropertyId::ReceiveMaximum | PropertyId::MaximumPacketSize | PropertyId::SubscriptionIdentifier
        )
    }
}

/// The properties of one packet or of a will: an 8-byte handle, empty without allocating, that
/// dereferences to [`PropertyFields`]. Most packets carry no properties, and every packet type
/// embeds a set, so keeping the fields out of line keeps packets small to move (a PUBLISH is 80
/// bytes, not 400). Reading a field of an empty set reads [`PropertyFields::EMPTY`]; writing one
/// allocates the fields.
///
/// ```
/// use mqtt_protocol::{Properties, PropertyFields};
///
/// let mut properties = Properties::default();
/// assert!(properties.is_empty() && properties.topic_alias.is_none());
/// properties.topic_alias = Some(3);
/// assert_eq!(properties, Properties::from(PropertyFields { topic_alias: Some(3), ..PropertyFields::default() }));
/// ```
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyFields>>);

impl Properties {
    /// True when no property is set (cheap: usually no allocation to look at).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(PropertyFields::is_empty)
    }

    /// The encoded length of the properties alone, without the Property Length in front.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        self.0.as_deref().map_or(0, PropertyFields::encoded_len)
    }

    /// The encoded length with the Property Length in front.
    #[inline]
    pub fn encoded_len_with_length(&self) -> usize {
        let len = self.encoded_len();
        variable_byte_integer_len(len as u32) + len
    }

    /// Writes the Property Length and the properties.
    pub fn put(&self, buf: &mut impl BufMut) {
        match self.0.as_deref() {
            Some(fields) => fields.put(buf),
            None => buf.put_u8(0),
        }
    }
}

impl From<PropertyFields> for Properties {
    fn from(fields: PropertyFields) -> Properties {
        if fields.is_empty() {
            Properties(None)
        } else {
            Properties(Some(Box::new(fields)))
        }
    }
}

/// What an empty [`Properties`] reads as.
static EMPTY_FIELDS: PropertyFields = PropertyFields::EMPTY;

impl std::ops::Deref for Properties {
    type Target = PropertyFields;

    fn deref(&self) -> &PropertyFields {
        self.0.as_deref().unwrap_or(&EMPTY_FIELDS)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertyFields {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            f.write_str("Properties {}")
        } else {
            (**self).fmt(f)
        }
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Properties {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Properties> {
        Ok(PropertyFields::arbitrary(u)?.into())
    }
}

/// The property values of a [`Properties`]. Every field is optional; `Default` is none at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PropertyFields {
    /// 0 = unspecified bytes, 1 = UTF-8.
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval_s: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::packet::arbitrary_option_bytes))]
    pub correlation_data: Option<Bytes>,
    /// In SUBSCRIBE at most one; in a server's PUBLISH one per matching subscription.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval_s: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive_s: Option<u16>,
    pub authentication_method: Option<String>,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::packet::arbitrary_option_bytes))]
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<bool>,
    pub will_delay_interval_s: Option<u32>,
    pub request_response_information: Option<bool>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    /// Only 0 or 1 on the wire.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    /// In order, duplicates allowed.
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

/// One property value, borrowed from a [`Properties`]; used to walk a set in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyValue<'a> {
    Byte(u8),
    TwoByteInteger(u16),
    FourByteInteger(u32),
    VariableByteInteger(u32),
    Utf8String(&'a str),
    BinaryData(&'a [u8]),
    Utf8StringPair(&'a str, &'a str),
}

impl PropertyValue<'_> {
    /// Encoded length of the value alone (without the identifier byte).
    pub fn len(&self) -> usize {
        match self {
            PropertyValue::Byte(_) => 1,
            PropertyValue::TwoByteInteger(_) => 2,
            PropertyValue::FourByteInteger(_) => 4,
            PropertyValue::VariableByteInteger(value) => variable_byte_integer_len(*value),
            PropertyValue::Utf8String(text) => 2 + text.len(),
            PropertyValue::BinaryData(data) => 2 + data.len(),
            PropertyValue::Utf8StringPair(key, value) => 4 + key.len() + value.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn put(&self, buf: &mut impl BufMut) {
        match *self {
            PropertyValue::Byte(value) => buf.put_u8(value),
            PropertyValue::TwoByteInteger(value) => buf.put_u16(value),
            PropertyValue::FourByteInteger(value) => buf.put_u32(value),
            PropertyValue::VariableByteInteger(value) => put_variable_byte_integer(buf, value),
            PropertyValue::Utf8String(text) => put_string(buf, text),
            PropertyValue::BinaryData(data) => put_binary(buf, data),
            PropertyValue::Utf8StringPair(key, value) => {
                put_string(buf, key);
                put_string(buf, value);
            }
        }
    }
}

impl PropertyFields {
    /// No property at all, for reading an empty [`Properties`].
    pub const EMPTY: PropertyFields = PropertyFields {
        payload_format_indicator: None,
        message_expiry_interval_s: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval_s: None,
        assigned_client_identifier: None,
        server_keep_alive_s: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval_s: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };

    /// True when no property is set. Checked field by field: it is on every encoder's fast path.
    pub fn is_empty(&self) -> bool {
        let PropertyFields {
            payload_format_indicator,
            message_expiry_interval_s,
            content_type,
            response_topic,
            correlation_data,
            subscription_identifiers,
            session_expiry_interval_s,
            assigned_client_identifier,
            server_keep_alive_s,
            authentication_method,
            authentication_data,
            request_problem_information,
            will_delay_interval_s,
            request_response_information,
            response_information,
            server_reference,
            reason_string,
            receive_maximum,
            topic_alias_maximum,
            topic_alias,
            maximum_qos,
            retain_available,
            user_properties,
            maximum_packet_size,
            wildcard_subscription_available,
            subscription_identifier_available,
            shared_subscription_available,
        } = self;
        payload_format_indicator.is_none()
            && message_expiry_interval_s.is_none()
            && content_type.is_none()
            && response_topic.is_none()
            && correlation_data.is_none()
            && subscription_identifiers.is_empty()
            && session_expiry_interval_s.is_none()
            && assigned_client_identifier.is_none()
            && server_keep_alive_s.is_none()
            && authentication_method.is_none()
            && authentication_data.is_none()
            && request_problem_information.is_none()
            && will_delay_interval_s.is_none()
            && request_response_information.is_none()
            && response_information.is_none()
            && server_reference.is_none()
            && reason_string.is_none()
            && receive_maximum.is_none()
            && topic_alias_maximum.is_none()
            && topic_alias.is_none()
            && maximum_qos.is_none()
            && retain_available.is_none()
            && user_properties.is_empty()
            && maximum_packet_size.is_none()
            && wildcard_subscription_available.is_none()
            && subscription_identifier_available.is_none()
            && shared_subscription_available.is_none()
    }

    /// Visits every property in ascending identifier order, repeated ones in their own order.
    pub fn for_each(&self, mut visit: impl FnMut(PropertyId, PropertyValue<'_>)) {
        use PropertyId as Id;
        use PropertyValue as V;
        let byte = |value: bool| V::Byte(u8::from(value));
        if let Some(value) = self.payload_format_indicator {
            visit(Id::PayloadFormatIndicator, V::Byte(value));
        }
        if let Some(value) = self.message_expiry_interval_s {
            visit(Id::MessageExpiryInterval, V::FourByteInteger(value));
        }
        if let Some(value) = &self.content_type {
            visit(Id::ContentType, V::Utf8String(value));
        }
        if let Some(value) = &self.response_topic {
            visit(Id::ResponseTopic, V::Utf8String(value));
        }
        if let Some(value) = &self.correlation_data {
            visit(Id::CorrelationData, V::BinaryData(value));
        }
        for value in &self.subscription_identifiers {
            visit(Id::SubscriptionIdentifier, V::VariableByteInteger(*value));
        }
        if let Some(value) = self.session_expiry_interval_s {
            visit(Id::SessionExpiryInterval, V::FourByteInteger(value));
        }
        if let Some(value) = &self.assigned_client_identifier {
            visit(Id::AssignedClientIdentifier, V::Utf8String(value));
        }
        if let Some(value) = self.server_keep_alive_s {
            visit(Id::ServerKeepAlive, V::TwoByteInteger(value));
        }
        if let Some(value) = &self.authentication_method {
            visit(Id::AuthenticationMethod, V::Utf8String(value));
        }
        if let Some(value) = &self.authentication_data {
            visit(Id::AuthenticationData, V::BinaryData(value));
        }
        if let Some(value) = self.request_problem_information {
            visit(Id::RequestProblemInformation, byte(value));
        }
        if let Some(value) = self.will_delay_interval_s {
            visit(Id::WillDelayInterval, V::FourByteInteger(value));
        }
        if let Some(value) = self.request_response_information {
            visit(Id::RequestResponseInformation, byte(value));
        }
        if let Some(value) = &self.response_information {
            visit(Id::ResponseInformation, V::Utf8String(value));
        }
        if let Some(value) = &self.server_reference {
            visit(Id::ServerReference, V::Utf8String(value));
        }
        if let Some(value) = &self.reason_string {
            visit(Id::ReasonString, V::Utf8String(value));
        }
        if let Some(value) = self.receive_maximum {
            visit(Id::ReceiveMaximum, V::TwoByteInteger(value));
        }
        if let Some(value) = self.topic_alias_maximum {
            visit(Id::TopicAliasMaximum, V::TwoByteInteger(value));
        }
        if let Some(value) = self.topic_alias {
            visit(Id::TopicAlias, V::TwoByteInteger(value));
        }
        if let Some(value) = self.maximum_qos {
            visit(Id::MaximumQoS, V::Byte(value.as_u8()));
        }
        if let Some(value) = self.retain_available {
            visit(Id::RetainAvailable, byte(value));
        }
        for (key, value) in &self.user_properties {
            visit(Id::UserProperty, V::Utf8StringPair(key, value));
        }
        if let Some(value) = self.maximum_packet_size {
            visit(Id::MaximumPacketSize, V::FourByteInteger(value));
        }
        if let Some(value) = self.wildcard_subscription_available {
            visit(Id::WildcardSubscriptionAvailable, byte(value));
        }
        if let Some(value) = self.subscription_identifier_available {
            visit(Id::SubscriptionIdentifierAvailable, byte(value));
        }
        if let Some(value) = self.shared_subscription_available {
            visit(Id::SharedSubscriptionAvailable, byte(value));
        }
    }

    /// The encoded length of the properties alone, without the Property Length in front.
    pub fn encoded_len(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut len = 0;
        self.for_each(|_, value| len += 1 + value.len());
        len
    }

    /// The encoded length with the Property Length in front.
    pub fn encoded_len_with_length(&self) -> usize {
        let len = self.encoded_len();
        variable_byte_integer_len(len as u32) + len
    }

    /// Writes the Property Length and the properties.
    pub fn put(&self, buf: &mut impl BufMut) {
        let len = self.encoded_len();
        put_variable_byte_integer(buf, len as u32);
        if len == 0 {
            return;
        }
        self.for_each(|id, value| {
            buf.put_u8(id as u8);
            value.put(buf);
        });
    }
}
