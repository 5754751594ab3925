//! The webhook contract: what `{"event_type": ..., "data": {...}}` means.
//!
//! The gateway calls [`parse_webhook`] to refuse a bad body before accepting it;
//! the masking agent calls it again on the masked `data` and turns the result into
//! a canonical payload with [`WebhookEvent::to_payload`]. One pure function, so
//! both sides agree on every field. The mapping is documented in
//! `docs/WEBHOOKS.md`.
//!
//! | `event_type` (case-insensitive, `-` = `_`) | canonical event |
//! | --- | --- |
//! | `interaction`, `interaction.recorded`, `interaction_recorded`, `interactionrecorded` | `InteractionRecorded` on `data.channel` |
//! | `interaction.<channel>` (`interaction.email`, …) | `InteractionRecorded` on that channel |
//! | `email_opened`, `link_clicked`, `replied`, `meeting_booked`, `form_submitted`, `page_viewed`, `demo_requested`, `unsubscribed`, also dotted (`email.opened`) or prefixed (`activity.replied`) | `ActivityLogged` of that kind |
//! | `activity`, `activity.logged`, `activity_logged` | `ActivityLogged` of `data.kind` |
//! | `ticket.opened`, `ticket.created`, `ticket.updated` (and `_` forms) | `InteractionRecorded` with a ticket marker, on `data.channel` (default `web`) |

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{ValidationError, ValidationErrorKind};
use crate::events::{
    ActivityKind, ActivityLogged, Channel, EventPayload, InteractionRecorded, validate_sentiment,
};
use crate::stream::validate_id;

/// The event types this contract accepts, as listed in problem answers.
pub const KNOWN_EVENT_TYPES: &str = "interaction, interaction.<channel>, activity, \
    email_opened, link_clicked, replied, meeting_booked, form_submitted, page_viewed, \
    demo_requested, unsubscribed, ticket.opened, ticket.updated";

/// Longest `content` accepted, in bytes (the body limit caps it too).
pub const MAX_CONTENT_LEN: usize = 256 * 1024;

/// Who the webhook is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerRef {
    /// A customer id known to the CRM (`data.customer_id`).
    Id(String),
    /// An email address, trimmed and lower-cased (`data.email`); the masking
    /// agent resolves it to a customer through the vault.
    Email(String),
}

/// What happened to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketChange {
    Opened,
    Updated,
}

impl TicketChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Updated => "updated",
        }
    }
}

/// A ticket event, recorded as an interaction carrying this marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketMarker {
    pub change: TicketChange,
    /// The sender's ticket id (`data.ticket_id`), if given.
    pub ticket_id: Option<String>,
    /// The ticket's status as the sender names it (`data.status`), if given.
    pub status: Option<String>,
}

/// Which canonical event a webhook becomes, with its typed fields.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookKind {
    Interaction {
        channel: Channel,
        /// Raw text until the masking agent has replaced personal data.
        content: String,
        sentiment_score: Option<f64>,
        ticket: Option<TicketMarker>,
    },
    Activity {
        kind: ActivityKind,
        /// Raw text (`data.detail`, else `data.content`), masked like content.
        detail: String,
    },
}

/// A validated webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub customer: CustomerRef,
    pub kind: WebhookKind,
    /// `data.occurred_at` (or the seed's `data.timestamp`), RFC 3339.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The sender's own id of the interaction or activity
    /// (`data.interaction_id`, `data.activity_id`).
    pub external_id: Option<String>,
}

impl WebhookEvent {
    /// The canonical event this webhook becomes, once the customer is resolved
    /// and the text masked. `fallback_id` names the interaction or activity when
    /// the sender gave no id (the intake event id, so a repeat maps to the same
    /// one); `received_at` stands in for a missing `occurred_at`.
    pub fn to_payload(
        &self,
        customer_id: &str,
        fallback_id: &str,
        source: &str,
        received_at: DateTime<Utc>,
    ) -> EventPayload {
        let id = self.external_id.clone().unwrap_or_else(|| fallback_id.to_owned());
        let occurred_at = self.occurred_at.unwrap_or(received_at);
        match &self.kind {
            WebhookKind::Interaction { channel, content, sentiment_score, ticket } => {
                let content = match ticket {
                    Some(ticket) => ticket_content(ticket, content),
                    None => content.clone(),
                };
                EventPayload::InteractionRecorded(InteractionRecorded {
                    interaction_id: id,
                    customer_id: customer_id.to_owned(),
                    channel: *channel,
                    content,
                    sentiment_score: *sentiment_score,
                    occurred_at,
                    source: source.to_owned(),
                })
            }
            WebhookKind::Activity { kind, detail } => {
                EventPayload::ActivityLogged(ActivityLogged {
                    activity_id: id,
                    customer_id: customer_id.to_owned(),
                    kind: *kind,
                    detail: detail.clone(),
                    occurred_at,
                })
            }
        }
    }
}

