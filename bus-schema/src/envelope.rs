//! The event envelope: identity, causality and provenance around a payload.

use chrono::{DateTime, Utc};
use prost::Message;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DecodeError, ValidationError, ValidationErrorKind};
use crate::events::{
    CURRENT_SCHEMA_VERSION, EventPayload, timestamp_from_proto, timestamp_to_proto,
};
use crate::proto;
use crate::stream::StreamId;

/// What kind of principal caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Human,
    Agent,
    Integration,
    Import,
    System,
}

impl ActorKind {
    const NAMES: &'static str = "human, agent, integration, import, system";

    fn to_proto(self) -> proto::ActorKind {
        match self {
            Self::Human => proto::ActorKind::Human,
            Self::Agent => proto::ActorKind::Agent,
            Self::Integration => proto::ActorKind::Integration,
            Self::Import => proto::ActorKind::Import,
            Self::System => proto::ActorKind::System,
        }
    }

    fn from_proto(value: i32) -> Result<Self, ValidationError> {
        match proto::ActorKind::try_from(value) {
            Ok(proto::ActorKind::Human) => Ok(Self::Human),
            Ok(proto::ActorKind::Agent) => Ok(Self::Agent),
            Ok(proto::ActorKind::Integration) => Ok(Self::Integration),
            Ok(proto::ActorKind::Import) => Ok(Self::Import),
            Ok(proto::ActorKind::System) => Ok(Self::System),
            Ok(proto::ActorKind::Unspecified) => Err(ValidationError::missing("actor.kind")),
            Err(_) => Err(ValidationError::new(
                "actor.kind",
                ValidationErrorKind::UnknownVariant {
                    value: value.to_string(),
                    expected: Self::NAMES,
                },
            )),
        }
    }
}

/// Who caused an event: the "who" of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }

    pub fn system() -> Self {
        Self::new(ActorKind::System, "agentcrm")
    }

    pub(crate) fn to_proto(&self) -> proto::Actor {
        proto::Actor { kind: self.kind.to_proto() as i32, id: self.id.clone() }
    }

    pub(crate) fn from_proto(actor: proto::Actor) -> Result<Self, ValidationError> {
        Ok(Self { kind: ActorKind::from_proto(actor.kind)?, id: actor.id })
    }
}

/// One event: a payload plus who, when, why and where.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub stream: StreamId,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: Actor,
    pub payload: EventPayload,
}

impl EventEnvelope {
    /// A new root event: fresh UUIDv7 id, its own correlation, timestamps now.
    pub fn new(stream: StreamId, actor: Actor, payload: EventPayload) -> Self {
        let event_id = Uuid::now_v7();
        let now = Utc::now();
        Self {
            event_id,
            stream,
            schema_version: CURRENT_SCHEMA_VERSION,
            occurred_at: now,
            recorded_at: now,
            correlation_id: event_id,
            causation_id: None,
            actor,
            payload,
        }
    }

    /// Marks this event as caused by `cause`, inheriting its correlation.
    pub fn caused_by(mut self, cause: &EventEnvelope) -> Self {
        self.causation_id = Some(cause.event_id);
        self.correlation_id = cause.correlation_id;
        self
    }

    /// A deterministic event id for output derived from an input event, so a
    /// redelivered input yields the same output id and no duplicate (UUIDv5 of
    /// the producer's name and the cause's id, plus a discriminator for several
    /// outputs of one input).
    pub fn derived_id(producer: &str, cause: Uuid, discriminator: &str) -> Uuid {
        let name = format!("{producer}/{cause}/{discriminator}");
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }

    pub fn event_type(&self) -> &str {
        self.payload.event_type()
    }

