//! The protocols sluice speaks, and what the gateway decides about an action (the actions
//! themselves are the adapters' vocabulary: see `sluice-gate`).

use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
    Http,
    Ssh,
    Kube,
    Mcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Http => "http",
            Protocol::Ssh => "ssh",
            Protocol::Kube => "kube",
            Protocol::Mcp => "mcp",
        }
    }
}

/// The gateway's answer to an Action. Every answer names the rule that gave it, for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow {
        rule: Arc<str>,
    },
    /// Allowed by an approved review, for one run: the adapter must not let the approved statement
    /// run again (a prepared statement bound a second time is refused).
    Approved {
        rule: Arc<str>,
        review_id: i64,
    },
    /// Needs a human approval first: refused now (the refusal names the review and the next step).
    Review(Refusal),
    Deny(Refusal),
    /// Held until review `id` is decided: the adapter tells the client, then asks the gate for the
    /// outcome (`SessionGate::await_review`), which is never `Hold` again.
    Hold(Hold),
}

/// A statement held for a review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub review_id: i64,
    pub rule: String,
    /// What the client is told while it waits (a notice in its own protocol).
    pub notice: String,
    pub hint: String,
    pub timeout: std::time::Duration,
}

impl Decision {
    /// Whether the action may go ahead (once, for `Approved`).
    pub fn allows(&self) -> bool {
        matches!(self, Decision::Allow { .. } | Decision::Approved { .. })
    }

    pub fn effect(&self) -> &'static str {
        match self {
            Decision::Allow { .. } | Decision::Approved { .. } => "allow",
            Decision::Review(_) | Decision::Hold(_) => "review",
            Decision::Deny(_) => "deny",
        }
    }

    pub fn rule(&self) -> &str {
        match self {
            Decision::Allow { rule } | Decision::Approved { rule, .. } => rule,
            Decision::Review(r) | Decision::Deny(r) => &r.rule,
            Decision::Hold(h) => &h.rule,
        }
    }
}

/// What kind of refusal, so an adapter can pick its protocol's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalCause {
    /// A policy rule or a built-in check refused it.
    Policy,
    /// It needs the approval of review `review_id`, which is pending: re-run it once approved.
    Pending { review_id: i64 },
    /// The request could not be parsed.
    Unparseable,
    /// The client withdrew it (cancelled while it was held for a review).
    Cancelled,
    /// sluice understands the request but cannot carry it out the way it was sent (the hint
    /// says the way that works).
    Unsupported,
}

/// Why something was refused, written for the agent that must decide what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that decided (a policy rule name, or a built-in check such as `connect`).
    pub rule: String,
    pub reason: String,
    /// What matched.
    pub detail: Option<String>,
    /// The next step.
    pub hint: Option<String>,
    pub cause: RefusalCause,
}
