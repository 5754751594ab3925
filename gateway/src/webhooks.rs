//! Webhooks: verify, validate, hand to the intake, answer 202 only once the
//! raw submission is durable.
//!
//! Order of checks, each answered with a problem: body size (413), source
//! (404), signature (401), content type (415), JSON (400), the webhook contract
//! (400, [`bus_schema::webhook::parse_webhook`]). Nothing is written before all
//! of them passed. A repeated `webhook-id` gets the first `event_id` back.

use agent_kit::intake::intake_event_id;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bus_schema::{Actor, ActorKind, RawIntake};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::{FieldError, Problem, body_bytes, parse_json, require_json};
use crate::signature::SignedDelivery;
use crate::sources::DEFAULT_SOURCE;
use crate::state::AppState;

/// A webhook body, as the seed defined it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "event_type": "interaction",
    "data": {
        "interaction_id": "int_001",
        "customer_id": "cus_12345",
        "channel": "email",
        "content": "我对你们的新服务非常感兴趣!",
        "sentiment_score": 0.8
    }
}))]
pub struct WebhookBody {
    /// What happened: `interaction`, `interaction.<channel>`, an activity
    /// (`email_opened`, `link_clicked`, `replied`, `meeting_booked`, …),
    /// `ticket.opened`, `ticket.updated`. See docs/WEBHOOKS.md.
    #[serde(default)]
    pub event_type: Option<String>,
    /// `customer_id` or `email`, `channel`, `content`, `sentiment_score` in
    /// [-1, 1], `occurred_at` (RFC 3339), and the type's own fields.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Option<serde_json::Value>,
}

/// The answer to an accepted webhook.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookAccepted {
    /// Always `received`.
    pub status: String,
    /// The id the canonical event will carry; the same for every retry of one
    /// `webhook-id`.
    pub event_id: Uuid,
    /// True when this `webhook-id` was accepted before: nothing new was stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The seed's webhook: source `default`.
#[utoipa::path(
    post,
    path = "/crm/webhooks/interaction",
    tag = "webhooks",
    request_body = WebhookBody,
    params(
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks delivery id"),
        ("webhook-timestamp" = Option<String>, Header, description = "Unix seconds"),
        ("webhook-signature" = Option<String>, Header, description = "`v1,<base64>` signatures"),
    ),
    responses(
        (status = 202, description = "Durably accepted", body = WebhookAccepted),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong signature", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot keep it now; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn seed_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(&state, DEFAULT_SOURCE, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A webhook of a named source (`agentcrm sources add <name>`).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{source}",
    tag = "webhooks",
    request_body = WebhookBody,
    params(
        ("source" = String, Path, description = "The source's name"),
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks delivery id"),
        ("webhook-timestamp" = Option<String>, Header, description = "Unix seconds"),
        ("webhook-signature" = Option<String>, Header, description = "`v1,<base64>` signatures"),
    ),
    responses(
        (status = 202, description = "Durably accepted", body = WebhookAccepted),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot keep it now; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn source_webhook(
    State(state): State<AppState>,
    source: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let source = match source {
        Ok(Path(source)) => source,
        Err(rejection) => {
            return Problem::invalid_field("source", rejection.body_text()).into_response();
        }
    };
    receive(&state, &source, &headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

fn signature_problem(field: &str, message: String) -> Problem {
    let mut problem = Problem::unauthorized(format!("webhook signature refused: {message}"));
    problem.errors.push(FieldError { field: field.to_owned(), message });
    problem
}

async fn receive(
    state: &AppState,
    source_name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body_bytes(body)?;
    let Some(source) = state.sources.get(source_name).map_err(|error| {
        tracing::error!(error = %error, source = source_name, "Source unreadable");
        Problem::unavailable("source registry unavailable")
    })?
    else {
        let mut problem = Problem::not_found(format!("no webhook source named `{source_name}`"));
        problem.errors.push(FieldError { field: "source".into(), message: "unknown".into() });
        return Err(problem);
    };
    let delivery = SignedDelivery::from_headers(headers)
        .map_err(|error| signature_problem(error.field(), error.to_string()))?;
    let delivery_id = match &delivery {
        Some(delivery) => {
            delivery
                .verify(
                    &source.secrets,
                    &body,
                    Utc::now().timestamp(),
                    state.config.signature_tolerance_seconds,
                )
                .map_err(|error| signature_problem(error.field(), error.to_string()))?;
            Some(delivery.id.to_owned())
        }
        None if source.allow_unsigned => None,
        None => {
            return Err(signature_problem(
                "webhook-signature",
                "missing: sign with the source's whsec_ secret (Standard Webhooks)".into(),
            ));
        }
    };
    require_json(headers)?;
    let webhook: WebhookBody = parse_json(&body)?;
    let event_type =
        webhook.event_type.ok_or_else(|| Problem::invalid_field("event_type", "is required"))?;
    let data = webhook.data.unwrap_or(serde_json::Value::Null);
    bus_schema::webhook::parse_webhook(&event_type, &data)
        .map_err(|error| Problem::validation(&error))?;

    // The gateway's own record of deliveries, where the intake does not
    // keep one for good (JetStream's window is finite).
    let record_delivery = delivery_id.as_deref().filter(|_| !state.intake.remembers_deliveries());
    if let Some(delivery_id) = record_delivery
        && let Some(event_id) = state.deliveries.get(source_name, delivery_id)?
    {
        return Ok(accepted(event_id, true));
    }
    let event_id = intake_event_id(source_name, delivery_id.as_deref());
    let intake = RawIntake {
        event_id,
        source: source_name.to_owned(),
        delivery_id: delivery_id.clone(),
        received_at: Utc::now(),
        event_type,
        data_json: data.to_string(),
        actor: Actor::new(ActorKind::Integration, source_name),
    };
    let receipt = state.intake.accept(intake).await?;
    if let Some(delivery_id) = record_delivery
        && let Err(error) = state.deliveries.record(source_name, delivery_id, receipt.event_id)
    {
        // Accepted and durable already; a retry is still deduplicated by id.
        tracing::warn!(error = %error, "Failed to record a delivery id");
    }
    Ok(accepted(receipt.event_id, receipt.duplicate))
}

fn accepted(event_id: Uuid, duplicate: bool) -> Response {
    let body = WebhookAccepted { status: "received".into(), event_id, duplicate };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
