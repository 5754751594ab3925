//! Event payloads: facts in the past tense, with their validation.
//!
//! Each payload is a plain struct mirrored by a protobuf message in
//! `proto/agentcrm/v1/`. Conversions from the wire validate; conversions to the wire
//! cannot fail.

use chrono::{DateTime, Utc};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, ValidationError, ValidationErrorKind};
use crate::proto;
use crate::stream::validate_id;

/// The schema version every payload of this build writes.
pub const CURRENT_SCHEMA_VERSION: u32 = 1;

/// A customer became known to the CRM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRegistered {
    pub customer_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub company: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stage: String,
}

/// Some profile fields changed; `None` means unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerProfileChanged {
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// The customer was forgotten: their vault key is destroyed, so their tokens
/// can no longer be restored anywhere. Nothing in the log is rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerForgotten {
    pub customer_id: String,
    /// Why, for the audit trail; masked text, never personal data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl CustomerForgotten {
    /// The event id of a customer's `CustomerForgotten`, derived from the
    /// customer id: however often and wherever forgetting is asked for (the
    /// CLI, the API, a retry), the log stores it once.
    pub fn event_id(customer_id: &str) -> uuid::Uuid {
        let customer = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, customer_id.as_bytes());
        crate::EventEnvelope::derived_id("forget", customer, "forgotten")
    }
}

/// Where an interaction took place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Phone,
    SocialMedia,
    Chat,
    Meeting,
    Web,
}

impl Channel {
    pub const NAMES: &'static str = "email, phone, social_media, chat, meeting, web";
    pub const ALL: [Channel; 6] =
        [Self::Email, Self::Phone, Self::SocialMedia, Self::Chat, Self::Meeting, Self::Web];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::SocialMedia => "social_media",
            Self::Chat => "chat",
            Self::Meeting => "meeting",
            Self::Web => "web",
        }
    }

    /// Parses a channel name, naming `field` when it is unknown.
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        Self::ALL.into_iter().find(|channel| channel.as_str() == value).ok_or_else(|| {
            ValidationError::new(
                field,
                ValidationErrorKind::UnknownVariant { value: value.into(), expected: Self::NAMES },
            )
        })
    }

    fn to_proto(self) -> proto::Channel {
        match self {
            Self::Email => proto::Channel::Email,
            Self::Phone => proto::Channel::Phone,
            Self::SocialMedia => proto::Channel::SocialMedia,
            Self::Chat => proto::Channel::Chat,
            Self::Meeting => proto::Channel::Meeting,
            Self::Web => proto::Channel::Web,
        }
    }

    fn from_proto(field: &str, value: i32) -> Result<Self, ValidationError> {
        match proto::Channel::try_from(value) {
            Ok(proto::Channel::Email) => Ok(Self::Email),
            Ok(proto::Channel::Phone) => Ok(Self::Phone),
            Ok(proto::Channel::SocialMedia) => Ok(Self::SocialMedia),
            Ok(proto::Channel::Chat) => Ok(Self::Chat),
            Ok(proto::Channel::Meeting) => Ok(Self::Meeting),
            Ok(proto::Channel::Web) => Ok(Self::Web),
            Ok(proto::Channel::Unspecified) => Err(ValidationError::missing(field)),
            Err(_) => Err(ValidationError::new(
                field,
                ValidationErrorKind::UnknownVariant {
                    value: value.to_string(),
                    expected: Self::NAMES,
                },
            )),
        }
    }
}

/// A customer interaction on some channel. `content` is always masked text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionRecorded {
    pub interaction_id: String,
    pub customer_id: String,
    pub channel: Channel,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment_score: Option<f64>,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// A behavioural signal from a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    EmailOpened,
    LinkClicked,
    Replied,
    MeetingBooked,
    FormSubmitted,
    PageViewed,
    DemoRequested,
    Unsubscribed,
}

