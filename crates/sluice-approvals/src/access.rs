//! An access policy ready to decide: what a just-in-time grant switches its holder to.

use sluice_core::review::ReviewRules;
use sluice_core::scope::RuleScope;
use sluice_core::span::Span;
use sluice_policy::Policy;

#[derive(Debug)]
pub struct AccessPolicy {
    pub name: String,
    pub description: Option<String>,
    /// Who may ask for it, where.
    pub scope: RuleScope,
    pub max_duration: Span,
    pub review: ReviewRules,
    pub policy: Policy,
}
