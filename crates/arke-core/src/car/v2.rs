//! CARv2: an 11-byte pragma, a 40-byte header, then a CARv1 payload at `data_offset` of
//! `data_size` bytes, then an optional index. We only ever read the payload; the index and
//! the characteristics bits are ignored (an index can be rebuilt from the payload, and the
//! payload is what holds the data).

use super::CarError;

/// The CARv2 pragma: the varint length 10 followed by the DAG-CBOR map `{"version": 2}`.
pub const CARV2_PRAGMA: [u8; 11] = [
    0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02,
];
/// Size of the fixed header that follows the pragma.
pub(crate) const V2_HEADER_LEN: usize = 40;

/// The fixed CARv2 header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct V2Header {
    pub(crate) data_offset: u64,
    pub(crate) data_size: u64,
    pub(crate) index_offset: u64,
}

fn le_u64(buf: &[u8; V2_HEADER_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = buf.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

impl V2Header {
    /// Parses the 40 bytes after the pragma: 16 bytes of characteristics (ignored), then
    /// three little-endian u64s.
    pub(crate) fn parse(buf: &[u8; V2_HEADER_LEN]) -> Self {
        Self {
            data_offset: le_u64(buf, 16),
            data_size: le_u64(buf, 24),
            index_offset: le_u64(buf, 32),
        }
    }

    /// Checks the header for consistency. `header_end` is the absolute offset just past the
    /// fixed header; `file_len` is known when reading a file, unknown for a plain stream
    /// (the streaming path then checks that the payload really is there as it reads).
    /// Returns the absolute end of the payload.
    pub(crate) fn validate(&self, header_end: u64, file_len: Option<u64>) -> Result<u64, CarError> {
        let bad = |reason: String| Err(CarError::V2 { reason });
        if self.data_offset < header_end {
            return bad(format!(
                "data_offset {} points inside the CARv2 header (which ends at {header_end})",
                self.data_offset
            ));
        }
        if self.data_size == 0 {
            return bad("data_size is 0: no CARv1 payload".into());
        }
        let Some(data_end) = self.data_offset.checked_add(self.data_size) else {
            return bad(format!(
                "data_offset {} + data_size {} overflows",
                self.data_offset, self.data_size
            ));
        };
        if let Some(len) = file_len
            && data_end > len
        {
            return bad(format!(
                "payload at offsets {}..{data_end} extends beyond the end of the file ({len} bytes)",
                self.data_offset
            ));
        }
        if self.index_offset != 0 {
            if self.index_offset < data_end {
                return bad(format!(
                    "index_offset {} points inside the payload (offsets {}..{data_end})",
                    self.index_offset, self.data_offset
                ));
            }
            if let Some(len) = file_len
                && self.index_offset > len
            {
                return bad(format!(
                    "index_offset {} is beyond the end of the file ({len} bytes)",
                    self.index_offset
                ));
            }
        }
        Ok(data_end)
    }
}

/// The CARv2 header of a file of `file_len` bytes whose first bytes are `head` (up to the
/// pragma and the fixed header), validated against the file length; `None` when the file does
/// not start with the CARv2 pragma. Used by [`super::open`] and by the CAR index scan.
pub(crate) fn file_header(head: &[u8], file_len: u64) -> Result<Option<V2Header>, CarError> {
    if !head.starts_with(&CARV2_PRAGMA) {
        return Ok(None);
    }
    let header_end = CARV2_PRAGMA.len() + V2_HEADER_LEN;
    let fixed: Option<[u8; V2_HEADER_LEN]> = head
        .get(CARV2_PRAGMA.len()..header_end)
        .and_then(|s| s.try_into().ok());
    let Some(fixed) = fixed else {
        return Err(CarError::V2 {
            reason: format!("file is {file_len} bytes, too short for the CARv2 header"),
        });
    };
    let v2 = V2Header::parse(&fixed);
    v2.validate(header_end as u64, Some(file_len))?;
    Ok(Some(v2))
}
