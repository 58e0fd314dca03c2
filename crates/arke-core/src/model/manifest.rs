//! Entity manifests of every era (spec §3.5), plus the strict eidos writer.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;
use serde::Serialize;

use super::ModelError;
use super::fields::{Obj, schema_of};
use super::link::{LinkRef, parse_ref};

pub(crate) const MANIFEST_V1_AT: &str = "arke/manifest@v1";
pub(crate) const MANIFEST_V1_SLASH: &str = "arke/manifest/v1";
pub(crate) const ENTITY_V1: &str = "arke/entity@v1";
pub(crate) const ENTITY_MERGED_V1: &str = "arke/entity-merged@v1";
pub(crate) const ENTITY_DELETED_V1: &str = "arke/entity-deleted@v1";
pub(crate) const EIDOS_V1: &str = "arke/eidos@v1";
pub(crate) const EIDOS_MERGED_V1: &str = "arke/eidos-merged@v1";
pub(crate) const EIDOS_DELETED_V1: &str = "arke/eidos-deleted@v1";

/// Which manifest format, independent of schema spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    /// `arke/manifest@v1` or `arke/manifest/v1`.
    Legacy,
    /// `arke/entity@v1`.
    Entity,
    /// `arke/entity-merged@v1`.
    EntityMerged,
    /// `arke/entity-deleted@v1`.
    EntityDeleted,
    /// `arke/eidos@v1`.
    Eidos,
    /// `arke/eidos-merged@v1`.
    EidosMerged,
    /// `arke/eidos-deleted@v1`.
    EidosDeleted,
}

/// `arke/manifest@v1` (worker) / `arke/manifest/v1` (server test data and docs).
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyManifest {
    /// The schema string as found (two spellings exist).
    pub schema: String,
    /// `pi`.
    pub pi: String,
    /// `ver`.
    pub ver: u64,
    /// `ts`.
    pub ts: Option<String>,
    /// `prev`: the previous version (a plain map in the 2025-10-09/10 fake-link era).
    pub prev: Option<LinkRef>,
    /// `components`: label → CID.
    pub components: Vec<(String, LinkRef)>,
    /// `children_pi`: ids, not links.
    pub children_pi: Vec<String>,
    /// `parent_pi`: an id, not a link.
    pub parent_pi: Option<String>,
    /// `note`.
    pub note: Option<String>,
}

/// `arke/entity@v1` (worker, 2025-12-12/13 only).
#[derive(Debug, Clone, PartialEq)]
pub struct EntityV1 {
    /// `entity_id`.
    pub entity_id: String,
    /// `type`, if present.
    pub entity_type: Option<String>,
    /// `ver`.
    pub ver: u64,
    /// `ts`.
    pub ts: Option<String>,
    /// `prev`.
    pub prev: Option<LinkRef>,
    /// `components` (`properties`, `relationships`, and file labels).
    pub components: Vec<(String, LinkRef)>,
    /// `created_by_pi`: an id.
    pub created_by_pi: Option<String>,
    /// `source_pis`: ids.
    pub source_pis: Vec<String>,
    /// `label`.
    pub label: Option<String>,
}

/// `arke/entity-merged@v1` / `arke/entity-deleted@v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityTombstone {
    /// `entity_id`.
    pub entity_id: String,
    /// `ver`.
    pub ver: Option<u64>,
    /// `ts`.
    pub ts: Option<String>,
    /// `prev`: the last live version.
    pub prev: Option<LinkRef>,
    /// `merged_into`: an id (merged tombstones only).
    pub merged_into: Option<String>,
}

