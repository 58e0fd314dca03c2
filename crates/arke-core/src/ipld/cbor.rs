//! Lenient CBOR reader producing the IPLD data model.
//!
//! Why not `serde_ipld_dagcbor::from_slice`: strict dag-cbor decoding rejects real
//! production blocks (non-UTF-8 text strings, non-canonical key order, non-minimal
//! integers, half floats, ...). A disaster-recovery tool must still see every link
//! such a block carries, so this reader accepts any well-formed CBOR and only
//! refuses input that is structurally broken (truncated, trailing bytes, lengths
//! larger than the input, a malformed CID under tag 42, nesting deeper than
//! [`MAX_DEPTH`]).
//!
//! On valid dag-cbor it yields exactly what `serde_ipld_dagcbor::from_slice::<Ipld>`
//! yields (checked by the tests in this module and in `super::tests`).
//!
//! The reader is iterative (an explicit stack of open containers), so hostile nesting
//! can never overflow the thread stack, and it never allocates from a length read
//! from the input before checking that the input actually holds that many bytes.

use std::collections::BTreeMap;
use std::fmt;

use cid::Cid;
use ipld_core::ipld::Ipld;

/// Deepest container nesting accepted. Real IPLD blocks are far shallower; anything
/// deeper is treated as hostile or corrupt.
pub const MAX_DEPTH: usize = 512;

/// CBOR tag for an IPLD link (CID).
const TAG_CID: u64 = 42;

/// Why a block failed to decode, with the byte offset where the problem was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CborFailure {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for CborFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.reason, self.offset)
    }
}

type Result<T> = std::result::Result<T, CborFailure>;

/// One CBOR data item head, with its argument already read.
enum Head {
    Unsigned(u64),
    Negative(u64),
    /// `None` means indefinite length.
    Bytes(Option<u64>),
    Text(Option<u64>),
    Array(Option<u64>),
    Map(Option<u64>),
    Tag(u64),
    Bool(bool),
    /// null, undefined and every other simple value: all map to `Ipld::Null`.
    Null,
    Float(f64),
    Break,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, offset: usize, reason: impl Into<String>) -> Result<T> {
        Err(CborFailure {
            offset,
            reason: reason.into(),
        })
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Take `n` bytes, checking the length against the input before touching memory.
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let start = self.pos;
        let Ok(n) = usize::try_from(n) else {
            return self.fail(start, format!("length {n} does not fit in memory"));
        };
        if n > self.remaining() {
            return self.fail(
                start,
                format!("truncated: need {n} bytes, only {} left", self.remaining()),
            );
        }
        match self.data.get(start..start + n) {
            Some(slice) => {
                self.pos = start + n;
                Ok(slice)
            }
            None => self.fail(start, "truncated"),
        }
    }

    fn byte(&mut self) -> Result<u8> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.fail(self.pos, "truncated: unexpected end of input"),
        }
    }

    fn be_uint(&mut self, width: u64) -> Result<u64> {
        let bytes = self.take(width)?;
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Read the argument for additional info `ai` (0..=27). Reserved values are errors;
    /// 31 (indefinite) is handled by the caller before this is reached.
    fn argument(&mut self, ai: u8, at: usize) -> Result<u64> {
        match ai {
            0..=23 => Ok(u64::from(ai)),
            24 => self.be_uint(1),
            25 => self.be_uint(2),
            26 => self.be_uint(4),
            27 => self.be_uint(8),
            _ => self.fail(at, format!("reserved additional information {ai}")),
        }
    }

    fn head(&mut self) -> Result<Head> {
        let at = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let ai = initial & 0x1f;
        if ai == 31 {
            return match major {
                2 => Ok(Head::Bytes(None)),
                3 => Ok(Head::Text(None)),
                4 => Ok(Head::Array(None)),
                5 => Ok(Head::Map(None)),
                7 => Ok(Head::Break),
                _ => self.fail(at, format!("indefinite length on major type {major}")),
            };
        }
        if major == 7 {
            return match ai {
                20 => Ok(Head::Bool(false)),
                21 => Ok(Head::Bool(true)),
                // 22 null, 23 undefined, 0..=19 unassigned simple values.
                0..=23 => Ok(Head::Null),
                24 => {
                    self.byte()?;
                    Ok(Head::Null)
                }
                25 => Ok(Head::Float(f16_to_f64(self.be_uint(2)? as u16))),
                26 => Ok(Head::Float(f64::from(f32::from_bits(
                    self.be_uint(4)? as u32
                )))),
                27 => Ok(Head::Float(f64::from_bits(self.be_uint(8)?))),
                _ => self.fail(at, format!("reserved additional information {ai}")),
            };
        }
        let arg = self.argument(ai, at)?;
        Ok(match major {
            0 => Head::Unsigned(arg),
            1 => Head::Negative(arg),
            2 => Head::Bytes(Some(arg)),
            3 => Head::Text(Some(arg)),
            4 => Head::Array(Some(arg)),
            5 => Head::Map(Some(arg)),
            _ => Head::Tag(arg),
        })
    }

    /// Body of a byte or text string (`major` 2 or 3) whose head was just read.
    /// Indefinite strings are concatenated from definite chunks of the same major type.
    fn string_body(&mut self, major: u8, len: Option<u64>) -> Result<Vec<u8>> {
        if let Some(len) = len {
            return Ok(self.take(len)?.to_vec());
        }
        let mut out = Vec::new();
        loop {
            let at = self.pos;
            match (major, self.head()?) {
                (_, Head::Break) => return Ok(out),
                (2, Head::Bytes(Some(n))) | (3, Head::Text(Some(n))) => {
                    out.extend_from_slice(self.take(n)?);
                }
                _ => {
                    return self.fail(
                        at,
                        "indefinite-length string chunk is not a definite string of the same type",
                    );
                }
            }
        }
    }
}

