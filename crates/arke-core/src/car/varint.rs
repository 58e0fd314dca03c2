//! Unsigned LEB128 varints the way multiformats defines them: at most 9 bytes (63 bits) and
//! minimally encoded. Lengths in a CAR file are read one byte at a time so that the reader
//! never consumes past the end of a section; callers are expected to hand us a buffered
//! reader (see [`super::open`]).

use std::io::{self, Read};

/// The multiformats unsigned-varint spec caps varints at 9 bytes (63 bits of payload).
pub(crate) const MAX_VARINT_LEN: usize = 9;

/// Why a varint could not be read. EOF before the first byte is not an error (see
/// [`read_varint`]), so it does not appear here.
#[derive(Debug)]
pub(crate) enum VarintError {
    /// EOF after one or more bytes of a varint whose last byte had the continuation bit set.
    Truncated,
    /// Nine bytes all with the continuation bit set: longer than any length we accept.
    Overlong,
    /// A trailing zero group (e.g. `0x81 0x00`): the spec requires the shortest encoding,
    /// and a non-minimal length is far more likely a corrupted byte than a real writer.
    NotMinimal,
    /// The underlying reader failed after `consumed` bytes of the varint.
    Io { source: io::Error, consumed: usize },
}

/// Reads one byte, retrying on `Interrupted`. `Ok(None)` is EOF.
pub(crate) fn read_byte<R: Read + ?Sized>(r: &mut R) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads a varint. Returns `Ok(None)` only when the reader is at EOF before the first byte:
/// that is the single place a CAR stream may end cleanly. EOF on any later byte is
/// [`VarintError::Truncated`] (iroh-car treats it as a clean end, which hides truncation).
/// On success returns `(value, encoded_len)`.
pub(crate) fn read_varint<R: Read + ?Sized>(
    r: &mut R,
) -> Result<Option<(u64, usize)>, VarintError> {
    let mut value: u64 = 0;
    for i in 0..MAX_VARINT_LEN {
        let byte = match read_byte(r) {
            Ok(Some(b)) => b,
            Ok(None) if i == 0 => return Ok(None),
            Ok(None) => return Err(VarintError::Truncated),
            Err(source) => {
                return Err(VarintError::Io {
                    source,
                    consumed: i,
                });
            }
        };
        // i <= 8, so the shift is at most 56 and 7 payload bits never overflow a u64.
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(VarintError::NotMinimal);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(VarintError::Overlong)
}

/// Appends the varint encoding of `value` to `out`.
pub(crate) fn write_varint(value: u64, out: &mut Vec<u8>) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(value, &mut buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(bytes: &[u8]) -> Result<Option<(u64, usize)>, VarintError> {
        read_varint(&mut &bytes[..])
    }

    #[test]
    fn round_trips_and_lengths() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            8 << 20,
            (1 << 63) - 1,
        ] {
            let mut out = Vec::new();
            write_varint(v, &mut out);
            let (got, len) = rd(&out).unwrap().unwrap();
            assert_eq!((got, len), (v, out.len()), "value {v}");
        }
    }

    #[test]
    fn eof_first_byte_is_clean_later_is_truncated() {
        assert!(matches!(rd(&[]), Ok(None)));
        assert!(matches!(rd(&[0x80]), Err(VarintError::Truncated)));
        assert!(matches!(rd(&[0xff, 0xff]), Err(VarintError::Truncated)));
    }

    #[test]
    fn rejects_overlong_and_non_minimal() {
        assert!(matches!(rd(&[0xff; 9]), Err(VarintError::Overlong)));
        assert!(matches!(rd(&[0xff; 12]), Err(VarintError::Overlong)));
        assert!(matches!(rd(&[0x81, 0x00]), Err(VarintError::NotMinimal)));
        // u64 values needing a 10th byte are refused rather than wrapped.
        let mut out = Vec::new();
        write_varint(u64::MAX, &mut out);
        assert!(matches!(rd(&out), Err(VarintError::Overlong)));
    }
}
