//! A Pub/Sub pull subscriber over Pub/Sub's REST API (`:pull`, `:acknowledge`), on the
//! operator's reqwest stack: real Pub/Sub with Application Default Credentials, or the
//! emulator named by `PUBSUB_EMULATOR_HOST` (plain HTTP, no credentials).
//!
//! # Guarantees
//! - A pull waits (long poll) up to [`PULL_TIMEOUT`] for messages; an empty answer is not
//!   an error.
//! - Errors are one line naming the call and the subscription; a token never appears in
//!   one (see [`crate::cloudrun::auth`]).

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::cloudrun::auth::Auth;
use crate::cloudrun::client::USER_AGENT;
use crate::error_line::error_line;

/// Pub/Sub's endpoint.
pub const PUBSUB_BASE_URL: &str = "https://pubsub.googleapis.com";
/// Environment variable naming the Pub/Sub emulator (`host:port`).
pub const EMULATOR_HOST_ENV: &str = "PUBSUB_EMULATOR_HOST";
/// How long one pull may wait for messages before it answers empty.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// A subscription name, `projects/P/subscriptions/S`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionName(String);

impl SubscriptionName {
    /// The full name as Pub/Sub spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SubscriptionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SubscriptionName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["projects", p, "subscriptions", n] if !p.is_empty() && n.len() >= 3 => {
                Ok(Self(s.to_owned()))
            }
            _ => Err(format!(
                "{s:?} is not a subscription name: expected projects/PROJECT/subscriptions/NAME (NAME at least 3 characters)"
            )),
        }
    }
}

/// What can go wrong talking to Pub/Sub. Display is one line.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// No credentials (and no emulator).
    #[error(
        "cannot find Google credentials for Pub/Sub: {0} (set {EMULATOR_HOST_ENV} for an emulator)"
    )]
    Credentials(String),
    /// The request failed before an answer.
    #[error("{call} {subscription}: no answer from Pub/Sub: {detail}")]
    Transport {
        /// `pull` or `acknowledge`.
        call: &'static str,
        /// The subscription.
        subscription: String,
        /// What went wrong.
        detail: String,
    },
    /// Pub/Sub answered with an error.
    #[error("{call} {subscription}: Pub/Sub answered HTTP {status}: {message}")]
    Api {
        /// `pull` or `acknowledge`.
        call: &'static str,
        /// The subscription.
        subscription: String,
        /// HTTP status.
        status: u16,
        /// Google's message (clipped).
        message: String,
    },
    /// The answer could not be read.
    #[error("{call} {subscription}: unreadable answer from Pub/Sub: {detail}")]
    Decode {
        /// `pull` or `acknowledge`.
        call: &'static str,
        /// The subscription.
        subscription: String,
        /// What was wrong.
        detail: String,
    },
}

