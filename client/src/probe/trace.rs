//! The probe's trace: every packet sent and received, in order, timestamped from the probe's start,
//! with the raw bytes, the decoded packet or the decoder's verdict on it, and notes for closes and
//! expectations that failed. It is the evidence a conformance verdict carries, so it renders as
//! one readable line per entry:
//!
//! ```text
//!      0.412 ms -> CONNECT v5.0 client_id="probe-1" clean_start=1 keep_alive=60s
//!      1.038 ms <- CONNACK session_present=0 code=0x00 props=[ServerKeepAlive=5]
//!      2.275 ms <- MALFORMED PUBLISH 10B: breaks 5.0 MQTT-3.3.1-4 (§3.3.1.2) code=0x81: InvalidFixedHeaderFlags { packet_type: Publish, flags: 6 }
//!    301.904 ms <- (closed by peer)
//! ```
//!
//! The trace is bounded: beyond its capacity the oldest entries are dropped and counted.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::time::Duration;

use bytes::Bytes;
use mqtt_protocol::property::PropertyValue;
use mqtt_protocol::{DecodeError, Packet, PacketType, PropertyId, ReasonCode};

use super::pattern::quote;

/// The trace capacity when none is given.
pub const TRACE_ENTRY_COUNT_MAX_DEFAULT: usize = 10_000;

/// At most this many raw bytes of one entry are rendered as hex; the rest are counted.
pub const RAW_RENDER_BYTE_COUNT_MAX: usize = 1024;

/// Payloads and binary values up to this length that are printable UTF-8 are shown as text.
const TEXT_RENDER_BYTE_COUNT_MAX: usize = 32;

/// Which way an entry's bytes went. Notes about the connection (a close, a deadline that passed)
/// are `Received` when they are about what the peer did or did not send, `Sent` when about the
/// probe's own side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceDirection {
    Sent,
    Received,
}

impl TraceDirection {
    pub fn arrow(self) -> &'static str {
        match self {
            TraceDirection::Sent => "->",
            TraceDirection::Received => "<-",
        }
    }
}

/// One event on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Since the probe was created, on the tokio clock (simulated time under turmoil or a paused runtime).
    pub at: Duration,
    pub direction: TraceDirection,
    /// The packet's bytes exactly as they went over the wire (empty for a note alone).
    pub raw: Bytes,
    /// The packet, when the bytes decoded strictly.
    pub packet: Option<Packet>,
    /// The strict decoder's verdict, when the bytes did not decode.
    pub error: Option<DecodeError>,
    /// A close, a deadline that passed, bytes that are not a whole packet.
    pub note: Option<String>,
}

impl TraceEntry {
    /// The one-line summary of the entry, without its time and arrow.
    pub fn summary(&self) -> String {
        let mut line = String::new();
        if let Some(packet) = &self.packet {
            line.push_str(&summary(packet));
        } else if let Some(error) = &self.error {
            line.push_str(&describe_decode_error(error));
        } else if !self.raw.is_empty() {
            let _ = write!(line, "{}B", self.raw.len());
        }
        if let Some(note) = &self.note {
            if !line.is_empty() {
                line.push(' ');
            }
            let _ = write!(line, "({note})");
        }
        line
    }
}

/// The bounded, ordered record of a probe's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    entries: VecDeque<TraceEntry>,
    entry_count_max: usize,
    dropped_count: u64,
}

impl Trace {
    /// A trace keeping at most `entry_count_max` entries (at least 1).
    pub fn new(entry_count_max: usize) -> Trace {
        assert!(entry_count_max > 0, "a trace must be able to hold an entry");
        Trace {
            entries: VecDeque::new(),
            entry_count_max,
            dropped_count: 0,
        }
    }

    /// Appends an entry, dropping the oldest one when the trace is full.
    pub fn push(&mut self, entry: TraceEntry) {
        if self.entries.len() == self.entry_count_max {
            self.entries.pop_front();
            self.dropped_count += 1;
        }
        self.entries.push_back(entry);
        assert!(self.entries.len() <= self.entry_count_max);
    }

    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &TraceEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<&TraceEntry> {
        self.entries.back()
    }

    pub fn entry_count_max(&self) -> usize {
        self.entry_count_max
    }

    /// How many of the oldest entries were dropped to keep the bound.
    pub fn dropped_count(&self) -> u64 {
        self.dropped_count
    }

