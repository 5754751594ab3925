//! The gateway: AgentCRM's HTTP front door.
//!
//! It holds no agent logic: it validates, authenticates, turns requests into
//! events or queries over read models, and answers.
//!
//! - [`routes`]: the router.
//! - [`auth`]: roles, the route table ([`auth::ROUTES`]) and the middleware
//!   that enforces it.
//! - [`webhooks`]: the seed's webhook and named sources: verify, validate,
//!   hand to the intake, answer 202 once durable.
//! - [`signature`]: Standard Webhooks signatures.
//! - [`sources`]: webhook sources, their secrets, the delivery index.
//! - [`keys`]: API keys (only hashes are stored).
//! - [`customers`]: the customer REST API with `ETag`/`If-Match`.
//! - [`admin`]: sources, keys and read models of a running node.
//! - [`openapi`]: the OpenAPI document and the `/docs` page.
//! - [`problem`]: RFC 9457 problem answers.
//! - [`config`]: limits; [`state`]: what handlers share.

// A `Problem` is built at most once per request, on the way out: its size on
// the error path costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod customers;
pub mod keys;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod signature;
pub mod sources;
pub mod state;
pub mod webhooks;

use agent_kit::Shutdown;
use tokio::net::TcpListener;

pub use config::GatewayConfig;
pub use state::{AppState, LocalState};

/// Serves the gateway on `listener` until `shutdown` fires, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let router = routes::router(state);
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.wait().await }).await
}