/// IEEE 754 half precision to f64 (exact: every half value is representable).
fn f16_to_f64(h: u16) -> f64 {
    let negative = h & 0x8000 != 0;
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x03ff);
    let magnitude = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
    };
    if negative { -magnitude } else { magnitude }
}

/// Longest rendering of a container used as a map key (see [`key_string`]).
const MAX_CONTAINER_KEY: usize = 256;

/// A `fmt::Write` that keeps at most `limit` bytes and then fails, which stops the
/// formatting that writes into it.
struct Bounded {
    out: String,
    limit: usize,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.out.len());
        if s.len() <= room {
            self.out.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.push_str(s.get(..cut).unwrap_or_default());
        Err(fmt::Error)
    }
}

/// Map keys must be strings in the IPLD data model; lenient decoding turns any other
/// key into a readable string instead of refusing the block.
fn key_string(key: Ipld) -> String {
    match key {
        Ipld::String(s) => s,
        Ipld::Integer(i) => i.to_string(),
        Ipld::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        Ipld::Bool(b) => b.to_string(),
        Ipld::Null => "null".to_string(),
        Ipld::Float(f) => f.to_string(),
        Ipld::Link(cid) => cid.to_string(),
        // Container keys never occur in IPLD data; a debug rendering keeps the entry
        // (and the rest of the block) rather than failing on it. Bounded: the rendering
        // escapes the quotes and backslashes of the keys nested inside, so with maps as keys
        // of maps as keys... each level doubled its length, and a 100-byte block of ~80
        // such levels never finished decoding (and ate the memory) — found by cargo fuzz.
        // Stopping at MAX_CONTAINER_KEY bytes also stops the walk into the container.
        other @ (Ipld::List(_) | Ipld::Map(_)) => {
            let mut w = Bounded {
                out: String::new(),
                limit: MAX_CONTAINER_KEY,
            };
            let _ = fmt::Write::write_fmt(&mut w, format_args!("{other:?}"));
            w.out
        }
    }
}

enum Frame {
    List {
        left: Option<u64>,
        items: Vec<Ipld>,
    },
    Map {
        /// Entries still expected (definite maps only).
        left: Option<u64>,
        map: BTreeMap<String, Ipld>,
        key: Option<String>,
    },
}

/// Parse the content of a tag-42 item: a byte string holding 0x00 then binary CID.
fn read_link(r: &mut Reader<'_>, tag_at: usize) -> Result<Cid> {
    let at = r.pos;
    let bytes = match r.head()? {
        Head::Bytes(len) => r.string_body(2, len)?,
        _ => return r.fail(at, "tag 42 (link) does not wrap a byte string"),
    };
    let Some((&prefix, mut rest)) = bytes.split_first() else {
        return r.fail(tag_at, "tag 42 (link) wraps an empty byte string");
    };
    if prefix != 0x00 {
        return r.fail(
            tag_at,
            format!("tag 42 (link) byte string starts with 0x{prefix:02x}, expected 0x00"),
        );
    }
    match Cid::read_bytes(&mut rest) {
        Ok(cid) if rest.is_empty() => Ok(cid),
        Ok(cid) => r.fail(
            tag_at,
            format!(
                "tag 42 (link) holds {} trailing bytes after CID {cid}",
                rest.len()
            ),
        ),
        Err(e) => r.fail(tag_at, format!("tag 42 (link) holds an invalid CID: {e}")),
    }
}

