//! Masking of secrets and personal data before they leave the gateway: content detectors over
//! every value, column rules for what detectors cannot recognise, and the actions that replace
//! what they find. Protocol-free: adapters decide which values to hand over and in what form.

pub mod action;
pub mod detect;
mod encoded;
pub mod escapes;
mod lineage;
pub use lineage::Problem as LineageProblem;
mod objects;
mod siblings;
pub mod spec;
pub mod unreadable;
pub mod validate;
pub mod value;

pub use action::{MaskAction, TokenKey};
pub use detect::{Builtin, DetectorKind, Finding, Scanner};
pub use objects::{CatalogRules, Function, View};
pub use sluice_core::mask_spec::MaskingSpec;
pub use spec::{MaskError, compile};
pub use value::{ColumnMask, ContentMasker, Layout, Masked};

use sluice_core::advice::{DetectorView, MaskedColumns};
use sluice_core::glob::glob_match;
use sluice_core::scope::RuleScope;
use sluice_core::sql::SqlAnalysis;
use sluice_core::{Identity, Refusal, RefusalCause};
use std::sync::Arc;

/// A column rule compiled: who it applies to, which columns, and what it does.
#[derive(Debug)]
struct ColumnRule {
    name: Arc<str>,
    /// `(schema, table, column)` globs; `*` where the pattern left a part out.
    columns: Vec<[String; 3]>,
    action: MaskAction,
    scope: RuleScope,
}

impl ColumnRule {
    fn covers(&self, schema: &str, table: &str, column: &str) -> bool {
        self.columns.iter().any(|[s, t, c]| glob_match(s, schema) && glob_match(t, table) && glob_match(c, column))
    }

    /// Whether this rule could cover a column of the table (an unqualified name: in any schema).
    fn covers_table(&self, schema: Option<&str>, table: &str) -> bool {
        self.columns.iter().any(|[s, t, _]| schema.is_none_or(|schema| glob_match(s, schema)) && glob_match(t, table))
    }

    fn covers_column_name(&self, column: &str) -> bool {
        self.columns.iter().any(|[_, _, c]| glob_match(c, column))
    }

    fn mask(&self) -> ColumnMask {
        ColumnMask { label: Arc::clone(&self.name), action: self.action }
    }
}

/// The masking configuration compiled once; shared by every session.
#[derive(Debug)]
pub struct Masking {
    scanner: Scanner,
    /// The action of each detector, by the scanner's detector index.
    actions: Vec<MaskAction>,
    columns: Vec<ColumnRule>,
    key: TokenKey,
}

impl Masking {
    /// Masking that does nothing (`[masking] enabled = false`).
    pub fn off() -> Masking {
        Masking {
            scanner: Scanner::new(&[]).expect("an empty scanner builds"),
            actions: Vec::new(),
            columns: Vec::new(),
            key: TokenKey::new([0; 32]),
        }
    }

    /// What applies to one caller on one connection.
    pub fn for_session(self: &Arc<Self>, identity: &Identity, connection: &str) -> SessionMasking {
        let columns =
            (0..self.columns.len()).filter(|&i| self.columns[i].scope.contains(identity, connection)).collect();
        SessionMasking { masking: Arc::clone(self), columns }
    }

    /// The column rules and detectors that apply to one caller on one connection, as it may read
    /// them (`sluice.policy()`).
    pub fn views_for(&self, identity: &Identity, connection: &str) -> (Vec<MaskedColumns>, Vec<DetectorView>) {
        let columns = self
            .columns
            .iter()
            .filter(|r| r.scope.contains(identity, connection))
            .map(|r| MaskedColumns {
                rule: r.name.to_string(),
                columns: r.columns.iter().map(|parts| parts.join(".")).collect(),
                action: r.action.describe(),
            })
            .collect();
        let detectors = (0..self.actions.len())
            .map(|i| DetectorView { name: self.scanner.name(i).to_string(), action: self.actions[i].describe() })
            .collect();
        (columns, detectors)
    }

    pub fn has_column_rules(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Why a statement would carry a masked column out of reach of masking, if it would: as part of
    /// an expression (`upper(ssn)`, `row_to_json(c)`, `ssn || ''`, a scalar subquery), copied into
    /// a table, or exported by COPY. Only the column rules in scope for this caller count, and
    /// only statements that touch a table one of them covers are looked at. A plain reference is
    /// fine: the server reports where it comes from and the rule masks it.
    pub fn lineage_problem(
        &self,
        identity: &Identity,
        connection: &str,
        analysis: &SqlAnalysis,
    ) -> Option<LineageProblem> {
        lineage::problem(self.columns.iter().filter(|r| r.scope.contains(identity, connection)), analysis)
    }

    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    pub fn content(&self) -> ContentMasker<'_> {
        ContentMasker { scanner: &self.scanner, actions: &self.actions, key: &self.key }
    }

    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// Masks free text (an error message, a recorded statement); `None` when nothing was found.
    pub fn mask_text(&self, text: &str) -> Option<String> {
        self.content().mask_text(text, &mut Vec::new())
    }

