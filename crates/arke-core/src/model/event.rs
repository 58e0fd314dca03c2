//! The event chain (`arke/event@v1`, spec §3.2) and its historical predecessors, the chain
//! entries `arke/chain-entry@v1` / `@v0` (§3.3).

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::ModelError;
use super::fields::{Obj, schema_of};
use super::link::{LinkRef, RefShape};

pub(crate) const EVENT_V1: &str = "arke/event@v1";
pub(crate) const CHAIN_ENTRY_V1: &str = "arke/chain-entry@v1";
pub(crate) const CHAIN_ENTRY_V0: &str = "arke/chain-entry@v0";

/// Ids were `pi` in this era; `id`/`entity_id` are accepted in case a later writer used them.
const ID_KEYS: &[&str] = &["pi", "id", "entity_id"];

/// The `type` of an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `"create"`: counted into `total_count` by the event worker.
    Create,
    /// `"update"`: the only type the worker emits since 2025-12-13.
    Update,
    /// Any other string. Kept rather than rejected so a chain walk does not stop at it.
    Other(String),
}

impl EventType {
    /// The stored string.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::Create => "create",
            EventType::Update => "update",
            EventType::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "create" => EventType::Create,
            "update" => EventType::Update,
            other => EventType::Other(other.to_owned()),
        }
    }
}

/// An `arke/event@v1` node.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `type`.
    pub event_type: EventType,
    /// The entity id (`pi`, or `id`/`entity_id`).
    pub pi: String,
    /// `ver` as given by the caller. Optional on read: a missing `ver` must not end a walk.
    pub ver: Option<u64>,
    /// `tip_cid`: the manifest this event announced. Optional on read for the same reason.
    pub tip_cid: Option<LinkRef>,
    /// `ts`, set at enqueue time.
    pub ts: Option<String>,
    /// `prev`: the previous event, none at the genesis.
    pub prev: Option<LinkRef>,
}

/// An `arke/chain-entry@v1` node (2025-10-11, seed 000).
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEntryV1 {
    /// `pi`.
    pub pi: String,
    /// `ver`.
    pub ver: Option<u64>,
    /// `tip`.
    pub tip: Option<LinkRef>,
    /// `ts`.
    pub ts: Option<String>,
    /// `prev`.
    pub prev: Option<LinkRef>,
}

/// An `arke/chain-entry@v0` node (2025-10-12): no tip, it was read from MFS instead.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEntryV0 {
    /// `pi`.
    pub pi: String,
    /// `ts`.
    pub ts: Option<String>,
    /// `prev`.
    pub prev: Option<LinkRef>,
}

/// Any node of an event or PI chain. Mixed chains exist (migration), so a walker reads
/// every node through this.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainNode {
    /// `arke/event@v1`.
    Event(Event),
    /// `arke/chain-entry@v1`.
    EntryV1(ChainEntryV1),
    /// `arke/chain-entry@v0`.
    EntryV0(ChainEntryV0),
}

impl Event {
    /// Reads an `arke/event@v1` node; any other schema is an error.
    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        match ChainNode::from_ipld(value)? {
            ChainNode::Event(e) => Ok(e),
            other => Err(ModelError::UnknownSchema {
                schema: other.schema().to_owned(),
                expected: "event",
            }),
        }
    }

    fn read(o: &Obj<'_>) -> Result<Self, ModelError> {
        Ok(Event {
            event_type: EventType::parse(&o.req_str("type")?),
            pi: o.req_id(ID_KEYS)?,
            ver: o.opt_u64("ver")?,
            tip_cid: o.opt_link("tip_cid")?,
            ts: o.opt_str("ts")?,
            prev: o.opt_link("prev")?,
        })
    }

    /// The node exactly as production stores it (spec §2.2): `dag/put store-codec=dag-cbor
    /// input-codec=json` turns `prev` and `tip_cid` into PLAIN `{"/": "<cid>"}` maps, which
    /// no traversal follows (bug B3). For test data that must look like production.
    pub fn to_production_ipld(&self) -> Ipld {
        self.to_ipld_with(RefShape::PlainMap)
    }

    /// The node with real links for `prev` and `tip_cid` (what dag-json storage gives, and
    /// what a fixed writer should store).
    pub fn to_linked_ipld(&self) -> Ipld {
        self.to_ipld_with(RefShape::Link)
    }

    fn to_ipld_with(&self, shape: RefShape) -> Ipld {
        let link = |r: &Option<LinkRef>| r.as_ref().map_or(Ipld::Null, |r| shape.encode(&r.cid));
        let mut m = BTreeMap::new();
        m.insert("schema".to_owned(), Ipld::String(EVENT_V1.to_owned()));
        m.insert(
            "type".to_owned(),
            Ipld::String(self.event_type.as_str().to_owned()),
        );
        m.insert("pi".to_owned(), Ipld::String(self.pi.clone()));
        if let Some(ver) = self.ver {
            m.insert("ver".to_owned(), Ipld::Integer(i128::from(ver)));
        }
        m.insert("tip_cid".to_owned(), link(&self.tip_cid));
        if let Some(ts) = &self.ts {
            m.insert("ts".to_owned(), Ipld::String(ts.clone()));
        }
        // Production always writes `prev`, as null at the genesis.
        m.insert("prev".to_owned(), link(&self.prev));
        Ipld::Map(m)
    }
}

