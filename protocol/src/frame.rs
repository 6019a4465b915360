//! Framing: splits a byte stream into packets (first byte, remaining length, body) without judging
//! their content, so that a probe can always record what a peer sent, even when it is malformed.
//!
//! Framing can fail in two ways only: a remaining length whose fourth byte still has its
//! continuation bit set (nothing after it can be located), and a packet larger than the receiver's
//! maximum packet size. A remaining length that is longer than necessary is framed; the strict
//! decoder then rejects it in 5.0 (MQTT-1.5.5-1).

use bytes::{Bytes, BytesMut};

use crate::wire::{read_variable_byte_integer, VariableByteIntegerRead};

/// One packet as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The whole packet: fixed header and body.
    pub bytes: Bytes,
    /// How many bytes the remaining length took (1 to 4).
    pub remaining_length_len: usize,
}

impl Frame {
    pub fn first_byte(&self) -> u8 {
        self.bytes[0]
    }

    /// The high nibble: the packet type (0 and, in 3.1.1, 15 are reserved).
    pub fn packet_type_bits(&self) -> u8 {
        self.bytes[0] >> 4
    }

    /// The low nibble: the fixed-header flags.
    pub fn flags(&self) -> u8 {
        self.bytes[0] & 0x0F
    }

    pub fn header_len(&self) -> usize {
        1 + self.remaining_length_len
    }

    /// The variable header and payload.
    pub fn body(&self) -> Bytes {
        self.bytes.slice(self.header_len()..)
    }
}

/// Why the stream cannot be framed any further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The fourth remaining-length byte has its continuation bit set; `raw` holds the first five bytes.
    RemainingLengthTooLong { raw: Bytes },
    /// The packet is larger than allowed; `raw` holds its fixed header.
    PacketTooLarge { size: usize, maximum: u32, raw: Bytes },
}

/// Takes one whole packet off the front of `buf`. `Ok(None)`: more bytes are needed, and `buf` is
/// untouched. On error `buf` is untouched too: the stream cannot be framed past that point.
///
/// `maximum_packet_size` bounds the whole packet (fixed header included), as 5.0's Maximum Packet
/// Size does; a packet over it is refused as soon as its fixed header is read, before its body
/// arrives, so a peer cannot make the receiver buffer it.
pub fn split_frame(buf: &mut BytesMut, maximum_packet_size: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let remaining = match read_variable_byte_integer(&buf[1..]) {
        VariableByteIntegerRead::Complete(remaining) => remaining,
        VariableByteIntegerRead::Incomplete => return Ok(None),
        VariableByteIntegerRead::TooLong => {
            return Err(FrameError::RemainingLengthTooLong {
                raw: Bytes::copy_from_slice(&buf[..5]),
            });
        }
    };
    let header_len = 1 + remaining.len;
    let size = header_len + remaining.value as usize;
    if size > maximum_packet_size as usize {
        return Err(FrameError::PacketTooLarge {
            size,
            maximum: maximum_packet_size,
            raw: Bytes::copy_from_slice(&buf[..header_len]),
        });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame {
        bytes: buf.split_to(size).freeze(),
        remaining_length_len: remaining.len,
    }))
}
