//! Checksummed records, the unit of the write-ahead log and of snapshot files.
//!
//! Layout: `[len: u32 LE][len_check: u32 LE][body: len bytes][crc: u32 LE]`, where
//! `len_check` is the CRC32C of the four length bytes, the body the postcard encoding of the
//! value, and `crc` the CRC32C of the length bytes followed by the body. The checksum comes
//! last so that a record whose end was never written shows it (below).
//!
//! A reader tells a write that was cut short (a torn tail, normal after a crash) from damage to
//! bytes that had been completely written (corruption), and never mistakes damage for a torn
//! write. The log is written over zeros (the storage writes zeros ahead of its appends, so that
//! a sync changes no file metadata); a write cut short leaves the sectors it did not reach
//! reading as zeros. So a record is torn when
//! - it runs past the end of the bytes (its header or its body and checksum), or
//! - its header fails its check, and it and everything after it are zero (never written), or
//! - its header is sound, its checksum fails, and the checksum and everything after it are
//!   zero (the write stopped inside the body).
//!
//! Anything else that fails a check is corruption. A genuine header is never all zero (its
//! length check is the CRC of the length, and the CRC of four zero bytes is not zero) and has
//! at least two non-zero bytes, so one damaged byte cannot make it read as unwritten; a genuine
//! checksum is zero with odds of 2^-32. Asking for zeros to the end also keeps a synced sector
//! that reads back as zeros, with records after it, from passing for a torn write. The price
//! of never guessing: a cut-short write whose sectors landed out of order, or that stopped
//! inside a header or a checksum, reads as corruption, and start-up stops rather than
//! truncate what may have been acknowledged.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes of the header: length and length check.
pub const HEADER_BYTES: usize = 8;

/// Bytes of the trailer: the checksum.
pub const TRAILER_BYTES: usize = 4;

/// Largest body a reader accepts. Writers never exceed it, so a larger length can only be
/// damage.
pub const MAX_RECORD_BYTES: u32 = 1 << 30;

/// Appends one record holding `value` to `out`.
///
/// # Panics
/// If the body would be over [`MAX_RECORD_BYTES`] (a reader would refuse it), or if `value`
/// cannot be serialized by postcard (the durable types always can).
pub fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    let mut buf = std::mem::take(out);
    buf = postcard::to_extend(value, buf).expect("durable values always serialize");
    *out = buf;
    let len = u32::try_from(out.len() - start - HEADER_BYTES)
        .ok()
        .filter(|&l| l <= MAX_RECORD_BYTES)
        .expect("record body over MAX_RECORD_BYTES");
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let len_check = crc32c::crc32c(&len.to_le_bytes());
    out[start + 4..start + HEADER_BYTES].copy_from_slice(&len_check.to_le_bytes());
    let crc = checksum(&out[start..start + 4], &out[start + HEADER_BYTES..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// How a decoded byte sequence ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Right after the last whole record.
    Clean,
    /// The record at `offset` was cut short: it runs past the end of the buffer, or its
    /// header or its checksum was never written (see the module documentation). Everything
    /// from `offset` on is the torn write's.
    TornTail { offset: u64 },
    /// The record at `offset` is complete but damaged: its length check or checksum fails, its
    /// length is absurd, or its body is checksum-valid yet undecodable.
    Corrupt { offset: u64, reason: String },
}

/// The records before the first problem, each with its byte offset, and how the bytes ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<T> {
    pub records: Vec<(u64, T)>,
    pub end: End,
}

/// Decodes records from the start of `bytes` until the end or the first problem.
pub fn decode_all<T: DeserializeOwned>(bytes: &[u8]) -> Decoded<T> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let end = loop {
        match decode_next(bytes, pos) {
            Ok(Some((value, next))) => {
                records.push((pos as u64, value));
                pos = next;
            }
            Ok(None) => break End::Clean,
            Err(end) => break end,
        }
    };
    Decoded { records, end }
}

/// Decodes the record starting at byte `pos` of `bytes`: the value and where the next record
/// starts, `Ok(None)` at the very end, or how the bytes end there (never `End::Clean`).
/// For readers that consume records one at a time instead of collecting them.
pub fn decode_next<T: DeserializeOwned>(
    bytes: &[u8],
    pos: usize,
) -> Result<Option<(T, usize)>, End> {
    let rest = bytes.get(pos..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(None);
    }
    let offset = pos as u64;
    let torn = End::TornTail { offset };
    let Some(header) = rest.first_chunk::<HEADER_BYTES>() else {
        return Err(torn);
    };
    let len_bytes = &header[..4];
    let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes"));
    let len_check = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let corrupt = |reason: String| End::Corrupt { offset, reason };
    if crc32c::crc32c(len_bytes) != len_check {
        return Err(if unwritten(rest) {
            torn
        } else {
            corrupt("damaged record length".to_string())
        });
    }
    if len > MAX_RECORD_BYTES {
        return Err(corrupt(format!(
            "record length {len} is over the limit of {MAX_RECORD_BYTES}"
        )));
    }
    let body_end = HEADER_BYTES + len as usize;
    let Some(crc) = rest.get(body_end..body_end + TRAILER_BYTES) else {
        return Err(torn);
    };
    let body = &rest[HEADER_BYTES..body_end];
    let crc_bytes: [u8; TRAILER_BYTES] = crc.try_into().expect("4 bytes");
    if checksum(len_bytes, body) != u32::from_le_bytes(crc_bytes) {
        return Err(if unwritten(&rest[body_end..]) {
            torn
        } else {
            corrupt("checksum mismatch".to_string())
        });
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(Some((value, pos + body_end + TRAILER_BYTES))),
        Ok((_, extra)) => Err(corrupt(format!("{} bytes after the value", extra.len()))),
        Err(e) => Err(corrupt(format!("undecodable body: {e}"))),
    }
}

