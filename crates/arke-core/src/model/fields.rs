//! Field access over a decoded IPLD map with errors that name the schema and field path.
//!
//! Every decoder in this module goes through [`Obj`] rather than serde-derive so that the
//! lenient rules (three link shapes, null == absent, any integer width, `pi`/`id`/`entity_id`)
//! live in one place and every failure says which schema and which field.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use super::ModelError;
use super::link::{LinkRef, kind_name, parse_ref};

/// A map being read as part of an object of schema `schema`, at field path `path`.
#[derive(Debug, Clone)]
pub(crate) struct Obj<'a> {
    pub schema: &'a str,
    path: String,
    map: &'a BTreeMap<String, Ipld>,
}

/// Returns the `schema` string of a top-level object, or the appropriate error.
pub(crate) fn schema_of<'a>(
    value: &'a Ipld,
    expected: &'static str,
) -> Result<&'a str, ModelError> {
    let Ipld::Map(map) = value else {
        return Err(ModelError::NotAMap {
            what: expected.to_owned(),
        });
    };
    match map.get("schema") {
        Some(Ipld::String(s)) => Ok(s.as_str()),
        _ => Err(ModelError::NoSchema { expected }),
    }
}

impl<'a> Obj<'a> {
    /// Views a top-level object (whose schema has already been read).
    pub fn top(schema: &'a str, value: &'a Ipld) -> Result<Self, ModelError> {
        match value {
            Ipld::Map(map) => Ok(Obj {
                schema,
                path: String::new(),
                map,
            }),
            _ => Err(ModelError::NotAMap {
                what: schema.to_owned(),
            }),
        }
    }

    /// Full path of `key` for error messages.
    pub fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn missing(&self, key: &str) -> ModelError {
        ModelError::MissingField {
            schema: self.schema.to_owned(),
            field: self.name(key),
        }
    }

    pub fn bad(&self, key: &str, reason: impl Into<String>) -> ModelError {
        ModelError::BadField {
            schema: self.schema.to_owned(),
            field: self.name(key),
            reason: reason.into(),
        }
    }

    /// The value of `key`, treating `null` like an absent key.
    pub fn get(&self, key: &str) -> Option<&'a Ipld> {
        match self.map.get(key) {
            None | Some(Ipld::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Whether `key` is present with a non-null value.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn req(&self, key: &str) -> Result<&'a Ipld, ModelError> {
        self.get(key).ok_or_else(|| self.missing(key))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(Ipld::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                Err(self.bad(key, format!("expected a string, got {}", kind_name(other))))
            }
        }
    }

    pub fn req_str(&self, key: &str) -> Result<String, ModelError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_u64(v).map(Some).map_err(|reason| self.bad(key, reason)),
        }
    }

    pub fn req_u64(&self, key: &str) -> Result<u64, ModelError> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(Ipld::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.bad(key, format!("expected a bool, got {}", kind_name(other)))),
        }
    }

    /// A CID reference in any shape; `null`, absent and `""` are none.
    pub fn opt_link(&self, key: &str) -> Result<Option<LinkRef>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_ref(v).map_err(|reason| self.bad(key, reason)),
        }
    }

    pub fn req_link(&self, key: &str) -> Result<LinkRef, ModelError> {
        self.opt_link(key)?.ok_or_else(|| self.missing(key))
    }

    /// The entity id, under the first of `keys` that is present (`pi`, `id`, `entity_id`:
    /// each era named it differently). The error names the schema's own key, `keys[0]`.
    pub fn req_id(&self, keys: &[&str]) -> Result<String, ModelError> {
        for key in keys {
            if let Some(s) = self.opt_str(key)? {
                return Ok(s);
            }
        }
        Err(self.missing(keys.first().copied().unwrap_or("id")))
    }

    /// A list of strings; absent or null is an empty list.
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, ModelError> {
        let Some(v) = self.get(key) else {
            return Ok(Vec::new());
        };
        let Ipld::List(items) = v else {
            return Err(self.bad(key, format!("expected a list, got {}", kind_name(v))));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Ipld::String(s) => Ok(s.clone()),
                other => Err(self.bad(
                    &format!("{key}[{i}]"),
                    format!("expected a string, got {}", kind_name(other)),
                )),
            })
            .collect()
    }

    /// A required list.
    pub fn req_list(&self, key: &str) -> Result<&'a [Ipld], ModelError> {
        match self.req(key)? {
            Ipld::List(items) => Ok(items),
            other => Err(self.bad(key, format!("expected a list, got {}", kind_name(other)))),
        }
    }

    /// A required list of CID references (each in any shape, none may be null).
    pub fn req_link_list(&self, key: &str) -> Result<Vec<LinkRef>, ModelError> {
        self.req_list(key)?
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = format!("{key}[{i}]");
                parse_ref(item)
                    .map_err(|r| self.bad(&name, r))?
                    .ok_or_else(|| self.missing(&name))
            })
            .collect()
    }

    /// A nested map, viewed with its path extended; absent or null is none.
    pub fn sub(&self, key: &str) -> Result<Option<Obj<'a>>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(Ipld::Map(map)) => Ok(Some(Obj {
                schema: self.schema,
                path: self.name(key),
                map,
            })),
            Some(other) => Err(self.bad(key, format!("expected a map, got {}", kind_name(other)))),
        }
    }

    /// Views element `index` of list field `key`, which must be a map.
    pub fn element(&self, key: &str, index: usize, item: &'a Ipld) -> Result<Obj<'a>, ModelError> {
        let path = self.name(&format!("{key}[{index}]"));
        match item {
            Ipld::Map(map) => Ok(Obj {
                schema: self.schema,
                path,
                map,
            }),
            other => Err(ModelError::BadField {
                schema: self.schema.to_owned(),
                field: path,
                reason: format!("expected a map, got {}", kind_name(other)),
            }),
        }
    }

    /// The raw map, for fields with arbitrary keys (components).
    pub fn raw(&self) -> &'a BTreeMap<String, Ipld> {
        self.map
    }
}

/// An integer of any width that fits u64. A float with an integral value is accepted too:
/// some JSON round trips turn `3` into `3.0`, and the value is still unambiguous.
pub(crate) fn as_u64(v: &Ipld) -> Result<u64, String> {
    match v {
        Ipld::Integer(i) => {
            u64::try_from(*i).map_err(|_| format!("integer {i} out of range for u64"))
        }
        Ipld::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64 => Ok(*f as u64),
        other => Err(format!(
            "expected a non-negative integer, got {}",
            kind_name(other)
        )),
    }
}
