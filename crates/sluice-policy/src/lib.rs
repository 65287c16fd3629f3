//! Policy: rules compiled once from the configuration, and the decision for one action. Every
//! operation of every statement is judged; the action gets the strictest result. Precedence is by
//! effect only — deny beats review beats allow — so a broad deny can never be undone by a narrower
//! allow somewhere else in the file. `policy` is the rule engine every protocol shares (compiling,
//! scope, precedence, presets, review settings, defaults; `lint` its checker); `sql` is the SQL
//! matcher (with `rule`'s matching of one operation and PostgreSQL's own names in `pg`), `http` the
//! HTTP matcher, `exec` the SSH command matcher, `files` the SSH matcher of file transfers; actions of other protocols have no match keys
//! yet and are decided by their protocol's rules and the rules of scope only
//! (`Policy::decide_unmatched`). The rule file's types are plain data in
//! `sluice_core::policy`.

mod exec;
mod files;
mod http;
mod lint;
mod pg;
mod policy;
mod rule;
mod sql;
mod volatile;

pub use http::ADMIN_SEGMENTS;
pub use pg::{
    PROTECTED_SETTINGS, SIDE_EFFECT_FUNCTIONS, depends_on_column_masking, is_protected_setting, user_functions,
    volatile_call_refusal, volatility_unknown,
};
pub use policy::Policy;
pub use sluice_core::policy::*;
pub use sql::Judgement;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("policy rule {rule:?}: {problem}")]
    Rule { rule: String, problem: String },
}
