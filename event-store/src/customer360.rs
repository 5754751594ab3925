//! The customer 360 read model: profile, interactions in order, activity counts.

use std::collections::BTreeMap;

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
    pub name: String,
    pub email: String,
    pub phone: String,
    pub company: String,
    pub owner: String,
    pub stage: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The stream's revision: the position of the last event folded (the ETag).
    pub revision: u64,
    /// How many interactions were recorded in all.
    pub interaction_count: u64,
    /// The latest interactions, oldest first, at most [`RECENT_INTERACTIONS`]; the
    /// full history is the customer's event stream.
    pub recent_interactions: Vec<InteractionView>,
    /// Activity kind → how many times it was logged.
    pub activity_counts: BTreeMap<String, u64>,
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
    pub occurred_at: DateTime<Utc>,
    pub source: String,
}

/// Folds customer events into [`Customer360`] rows keyed by customer id.
#[derive(Debug, Default, Clone, Copy)]
pub struct Customer360Projection;

impl Projection for Customer360Projection {
    type Row = Customer360;

    const NAME: &'static str = "customer360";
    const VERSION: u32 = 1;

    fn key(&self, event: &RecordedEvent) -> Option<String> {
        event.envelope.payload.customer_id().map(str::to_owned)
    }

    fn apply(&self, row: Option<Customer360>, event: &RecordedEvent) -> Option<Customer360> {
        let envelope = &event.envelope;
        let mut row = row.unwrap_or_else(|| Customer360 {
            customer_id: envelope.payload.customer_id().unwrap_or_default().to_owned(),
            ..Customer360::default()
        });
        match &envelope.payload {
            EventPayload::CustomerRegistered(registered) => {
                row.registered = true;
                row.name.clone_from(&registered.name);
                row.email.clone_from(&registered.email);
                row.phone.clone_from(&registered.phone);
                row.company.clone_from(&registered.company);
                row.owner.clone_from(&registered.owner);
                row.stage = if registered.stage.is_empty() {
                    "lead".into()
                } else {
                    registered.stage.clone()
                };
                row.created_at = Some(envelope.occurred_at);
            }
            EventPayload::CustomerProfileChanged(changed) => {
                let fields = [
                    (&changed.name, &mut row.name),
                    (&changed.email, &mut row.email),
                    (&changed.phone, &mut row.phone),
                    (&changed.company, &mut row.company),
                    (&changed.owner, &mut row.owner),
                    (&changed.stage, &mut row.stage),
                ];
                for (change, field) in fields {
                    if let Some(value) = change {
                        field.clone_from(value);
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
                    row.recent_interactions.remove(0);
                }
                row.recent_interactions.push(InteractionView {
                    position: event.position,
                    interaction_id: interaction.interaction_id.clone(),
                    channel: interaction.channel,
                    content: interaction.content.clone(),
                    sentiment_score: interaction.sentiment_score,
                    occurred_at: interaction.occurred_at,
                    source: interaction.source.clone(),
                });
            }
            EventPayload::ActivityLogged(activity) => {
                *row.activity_counts.entry(activity.kind.as_str().to_owned()).or_default() += 1;
                row.last_activity_at = Some(
                    row.last_activity_at
                        .map_or(activity.occurred_at, |last| last.max(activity.occurred_at)),
                );
            }
            EventPayload::Unknown { .. } => return Some(row),
        }
        row.revision = event.position;
        row.updated_at = Some(envelope.occurred_at);
        Some(row)
    }
}