    /// Checks the envelope and its payload; field names are absolute
    /// (`actor.id`, `payload.sentiment_score`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.payload.validate().map_err(|error| error.within("payload"))?;
        self.validate_envelope()
    }

    /// The envelope's own rules, assuming a valid payload.
    fn validate_envelope(&self) -> Result<(), ValidationError> {
        if self.actor.id.trim().is_empty() {
            return Err(ValidationError::empty("actor.id"));
        }
        if self.schema_version == 0 {
            return Err(ValidationError::missing("schema_version"));
        }
        if let Some(customer_id) = self.payload.customer_id()
            && (self.stream.aggregate() != "customer" || self.stream.id() != customer_id)
        {
            return Err(ValidationError::format(
                "stream",
                format!(
                    "a customer event of `{customer_id}` belongs to stream `customer.{customer_id}`"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a batch meant for one append: every event valid, in `stream`,
    /// and no `event_id` twice (a repeated id inside one append would be
    /// stored twice, since idempotency only looks at what is stored already).
    pub fn validate_batch(stream: &StreamId, events: &[Self]) -> Result<(), ValidationError> {
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        for event in events {
            if &event.stream != stream {
                return Err(ValidationError::format(
                    "stream",
                    format!("event {} belongs to {}, not {stream}", event.event_id, event.stream),
                ));
            }
            if !seen.insert(event.event_id) {
                return Err(ValidationError::format(
                    "event_id",
                    format!("event {} appears twice in one append", event.event_id),
                ));
            }
            event.validate()?;
        }
        Ok(())
    }

    /// Protobuf bytes of the whole envelope.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    pub fn to_proto(&self) -> proto::Envelope {
        proto::Envelope {
            event_id: self.event_id.to_string(),
            event_type: self.event_type().to_owned(),
            stream: self.stream.to_string(),
            schema_version: self.schema_version,
            occurred_at: Some(timestamp_to_proto(self.occurred_at)),
            recorded_at: Some(timestamp_to_proto(self.recorded_at)),
            correlation_id: self.correlation_id.to_string(),
            causation_id: self.causation_id.map(|id| id.to_string()).unwrap_or_default(),
            actor: Some(self.actor.to_proto()),
            payload: self.payload.encode().into(),
        }
    }

    /// Decodes and validates protobuf bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_proto(proto::Envelope::decode(bytes)?)
    }

    pub fn from_proto(message: proto::Envelope) -> Result<Self, DecodeError> {
        if message.event_type.is_empty() {
            return Err(ValidationError::empty("event_type").into());
        }
        if message.schema_version > CURRENT_SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedSchemaVersion {
                event_type: message.event_type,
                found: message.schema_version,
                supported: CURRENT_SCHEMA_VERSION,
            });
        }
        let actor = message.actor.ok_or_else(|| ValidationError::missing("actor"))?;
        let payload = EventPayload::decode(&message.event_type, &message.payload).map_err(
            |error| match error {
                DecodeError::Invalid(error) => DecodeError::Invalid(error.within("payload")),
                other => other,
            },
        )?;
        let envelope = Self {
            event_id: parse_uuid("event_id", &message.event_id)?,
            stream: message.stream.parse()?,
            schema_version: message.schema_version,
            occurred_at: timestamp_from_proto("occurred_at", message.occurred_at)?,
            recorded_at: timestamp_from_proto("recorded_at", message.recorded_at)?,
            correlation_id: parse_uuid("correlation_id", &message.correlation_id)?,
            causation_id: if message.causation_id.is_empty() {
                None
            } else {
                Some(parse_uuid("causation_id", &message.causation_id)?)
            },
            actor: Actor::from_proto(actor)?,
            payload,
        };
        // `EventPayload::decode` validated the payload already.
        envelope.validate_envelope()?;
        Ok(envelope)
    }

    /// The JSON form used by `export --jsonl` and `publish`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event_id": self.event_id,
            "event_type": self.event_type(),
            "stream": self.stream.to_string(),
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "actor": self.actor,
            "payload": self.payload.to_json(),
        })
    }

    /// Parses the JSON form. Missing identity fields are filled in as for a new
    /// root event (fresh UUIDv7 id, its own correlation, timestamps now); the
    /// stream defaults to the payload's customer.
    pub fn from_json(value: serde_json::Value) -> Result<Self, DecodeError> {
        let json: EnvelopeJson = serde_json::from_value(value)?;
        let payload = EventPayload::from_json(&json.event_type, json.payload)?;
        let stream = match (json.stream, payload.customer_id()) {
            (Some(stream), _) => stream.parse()?,
            (None, Some(customer_id)) => {
                StreamId::customer(customer_id).map_err(|error| error.within("payload"))?
            }
            (None, None) => return Err(ValidationError::missing("stream").into()),
        };
        let now = Utc::now();
        let event_id = json.event_id.unwrap_or_else(Uuid::now_v7);
        let envelope = Self {
            event_id,
            stream,
            schema_version: json.schema_version.unwrap_or(CURRENT_SCHEMA_VERSION),
            occurred_at: json.occurred_at.unwrap_or(now),
            recorded_at: json.recorded_at.unwrap_or(now),
            correlation_id: json.correlation_id.unwrap_or(event_id),
            causation_id: json.causation_id,
            actor: json.actor,
            payload,
        };
        if envelope.schema_version > CURRENT_SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedSchemaVersion {
                event_type: json.event_type,
                found: envelope.schema_version,
                supported: CURRENT_SCHEMA_VERSION,
            });
        }
        envelope.validate()?;
        Ok(envelope)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson {
    #[serde(default)]
    event_id: Option<Uuid>,
    event_type: String,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    recorded_at: Option<DateTime<Utc>>,
    #[serde(default)]
    correlation_id: Option<Uuid>,
    #[serde(default)]
    causation_id: Option<Uuid>,
    actor: Actor,
    payload: serde_json::Value,
}

