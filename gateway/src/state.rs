//! What every handler needs.

use std::sync::Arc;

use agent_kit::Bus;
use agent_kit::intake::Intake;
use event_store::ReadModels;

/// Shared, cheaply cloneable handler state.
#[derive(Clone)]
pub struct AppState {
    pub bus: Arc<dyn Bus>,
    pub intake: Arc<dyn Intake>,
    pub read_models: Arc<ReadModels>,
}
