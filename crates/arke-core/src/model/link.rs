//! CID references in the three shapes the legacy writers produced (spec §2).

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

#[cfg(test)]
use super::ModelError;

/// How a CID reference was encoded in the stored object.
///
/// The shape matters for traversal: only [`RefShape::Link`] is followed by `dag export`,
/// recursive pins and path resolution; the other two are reachable by string only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefShape {
    /// A real IPLD link (CBOR tag 42, or a dag-json `{"/": ...}` which decodes as a link).
    Link,
    /// A plain map `{"/": "<cid>"}`: what `dag/put input-codec=json store-codec=dag-cbor`
    /// stores (production events, 2025-10-09/10 manifests). Not a link for any traversal.
    PlainMap,
    /// A bare CID string (`event_cid` in snapshots, CIDs in JSON text files).
    String,
}

/// A CID reference together with the shape it was stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkRef {
    /// The referenced CID.
    pub cid: Cid,
    /// How it was encoded.
    pub shape: RefShape,
}

impl LinkRef {
    /// Encodes the reference back in the shape it was found in.
    pub fn to_ipld(&self) -> Ipld {
        self.shape.encode(&self.cid)
    }
}

impl RefShape {
    /// Encodes `cid` in this shape.
    pub fn encode(self, cid: &Cid) -> Ipld {
        match self {
            RefShape::Link => Ipld::Link(*cid),
            RefShape::PlainMap => Ipld::Map(BTreeMap::from([(
                "/".to_owned(),
                Ipld::String(cid.to_string()),
            )])),
            RefShape::String => Ipld::String(cid.to_string()),
        }
    }
}

/// Reads a CID reference in any of the three stored shapes.
///
/// `null` and `""` mean "no reference" and give `Ok(None)`. Anything else that is not a
/// link, a single-key `{"/": "<cid>"}` map or a CID string is an error.
#[cfg(test)]
pub fn link_from_ipld(value: &Ipld) -> Result<Option<LinkRef>, ModelError> {
    parse_ref(value).map_err(|reason| ModelError::BadLink { reason })
}

/// Reads a CID reference in any of the three stored shapes (`null` and `""` give `Ok(None)`),
/// with a plain reason string, so callers can attach the schema and field name to the error.
pub(crate) fn parse_ref(value: &Ipld) -> Result<Option<LinkRef>, String> {
    match value {
        Ipld::Null => Ok(None),
        Ipld::Link(cid) => Ok(Some(LinkRef {
            cid: *cid,
            shape: RefShape::Link,
        })),
        Ipld::String(s) => parse_cid_str(s).map(|c| {
            c.map(|cid| LinkRef {
                cid,
                shape: RefShape::String,
            })
        }),
        Ipld::Map(map) => {
            // A plain map counts as a reference only in the exact form the legacy JSON
            // produced: one key "/", string value. Anything else is data, not a reference.
            if map.len() != 1 {
                return Err(format!(
                    "map with {} keys is not a {{\"/\": cid}} reference",
                    map.len()
                ));
            }
            match map.get("/") {
                Some(Ipld::String(s)) => match parse_cid_str(s)? {
                    Some(cid) => Ok(Some(LinkRef {
                        cid,
                        shape: RefShape::PlainMap,
                    })),
                    None => Err("empty CID string in {\"/\": ...} map".to_owned()),
                },
                Some(other) => Err(format!(
                    "{{\"/\": ...}} value is {}, not a CID string",
                    kind_name(other)
                )),
                None => Err("map without \"/\" key is not a reference".to_owned()),
            }
        }
        other => Err(format!("{} is not a CID reference", kind_name(other))),
    }
}

/// Parses a CID string; surrounding whitespace is tolerated (tips and pointers were written
/// with and without newlines) and an empty string means "none".
pub(crate) fn parse_cid_str(s: &str) -> Result<Option<Cid>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    Cid::try_from(s)
        .map(Some)
        .map_err(|e| format!("invalid CID {s:?}: {e}"))
}

/// Short name of an IPLD kind for error messages.
pub(crate) fn kind_name(v: &Ipld) -> &'static str {
    match v {
        Ipld::Null => "null",
        Ipld::Bool(_) => "a bool",
        Ipld::Integer(_) => "an integer",
        Ipld::Float(_) => "a float",
        Ipld::String(_) => "a string",
        Ipld::Bytes(_) => "bytes",
        Ipld::List(_) => "a list",
        Ipld::Map(_) => "a map",
        Ipld::Link(_) => "a link",
    }
}

/// Serde helper for a required `Cid` stored as a plain string (JSON text files).
///
/// Use with `#[serde(with = "cid_as_string")]`.
pub mod cid_as_string {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Writes the CID as its canonical string.
    pub fn serialize<S: Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(cid)
    }

    /// Reads a CID string (whitespace tolerated); empty is an error here.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cid, D::Error> {
        let s = String::deserialize(d)?;
        match super::parse_cid_str(&s).map_err(D::Error::custom)? {
            Some(cid) => Ok(cid),
            None => Err(D::Error::custom("empty CID string")),
        }
    }
}

/// Serde helper for an optional `Cid` stored as a string; `null`, absent and `""` are none.
///
/// Use with `#[serde(default, with = "opt_cid_as_string")]`.
pub mod opt_cid_as_string {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Writes the CID as a string, or `null`.
    pub fn serialize<S: Serializer>(cid: &Option<Cid>, s: S) -> Result<S::Ok, S::Error> {
        match cid {
            Some(c) => s.collect_str(c),
            None => s.serialize_none(),
        }
    }

    /// Reads a CID string, `null` or `""`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cid>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => super::parse_cid_str(&s).map_err(D::Error::custom),
        }
    }
}
