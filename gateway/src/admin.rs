//! Administration of a running node: webhook sources, API keys, read models.
//! (The `agentcrm sources` and `agentcrm keys` commands do the same on a
//! stopped node.)

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Role;
use crate::keys::{KeyError, KeyRecord};
use crate::problem::{FieldError, Problem, json_body};
use crate::sources::SourceError;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SourceInfo {
    pub name: String,
    pub allow_unsigned: bool,
    pub created_at: DateTime<Utc>,
    /// Webhook URL path of this source.
    pub path: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    pub name: String,
    #[serde(default)]
    pub allow_unsigned: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedSource {
    pub name: String,
    /// The `whsec_` signing secret.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// Shown once; only its hash is stored.
    pub key: String,
    pub name: String,
    pub role: Role,
}

fn source_problem(error: SourceError) -> Problem {
    match error {
        SourceError::Exists(name) => {
            Problem::new(StatusCode::CONFLICT, "exists", format!("source `{name}` exists"))
        }
        SourceError::Invalid(error) => Problem::validation(&error.within("body")),
        other => {
            tracing::error!(error = %other, "Source registry failure");
            Problem::unavailable("source registry unavailable")
        }
    }
}

fn key_problem(error: KeyError) -> Problem {
    match error {
        KeyError::Exists(name) => {
            Problem::new(StatusCode::CONFLICT, "exists", format!("key `{name}` exists"))
        }
        KeyError::Unknown(name) => Problem::not_found(format!("no key named `{name}`")),
        KeyError::InvalidName(_) => Problem::invalid_field("name", error.to_string()),
        other => {
            tracing::error!(error = %other, "Key store failure");
            Problem::unavailable("key store unavailable")
        }
    }
}

/// List webhook sources (without secrets).
#[utoipa::path(get, path = "/api/v1/sources", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = [SourceInfo])))]
pub async fn list_sources(State(state): State<AppState>) -> Result<Json<Vec<SourceInfo>>, Problem> {
    let sources = state.sources.list().map_err(source_problem)?;
    Ok(Json(
        sources
            .into_iter()
            .map(|source| SourceInfo {
                path: format!("/api/v1/webhooks/{}", source.name),
                name: source.name,
                allow_unsigned: source.allow_unsigned,
                created_at: source.created_at,
            })
            .collect(),
    ))
}

/// Create a webhook source; the answer holds its secret.
#[utoipa::path(post, path = "/api/v1/sources", tag = "admin", security(("api_key" = [])),
    request_body = NewSource,
    responses(
        (status = 201, body = CreatedSource),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let new: NewSource = json_body(&headers, body)?;
    let record = state.sources.add(&new.name, new.allow_unsigned).map_err(|error| match error {
        SourceError::Invalid(_) => {
            let mut problem = Problem::invalid_field("name", error.to_string());
            problem.errors.truncate(1);
            problem
        }
        other => source_problem(other),
    })?;
    let secret = record.secrets.first().cloned().unwrap_or_default();
    Ok((StatusCode::CREATED, Json(CreatedSource { name: record.name, secret })).into_response())
}

/// List API keys (names and roles only).
#[utoipa::path(get, path = "/api/v1/keys", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = [KeyRecord])))]
pub async fn list_keys(State(state): State<AppState>) -> Result<Json<Vec<KeyRecord>>, Problem> {
    Ok(Json(state.keys.list().map_err(key_problem)?))
}

/// Create an API key; the answer holds it, once.
#[utoipa::path(post, path = "/api/v1/keys", tag = "admin", security(("api_key" = [])),
    request_body = NewKey,
    responses(
        (status = 201, body = CreatedKey),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let new: NewKey = json_body(&headers, body)?;
    let (key, record) = state.keys.create(&new.name, new.role).map_err(key_problem)?;
    let created = CreatedKey { key, name: record.name, role: record.role };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/api/v1/keys/{name}", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(name) = name.map_err(|rejection| {
        let mut problem = Problem::invalid_field("name", rejection.body_text());
        problem.errors.push(FieldError { field: "name".into(), message: "invalid".into() });
        problem.errors.truncate(1);
        problem
    })?;
    state.keys.revoke(&name).map_err(key_problem)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadModelStatus {
    pub name: String,
    pub checkpoint: u64,
    pub digest: String,
}

/// Each read model's checkpoint and digest: what `agentcrm replay` must reproduce.
#[utoipa::path(get, path = "/api/v1/read-models", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = [ReadModelStatus])))]
pub async fn read_models(
    State(state): State<AppState>,
) -> Result<Json<Vec<ReadModelStatus>>, Problem> {
    let mut models = Vec::new();
    for model in state.read_models.all() {
        models.push(ReadModelStatus {
            name: model.name().to_owned(),
            checkpoint: model.checkpoint(),
            digest: model.digest()?,
        });
    }
    Ok(Json(models))
}
