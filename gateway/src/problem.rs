//! Problem details (RFC 9457): every error the gateway answers, as
//! `application/problem+json` naming the field at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bus_schema::ValidationError;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the field (`data.channel`, `email`), or `body` for the
    /// body as a whole.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:agentcrm:problem:<slug>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For 412: the resource as it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub current: Option<serde_json::Value>,
    /// For 412: the fields changed since the version the client sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_fields: Option<Vec<String>>,
    #[serde(skip)]
    retry_after_seconds: Option<u64>,
    #[serde(skip)]
    etag: Option<String>,
    #[serde(skip)]
    authenticate: bool,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("urn:agentcrm:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            errors: Vec::new(),
            current: None,
            changed_fields: None,
            retry_after_seconds: None,
            etag: None,
            authenticate: false,
        }
    }

    /// 400 naming one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        let mut problem = Self::new(
            StatusCode::BAD_REQUEST,
            "validation",
            format!("invalid field `{field}`: {message}"),
        );
        problem.errors.push(FieldError { field, message });
        problem
    }

    pub fn validation(error: &ValidationError) -> Self {
        Self::invalid_field(error.field.clone(), error.kind.to_string())
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut problem = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        problem.authenticate = true;
        problem
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 503 with `Retry-After`: nothing was accepted, try again.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut problem = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        problem.retry_after_seconds = Some(1);
        problem
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn with_etag(mut self, etag: String) -> Self {
        self.etag = Some(etag);
        self
    }

    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(etag) = self.etag.and_then(|etag| HeaderValue::from_str(&etag).ok()) {
            headers.insert(header::ETAG, etag);
        }
        if self.authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<agent_kit::BusError> for Problem {
    fn from(error: agent_kit::BusError) -> Self {
        use agent_kit::BusError;
        match error {
            BusError::Invalid(error) => Self::validation(&error),
            BusError::Conflict { stream, .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("stream {stream} moved on; read it again"),
            ),
            BusError::Backlog(reason) => {
                tracing::warn!(reason = %reason, "Intake full");
                Self::unavailable(format!("{reason}; nothing was accepted, retry later"))
            }
            BusError::Unavailable(reason) | BusError::Connect { reason, .. } => {
                tracing::warn!(reason = %reason, "Bus unavailable");
                Self::unavailable("the event bus or the vault is unavailable; retry later")
            }
            BusError::Store(error) => {
                tracing::error!(error = %error, "Store failure");
                Self::unavailable("the event log is unavailable; nothing was written")
            }
            BusError::Other(reason) => {
                tracing::error!(reason = %reason, "Bus failure");
                Self::internal("the bus failed")
            }
        }
    }
}

impl From<event_store::StoreError> for Problem {
    fn from(error: event_store::StoreError) -> Self {
        tracing::error!(error = %error, "Local store failure");
        Self::unavailable("local storage is unavailable")
    }
}

impl From<event_store::projection::ProjectionError> for Problem {
    fn from(error: event_store::projection::ProjectionError) -> Self {
        tracing::error!(error = %error, "Read model failure");
        Self::unavailable("the read model is unavailable")
    }
}

/// Reads a JSON body into `T`, with the path of the first field at fault.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    // Tracking the path costs a wrapper around every value; only a body that
    // fails needs it, so it is read again for the answer.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // A syntax error has no meaningful field path: the body as a whole is at fault.
        let syntax = inner.is_syntax() || inner.is_eof();
        let field = if syntax || path == "." || path.is_empty() { "body".to_owned() } else { path };
        let message = if syntax { format!("malformed JSON: {inner}") } else { inner.to_string() };
        Problem::invalid_field(field, message)
    })?;
    deserializer
        .end()
        .map_err(|error| Problem::invalid_field("body", format!("malformed JSON: {error}")))?;
    Ok(value)
}

/// Checks that the request declares a JSON body (415 otherwise).
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), Problem> {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        let mut problem = Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("expected `Content-Type: application/json`, got `{content_type}`"),
        );
        problem.errors.push(FieldError {
            field: "Content-Type".into(),
            message: "must be application/json".into(),
        });
        Err(problem)
    }
}

/// The body of a JSON request, parsed: the body within the limit (413), a JSON
/// content type (415), then the fields (400 naming the one at fault).
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, Problem> {
    let body = body_bytes(body)?;
    require_json(headers)?;
    parse_json(&body)
}

/// The body as bytes, with the size limit turned into 413.
pub fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, Problem> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let mut problem =
                Problem::new(status, "payload-too-large", "the body exceeds the configured limit");
            problem.errors.push(FieldError { field: "body".into(), message: "too large".into() });
            problem
        } else {
            Problem::invalid_field("body", rejection.body_text())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        nested: Nested,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        score: f64,
    }

    #[test]
    fn parse_errors_name_the_field() {
        let problem =
            parse_json::<Sample>(br#"{"name": "x", "nested": {"score": "high"}}"#).unwrap_err();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.errors[0].field, "nested.score");

        let problem = parse_json::<Sample>(br#"{"name": "x""#).unwrap_err();
        assert_eq!(problem.errors[0].field, "body");
        assert!(problem.errors[0].message.starts_with("malformed JSON"), "{problem:?}");

        let problem = parse_json::<Sample>(br#"{"name": 1, "nested": {"score": 1}}"#).unwrap_err();
        assert_eq!(problem.errors[0].field, "name");
        let problem =
            parse_json::<Sample>(br#"{"name": "x", "nested": {"score": 1}} trailing"#).unwrap_err();
        assert_eq!(problem.errors[0].field, "body");
    }
}
