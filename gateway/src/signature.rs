//! Standard Webhooks verification (<https://www.standardwebhooks.com>), as
//! signed by the official `standardwebhooks` libraries and by Svix.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the
//! signature is HMAC-SHA256 under the secret's bytes (`whsec_` + base64),
//! base64-encoded and prefixed `v1,`. `webhook-signature` may hold several
//! space-separated signatures (key rotation): one match is enough. The timestamp
//! must be within the tolerance of now in either direction, so a captured
//! request cannot be replayed later. Comparison is constant-time.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a `webhook-timestamp` may be from now.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 5 * 60;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused. Each one is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    #[error("header `{0}` is malformed")]
    MalformedHeader(&'static str),
    #[error("timestamp is outside the {tolerance} s tolerance")]
    OutsideTolerance { tolerance: i64 },
    #[error("no signature matches")]
    NoMatch,
    #[error("the secret is not `whsec_` followed by base64")]
    InvalidSecret,
}

impl SignatureError {
    /// The header a client should look at.
    pub fn field(&self) -> &'static str {
        match self {
            Self::MissingHeader(name) | Self::MalformedHeader(name) => name,
            Self::OutsideTolerance { .. } => "webhook-timestamp",
            Self::NoMatch | Self::InvalidSecret => "webhook-signature",
        }
    }
}

/// A signing secret: random bytes, written `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key, not even in debug logs.
        formatter.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// A fresh 32-byte secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = vec![0; 32];
        getrandom::fill(&mut key)?;
        Ok(Self { key })
    }

    /// Parses `whsec_<base64>` (the prefix is optional, as in the official
    /// libraries).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text.trim().strip_prefix(SECRET_PREFIX).unwrap_or(text.trim());
        let key = STANDARD.decode(encoded).map_err(|_| SignatureError::InvalidSecret)?;
        if key.is_empty() {
            return Err(SignatureError::InvalidSecret);
        }
        Ok(Self { key })
    }

    /// The secret as given to senders.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else { return Vec::new() };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// The `webhook-signature` value for a delivery (`v1,<base64>`).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, &timestamp.to_string(), body)))
    }
}

/// The three signature headers of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDelivery<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

impl<'a> SignedDelivery<'a> {
    /// Reads `webhook-*` headers, or Svix's `svix-*` ones. `Ok(None)` when none
    /// of them is present (an unsigned request).
    pub fn from_headers(headers: &'a HeaderMap) -> Result<Option<Self>, SignatureError> {
        let get = |standard: &'static str, svix: &'static str| {
            headers
                .get(standard)
                .or_else(|| headers.get(svix))
                .map(|value| value.to_str().map_err(|_| SignatureError::MalformedHeader(standard)))
        };
        let id = get("webhook-id", "svix-id").transpose()?;
        let timestamp = get("webhook-timestamp", "svix-timestamp").transpose()?;
        let signature = get("webhook-signature", "svix-signature").transpose()?;
        match (id, timestamp, signature) {
            (None, None, None) => Ok(None),
            (Some(id), Some(timestamp), Some(signature)) => {
                if id.is_empty() || id.len() > 256 {
                    return Err(SignatureError::MalformedHeader("webhook-id"));
                }
                Ok(Some(Self { id, timestamp, signature }))
            }
            (None, _, _) => Err(SignatureError::MissingHeader("webhook-id")),
            (_, None, _) => Err(SignatureError::MissingHeader("webhook-timestamp")),
            (_, _, None) => Err(SignatureError::MissingHeader("webhook-signature")),
        }
    }

    /// Checks the timestamp window, then each `v1` signature against each
    /// secret. The body must be the exact bytes received.
    pub fn verify(
        &self,
        secrets: &[WebhookSecret],
        body: &[u8],
        now: i64,
        tolerance: i64,
    ) -> Result<(), SignatureError> {
        let timestamp: i64 = self
            .timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::MalformedHeader("webhook-timestamp"))?;
        if (now - timestamp).abs() > tolerance {
            return Err(SignatureError::OutsideTolerance { tolerance });
        }
        let expected: Vec<Vec<u8>> =
            secrets.iter().map(|secret| secret.mac(self.id, self.timestamp, body)).collect();
        let mut matched = false;
        for candidate in self.signature.split(' ') {
            let Some((version, encoded)) = candidate.split_once(',') else { continue };
            if version != "v1" {
                continue;
            }
            let Ok(given) = STANDARD.decode(encoded) else { continue };
            for mac in &expected {
                // Keep going after a match so timing says nothing about which
                // signature or secret matched.
                matched |= bool::from(mac.as_slice().ct_eq(given.as_slice()));
            }
        }
        if matched { Ok(()) } else { Err(SignatureError::NoMatch) }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    /// The test vector published with the Standard Webhooks specification's
    /// reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        headers.insert("webhook-timestamp", HeaderValue::from_str(timestamp).unwrap());
        headers.insert("webhook-signature", HeaderValue::from_str(signature).unwrap());
        headers
    }

    #[test]
    fn matches_the_specification_vector() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
        assert_eq!(secret.expose(), SPEC_SECRET);
        let headers = headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), SPEC_SIGNATURE);
        let delivery = SignedDelivery::from_headers(&headers).unwrap().unwrap();
        delivery.verify(&[secret], SPEC_BODY, SPEC_TIMESTAMP + 10, 300).unwrap();
    }

    #[test]
    fn refuses_tampering_wrong_secrets_and_stale_timestamps() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let other = WebhookSecret::generate().unwrap();
        let headers = headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), SPEC_SIGNATURE);
        let delivery = SignedDelivery::from_headers(&headers).unwrap().unwrap();
        let now = SPEC_TIMESTAMP;
        assert_eq!(
            delivery.verify(std::slice::from_ref(&secret), b"{\"test\": 1}", now, 300),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            delivery.verify(std::slice::from_ref(&other), SPEC_BODY, now, 300),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            delivery.verify(std::slice::from_ref(&secret), SPEC_BODY, now + 301, 300),
            Err(SignatureError::OutsideTolerance { tolerance: 300 })
        );
        assert_eq!(
            delivery.verify(std::slice::from_ref(&secret), SPEC_BODY, now - 301, 300),
            Err(SignatureError::OutsideTolerance { tolerance: 300 })
        );
        // Rotation: either secret, either of several signatures.
        delivery.verify(&[other.clone(), secret.clone()], SPEC_BODY, now, 300).unwrap();
        let several = format!("v1,AAAA {} v2,xyz {SPEC_SIGNATURE}", other.sign("x", 1, b""));
        let headers = self::headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), &several);
        let delivery = SignedDelivery::from_headers(&headers).unwrap().unwrap();
        delivery.verify(&[secret], SPEC_BODY, now, 300).unwrap();
    }

    #[test]
    fn reads_svix_headers_and_reports_missing_ones() {
        let mut headers = HeaderMap::new();
        assert_eq!(SignedDelivery::from_headers(&headers), Ok(None));
        headers.insert("svix-id", HeaderValue::from_static("msg_1"));
        assert_eq!(
            SignedDelivery::from_headers(&headers),
            Err(SignatureError::MissingHeader("webhook-timestamp"))
        );
        headers.insert("svix-timestamp", HeaderValue::from_static("1"));
        headers.insert("svix-signature", HeaderValue::from_static("v1,abc"));
        let delivery = SignedDelivery::from_headers(&headers).unwrap().unwrap();
        assert_eq!(delivery.id, "msg_1");
        assert_eq!(WebhookSecret::parse("whsec_!!"), Err(SignatureError::InvalidSecret));
    }
}
