//! Bearer tokens for Cloud Run calls: Application Default Credentials, or a placeholder for
//! an emulator.
//!
//! Guarantee: a token only ever leaves this module as a sensitive HTTP header value (which
//! `reqwest`/`http` redact from `Debug`); no `Debug`/`Display` impl here, nor any error,
//! prints one.

use std::fmt;
use std::sync::Arc;

use reqwest::header::HeaderValue;

use super::error::{Error, Result};

use crate::error_line::error_line;

/// OAuth scope of every call.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The bearer token sent to an emulator. Not a secret: emulators only check that a
/// bearer token is present, like Google's front ends do before authenticating it.
pub const EMULATOR_TOKEN: &str = "binauthz-operator-emulator";

/// Where bearer tokens come from.
#[derive(Clone)]
pub enum Auth {
    /// Application Default Credentials (Workload Identity / metadata server,
    /// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application-default or user credentials).
    ApplicationDefault(Arc<dyn gcp_auth::TokenProvider>),
    /// A fixed placeholder, for an emulator endpoint.
    Emulator,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ApplicationDefault(_) => "Auth::ApplicationDefault",
            Self::Emulator => "Auth::Emulator",
        })
    }
}

impl Auth {
    /// Finds Application Default Credentials, or fails with an error that says how to
    /// provide them.
    pub async fn application_default() -> Result<Self> {
        match gcp_auth::provider().await {
            Ok(provider) => Ok(Self::ApplicationDefault(provider)),
            Err(err) => Err(Error::NoCredentials {
                detail: error_line(&err),
            }),
        }
    }

    /// The `Authorization` header value for the next request, marked sensitive.
    pub async fn header(&self) -> Result<HeaderValue> {
        let mut value = match self {
            Self::Emulator => HeaderValue::from_static("Bearer binauthz-operator-emulator"),
            Self::ApplicationDefault(provider) => {
                let token = provider
                    .token(&[CLOUD_PLATFORM_SCOPE])
                    .await
                    .map_err(|err| Error::Auth {
                        detail: error_line(&err),
                    })?;
                HeaderValue::try_from(format!("Bearer {}", token.as_str())).map_err(|_| {
                    Error::Auth {
                        detail: "the token source returned a token that is not a valid HTTP header value".into(),
                    }
                })?
            }
        };
        value.set_sensitive(true);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_emulator_header_is_a_sensitive_bearer_token() {
        let header = Auth::Emulator.header().await.unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), format!("Bearer {EMULATOR_TOKEN}"));
        assert!(!format!("{header:?}").contains(EMULATOR_TOKEN));
        assert!(!format!("{:?}", Auth::Emulator).contains(EMULATOR_TOKEN));
    }
}
