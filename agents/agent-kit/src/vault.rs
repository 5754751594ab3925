//! The personal-data boundary as a service: what the gateway and other edges
//! call instead of ever keeping personal data themselves.
//!
//! Only the masking agent implements [`PiiVault`]: it keeps originals encrypted
//! under a per-customer key and hands out tokens (`<EMAIL_1>`, `<PERSON_1>`, …)
//! that are stable for one customer. Canonical events and read models only ever
//! hold those tokens.
//!
//! Embedded, the gateway calls the masking agent's vault in the same process.
//! Distributed, it calls it over NATS: [`NatsPiiVault`] sends requests on
//! `crm.vault.<operation>` (bodies in `bus_schema::vault`) and [`serve`]
//! answers them in the masking agent, in a queue group so several instances
//! share the load. NATS permissions let only the gateway send them and only
//! the masking agent receive them.

use std::sync::Arc;
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_trait::async_trait;
use bus_schema::ValidationError;
use bus_schema::subjects::{self, VaultOperation};
use bus_schema::vault::{
    ForgetReply, ForgetRequest, LookupField, LookupReply, LookupRequest, RevealReply,
    RevealRequest, TokenizeRequest, VaultFault, VaultFaultKind, VaultProfile, VaultReply,
};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::BusError;
use crate::shutdown::Shutdown;

/// Personal fields of a customer profile; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// How a customer can be looked up by personal data without storing it in the
/// clear (the vault keeps a keyed hash of the normalised value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    Email,
    Phone,
}

#[async_trait]
pub trait PiiVault: Send + Sync + 'static {
    /// Replaces each given field by its token for this customer, storing the
    /// original in the vault and indexing email and phone for [`PiiVault::lookup`].
    async fn tokenize_profile(
        &self,
        customer_id: &str,
        profile: ProfileFields,
    ) -> Result<ProfileFields, BusError>;

    /// The customer whose profile holds this (normalised) email or phone.
    async fn lookup(&self, kind: LookupKind, value: &str) -> Result<Option<String>, BusError>;

    /// `text` with this customer's tokens restored, for a viewer allowed to see
    /// personal data. Tokens of a forgotten customer stay tokens.
    async fn reveal(&self, customer_id: &str, text: &str) -> Result<String, BusError>;

    /// Crypto-shreds the customer: destroys their key, sealed tokens and
    /// look-up entries, durably. Idempotent; true if anything was destroyed.
    async fn forget(&self, customer_id: &str) -> Result<bool, BusError>;
}

impl From<ProfileFields> for VaultProfile {
    fn from(profile: ProfileFields) -> Self {
        Self { name: profile.name, email: profile.email, phone: profile.phone }
    }
}

impl From<VaultProfile> for ProfileFields {
    fn from(profile: VaultProfile) -> Self {
        Self { name: profile.name, email: profile.email, phone: profile.phone }
    }
}

impl From<LookupKind> for LookupField {
    fn from(kind: LookupKind) -> Self {
        match kind {
            LookupKind::Email => Self::Email,
            LookupKind::Phone => Self::Phone,
        }
    }
}

impl From<LookupField> for LookupKind {
    fn from(field: LookupField) -> Self {
        match field {
            LookupField::Email => Self::Email,
            LookupField::Phone => Self::Phone,
        }
    }
}

/// How long the gateway waits for the vault service by default: long enough
/// for a flush under load, short enough that a caller gets its 503 quickly.
pub const DEFAULT_VAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The [`PiiVault`] of the masking agent, reached over NATS request/reply.
///
/// No answer within the timeout, no responder, or a lost connection is
/// [`BusError::Unavailable`]: the caller writes nothing and answers 503.
#[derive(Clone)]
pub struct NatsPiiVault {
    client: async_nats::Client,
    timeout: Duration,
}

impl NatsPiiVault {
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    async fn call<Request: Serialize, Reply: DeserializeOwned>(
        &self,
        operation: VaultOperation,
        request: &Request,
    ) -> Result<Reply, BusError> {
        let body = serde_json::to_vec(request)
            .map_err(|error| BusError::Other(format!("cannot encode a vault request: {error}")))?;
        let subject = subjects::vault(operation).into_string();
        crate::nats::ensure_connected(&self.client)?;
        let request =
            async_nats::client::Request::new().payload(body.into()).timeout(Some(self.timeout));
        // The client's own timeout covers a server that is up; the outer one
        // also covers a disconnected client whose publish waits for a reconnect.
        let sent = tokio::time::timeout(self.timeout, self.client.send_request(subject, request))
            .await
            .map_err(|_| BusError::Unavailable("the vault did not answer in time".into()))?;
        let message = sent.map_err(|error| match error.kind() {
            RequestErrorKind::NoResponders => {
                BusError::Unavailable("no vault service is running".into())
            }
            RequestErrorKind::TimedOut => {
                BusError::Unavailable("the vault did not answer in time".into())
            }
            _ => BusError::Unavailable(format!("vault request failed: {error}")),
        })?;
        let reply: VaultReply<Reply> = serde_json::from_slice(&message.payload)
            .map_err(|error| BusError::Other(format!("undecodable vault reply: {error}")))?;
        match reply {
            VaultReply::Ok(reply) => Ok(reply),
            VaultReply::Fault(fault) => Err(fault_to_error(fault)),
        }
    }
}

