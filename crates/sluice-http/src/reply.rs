//! sluice's own answers: a refusal or an error as JSON an agent can act on
//! (`{error, rule, reason, detail, hint, review_id, review_url}`), with the status that says what
//! kind of answer it is.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use sluice_core::{Refusal, RefusalCause};

/// How long an agent is told to wait before asking again about a pending review.
pub const RETRY_AFTER_S: u64 = 30;

/// How long an agent is told to wait when sluice is busy (503): requests in flight finish in
/// about that time, and clients that honour `Retry-After` (urllib3, the OpenAI and Anthropic SDKs)
/// then back off instead of retrying at once.
pub const BUSY_RETRY_AFTER_S: u64 = 1;

/// A name the upstream wrote (a coding, a charset) as a refusal and its record quote it: only the
/// characters such names are made of, at most 40 (the field is the upstream's to fill, with
/// anything).
pub fn quoted_name(value: &str) -> String {
    value.chars().filter(|c| c.is_ascii_alphanumeric() || " ,-_.:".contains(*c)).take(40).collect()
}

#[derive(Serialize)]
pub struct Answer {
    /// What happened, as a code: `denied`, `review_pending`, `bad_request`, `unauthenticated`,
    /// `no_route`, `upstream_unavailable`, `upstream_timeout`, …
    pub error: &'static str,
    pub rule: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub review_id: Option<i64>,
    pub review_url: Option<String>,
}

impl Answer {
    pub fn new(error: &'static str, reason: impl Into<String>, hint: impl Into<String>) -> Answer {
        Answer {
            error,
            rule: None,
            reason: reason.into(),
            detail: None,
            hint: Some(hint.into()),
            review_id: None,
            review_url: None,
        }
    }

    /// A refusal by policy (or a pending review, with where to look at it).
    pub fn refusal(refusal: &Refusal, api_url: Option<&str>) -> (StatusCode, Answer) {
        let review_id = match refusal.cause {
            RefusalCause::Pending { review_id } => Some(review_id),
            _ => None,
        };
        let (status, error) = match (review_id, refusal.cause) {
            (Some(_), _) => (StatusCode::PRECONDITION_REQUIRED, "review_pending"),
            (None, RefusalCause::Unparseable) => (StatusCode::BAD_REQUEST, "unreadable"),
            _ => (StatusCode::FORBIDDEN, "denied"),
        };
        let answer = Answer {
            error,
            rule: Some(refusal.rule.clone()),
            reason: refusal.reason.clone(),
            detail: refusal.detail.clone(),
            hint: refusal.hint.clone(),
            review_id,
            review_url: review_id.zip(api_url).map(|(id, url)| format!("{url}/api/v1/reviews/{id}")),
        };
        (status, answer)
    }

    pub fn with_rule(mut self, rule: &str) -> Answer {
        self.rule = Some(rule.to_string());
        self
    }

    /// The hint with `more` after what it said.
    pub fn with_more_hint(mut self, more: String) -> Answer {
        self.hint = Some(match self.hint.take() {
            Some(hint) => format!("{hint}; {more}"),
            None => more,
        });
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Answer {
        self.detail = Some(detail.into());
        self
    }

    pub fn into_response(self, status: StatusCode) -> Response<Full<Bytes>> {
        let review = self.review_id;
        let body = serde_json::to_vec_pretty(&self).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(id) = review {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
            headers.insert("x-sluice-review", HeaderValue::from(id));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER_S));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sluice\""));
        }
        response
    }
}