/// `arke/eidos@v1`, the current manifest (since `W@147171f`).
#[derive(Debug, Clone, PartialEq)]
pub struct EidosV1 {
    /// `id`.
    pub id: String,
    /// `type` ("PI", "person", ...).
    pub entity_type: String,
    /// `created_at`.
    pub created_at: String,
    /// `ver` (≥ 1 as written; not enforced on read).
    pub ver: u64,
    /// `ts`.
    pub ts: String,
    /// `prev`: null for ver 1.
    pub prev: Option<LinkRef>,
    /// `components`: arbitrary labels → CID.
    pub components: Vec<(String, LinkRef)>,
    /// `children_pi`: ids.
    pub children_pi: Vec<String>,
    /// `parent_pi`: an id.
    pub parent_pi: Option<String>,
    /// `source_pi`: an id.
    pub source_pi: Option<String>,
    /// `merged_entities`: ids.
    pub merged_entities: Vec<String>,
    /// `label`.
    pub label: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `note`.
    pub note: Option<String>,
    /// `properties`: an inline arbitrary object (since `W@bff6d7b`). It may contain real
    /// links, because user values shaped `{"/": cid}` became links under dag-json input.
    pub properties: Option<Ipld>,
}

/// `arke/eidos-merged@v1` / `arke/eidos-deleted@v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct EidosTombstone {
    /// `id`.
    pub id: String,
    /// `type`, if present.
    pub entity_type: Option<String>,
    /// `ver`.
    pub ver: Option<u64>,
    /// `ts`.
    pub ts: Option<String>,
    /// `prev`: the last live version (required).
    pub prev: LinkRef,
    /// `merged_into`: an id (merged tombstones only).
    pub merged_into: Option<String>,
    /// `source_pi`: an id.
    pub source_pi: Option<String>,
    /// `note`.
    pub note: Option<String>,
}

/// A manifest of any known schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    /// `arke/manifest@v1` / `arke/manifest/v1`.
    Legacy(LegacyManifest),
    /// `arke/entity@v1`.
    Entity(EntityV1),
    /// `arke/entity-merged@v1`.
    EntityMerged(EntityTombstone),
    /// `arke/entity-deleted@v1`.
    EntityDeleted(EntityTombstone),
    /// `arke/eidos@v1` (boxed: it is by far the largest variant).
    Eidos(Box<EidosV1>),
    /// `arke/eidos-merged@v1`.
    EidosMerged(EidosTombstone),
    /// `arke/eidos-deleted@v1`.
    EidosDeleted(EidosTombstone),
}

/// Reads `components`: label → CID reference in any shape. Absent means none; a null value
/// is skipped (nothing to follow), anything else that is not a CID is an error.
fn read_components(o: &Obj<'_>) -> Result<Vec<(String, LinkRef)>, ModelError> {
    let Some(c) = o.sub("components")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(c.raw().len());
    for (label, value) in c.raw() {
        if let Some(r) = parse_ref(value).map_err(|reason| c.bad(label, reason))? {
            out.push((label.clone(), r));
        }
    }
    Ok(out)
}

fn read_entity_tombstone(o: &Obj<'_>) -> Result<EntityTombstone, ModelError> {
    Ok(EntityTombstone {
        entity_id: o.req_id(&["entity_id", "id", "pi"])?,
        ver: o.opt_u64("ver")?,
        ts: o.opt_str("ts")?,
        prev: o.opt_link("prev")?,
        merged_into: o.opt_str("merged_into")?,
    })
}

fn read_eidos_tombstone(o: &Obj<'_>) -> Result<EidosTombstone, ModelError> {
    Ok(EidosTombstone {
        id: o.req_id(&["id", "entity_id", "pi"])?,
        entity_type: o.opt_str("type")?,
        ver: o.opt_u64("ver")?,
        ts: o.opt_str("ts")?,
        prev: o.req_link("prev")?,
        merged_into: o.opt_str("merged_into")?,
        source_pi: o.opt_str("source_pi")?,
        note: o.opt_str("note")?,
    })
}