/// Whether these bytes, from a record's header or checksum to the end, read as never written
/// (all zero; see the module documentation for why a genuine header or checksum never does).
fn unwritten(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

fn checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where decoding `bytes` stopped on corruption, if it did.
    fn corrupt_at<T: DeserializeOwned>(bytes: &[u8]) -> Option<u64> {
        match decode_all::<T>(bytes).end {
            End::Corrupt { offset, .. } => Some(offset),
            _ => None,
        }
    }

    #[test]
    fn checksum_valid_but_undecodable_body_is_corrupt_even_at_the_end() {
        // A bool body holding 7: the checksum is right, the value is not.
        let body = [7u8];
        let len = 1u32.to_le_bytes();
        let mut bytes = len.to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&checksum(&len, &body).to_le_bytes());
        let decoded = decode_all::<bool>(&bytes);
        assert!(decoded.records.is_empty());
        assert!(
            matches!(decoded.end, End::Corrupt { offset: 0, .. }),
            "{:?}",
            decoded.end
        );
    }

    #[test]
    fn absurd_length_is_corrupt() {
        let mut bytes = Vec::new();
        encode(&true, &mut bytes);
        let at = bytes.len();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&u32::MAX.to_le_bytes()).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let decoded = decode_all::<bool>(&bytes);
        assert_eq!(decoded.records, vec![(0, true)]);
        assert!(matches!(decoded.end, End::Corrupt { offset, .. } if offset == at as u64));
    }

    #[test]
    fn checksum_covers_the_length() {
        let mut bytes = Vec::new();
        encode(&5u8, &mut bytes);
        encode(&6u8, &mut bytes);
        // Claim a longer body for the last record: the length check catches it, so it does
        // not pass for a torn tail.
        let last = HEADER_BYTES + 1 + TRAILER_BYTES;
        bytes[last] = 200;
        let decoded = decode_all::<u8>(&bytes);
        assert_eq!(decoded.records, vec![(0, 5)]);
        assert!(
            matches!(&decoded.end, End::Corrupt { offset, .. } if *offset == last as u64),
            "{:?}",
            decoded.end
        );
    }

    #[test]
    fn a_complete_last_record_with_a_bad_checksum_is_corrupt() {
        let mut bytes = Vec::new();
        encode(&5u8, &mut bytes);
        *bytes.last_mut().unwrap() ^= 1;
        assert_eq!(corrupt_at::<u8>(&bytes), Some(0));
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let mut bytes = Vec::new();
        encode(&5u8, &mut bytes);
        let at = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 40]);
        let decoded = decode_all::<u8>(&bytes);
        assert_eq!(decoded.records, vec![(0, 5)]);
        assert_eq!(decoded.end, End::TornTail { offset: at });
    }

    /// A record written over zeros whose last sector never reached the disk: its body is cut
    /// and its checksum reads as zeros.
    #[test]
    fn a_record_whose_checksum_was_never_written_is_torn() {
        let mut bytes = Vec::new();
        encode(&"one".to_string(), &mut bytes);
        let at = bytes.len();
        encode(&"a longer value".to_string(), &mut bytes);
        let body = at + HEADER_BYTES;
        bytes[body + 3..].fill(0);
        bytes.extend_from_slice(&[0; 40]);
        let decoded = decode_all::<String>(&bytes);
        assert_eq!(decoded.records, vec![(0, "one".to_string())]);
        assert_eq!(decoded.end, End::TornTail { offset: at as u64 });
    }

    /// The checksum is written but a sector of the body is zeros: written out of order, or
    /// damaged; either way not a clean cut, so it is not guessed to be one.
    #[test]
    fn a_lost_middle_with_its_checksum_written_is_corrupt() {
        let mut bytes = Vec::new();
        encode(&"a longer value".to_string(), &mut bytes);
        bytes[HEADER_BYTES + 2..HEADER_BYTES + 6].fill(0);
        assert_eq!(corrupt_at::<String>(&bytes), Some(0));
    }

    /// A synced record that reads back as zeros, with records after it, is damage (a lost
    /// write), not a torn one.
    #[test]
    fn a_zeroed_record_before_others_is_corrupt() {
        let mut bytes = Vec::new();
        encode(&5u8, &mut bytes);
        let second = bytes.len();
        encode(&6u8, &mut bytes);
        encode(&7u8, &mut bytes);
        let third = second + HEADER_BYTES + 1 + TRAILER_BYTES;
        bytes[second..third].fill(0);
        bytes.extend_from_slice(&[0; 40]);
        assert_eq!(corrupt_at::<u8>(&bytes), Some(second as u64));
        // Its checksum alone zeroed, the same.
        let mut bytes = Vec::new();
        encode(&"one".to_string(), &mut bytes);
        encode(&"two".to_string(), &mut bytes);
        let end = bytes.len();
        let one_end = end / 2;
        bytes[one_end - TRAILER_BYTES..one_end].fill(0);
        assert_eq!(corrupt_at::<String>(&bytes), Some(0));
    }

    /// Half a header zero is what a cut inside it looks like, but also what damage can do:
    /// corruption.
    #[test]
    fn a_header_only_partly_zero_is_corrupt() {
        let mut bytes = Vec::new();
        encode(&5u8, &mut bytes);
        bytes[4..].fill(0);
        bytes.extend_from_slice(&[0; 40]);
        assert_eq!(corrupt_at::<u8>(&bytes), Some(0));
    }
}
