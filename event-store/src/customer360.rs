//! The customer 360 read model: profile, interactions in order, activity counts.

use std::collections::{BTreeMap, VecDeque};

use bus_schema::{Channel, EventPayload, RecordedEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::projection::Projection;

/// One customer as the CRM sees them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Customer360 {
    pub customer_id: String,
    /// False while only interactions or activities are known (no registration yet).
    pub registered: bool,
    /// True once the customer was forgotten: their vault key is destroyed, so
    /// the tokens below stand for nothing any more.
    #[serde(default)]
    pub forgotten: bool,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub company: String,
    pub owner: String,
    pub stage: String,
    #[serde(with = "timestamp::option")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(with = "timestamp::option")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The stream's revision: the position of the last event folded (the ETag).
    pub revision: u64,
    /// How many interactions were recorded in all.
    pub interaction_count: u64,
    /// The latest interactions, oldest first, at most [`RECENT_INTERACTIONS`]; the
    /// full history is the customer's event stream.
    pub recent_interactions: VecDeque<InteractionView>,
    /// Activity kind → how many times it was logged.
    pub activity_counts: BTreeMap<String, u64>,
    #[serde(with = "timestamp::option")]
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Mean sentiment of the scored interactions, if any.
    pub average_sentiment: Option<f64>,
    pub scored_interactions: u64,
}

/// How many interactions the 360 view keeps inline.
pub const RECENT_INTERACTIONS: usize = 10;

/// One interaction, as listed in the 360 view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionView {
    pub position: u64,
    pub interaction_id: String,
    pub channel: Channel,
    pub content: String,
    pub sentiment_score: Option<f64>,
    #[serde(with = "timestamp")]
    pub occurred_at: DateTime<Utc>,
    pub source: String,
}

/// Timestamps of a row: RFC 3339 in human-readable formats (the API's JSON),
/// seconds and nanoseconds in binary ones (the stored postcard rows), which
/// then neither format nor parse text on every fold.
mod timestamp {
    use chrono::{DateTime, Utc};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(at: &DateTime<Utc>, to: S) -> Result<S::Ok, S::Error> {
        if to.is_human_readable() {
            at.serialize(to)
        } else {
            (at.timestamp(), at.timestamp_subsec_nanos()).serialize(to)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        from: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        if from.is_human_readable() {
            return DateTime::<Utc>::deserialize(from);
        }
        let (seconds, nanos) = <(i64, u32)>::deserialize(from)?;
        DateTime::from_timestamp(seconds, nanos)
            .ok_or_else(|| D::Error::custom(format!("timestamp {seconds}.{nanos} out of range")))
    }

    pub(super) mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        /// Borrows the timestamp for `super::serialize`.
        #[derive(Serialize)]
        struct Compact<'a>(#[serde(with = "super")] &'a DateTime<Utc>);

        /// Owns what `super::deserialize` made.
        #[derive(Deserialize)]
        struct Owned(#[serde(with = "super")] DateTime<Utc>);

        pub(in super::super) fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            to: S,
        ) -> Result<S::Ok, S::Error> {
            at.as_ref().map(Compact).serialize(to)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            from: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Ok(Option::<Owned>::deserialize(from)?.map(|Owned(at)| at))
        }
    }
}

/// Folds customer events into [`Customer360`] rows keyed by customer id.
#[derive(Debug, Default, Clone, Copy)]
pub struct Customer360Projection;

impl Projection for Customer360Projection {
    type Row = Customer360;

    const NAME: &'static str = "customer360";
    // 2: `CustomerForgotten` marks the row forgotten.
    // 3: rows are stored in postcard, not JSON.
    const VERSION: u32 = 4;