    /// Every finding in a text with what replaces it, for `sluice mask test`.
    pub fn explain(&self, text: &str) -> Vec<Explained> {
        let mut findings = Vec::new();
        self.scanner.scan(text.as_bytes(), &mut findings);
        findings
            .iter()
            .map(|f| {
                let detector = self.scanner.name(f.detector).to_string();
                let action = self.actions.get(f.detector).copied().unwrap_or(MaskAction::Null);
                let matched = &text.as_bytes()[f.start..f.end];
                let mut out = Vec::new();
                let replacement = if action::render(action, &detector, matched, &self.key, &mut out) {
                    String::from_utf8_lossy(&out).into_owned()
                } else {
                    "NULL (the whole value; in text: a redaction)".into()
                };
                Explained {
                    detector,
                    start: f.start,
                    end: f.end,
                    matched: String::from_utf8_lossy(matched).into_owned(),
                    replacement,
                }
            })
            .collect()
    }
}

/// The refusal of a statement that would carry a masked column out of reach of masking (see
/// `Masking::lineage_problem`).
pub fn lineage_refusal(problem: LineageProblem) -> Refusal {
    let hint = match &problem.copied {
        Some(table) => format!(
            "run SELECT * FROM {table} instead: its rows come back with the masked columns masked \
             (psql --csv -c 'SELECT …' writes CSV)"
        ),
        None => "select masked columns directly (they come back masked) and compute on the client, \
                 or ask an operator to change the masking rules"
            .into(),
    };
    Refusal {
        rule: "masking".into(),
        reason: problem.reason,
        detail: Some(problem.detail),
        hint: Some(hint),
        cause: RefusalCause::Policy,
    }
}

/// The refusal of a statement whose views and functions could not be checked for masked columns
/// because the server's catalog could not be read: what cannot be checked is not allowed.
pub fn lineage_unknown(why: &str) -> Refusal {
    Refusal {
        rule: "masking".into(),
        reason: format!("sluice cannot read the server's views and functions to check them for masked columns: {why}"),
        detail: None,
        hint: Some(
            "retry in a moment; if it persists, the upstream server is unreachable or refuses catalog reads".into(),
        ),
        cause: RefusalCause::Policy,
    }
}

/// One finding as `sluice mask test` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Explained {
    pub detector: String,
    pub start: usize,
    pub end: usize,
    pub matched: String,
    pub replacement: String,
}

/// Masking as it applies to one session: every detector, and the column rules in its scope.
#[derive(Clone, Debug)]
pub struct SessionMasking {
    masking: Arc<Masking>,
    columns: Vec<usize>,
}

impl SessionMasking {
    pub fn masking(&self) -> &Masking {
        &self.masking
    }

    /// Whether anything can be masked at all; when not, results pass through untouched.
    pub fn active(&self) -> bool {
        !self.masking.scanner.is_empty() || !self.columns.is_empty()
    }

    pub fn has_column_rules(&self) -> bool {
        !self.columns.is_empty()
    }

    /// The first column rule in scope that covers this column.
    pub fn column(&self, schema: &str, table: &str, column: &str) -> Option<ColumnMask> {
        self.rules().find(|r| r.covers(schema, table, column)).map(ColumnRule::mask)
    }

    /// The rule a view column carries from a masked column it is computed from, if in scope.
    pub fn view_column(&self, reached: &CatalogRules, schema: &str, view: &str, column: &str) -> Option<ColumnMask> {
        self.view_rules(reached).find(|r| r.covers(schema, view, column)).map(ColumnRule::mask)
    }

    /// Like `Masking::lineage_problem`, through the server's objects: a statement computing on
    /// view columns that carry a masked column, or calling a function whose body reads one.
    pub fn catalog_problem(&self, reached: &CatalogRules, analysis: &SqlAnalysis) -> Option<LineageProblem> {
        if let Some(problem) = lineage::problem(self.view_rules(reached), analysis) {
            return Some(problem);
        }
        let SqlAnalysis::Parsed { statements } = analysis else { return None };
        statements.iter().flat_map(|s| &s.functions).find_map(|f| {
            let defined = reached
                .functions
                .iter()
                .filter(|d| d.name == f.name && f.schema.as_ref().is_none_or(|s| *s == d.schema));
            defined.into_iter().find_map(|d| {
                let mut problem = lineage::problem(self.rules().chain(self.view_rules(reached)), &d.definition)?;
                problem.reason =
                    format!("it calls {}.{}, whose body reads a masked column: {}", d.schema, d.name, problem.reason);
                Some(problem)
            })
        })
    }

    fn rules(&self) -> impl Iterator<Item = &ColumnRule> + Clone {
        self.columns.iter().map(|&i| &self.masking.columns[i])
    }

    /// The column-name patterns of the rules in scope, as SQL `LIKE` patterns (`*` is `%`, `?` is
    /// `_`), sorted: what a catalog query narrows candidate columns by.
    pub fn column_name_likes(&self) -> Vec<String> {
        let mut likes: Vec<String> = self
            .rules()
            .flat_map(|r| r.columns.iter().map(|[_, _, c]| c))
            .map(|c| {
                c.chars()
                    .map(|ch| match ch {
                        '*' => "%".to_string(),
                        '?' => "_".to_string(),
                        '%' | '_' | '\\' => format!("\\{ch}"),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        likes.sort_unstable();
        likes.dedup();
        likes
    }

    fn view_rules<'a>(&'a self, views: &'a CatalogRules) -> impl Iterator<Item = &'a ColumnRule> + Clone {
        views.rules.iter().filter(|(base, _)| self.columns.contains(base)).map(|(_, rule)| rule)
    }
}