impl ActivityKind {
    pub const NAMES: &'static str = "email_opened, link_clicked, replied, meeting_booked, \
        form_submitted, page_viewed, demo_requested, unsubscribed";
    pub const ALL: [ActivityKind; 8] = [
        Self::EmailOpened,
        Self::LinkClicked,
        Self::Replied,
        Self::MeetingBooked,
        Self::FormSubmitted,
        Self::PageViewed,
        Self::DemoRequested,
        Self::Unsubscribed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailOpened => "email_opened",
            Self::LinkClicked => "link_clicked",
            Self::Replied => "replied",
            Self::MeetingBooked => "meeting_booked",
            Self::FormSubmitted => "form_submitted",
            Self::PageViewed => "page_viewed",
            Self::DemoRequested => "demo_requested",
            Self::Unsubscribed => "unsubscribed",
        }
    }

    /// Parses an activity name, naming `field` when it is unknown.
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value).ok_or_else(|| {
            ValidationError::new(
                field,
                ValidationErrorKind::UnknownVariant { value: value.into(), expected: Self::NAMES },
            )
        })
    }

    fn to_proto(self) -> proto::ActivityKind {
        match self {
            Self::EmailOpened => proto::ActivityKind::EmailOpened,
            Self::LinkClicked => proto::ActivityKind::LinkClicked,
            Self::Replied => proto::ActivityKind::Replied,
            Self::MeetingBooked => proto::ActivityKind::MeetingBooked,
            Self::FormSubmitted => proto::ActivityKind::FormSubmitted,
            Self::PageViewed => proto::ActivityKind::PageViewed,
            Self::DemoRequested => proto::ActivityKind::DemoRequested,
            Self::Unsubscribed => proto::ActivityKind::Unsubscribed,
        }
    }

    fn from_proto(field: &str, value: i32) -> Result<Self, ValidationError> {
        let kind = proto::ActivityKind::try_from(value).map_err(|_| {
            ValidationError::new(
                field,
                ValidationErrorKind::UnknownVariant {
                    value: value.to_string(),
                    expected: Self::NAMES,
                },
            )
        })?;
        Self::ALL
            .into_iter()
            .find(|candidate| candidate.to_proto() == kind)
            .ok_or_else(|| ValidationError::missing(field))
    }
}

/// A customer did something worth scoring (opened an email, booked a meeting, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityLogged {
    pub activity_id: String,
    pub customer_id: String,
    pub kind: ActivityKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
}

/// Any event payload this build knows, or the raw bytes of one it does not.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPayload {
    CustomerRegistered(CustomerRegistered),
    CustomerProfileChanged(CustomerProfileChanged),
    InteractionRecorded(InteractionRecorded),
    ActivityLogged(ActivityLogged),
    CustomerForgotten(CustomerForgotten),
    /// A type written by a newer build: kept byte for byte, never dropped.
    Unknown {
        event_type: String,
        bytes: Vec<u8>,
    },
}

impl EventPayload {
    /// The names of every event type this build decodes.
    pub const KNOWN_TYPES: &'static str = "CustomerRegistered, CustomerProfileChanged, \
        InteractionRecorded, ActivityLogged, CustomerForgotten";

    /// The payload's message name (the envelope's `event_type`).
    pub fn event_type(&self) -> &str {
        match self {
            Self::CustomerRegistered(_) => "CustomerRegistered",
            Self::CustomerProfileChanged(_) => "CustomerProfileChanged",
            Self::InteractionRecorded(_) => "InteractionRecorded",
            Self::ActivityLogged(_) => "ActivityLogged",
            Self::CustomerForgotten(_) => "CustomerForgotten",
            Self::Unknown { event_type, .. } => event_type,
        }
    }

    /// The customer this payload is about, for customer events.
    pub fn customer_id(&self) -> Option<&str> {
        match self {
            Self::CustomerRegistered(event) => Some(&event.customer_id),
            Self::CustomerProfileChanged(event) => Some(&event.customer_id),
            Self::InteractionRecorded(event) => Some(&event.customer_id),
            Self::ActivityLogged(event) => Some(&event.customer_id),
            Self::CustomerForgotten(event) => Some(&event.customer_id),
            Self::Unknown { .. } => None,
        }
    }

