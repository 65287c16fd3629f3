//! Compiling the `[masking]` section of the configuration (`sluice_core::mask_spec`) into masking
//! ready to run (docs/masking.md).

use crate::action::{MaskAction, TokenKey, action_for};
use crate::detect::{Builtin, DetectorKind, Scanner, ScannerError};
use crate::{ColumnRule, Masking};
use sluice_core::mask_spec::{ColumnRuleSpec, MaskingSpec};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("masking: unknown detector {0:?} (built-in detectors: {1})")]
    UnknownDetector(String, String),
    #[error("masking: detector name {0:?} is used twice")]
    DuplicateDetector(String),
    #[error("masking: column rule {rule:?}: {problem}")]
    ColumnRule { rule: String, problem: String },
    #[error("masking: {0}")]
    Scanner(#[from] ScannerError),
}

/// Masking as `spec` sets it, with the key deterministic tokens are made with.
pub fn compile(spec: &MaskingSpec, key: TokenKey) -> Result<Masking, MaskError> {
    if !spec.enabled {
        return Ok(Masking::off());
    }
    let mut detectors: Vec<(String, DetectorKind)> = Vec::new();
    for name in &spec.detectors {
        let builtin = Builtin::from_name(name).ok_or_else(|| {
            let known: Vec<_> = Builtin::ALL.iter().map(|b| b.name()).collect();
            MaskError::UnknownDetector(name.clone(), known.join(", "))
        })?;
        if detectors.iter().any(|(n, _)| n == name) {
            return Err(MaskError::DuplicateDetector(name.clone()));
        }
        detectors.push((name.clone(), DetectorKind::Builtin(builtin)));
    }
    for custom in &spec.custom_detectors {
        if detectors.iter().any(|(n, _)| *n == custom.name) || Builtin::from_name(&custom.name).is_some() {
            return Err(MaskError::DuplicateDetector(custom.name.clone()));
        }
        detectors.push((custom.name.clone(), DetectorKind::Custom(custom.pattern.clone())));
    }
    for name in spec.detector_actions.keys() {
        if !detectors.iter().any(|(n, _)| n == name) {
            let known: Vec<_> = detectors.iter().map(|(n, _)| n.as_str()).collect();
            return Err(MaskError::UnknownDetector(name.clone(), known.join(", ")));
        }
    }
    let actions = detectors
        .iter()
        .map(|(name, _)| {
            let custom = spec.custom_detectors.iter().find(|c| &c.name == name).and_then(|c| c.action);
            let chosen = spec.detector_actions.get(name).copied().or(custom).unwrap_or(spec.action);
            action_for(chosen, spec.keep_last)
        })
        .collect();
    let mut columns = Vec::new();
    for rule in &spec.columns {
        columns.push(compile_column_rule(rule, spec.keep_last)?);
    }
    Ok(Masking { scanner: Scanner::new(&detectors)?, actions, columns, key })
}