/// Decode exactly one CBOR item spanning all of `data`.
pub fn decode(data: &[u8]) -> Result<Ipld> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        // Read items (following tags) until one complete value is available.
        let at = r.pos;
        let mut value = match r.head()? {
            Head::Unsigned(n) => Ipld::Integer(i128::from(n)),
            Head::Negative(n) => Ipld::Integer(-1 - i128::from(n)),
            Head::Bytes(len) => Ipld::Bytes(r.string_body(2, len)?),
            Head::Text(len) => {
                let raw = r.string_body(3, len)?;
                // Lenient: invalid UTF-8 is replaced, not rejected, so the block still
                // yields its links.
                Ipld::String(match String::from_utf8(raw) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                })
            }
            Head::Bool(b) => Ipld::Bool(b),
            Head::Null => Ipld::Null,
            Head::Float(f) => Ipld::Float(f),
            Head::Tag(TAG_CID) => Ipld::Link(read_link(&mut r, at)?),
            // Other tags carry no meaning in IPLD: decode the tagged item itself.
            Head::Tag(_) => {
                if r.remaining() == 0 {
                    return r.fail(at, "truncated: tag without content");
                }
                if r.data.get(r.pos) == Some(&0xff) {
                    return r.fail(r.pos, "break directly after a tag");
                }
                continue;
            }
            // Empty definite containers are complete values; no frame needed.
            Head::Array(Some(0)) => Ipld::List(Vec::new()),
            Head::Map(Some(0)) => Ipld::Map(BTreeMap::new()),
            Head::Array(len) => {
                if let Some(n) = len {
                    // Every element takes at least one byte: refuse impossible lengths early.
                    if n > r.remaining() as u64 {
                        return r.fail(at, format!("array of {n} items exceeds the input"));
                    }
                }
                push(
                    &mut r,
                    &mut stack,
                    at,
                    Frame::List {
                        left: len,
                        items: Vec::new(),
                    },
                )?;
                continue;
            }
            Head::Map(len) => {
                if let Some(n) = len
                    && n.saturating_mul(2) > r.remaining() as u64
                {
                    return r.fail(at, format!("map of {n} entries exceeds the input"));
                }
                push(
                    &mut r,
                    &mut stack,
                    at,
                    Frame::Map {
                        left: len,
                        map: BTreeMap::new(),
                        key: None,
                    },
                )?;
                continue;
            }
            Head::Break => match stack.pop() {
                Some(Frame::List { left: None, items }) => Ipld::List(items),
                Some(Frame::Map {
                    left: None,
                    map,
                    key: None,
                }) => Ipld::Map(map),
                Some(Frame::Map { left: None, .. }) => {
                    return r.fail(at, "break inside a map entry (key without value)");
                }
                _ => return r.fail(at, "unexpected break"),
            },
        };

        // Hand the finished value to its parent; close every definite container it fills.
        loop {
            match stack.last_mut() {
                None => {
                    if r.pos != data.len() {
                        return r.fail(
                            r.pos,
                            format!("{} trailing bytes after the top-level item", r.remaining()),
                        );
                    }
                    return Ok(value);
                }
                Some(Frame::List { left, items }) => {
                    items.push(value);
                    if let Some(n) = left {
                        *n = n.saturating_sub(1);
                        // The container is full: it becomes the value handed to its parent.
                        if *n == 0
                            && let Some(Frame::List { items, .. }) = stack.pop()
                        {
                            value = Ipld::List(items);
                            continue;
                        }
                    }
                    break;
                }
                Some(Frame::Map { left, map, key }) => {
                    match key.take() {
                        None => {
                            *key = Some(key_string(value));
                            break;
                        }
                        Some(k) => {
                            // Duplicate keys: last wins (lenient).
                            map.insert(k, value);
                        }
                    }
                    if let Some(n) = left {
                        *n = n.saturating_sub(1);
                        // The container is full: it becomes the value handed to its parent.
                        if *n == 0
                            && let Some(Frame::Map { map, .. }) = stack.pop()
                        {
                            value = Ipld::Map(map);
                            continue;
                        }
                    }
                    break;
                }
            }
        }
    }
}

fn push(r: &mut Reader<'_>, stack: &mut Vec<Frame>, at: usize, frame: Frame) -> Result<()> {
    if stack.len() >= MAX_DEPTH {
        return r.fail(at, format!("nesting deeper than {MAX_DEPTH} levels"));
    }
    stack.push(frame);
    Ok(())
}