fn fault_to_error(fault: VaultFault) -> BusError {
    match fault.kind {
        VaultFaultKind::Invalid => BusError::Invalid(ValidationError::format(
            fault.field.unwrap_or_else(|| "body".into()),
            fault.message,
        )),
        VaultFaultKind::Unavailable => BusError::Unavailable(format!("vault: {}", fault.message)),
    }
}

fn error_to_fault(error: BusError) -> VaultFault {
    match error {
        BusError::Invalid(error) => VaultFault::invalid(&error),
        other => VaultFault::unavailable(other.to_string()),
    }
}

#[async_trait]
impl PiiVault for NatsPiiVault {
    async fn tokenize_profile(
        &self,
        customer_id: &str,
        profile: ProfileFields,
    ) -> Result<ProfileFields, BusError> {
        let request =
            TokenizeRequest { customer_id: customer_id.to_owned(), profile: profile.into() };
        let tokens: VaultProfile = self.call(VaultOperation::Tokenize, &request).await?;
        Ok(tokens.into())
    }

    async fn lookup(&self, kind: LookupKind, value: &str) -> Result<Option<String>, BusError> {
        let request = LookupRequest { field: kind.into(), value: value.to_owned() };
        let reply: LookupReply = self.call(VaultOperation::Lookup, &request).await?;
        Ok(reply.customer_id)
    }

    async fn reveal(&self, customer_id: &str, text: &str) -> Result<String, BusError> {
        let request = RevealRequest { customer_id: customer_id.to_owned(), text: text.to_owned() };
        let reply: RevealReply = self.call(VaultOperation::Reveal, &request).await?;
        Ok(reply.text)
    }

    async fn forget(&self, customer_id: &str) -> Result<bool, BusError> {
        let request = ForgetRequest { customer_id: customer_id.to_owned() };
        let reply: ForgetReply = self.call(VaultOperation::Forget, &request).await?;
        Ok(reply.destroyed)
    }
}

/// Answers vault requests on `crm.vault.>` with `vault` until `shutdown`
/// fires. Subscribes in the queue group `masking-vault`, so each request is
/// answered by one of the running instances; requests are answered
/// concurrently. Survives NATS outages: the client resubscribes on reconnect.
pub async fn serve(
    client: async_nats::Client,
    vault: Arc<dyn PiiVault>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let mut requests = client
        .queue_subscribe(subjects::all_vault().into_string(), subjects::VAULT_QUEUE_GROUP.into())
        .await
        .map_err(|error| BusError::Unavailable(format!("cannot serve the vault: {error}")))?;
    // The subscription must be registered before anyone is told the service runs.
    client.flush().await.map_err(|error| BusError::Unavailable(error.to_string()))?;
    tracing::info!(subject = %subjects::all_vault(), "Vault service started");
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let message = tokio::select! {
            () = shutdown.wait() => break,
            message = requests.next() => message,
        };
        let Some(message) = message else { break };
        // Reap finished answers so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        let (client, vault) = (client.clone(), vault.clone());
        tasks.spawn(async move {
            let Some(reply_to) = message.reply.clone() else {
                tracing::warn!(subject = %message.subject, "Vault request without a reply subject");
                return;
            };
            let body = answer(vault.as_ref(), &message.subject, &message.payload).await;
            if let Err(error) = client.publish(reply_to, body.into()).await {
                tracing::warn!(error = %error, "Cannot send a vault reply");
            }
        });
    }
    // Answer what is in hand before stopping.
    while tasks.join_next().await.is_some() {}
    tracing::info!("Vault service stopped");
    Ok(())
}