    /// One line per entry (`   1.038 ms <- CONNACK ...`), each followed, with `with_raw`, by its
    /// bytes in hex (at most [`RAW_RENDER_BYTE_COUNT_MAX`] of them).
    pub fn render(&self, with_raw: bool) -> String {
        let mut out = String::new();
        if self.dropped_count > 0 {
            let _ = writeln!(out, "({} earlier entries dropped)", self.dropped_count);
        }
        for entry in &self.entries {
            let _ = writeln!(
                out,
                "{:>10.3} ms {} {}",
                entry.at.as_secs_f64() * 1000.0,
                entry.direction.arrow(),
                entry.summary()
            );
            if with_raw && !entry.raw.is_empty() {
                let _ = writeln!(out, "{:16}{}", "", hex(&entry.raw));
            }
        }
        out
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Bytes as space-separated hex pairs, at most [`RAW_RENDER_BYTE_COUNT_MAX`] of them.
pub fn hex(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(RAW_RENDER_BYTE_COUNT_MAX)];
    let mut out = String::with_capacity(shown.len() * 3 + 24);
    for (index, byte) in shown.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{byte:02x}");
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, " ... ({} more bytes)", bytes.len() - shown.len());
    }
    out
}

/// A packet on one line: `PUBLISH qos=1 id=7 dup=0 topic="a/b" payload=3B("abc")`,
/// `CONNACK session_present=1 code=0x00 props=[ServerKeepAlive=5]`.
pub fn summary(packet: &Packet) -> String {
    let mut line = String::from(packet.packet_type().name());
    match packet {
        Packet::Connect(connect) => {
            let _ = write!(
                line,
                " v{} client_id={} clean_start={} keep_alive={}s",
                connect.protocol,
                quote(&connect.client_id),
                u8::from(connect.clean_start),
                connect.keep_alive_s
            );
            if let Some(will) = &connect.will {
                let _ = write!(
                    line,
                    " will=(topic={} qos={} retain={} payload={}",
                    quote(&will.topic),
                    will.qos.as_u8(),
                    u8::from(will.retain),
                    describe_bytes(&will.payload)
                );
                push_properties(&mut line, &will.properties);
                line.push(')');
            }
            if let Some(user_name) = &connect.user_name {
                let _ = write!(line, " user_name={}", quote(user_name));
            }
            if let Some(password) = &connect.password {
                // The password's length only: traces end up in reports.
                let _ = write!(line, " password={}B", password.len());
            }
            push_properties(&mut line, &connect.properties);
        }
        Packet::ConnAck(connack) => {
            let _ = write!(
                line,
                " session_present={} code={}",
                u8::from(connack.session_present),
                describe_reason_code(connack.reason_code, Some(PacketType::ConnAck))
            );
            push_properties(&mut line, &connack.properties);
        }
        Packet::Publish(publish) => {
            let _ = write!(line, " qos={}", publish.qos.as_u8());
            if let Some(packet_id) = publish.packet_id {
                let _ = write!(line, " id={packet_id}");
            }
            let _ = write!(line, " dup={}", u8::from(publish.dup));
            if publish.retain {
                line.push_str(" retain=1");
            }
            let _ = write!(
                line,
                " topic={} payload={}",
                quote(&publish.topic),
                describe_bytes(&publish.payload)
            );
            push_properties(&mut line, &publish.properties);
        }
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            let _ = write!(
                line,
                " id={} code={}",
                ack.packet_id,
                describe_reason_code(ack.reason_code, Some(packet.packet_type()))
            );
            push_properties(&mut line, &ack.properties);
        }
        Packet::Subscribe(subscribe) => {
            let _ = write!(line, " id={} filters=[", subscribe.packet_id);
            for (index, subscription) in subscribe.subscriptions.iter().enumerate() {
                if index > 0 {
                    line.push_str(", ");
                }
                let options = subscription.options;
                let _ = write!(line, "{} qos={}", quote(&subscription.filter), options.qos.as_u8());
                if options.no_local {
                    line.push_str(" no_local");
                }
                if options.retain_as_published {
                    line.push_str(" retain_as_published");
                }
                if options.retain_handling as u8 != 0 {
                    let _ = write!(line, " retain_handling={}", options.retain_handling as u8);
                }
            }
            line.push(']');
            push_properties(&mut line, &subscribe.properties);
        }
        Packet::SubAck(suback) => {
            let _ = write!(line, " id={} codes={}", suback.packet_id, codes(&suback.reason_codes));
            push_properties(&mut line, &suback.properties);
        }
        Packet::Unsubscribe(unsubscribe) => {
            let filters: Vec<String> = unsubscribe.filters.iter().map(|filter| quote(filter)).collect();
            let _ = write!(line, " id={} filters=[{}]", unsubscribe.packet_id, filters.join(", "));
            push_properties(&mut line, &unsubscribe.properties);
        }
        Packet::UnsubAck(unsuback) => {
            let _ = write!(line, " id={}", unsuback.packet_id);
            if !unsuback.reason_codes.is_empty() {
                let _ = write!(line, " codes={}", codes(&unsuback.reason_codes));
            }
            push_properties(&mut line, &unsuback.properties);
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(disconnect) => {
            let _ = write!(
                line,
                " code={}",
                describe_reason_code(disconnect.reason_code, Some(PacketType::Disconnect))
            );
            push_properties(&mut line, &disconnect.properties);
        }
        Packet::Auth(auth) => {
            let _ = write!(
                line,
                " code={}",
                describe_reason_code(auth.reason_code, Some(PacketType::Auth))
            );
            push_properties(&mut line, &auth.properties);
        }
    }
    line
}

