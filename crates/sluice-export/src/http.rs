//! The HTTP sink: each batch one POST of JSON lines (`application/x-ndjson`), with the batch's
//! first and last sequence numbers in headers so that a receiver can drop what it has already
//! seen (delivery is at least once). Anything but a 2xx answer fails the batch, which is sent
//! again, whole and in order.

use crate::{Document, Transport};
use sluice_config::HttpSink;
use std::time::Duration;

pub(crate) struct HttpSender {
    client: reqwest::Client,
    url: String,
    /// The URL as logged: without credentials or query (a secret-bearing ingest URL stays out
    /// of sluice's log).
    shown: String,
    bearer: Option<String>,
}

/// `url` without its user, password and query.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            if parsed.query().is_some() {
                parsed.set_query(Some("redacted"));
            }
            parsed.to_string()
        }
        Err(_) => "the configured URL".into(),
    }
}

impl HttpSender {
    pub(crate) fn new(settings: &HttpSink) -> Result<HttpSender, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_s))
            // A redirect would turn the POST into a bodiless GET whose 2xx looks like delivery:
            // any 3xx fails the batch instead (give the final URL).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if settings.url.starts_with("https://") {
            builder = builder.use_preconfigured_tls((*crate::tls::client_config(settings.ca_file.as_deref())?).clone());
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        let bearer = match &settings.bearer_token_file {
            None => None,
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("bearer_token_file {}: {e}", path.display()))?
                    .trim()
                    .to_string(),
            ),
        };
        Ok(HttpSender { client, url: settings.url.clone(), shown: shown(&settings.url), bearer })
    }
}

#[async_trait::async_trait]
impl Transport for HttpSender {
    async fn deliver(&mut self, docs: &[Document]) -> Result<(), String> {
        let (Some(first), Some(last)) = (docs.first(), docs.last()) else { return Ok(()) };
        let body = crate::document::json_lines(docs);
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-ndjson")
            .header("x-sluice-first-seq", first.seq)
            .header("x-sluice-last-seq", last.seq)
            .body(body);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST {}: {}", self.shown, sluice_core::error_chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let said = response.text().await.unwrap_or_default();
        let said: String = said.chars().take(200).collect();
        Err(format!("POST {} answered {status}: {said}", self.shown))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_logged_url_carries_no_credentials_or_query() {
        assert_eq!(
            super::shown("https://u:p@siem.example/ingest?api-key=s3cret"),
            "https://siem.example/ingest?redacted"
        );
        assert_eq!(super::shown("http://127.0.0.1:9/x"), "http://127.0.0.1:9/x");
    }
}