fn reply<T: Serialize>(result: Result<T, BusError>) -> Vec<u8> {
    let reply = match result {
        Ok(value) => VaultReply::Ok(value),
        Err(error) => VaultReply::Fault(error_to_fault(error)),
    };
    serde_json::to_vec(&reply).unwrap_or_else(|_| {
        br#"{"fault":{"kind":"unavailable","message":"cannot encode the reply"}}"#.to_vec()
    })
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, BusError> {
    // The error names the position only: serde's message could quote the
    // request, which may hold personal data.
    serde_json::from_slice(payload).map_err(|error| {
        BusError::Invalid(ValidationError::format(
            "body",
            format!("not a vault request (line {}, column {})", error.line(), error.column()),
        ))
    })
}

/// The reply body to one request.
async fn answer(vault: &dyn PiiVault, subject: &str, payload: &[u8]) -> Vec<u8> {
    let operation = VaultOperation::ALL
        .into_iter()
        .find(|operation| subjects::vault(*operation).as_str() == subject);
    match operation {
        Some(VaultOperation::Tokenize) => reply(match decode::<TokenizeRequest>(payload) {
            Ok(request) => vault
                .tokenize_profile(&request.customer_id, request.profile.into())
                .await
                .map(VaultProfile::from),
            Err(error) => Err(error),
        }),
        Some(VaultOperation::Lookup) => reply(match decode::<LookupRequest>(payload) {
            Ok(request) => vault
                .lookup(request.field.into(), &request.value)
                .await
                .map(|customer_id| LookupReply { customer_id }),
            Err(error) => Err(error),
        }),
        Some(VaultOperation::Reveal) => reply(match decode::<RevealRequest>(payload) {
            Ok(request) => vault
                .reveal(&request.customer_id, &request.text)
                .await
                .map(|text| RevealReply { text }),
            Err(error) => Err(error),
        }),
        Some(VaultOperation::Forget) => reply(match decode::<ForgetRequest>(payload) {
            Ok(request) => {
                vault.forget(&request.customer_id).await.map(|destroyed| ForgetReply { destroyed })
            }
            Err(error) => Err(error),
        }),
        None => reply::<()>(Err(BusError::Invalid(ValidationError::format(
            "subject",
            "not a vault operation",
        )))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Remembers what it was asked; tokens are `<EMAIL_1>`-like stand-ins.
    #[derive(Default)]
    struct Recording {
        forgotten: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl PiiVault for Recording {
        async fn tokenize_profile(
            &self,
            customer_id: &str,
            profile: ProfileFields,
        ) -> Result<ProfileFields, BusError> {
            if customer_id == "gone" {
                return Err(ValidationError::format("customer_id", "was forgotten").into());
            }
            Ok(ProfileFields {
                name: profile.name.map(|_| "<PERSON_1>".into()),
                email: profile.email.map(|_| "<EMAIL_1>".into()),
                phone: profile.phone.map(|_| "<PHONE_1>".into()),
            })
        }

        async fn lookup(&self, kind: LookupKind, value: &str) -> Result<Option<String>, BusError> {
            Ok((kind == LookupKind::Phone && value == "13812345678").then(|| "cus_1".into()))
        }

        async fn reveal(&self, _customer_id: &str, text: &str) -> Result<String, BusError> {
            Err(BusError::Unavailable(format!("store closed while revealing {} bytes", text.len())))
        }

        async fn forget(&self, customer_id: &str) -> Result<bool, BusError> {
            self.forgotten.lock().unwrap().push(customer_id.to_owned());
            Ok(true)
        }
    }

    async fn ask(vault: &Recording, operation: VaultOperation, body: &str) -> String {
        let reply = answer(vault, subjects::vault(operation).as_str(), body.as_bytes()).await;
        String::from_utf8(reply).unwrap()
    }

    #[tokio::test]
    async fn requests_are_answered_with_tokens_ids_or_faults() {
        let vault = Recording::default();
        let request =
            r#"{"customer_id":"cus_1","profile":{"name":"Ann Lee","email":"ann@example.com"}}"#;
        assert_eq!(
            ask(&vault, VaultOperation::Tokenize, request).await,
            r#"{"ok":{"name":"<PERSON_1>","email":"<EMAIL_1>"}}"#
        );
        let request = r#"{"field":"phone","value":"13812345678"}"#;
        assert_eq!(
            ask(&vault, VaultOperation::Lookup, request).await,
            r#"{"ok":{"customer_id":"cus_1"}}"#
        );
        assert_eq!(
            ask(&vault, VaultOperation::Forget, r#"{"customer_id":"cus_1"}"#).await,
            r#"{"ok":{"destroyed":true}}"#
        );
        assert_eq!(*vault.forgotten.lock().unwrap(), ["cus_1"]);

        // Refusals keep their kind and field across the wire.
        let refused =
            ask(&vault, VaultOperation::Tokenize, r#"{"customer_id":"gone","profile":{}}"#);
        let reply: VaultReply<VaultProfile> = serde_json::from_str(&refused.await).unwrap();
        let VaultReply::Fault(fault) = reply else { panic!("not a fault") };
        assert!(
            matches!(fault_to_error(fault), BusError::Invalid(error) if error.field == "customer_id")
        );
        let reply = ask(&vault, VaultOperation::Reveal, r#"{"customer_id":"c","text":"x"}"#).await;
        let reply: VaultReply<RevealReply> = serde_json::from_str(&reply).unwrap();
        let VaultReply::Fault(fault) = reply else { panic!("not a fault") };
        assert!(matches!(fault_to_error(fault), BusError::Unavailable(_)));
    }

    #[tokio::test]
    async fn a_malformed_request_is_refused_without_quoting_it() {
        let vault = Recording::default();
        let request =
            r#"{"customer_id":"cus_1","profile":{"email":"ann@example.com","ssn":"078-05-1120"}}"#;
        let reply = ask(&vault, VaultOperation::Tokenize, request).await;
        assert!(reply.starts_with(r#"{"fault":{"kind":"invalid","field":"body""#), "{reply}");
        assert!(!reply.contains("ann@example.com") && !reply.contains("078-05-1120"), "{reply}");
        assert!(!reply.contains("ssn"), "{reply}");
        let reply = answer(&vault, "crm.vault.export", b"{}").await;
        assert!(String::from_utf8(reply).unwrap().contains(r#""field":"subject""#));
        assert!(vault.forgotten.lock().unwrap().is_empty());
    }
}
