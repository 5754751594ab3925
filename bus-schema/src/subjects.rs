//! NATS subjects and header names. Every subject in AgentCRM is built here.

use crate::error::ValidationError;
use crate::stream::{StreamId, validate_id};

/// Name of the JetStream stream that holds canonical events.
pub const EVENTS_STREAM: &str = "CRM_EVENTS";
/// Name of the JetStream work-queue stream that holds raw, unmasked intake.
pub const INGEST_STREAM: &str = "CRM_INGEST";

/// Deduplication id (JetStream).
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Optimistic concurrency on the subject's last sequence (JetStream).
pub const HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// The payload's type, so a consumer can route without decoding.
pub const HEADER_EVENT_TYPE: &str = "Crm-Event-Type";

const EVENTS_PREFIX: &str = "crm.evt";
const INGEST_PREFIX: &str = "crm.ingest";
const VAULT_PREFIX: &str = "crm.vault";
const INBOX_PREFIX: &str = "_INBOX";

/// Queue group of the vault service: each request goes to one masking instance.
pub const VAULT_QUEUE_GROUP: &str = "masking-vault";

/// A NATS subject built by this module.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `crm.evt.<aggregate>.<id>`: the canonical events of one stream.
pub fn event(stream: &StreamId) -> Subject {
    Subject(format!("{EVENTS_PREFIX}.{}.{}", stream.aggregate(), stream.id()))
}

/// `crm.evt.>`: every canonical event.
pub fn all_events() -> Subject {
    Subject(format!("{EVENTS_PREFIX}.>"))
}

/// `crm.evt.<aggregate>.*`: every stream of one aggregate kind.
pub fn aggregate_events(aggregate: &str) -> Subject {
    Subject(format!("{EVENTS_PREFIX}.{aggregate}.*"))
}

/// `crm.ingest.<source>`: raw intake from one source, read only by the masking agent.
pub fn ingest(source: &str) -> Result<Subject, ValidationError> {
    validate_id("source", source)?;
    Ok(Subject(format!("{INGEST_PREFIX}.{source}")))
}

/// `crm.ingest.>`: all raw intake.
pub fn all_ingest() -> Subject {
    Subject(format!("{INGEST_PREFIX}.>"))
}

/// One operation of the masking agent's vault service (request/reply on
/// NATS core, `crm.vault.<operation>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VaultOperation {
    /// Profile fields in, tokens out.
    Tokenize,
    /// A normalised email or phone in, a customer id out.
    Lookup,
    /// Tokens in, personal data out: the only answer that holds personal data.
    Reveal,
    /// Crypto-shredding of one customer.
    Forget,
}

impl VaultOperation {
    pub const ALL: [Self; 4] = [Self::Tokenize, Self::Lookup, Self::Reveal, Self::Forget];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokenize => "tokenize",
            Self::Lookup => "lookup",
            Self::Reveal => "reveal",
            Self::Forget => "forget",
        }
    }
}

/// `crm.vault.<operation>`: requests to the masking agent's vault.
pub fn vault(operation: VaultOperation) -> Subject {
    Subject(format!("{VAULT_PREFIX}.{}", operation.as_str()))
}

/// `crm.vault.>`: every vault request (only the masking agent subscribes).
pub fn all_vault() -> Subject {
    Subject(format!("{VAULT_PREFIX}.>"))
}

/// `_INBOX_<user>`: the reply-inbox prefix of one NATS user, so that the
/// server's allow-lists can give each service its own replies and nobody
/// else's.
pub fn inbox_prefix(user: &str) -> Result<String, ValidationError> {
    validate_id("nats_user", user)?;
    Ok(format!("{INBOX_PREFIX}_{user}"))
}

/// The stream a canonical event subject belongs to.
pub fn parse_event(subject: &str) -> Result<StreamId, ValidationError> {
    let rest = subject
        .strip_prefix(EVENTS_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(|| ValidationError::format("subject", "not a `crm.evt.` subject"))?;
    rest.parse()
        .map_err(|error: ValidationError| ValidationError { field: "subject".into(), ..error })
}

/// Whether `subject` matches `filter` with NATS wildcards (`*` one token, `>`
/// the rest).
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut filter_tokens = filter.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (filter_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(expected), Some(token)) if expected == token => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_subjects() {
        let stream = StreamId::customer("cus_1").unwrap();
        assert_eq!(event(&stream).as_str(), "crm.evt.customer.cus_1");
        assert_eq!(parse_event("crm.evt.customer.cus_1").unwrap(), stream);
        assert_eq!(all_events().as_str(), "crm.evt.>");
        assert_eq!(ingest("hubspot").unwrap().as_str(), "crm.ingest.hubspot");
        assert_eq!(ingest("a.b").unwrap_err().field, "source");
        assert!(parse_event("crm.ingest.x").is_err());
        assert!(parse_event("crm.evt.customer.a.b").is_err());
        assert_eq!(vault(VaultOperation::Reveal).as_str(), "crm.vault.reveal");
        assert!(
            VaultOperation::ALL.iter().all(|op| matches(all_vault().as_str(), vault(*op).as_str()))
        );
        assert_eq!(inbox_prefix("gateway").unwrap(), "_INBOX_gateway");
        assert_eq!(inbox_prefix("a.b").unwrap_err().field, "nats_user");
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(matches("crm.evt.>", "crm.evt.customer.c1"));
        assert!(matches("crm.evt.customer.*", "crm.evt.customer.c1"));
        assert!(!matches("crm.evt.customer.*", "crm.evt.ticket.c1"));
        assert!(!matches("crm.evt.>", "crm.evt"));
        assert!(matches("crm.evt.customer.c1", "crm.evt.customer.c1"));
        assert!(!matches("crm.evt.customer", "crm.evt.customer.c1"));
    }
}
