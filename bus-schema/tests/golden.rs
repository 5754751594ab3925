//! Golden fixtures: bytes written by this version of the contract must decode, to
//! the same JSON, in every later version. The fixtures under `tests/fixtures/` are
//! written once (`UPDATE_GOLDEN=1 cargo test -p bus-schema --test golden` creates
//! missing ones) and never rewritten: a failing fixture means a breaking change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use bus_schema::{
    ActivityKind, ActivityLogged, Actor, ActorKind, Channel, CustomerForgotten,
    CustomerProfileChanged, CustomerRegistered, EventEnvelope, EventPayload, InteractionRecorded,
    StreamId, proto,
};
use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 123_000_000).unwrap()
}

fn envelope(n: u128, payload: EventPayload) -> EventEnvelope {
    let customer = payload.customer_id().unwrap().to_owned();
    EventEnvelope {
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        stream: StreamId::customer(&customer).unwrap(),
        schema_version: 1,
        occurred_at: at(1_790_000_000),
        recorded_at: at(1_790_000_001),
        correlation_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        causation_id: (n > 1).then(|| Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
        actor: Actor::new(ActorKind::Integration, "hubspot"),
        payload,
    }
}

fn samples() -> Vec<(&'static str, EventEnvelope)> {
    vec![
        (
            "customer_registered",
            envelope(
                1,
                EventPayload::CustomerRegistered(CustomerRegistered {
                    customer_id: "cus_12345".into(),
                    name: "<PERSON_1>".into(),
                    email: "<EMAIL_1>".into(),
                    phone: String::new(),
                    company: "Acme 有限公司".into(),
                    owner: "alice".into(),
                    stage: "lead".into(),
                }),
            ),
        ),
        (
            "customer_profile_changed",
            envelope(
                2,
                EventPayload::CustomerProfileChanged(CustomerProfileChanged {
                    customer_id: "cus_12345".into(),
                    stage: Some("qualified".into()),
                    ..Default::default()
                }),
            ),
        ),
        (
            "interaction_recorded",
            envelope(
                3,
                EventPayload::InteractionRecorded(InteractionRecorded {
                    interaction_id: "int_001".into(),
                    customer_id: "cus_12345".into(),
                    channel: Channel::Email,
                    content: "我对你们的新服务非常感兴趣! <EMAIL_1>".into(),
                    sentiment_score: Some(0.8),
                    occurred_at: at(1_789_999_000),
                    source: "default".into(),
                }),
            ),
        ),
        (
            "activity_logged",
            envelope(
                4,
                EventPayload::ActivityLogged(ActivityLogged {
                    activity_id: "act_9".into(),
                    customer_id: "cus_12345".into(),
                    kind: ActivityKind::MeetingBooked,
                    detail: "demo".into(),
                    occurred_at: at(1_789_999_500),
                }),
            ),
        ),
        (
            "customer_forgotten",
            envelope(
                5,
                EventPayload::CustomerForgotten(CustomerForgotten {
                    customer_id: "cus_12345".into(),
                    reason: "erasure request T-42".into(),
                }),
            ),
        ),
    ]
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn fixtures_written_before_still_decode_to_the_same_json() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, event) in samples() {
        let bytes_path = fixtures().join(format!("{name}.binpb"));
        let json_path = fixtures().join(format!("{name}.json"));
        if !bytes_path.exists() {
            assert!(
                update,
                "missing fixture {}: run with UPDATE_GOLDEN=1 once",
                bytes_path.display()
            );
            std::fs::write(&bytes_path, event.encode()).unwrap();
            let json = serde_json::to_string_pretty(&event.to_json()).unwrap();
            std::fs::write(&json_path, json + "\n").unwrap();
        }
        let bytes = std::fs::read(&bytes_path).unwrap();
        let decoded =
            EventEnvelope::decode(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(decoded.to_json(), expected, "{name}: decoded JSON changed");
        assert_eq!(decoded, event, "{name}: decoded event changed");
    }
}

/// What `InteractionRecorded` might look like after a field is added.
#[derive(Clone, PartialEq, Message)]
struct InteractionRecordedWithLanguage {
    #[prost(string, tag = "1")]
    interaction_id: String,
    #[prost(string, tag = "2")]
    customer_id: String,
    #[prost(int32, tag = "3")]
    channel: i32,
    #[prost(string, tag = "4")]
    content: String,
    #[prost(double, optional, tag = "5")]
    sentiment_score: Option<f64>,
    #[prost(message, optional, tag = "6")]
    occurred_at: Option<prost_types::Timestamp>,
    #[prost(string, tag = "7")]
    source: String,
    #[prost(string, tag = "8")]
    language: String,
}

#[test]
fn adding_a_field_keeps_old_and_new_bytes_readable() {
    let bytes = std::fs::read(fixtures().join("interaction_recorded.binpb")).unwrap();
    let envelope = proto::Envelope::decode(bytes.as_slice()).unwrap();

    // Today's bytes, read by a build that knows one more field: it is absent.
    let newer = InteractionRecordedWithLanguage::decode(&envelope.payload[..]).unwrap();
    assert_eq!(newer.content, "我对你们的新服务非常感兴趣! <EMAIL_1>");
    assert_eq!(newer.language, "");

    // Bytes from that newer build, read today: the unknown field is skipped.
    let mut with_language = newer.clone();
    with_language.language = "zh".into();
    let mut newer_envelope = envelope.clone();
    newer_envelope.payload = with_language.encode_to_vec().into();
    let decoded = EventEnvelope::decode(&newer_envelope.encode_to_vec()).unwrap();
    let EventPayload::InteractionRecorded(interaction) = decoded.payload else {
        panic!("wrong payload type")
    };
    assert_eq!(interaction.content, newer.content);
    assert_eq!(interaction.sentiment_score, Some(0.8));
}
