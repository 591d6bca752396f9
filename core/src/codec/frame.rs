//! Length-prefixed frames of postcard values: a 4-byte big-endian payload length, then the
//! payload. Every connection carries a stream of them, so the decoder is incremental and
//! treats its input as hostile: an oversized length is refused before anything of that size
//! is buffered, and no input makes it panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes of the length prefix.
pub const PREFIX_BYTES: usize = 4;

/// The default largest payload, in bytes (1 MiB).
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The payload is (or announces itself as) larger than the limit.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: u64, max: u32 },
    /// The value could not be serialized.
    #[error("cannot encode frame: {0}")]
    Encode(String),
    /// The payload is not a valid encoding of the expected type.
    #[error("cannot decode frame: {0}")]
    Decode(String),
    /// The payload holds a valid value followed by bytes that belong to nothing. Refused so
    /// that every accepted frame re-encodes to the very same bytes.
    #[error("frame has {extra} trailing bytes after its value")]
    TrailingBytes { extra: usize },
}

impl FrameError {
    /// Whether the "length" read was the start of a TLS record (content type 20-23, version
    /// 3.x): the other side speaks TLS to a plaintext reader.
    pub fn is_tls_record(&self) -> bool {
        let Self::TooLarge { len, .. } = self else {
            return false;
        };
        let [_, _, _, _, kind, major, _, _] = len.to_be_bytes();
        (20..=23).contains(&kind) && major == 3
    }
}

/// Encodes `value` as one frame, refusing payloads over `max_frame` bytes.
pub fn encode<T: Serialize>(value: &T, max_frame: u32) -> Result<Vec<u8>, FrameError> {
    let mut out = postcard::to_extend(value, vec![0u8; PREFIX_BYTES])
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - PREFIX_BYTES;
    let prefix =
        u32::try_from(len)
            .ok()
            .filter(|&l| l <= max_frame)
            .ok_or(FrameError::TooLarge {
                len: len as u64,
                max: max_frame,
            })?;
    out[..PREFIX_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(out)
}

/// Splits a byte stream into frames and decodes them.
///
/// Feed it with [`push`](Self::push) and drain it with [`next`](Self::next) until it returns
/// `Ok(None)` before pushing again: then it never holds more than one unfinished frame
/// (at most `max_frame + 4` bytes) plus the bytes of one push.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: u32,
    buf: Vec<u8>,
    /// Bytes of `buf` before this were consumed by earlier frames.
    start: usize,
    /// Set once a length prefix over the limit was seen: the stream cannot be resynchronized,
    /// so every later call reports the same error and pushed bytes are dropped.
    oversized: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new(max_frame: u32) -> FrameDecoder {
        FrameDecoder {
            max_frame,
            buf: Vec::new(),
            start: 0,
            oversized: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.oversized.is_some() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. A frame that fails to
    /// decode is consumed, so the stream stays aligned; a length over the limit is final.
    #[allow(
        clippy::should_implement_trait,
        reason = "generic over the frame type and fallible: not an Iterator"
    )]
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        if let Some(err) = &self.oversized {
            return Err(err.clone());
        }
        let pending = &self.buf[self.start..];
        let Some(prefix) = pending.first_chunk::<PREFIX_BYTES>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len > self.max_frame {
            let err = FrameError::TooLarge {
                len: len.into(),
                max: self.max_frame,
            };
            self.oversized = Some(err.clone());
            self.buf = Vec::new();
            self.start = 0;
            return Err(err);
        }
        let frame_end = PREFIX_BYTES + len as usize;
        let Some(payload) = pending.get(PREFIX_BYTES..frame_end) else {
            return Ok(None);
        };
        let decoded = decode_payload(payload);
        self.start += frame_end;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        decoded.map(Some)
    }

    /// Whether bytes of an unfinished frame are waiting (call after draining with `next`):
    /// a peer that stops in the middle of a frame can be timed out.
    pub fn has_partial(&self) -> bool {
        self.oversized.is_none() && self.start < self.buf.len()
    }

    /// Bytes currently held.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Decodes one whole payload, refusing bytes left over after the value.
fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(FrameError::TrailingBytes { extra: rest.len() })
    }
}