    /// Checks the invariants the type system cannot express. Field names are
    /// relative to the payload.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::CustomerRegistered(event) => {
                validate_id("customer_id", &event.customer_id)?;
                if event.name.trim().is_empty() {
                    return Err(ValidationError::empty("name"));
                }
                Ok(())
            }
            Self::CustomerProfileChanged(event) => {
                validate_id("customer_id", &event.customer_id)?;
                if event.name.as_deref().is_some_and(|name| name.trim().is_empty()) {
                    return Err(ValidationError::empty("name"));
                }
                Ok(())
            }
            Self::InteractionRecorded(event) => {
                require_text("interaction_id", &event.interaction_id)?;
                validate_id("customer_id", &event.customer_id)?;
                validate_sentiment("sentiment_score", event.sentiment_score)
            }
            Self::ActivityLogged(event) => {
                require_text("activity_id", &event.activity_id)?;
                validate_id("customer_id", &event.customer_id)
            }
            Self::CustomerForgotten(event) => validate_id("customer_id", &event.customer_id),
            Self::Unknown { event_type, .. } => require_text("event_type", event_type),
        }
    }

    /// Protobuf bytes of the payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::CustomerRegistered(event) => proto::CustomerRegistered {
                customer_id: event.customer_id.clone(),
                name: event.name.clone(),
                email: event.email.clone(),
                phone: event.phone.clone(),
                company: event.company.clone(),
                owner: event.owner.clone(),
                stage: event.stage.clone(),
            }
            .encode_to_vec(),
            Self::CustomerProfileChanged(event) => proto::CustomerProfileChanged {
                customer_id: event.customer_id.clone(),
                name: event.name.clone(),
                email: event.email.clone(),
                phone: event.phone.clone(),
                company: event.company.clone(),
                owner: event.owner.clone(),
                stage: event.stage.clone(),
            }
            .encode_to_vec(),
            Self::InteractionRecorded(event) => proto::InteractionRecorded {
                interaction_id: event.interaction_id.clone(),
                customer_id: event.customer_id.clone(),
                channel: event.channel.to_proto() as i32,
                content: event.content.clone(),
                sentiment_score: event.sentiment_score,
                occurred_at: Some(timestamp_to_proto(event.occurred_at)),
                source: event.source.clone(),
            }
            .encode_to_vec(),
            Self::ActivityLogged(event) => proto::ActivityLogged {
                activity_id: event.activity_id.clone(),
                customer_id: event.customer_id.clone(),
                kind: event.kind.to_proto() as i32,
                detail: event.detail.clone(),
                occurred_at: Some(timestamp_to_proto(event.occurred_at)),
            }
            .encode_to_vec(),
            Self::CustomerForgotten(event) => proto::CustomerForgotten {
                customer_id: event.customer_id.clone(),
                reason: event.reason.clone(),
            }
            .encode_to_vec(),
            Self::Unknown { bytes, .. } => bytes.clone(),
        }
    }

    /// Decodes protobuf bytes of `event_type`; unknown types are kept as bytes.
    /// Field names in errors are relative to the payload.
    pub fn decode(event_type: &str, bytes: &[u8]) -> Result<Self, DecodeError> {
        let payload = match event_type {
            "CustomerRegistered" => {
                let message = proto::CustomerRegistered::decode(bytes)?;
                Self::CustomerRegistered(CustomerRegistered {
                    customer_id: message.customer_id,
                    name: message.name,
                    email: message.email,
                    phone: message.phone,
                    company: message.company,
                    owner: message.owner,
                    stage: message.stage,
                })
            }
            "CustomerProfileChanged" => {
                let message = proto::CustomerProfileChanged::decode(bytes)?;
                Self::CustomerProfileChanged(CustomerProfileChanged {
                    customer_id: message.customer_id,
                    name: message.name,
                    email: message.email,
                    phone: message.phone,
                    company: message.company,
                    owner: message.owner,
                    stage: message.stage,
                })
            }
            "InteractionRecorded" => {
                let message = proto::InteractionRecorded::decode(bytes)?;
                Self::InteractionRecorded(InteractionRecorded {
                    interaction_id: message.interaction_id,
                    customer_id: message.customer_id,
                    channel: Channel::from_proto("channel", message.channel)?,
                    content: message.content,
                    sentiment_score: message.sentiment_score,
                    occurred_at: timestamp_from_proto("occurred_at", message.occurred_at)?,
                    source: message.source,
                })
            }
            "ActivityLogged" => {
                let message = proto::ActivityLogged::decode(bytes)?;
                Self::ActivityLogged(ActivityLogged {
                    activity_id: message.activity_id,
                    customer_id: message.customer_id,
                    kind: ActivityKind::from_proto("kind", message.kind)?,
                    detail: message.detail,
                    occurred_at: timestamp_from_proto("occurred_at", message.occurred_at)?,
                })
            }
            "CustomerForgotten" => {
                let message = proto::CustomerForgotten::decode(bytes)?;
                Self::CustomerForgotten(CustomerForgotten {
                    customer_id: message.customer_id,
                    reason: message.reason,
                })
            }
            other => Self::Unknown { event_type: other.to_owned(), bytes: bytes.to_vec() },
        };
        payload.validate()?;
        Ok(payload)
    }

    /// The payload as JSON; unknown types show their protobuf bytes in base64.
    pub fn to_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        let value = match self {
            Self::CustomerRegistered(event) => serde_json::to_value(event),
            Self::CustomerProfileChanged(event) => serde_json::to_value(event),
            Self::InteractionRecorded(event) => serde_json::to_value(event),
            Self::ActivityLogged(event) => serde_json::to_value(event),
            Self::CustomerForgotten(event) => serde_json::to_value(event),
            Self::Unknown { bytes, .. } => {
                return serde_json::json!({
                    "protobuf_base64": base64::engine::general_purpose::STANDARD.encode(bytes)
                });
            }
        };
        // Serializing these plain structs to a `Value` cannot fail: no maps with
        // non-string keys, no non-finite floats (validated on the way in).
        value.unwrap_or(serde_json::Value::Null)
    }

    /// Parses a JSON payload of a known `event_type` and validates it.
    pub fn from_json(event_type: &str, value: serde_json::Value) -> Result<Self, DecodeError> {
        let payload = match event_type {
            "CustomerRegistered" => Self::CustomerRegistered(serde_json::from_value(value)?),
            "CustomerProfileChanged" => {
                Self::CustomerProfileChanged(serde_json::from_value(value)?)
            }
            "InteractionRecorded" => Self::InteractionRecorded(serde_json::from_value(value)?),
            "ActivityLogged" => Self::ActivityLogged(serde_json::from_value(value)?),
            "CustomerForgotten" => Self::CustomerForgotten(serde_json::from_value(value)?),
            other => {
                return Err(ValidationError::new(
                    "event_type",
                    ValidationErrorKind::UnknownVariant {
                        value: other.to_owned(),
                        expected: Self::KNOWN_TYPES,
                    },
                )
                .into());
            }
        };
        payload.validate().map_err(|error| error.within("payload"))?;
        Ok(payload)
    }
}

