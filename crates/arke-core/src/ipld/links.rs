//! Link extraction in every shape Arke data uses (see arke-data-model.md §2).
//!
//! Production events are dag-cbor written with `input-codec=json`, so their `prev` and
//! `tip_cid` are plain `{"/": "<cid>"}` maps, not tag-42 links. Kubo does not follow
//! them, but a DR tool must, so they are reported with their own [`LinkShape`].

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::{DAG_JSON, DAG_PB, RAW};

/// How a link was encoded in its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkShape {
    /// CBOR tag 42: a real dag-cbor link.
    Tag42,
    /// dag-json `{"/": "<cid>"}`: a real dag-json link.
    DagJson,
    /// A map whose only key is `"/"` holding a CID string, in a codec where that is
    /// plain data (dag-cbor). Not followed by Kubo (pins, exports), followed by us.
    PlainMap,
    /// A dag-pb `Links[].Hash`.
    DagPb,
}

/// One link found in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub cid: Cid,
    pub shape: LinkShape,
    /// Where it was found, dotted ("prev", "chunks.3", "entries.12.tip_cid"); for
    /// dag-pb the link's Name when non-empty, else `"Links.<i>"`. Empty for a block
    /// whose root value is itself a link.
    pub path: String,
}

/// Strict CID string parse: exactly a CID, no whitespace, no `/ipfs/` prefix (which
/// `Cid::try_from(&str)` would accept), no bytes after the CID. CIDv0 is recognised the
/// way go-cid does it: 46 characters starting with "Qm" are base58btc without prefix.
pub(crate) fn parse_cid_exact(s: &str) -> Result<Cid, String> {
    if s.is_empty() {
        return Err("empty string".to_string());
    }
    if s.contains('/') || s.chars().any(char::is_whitespace) {
        return Err("contains '/' or whitespace".to_string());
    }
    let bytes = if s.len() == 46 && s.starts_with("Qm") {
        cid::multibase::Base::Base58Btc
            .decode(s)
            .map_err(|e| format!("not base58btc: {e}"))?
    } else {
        cid::multibase::decode(s)
            .map_err(|e| format!("not multibase: {e}"))?
            .1
    };
    let mut rest = bytes.as_slice();
    let cid = Cid::read_bytes(&mut rest).map_err(|e| format!("not a CID: {e}"))?;
    if rest.is_empty() {
        Ok(cid)
    } else {
        Err(format!("{} bytes after the CID", rest.len()))
    }
}

/// The CID of a plain `{"/": "<cid string>"}` map, if `map` is exactly that.
fn plain_map_link(map: &std::collections::BTreeMap<String, Ipld>) -> Option<Cid> {
    if map.len() != 1 {
        return None;
    }
    match map.get("/") {
        Some(Ipld::String(s)) => parse_cid_exact(s).ok(),
        _ => None,
    }
}

fn join(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.to_string()
    } else {
        format!("{path}.{segment}")
    }
}

/// Every link in an already decoded value, under the rules of `codec`.
///
/// Order: depth-first, lists in index order, maps in the data model's key order
/// (`Ipld::Map` is a `BTreeMap`, so keys are bytewise sorted). Duplicates are kept.
pub fn links_in(value: &Ipld, codec: u64) -> Vec<Link> {
    match codec {
        RAW => Vec::new(),
        DAG_PB => dag_pb_links(value),
        _ => {
            let shape = if codec == DAG_JSON {
                LinkShape::DagJson
            } else {
                LinkShape::Tag42
            };
            generic_links(value, shape)
        }
    }
}

/// Iterative walk (explicit stack) so an arbitrarily deep value cannot overflow the stack.
fn generic_links(value: &Ipld, link_shape: LinkShape) -> Vec<Link> {
    let mut out = Vec::new();
    let mut stack: Vec<(&Ipld, String)> = vec![(value, String::new())];
    while let Some((node, path)) = stack.pop() {
        match node {
            Ipld::Link(cid) => out.push(Link {
                cid: *cid,
                shape: link_shape,
                path,
            }),
            Ipld::List(items) => {
                // Pushed in reverse so they pop in document order.
                for (i, item) in items.iter().enumerate().rev() {
                    if is_container_or_link(item) {
                        stack.push((item, join(&path, &i.to_string())));
                    }
                }
            }
            Ipld::Map(map) => {
                if let Some(cid) = plain_map_link(map) {
                    out.push(Link {
                        cid,
                        shape: LinkShape::PlainMap,
                        path,
                    });
                    continue;
                }
                for (k, v) in map.iter().rev() {
                    if is_container_or_link(v) {
                        stack.push((v, join(&path, k)));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Only these can hold links; skipping the rest avoids building path strings for scalars.
fn is_container_or_link(v: &Ipld) -> bool {
    matches!(v, Ipld::Link(_) | Ipld::List(_) | Ipld::Map(_))
}

/// dag-pb data model: `{Data, Links: [{Hash, Name, Tsize}]}`; only `Links[].Hash` are links.
fn dag_pb_links(value: &Ipld) -> Vec<Link> {
    let Ipld::Map(node) = value else {
        return Vec::new();
    };
    let Some(Ipld::List(pb_links)) = node.get("Links") else {
        return Vec::new();
    };
    pb_links
        .iter()
        .enumerate()
        .filter_map(|(i, pb_link)| {
            let Ipld::Map(fields) = pb_link else {
                return None;
            };
            let Some(Ipld::Link(cid)) = fields.get("Hash") else {
                return None;
            };
            let path = match fields.get("Name") {
                Some(Ipld::String(name)) if !name.is_empty() => name.clone(),
                _ => format!("Links.{i}"),
            };
            Some(Link {
                cid: *cid,
                shape: LinkShape::DagPb,
                path,
            })
        })
        .collect()
}