impl Manifest {
    /// Reads a manifest of any known schema.
    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        let schema = schema_of(value, "manifest")?;
        let o = Obj::top(schema, value)?;
        match schema {
            MANIFEST_V1_AT | MANIFEST_V1_SLASH => Ok(Manifest::Legacy(LegacyManifest {
                schema: schema.to_owned(),
                pi: o.req_id(&["pi", "id", "entity_id"])?,
                ver: o.req_u64("ver")?,
                ts: o.opt_str("ts")?,
                prev: o.opt_link("prev")?,
                components: read_components(&o)?,
                children_pi: o.str_list("children_pi")?,
                parent_pi: o.opt_str("parent_pi")?,
                note: o.opt_str("note")?,
            })),
            ENTITY_V1 => Ok(Manifest::Entity(EntityV1 {
                entity_id: o.req_id(&["entity_id", "id", "pi"])?,
                entity_type: o.opt_str("type")?,
                ver: o.req_u64("ver")?,
                ts: o.opt_str("ts")?,
                prev: o.opt_link("prev")?,
                components: read_components(&o)?,
                created_by_pi: o.opt_str("created_by_pi")?,
                source_pis: o.str_list("source_pis")?,
                label: o.opt_str("label")?,
            })),
            ENTITY_MERGED_V1 => read_entity_tombstone(&o).map(Manifest::EntityMerged),
            ENTITY_DELETED_V1 => read_entity_tombstone(&o).map(Manifest::EntityDeleted),
            EIDOS_V1 => Ok(Manifest::Eidos(Box::new(EidosV1 {
                id: o.req_id(&["id", "entity_id", "pi"])?,
                entity_type: o.req_str("type")?,
                created_at: o.req_str("created_at")?,
                ver: o.req_u64("ver")?,
                ts: o.req_str("ts")?,
                prev: o.opt_link("prev")?,
                components: read_components(&o)?,
                children_pi: o.str_list("children_pi")?,
                parent_pi: o.opt_str("parent_pi")?,
                source_pi: o.opt_str("source_pi")?,
                merged_entities: o.str_list("merged_entities")?,
                label: o.opt_str("label")?,
                description: o.opt_str("description")?,
                note: o.opt_str("note")?,
                properties: o.get("properties").cloned(),
            }))),
            EIDOS_MERGED_V1 => read_eidos_tombstone(&o).map(Manifest::EidosMerged),
            EIDOS_DELETED_V1 => read_eidos_tombstone(&o).map(Manifest::EidosDeleted),
            other => Err(ModelError::UnknownSchema {
                schema: other.to_owned(),
                expected: "manifest",
            }),
        }
    }

    /// The format, independent of schema spelling.
    pub fn kind(&self) -> ManifestKind {
        match self {
            Manifest::Legacy(_) => ManifestKind::Legacy,
            Manifest::Entity(_) => ManifestKind::Entity,
            Manifest::EntityMerged(_) => ManifestKind::EntityMerged,
            Manifest::EntityDeleted(_) => ManifestKind::EntityDeleted,
            Manifest::Eidos(_) => ManifestKind::Eidos,
            Manifest::EidosMerged(_) => ManifestKind::EidosMerged,
            Manifest::EidosDeleted(_) => ManifestKind::EidosDeleted,
        }
    }

    /// The schema string as found.
    pub fn schema(&self) -> &str {
        match self {
            Manifest::Legacy(m) => &m.schema,
            Manifest::Entity(_) => ENTITY_V1,
            Manifest::EntityMerged(_) => ENTITY_MERGED_V1,
            Manifest::EntityDeleted(_) => ENTITY_DELETED_V1,
            Manifest::Eidos(_) => EIDOS_V1,
            Manifest::EidosMerged(_) => EIDOS_MERGED_V1,
            Manifest::EidosDeleted(_) => EIDOS_DELETED_V1,
        }
    }

    /// The entity id (`pi`, `entity_id` or `id` depending on era).
    pub fn id(&self) -> &str {
        match self {
            Manifest::Legacy(m) => &m.pi,
            Manifest::Entity(m) => &m.entity_id,
            Manifest::EntityMerged(m) | Manifest::EntityDeleted(m) => &m.entity_id,
            Manifest::Eidos(m) => &m.id,
            Manifest::EidosMerged(m) | Manifest::EidosDeleted(m) => &m.id,
        }
    }

    /// The version number, if the manifest carries one.
    pub fn ver(&self) -> Option<u64> {
        match self {
            Manifest::Legacy(m) => Some(m.ver),
            Manifest::Entity(m) => Some(m.ver),
            Manifest::EntityMerged(m) | Manifest::EntityDeleted(m) => m.ver,
            Manifest::Eidos(m) => Some(m.ver),
            Manifest::EidosMerged(m) | Manifest::EidosDeleted(m) => m.ver,
        }
    }

    /// The previous version.
    pub fn prev(&self) -> Option<Cid> {
        self.prev_ref().map(|r| r.cid)
    }

    /// The previous version with its stored shape (a plain map ends `dag export` traversal).
    pub fn prev_ref(&self) -> Option<&LinkRef> {
        match self {
            Manifest::Legacy(m) => m.prev.as_ref(),
            Manifest::Entity(m) => m.prev.as_ref(),
            Manifest::EntityMerged(m) | Manifest::EntityDeleted(m) => m.prev.as_ref(),
            Manifest::Eidos(m) => m.prev.as_ref(),
            Manifest::EidosMerged(m) | Manifest::EidosDeleted(m) => Some(&m.prev),
        }
    }

    /// The components, label → CID (empty for tombstones).
    pub fn components(&self) -> Vec<(String, Cid)> {
        self.component_refs()
            .iter()
            .map(|(l, r)| (l.clone(), r.cid))
            .collect()
    }

    /// The components with their stored shapes.
    pub fn component_refs(&self) -> &[(String, LinkRef)] {
        match self {
            Manifest::Legacy(m) => &m.components,
            Manifest::Entity(m) => &m.components,
            Manifest::Eidos(m) => &m.components,
            Manifest::EntityMerged(_)
            | Manifest::EntityDeleted(_)
            | Manifest::EidosMerged(_)
            | Manifest::EidosDeleted(_) => &[],
        }
    }

    /// Whether this is a merged or deleted tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(
            self,
            Manifest::EntityMerged(_)
                | Manifest::EntityDeleted(_)
                | Manifest::EidosMerged(_)
                | Manifest::EidosDeleted(_)
        )
    }
}

