//! What every handler needs.

use std::sync::Arc;

use agent_kit::Bus;
use agent_kit::intake::Intake;
use agent_kit::vault::PiiVault;
use event_store::{ReadModels, SledStore, StoreError};

use crate::config::GatewayConfig;
use crate::keys::{ApiKeys, KEYS_TABLE};
use crate::sources::{
    DEFAULT_SOURCE, DELIVERIES_TABLE, Deliveries, SOURCES_TABLE, SourceError, Sources,
};

/// Shared handler state: one reference count to clone per request (axum
/// clones the state for every extractor and middleware that asks for it).
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

/// What the handlers reach through [`AppState`].
pub struct Handles {
    pub bus: Arc<dyn Bus>,
    pub intake: Arc<dyn Intake>,
    pub read_models: Arc<ReadModels>,
    pub vault: Arc<dyn PiiVault>,
    pub sources: Sources,
    pub deliveries: Deliveries,
    pub keys: ApiKeys,
    pub config: Arc<GatewayConfig>,
}

/// The gateway's local tables in a node's database.
pub struct LocalState {
    pub sources: Sources,
    pub deliveries: Deliveries,
    pub keys: ApiKeys,
}

impl LocalState {
    pub fn open(store: &SledStore) -> Result<Self, StoreError> {
        Ok(Self {
            sources: Sources::new(store.table(SOURCES_TABLE)?),
            deliveries: Deliveries::new(store.table(DELIVERIES_TABLE)?),
            keys: ApiKeys::new(store.table(KEYS_TABLE)?),
        })
    }

    /// Creates the seed route's source on first start; true when it did.
    pub fn ensure_default_source(&self) -> Result<bool, SourceError> {
        self.sources.ensure(DEFAULT_SOURCE)
    }
}

impl AppState {
    pub fn new(
        bus: Arc<dyn Bus>,
        intake: Arc<dyn Intake>,
        read_models: Arc<ReadModels>,
        vault: Arc<dyn PiiVault>,
        local: LocalState,
        config: GatewayConfig,
    ) -> Self {
        Self(Arc::new(Handles {
            bus,
            intake,
            read_models,
            vault,
            sources: local.sources,
            deliveries: local.deliveries,
            keys: local.keys,
            config: Arc::new(config),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}
