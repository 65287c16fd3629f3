//! Policy: rules compiled once from the configuration, and the decision for one action. Every
//! operation of every statement is judged; the action gets the strictest result. Precedence is by
//! effect only — deny beats review beats allow — so a broad deny can never be undone by a narrower
//! allow somewhere else in the file. The SQL matcher (`rule`, with PostgreSQL's own names in `pg`)
//! decides statements; actions of other protocols have no matcher yet and get the target's
//! default (`Policy::decide_unmatched`). The rule file's types are plain data in
//! `sluice_core::policy`.

mod lint;
mod pg;
mod policy;
mod rule;
mod volatile;

pub use pg::{
    PROTECTED_SETTINGS, SIDE_EFFECT_FUNCTIONS, depends_on_column_masking, is_protected_setting, user_functions,
    volatile_call_refusal, volatility_unknown,
};
pub use policy::{Judgement, Policy};
pub use sluice_core::policy::*;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("policy rule {rule:?}: {problem}")]
    Rule { rule: String, problem: String },
}