fn compile_column_rule(spec: &ColumnRuleSpec, keep_last: usize) -> Result<ColumnRule, MaskError> {
    let problem = |problem: String| MaskError::ColumnRule { rule: spec.name.clone(), problem };
    if spec.name.trim().is_empty() {
        return Err(problem("a column rule needs a name".into()));
    }
    if spec.columns.is_empty() {
        return Err(problem("`columns` is empty: name at least one schema.table.column pattern".into()));
    }
    let mut columns = Vec::new();
    for pattern in &spec.columns {
        let parts: Vec<&str> = pattern.split('.').collect();
        let any = "*".to_string();
        let triple = match parts.as_slice() {
            [c] => [any.clone(), any, c.to_string()],
            [t, c] => [any, t.to_string(), c.to_string()],
            [s, t, c] => [s.to_string(), t.to_string(), c.to_string()],
            _ => return Err(problem(format!("{pattern:?} is not schema.table.column, table.column or column"))),
        };
        if triple.iter().any(String::is_empty) {
            return Err(problem(format!("{pattern:?} has an empty part")));
        }
        columns.push(triple);
    }
    let action: MaskAction = action_for(spec.action, spec.keep_last.unwrap_or(keep_last));
    Ok(ColumnRule { name: Arc::from(spec.name.as_str()), columns, action, scope: spec.scope() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;

    fn compile(text: &str) -> Result<Masking, MaskError> {
        let spec: MaskingSpec = toml::from_str(text).unwrap();
        super::compile(&spec, TokenKey::new([3; 32]))
    }

    fn who(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential_id: "t".into(),
        }
    }

    #[test]
    fn the_configurations_list_of_builtin_detectors_is_the_detectors_sluice_has() {
        let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
        assert_eq!(names, sluice_core::mask_spec::BUILTIN_DETECTORS);
    }

    #[test]
    fn defaults_turn_every_builtin_on() {
        let m = Arc::new(compile("").unwrap());
        assert_eq!(m.mask_text("mail a@b.io").as_deref(), Some("mail [redacted:email]"));
        assert!(m.for_session(&who("x", &[]), "prod").active());
        let off = Arc::new(compile("enabled = false").unwrap());
        assert!(!off.for_session(&who("x", &[]), "prod").active());
    }

    #[test]
    fn column_rules_scope_and_patterns() {
        let m = Arc::new(
            compile(
                r#"
                detectors = ["email"]
                detector_actions = { email = "partial" }
                [[custom_detectors]]
                name = "employee-id"
                pattern = 'EMP-\d{6}'
                [[columns]]
                name = "pii"
                columns = ["public.customers.ssn", "notes.body", "salary"]
                action = "null"
                groups = ["agents"]
                connections = ["prod*"]
                "#,
            )
            .unwrap(),
        );
        assert_eq!(m.mask_text("jane@ex.io EMP-123456").as_deref(), Some("****@ex.io [redacted:employee-id]"));
        let agent = m.for_session(&who("bot", &["agents"]), "prod-eu");
        assert!(agent.column("public", "customers", "ssn").is_some());
        assert!(agent.column("other", "customers", "ssn").is_none());
        assert!(agent.column("any", "notes", "body").is_some());
        assert!(agent.column("x", "y", "salary").is_some());
        let bot = who("bot", &["agents"]);
        let problem = |connection: &str, sql: &str| {
            m.lineage_problem(&bot, connection, &sluice_sql::analyze(sql)).map(|p| p.reason)
        };
        assert!(problem("prod-eu", "SELECT upper(body) FROM notes").is_some());
        assert!(problem("prod-eu", "SELECT ssn || '' FROM customers").is_some());
        assert!(problem("prod-eu", "SELECT upper(name) FROM customers").is_none(), "not a masked column");
        assert!(problem("prod-eu", "SELECT ssn FROM customers").is_none(), "a plain reference");
        assert!(problem("staging", "SELECT upper(body) FROM notes").is_none(), "rule out of scope");
        let in_body = "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql AS 'SELECT ssn FROM customers'";
        let why = problem("prod-eu", in_body).expect("a plain reference inside a body escapes");
        assert!(why.contains("inside the body of function f"), "{why}");
        assert!(m.for_session(&who("bot", &["humans"]), "prod-eu").column("public", "customers", "ssn").is_none());
        assert!(m.for_session(&who("bot", &["agents"]), "staging").column("public", "customers", "ssn").is_none());
    }

    #[test]
    fn mistakes_are_named() {
        assert!(matches!(compile(r#"detectors = ["cc"]"#), Err(MaskError::UnknownDetector(..))));
        assert!(matches!(compile(r#"detector_actions = { nope = "null" }"#), Err(MaskError::UnknownDetector(..))));
        let e = compile("[[columns]]\nname = \"x\"\ncolumns = [\"a.b.c.d\"]").unwrap_err();
        assert!(e.to_string().contains("column rule \"x\""), "{e}");
        let e = compile("[[custom_detectors]]\nname = \"email\"\npattern = \"x\"").unwrap_err();
        assert!(matches!(e, MaskError::DuplicateDetector(_)));
        let e = compile("[[custom_detectors]]\nname = \"y\"\npattern = \"(\"").unwrap_err();
        assert!(e.to_string().contains("detector \"y\""), "{e}");
    }
}
