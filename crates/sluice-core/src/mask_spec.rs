//! The `[masking]` section of the configuration, as plain data (docs/masking.md); `sluice-mask`
//! compiles it.

use crate::scope::RuleScope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The built-in content detectors, by name, in the order they run when none are listed.
pub const BUILTIN_DETECTORS: [&str; 14] = [
    "credit-card",
    "ssn",
    "email",
    "phone",
    "iban",
    "aws-access-key",
    "github-token",
    "slack-token",
    "stripe-key",
    "google-api-key",
    "openai-key",
    "jwt",
    "private-key",
    "credential",
];

/// The action names used in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    Redact,
    Partial,
    Token,
    Null,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingSpec {
    /// Off turns every detector and column rule off.
    pub enabled: bool,
    /// The built-in detectors that run, by name; all of them unless listed.
    pub detectors: Vec<String>,
    /// What a detector's finding becomes, unless `detector_actions` says otherwise.
    pub action: ActionName,
    /// For `partial`: how many trailing letters and digits stay visible.
    pub keep_last: usize,
    /// Per-detector actions, by detector name (built-in or custom).
    pub detector_actions: BTreeMap<String, ActionName>,
    pub custom_detectors: Vec<CustomDetectorSpec>,
    pub columns: Vec<ColumnRuleSpec>,
}

impl Default for MaskingSpec {
    fn default() -> Self {
        MaskingSpec {
            enabled: true,
            detectors: BUILTIN_DETECTORS.iter().map(|name| name.to_string()).collect(),
            action: ActionName::Redact,
            keep_last: 4,
            detector_actions: BTreeMap::new(),
            custom_detectors: Vec::new(),
            columns: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorSpec {
    pub name: String,
    /// A regular expression (Rust `regex` syntax).
    pub pattern: String,
    pub action: Option<ActionName>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRuleSpec {
    pub name: String,
    /// `schema.table.column`, `table.column` (any schema) or `column` (any table); globs.
    pub columns: Vec<String>,
    #[serde(default = "default_column_action")]
    pub action: ActionName,
    pub keep_last: Option<usize>,
    /// Connection name globs; all connections when empty.
    #[serde(default)]
    pub connections: Vec<String>,
    /// Identity name and group globs; everyone when both are empty.
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_column_action() -> ActionName {
    ActionName::Redact
}

impl ColumnRuleSpec {
    /// Who and where the rule applies to.
    pub fn scope(&self) -> RuleScope {
        RuleScope {
            connections: self.connections.clone(),
            identities: self.identities.clone(),
            groups: self.groups.clone(),
        }
    }
}