/// The ticket marker leads the content: `[ticket <id> opened, status open] text`.
fn ticket_content(ticket: &TicketMarker, content: &str) -> String {
    let mut marker = String::from("[ticket");
    if let Some(id) = &ticket.ticket_id {
        marker.push(' ');
        marker.push_str(id);
    }
    marker.push(' ');
    marker.push_str(ticket.change.as_str());
    if let Some(status) = &ticket.status {
        marker.push_str(", status ");
        marker.push_str(status);
    }
    marker.push(']');
    if content.is_empty() { marker } else { format!("{marker} {content}") }
}

/// What an `event_type` names, before `data` is read.
enum TypeClass {
    /// Interaction; the channel comes from `data.channel` unless the type names it.
    Interaction(Option<Channel>),
    /// Activity; the kind comes from `data.kind` unless the type names it.
    Activity(Option<ActivityKind>),
    Ticket(TicketChange),
}

fn classify(event_type: &str) -> Result<TypeClass, ValidationError> {
    let normalised = event_type.trim().to_ascii_lowercase().replace('-', "_");
    if normalised.is_empty() {
        return Err(ValidationError::empty("event_type"));
    }
    let class = match normalised.as_str() {
        "interaction" | "interaction.recorded" | "interaction_recorded" | "interactionrecorded" => {
            Some(TypeClass::Interaction(None))
        }
        "activity" | "activity.logged" | "activity_logged" | "activitylogged" => {
            Some(TypeClass::Activity(None))
        }
        "ticket.opened" | "ticket_opened" | "ticket.created" | "ticket_created" => {
            Some(TypeClass::Ticket(TicketChange::Opened))
        }
        "ticket.updated" | "ticket_updated" => Some(TypeClass::Ticket(TicketChange::Updated)),
        other => {
            if let Some(channel) = other.strip_prefix("interaction.") {
                Some(TypeClass::Interaction(Some(Channel::parse("event_type", channel)?)))
            } else {
                let activity = other.strip_prefix("activity.").unwrap_or(other).replace('.', "_");
                ActivityKind::ALL
                    .into_iter()
                    .find(|kind| kind.as_str() == activity)
                    .map(|kind| TypeClass::Activity(Some(kind)))
            }
        }
    };
    class.ok_or_else(|| {
        ValidationError::new(
            "event_type",
            ValidationErrorKind::UnknownVariant {
                value: event_type.to_owned(),
                expected: KNOWN_EVENT_TYPES,
            },
        )
    })
}

