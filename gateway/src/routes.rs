//! The router: every route of [`crate::auth::ROUTES`], the access middleware,
//! the body limit, and problem answers for unknown routes.

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::problem::Problem;
use crate::state::AppState;
use crate::{admin, auth, customers, openapi, webhooks};

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs_page))
        .route("/crm/webhooks/interaction", post(webhooks::seed_webhook))
        .route("/api/v1/webhooks/{source}", post(webhooks::source_webhook))
        .route("/api/v1/customers", post(customers::create_customer).get(customers::list_customers))
        .route(
            "/api/v1/customers/{customer_id}",
            get(customers::get_customer).patch(customers::update_customer),
        )
        .route(
            "/api/v1/customers/{customer_id}/interactions",
            get(customers::customer_interactions),
        )
        .route("/api/v1/customers/{customer_id}/activities", get(customers::customer_activities))
        .route("/api/v1/customers/{customer_id}/360", get(customers::customer_360))
        .route("/api/v1/customers/{customer_id}/forget", post(customers::forget_customer))
        .route("/api/v1/read-models", get(admin::read_models))
        .route("/api/v1/sources", get(admin::list_sources).post(admin::create_source))
        .route("/api/v1/keys", get(admin::list_keys).post(admin::create_key))
        .route("/api/v1/keys/{name}", delete(admin::revoke_key))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authorize))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> impl IntoResponse {
    Problem::not_found(format!("no route {method} {}", uri.path())).with_instance(uri.path())
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> impl IntoResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .with_instance(uri.path())
}