impl ChainNode {
    /// Reads any chain node, dispatching on `schema`.
    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        let schema = schema_of(value, "event or chain entry")?;
        let o = Obj::top(schema, value)?;
        match schema {
            EVENT_V1 => Event::read(&o).map(ChainNode::Event),
            CHAIN_ENTRY_V1 => Ok(ChainNode::EntryV1(ChainEntryV1 {
                pi: o.req_id(ID_KEYS)?,
                ver: o.opt_u64("ver")?,
                tip: o.opt_link("tip")?,
                ts: o.opt_str("ts")?,
                prev: o.opt_link("prev")?,
            })),
            CHAIN_ENTRY_V0 => Ok(ChainNode::EntryV0(ChainEntryV0 {
                pi: o.req_id(ID_KEYS)?,
                ts: o.opt_str("ts")?,
                prev: o.opt_link("prev")?,
            })),
            other => Err(ModelError::UnknownSchema {
                schema: other.to_owned(),
                expected: "event or chain entry",
            }),
        }
    }

    /// The schema string of this node.
    pub fn schema(&self) -> &'static str {
        match self {
            ChainNode::Event(_) => EVENT_V1,
            ChainNode::EntryV1(_) => CHAIN_ENTRY_V1,
            ChainNode::EntryV0(_) => CHAIN_ENTRY_V0,
        }
    }

    /// The entity id.
    pub fn pi(&self) -> &str {
        match self {
            ChainNode::Event(e) => &e.pi,
            ChainNode::EntryV1(e) => &e.pi,
            ChainNode::EntryV0(e) => &e.pi,
        }
    }

    /// The previous node, whatever shape it was stored in.
    pub fn prev(&self) -> Option<Cid> {
        self.prev_ref().map(|r| r.cid)
    }

    /// The previous node with its stored shape (a plain map means the chain is not linked).
    pub fn prev_ref(&self) -> Option<&LinkRef> {
        match self {
            ChainNode::Event(e) => e.prev.as_ref(),
            ChainNode::EntryV1(e) => e.prev.as_ref(),
            ChainNode::EntryV0(e) => e.prev.as_ref(),
        }
    }

    /// The announced tip manifest (`tip_cid` / `tip`); none for chain-entry@v0.
    pub fn tip(&self) -> Option<Cid> {
        match self {
            ChainNode::Event(e) => e.tip_cid.map(|r| r.cid),
            ChainNode::EntryV1(e) => e.tip.map(|r| r.cid),
            ChainNode::EntryV0(_) => None,
        }
    }

    /// The timestamp string as stored.
    pub fn ts(&self) -> Option<&str> {
        match self {
            ChainNode::Event(e) => e.ts.as_deref(),
            ChainNode::EntryV1(e) => e.ts.as_deref(),
            ChainNode::EntryV0(e) => e.ts.as_deref(),
        }
    }

    /// The manifest version; none for chain-entry@v0.
    pub fn ver(&self) -> Option<u64> {
        match self {
            ChainNode::Event(e) => e.ver,
            ChainNode::EntryV1(e) => e.ver,
            ChainNode::EntryV0(_) => None,
        }
    }

    /// The event type; chain entries predate types and give none.
    pub fn event_type(&self) -> Option<&EventType> {
        match self {
            ChainNode::Event(e) => Some(&e.event_type),
            _ => None,
        }
    }
}