/// Checks a webhook body and says which canonical event it becomes. Field
/// names in errors are absolute (`event_type`, `data.channel`,
/// `data.sentiment_score`).
pub fn parse_webhook(event_type: &str, data: &Value) -> Result<WebhookEvent, ValidationError> {
    let class = classify(event_type)?;
    let data = match data {
        Value::Object(map) if !map.is_empty() => map,
        Value::Object(_) | Value::Null => return Err(ValidationError::empty("data")),
        _ => return Err(ValidationError::format("data", "must be a JSON object")),
    };
    let customer = customer_ref(data)?;
    let occurred_at = match optional_str(data, "occurred_at")? {
        Some(text) => Some(parse_time("data.occurred_at", text)?),
        None => match optional_str(data, "timestamp")? {
            Some(text) => Some(parse_time("data.timestamp", text)?),
            None => None,
        },
    };
    let kind = match class {
        TypeClass::Interaction(named) => {
            let channel = match (named, optional_str(data, "channel")?) {
                (Some(named), Some(given)) => {
                    let given = Channel::parse("data.channel", given)?;
                    if given != named {
                        return Err(ValidationError::format(
                            "data.channel",
                            format!("`{}` contradicts event_type `{event_type}`", given.as_str()),
                        ));
                    }
                    named
                }
                (Some(named), None) => named,
                (None, Some(given)) => Channel::parse("data.channel", given)?,
                (None, None) => return Err(ValidationError::missing("data.channel")),
            };
            let content = optional_str(data, "content")?
                .ok_or_else(|| ValidationError::missing("data.content"))?;
            check_length("data.content", content)?;
            WebhookKind::Interaction {
                channel,
                content: content.to_owned(),
                sentiment_score: sentiment(data)?,
                ticket: None,
            }
        }
        TypeClass::Ticket(change) => {
            let channel = match optional_str(data, "channel")? {
                Some(given) => Channel::parse("data.channel", given)?,
                None => Channel::Web,
            };
            let content = optional_str(data, "content")?.unwrap_or_default();
            check_length("data.content", content)?;
            WebhookKind::Interaction {
                channel,
                content: content.to_owned(),
                sentiment_score: sentiment(data)?,
                ticket: Some(TicketMarker {
                    change,
                    ticket_id: optional_str(data, "ticket_id")?.map(str::to_owned),
                    status: optional_str(data, "status")?.map(str::to_owned),
                }),
            }
        }
        TypeClass::Activity(named) => {
            let kind = match named {
                Some(kind) => kind,
                None => {
                    let given = optional_str(data, "kind")?
                        .ok_or_else(|| ValidationError::missing("data.kind"))?;
                    ActivityKind::parse("data.kind", &given.to_ascii_lowercase())?
                }
            };
            let detail = match optional_str(data, "detail")? {
                Some(detail) => detail,
                None => optional_str(data, "content")?.unwrap_or_default(),
            };
            check_length("data.detail", detail)?;
            WebhookKind::Activity { kind, detail: detail.to_owned() }
        }
    };
    let external_id = match &kind {
        WebhookKind::Activity { .. } => optional_str(data, "activity_id")?,
        WebhookKind::Interaction { .. } => optional_str(data, "interaction_id")?,
    };
    let external_id = match external_id {
        Some(id) if id.trim().is_empty() => {
            let field = match &kind {
                WebhookKind::Activity { .. } => "data.activity_id",
                WebhookKind::Interaction { .. } => "data.interaction_id",
            };
            return Err(ValidationError::empty(field));
        }
        other => other.map(str::to_owned),
    };
    Ok(WebhookEvent { customer, kind, occurred_at, external_id })
}

fn customer_ref(data: &Map<String, Value>) -> Result<CustomerRef, ValidationError> {
    if let Some(id) = optional_str(data, "customer_id")? {
        validate_id("data.customer_id", id)?;
        return Ok(CustomerRef::Id(id.to_owned()));
    }
    if let Some(email) = optional_str(data, "email")? {
        let email = normalise_email(email);
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
            })
            && !email.chars().any(char::is_whitespace);
        if !valid {
            return Err(ValidationError::format("data.email", "not an email address"));
        }
        return Ok(CustomerRef::Email(email));
    }
    Err(ValidationError::format("data.customer_id", "either `customer_id` or `email` is required"))
}

/// An email address as the CRM compares it: trimmed, lower-case.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A string field; `null` counts as absent, any other type is an error.
fn optional_str<'a>(
    data: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ValidationError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(ValidationError::format(
            format!("data.{name}"),
            format!("must be a string, not {}", type_name(other)),
        )),
    }
}

fn sentiment(data: &Map<String, Value>) -> Result<Option<f64>, ValidationError> {
    let score = match data.get("sentiment_score") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => number.as_f64(),
        Some(other) => {
            return Err(ValidationError::format(
                "data.sentiment_score",
                format!("must be a number, not {}", type_name(other)),
            ));
        }
    };
    validate_sentiment("data.sentiment_score", score)?;
    Ok(score)
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ValidationError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| ValidationError::format(field, format!("not an RFC 3339 time: {error}")))
}

