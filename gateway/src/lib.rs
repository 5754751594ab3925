//! The gateway: AgentCRM's HTTP front door.
//!
//! It holds no agent logic: it validates, authenticates, turns requests into
//! events or queries over read models, and answers.
//!
//! - [`state`]: [`AppState`], what every handler needs (bus, intake, read models).
//! - [`routes`]: the router.

pub mod routes;
pub mod state;

use agent_kit::Shutdown;
use tokio::net::TcpListener;

pub use state::AppState;

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
