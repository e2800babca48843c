//! Byte format of the TCP comparison stream and an incremental decoder.
//!
//! The decoder takes whatever byte chunks the socket hands out, so values
//! split across reads are reassembled here and never in the I/O code. It
//! performs no I/O and reads no clock, which keeps it testable byte by byte.

use crate::proto::sequence::RunningChecksum;

/// Size of the client's request: the wanted length as a big-endian `u32`.
pub const REQUEST_LEN: usize = 4;
/// Size of one value on the wire (big-endian `u32`).
pub const VALUE_LEN: usize = 4;
/// Size of the checksum trailer (big-endian `u64`).
pub const TRAILER_LEN: usize = 8;

/// Encodes the client's request for `len` values.
pub fn encode_request(len: u32) -> [u8; REQUEST_LEN] {
    len.to_be_bytes()
}

/// Decodes the client's request.
pub fn decode_request(bytes: [u8; REQUEST_LEN]) -> u32 {
    u32::from_be_bytes(bytes)
}

/// The server sent more bytes than `len` values and one trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server sent bytes after the checksum trailer")]
pub struct TrailingBytes;

/// Reassembles `len` values and the checksum trailer from arbitrary chunks.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    /// Number of values the client asked for.
    expected: u32,
    /// Values decoded so far.
    received: u32,
    /// Bytes of the item (value or trailer) still incomplete.
    partial: [u8; TRAILER_LEN],
    /// How many bytes of `partial` are filled.
    partial_len: usize,
    /// Sum of the values decoded so far.
    checksum: RunningChecksum,
    /// The server's checksum, once fully received.
    trailer: Option<u64>,
}

/// What one call to [`StreamDecoder::feed`] completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Values completed by this chunk.
    pub values: u32,
    /// True when this chunk completed the trailer.
    pub finished: bool,
}

impl Progress {
    /// True when the chunk completed at least one value or the trailer.
    pub fn any(&self) -> bool {
        self.values > 0 || self.finished
    }
}

impl StreamDecoder {
    /// A decoder for a stream of `expected` values.
    pub fn new(expected: u32) -> Self {
        Self {
            expected,
            received: 0,
            partial: [0; TRAILER_LEN],
            partial_len: 0,
            checksum: RunningChecksum::default(),
            trailer: None,
        }
    }

    /// Consumes one chunk, calling `on_value` for each value completed in
    /// order. Fails if bytes follow the trailer; the decoder then stays as it
    /// was after the trailer.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        on_value: &mut impl FnMut(u32),
    ) -> Result<Progress, TrailingBytes> {
        let mut progress = Progress::default();
        while !input.is_empty() {
            if self.trailer.is_some() {
                return Err(TrailingBytes);
            }
            let item_len = if self.received < self.expected {
                VALUE_LEN
            } else {
                TRAILER_LEN
            };
            let take = (item_len - self.partial_len).min(input.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&input[..take]);
            self.partial_len += take;
            input = &input[take..];
            if self.partial_len < item_len {
                break;
            }
            self.partial_len = 0;
            if item_len == VALUE_LEN {
                let mut value = [0; VALUE_LEN];
                value.copy_from_slice(&self.partial[..VALUE_LEN]);
                let value = u32::from_be_bytes(value);
                self.checksum.add(value);
                self.received += 1;
                progress.values += 1;
                on_value(value);
            } else {
                self.trailer = Some(u64::from_be_bytes(self.partial));
                progress.finished = true;
            }
        }
        Ok(progress)
    }

    /// Values decoded so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Number of values the stream should carry.
    pub fn expected(&self) -> u32 {
        self.expected
    }

    /// Sum of the values decoded so far.
    pub fn checksum(&self) -> u64 {
        self.checksum.sum()
    }

    /// The server's checksum, once the trailer is complete.
    pub fn trailer(&self) -> Option<u64> {
        self.trailer
    }

    /// True once every value and the trailer have arrived.
    pub fn is_finished(&self) -> bool {
        self.trailer.is_some()
    }

    /// True when the stream is finished and the server's checksum equals the
    /// sum of the values received.
    pub fn is_verified(&self) -> bool {
        self.trailer == Some(self.checksum.sum()) && self.received == self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sequence::Sequence;

    fn encode_stream(seq: &Sequence, trailer: u64) -> Vec<u8> {
        let mut bytes: Vec<u8> = seq.iter().flat_map(u32::to_be_bytes).collect();
        bytes.extend_from_slice(&trailer.to_be_bytes());
        bytes
    }

    #[test]
    fn request_round_trips() {
        for len in [0, 1, 100_000, u32::MAX] {
            assert_eq!(decode_request(encode_request(len)), len);
        }
        assert_eq!(encode_request(0x0102_0304), [1, 2, 3, 4]);
    }

    #[test]
    fn decodes_a_stream_split_at_every_chunk_size() {
        let seq = Sequence::new(9, 37);
        let bytes = encode_stream(&seq, seq.checksum());
        for chunk in 1..=bytes.len() {
            let mut decoder = StreamDecoder::new(seq.len());
            let mut values = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder.feed(piece, &mut |v| values.push(v)).unwrap();
            }
            assert!(values.iter().copied().eq(seq.iter()), "chunk {chunk}");
            assert!(
                decoder.is_finished() && decoder.is_verified(),
                "chunk {chunk}"
            );
            assert_eq!(decoder.trailer(), Some(seq.checksum()));
        }
    }

    #[test]
    fn progress_reports_only_completed_items() {
        let mut decoder = StreamDecoder::new(2);
        let mut sink = |_| {};
        assert!(!decoder.feed(&[0, 0, 0], &mut sink).unwrap().any());
        let p = decoder.feed(&[7, 0, 0, 0, 1], &mut sink).unwrap();
        assert_eq!(
            p,
            Progress {
                values: 2,
                finished: false
            }
        );
        let p = decoder.feed(&[0; 8], &mut sink).unwrap();
        assert_eq!(
            p,
            Progress {
                values: 0,
                finished: true
            }
        );
        assert_eq!(decoder.checksum(), 8);
    }

    #[test]
    fn a_wrong_trailer_is_finished_but_not_verified() {
        let seq = Sequence::new(1, 10);
        let mut decoder = StreamDecoder::new(10);
        decoder
            .feed(&encode_stream(&seq, seq.checksum() + 1), &mut |_| {})
            .unwrap();
        assert!(decoder.is_finished());
        assert!(!decoder.is_verified());
    }

    #[test]
    fn bytes_after_the_trailer_are_an_error() {
        let seq = Sequence::new(1, 3);
        let mut bytes = encode_stream(&seq, seq.checksum());
        bytes.push(0);
        let mut decoder = StreamDecoder::new(3);
        assert_eq!(decoder.feed(&bytes, &mut |_| {}), Err(TrailingBytes));
        assert!(decoder.is_verified());
    }

    #[test]
    fn empty_stream_is_just_a_zero_trailer() {
        let mut decoder = StreamDecoder::new(0);
        let p = decoder.feed(&[0; 8], &mut |_| panic!("no values")).unwrap();
        assert!(p.finished);
        assert!(decoder.is_verified());
    }
}
