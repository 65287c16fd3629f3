//! Review notifications: a JSON document or a Slack message POSTed to each configured webhook,
//! off the caller's path, retried a few times. Statement text is masked like a recording: a
//! webhook may leave the organisation, the approver reads the exact text through the API.

use serde_json::{Value, json};
use sluice_config::{WebhookConfig, WebhookFormat};
use sluice_core::review::{Review, Subject};
use sluice_mask::Masking;
use std::sync::Arc;
use std::time::Duration;

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Notifier {
    hooks: Vec<WebhookConfig>,
    client: Option<reqwest::Client>,
    base_url: String,
    masking: Arc<Masking>,
}

impl Notifier {
    pub fn new(hooks: Vec<WebhookConfig>, base_url: String, masking: Arc<Masking>) -> Notifier {
        let client = if hooks.is_empty() {
            None
        } else {
            match reqwest::Client::builder()
                .timeout(TIMEOUT)
                .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
                .build()
            {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the webhook client; review notifications are off");
                    None
                }
            }
        };
        Notifier { hooks, client, base_url, masking }
    }

    pub fn review_url(&self, id: i64) -> String {
        format!("{}/api/v1/reviews/{id}", self.base_url)
    }

    /// Sends `event` about `review` to every webhook that wants it, in the background.
    pub fn send(&self, event: &'static str, review: &Review, actor: &str) {
        let Some(client) = &self.client else { return };
        for hook in self.hooks.iter().filter(|h| h.events.is_empty() || h.events.iter().any(|e| e == event)) {
            let body = match hook.format {
                WebhookFormat::Json => self.json(event, review, actor),
                WebhookFormat::Slack => self.slack(event, review, actor),
            };
            let (client, url) = (client.clone(), hook.url.clone());
            tokio::spawn(async move {
                for attempt in 1..=ATTEMPTS {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => return,
                        Ok(r) => {
                            tracing::warn!(%url, status = %r.status(), attempt, "review webhook refused the notification")
                        }
                        Err(e) => {
                            tracing::warn!(%url, error = %e, attempt, "review webhook unreachable")
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
                tracing::error!(%url, "gave up sending a review notification");
            });
        }
    }

    pub fn masked(&self, text: &str) -> String {
        self.masking.mask_text(text).unwrap_or_else(|| text.to_string())
    }

    /// sluice's own document: the event, the review as the API shows it (statement masked), and
    /// where to act on it.
    pub fn json(&self, event: &str, review: &Review, actor: &str) -> Value {
        let subject = match &review.subject {
            Subject::Statement { text, hash } => {
                json!({"kind": "statement", "text": self.masked(text), "hash": hash})
            }
            Subject::Access { policy, duration } => {
                json!({"kind": "access", "policy": policy, "duration": duration})
            }
        };
        json!({
            "event": event,
            "actor": actor,
            "review": {
                "id": review.id,
                "status": review.status,
                "requester": review.requester,
                "connection": review.connection,
                "rule": review.rule,
                "reason": review.reason,
                "subject": subject,
                "approvers": review.approvers,
                "approvals_needed": review.approvals_needed,
                "approvals": review.votes.iter().map(|v| &v.approver).collect::<Vec<_>>(),
                "created_at_us": review.created_at_us,
                "expires_at_us": review.expires_at_us,
                "denial_reason": review.denial_reason,
            },
            "url": self.review_url(review.id),
            "approve": format!("sluice review approve {}", review.id),
            "deny": format!("sluice review deny {} --reason \"…\"", review.id),
        })
    }

    /// A Slack incoming-webhook message.
    pub fn slack(&self, event: &str, review: &Review, actor: &str) -> Value {
        let what = match &review.subject {
            Subject::Statement { text, .. } => {
                format!("```{}```", self.masked(text).replace("```", "'''"))
            }
            Subject::Access { policy, duration } => {
                format!("access under policy *{policy}* for {duration}")
            }
        };
        let headline = match event {
            "requested" => format!(
                "Review #{} requested by *{}* on *{}* (rule *{}*): {}",
                review.id, review.requester, review.connection, review.rule, review.reason
            ),
            "denied" => {
                format!("Review #{} denied by *{actor}*: {}", review.id, review.denial_reason.as_deref().unwrap_or(""))
            }
            other => format!("Review #{} {other} by *{actor}*", review.id),
        };
        let url = self.review_url(review.id);
        json!({
            "text": format!("{headline} — {url}"),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("{headline}\n{what}")}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                    "<{url}|Review #{}> · approve: `sluice review approve {}` · approvers: {} · approvals needed: {}",
                    review.id, review.id, review.approvers.join(", "), review.approvals_needed
                )}]}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::review::{NewReview, ReviewRules};
    use sluice_mask::{MaskingSpec, TokenKey};

    fn notifier() -> Notifier {
        let masking =
            sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([7; 32])).expect("default masking compiles");
        Notifier::new(Vec::new(), "https://sluice.example".into(), Arc::new(masking))
    }

    fn review() -> Review {
        NewReview {
            subject: Subject::statement("UPDATE people SET email = 'ada@example.com' WHERE id = 1"),
            requester: "agent".into(),
            connection: "shop".into(),
            rule: "changes".into(),
            reason: "changes need a review".into(),
            rules: ReviewRules { approvers: vec!["dba".into()], ..ReviewRules::default() },
        }
        .into_review(42, 1_000)
    }

    #[test]
    fn the_json_document_links_the_review_and_masks_the_statement() {
        let doc = notifier().json("requested", &review(), "agent");
        assert_eq!(doc["event"], "requested");
        assert_eq!(doc["review"]["id"], 42);
        assert_eq!(doc["url"], "https://sluice.example/api/v1/reviews/42");
        assert_eq!(doc["approve"], "sluice review approve 42");
        let text = doc["review"]["subject"]["text"].as_str().unwrap();
        assert!(!text.contains("ada@example.com") && text.contains("[redacted:email]"), "{text}");
    }

    #[test]
    fn the_slack_message_has_text_blocks_and_the_link() {
        let msg = notifier().slack("requested", &review(), "agent");
        let text = msg["text"].as_str().unwrap();
        assert!(text.starts_with("Review #42 requested by *agent*"), "{text}");
        assert!(text.ends_with("https://sluice.example/api/v1/reviews/42"));
        assert!(!msg.to_string().contains("ada@example.com"));
        assert_eq!(msg["blocks"].as_array().unwrap().len(), 2);
    }
}
