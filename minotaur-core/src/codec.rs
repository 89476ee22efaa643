//! The wire and snapshot format: the only place that calls bincode, so the
//! format can be swapped in one file.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest encoding, in bytes (4 MiB), that [`encode`] produces and
/// [`decode`] accepts. Whatever `encode` produces, `decode` accepts.
pub const MAX_DECODE_LEN: usize = 4 * 1024 * 1024;

/// What decoding one value may claim, as bincode counts it: every
/// integer at its size in memory (a `u64` or a length prefix encoded in
/// one byte counts 8, a `u128` 16), every string and byte run at its
/// length. So a value encoded within [`MAX_DECODE_LEN`] claims at most 16
/// times that, and this budget never refuses what [`encode`] produced
/// (a batch of registrations, mostly small integers, claims twice its
/// bytes and was refused at 4 MiB).
const MAX_CLAIM: usize = 16 * MAX_DECODE_LEN;

/// Encoding or decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("encode failed: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    #[error("decode failed: {0}")]
    Decode(String),
    /// The input is larger than allowed.
    #[error("input of {len} bytes is over the {limit} byte limit")]
    Oversize {
        /// Input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A valid value was followed by extra bytes.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_CLAIM>()
}

/// Encodes `value`. Never produces more than [`MAX_DECODE_LEN`] bytes: a
/// value whose encoding is longer is [`CodecError::Oversize`], so nothing
/// is ever sent that its receiver would refuse to decode (or that a
/// transport with a frame limit would close the link over). The encoding
/// stops growing at the limit; only its length is counted beyond it.
///
/// ```
/// use minotaur_core::codec::{self, CodecError, MAX_DECODE_LEN};
/// let bytes = codec::encode(&(1u32, "two".to_string())).unwrap();
/// let back: (u32, String) = codec::decode(&bytes).unwrap();
/// assert_eq!(back, (1, "two".to_string()));
/// assert!(codec::decode::<(u32, String)>(&bytes[..2]).is_err());
/// let huge = "x".repeat(MAX_DECODE_LEN);
/// assert!(matches!(codec::encode(&huge), Err(CodecError::Oversize { .. })));
/// ```
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut writer = Bounded {
        bytes: Vec::new(),
        len: 0,
    };
    bincode::serde::encode_into_writer(value, &mut writer, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if writer.len > MAX_DECODE_LEN {
        return Err(CodecError::Oversize {
            len: writer.len,
            limit: MAX_DECODE_LEN,
        });
    }
    Ok(writer.bytes)
}

/// The length of `value`'s encoding, without making it: what [`encode`]
/// would check, at a fraction of its cost (nothing is allocated or copied).
/// A value whose encoding is longer than [`MAX_DECODE_LEN`] is
/// [`CodecError::Oversize`].
///
/// ```
/// use minotaur_core::codec;
/// let value = (1u32, "two".to_string());
/// assert_eq!(codec::encoded_len(&value).unwrap(), codec::encode(&value).unwrap().len());
/// ```
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut writer = Counted(0);
    bincode::serde::encode_into_writer(value, &mut writer, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if writer.0 > MAX_DECODE_LEN {
        return Err(CodecError::Oversize {
            len: writer.0,
            limit: MAX_DECODE_LEN,
        });
    }
    Ok(writer.0)
}

/// Counts the bytes written to it.
struct Counted(usize);

impl bincode::enc::write::Writer for Counted {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(())
    }
}

/// Keeps at most [`MAX_DECODE_LEN`] bytes and counts all of them.
struct Bounded {
    bytes: Vec<u8>,
    len: usize,
}

impl bincode::enc::write::Writer for Bounded {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.len = self.len.saturating_add(bytes.len());
        if self.len <= MAX_DECODE_LEN {
            self.bytes.extend_from_slice(bytes);
        }
        Ok(())
    }
}

/// Decodes a `T` from exactly `bytes`. Never panics: garbage, truncated,
/// trailing or oversize input is an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_DECODE_LEN {
        return Err(CodecError::Oversize {
            len: bytes.len(),
            limit: MAX_DECODE_LEN,
        });
    }
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}
