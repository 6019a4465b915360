//! The timestamped payload: every message says which run and publisher sent it, its sequence
//! number and when it was meant to be sent, so that a subscriber can measure latency and account
//! for loss, duplicates and reordering on its own.
//!
//! Layout (little endian): run tag (u32), publisher (u32), sequence number (u64), intended send
//! time in nanoseconds since the run's base instant (u64), then padding up to the payload size.

use bytes::{BufMut, Bytes, BytesMut};

/// The bytes of the stamp; the smallest payload.
pub const STAMP_LEN: usize = 24;

/// The padding byte.
const PADDING: u8 = 0x5A;

/// How many bytes an arena holds before a fresh one is taken: payloads are split off one shared
/// allocation instead of allocating each.
const ARENA_BYTES: usize = 64 * 1024;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Tells this run's messages from anybody else's on the same broker.
    pub run_tag: u32,
    pub publisher: u32,
    pub sequence: u64,
    /// Nanoseconds since the run's base instant: the intended send time, not the actual one
    /// (open loop: a late send counts as latency).
    pub intended_ns: u64,
}

impl Stamp {
    /// The stamp of `payload`, if it is one of ours (at least [`STAMP_LEN`] bytes).
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let field = |range: std::ops::Range<usize>| payload.get(range);
        let u32_at = |at: usize| field(at..at + 4).map(|bytes| u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])));
        let u64_at = |at: usize| field(at..at + 8).map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])));
        Some(Stamp {
            run_tag: u32_at(0)?,
            publisher: u32_at(4)?,
            sequence: u64_at(8)?,
            intended_ns: u64_at(16)?,
        })
    }
}

/// Writes payloads into a shared arena.
#[derive(Debug, Default)]
pub struct PayloadWriter {
    arena: BytesMut,
}

impl PayloadWriter {
    /// A payload of `size` bytes (at least [`STAMP_LEN`]) carrying `stamp`.
    pub fn write(&mut self, stamp: &Stamp, size: usize) -> Bytes {
        let size = size.max(STAMP_LEN);
        if self.arena.capacity() < size {
            self.arena = BytesMut::with_capacity(ARENA_BYTES.max(size));
        }
        self.arena.put_u32_le(stamp.run_tag);
        self.arena.put_u32_le(stamp.publisher);
        self.arena.put_u64_le(stamp.sequence);
        self.arena.put_u64_le(stamp.intended_ns);
        self.arena.put_bytes(PADDING, size - STAMP_LEN);
        self.arena.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_from_a_payload_of_any_size() {
        let mut writer = PayloadWriter::default();
        let stamp = Stamp {
            run_tag: 0xDEAD_BEEF,
            publisher: 7,
            sequence: 1 << 40,
            intended_ns: 123_456_789,
        };
        for size in [STAMP_LEN, 64, 4096, 100_000] {
            let payload = writer.write(&stamp, size);
            assert_eq!(payload.len(), size);
            assert_eq!(Stamp::read(&payload), Some(stamp));
        }
        assert_eq!(Stamp::read(&[0; STAMP_LEN - 1]), None, "too short to be ours");
    }
}
