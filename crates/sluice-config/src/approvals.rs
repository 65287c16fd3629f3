//! The REST API listener, review notifications (webhooks) and the access policies a just-in-time
//! grant can switch an identity to.

use serde::Deserialize;
use sluice_core::policy::{Effect, RuleSpec};
use sluice_core::review::ReviewRules;
use sluice_core::scope::RuleScope;
use sluice_core::span::Span;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Whether the REST API (reviews, access grants) listens at all.
    pub enabled: bool,
    pub listen: String,
    /// The address people reach the API (later the console) at, for links in notifications and
    /// refusals; defaults to `http://<listen>`.
    pub public_url: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true, listen: "127.0.0.1:6433".into(), public_url: None }
    }
}

impl ApiConfig {
    pub fn base_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_string()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Where new reviews and their decisions are announced.
    pub webhooks: Vec<WebhookConfig>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// sluice's own JSON document (see docs/approvals.md).
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` plus blocks).
    Slack,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Which events to send: `requested`, `approved`, `denied`, `revoked`. Empty: all.
    #[serde(default)]
    pub events: Vec<String>,
}

pub const WEBHOOK_EVENTS: &[&str] = &["requested", "approved", "denied", "revoked"];

/// `[[access.policies]]`: a named, more permissive policy an identity can ask to work under for a
/// while (`sluice access request`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicySpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Connections it can be granted on (globs); empty: all.
    #[serde(default)]
    pub connections: Vec<String>,
    /// Who may ask for it (identity and group globs); both empty: everyone.
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The longest grant that may be asked for.
    #[serde(default = "default_max_duration")]
    pub max_duration: Span,
    /// The effect when none of its rules match.
    #[serde(default = "default_access_effect")]
    pub default: Effect,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Who approves a grant, and how many must.
    #[serde(default)]
    pub review: ReviewRules,
}

impl AccessPolicySpec {
    /// Who may ask for it, where.
    pub fn scope(&self) -> RuleScope {
        RuleScope {
            connections: self.connections.clone(),
            identities: self.identities.clone(),
            groups: self.groups.clone(),
        }
    }
}

fn default_max_duration() -> Span {
    Span::secs(4 * 3600)
}

fn default_access_effect() -> Effect {
    Effect::Allow
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub policies: Vec<AccessPolicySpec>,
}
