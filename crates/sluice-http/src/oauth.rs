//! OAuth 2 client credentials (RFC 6749 §4.4): sluice holds the client secret, fetches an access
//! token, keeps it until shortly before it expires, and fetches a new one then (one fetch at a
//! time, whatever the number of requests waiting for it).

use crate::target::UpstreamClient;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sluice_core::Secret;
use std::time::{Duration, Instant};

/// A token is fetched again this long before it expires.
const MARGIN: Duration = Duration::from_secs(30);
/// Used when the server does not say how long a token lasts.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is kept at most this long, whatever the server says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A token the upstream refused is forgotten only if it was fetched longer ago than this: an
/// agent calling an endpoint that answers 401 for its own reasons must not make sluice hammer
/// the token endpoint (which may throttle or lock the client out).
const MIN_REFETCH: Duration = Duration::from_secs(10);

pub struct TokenCache {
    token_url: String,
    client_id: String,
    scope: String,
    client: UpstreamClient,
    /// The token, until when it is used, and when it was fetched.
    current: tokio::sync::Mutex<Option<(Secret, Instant, Instant)>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("token_url", &self.token_url).finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(token_url: String, client_id: String, scope: String, client: UpstreamClient) -> TokenCache {
        TokenCache { token_url, client_id, scope, client, current: tokio::sync::Mutex::new(None) }
    }

    /// A valid access token, fetched with `client_secret` when none is kept.
    pub async fn token(&self, client_secret: &Secret) -> Result<Secret, String> {
        let mut current = self.current.lock().await;
        if let Some((token, until, _)) = current.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch(client_secret).await?;
        let now = Instant::now();
        *current = Some((token.clone(), now + lifetime.min(MAX_LIFETIME).saturating_sub(MARGIN), now));
        Ok(token)
    }

    /// Forgets the kept token (the upstream refused it), unless it was fetched just now.
    pub async fn forget(&self) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(_, _, fetched)| fetched.elapsed() >= MIN_REFETCH) {
            *current = None;
        }
    }

    async fn fetch(&self, client_secret: &Secret) -> Result<(Secret, Duration), String> {
        let form = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut body = "grant_type=client_credentials".to_string();
        if !self.scope.is_empty() {
            body.push_str("&scope=");
            body.push_str(&form(&self.scope));
        }
        // client_secret_basic: the id and secret form-encoded, then base64 (RFC 6749 §2.3.1).
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form(&self.client_id),
            form(client_secret.expose())
        ));
        let request = hyper::Request::post(&self.token_url)
            .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::AUTHORIZATION, format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("the token request cannot be built: {e}"))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| format!("the token endpoint {} did not answer within 10 s", self.token_url))?
            .map_err(|e| format!("the token endpoint {} cannot be reached: {e}", self.token_url))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| format!("the token endpoint's answer cannot be read: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("the token endpoint {} answered {status}", self.token_url));
        }
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| "the token endpoint's answer is not JSON".to_string())?;
        let token = answer["access_token"].as_str().ok_or("the token endpoint's answer has no access_token")?;
        let lifetime = answer["expires_in"].as_u64().map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((Secret::new(token), lifetime))
    }
}
