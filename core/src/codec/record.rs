//! Checksummed records, the unit of the write-ahead log and of snapshot files.
//!
//! Layout: `[len: u32 LE][len_check: u32 LE][crc: u32 LE][body: len bytes]`, where
//! `len_check` is the CRC32C of the four length bytes, `crc` the CRC32C of the length bytes
//! followed by the body, and the body the postcard encoding of the value.
//!
//! A reader tells a write that was cut short (a torn tail, normal after a crash) from damage to
//! bytes that had been completely written (corruption), and never mistakes one for the other:
//! - torn: the last record is incomplete (its header or body runs past the end), or everything
//!   from a record's start to the end is zero bytes (a zero-filled tail);
//! - corrupt: anything else that fails a check. In particular a *complete* record whose checksum
//!   fails is corruption even when it is the last one, and a damaged length cannot pass for a
//!   torn tail because `len_check` catches it. Truncating a record that had been synced would
//!   silently lose an acknowledged write or a vote, so recovery must stop instead.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes of the header: length, length check and checksum.
pub const HEADER_BYTES: usize = 12;

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
    out[start + 4..start + 8].copy_from_slice(&len_check.to_le_bytes());
    let crc = checksum(&out[start..start + 4], &out[start + HEADER_BYTES..]);
    out[start + 8..start + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
}

/// How a decoded byte sequence ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Right after the last whole record.
    Clean,
    /// The record at `offset` is the last thing in the buffer and was cut short (its header or
    /// body runs past the end), or only zero bytes follow `offset`.
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
    if rest.iter().all(|&b| b == 0) {
        return Err(End::TornTail { offset });
    }
    let Some(header) = rest.first_chunk::<HEADER_BYTES>() else {
        return Err(End::TornTail { offset });
    };
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let (len, len_check, crc) = (word(0), word(4), word(8));
    let corrupt = |reason: String| End::Corrupt { offset, reason };
    if crc32c::crc32c(&header[..4]) != len_check {
        return Err(corrupt("damaged record length".to_string()));
    }
    if len > MAX_RECORD_BYTES {
        return Err(corrupt(format!(
            "record length {len} is over the limit of {MAX_RECORD_BYTES}"
        )));
    }
    let Some(body) = rest[HEADER_BYTES..].get(..len as usize) else {
        return Err(End::TornTail { offset });
    };
    if checksum(&header[..4], body) != crc {
        return Err(corrupt("checksum mismatch".to_string()));
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(Some((value, pos + HEADER_BYTES + body.len()))),
        Ok((_, extra)) => Err(corrupt(format!("{} bytes after the value", extra.len()))),
        Err(e) => Err(corrupt(format!("undecodable body: {e}"))),
    }
}

fn checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_valid_but_undecodable_body_is_corrupt_even_at_the_end() {
        // A bool body holding 7: the checksum is right, the value is not.
        let body = [7u8];
        let len = 1u32.to_le_bytes();
        let mut bytes = len.to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
        bytes.extend_from_slice(&checksum(&len, &body).to_le_bytes());
        bytes.extend_from_slice(&body);
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
        let last = HEADER_BYTES + 1;
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
        assert!(matches!(
            decode_all::<u8>(&bytes).end,
            End::Corrupt { offset: 0, .. }
        ));
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
}
