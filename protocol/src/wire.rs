//! Primitive readers and writers shared by the decoder, the encoder and the raw builder: big-endian
//! integers, variable byte integers, length-prefixed UTF-8 strings and binary data (5.0 §1.5,
//! 3.1.1 §1.5).

use bytes::{Buf, BufMut, Bytes};

use crate::bytestr::ByteStr;

/// The largest value a variable byte integer can carry in four bytes.
pub const VARIABLE_BYTE_INTEGER_MAX: u32 = 268_435_455;

/// How many bytes the minimal encoding of `value` takes (1 to 4).
pub fn variable_byte_integer_len(value: u32) -> usize {
    debug_assert!(value <= VARIABLE_BYTE_INTEGER_MAX);
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes the minimal encoding of `value`.
pub fn put_variable_byte_integer(buf: &mut impl BufMut, value: u32) {
    let (bytes, len) = variable_byte_integer_bytes(value);
    buf.put_slice(&bytes[..len]);
}

/// The minimal encoding of `value`: the first `len` bytes of the array.
#[inline]
pub fn variable_byte_integer_bytes(mut value: u32) -> ([u8; 4], usize) {
    assert!(
        value <= VARIABLE_BYTE_INTEGER_MAX,
        "variable byte integer {value} out of range"
    );
    let mut bytes = [0u8; 4];
    let mut len = 0;
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        bytes[len] = byte;
        len += 1;
        if value == 0 {
            return (bytes, len);
        }
    }
}

/// A variable byte integer as read: its value and how many bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariableByteInteger {
    pub value: u32,
    pub len: usize,
}

impl VariableByteInteger {
    /// Whether a shorter encoding of the same value exists (forbidden in 5.0, MQTT-1.5.5-1).
    pub fn is_minimal(&self) -> bool {
        self.len == variable_byte_integer_len(self.value)
    }
}

/// The outcome of reading a variable byte integer from the front of `bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableByteIntegerRead {
    Complete(VariableByteInteger),
    /// The bytes ended while the continuation bit was still set.
    Incomplete,
    /// The fourth byte has its continuation bit set.
    TooLong,
}

pub fn read_variable_byte_integer(bytes: &[u8]) -> VariableByteIntegerRead {
    let mut value: u32 = 0;
    for (index, byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return VariableByteIntegerRead::Complete(VariableByteInteger { value, len: index + 1 });
        }
    }
    if bytes.len() >= 4 {
        VariableByteIntegerRead::TooLong
    } else {
        VariableByteIntegerRead::Incomplete
    }
}

/// Writes a UTF-8 string with its two-byte length. The caller has checked its length.
pub fn put_string(buf: &mut impl BufMut, value: &str) {
    put_binary(buf, value.as_bytes());
}

/// Writes binary data with its two-byte length. The caller has checked its length.
pub fn put_binary(buf: &mut impl BufMut, value: &[u8]) {
    debug_assert!(value.len() <= usize::from(u16::MAX));
    buf.put_u16(value.len() as u16);
    buf.put_slice(value);
}

/// Why a field could not be read; the decoder turns it into a [`crate::DecodeError`] with the rule
/// of the version it is decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    Truncated,
    InvalidUtf8,
    NullCharacter,
    VariableByteIntegerTooLong,
}

/// A cursor over one packet. Binary fields, strings read as [`ByteStr`] and the payload are
/// zero-copy slices of it.
#[derive(Debug)]
pub struct Reader {
    bytes: Bytes,
    position: usize,
}

impl Reader {
    /// Reads `body` from its start.
    pub fn new(body: Bytes) -> Reader {
        Reader::at(body, 0)
    }

    /// Reads `bytes` from `position` on: a whole packet, say, from past its fixed header, so the
    /// reader holds the packet without slicing it (see [`Reader::bytes`]).
    pub fn at(bytes: Bytes, position: usize) -> Reader {
        debug_assert!(position <= bytes.len());
        Reader { bytes, position }
    }