fn require_text(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() { Err(ValidationError::empty(field)) } else { Ok(()) }
}

/// A sentiment score must be a finite number in [-1, 1].
pub fn validate_sentiment(field: &str, score: Option<f64>) -> Result<(), ValidationError> {
    match score {
        Some(value) if !(-1.0..=1.0).contains(&value) || value.is_nan() => {
            Err(ValidationError::new(
                field,
                ValidationErrorKind::OutOfRange { min: -1.0, max: 1.0, value },
            ))
        }
        _ => Ok(()),
    }
}

pub(crate) fn timestamp_to_proto(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn timestamp_from_proto(
    field: &str,
    time: Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, ValidationError> {
    let time = time.ok_or_else(|| ValidationError::missing(field))?;
    let nanos = u32::try_from(time.nanos)
        .map_err(|_| ValidationError::format(field, "negative nanoseconds"))?;
    DateTime::from_timestamp(time.seconds, nanos)
        .ok_or_else(|| ValidationError::format(field, "timestamp out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interaction(sentiment: Option<f64>) -> EventPayload {
        EventPayload::InteractionRecorded(InteractionRecorded {
            interaction_id: "int_001".into(),
            customer_id: "cus_12345".into(),
            channel: Channel::Email,
            content: "我对你们的新服务非常感兴趣!".into(),
            sentiment_score: sentiment,
            occurred_at: DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap(),
            source: "default".into(),
        })
    }

    #[test]
    fn payloads_round_trip_through_protobuf_and_json() {
        let payload = interaction(Some(0.8));
        let decoded = EventPayload::decode("InteractionRecorded", &payload.encode()).unwrap();
        assert_eq!(decoded, payload);
        let json = payload.to_json();
        assert_eq!(json["channel"], "email");
        assert_eq!(EventPayload::from_json("InteractionRecorded", json).unwrap(), payload);
    }

    #[test]
    fn sentiment_outside_range_names_the_field() {
        for bad in [1.5, -1.01, f64::NAN, f64::INFINITY] {
            let error = interaction(Some(bad)).validate().unwrap_err();
            assert_eq!(error.field, "sentiment_score");
        }
        assert!(interaction(Some(-1.0)).validate().is_ok());
        assert!(interaction(None).validate().is_ok());
    }

    #[test]
    fn unknown_channel_and_empty_ids_name_the_field() {
        let mut json = interaction(None).to_json();
        json["channel"] = "fax".into();
        let error = EventPayload::from_json("InteractionRecorded", json).unwrap_err();
        assert!(error.to_string().contains("fax"), "{error}");
        assert_eq!(Channel::parse("data.channel", "fax").unwrap_err().field, "data.channel");

        let mut json = interaction(None).to_json();
        json["customer_id"] = "".into();
        let error = EventPayload::from_json("InteractionRecorded", json).unwrap_err();
        assert_eq!(error.field(), Some("payload.customer_id"));

        let bytes = proto::InteractionRecorded {
            interaction_id: "i".into(),
            customer_id: "c".into(),
            channel: 42,
            occurred_at: Some(timestamp_to_proto(Utc::now())),
            ..Default::default()
        }
        .encode_to_vec();
        let error = EventPayload::decode("InteractionRecorded", &bytes).unwrap_err();
        assert_eq!(error.field(), Some("channel"));
    }

    #[test]
    fn customer_forgotten_round_trips_and_validates() {
        let payload = EventPayload::CustomerForgotten(CustomerForgotten {
            customer_id: "cus_12345".into(),
            reason: "erasure request T-42".into(),
        });
        assert_eq!(payload.event_type(), "CustomerForgotten");
        assert_eq!(payload.customer_id(), Some("cus_12345"));
        let decoded = EventPayload::decode("CustomerForgotten", &payload.encode()).unwrap();
        assert_eq!(decoded, payload);
        let json = payload.to_json();
        assert_eq!(
            json,
            serde_json::json!({"customer_id": "cus_12345", "reason": "erasure request T-42"})
        );
        assert_eq!(EventPayload::from_json("CustomerForgotten", json).unwrap(), payload);

        let error =
            EventPayload::from_json("CustomerForgotten", serde_json::json!({"customer_id": "a.b"}))
                .unwrap_err();
        assert_eq!(error.field(), Some("payload.customer_id"));
        let bytes = proto::CustomerForgotten { customer_id: String::new(), reason: "x".into() }
            .encode_to_vec();
        let error = EventPayload::decode("CustomerForgotten", &bytes).unwrap_err();
        assert_eq!(error.field(), Some("customer_id"));
    }

    #[test]
    fn unknown_event_types_are_kept_verbatim() {
        let payload = EventPayload::decode("FutureThing", b"\x08\x01").unwrap();
        assert_eq!(payload.event_type(), "FutureThing");
        assert_eq!(payload.encode(), b"\x08\x01");
        assert!(EventPayload::from_json("FutureThing", serde_json::json!({})).is_err());
    }
}
