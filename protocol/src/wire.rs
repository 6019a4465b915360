//! Primitive readers and writers shared by the decoder, the encoder and the raw builder: big-endian
//! integers, variable byte integers, length-prefixed UTF-8 strings and binary data (5.0 §1.5,
//! 3.1.1 §1.5).

use bytes::{BufMut, Bytes};

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
pub fn put_variable_byte_integer(buf: &mut impl BufMut, mut value: u32) {
    assert!(
        value <= VARIABLE_BYTE_INTEGER_MAX,
        "variable byte integer {value} out of range"
    );
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
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

/// A cursor over one packet's body. Binary fields and the payload are zero-copy slices of it.
#[derive(Debug)]
pub struct Reader {
    body: Bytes,
    position: usize,
}

impl Reader {
    pub fn new(body: Bytes) -> Reader {
        Reader { body, position: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.body.len() - self.position
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn read_u8(&mut self) -> Result<u8, ReadError> {
        let byte = *self.body.get(self.position).ok_or(ReadError::Truncated)?;
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
        match read_variable_byte_integer(&self.body[self.position..]) {
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
        let len = usize::from(self.read_u16()?);
        let bytes = self.take_slice(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| ReadError::InvalidUtf8)?;
        if text.contains('\0') {
            return Err(ReadError::NullCharacter);
        }
        Ok(text.to_owned())
    }

    /// The next `len` bytes as a zero-copy slice.
    pub fn take(&mut self, len: usize) -> Result<Bytes, ReadError> {
        if self.remaining() < len {
            return Err(ReadError::Truncated);
        }
        let slice = self.body.slice(self.position..self.position + len);
        self.position += len;
        Ok(slice)
    }

    /// Everything left.
    pub fn take_rest(&mut self) -> Bytes {
        let slice = self.body.slice(self.position..);
        self.position = self.body.len();
        slice
    }

    fn take_slice(&mut self, len: usize) -> Result<&[u8], ReadError> {
        if self.remaining() < len {
            return Err(ReadError::Truncated);
        }
        let slice = &self.body[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }
}
