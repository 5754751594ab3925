//! Customers: commands become events appended with an expected revision;
//! queries read the customer 360 read model.
//!
//! Personal fields (name, email, phone) go through the vault before any event
//! is written, so the log and the read model hold tokens (`<PERSON_1>`); roles
//! allowed to see personal data get the originals with `?reveal=true`.
//!
//! Concurrency: a customer's `ETag` is its stream revision (the global
//! position of its last event). `PATCH` requires `If-Match`; the bus refuses
//! the append if the stream moved on, and the answer is 412 with the current
//! state and the fields changed since the client's version.

use std::collections::{BTreeMap, BTreeSet};

use agent_kit::BusError;
use agent_kit::vault::{LookupKind, ProfileFields};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bus_schema::{
    Channel, CustomerForgotten, CustomerProfileChanged, CustomerRegistered, EventEnvelope,
    EventPayload, ExpectedRevision, RecordedEvent, StreamId,
};
use chrono::{DateTime, Utc};
use event_store::customer360::{Customer360, InteractionView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Principal;
use crate::problem::{FieldError, Problem, body_bytes, json_body, parse_json, require_json};
use crate::state::AppState;

const PROFILE_FIELDS: [&str; 6] = ["name", "email", "phone", "company", "owner", "stage"];

/// A customer as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerView {
    pub customer_id: String,
    /// False while only interactions or activities are known.
    pub registered: bool,
    /// A token such as `<PERSON_1>`, or the name with `?reveal=true`.
    pub name: String,
    pub email: String,
    pub phone: String,
    pub company: String,
    pub owner: String,
    pub stage: String,
    /// The lead score, once a scoring agent records one in the read model.
    pub score: Option<f64>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The stream revision; also the `ETag`.
    pub revision: u64,
    pub interaction_count: u64,
    pub activity_counts: BTreeMap<String, u64>,
    pub last_activity_at: Option<DateTime<Utc>>,
    pub average_sentiment: Option<f64>,
    /// Whether personal fields are shown in the clear.
    pub revealed: bool,
}

