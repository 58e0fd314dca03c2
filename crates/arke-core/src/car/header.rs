//! The CARv1 header: a dag-cbor map `{"roots": [CID...], "version": 1}`.
//!
//! Decoded by a small hand-written CBOR walker instead of serde: the header is untrusted
//! (up to [`super::MAX_HEADER`] bytes), and we want to be tolerant of what does not matter
//! (key order, unknown extra keys) while being strict and bounded on what does (types of
//! `roots`/`version`, CID encoding, nesting depth, trailing bytes). Every length is checked
//! against the remaining input before use, so no allocation is driven by a declared length.

use cid::Cid;

/// The encoder lives on the formats floor, where the node client reaches it too.
pub(crate) use crate::ipld::car_header as encode_header;

/// Deeper nesting than this inside an unknown header key is refused, so a hostile header
/// cannot exhaust the stack while we skip it.
const MAX_SKIP_DEPTH: usize = 64;

/// CBOR tag 42 marks an IPLD link.
const TAG_CID: u64 = 42;

/// What the header map said, before version-specific checks.
#[derive(Debug)]
pub(crate) struct RawHeader {
    pub(crate) version: Option<u64>,
    pub(crate) roots: Option<Vec<Cid>>,
}

/// Why decoding failed: the outer shape is not even a CBOR map (probably not a CAR at all),
/// or it is a map with bad contents.
#[derive(Debug)]
pub(crate) enum HeaderError {
    NotMap(String),
    Bad(String),
}

struct Cbor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A CBOR item head: major type and argument. Indefinite lengths are refused (DAG-CBOR
/// forbids them), so the argument is always a definite value.
struct Head {
    major: u8,
    arg: u64,
}

impl<'a> Cbor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        let remaining = self.buf.len() - self.pos.min(self.buf.len());
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= remaining)
            .ok_or_else(|| {
                format!(
                    "{what} at header byte {} needs {n} bytes, only {remaining} left",
                    self.pos
                )
            })?;
        let out = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| format!("{what} at header byte {} runs past the end", self.pos))?;
        self.pos += n;
        Ok(out)
    }

    fn head(&mut self) -> Result<Head, String> {
        let at = self.pos;
        let ib = *self
            .take(1, "item")?
            .first()
            .ok_or_else(|| format!("empty item at header byte {at}"))?;
        let major = ib >> 5;
        let ai = ib & 0x1f;
        let arg = match ai {
            0..=23 => u64::from(ai),
            24..=27 => {
                let n = 1u64 << (ai - 24);
                self.take(n, "item argument")?
                    .iter()
                    .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
            }
            31 => {
                return Err(format!(
                    "indefinite-length item at header byte {at} (not DAG-CBOR)"
                ));
            }
            _ => {
                return Err(format!(
                    "reserved CBOR additional info {ai} at header byte {at}"
                ));
            }
        };
        Ok(Head { major, arg })
    }

    /// Skips one complete item (the value of an unknown key).
    fn skip(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_SKIP_DEPTH {
            return Err(format!(
                "header nesting deeper than {MAX_SKIP_DEPTH} at byte {}",
                self.pos
            ));
        }
        let h = self.head()?;
        match h.major {
            // Integers, simple values and floats: the head already consumed their bytes.
            0 | 1 | 7 => Ok(()),
            2 | 3 => self.take(h.arg, "string").map(|_| ()),
            // Each child consumes at least one byte or fails, so a huge declared count
            // cannot make this loop spin: it ends when the input runs out.
            4 => (0..h.arg).try_for_each(|_| self.skip(depth + 1)),
            5 => (0..h.arg).try_for_each(|_| {
                self.skip(depth + 1)?;
                self.skip(depth + 1)
            }),
            _ => self.skip(depth + 1), // tag 6: skip the tagged item
        }
    }

    fn roots(&mut self) -> Result<Vec<Cid>, String> {
        let at = self.pos;
        let h = self.head()?;
        if h.major != 4 {
            return Err(format!(
                "\"roots\" at header byte {at} is not an array (major type {})",
                h.major
            ));
        }
        let mut roots = Vec::new();
        for i in 0..h.arg {
            let at = self.pos;
            let tag = self.head()?;
            if tag.major != 6 || tag.arg != TAG_CID {
                return Err(format!("root #{i} at header byte {at} is not a tag-42 CID"));
            }
            let bytes = self.head()?;
            if bytes.major != 2 {
                return Err(format!(
                    "root #{i} at header byte {at}: tag 42 does not wrap a byte string"
                ));
            }
            let raw = self.take(bytes.arg, "root CID")?;
            // DAG-CBOR links carry a leading 0x00 (the identity multibase prefix).
            let Some((&0, mut cid_bytes)) = raw.split_first() else {
                return Err(format!(
                    "root #{i} at header byte {at}: CID bytes lack the 0x00 prefix"
                ));
            };
            let cid = Cid::read_bytes(&mut cid_bytes)
                .map_err(|e| format!("root #{i} at header byte {at}: invalid CID: {e}"))?;
            if !cid_bytes.is_empty() {
                return Err(format!(
                    "root #{i} at header byte {at}: {} stray bytes after the CID",
                    cid_bytes.len()
                ));
            }
            roots.push(cid);
        }
        Ok(roots)
    }
}

/// Decodes a header. Unknown keys are skipped; duplicate known keys, wrong types, and
/// trailing bytes after the map are errors.
pub(crate) fn decode_header(buf: &[u8]) -> Result<RawHeader, HeaderError> {
    let mut c = Cbor { buf, pos: 0 };
    let map = c.head().map_err(HeaderError::NotMap)?;
    if map.major != 5 {
        return Err(HeaderError::NotMap(format!(
            "header is not a CBOR map (major type {})",
            map.major
        )));
    }
    let mut out = RawHeader {
        version: None,
        roots: None,
    };
    for _ in 0..map.arg {
        let at = c.pos;
        let key = c.head().map_err(HeaderError::Bad)?;
        if key.major != 3 {
            return Err(HeaderError::Bad(format!(
                "map key at header byte {at} is not a string"
            )));
        }
        let key = c.take(key.arg, "map key").map_err(HeaderError::Bad)?;
        match key {
            b"roots" => {
                if out.roots.is_some() {
                    return Err(HeaderError::Bad("duplicate \"roots\" key".into()));
                }
                out.roots = Some(c.roots().map_err(HeaderError::Bad)?);
            }
            b"version" => {
                if out.version.is_some() {
                    return Err(HeaderError::Bad("duplicate \"version\" key".into()));
                }
                let at = c.pos;
                let v = c.head().map_err(HeaderError::Bad)?;
                if v.major != 0 {
                    return Err(HeaderError::Bad(format!(
                        "\"version\" at header byte {at} is not an unsigned integer (major type {})",
                        v.major
                    )));
                }
                out.version = Some(v.arg);
            }
            _ => c.skip(0).map_err(HeaderError::Bad)?,
        }
    }
    if c.pos != buf.len() {
        return Err(HeaderError::Bad(format!(
            "{} trailing bytes after the header map",
            buf.len().saturating_sub(c.pos)
        )));
    }
    Ok(out)
}