/// Strict writer for `arke/eidos@v1` manifests (test-data generator).
///
/// Serialized through `ipld_core::serde::to_ipld`, the `Cid` fields become real links
/// (`Ipld::Link`, CBOR tag 42 in dag-cbor) — unlike production events, nothing here is a
/// plain `{"/": ...}` map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EidosManifest {
    /// Always `arke/eidos@v1`; set by [`EidosManifest::new`].
    pub schema: String,
    /// The entity id.
    pub id: String,
    /// `type`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// `created_at`.
    pub created_at: String,
    /// `ver`, ≥ 1.
    pub ver: u64,
    /// `ts`.
    pub ts: String,
    /// `prev`: written as null for ver 1, as the worker does.
    pub prev: Option<Cid>,
    /// `components`, label → CID.
    pub components: BTreeMap<String, Cid>,
    /// `children_pi`.
    pub children_pi: Vec<String>,
    /// `parent_pi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_pi: Option<String>,
    /// `source_pi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_pi: Option<String>,
    /// `merged_entities`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_entities: Vec<String>,
    /// `label`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `note`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `properties`: an inline object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Ipld>,
}

impl EidosManifest {
    /// A version-1 manifest with no prev, components or optional fields.
    pub fn new(
        id: impl Into<String>,
        entity_type: impl Into<String>,
        ts: impl Into<String>,
    ) -> Self {
        let ts = ts.into();
        EidosManifest {
            schema: EIDOS_V1.to_owned(),
            id: id.into(),
            entity_type: entity_type.into(),
            created_at: ts.clone(),
            ver: 1,
            ts,
            prev: None,
            components: BTreeMap::new(),
            children_pi: Vec::new(),
            parent_pi: None,
            source_pi: None,
            merged_entities: Vec::new(),
            label: None,
            description: None,
            note: None,
            properties: None,
        }
    }

    /// The IPLD data model form, with real links, ready for a dag-cbor encoder.
    pub fn to_ipld(&self) -> Result<Ipld, ipld_core::serde::SerdeError> {
        ipld_core::serde::to_ipld(self)
    }
}
