//! Webhook sources and their secrets, and the delivery index that makes a
//! retried delivery idempotent. Both live in local tables beside the log, never
//! in it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bus_schema::ValidationError;
use chrono::{DateTime, Utc};
use event_store::StoreError;
use event_store::local::LocalTable;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::signature::{SignatureError, WebhookSecret};

/// The source of the seed's route `POST /crm/webhooks/interaction`.
pub const DEFAULT_SOURCE: &str = "default";
/// Table names in the node's database.
pub const SOURCES_TABLE: &str = "gateway.sources";
pub const DELIVERIES_TABLE: &str = "gateway.deliveries";

/// Why a source operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{0}` already exists")]
    Exists(String),
    #[error("no source named `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("stored source `{name}` is unreadable: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("cannot generate a secret: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A sender of webhooks, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    pub name: String,
    /// `whsec_` secrets; the first signs new deliveries, all verify (rotation).
    pub secrets: Vec<String>,
    /// Accept requests that carry no signature headers at all (for legacy
    /// senders that cannot sign); a signature that is present is always checked.
    #[serde(default)]
    pub allow_unsigned: bool,
    pub created_at: DateTime<Utc>,
}

/// A source ready to verify deliveries.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub secrets: Vec<WebhookSecret>,
    pub allow_unsigned: bool,
}

/// The sources of one node, cached in memory (the table only changes through
/// this type while the node runs: sled allows one process per data directory).
#[derive(Clone)]
pub struct Sources {
    table: LocalTable,
    cache: Arc<RwLock<HashMap<String, Arc<Source>>>>,
}

impl Sources {
    pub fn new(table: LocalTable) -> Self {
        Self { table, cache: Arc::default() }
    }

    /// Creates a source with a fresh secret and returns it.
    pub fn add(&self, name: &str, allow_unsigned: bool) -> Result<SourceRecord, SourceError> {
        bus_schema::stream::validate_id("source", name)?;
        let secret =
            WebhookSecret::generate().map_err(|error| SourceError::Random(error.to_string()))?;
        let record = SourceRecord {
            name: name.to_owned(),
            secrets: vec![secret.expose()],
            allow_unsigned,
            created_at: Utc::now(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|error| SourceError::Corrupt {
            name: name.into(),
            reason: error.to_string(),
        })?;
        if self.table.insert_new(name.as_bytes(), &bytes)?.is_some() {
            return Err(SourceError::Exists(name.to_owned()));
        }
        self.table.flush()?;
        Ok(record)
    }

    /// Creates `name` unless it exists; true when it was created.
    pub fn ensure(&self, name: &str) -> Result<bool, SourceError> {
        match self.add(name, false) {
            Ok(_) => Ok(true),
            Err(SourceError::Exists(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    pub fn record(&self, name: &str) -> Result<SourceRecord, SourceError> {
        let bytes =
            self.table.get(name.as_bytes())?.ok_or_else(|| SourceError::Unknown(name.into()))?;
        serde_json::from_slice(&bytes)
            .map_err(|error| SourceError::Corrupt { name: name.into(), reason: error.to_string() })
    }

    pub fn list(&self) -> Result<Vec<SourceRecord>, SourceError> {
        self.table
            .scan_prefix(b"")?
            .into_iter()
            .map(|(key, bytes)| {
                serde_json::from_slice(&bytes).map_err(|error| SourceError::Corrupt {
                    name: String::from_utf8_lossy(&key).into_owned(),
                    reason: error.to_string(),
                })
            })
            .collect()
    }

    /// The source ready for verification, or `None` if it does not exist.
    pub fn get(&self, name: &str) -> Result<Option<Arc<Source>>, SourceError> {
        if let Some(source) = self.cache.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Ok(Some(source.clone()));
        }
        let record = match self.record(name) {
            Ok(record) => record,
            Err(SourceError::Unknown(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let secrets = record
            .secrets
            .iter()
            .map(|secret| WebhookSecret::parse(secret))
            .collect::<Result<Vec<_>, SignatureError>>()
            .map_err(|error| SourceError::Corrupt {
                name: name.into(),
                reason: error.to_string(),
            })?;
        let source =
            Arc::new(Source { name: record.name, secrets, allow_unsigned: record.allow_unsigned });
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), source.clone());
        Ok(Some(source))
    }
}

/// Which event id each (source, delivery id) got: lets a retry be answered with
/// the first id without publishing again, also after JetStream's duplicate
/// window. The embedded intake keeps its own permanent index as well, so this
/// table is an optimisation there and the guarantee in distributed mode.
#[derive(Clone)]
pub struct Deliveries {
    table: LocalTable,
}

impl Deliveries {
    pub fn new(table: LocalTable) -> Self {
        Self { table }
    }

    fn key(source: &str, delivery_id: &str) -> Vec<u8> {
        let mut key = source.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(delivery_id.as_bytes());
        key
    }

    pub fn get(&self, source: &str, delivery_id: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .table
            .get(&Self::key(source, delivery_id))?
            .and_then(|bytes| Uuid::from_slice(&bytes).ok()))
    }

    /// Records an accepted delivery. Not flushed: losing it in a crash only
    /// means a later retry is published again with the same derived event id,
    /// which every store downstream deduplicates.
    pub fn record(
        &self,
        source: &str,
        delivery_id: &str,
        event_id: Uuid,
    ) -> Result<(), StoreError> {
        self.table.insert(&Self::key(source, delivery_id), event_id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_have_their_own_secrets() {
        let sources = Sources::new(LocalTable::temporary("sources").unwrap());
        assert!(sources.ensure(DEFAULT_SOURCE).unwrap());
        assert!(!sources.ensure(DEFAULT_SOURCE).unwrap());
        let hubspot = sources.add("hubspot", false).unwrap();
        assert!(hubspot.secrets[0].starts_with("whsec_"));
        assert!(matches!(sources.add("hubspot", false), Err(SourceError::Exists(_))));
        assert!(matches!(sources.add("a.b", false), Err(SourceError::Invalid(_))));
        let default = sources.record(DEFAULT_SOURCE).unwrap();
        assert_ne!(default.secrets, hubspot.secrets);
        assert_eq!(sources.get("hubspot").unwrap().unwrap().secrets.len(), 1);
        assert!(sources.get("nobody").unwrap().is_none());
        let names: Vec<_> = sources.list().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["default", "hubspot"]);
    }
}