    fn key<'a>(&self, event: &'a RecordedEvent) -> Option<&'a str> {
        event.envelope.payload.customer_id()
    }

    fn apply(&self, row: &mut Option<Customer360>, event: RecordedEvent) {
        let RecordedEvent { position, envelope } = event;
        let occurred_at = envelope.occurred_at;
        let row = row.get_or_insert_with(|| Customer360 {
            customer_id: envelope.payload.customer_id().unwrap_or_default().to_owned(),
            ..Customer360::default()
        });
        match envelope.payload {
            EventPayload::CustomerRegistered(registered) => {
                row.registered = true;
                row.name = registered.name;
                row.email = registered.email;
                row.phone = registered.phone;
                row.company = registered.company;
                row.owner = registered.owner;
                row.stage =
                    if registered.stage.is_empty() { "lead".into() } else { registered.stage };
                row.created_at = Some(occurred_at);
            }
            EventPayload::CustomerProfileChanged(changed) => {
                let fields = [
                    (changed.name, &mut row.name),
                    (changed.email, &mut row.email),
                    (changed.phone, &mut row.phone),
                    (changed.company, &mut row.company),
                    (changed.owner, &mut row.owner),
                    (changed.stage, &mut row.stage),
                ];
                for (change, field) in fields {
                    if let Some(value) = change {
                        *field = value;
                    }
                }
            }
            EventPayload::InteractionRecorded(interaction) => {
                if let Some(score) = interaction.sentiment_score {
                    let total =
                        row.average_sentiment.unwrap_or(0.0) * row.scored_interactions as f64;
                    row.scored_interactions += 1;
                    row.average_sentiment = Some((total + score) / row.scored_interactions as f64);
                }
                row.interaction_count += 1;
                if row.recent_interactions.len() == RECENT_INTERACTIONS {
                    row.recent_interactions.pop_front();
                }
                row.recent_interactions.push_back(InteractionView {
                    position,
                    interaction_id: interaction.interaction_id,
                    channel: interaction.channel,
                    content: interaction.content,
                    sentiment_score: interaction.sentiment_score,
                    occurred_at: interaction.occurred_at,
                    source: interaction.source,
                });
            }
            EventPayload::ActivityLogged(activity) => {
                *row.activity_counts.entry(activity.kind.as_str().to_owned()).or_default() += 1;
                row.last_activity_at = Some(
                    row.last_activity_at
                        .map_or(activity.occurred_at, |last| last.max(activity.occurred_at)),
                );
            }
            EventPayload::CustomerForgotten(_) => {
                // Profile fields and contents are tokens already; the key that
                // could restore them is gone. Clearing the profile tokens keeps
                // the row from even suggesting which fields were ever known.
                row.forgotten = true;
                for field in [&mut row.name, &mut row.email, &mut row.phone] {
                    field.clear();
                }
            }
            EventPayload::Unknown { .. } => return,
        }
        row.revision = position;
        row.updated_at = Some(occurred_at);
    }
}

#[cfg(test)]
mod tests {
    use bus_schema::{
        Actor, ActorKind, CustomerForgotten, CustomerRegistered, EventEnvelope,
        InteractionRecorded, StreamId,
    };

    use super::*;

    fn recorded(position: u64, payload: EventPayload) -> RecordedEvent {
        let stream = StreamId::customer("cus_1").unwrap_or_else(|error| panic!("{error}"));
        let envelope = EventEnvelope::new(stream, Actor::new(ActorKind::Human, "admin"), payload);
        RecordedEvent { position, envelope }
    }

    #[test]
    fn forgetting_marks_the_row_and_drops_profile_tokens() {
        let projection = Customer360Projection;
        let events = [
            recorded(
                1,
                EventPayload::CustomerRegistered(CustomerRegistered {
                    customer_id: "cus_1".into(),
                    name: "<PERSON_1>".into(),
                    email: "<EMAIL_1>".into(),
                    phone: "<PHONE_1>".into(),
                    company: "Acme".into(),
                    owner: String::new(),
                    stage: String::new(),
                }),
            ),
            recorded(
                2,
                EventPayload::InteractionRecorded(InteractionRecorded {
                    interaction_id: "i1".into(),
                    customer_id: "cus_1".into(),
                    channel: Channel::Email,
                    content: "write to <EMAIL_1>".into(),
                    sentiment_score: None,
                    occurred_at: Utc::now(),
                    source: "default".into(),
                }),
            ),
            recorded(
                3,
                EventPayload::CustomerForgotten(CustomerForgotten {
                    customer_id: "cus_1".into(),
                    reason: "erasure request".into(),
                }),
            ),
        ];
        let mut row = None;
        for event in events {
            projection.apply(&mut row, event);
        }
        let row = row.unwrap_or_default();
        assert!(row.forgotten);
        assert!(row.registered);
        assert_eq!((row.name.as_str(), row.email.as_str(), row.phone.as_str()), ("", "", ""));
        assert_eq!(row.company, "Acme");
        assert_eq!(row.revision, 3);
        assert_eq!(row.interaction_count, 1);
        assert_eq!(row.recent_interactions[0].content, "write to <EMAIL_1>");
    }

    #[test]
    fn timestamps_are_text_in_json_and_numbers_in_stored_rows() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T08:30:01.123456789+08:00")
            .unwrap_or_else(|error| panic!("{error}"))
            .with_timezone(&Utc);
        let row = Customer360 {
            customer_id: "cus_1".into(),
            created_at: Some(at),
            last_activity_at: None,
            recent_interactions: VecDeque::from([InteractionView {
                position: 7,
                interaction_id: "int_1".into(),
                channel: Channel::Email,
                content: "hello".into(),
                sentiment_score: Some(0.5),
                occurred_at: at,
                source: "default".into(),
            }]),
            ..Customer360::default()
        };
        let json = serde_json::to_value(&row).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(json["created_at"], "2026-11-26T00:30:01.123456789Z");
        assert_eq!(json["last_activity_at"], serde_json::Value::Null);
        assert_eq!(json["recent_interactions"][0]["occurred_at"], "2026-11-26T00:30:01.123456789Z");
        let back: Customer360 =
            serde_json::from_value(json).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back, row);

        let stored = postcard::to_stdvec(&row).unwrap_or_else(|error| panic!("{error}"));
        assert!(!stored.windows(4).any(|window| window == b"2026"), "no text timestamp");
        let back: Customer360 =
            postcard::from_bytes(&stored).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back, row);
    }
}
