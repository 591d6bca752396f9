//! Snapshot files as a sequence of [`record`]s, so that a state of any size is written, read
//! and checked like any other: no single record has to hold it.
//!
//! Layout: one [`Part::Header`] (where the snapshot stands in the log and how many bytes of
//! state follow), then [`Part::Chunk`]s holding those bytes in order, then one [`Part::End`]
//! with the CRC32C of all of them. Each record has its own checksum, and the end's checksum
//! covers the whole, so a chunk lost, repeated or reordered is caught as surely as a flipped
//! bit. A snapshot file is written to a temporary name, synced and renamed, so anything short
//! of the whole sequence is damage, never a torn tail to repair.

use super::record::{self, End};
use crate::durable::{Snapshot, SnapshotMeta};
use serde::{Deserialize, Serialize};

/// The default bytes of state per chunk record.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// One record of a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part<'a> {
    Header {
        meta: SnapshotMeta,
        total_len: u64,
    },
    /// Bytes in one piece: a sequence of `u8` (the same bytes in postcard) went through
    /// serde byte by byte, as slow as encoding the state itself.
    Chunk(
        #[serde(
            serialize_with = "serde_bytes::serialize",
            deserialize_with = "owned_bytes"
        )]
        std::borrow::Cow<'a, [u8]>,
    ),
    End {
        crc: u32,
    },
}

/// A chunk read back: its bytes in one piece, owned (records are decoded as owned values).
fn owned_bytes<'de, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::borrow::Cow<'a, [u8]>, D::Error> {
    let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
    Ok(std::borrow::Cow::Owned(bytes.into_vec()))
}

/// Calls `write` with the bytes of each record of `snapshot`'s file in order (one record at a
/// time, so that writing never holds a second copy of the state), chunks of at most
/// `chunk_bytes` (at least 1).
pub fn encode<E>(
    snapshot: &Snapshot,
    chunk_bytes: usize,
    mut write: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::new();
    let mut put = |part: &Part, buf: &mut Vec<u8>| {
        buf.clear();
        record::encode(part, buf);
        write(buf)
    };
    let header = Part::Header {
        meta: snapshot.meta,
        total_len: snapshot.data.len() as u64,
    };
    put(&header, &mut buf)?;
    for chunk in snapshot.data.chunks(chunk_bytes.max(1)) {
        put(&Part::Chunk(chunk.into()), &mut buf)?;
    }
    let end = Part::End {
        crc: crc32c::crc32c(&snapshot.data),
    };
    put(&end, &mut buf)
}

/// The whole file in memory (for tests and the fuzzer).
pub fn encode_to_vec(snapshot: &Snapshot, chunk_bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    encode::<()>(snapshot, chunk_bytes, |bytes| {
        out.extend_from_slice(bytes);
        Ok(())
    })
    .expect("writing to memory cannot fail");
    out
}

/// Bytes of the checksum that [`seal_state`] appends.
pub const STATE_CRC_BYTES: usize = 4;

/// The service's state as it travels and is stored: its encoding followed by the CRC32C of
/// that encoding (little-endian). The state crosses the network in chunks to a lagging
/// backup, and the checksum lets the backup check the whole before installing it, however
/// it was cut up (a file on disk has its own checksums besides).
pub fn seal_state(mut encoded: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&encoded);
    encoded.extend_from_slice(&crc.to_le_bytes());
    encoded
}

/// Why sealed state bytes are not whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("snapshot state of {0} bytes is too short to hold its checksum")]
    TooShort(usize),
    #[error("snapshot state of {len} bytes fails its checksum (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        len: usize,
        stored: u32,
        computed: u32,
    },
    #[error("snapshot state does not decode: {0}")]
    Decode(String),
}

/// The encoding inside sealed state bytes, once their checksum matches.
pub fn open_state(sealed: &[u8]) -> Result<&[u8], StateError> {
    let body_len = sealed
        .len()
        .checked_sub(STATE_CRC_BYTES)
        .ok_or(StateError::TooShort(sealed.len()))?;
    let (body, crc) = sealed.split_at(body_len);
    let stored = u32::from_le_bytes(crc.try_into().expect("split at 4 bytes from the end"));
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(StateError::Checksum {
            len: sealed.len(),
            stored,
            computed,
        });
    }
    Ok(body)
}

/// Why a snapshot file is not a snapshot: the byte offset of the record at fault and a reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {reason}")]
pub struct SnapshotError {
    pub offset: u64,
    pub reason: String,
}