/// One message as pulled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Acknowledges this delivery.
    pub ack_id: String,
    /// The message id (the same on every redelivery).
    pub message_id: String,
    /// When Pub/Sub accepted the message, RFC 3339 (the same on every redelivery).
    pub publish_time: String,
    /// The decoded payload, or why it could not be decoded.
    pub data: Result<Vec<u8>, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<RawReceived>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReceived {
    ack_id: String,
    message: RawMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    publish_time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PullRequest {
    max_messages: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AckRequest<'a> {
    ack_ids: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModifyAckDeadlineRequest<'a> {
    ack_ids: &'a [String],
    ack_deadline_seconds: u32,
}

/// A pull subscriber of one subscription.
#[derive(Clone, Debug)]
pub struct Subscriber {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    subscription: SubscriptionName,
}

impl Subscriber {
    /// A subscriber of `subscription`: the emulator at `$PUBSUB_EMULATOR_HOST` when set,
    /// else real Pub/Sub with Application Default Credentials.
    ///
    /// # Errors
    /// [`PubSubError::Credentials`] when there is no emulator and no credentials.
    pub async fn from_env(subscription: SubscriptionName) -> Result<Self, PubSubError> {
        match std::env::var(EMULATOR_HOST_ENV)
            .ok()
            .filter(|h| !h.trim().is_empty())
        {
            Some(host) => Ok(Self::emulator(&host, subscription)),
            None => {
                let auth = Auth::application_default()
                    .await
                    .map_err(|e| PubSubError::Credentials(e.to_string()))?;
                Ok(Self::with(PUBSUB_BASE_URL.to_owned(), auth, subscription))
            }
        }
    }

    /// A subscriber of the Pub/Sub emulator at `host:port` (plain HTTP).
    pub fn emulator(host: &str, subscription: SubscriptionName) -> Self {
        Self::with(
            format!("http://{}", host.trim()),
            Auth::Emulator,
            subscription,
        )
    }

    fn with(base: String, auth: Auth, subscription: SubscriptionName) -> Self {
        // Building a client without custom TLS roots cannot fail; fall back to the default.
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(PULL_TIMEOUT + Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base,
            auth,
            subscription,
        }
    }

    /// The subscription read.
    pub fn subscription(&self) -> &SubscriptionName {
        &self.subscription
    }

    /// Pulls up to `max` messages, waiting up to [`PULL_TIMEOUT`] for the first.
    ///
    /// # Errors
    /// [`PubSubError`] when Pub/Sub cannot be reached or refuses.
    #[tracing::instrument(skip(self), fields(subscription = %self.subscription))]
    pub async fn pull(&self, max: u32) -> Result<Vec<Received>, PubSubError> {
        let answer: PullResponse = self
            .post("pull", &PullRequest { max_messages: max })
            .await?;
        let engine = base64::engine::general_purpose::STANDARD;
        Ok(answer
            .received_messages
            .into_iter()
            .map(|r| Received {
                ack_id: r.ack_id,
                message_id: r.message.message_id,
                publish_time: r.message.publish_time,
                data: engine
                    .decode(r.message.data.unwrap_or_default())
                    .map_err(|e| format!("message data is not base64: {e}")),
            })
            .collect())
    }

    /// Acknowledges deliveries (nothing is sent for none).
    ///
    /// # Errors
    /// [`PubSubError`] when Pub/Sub cannot be reached or refuses.
    #[tracing::instrument(skip_all, fields(subscription = %self.subscription, n = ack_ids.len()))]
    pub async fn acknowledge(&self, ack_ids: &[String]) -> Result<(), PubSubError> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        let _: serde_json::Value = self.post("acknowledge", &AckRequest { ack_ids }).await?;
        Ok(())
    }

    /// Hands deliveries back unacknowledged (`modifyAckDeadline` to 0): Pub/Sub delivers
    /// them again at once, to whichever subscriber pulls next.
    ///
    /// # Errors
    /// [`PubSubError`] when Pub/Sub cannot be reached or refuses.
    #[tracing::instrument(skip_all, fields(subscription = %self.subscription, n = ack_ids.len()))]
    pub async fn nack(&self, ack_ids: &[String]) -> Result<(), PubSubError> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        let body = ModifyAckDeadlineRequest {
            ack_ids,
            ack_deadline_seconds: 0,
        };
        let _: serde_json::Value = self.post("modifyAckDeadline", &body).await?;
        Ok(())
    }

    async fn post<B: Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        body: &B,
    ) -> Result<T, PubSubError> {
        let subscription = || self.subscription.to_string();
        let url = format!("{}/v1/{}:{call}", self.base, self.subscription);
        let mut request = self.http.post(url).json(body);
        if !matches!(self.auth, Auth::Emulator) {
            let header = self
                .auth
                .header()
                .await
                .map_err(|e| PubSubError::Transport {
                    call,
                    subscription: subscription(),
                    detail: e.to_string(),
                })?;
            request = request.header(reqwest::header::AUTHORIZATION, header);
        }
        let response = request.send().await.map_err(|e| PubSubError::Transport {
            call,
            subscription: subscription(),
            detail: error_line(&e),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| PubSubError::Transport {
            call,
            subscription: subscription(),
            detail: error_line(&e),
        })?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(PubSubError::Api {
                call,
                subscription: subscription(),
                status: status.as_u16(),
                message: crate::cloudrun::error::clip(&message, 300),
            });
        }
        let text = if text.trim().is_empty() { "{}" } else { &text };
        serde_json::from_str(text).map_err(|e| PubSubError::Decode {
            call,
            subscription: subscription(),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_names_are_checked() {
        assert!("projects/acme-ops/subscriptions/run-audit"
            .parse::<SubscriptionName>()
            .is_ok());
        for bad in [
            "run-audit",
            "projects/acme-ops/topics/run-audit",
            "projects//subscriptions/run-audit",
            "projects/acme-ops/subscriptions/s",
        ] {
            let err = bad.parse::<SubscriptionName>().unwrap_err();
            assert!(err.contains("projects/PROJECT/subscriptions/NAME"), "{err}");
        }
    }
}
