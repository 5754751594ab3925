//! The set of read models a node keeps, and the store that bundles them with
//! the log.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::checkpoints::Checkpoints;
use crate::customer360::Customer360Projection;
use crate::local::LocalTable;
use crate::log::{EventLog, StoreError};
use crate::projection::{ProjectionError, ReadModel, ReadModelAdmin};
use crate::sled_log::{SledEventLog, SledOptions, open_db};

/// Every read model, opened in one sled database.
pub struct ReadModels {
    pub customer360: ReadModel<Customer360Projection>,
}

impl ReadModels {
    pub fn open(db: &sled::Db) -> Result<Self, ProjectionError> {
        Ok(Self { customer360: ReadModel::open(db, Customer360Projection)? })
    }

    /// Read models in a throw-away database, for tests over the in-memory log.
    pub fn temporary() -> Result<Self, ProjectionError> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::open(&db)
    }

    pub fn all(&self) -> Vec<&dyn ReadModelAdmin> {
        vec![&self.customer360]
    }

    /// Folds every model up to the log's head.
    pub fn catch_up(&self, log: &Arc<dyn EventLog>) -> Result<(), ProjectionError> {
        for model in self.all() {
            model.catch_up(log)?;
        }
        Ok(())
    }

    /// Keeps every model following the log until `shutdown` fires.
    pub async fn run(
        self: Arc<Self>,
        log: Arc<dyn EventLog>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        self.customer360.run(log, shutdown).await
    }
}

/// The durable log plus its read models: what a node opens at start.
pub struct SledStore {
    pub log: Arc<SledEventLog>,
    pub read_models: Arc<ReadModels>,
    pub checkpoints: Checkpoints,
}

impl SledStore {
    pub fn open(path: &Path, options: SledOptions) -> Result<Self, ProjectionError> {
        let db = open_db(path, &options)?;
        let damaged = |error: StoreError| error.in_directory(path);
        let read_models = Arc::new(ReadModels::open(&db).map_err(|error| match error {
            ProjectionError::Store(error) => ProjectionError::Store(damaged(error)),
            other => other,
        })?);
        let checkpoints = Checkpoints::open(&db).map_err(damaged)?;
        let log = Arc::new(SledEventLog::with_db(db, path, options)?);
        Ok(Self { log, read_models, checkpoints })
    }

    /// A service-local table in the same database.
    pub fn table(&self, name: &str) -> Result<LocalTable, StoreError> {
        LocalTable::open(self.log.db(), name)
    }

    pub fn log_dyn(&self) -> Arc<dyn EventLog> {
        self.log.clone()
    }

    /// Makes everything durable and stops the writer.
    pub fn close(&self) -> Result<(), StoreError> {
        self.log.close()
    }
}
