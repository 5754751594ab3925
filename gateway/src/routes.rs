//! The router.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/read-models", get(read_models))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Each read model's checkpoint and digest: what `agentcrm replay` must reproduce.
async fn read_models(State(state): State<AppState>) -> Json<serde_json::Value> {
    let models: Vec<_> = state
        .read_models
        .all()
        .into_iter()
        .map(|model| {
            json!({
                "name": model.name(),
                "checkpoint": model.checkpoint(),
                "digest": model.digest().unwrap_or_else(|error| format!("unavailable: {error}")),
            })
        })
        .collect();
    Json(json!({ "read_models": models }))
}