    /// Everything the reader was given, read or not.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn read_u8(&mut self) -> Result<u8, ReadError> {
        let byte = *self.bytes.get(self.position).ok_or(ReadError::Truncated)?;
        self.position += 1;
        Ok(byte)
    }

    pub fn read_u16(&mut self) -> Result<u16, ReadError> {
        let bytes = self.take_slice(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub fn read_u32(&mut self) -> Result<u32, ReadError> {
        let bytes = self.take_slice(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn read_variable_byte_integer(&mut self) -> Result<VariableByteInteger, ReadError> {
        match read_variable_byte_integer(&self.bytes[self.position..]) {
            VariableByteIntegerRead::Complete(integer) => {
                self.position += integer.len;
                Ok(integer)
            }
            VariableByteIntegerRead::Incomplete => Err(ReadError::Truncated),
            VariableByteIntegerRead::TooLong => Err(ReadError::VariableByteIntegerTooLong),
        }
    }

    /// Binary data: a two-byte length, then that many bytes.
    pub fn read_binary(&mut self) -> Result<Bytes, ReadError> {
        let len = usize::from(self.read_u16()?);
        self.take(len)
    }

    /// A UTF-8 encoded string: well-formed (no surrogates, no overlong forms) and without U+0000.
    /// A leading BOM is kept as U+FEFF, never stripped (5.0 MQTT-1.5.4-3, 3.1.1 MQTT-1.5.3-3).
    pub fn read_string(&mut self) -> Result<String, ReadError> {
        Ok(self.read_byte_str()?.as_str().to_owned())
    }

    /// [`Reader::read_string`] without the copy: the string shares the packet's bytes.
    pub fn read_byte_str(&mut self) -> Result<ByteStr, ReadError> {
        self.read_scanned().map(|(text, _)| text)
    }

    /// [`Reader::read_byte_str`] for a topic name: also says whether it holds a wildcard character
    /// (`+` or `#`), found in the same pass over the bytes, so a caller need not walk the topic
    /// rules again for the usual name that holds none.
    pub fn read_topic_name(&mut self) -> Result<(ByteStr, bool), ReadError> {
        self.read_scanned()
    }

    fn read_scanned(&mut self) -> Result<(ByteStr, bool), ReadError> {
        let len = usize::from(self.read_u16()?);
        let bytes = self.take(len)?;
        let scan = Scan::of(&bytes);
        // ASCII is UTF-8: the full check runs only on a string with a byte of 0x80 or more.
        if !scan.ascii && std::str::from_utf8(&bytes).is_err() {
            return Err(ReadError::InvalidUtf8);
        }
        if scan.null {
            return Err(ReadError::NullCharacter);
        }
        Ok((ByteStr::from_checked_utf8(bytes), scan.wildcard))
    }

    /// The next `len` bytes as a zero-copy slice.
    pub fn take(&mut self, len: usize) -> Result<Bytes, ReadError> {
        if self.remaining() < len {
            return Err(ReadError::Truncated);
        }
        let slice = self.bytes.slice(self.position..self.position + len);
        self.position += len;
        Ok(slice)
    }

    /// Everything left. The reader gives up its bytes for it (no reference count to bump): it is
    /// empty afterwards, and [`Reader::bytes`] with it.
    pub fn take_rest(&mut self) -> Bytes {
        let mut rest = std::mem::take(&mut self.bytes);
        rest.advance(self.position);
        self.position = 0;
        rest
    }

    fn take_slice(&mut self, len: usize) -> Result<&[u8], ReadError> {
        if self.remaining() < len {
            return Err(ReadError::Truncated);
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }
}

/// What one pass over a string's bytes found, eight bytes at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// No byte of 0x80 or more.
    pub ascii: bool,
    /// A byte 0x00 (U+0000: in UTF-8 no other character holds that byte).
    pub null: bool,
    /// A byte `+` or `#` (in UTF-8 only those characters hold those bytes).
    pub wildcard: bool,
}

impl Scan {
    #[inline]
    pub fn of(bytes: &[u8]) -> Scan {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // Non-zero exactly when some byte of `word` is 0 (the classic test; exact for "any").
        fn has_zero(word: u64) -> u64 {
            word.wrapping_sub(ONES) & !word & HIGH
        }
        let (mut all, mut null, mut wildcard) = (0u64, 0u64, 0u64);
        let mut add = |word: u64| {
            all |= word;
            null |= has_zero(word);
            wildcard |= has_zero(word ^ (ONES * u64::from(b'+'))) | has_zero(word ^ (ONES * u64::from(b'#')));
        };
        let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if bytes.len() >= 8 {
            let mut chunks = bytes.chunks_exact(8);
            for chunk in &mut chunks {
                add(word(chunk));
            }
            // The tail as the last eight bytes: looking at some bytes twice changes no answer.
            if !chunks.remainder().is_empty() {
                add(word(&bytes[bytes.len() - 8..]));
            }
        } else {
            // Padded with spaces, which are none of the bytes looked for.
            let mut padded = [b' '; 8];
            for (to, from) in padded.iter_mut().zip(bytes) {
                *to = *from;
            }
            add(u64::from_le_bytes(padded));
        }
        Scan {
            ascii: all & HIGH == 0,
            null: null != 0,
            wildcard: wildcard != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time scan agrees with a byte-at-a-time one, at every length and position.
    #[test]
    fn scan_agrees_with_a_plain_loop() {
        let alphabet = [
            b'a', b'/', b'+', b'#', 0x00, 0x7F, 0x80, 0xC3, 0xFF, b' ', 0x01, 0x2A, 0x2C, 0x22, 0x24,
        ];
        for len in 0..20 {
            for position in 0..len.max(1) {
                for &special in &alphabet {
                    for &fill in &[b'a', 0xC3, 0x01] {
                        let mut bytes = vec![fill; len];
                        if len > 0 {
                            bytes[position] = special;
                        }
                        let expected = Scan {
                            ascii: bytes.iter().all(|byte| byte.is_ascii()),
                            null: bytes.contains(&0),
                            wildcard: bytes.iter().any(|&byte| byte == b'+' || byte == b'#'),
                        };
                        assert_eq!(Scan::of(&bytes), expected, "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_checked_once_and_shared() {
        let packet = Bytes::from_static(b"\x00\x03a/b\x00\x02\xC3\xA9\x00\x02a\x00\x00\x02\xC3\x28\x00\x01+");
        let mut reader = Reader::new(packet.clone());
        let text = reader.read_byte_str().unwrap();
        assert_eq!(text, "a/b");
        assert_eq!(
            text.as_bytes().as_ptr(),
            packet[2..].as_ptr(),
            "a slice of the packet, not a copy"
        );
        assert_eq!(reader.read_byte_str().unwrap(), "é");
        assert_eq!(reader.read_byte_str(), Err(ReadError::NullCharacter));
        assert_eq!(reader.read_byte_str(), Err(ReadError::InvalidUtf8));
        assert_eq!(reader.read_topic_name().unwrap(), (ByteStr::from("+"), true));
        assert_eq!(reader.remaining(), 0);
    }
}