/// One interaction of a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InteractionItem {
    pub position: u64,
    pub interaction_id: String,
    #[schema(value_type = String, example = "email")]
    pub channel: Channel,
    /// Masked text, or the original with `?reveal=true`.
    pub content: String,
    pub sentiment_score: Option<f64>,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InteractionList {
    pub customer_id: String,
    pub revision: u64,
    pub items: Vec<InteractionItem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivitySummary {
    pub customer_id: String,
    pub revision: u64,
    /// Activity kind → how many times it was logged.
    pub activity_counts: BTreeMap<String, u64>,
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// The customer 360 view: profile, interactions and activities.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Customer360View {
    pub customer: CustomerView,
    /// The latest interactions (the full list is `/interactions`).
    pub recent_interactions: Vec<InteractionItem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CustomerPage {
    pub items: Vec<CustomerView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A new customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ann Lee", "email": "ann@example.com", "company": "Acme", "owner": "alice", "stage": "lead"}))]
pub struct NewCustomer {
    /// Letters, digits, `_` and `-`; generated (`cus_…`) when absent.
    pub customer_id: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub owner: Option<String>,
    /// `lead` when absent.
    pub stage: Option<String>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub owner: Option<String>,
    pub stage: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevealQuery {
    /// Show personal fields in the clear (admin, sales, support only).
    pub reveal: Option<bool>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to the configured maximum (default 50).
    pub limit: Option<usize>,
    pub owner: Option<String>,
    pub stage: Option<String>,
    /// Lowest lead score; customers without a score are left out.
    pub score_min: Option<f64>,
    /// Highest lead score; customers without a score are left out.
    pub score_max: Option<f64>,
    /// Case-insensitive text in the company, or in the name for roles that
    /// may see personal data.
    pub q: Option<String>,
    /// Exact email (normalised), looked up in the vault.
    pub email: Option<String>,
    /// Exact phone (normalised), looked up in the vault.
    pub phone: Option<String>,
    /// Show personal fields in the clear (admin, sales, support only).
    pub reveal: Option<bool>,
}

fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

fn with_etag(mut response: Response, revision: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&etag(revision)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `"12"`, `W/"12"` or `12` → 12.
fn parse_if_match(headers: &HeaderMap) -> Result<u64, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "updates need `If-Match` with the customer's ETag (GET it first)",
        ));
    };
    let text = value.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.trim_matches('"').parse().map_err(|_| {
        Problem::invalid_field("If-Match", "must be an ETag from this API, such as \"42\"")
    })
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(id) =
        path.map_err(|rejection| Problem::invalid_field("customer_id", rejection.body_text()))?;
    bus_schema::stream::validate_id("customer_id", &id)
        .map_err(|error| Problem::validation(&error))?;
    Ok(id)
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    query.map(|Query(query)| query).map_err(|rejection| {
        let text = rejection.body_text();
        Problem::invalid_field("query", text)
    })
}

fn check_reveal(principal: &Principal, reveal: Option<bool>) -> Result<bool, Problem> {
    let reveal = reveal.unwrap_or(false);
    if reveal && !principal.role.may_reveal() {
        return Err(Problem::forbidden(format!(
            "role `{}` may not see personal data",
            principal.role.as_str()
        )));
    }
    Ok(reveal)
}

/// Checks a text field's length; names the field.
fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), Problem> {
    if required && value.trim().is_empty() {
        return Err(Problem::invalid_field(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(Problem::invalid_field(field, format!("longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(Problem::invalid_field(field, "must not hold control characters"));
    }
    Ok(())
}

fn check_email(field: &str, email: &str) -> Result<(), Problem> {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid { Ok(()) } else { Err(Problem::invalid_field(field, "not an email address")) }
}

fn check_phone(field: &str, phone: &str) -> Result<(), Problem> {
    let phone = phone.trim();
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone.chars().all(|c| c.is_ascii_digit() || "+-() .".contains(c));
    if allowed && (5..=20).contains(&digits) {
        Ok(())
    } else {
        Err(Problem::invalid_field(
            field,
            "not a phone number (5 to 20 digits, + - ( ) . and spaces)",
        ))
    }
}

fn check_profile(patch: &CustomerPatch) -> Result<(), Problem> {
    if let Some(name) = &patch.name {
        check_text("name", name, 200, true)?;
    }
    if let Some(email) = &patch.email {
        check_email("email", email)?;
    }
    if let Some(phone) = &patch.phone {
        check_phone("phone", phone)?;
    }
    for (field, value, max) in [
        ("company", &patch.company, 200),
        ("owner", &patch.owner, 128),
        ("stage", &patch.stage, 64),
    ] {
        if let Some(value) = value {
            check_text(field, value, max, false)?;
        }
    }
    Ok(())
}

/// The lead score, read from the row's `score` field where a scoring agent
/// has added one to the read model.
fn score_of(row: &Customer360) -> Option<f64> {
    serde_json::to_value(row).ok()?.get("score")?.as_f64()
}

async fn view(state: &AppState, row: &Customer360, reveal: bool) -> Result<CustomerView, Problem> {
    let mut view = CustomerView {
        customer_id: row.customer_id.clone(),
        registered: row.registered,
        name: row.name.clone(),
        email: row.email.clone(),
        phone: row.phone.clone(),
        company: row.company.clone(),
        owner: row.owner.clone(),
        stage: row.stage.clone(),
        score: score_of(row),
        created_at: row.created_at,
        updated_at: row.updated_at,
        revision: row.revision,
        interaction_count: row.interaction_count,
        activity_counts: row.activity_counts.clone(),
        last_activity_at: row.last_activity_at,
        average_sentiment: row.average_sentiment,
        revealed: reveal,
    };
    if reveal {
        for field in [&mut view.name, &mut view.email, &mut view.phone] {
            if !field.is_empty() {
                *field = state.vault.reveal(&row.customer_id, field).await?;
            }
        }
    }
    Ok(view)
}

async fn reveal_interaction(
    state: &AppState,
    customer_id: &str,
    interaction: &InteractionView,
    reveal: bool,
) -> Result<InteractionItem, Problem> {
    let content = if reveal {
        state.vault.reveal(customer_id, &interaction.content).await?
    } else {
        interaction.content.clone()
    };
    Ok(InteractionItem {
        position: interaction.position,
        interaction_id: interaction.interaction_id.clone(),
        channel: interaction.channel,
        content,
        sentiment_score: interaction.sentiment_score,
        occurred_at: interaction.occurred_at,
        source: interaction.source.clone(),
    })
}

/// The recent interactions the read model keeps inline.
async fn recent_interactions(
    state: &AppState,
    row: &Customer360,
    reveal: bool,
) -> Result<Vec<InteractionItem>, Problem> {
    let mut items = Vec::with_capacity(row.recent_interactions.len());
    for interaction in &row.recent_interactions {
        items.push(reveal_interaction(state, &row.customer_id, interaction, reveal).await?);
    }
    Ok(items)
}

/// Waits until the read model shows `position` (read-your-writes), up to the
/// configured time.
async fn wait_for_model(state: &AppState, position: u64) -> bool {
    let wait = state.read_models.customer360.wait_for(position);
    tokio::time::timeout(state.config.read_your_writes_timeout(), wait).await.is_ok()
}

fn load(state: &AppState, customer_id: &str) -> Result<Customer360, Problem> {
    state
        .read_models
        .customer360
        .get(customer_id)?
        .ok_or_else(|| Problem::not_found(format!("no customer `{customer_id}`")))
}

fn stream_of(customer_id: &str) -> Result<StreamId, Problem> {
    StreamId::customer(customer_id).map_err(|error| Problem::validation(&error))
}

/// Create a customer.
#[utoipa::path(
    post, path = "/api/v1/customers", tag = "customers",
    request_body = NewCustomer,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created; `ETag` is its revision", body = CustomerView),
        (status = 400, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The customer exists", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Log unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_customer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let new: NewCustomer = json_body(&headers, body)?;
    let customer_id = match &new.customer_id {
        Some(id) => {
            bus_schema::stream::validate_id("customer_id", id)
                .map_err(|error| Problem::validation(&error))?;
            id.clone()
        }
        None => format!("cus_{}", Uuid::now_v7().simple()),
    };
    let profile = CustomerPatch {
        name: Some(new.name.trim().to_owned()),
        email: new.email.clone(),
        phone: new.phone.clone(),
        company: new.company.clone(),
        owner: new.owner.clone(),
        stage: new.stage.clone(),
    };
    check_profile(&profile)?;
    let (row, revision) = register(&state, &principal, &customer_id, profile).await?;
    let location = format!("/api/v1/customers/{customer_id}");
    let mut response =
        (StatusCode::CREATED, Json(view(&state, &row, false).await?)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(with_etag(response, revision))
}

/// Appends `CustomerRegistered` (tokenised) unless the customer is registered;
/// returns the row once the read model shows it, and the new revision.
pub async fn register(
    state: &AppState,
    principal: &Principal,
    customer_id: &str,
    profile: CustomerPatch,
) -> Result<(Customer360, u64), Problem> {
    let stream = stream_of(customer_id)?;
    let revision = state.bus.stream_revision(&stream).await?;
    if revision > 0 {
        wait_for_model(state, revision).await;
        if state.read_models.customer360.get(customer_id)?.is_some_and(|row| row.registered) {
            return Err(exists(customer_id));
        }
    }
    let tokens = tokenize(state, customer_id, &profile).await?;
    let payload = EventPayload::CustomerRegistered(CustomerRegistered {
        customer_id: customer_id.to_owned(),
        name: tokens.name.unwrap_or_default(),
        email: tokens.email.unwrap_or_default(),
        phone: tokens.phone.unwrap_or_default(),
        company: profile.company.unwrap_or_default(),
        owner: profile.owner.unwrap_or_default(),
        stage: profile.stage.unwrap_or_default(),
    });
    let event = EventEnvelope::new(stream.clone(), principal.actor(), payload);
    let outcome = match state
        .bus
        .append(&stream, ExpectedRevision::from_revision(revision), vec![event])
        .await
    {
        Ok(outcome) => outcome,
        Err(BusError::Conflict { .. }) => return Err(exists(customer_id)),
        Err(error) => return Err(error.into()),
    };
    let revision = outcome.revision();
    wait_for_model(state, revision).await;
    Ok((load(state, customer_id)?, revision))
}

fn exists(customer_id: &str) -> Problem {
    let mut problem = Problem::new(
        StatusCode::CONFLICT,
        "exists",
        format!("customer `{customer_id}` exists; update it with PATCH and If-Match"),
    );
    problem.errors.push(FieldError { field: "customer_id".into(), message: "exists".into() });
    problem
}

async fn tokenize(
    state: &AppState,
    customer_id: &str,
    profile: &CustomerPatch,
) -> Result<ProfileFields, Problem> {
    let personal = ProfileFields {
        name: profile.name.clone(),
        email: profile.email.clone(),
        phone: profile.phone.clone(),
    };
    if personal == ProfileFields::default() {
        return Ok(personal);
    }
    Ok(state.vault.tokenize_profile(customer_id, personal).await?)
}

/// Update a customer; `If-Match` is required.
#[utoipa::path(
    patch, path = "/api/v1/customers/{customer_id}", tag = "customers",
    request_body = CustomerPatch,
    params(
        ("customer_id" = String, Path),
        ("If-Match" = String, Header, description = "The ETag the change is based on"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Updated; `ETag` is the new revision", body = CustomerView),
        (status = 400, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale `If-Match`: `current` and `changed_fields` say what changed", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`If-Match` missing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Log unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_customer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let customer_id = path_id(path)?;
    let body = body_bytes(body)?;
    let expected = parse_if_match(&headers)?;
    require_json(&headers)?;
    let patch: CustomerPatch = parse_json(&body)?;
    check_profile(&patch)?;
    if patch.name.is_none()
        && patch.email.is_none()
        && patch.phone.is_none()
        && patch.company.is_none()
        && patch.owner.is_none()
        && patch.stage.is_none()
    {
        return Err(Problem::invalid_field("body", "names no field to change"));
    }
    let row = load(&state, &customer_id)?;
    if !row.registered {
        return Err(Problem::not_found(format!("no registered customer `{customer_id}`")));
    }
    let (_, revision) = change(&state, &principal, &customer_id, expected, patch).await?;
    let row = load(&state, &customer_id)?;
    let response = Json(view(&state, &row, false).await?).into_response();
    Ok(with_etag(response, revision))
}

/// Appends `CustomerProfileChanged` at `expected`; a moved stream is 412 with
/// the current state and what changed.
pub async fn change(
    state: &AppState,
    principal: &Principal,
    customer_id: &str,
    expected: u64,
    patch: CustomerPatch,
) -> Result<(bool, u64), Problem> {
    let stream = stream_of(customer_id)?;
    let tokens = tokenize(state, customer_id, &patch).await?;
    let payload = EventPayload::CustomerProfileChanged(CustomerProfileChanged {
        customer_id: customer_id.to_owned(),
        name: tokens.name,
        email: tokens.email,
        phone: tokens.phone,
        company: patch.company,
        owner: patch.owner,
        stage: patch.stage,
    });
    let event = EventEnvelope::new(stream.clone(), principal.actor(), payload);
    match state.bus.append(&stream, ExpectedRevision::from_revision(expected), vec![event]).await {
        Ok(outcome) => {
            let revision = outcome.revision();
            wait_for_model(state, revision).await;
            Ok((true, revision))
        }
        Err(BusError::Conflict { actual, .. }) => {
            Err(stale(state, customer_id, &stream, expected, actual).await)
        }
        Err(error) => Err(error.into()),
    }
}

async fn stale(
    state: &AppState,
    customer_id: &str,
    stream: &StreamId,
    expected: u64,
    actual: u64,
) -> Problem {
    let events = match state.bus.read_stream(stream).await {
        Ok(events) => events,
        Err(error) => return error.into(),
    };
    let actual = events.last().map_or(actual, |event| event.position);
    wait_for_model(state, actual).await;
    let current = match state.read_models.customer360.get(customer_id) {
        Ok(Some(row)) => view(state, &row, false).await.ok(),
        _ => None,
    };
    let mut problem = Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "stale",
        format!(
            "the customer is at revision {actual}, not {expected}; merge and retry with the new ETag"
        ),
    );
    problem.current = current.and_then(|view| serde_json::to_value(view).ok());
    problem.changed_fields = Some(changed_fields(&events, expected));
    problem.with_etag(etag(actual))
}

/// The fields events after `after` changed.
pub fn changed_fields(events: &[RecordedEvent], after: u64) -> Vec<String> {
    let mut fields = BTreeSet::new();
    for event in events.iter().filter(|event| event.position > after) {
        match &event.envelope.payload {
            EventPayload::CustomerRegistered(_) => {
                fields.extend(PROFILE_FIELDS);
            }
            EventPayload::CustomerProfileChanged(changed) => {
                let options = [
                    &changed.name,
                    &changed.email,
                    &changed.phone,
                    &changed.company,
                    &changed.owner,
                    &changed.stage,
                ];
                for (name, value) in PROFILE_FIELDS.iter().zip(options) {
                    if value.is_some() {
                        fields.insert(*name);
                    }
                }
            }
            EventPayload::InteractionRecorded(_) => {
                fields.insert("interactions");
            }
            EventPayload::ActivityLogged(_) => {
                fields.insert("activity_counts");
            }
            // Forgetting a customer clears the personal fields. Matched by
            // name so this fold also reads logs written before that type.
            other if other.event_type() == "CustomerForgotten" => {
                fields.extend(["name", "email", "phone"]);
            }
            _ => {}
        }
    }
    fields.into_iter().map(str::to_owned).collect()
}

/// One customer.
#[utoipa::path(
    get, path = "/api/v1/customers/{customer_id}", tag = "customers",
    params(("customer_id" = String, Path), RevealQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The customer; `ETag` is its revision", body = CustomerView),
        (status = 403, description = "Role may not reveal", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_customer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    reveal: Result<Query<RevealQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let customer_id = path_id(path)?;
    let reveal = check_reveal(&principal, query(reveal)?.reveal)?;
    let row = load(&state, &customer_id)?;
    let revision = row.revision;
    Ok(with_etag(Json(view(&state, &row, reveal).await?).into_response(), revision))
}

/// All of a customer's interactions, oldest first.
#[utoipa::path(
    get, path = "/api/v1/customers/{customer_id}/interactions", tag = "customers",
    params(("customer_id" = String, Path), RevealQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Interactions", body = InteractionList),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn customer_interactions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    reveal: Result<Query<RevealQuery>, QueryRejection>,
) -> Result<Json<InteractionList>, Problem> {
    let customer_id = path_id(path)?;
    let reveal = check_reveal(&principal, query(reveal)?.reveal)?;
    let row = load(&state, &customer_id)?;
    // The read model keeps only the latest interactions; the stream has them all.
    let events = state.bus.read_stream(&stream_of(&customer_id)?).await?;
    let mut items = Vec::new();
    for event in &events {
        if let EventPayload::InteractionRecorded(interaction) = &event.envelope.payload {
            let interaction = InteractionView {
                position: event.position,
                interaction_id: interaction.interaction_id.clone(),
                channel: interaction.channel,
                content: interaction.content.clone(),
                sentiment_score: interaction.sentiment_score,
                occurred_at: interaction.occurred_at,
                source: interaction.source.clone(),
            };
            items.push(reveal_interaction(&state, &customer_id, &interaction, reveal).await?);
        }
    }
    let revision = events.last().map_or(row.revision, |event| event.position);
    Ok(Json(InteractionList { customer_id, revision, items }))
}

/// A customer's activity counts.
#[utoipa::path(
    get, path = "/api/v1/customers/{customer_id}/activities", tag = "customers",
    params(("customer_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Activity counts", body = ActivitySummary),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn customer_activities(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ActivitySummary>, Problem> {
    let customer_id = path_id(path)?;
    let row = load(&state, &customer_id)?;
    Ok(Json(ActivitySummary {
        customer_id,
        revision: row.revision,
        activity_counts: row.activity_counts,
        last_activity_at: row.last_activity_at,
    }))
}

/// The customer 360 view.
#[utoipa::path(
    get, path = "/api/v1/customers/{customer_id}/360", tag = "customers",
    params(("customer_id" = String, Path), RevealQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Profile, interactions and activities", body = Customer360View),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn customer_360(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    reveal: Result<Query<RevealQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let customer_id = path_id(path)?;
    let reveal = check_reveal(&principal, query(reveal)?.reveal)?;
    let row = load(&state, &customer_id)?;
    let body = Customer360View {
        customer: view(&state, &row, reveal).await?,
        recent_interactions: recent_interactions(&state, &row, reveal).await?,
    };
    Ok(with_etag(Json(body).into_response(), row.revision))
}

/// List customers, in id order, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/customers", tag = "customers",
    params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "One page", body = CustomerPage),
        (status = 400, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_customers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<CustomerPage>, Problem> {
    let params = query(params)?;
    let reveal = check_reveal(&principal, params.reveal)?;
    let limit = params.limit.unwrap_or(50);
    if limit == 0 || limit > state.config.max_page_size {
        return Err(Problem::invalid_field(
            "limit",
            format!("must be 1 to {}", state.config.max_page_size),
        ));
    }
    for (field, value) in [("score_min", params.score_min), ("score_max", params.score_max)] {
        if value.is_some_and(|value| !value.is_finite()) {
            return Err(Problem::invalid_field(field, "must be a finite number"));
        }
    }
    if let Some(cursor) = &params.cursor {
        bus_schema::stream::validate_id("cursor", cursor)
            .map_err(|error| Problem::validation(&error))?;
    }
    // Exact look-ups by personal data go through the vault's keyed index.
    let mut only: Option<Option<String>> = None;
    if let Some(email) = &params.email {
        only = Some(state.vault.lookup(LookupKind::Email, email).await?);
    }
    if let Some(phone) = &params.phone {
        let found = state.vault.lookup(LookupKind::Phone, phone).await?;
        only = Some(match only {
            Some(by_email) if by_email != found => None,
            _ => found,
        });
    }
    let needle = params.q.as_deref().map(str::to_lowercase).filter(|needle| !needle.is_empty());
    let mut items = Vec::new();
    let mut next_cursor = None;
    for entry in state.read_models.customer360.rows_after(params.cursor.as_deref()) {
        let (key, row) = entry?;
        if let Some(only) = &only
            && only.as_deref() != Some(key.as_str())
        {
            continue;
        }
        if params.owner.as_ref().is_some_and(|owner| &row.owner != owner)
            || params.stage.as_ref().is_some_and(|stage| &row.stage != stage)
        {
            continue;
        }
        if params.score_min.is_some() || params.score_max.is_some() {
            let Some(score) = score_of(&row) else { continue };
            if params.score_min.is_some_and(|min| score < min)
                || params.score_max.is_some_and(|max| score > max)
            {
                continue;
            }
        }
        if let Some(needle) = &needle {
            let mut hit = row.company.to_lowercase().contains(needle);
            if !hit && principal.role.may_reveal() && !row.name.is_empty() {
                hit = state.vault.reveal(&key, &row.name).await?.to_lowercase().contains(needle);
            }
            if !hit {
                continue;
            }
        }
        if items.len() == limit {
            next_cursor = items.last().map(|item: &CustomerView| item.customer_id.clone());
            break;
        }
        items.push(view(&state, &row, reveal).await?);
    }
    Ok(Json(CustomerPage { items, next_cursor }))
}

/// Why a customer is forgotten; the body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "erasure request, ticket T-42"}))]
pub struct ForgetRequest {
    /// For the audit trail; masked before it is stored.
    pub reason: Option<String>,
}

/// What forgetting did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForgetOutcome {
    pub customer_id: String,
    /// True when the customer was forgotten before: nothing new was recorded.
    pub already_forgotten: bool,
    /// Whether the vault destroyed anything now (a key, look-up entries).
    pub key_destroyed: bool,
    /// The stream revision after `CustomerForgotten`; also the `ETag`.
    pub revision: u64,
}

/// How often forgetting re-reads a stream that moved under it.
const FORGET_ATTEMPTS: usize = 5;

/// The reason as it may be stored: free text goes through the masking
/// detector like everything else that reaches the log.
fn masked_reason(reason: &str) -> Result<String, Problem> {
    static DETECTOR: std::sync::OnceLock<Option<masking::Detector>> = std::sync::OnceLock::new();
    let detector = DETECTOR.get_or_init(|| {
        masking::Detector::new(&masking::DetectorConfig::default())
            .inspect_err(|error| tracing::error!(error = %error, "Cannot build the detector"))
            .ok()
    });
    let Some(detector) = detector else {
        return Err(Problem::internal("the reason cannot be masked"));
    };
    let no_names: &[&str] = &[];
    Ok(masking::mask(detector, reason, no_names, &mut masking::TokenTable::new()).text)
}

/// Forget a customer (crypto-shredding).
///
/// The vault destroys the customer's key, sealed tokens and look-up entries;
/// then `CustomerForgotten` is appended at the stream's revision. Every token
/// of the customer in the log and the read models then restores to nothing.
/// Idempotent: a second call records nothing and says `already_forgotten`.
#[utoipa::path(
    post, path = "/api/v1/customers/{customer_id}/forget", tag = "customers",
    request_body(content = Option<ForgetRequest>, description = "Optional"),
    params(("customer_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Forgotten (now or before); `ETag` is the revision", body = ForgetOutcome),
        (status = 400, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Vault or log unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn forget_customer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let customer_id = path_id(path)?;
    let body = body_bytes(body)?;
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        ForgetRequest::default()
    } else {
        require_json(&headers)?;
        parse_json::<ForgetRequest>(&body)?
    };
    let reason = request.reason.unwrap_or_default();
    check_text("reason", &reason, 500, false)?;
    let reason = masked_reason(reason.trim())?;
    let stream = stream_of(&customer_id)?;
    for _ in 0..FORGET_ATTEMPTS {
        let events = state.bus.read_stream(&stream).await?;
        let Some(revision) = events.last().map(|event| event.position) else {
            return Err(Problem::not_found(format!("no customer `{customer_id}`")));
        };
        let already = events
            .iter()
            .any(|event| matches!(event.envelope.payload, EventPayload::CustomerForgotten(_)));
        // Shred first: once the event is in the log, the key must be gone.
        // Asking again when already forgotten is harmless and repairs a vault
        // restored from a backup.
        let key_destroyed = state.vault.forget(&customer_id).await?;
        if already {
            let outcome =
                ForgetOutcome { customer_id, already_forgotten: true, key_destroyed, revision };
            return Ok(with_etag(Json(outcome).into_response(), revision));
        }
        let payload = EventPayload::CustomerForgotten(CustomerForgotten {
            customer_id: customer_id.clone(),
            reason: reason.clone(),
        });
        let mut event = EventEnvelope::new(stream.clone(), principal.actor(), payload);
        event.event_id = CustomerForgotten::event_id(&customer_id);
        event.correlation_id = event.event_id;
        match state.bus.append(&stream, ExpectedRevision::Exact(revision), vec![event]).await {
            Ok(outcome) => {
                let revision = outcome.revision();
                wait_for_model(&state, revision).await;
                let outcome = ForgetOutcome {
                    customer_id,
                    already_forgotten: outcome.duplicate,
                    key_destroyed,
                    revision,
                };
                return Ok(with_etag(Json(outcome).into_response(), revision));
            }
            // An interaction or a concurrent forget landed first: read again.
            Err(BusError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Problem::unavailable("the customer's stream keeps moving; retry"))
}