fn check_length(field: &str, text: &str) -> Result<(), ValidationError> {
    if text.len() > MAX_CONTENT_LEN {
        return Err(ValidationError::format(field, format!("longer than {MAX_CONTENT_LEN} bytes")));
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seed_data() -> Value {
        json!({
            "interaction_id": "int_001",
            "customer_id": "cus_12345",
            "channel": "email",
            "content": "我对你们的新服务非常感兴趣!",
            "sentiment_score": 0.8
        })
    }

    fn field(event_type: &str, data: Value) -> String {
        parse_webhook(event_type, &data).unwrap_err().field
    }

    #[test]
    fn the_seed_example_is_an_email_interaction() {
        let event = parse_webhook("interaction", &seed_data()).unwrap();
        assert_eq!(event.customer, CustomerRef::Id("cus_12345".into()));
        assert_eq!(event.external_id.as_deref(), Some("int_001"));
        let WebhookKind::Interaction { channel, content, sentiment_score, ticket } = &event.kind
        else {
            panic!("not an interaction: {event:?}");
        };
        assert_eq!(*channel, Channel::Email);
        assert_eq!(content, "我对你们的新服务非常感兴趣!");
        assert_eq!(*sentiment_score, Some(0.8));
        assert!(ticket.is_none());

        let received = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let payload = event.to_payload("cus_12345", "fallback", "default", received);
        assert_eq!(payload.event_type(), "InteractionRecorded");
        payload.validate().unwrap();
        assert_eq!(payload.to_json()["interaction_id"], "int_001");
        assert_eq!(payload.to_json()["occurred_at"], "2026-09-21T14:13:20Z");
    }

    #[test]
    fn aliases_map_to_canonical_events() {
        let data = json!({"email": " Ann@Example.COM ", "content": "hi"});
        let event = parse_webhook("Interaction.Phone", &data).unwrap();
        assert_eq!(event.customer, CustomerRef::Email("ann@example.com".into()));
        assert!(matches!(event.kind, WebhookKind::Interaction { channel: Channel::Phone, .. }));

        for (event_type, expected) in [
            ("email_opened", ActivityKind::EmailOpened),
            ("email.opened", ActivityKind::EmailOpened),
            ("activity.meeting_booked", ActivityKind::MeetingBooked),
            ("link-clicked", ActivityKind::LinkClicked),
            ("replied", ActivityKind::Replied),
        ] {
            let event = parse_webhook(event_type, &json!({"customer_id": "c1"})).unwrap();
            assert_eq!(event.kind, WebhookKind::Activity { kind: expected, detail: String::new() });
        }
        let event = parse_webhook("activity", &json!({"customer_id": "c1", "kind": "page_viewed"}))
            .unwrap();
        assert!(matches!(event.kind, WebhookKind::Activity { kind: ActivityKind::PageViewed, .. }));

        let data = json!({"customer_id": "c1", "ticket_id": "T-9", "status": "open",
                          "content": "refund please", "occurred_at": "2026-01-02T03:04:05+08:00"});
        let event = parse_webhook("ticket.opened", &data).unwrap();
        assert_eq!(event.occurred_at, DateTime::from_timestamp(1_767_294_245, 0));
        let payload = event.to_payload("c1", "evt", "zendesk", Utc::now());
        let json = payload.to_json();
        assert_eq!(json["channel"], "web");
        assert_eq!(json["content"], "[ticket T-9 opened, status open] refund please");
        assert_eq!(json["interaction_id"], "evt");
    }

    #[test]
    fn bad_input_names_the_field() {
        assert_eq!(field("fax_received", seed_data()), "event_type");
        assert_eq!(field("", seed_data()), "event_type");
        assert_eq!(field("interaction.fax", seed_data()), "event_type");
        assert_eq!(field("interaction", json!({})), "data");
        assert_eq!(field("interaction", json!([1])), "data");
        let mut data = seed_data();
        data["channel"] = "fax".into();
        assert_eq!(field("interaction", data), "data.channel");
        let mut data = seed_data();
        data["sentiment_score"] = 1.5.into();
        assert_eq!(field("interaction", data), "data.sentiment_score");
        let mut data = seed_data();
        data["sentiment_score"] = "high".into();
        assert_eq!(field("interaction", data), "data.sentiment_score");
        let mut data = seed_data();
        data["content"] = 7.into();
        assert_eq!(field("interaction", data), "data.content");
        let mut data = seed_data();
        data["customer_id"] = "a.b".into();
        assert_eq!(field("interaction", data), "data.customer_id");
        let mut data = seed_data();
        data.as_object_mut().unwrap().remove("customer_id");
        assert_eq!(field("interaction", data), "data.customer_id");
        let mut data = seed_data();
        data["occurred_at"] = "yesterday".into();
        assert_eq!(field("interaction", data), "data.occurred_at");
        assert_eq!(
            field(
                "interaction.email",
                json!({"customer_id": "c", "channel": "phone",
            "content": "x"})
            ),
            "data.channel"
        );
        assert_eq!(
            field("interaction", json!({"customer_id": "c", "content": "x"})),
            "data.channel"
        );
        assert_eq!(field("activity", json!({"customer_id": "c"})), "data.kind");
        assert_eq!(field("activity", json!({"customer_id": "c", "kind": "waved"})), "data.kind");
        assert_eq!(field("replied", json!({"email": "no-at-sign"})), "data.email");
    }
}