/// A strict-decode failure on one line: the packet type its first byte names, its size, the rule,
/// the reason code and what exactly was wrong.
pub fn describe_decode_error(error: &DecodeError) -> String {
    let packet_type = match error.raw.first() {
        Some(first_byte) => match PacketType::from_nibble(first_byte >> 4) {
            Some(packet_type) => packet_type.name().to_owned(),
            None => format!("type {}", first_byte >> 4),
        },
        None => "packet".to_owned(),
    };
    let code = match error.reason_code {
        Some(code) => format!("0x{:02X}", code.0),
        None => "none".to_owned(),
    };
    format!(
        "MALFORMED {packet_type} {}B: breaks {} code={code}: {:?}",
        error.raw.len(),
        error.rule,
        error.kind
    )
}

/// `0x00` for success codes; failure codes with their name: `0x87(Not authorized)`.
pub(crate) fn describe_reason_code(code: ReasonCode, packet_type: Option<PacketType>) -> String {
    if !code.is_error() {
        return format!("0x{:02X}", code.0);
    }
    let name = match packet_type {
        Some(packet_type) => code.name_in(packet_type).or(code.name()),
        None => code.name(),
    };
    match name {
        Some(name) => format!("0x{:02X}({name})", code.0),
        None => format!("0x{:02X}(undefined)", code.0),
    }
}

/// Length in bytes, and the text too when it is short, printable UTF-8: `3B("abc")`, `300B`.
pub(crate) fn describe_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text.is_empty() && bytes.len() <= TEXT_RENDER_BYTE_COUNT_MAX && !text.chars().any(char::is_control) =>
        {
            format!("{}B({})", bytes.len(), quote(text))
        }
        _ => format!("{}B", bytes.len()),
    }
}

/// `ServerKeepAlive=5`, `AssignedClientIdentifier="auto-1"`, `UserProperty=("k", "v")`.
pub(crate) fn describe_property(id: PropertyId, value: PropertyValue<'_>) -> String {
    let value = match value {
        PropertyValue::Byte(value) => value.to_string(),
        PropertyValue::TwoByteInteger(value) => value.to_string(),
        PropertyValue::FourByteInteger(value) | PropertyValue::VariableByteInteger(value) => value.to_string(),
        PropertyValue::Utf8String(text) => quote(text),
        PropertyValue::BinaryData(data) => describe_bytes(data),
        PropertyValue::Utf8StringPair(key, value) => format!("({}, {})", quote(key), quote(value)),
    };
    format!("{id:?}={value}")
}

fn push_properties(line: &mut String, properties: &mqtt_protocol::Properties) {
    if properties.is_empty() {
        return;
    }
    let mut rendered = Vec::new();
    properties.for_each(|id, value| rendered.push(describe_property(id, value)));
    let _ = write!(line, " props=[{}]", rendered.join(", "));
}

fn codes(codes: &[ReasonCode]) -> String {
    let codes: Vec<String> = codes.iter().map(|code| format!("0x{:02X}", code.0)).collect();
    format!("[{}]", codes.join(","))
}