fn parse_uuid(field: &str, text: &str) -> Result<Uuid, ValidationError> {
    if text.is_empty() {
        return Err(ValidationError::empty(field));
    }
    Uuid::parse_str(text).map_err(|error| ValidationError::format(field, error.to_string()))
}

/// An event as stored: its global position in the log plus the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// 1-based global position (the JetStream stream sequence in distributed mode).
    pub position: u64,
    pub envelope: EventEnvelope,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Channel, InteractionRecorded};

    pub(crate) fn sample() -> EventEnvelope {
        let payload = EventPayload::InteractionRecorded(InteractionRecorded {
            interaction_id: "int_001".into(),
            customer_id: "cus_12345".into(),
            channel: Channel::Chat,
            content: "price?".into(),
            sentiment_score: Some(0.25),
            occurred_at: DateTime::from_timestamp(1_790_000_000, 5).unwrap(),
            source: "default".into(),
        });
        EventEnvelope::new(
            StreamId::customer("cus_12345").unwrap(),
            Actor::new(ActorKind::Integration, "default"),
            payload,
        )
    }

    #[test]
    fn envelope_round_trips_through_protobuf_and_json() {
        let envelope = sample();
        assert_eq!(envelope.event_id.get_version_num(), 7);
        assert_eq!(EventEnvelope::decode(&envelope.encode()).unwrap(), envelope);
        assert_eq!(EventEnvelope::from_json(envelope.to_json()).unwrap(), envelope);
    }

    #[test]
    fn decode_errors_name_the_field() {
        let mut message = sample().to_proto();
        message.event_id = "not-a-uuid".into();
        let error = EventEnvelope::from_proto(message).unwrap_err();
        assert_eq!(error.field(), Some("event_id"));

        let mut message = sample().to_proto();
        message.actor = Some(proto::Actor { kind: 0, id: "x".into() });
        assert_eq!(EventEnvelope::from_proto(message).unwrap_err().field(), Some("actor.kind"));

        let mut message = sample().to_proto();
        message.stream = "customer.someone_else".into();
        assert_eq!(EventEnvelope::from_proto(message).unwrap_err().field(), Some("stream"));

        let mut json = sample().to_json();
        json["payload"]["sentiment_score"] = 3.into();
        let error = EventEnvelope::from_json(json).unwrap_err();
        assert_eq!(error.field(), Some("payload.sentiment_score"));
    }

    #[test]
    fn derived_ids_are_deterministic() {
        let cause = Uuid::now_v7();
        assert_eq!(
            EventEnvelope::derived_id("sales", cause, "score"),
            EventEnvelope::derived_id("sales", cause, "score")
        );
        assert_ne!(
            EventEnvelope::derived_id("sales", cause, "score"),
            EventEnvelope::derived_id("support", cause, "score")
        );
    }
}
