//! What an agent may ask before acting, answered by the gateway without running anything: which
//! rules, masking and reviews apply to it on a connection (`Permissions`), and what would be
//! decided on one request (`Explanation`). Protocol-free: adapters render these in their own
//! protocol (for PostgreSQL, as rows of `sluice.policy()` and `sluice.explain('…')`).

use crate::policy::{Condition, Effect};
use crate::review::ReviewRules;
use serde::Serialize;

/// One policy rule as the identity it applies to may read it.
#[derive(Clone, Debug, Serialize)]
pub struct RuleView {
    pub name: String,
    pub effect: Effect,
    /// The kind of request it is about (`sql`, `http`, `ssh`); `any` for a rule of scope only.
    pub protocol: &'static str,
    /// What it matches of an HTTP request or on an SSH host, as its keys are written
    /// (`programs = ["ls", "cat"]`); SQL rules say it with the fields below.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
    /// The kinds of operation it covers; every kind but dynamic SQL when it names none.
    pub kinds: Vec<&'static str>,
    /// Objects it is limited to (globs); any object when empty.
    pub objects: Vec<String>,
    /// Functions it is about (globs).
    pub functions: Vec<String>,
    pub when: Vec<Condition>,
    pub reason: String,
    /// For a review rule: who approves and how the client waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewRules>,
}

/// Columns one masking rule covers for the caller, and what it does to them.
#[derive(Clone, Debug, Serialize)]
pub struct MaskedColumns {
    pub rule: String,
    /// `schema.table.column` patterns (`*` where the rule left a part out).
    pub columns: Vec<String>,
    pub action: String,
}

/// A content detector that scans every value, and what it does to what it finds.
#[derive(Clone, Debug, Serialize)]
pub struct DetectorView {
    pub name: String,
    pub action: String,
}

/// Everything that applies to one identity on one connection.
#[derive(Clone, Debug, Serialize)]
pub struct Permissions {
    pub identity: String,
    pub groups: Vec<String>,
    pub connection: String,
    /// What happens to an operation no rule covers.
    pub default: Effect,
    /// The upstream session is read-only as well (a read-only preset applies).
    pub read_only: bool,
    /// An access grant in force, which replaces the policy below while it lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    pub rules: Vec<RuleView>,
    pub masked_columns: Vec<MaskedColumns>,
    pub detectors: Vec<DetectorView>,
    /// Settings sluice pins for every session (changing them is refused).
    pub pinned_settings: Vec<&'static str>,
    /// Access policies the identity may ask for on this connection (`sluice access request`).
    pub access_policies: Vec<String>,
}

/// The decision one request would get, and why, without running it or opening a review.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// `allow`, `review` or `deny`.
    pub decision: &'static str,
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What to do next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// Every operation found, with its own judgement (`DELETE on public.orders: deny (rule …)`).
    pub operations: Vec<String>,
}

impl Permissions {
    /// The answer as (item, value) lines, most useful first, for clients that show rows.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("identity".to_string(), format!("{} (groups: {})", self.identity, list_or(&self.groups, "none"))),
            ("connection".to_string(), self.connection.clone()),
        ];
        if let Some(grant) = &self.grant {
            rows.push(("access grant".into(), grant.clone()));
        }
        rows.push(("default".into(), format!("{} (for what no rule covers)", self.default)));
        rows.push(("read-only session".into(), if self.read_only { "yes" } else { "no" }.into()));
        for rule in &self.rules {
            rows.push(("rule".into(), rule_line(rule)));
        }
        for masked in &self.masked_columns {
            rows.push((
                "masked columns".into(),
                format!(
                    "{} ({}: {}); expressions over them are refused",
                    masked.columns.join(", "),
                    masked.rule,
                    masked.action
                ),
            ));
        }
        if !self.detectors.is_empty() {
            let detectors: Vec<String> = self.detectors.iter().map(|d| format!("{} ({})", d.name, d.action)).collect();
            rows.push(("detectors".into(), format!("every value is scanned for: {}", detectors.join(", "))));
        }
        rows.push(("pinned settings".into(), self.pinned_settings.join(", ")));
        for policy in &self.access_policies {
            rows.push((
                "access policy".into(),
                format!(
                    "{policy}: ask with `sluice access request --connection {} --policy {policy} --duration 30m --reason \"…\"`",
                    self.connection
                ),
            ));
        }
        rows.push((
            "ask".into(),
            "SELECT sluice.explain('<statement>') says whether a statement would pass, without running it".into(),
        ));
        rows
    }
}

impl Explanation {
    /// The explanation of a refusal decided before policy (e.g. a check against the catalog).
    pub fn refused(refusal: &crate::Refusal) -> Explanation {
        Explanation {
            decision: "deny",
            rule: refusal.rule.clone(),
            reason: Some(refusal.reason.clone()),
            detail: refusal.detail.clone(),
            next_step: refusal.hint.clone(),
            operations: Vec::new(),
        }
    }

    /// The answer as (item, value) lines.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![("decision".to_string(), self.decision.to_string()), ("rule".into(), self.rule.clone())];
        let optional = [("reason", &self.reason), ("detail", &self.detail), ("next step", &self.next_step)];
        rows.extend(optional.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v))));
        rows.extend(self.operations.iter().map(|o| ("operation".to_string(), o.clone())));
        rows
    }
}

fn rule_line(rule: &RuleView) -> String {
    let mut line = format!("{}: {} {}", rule.name, rule.effect, rule.kinds.join(", "));
    if !rule.objects.is_empty() {
        line.push_str(&format!(" on {}", rule.objects.join(", ")));
    }
    if !rule.functions.is_empty() {
        line.push_str(&format!(" calling {}", rule.functions.join(", ")));
    }
    for condition in &rule.when {
        line.push_str(match condition {
            Condition::NoWhere => " without a WHERE clause",
            Condition::MultiStatement => " in a message of several statements",
        });
    }
    if !rule.reason.is_empty() {
        line.push_str(&format!(" — {}", rule.reason));
    }
    if let Some(review) = &rule.review {
        line.push_str(&format!(
            " (approved by {} of group {}; {})",
            review.approvals,
            review.approvers.join(", "),
            match review.mode.as_str() {
                "wait" => format!("the statement is held up to {}", review.timeout),
                _ => "refused until approved, then re-run it".to_string(),
            }
        ));
    }
    line
}

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() { none.to_string() } else { items.join(", ") }
}