/// Reads a snapshot file: exactly one header, chunks adding up to its length, and an end whose
/// checksum matches, with nothing after it. Any other shape is an error at the offending record.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let fail = |offset: usize, reason: &str| SnapshotError {
        offset: offset as u64,
        reason: reason.to_string(),
    };
    let next = |pos: usize| -> Result<Option<(Part<'static>, usize)>, SnapshotError> {
        record::decode_next::<Part>(bytes, pos).map_err(|end| match end {
            End::Corrupt { offset, reason } => SnapshotError { offset, reason },
            End::TornTail { offset } => SnapshotError {
                offset,
                reason: "snapshot cut short".to_string(),
            },
            End::Clean => unreachable!("decode_next never reports a clean end"),
        })
    };
    let Some((Part::Header { meta, total_len }, mut pos)) = next(0)? else {
        return Err(fail(0, "a snapshot starts with its header"));
    };
    let mut data = Vec::new();
    loop {
        let at = pos;
        match next(pos)? {
            Some((Part::Chunk(chunk), after)) => {
                if data.len() as u64 + chunk.len() as u64 > total_len {
                    return Err(fail(at, "more state bytes than the header announced"));
                }
                if data.is_empty() {
                    // Whole-state sized only once the header's length proved true so far.
                    data.reserve_exact(usize::try_from(total_len).unwrap_or(0).min(bytes.len()));
                }
                data.extend_from_slice(&chunk);
                pos = after;
            }
            Some((Part::End { crc }, after)) => {
                if data.len() as u64 != total_len {
                    return Err(fail(at, "fewer state bytes than the header announced"));
                }
                if crc32c::crc32c(&data) != crc {
                    return Err(fail(at, "checksum over the whole state mismatch"));
                }
                if after != bytes.len() {
                    return Err(fail(after, "bytes after the end of the snapshot"));
                }
                return Ok(Snapshot { meta, data });
            }
            Some((Part::Header { .. }, _)) => return Err(fail(at, "a second header")),
            None => return Err(fail(at, "snapshot cut short before its end record")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(len: usize) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                last_index: 42,
                last_view: 3,
            },
            data: (0..len).map(|i| (i * 7 % 251) as u8).collect(),
        }
    }

    /// Chunks encoded in one piece are the bytes the sequence of `u8` gave before: files
    /// written by an earlier build still read.
    #[test]
    fn a_chunk_encodes_as_the_sequence_of_bytes_did() {
        let data = snapshot(300).data;
        let before = postcard::to_stdvec(&(1u32, data.clone())).unwrap();
        let chunk = postcard::to_stdvec(&Part::Chunk(data.as_slice().into())).unwrap();
        assert_eq!(
            chunk, before,
            "variant index 1 was the chunk's, then the bytes"
        );
        let back: Part = postcard::from_bytes(&chunk).unwrap();
        assert_eq!(back, Part::Chunk(data.into()));
    }

    /// Record boundaries of a snapshot file.
    fn boundaries(bytes: &[u8]) -> Vec<usize> {
        let mut at = vec![0];
        let mut pos = 0;
        while let Some((_, next)) = record::decode_next::<Part>(bytes, pos).unwrap() {
            at.push(next);
            pos = next;
        }
        at
    }

    #[test]
    fn round_trips_in_many_chunks_and_in_one() {
        for (len, chunk) in [(0, 4), (1, 4), (1000, 7), (1000, 1000), (1000, 5000)] {
            let snap = snapshot(len);
            let bytes = encode_to_vec(&snap, chunk);
            assert_eq!(decode(&bytes), Ok(snap), "len {len}, chunk {chunk}");
            assert_eq!(boundaries(&bytes).len(), 3 + len.div_ceil(chunk));
        }
    }

    #[test]
    fn cut_at_any_record_boundary_or_inside_a_record_is_an_error() {
        let bytes = encode_to_vec(&snapshot(100), 10);
        let bounds = boundaries(&bytes);
        assert_eq!(bounds.len(), 13, "header, 10 chunks, end, and the start");
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut]).expect_err("a cut-short snapshot is refused");
            assert!(err.offset <= cut as u64, "{cut}: {err}");
        }
    }

    #[test]
    fn reordered_dropped_or_repeated_chunks_are_refused() {
        let bytes = encode_to_vec(&snapshot(100), 10);
        let b = boundaries(&bytes);
        let chunk = |i: usize| &bytes[b[i]..b[i + 1]];
        let header = chunk(0);
        let end = &bytes[b[11]..];
        let build = |middle: &[usize]| {
            let mut out = header.to_vec();
            for &i in middle {
                out.extend_from_slice(chunk(i));
            }
            out.extend_from_slice(end);
            out
        };
        let all: Vec<usize> = (1..=10).collect();
        assert!(decode(&build(&all)).is_ok());
        let mut swapped = all.clone();
        swapped.swap(2, 3);
        let mut dropped = all.clone();
        dropped.remove(4);
        let mut repeated = all.clone();
        repeated.insert(4, 4);
        for (what, order) in [
            ("swapped", swapped),
            ("dropped", dropped),
            ("repeated", repeated),
        ] {
            assert!(decode(&build(&order)).is_err(), "{what}");
        }
        let mut twice = bytes.clone();
        twice.extend_from_slice(end);
        assert!(decode(&twice).is_err(), "trailing end record");
    }

    #[test]
    fn a_header_promising_more_than_the_file_holds_is_refused() {
        let mut bytes = Vec::new();
        record::encode(
            &Part::Header {
                meta: SnapshotMeta::default(),
                total_len: u64::MAX,
            },
            &mut bytes,
        );
        record::encode(&Part::Chunk(vec![1, 2, 3].into()), &mut bytes);
        record::encode(&Part::End { crc: 0 }, &mut bytes);
        assert!(decode(&bytes).is_err());
    }
}
