//! Raw intake: what the gateway accepted, before the masking agent has seen it.
//!
//! This is the one place raw customer text travels, and only towards the masking
//! agent. It is never appended to the event log.

use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

use crate::envelope::Actor;
use crate::error::{DecodeError, ValidationError};
use crate::events::{timestamp_from_proto, timestamp_to_proto};
use crate::proto;

/// One accepted, not yet masked submission.
#[derive(Debug, Clone, PartialEq)]
pub struct RawIntake {
    /// Given at acceptance; the canonical event made from it carries the same id,
    /// so masking it twice appends it once.
    pub event_id: Uuid,
    pub source: String,
    /// The sender's delivery id (`webhook-id`), if any.
    pub delivery_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// What happened, as the sender named it.
    pub event_type: String,
    /// The sender's `data` object, as JSON text.
    pub data_json: String,
    pub actor: Actor,
}

impl RawIntake {
    pub fn encode(&self) -> Vec<u8> {
        proto::RawIntake {
            event_id: self.event_id.to_string(),
            source: self.source.clone(),
            delivery_id: self.delivery_id.clone().unwrap_or_default(),
            received_at: Some(timestamp_to_proto(self.received_at)),
            event_type: self.event_type.clone(),
            data_json: self.data_json.clone(),
            actor: Some(self.actor.to_proto()),
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let message = proto::RawIntake::decode(bytes)?;
        let actor = message.actor.ok_or_else(|| ValidationError::missing("actor"))?;
        Ok(Self {
            event_id: Uuid::parse_str(&message.event_id)
                .map_err(|error| ValidationError::format("event_id", error.to_string()))?,
            source: message.source,
            delivery_id: Some(message.delivery_id).filter(|id| !id.is_empty()),
            received_at: timestamp_from_proto("received_at", message.received_at)?,
            event_type: message.event_type,
            data_json: message.data_json,
            actor: Actor::from_proto(actor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ActorKind;

    #[test]
    fn round_trips() {
        let intake = RawIntake {
            event_id: Uuid::now_v7(),
            source: "default".into(),
            delivery_id: Some("msg_1".into()),
            received_at: Utc::now(),
            event_type: "interaction".into(),
            data_json: r#"{"content":"call me at 13812345678"}"#.into(),
            actor: Actor::new(ActorKind::Integration, "default"),
        };
        assert_eq!(RawIntake::decode(&intake.encode()).unwrap(), intake);
    }
}
