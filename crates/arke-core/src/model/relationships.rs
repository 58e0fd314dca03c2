//! The `arke/relationships@v1` component (spec §3.5), stored dag-cbor.

use ipld_core::ipld::Ipld;
use serde::Serialize;

use super::ModelError;
use super::fields::{Obj, schema_of};

pub(crate) const RELATIONSHIPS_V1: &str = "arke/relationships@v1";

/// What a relationship's `target_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    /// `"pi"`.
    Pi,
    /// `"entity"`.
    Entity,
}

/// One relationship.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Relationship {
    /// `predicate`.
    pub predicate: String,
    /// `target_type`.
    pub target_type: TargetType,
    /// `target_id`: an id string, not a link.
    pub target_id: String,
    /// `target_label`.
    pub target_label: String,
    /// `target_entity_type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_entity_type: Option<String>,
    /// `properties`: arbitrary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Ipld>,
}

/// An `arke/relationships@v1` component.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Relationships {
    /// Always `arke/relationships@v1`.
    pub schema: String,
    /// `relationships`.
    pub relationships: Vec<Relationship>,
    /// `timestamp`.
    pub timestamp: String,
    /// `note`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Relationships {
    /// An empty component with the given timestamp.
    pub fn new(timestamp: impl Into<String>) -> Self {
        Relationships {
            schema: RELATIONSHIPS_V1.to_owned(),
            relationships: Vec::new(),
            timestamp: timestamp.into(),
            note: None,
        }
    }

    /// Reads an `arke/relationships@v1` component.
    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        let schema = schema_of(value, "relationships component")?;
        if schema != RELATIONSHIPS_V1 {
            return Err(ModelError::UnknownSchema {
                schema: schema.to_owned(),
                expected: "relationships component",
            });
        }
        let o = Obj::top(schema, value)?;
        let items = match o.get("relationships") {
            None => &[][..],
            Some(_) => o.req_list("relationships")?,
        };
        let relationships = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let r = o.element("relationships", i, item)?;
                let target_type = match r.req_str("target_type")?.as_str() {
                    "pi" => TargetType::Pi,
                    "entity" => TargetType::Entity,
                    other => {
                        return Err(r.bad(
                            "target_type",
                            format!("{other:?} is neither \"pi\" nor \"entity\""),
                        ));
                    }
                };
                Ok(Relationship {
                    predicate: r.req_str("predicate")?,
                    target_type,
                    target_id: r.req_str("target_id")?,
                    // Required when written; read as "" if a writer left it out, because a
                    // label is display text and not worth failing a recovery over.
                    target_label: r.opt_str("target_label")?.unwrap_or_default(),
                    target_entity_type: r.opt_str("target_entity_type")?,
                    properties: r.get("properties").cloned(),
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Relationships {
            schema: schema.to_owned(),
            relationships,
            timestamp: o.req_str("timestamp")?,
            note: o.opt_str("note")?,
        })
    }

    /// The IPLD data model form, ready for a dag-cbor encoder.
    pub fn to_ipld(&self) -> Result<Ipld, ipld_core::serde::SerdeError> {
        ipld_core::serde::to_ipld(self)
    }
}
