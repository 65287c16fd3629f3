//! `sluice policy explain` and `sluice policy check`: what policy makes of a statement, and what is
//! wrong with a policy, with no server running.

use crate::display::out;
use crate::targets::Targets;
use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use sluice_core::sql::SqlAnalysis;
use sluice_core::{Decision, Identity};
use sluice_engine::TargetPreparer;
use sluice_policy::{Policy, RuleProtocol};
use sluice_sql::PreparedStatements;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Classify a SQL message and show the decision policy makes on it, and why. Exit status: 0
    /// allow, 3 review, 4 deny (unparseable statements are denied), 1 an error.
    Explain {
        /// The identity to decide for.
        #[arg(long)]
        identity: String,
        /// Its groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// The connection the statement would be sent on.
        #[arg(long)]
        connection: String,
        /// Print the analysis and decision as JSON.
        #[arg(long)]
        json: bool,
        /// The SQL, as the client would send it in one message.
        sql: String,
    },
    /// Validate the policy and report unreachable or conflicting rules (exit status 1 if any).
    Check {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `policy explain`'s exit status when the decision is review (held or refused pending approval).
pub const EXIT_REVIEW: u8 = 3;
/// `policy explain`'s exit status when the decision is deny.
pub const EXIT_DENY: u8 = 4;

pub fn run(config_path: &Path, cmd: PolicyCommand) -> Result<ExitCode> {
    let config = crate::targets::load_config(config_path)?;
    let policy =
        sluice_engine::compile::policy(&config, &sluice_engine::compile::connection_policies(&config, &Targets)?)?;
    match cmd {
        PolicyCommand::Explain { identity, groups, connection, json, sql } => {
            if !config.connections.contains_key(&connection) {
                anyhow::bail!("no connection named {connection:?} in {}", config_path.display());
            }
            let identity = Identity { name: identity, groups, credential_id: "policy-explain".into() };
            explain(&policy, &identity, &connection, &sql, json)
        }
        PolicyCommand::Check { json } => {
            let connections: Vec<(String, RuleProtocol)> = config
                .connections
                .iter()
                .map(|(name, conn)| {
                    let facts = Targets.describe(name, conn).map_err(anyhow::Error::msg)?;
                    Ok((name.clone(), RuleProtocol::serving(facts.protocol)))
                })
                .collect::<Result<_>>()?;
            let findings = Policy::check(&config.policy, &connections);
            if json {
                let findings: Vec<String> = findings.iter().map(ToString::to_string).collect();
                let doc = json!({
                    "config": config_path,
                    "rules": config.policy.rules.len(),
                    "valid": findings.is_empty(),
                    "findings": findings,
                });
                out!("{}", serde_json::to_string_pretty(&doc)?);
            } else if findings.is_empty() {
                out!("{}: policy is valid ({} rules)", config_path.display(), config.policy.rules.len());
            } else {
                for finding in &findings {
                    out!("{finding}");
                }
            }
            Ok(if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_FAILURE) })
        }
    }
}

fn explain(policy: &Policy, identity: &Identity, connection: &str, sql: &str, json: bool) -> Result<ExitCode> {
    let analysis = sluice_sql::analyze(sql);
    let resolved = PreparedStatements::default().resolve(&analysis).into_owned();
    let judgements = policy.explain(identity, connection, &resolved);
    let decision = policy.decide(identity, connection, &resolved);
    let read_only = policy.read_only(identity, connection);
    if json {
        let refusal = match &decision {
            Decision::Allow { .. } | Decision::Approved { .. } | Decision::Hold(_) => None,
            Decision::Review(r) | Decision::Deny(r) => Some(r),
        };
        let out = json!({
            "analysis": resolved,
            "operations": judgements,
            "decision": {
                "effect": decision.effect(),
                "rule": decision.rule(),
                "reason": refusal.map(|r| &r.reason),
                "detail": refusal.and_then(|r| r.detail.as_ref()),
                "hint": refusal.and_then(|r| r.hint.as_ref()),
            },
            "read_only_session": read_only,
        });
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit_status(&decision));
    }
    match &resolved {
        SqlAnalysis::Unparseable { message } => out!("unparseable: {message}"),
        SqlAnalysis::Parsed { statements } => {
            for (i, statement) in statements.iter().enumerate() {
                out!("statement {} ({})", i + 1, statement.statement);
                if !statement.functions.is_empty() {
                    let names: Vec<String> = statement.functions.iter().map(ToString::to_string).collect();
                    out!("  functions called: {}", names.join(", "));
                }
            }
            out!("operations:");
            for j in &judgements {
                out!("  {:<7} {:<60} rule {:?}", j.effect.as_str(), j.operation.to_string(), &*j.rule);
            }
        }
    }
    match &decision {
        Decision::Allow { rule } | Decision::Approved { rule, .. } => {
            out!("decision: allow (rule {:?})", &**rule)
        }
        Decision::Review(r) | Decision::Deny(r) => {
            out!("decision: {} by rule {:?}: {}", decision.effect(), r.rule, r.reason);
            if let Some(detail) = &r.detail {
                out!("  detail: {detail}");
            }
            if let Some(hint) = &r.hint {
                out!("  hint: {hint}");
            }
            if matches!(decision, Decision::Review(_)) {
                let review = policy.review_rules(&r.rule);
                out!(
                    "  review: mode {}, approved by {} of groups {:?}, wait timeout {}, approval valid for {}",
                    review.mode.as_str(),
                    review.approvals,
                    review.approvers,
                    review.timeout,
                    review.valid_for
                );
            }
        }
        Decision::Hold(h) => out!("decision: held for review #{} (rule {:?})", h.review_id, h.rule),
    }
    out!("read-only session: {}", if read_only { "yes" } else { "no" });
    Ok(exit_status(&decision))
}

fn exit_status(decision: &Decision) -> ExitCode {
    match decision {
        Decision::Allow { .. } | Decision::Approved { .. } => ExitCode::SUCCESS,
        Decision::Review(_) | Decision::Hold(_) => ExitCode::from(EXIT_REVIEW),
        Decision::Deny(_) => ExitCode::from(EXIT_DENY),
    }
}
