//! Column rules carried through the server's own objects: a view column computed from a masked
//! column (plainly, or inside an expression) is masked like that column, by the same rule; a
//! function whose body reads a masked column is known, so a statement calling it can be refused.
//! Worked out by name from definitions as the catalog gives them, through views of views.

use crate::{ColumnRule, Masking};
use sluice_core::sql::{SqlAnalysis, SqlStatement};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// A view (or materialized view) as the catalog describes it.
#[derive(Clone, Debug)]
pub struct View {
    pub schema: String,
    pub name: String,
    /// Its columns' names, in order.
    pub columns: Vec<String>,
    /// The relations its definition reads, `(schema, name)`, as the server recorded them.
    pub reads: Vec<(String, String)>,
    /// Its definition, classified.
    pub definition: SqlAnalysis,
    /// The column names each output column refers to, in order (see `sluice_sql::output_refs`);
    /// `None` when unknown, and then every column counts as reading everything the view reads.
    pub outputs: Option<Vec<Vec<String>>>,
}

/// A function (or procedure) in a language sluice reads, as the catalog describes it.
#[derive(Clone, Debug)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// Its `CREATE FUNCTION` statement, classified.
    pub definition: SqlAnalysis,
}

/// What the column rules reach in one database: view columns that carry a masked column, each
/// with the configured rule it carries, and functions whose bodies read one.
#[derive(Debug, Default)]
pub struct CatalogRules {
    /// `(index of the configured rule, the rule restated for the view column)`.
    pub(crate) rules: Vec<(usize, ColumnRule)>,
    /// Every view looked at, `(schema, name)`, sorted: one not among them is newer than these rules.
    known: Vec<(String, String)>,
    /// Functions whose body reads a masked column under some rule (whether it does for one caller
    /// is decided with that caller's rules).
    pub(crate) functions: Vec<Function>,
    /// The name of every function in the database, sorted: one not among them is newer than these.
    function_names: Vec<String>,
}

impl CatalogRules {
    /// Whether these rules were worked out with this view in the catalog.
    pub fn knows(&self, schema: &str, view: &str) -> bool {
        self.known.binary_search_by(|(s, v)| (s.as_str(), v.as_str()).cmp(&(schema, view))).is_ok()
    }

    /// Whether a statement calls a function these rules were worked out without.
    pub fn calls_unknown_function(&self, analysis: &SqlAnalysis) -> bool {
        let SqlAnalysis::Parsed { statements } = analysis else { return false };
        let known = |name: &str| self.function_names.binary_search_by(|n| n.as_str().cmp(name)).is_ok();
        statements.iter().flat_map(|s| &s.functions).any(|f| !known(&f.name))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.functions.is_empty()
    }
}

/// How many rounds of views over views are followed.
const MAX_VIEW_DEPTH: usize = 16;

impl Masking {
    /// What the column rules reach through these views and functions, for all callers (each view
    /// column keeps its rule's scope).
    /// `function_names`: of every function in the database, to tell one made later.
    pub fn catalog_rules(
        &self,
        views: &[View],
        functions: Vec<Function>,
        mut function_names: Vec<String>,
    ) -> CatalogRules {
        let mut known: Vec<(String, String)> = views.iter().map(|v| (v.schema.clone(), v.name.clone())).collect();
        known.sort_unstable();
        function_names.sort_unstable();
        function_names.dedup();
        if self.columns.is_empty() {
            return CatalogRules { known, function_names, ..CatalogRules::default() };
        }
        // (view, column) → the configured rule it carries.
        let mut carried: HashMap<(usize, usize), usize> = HashMap::new();
        for _ in 0..MAX_VIEW_DEPTH {
            let mut changed = false;
            for (v, view) in views.iter().enumerate() {
                let masked = self.masked_names(view, views, &carried);
                if masked.is_empty() {
                    continue;
                }
                let outputs = view.outputs.as_ref().filter(|o| o.len() == view.columns.len());
                for c in 0..view.columns.len() {
                    let rule = match outputs {
                        Some(outputs) => outputs[c].iter().find_map(|r| masked.get(r.as_str()).copied()),
                        // Shape unknown: any column may carry what the view reads.
                        None => masked.values().min().copied(),
                    };
                    if let (Some(rule), Entry::Vacant(slot)) = (rule, carried.entry((v, c))) {
                        slot.insert(rule);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut grouped: Vec<((usize, usize), Vec<usize>)> = Vec::new();
        for ((v, c), rule) in carried {
            match grouped.iter_mut().find(|(key, _)| *key == (v, rule)) {
                Some((_, columns)) => columns.push(c),
                None => grouped.push(((v, rule), vec![c])),
            }
        }
        grouped.sort_unstable();
        let rules = grouped
            .into_iter()
            .map(|((v, rule), mut columns)| {
                columns.sort_unstable();
                let (view, base) = (&views[v], &self.columns[rule]);
                let restated = ColumnRule {
                    name: base.name.clone(),
                    columns: columns
                        .iter()
                        .map(|&c| [view.schema.clone(), view.name.clone(), view.columns[c].clone()])
                        .collect(),
                    action: base.action,
                    scope: base.scope.clone(),
                };
                (rule, restated)
            })
            .collect();
        let mut reached = CatalogRules { rules, known, functions: Vec::new(), function_names };
        let every_rule = self.columns.iter().chain(reached.rules.iter().map(|(_, r)| r));
        reached.functions = functions
            .into_iter()
            .filter(|f| crate::lineage::problem(every_rule.clone(), &f.definition).is_some())
            .collect();
        reached
    }

    /// The names in a view's definition that stand for a masked column, each with its rule: masked
    /// columns of the relations it reads (tables by the column rules, views by what they carry),
    /// whole-row references to those relations, and names given to expressions over any of these.
    fn masked_names(
        &self,
        view: &View,
        views: &[View],
        carried: &HashMap<(usize, usize), usize>,
    ) -> HashMap<String, usize> {
        let statements: &[SqlStatement] = match &view.definition {
            SqlAnalysis::Parsed { statements } => statements,
            SqlAnalysis::Unparseable { .. } => &[],
        };
        let refs: Vec<&str> =
            statements.iter().flat_map(|s| &s.targets).flat_map(|t| &t.refs).map(String::as_str).collect();
        let mut masked: HashMap<String, usize> = HashMap::new();
        let mut mark = |name: &str, rule: usize| mark_masked(&mut masked, name, rule);
        for (schema, table) in &view.reads {
            let mut table_rules: Vec<usize> = Vec::new();
            for (i, rule) in self.columns.iter().enumerate().filter(|(_, r)| r.covers_table(Some(schema), table)) {
                refs.iter().filter(|r| rule.covers(schema, table, r)).for_each(|r| mark(r, i));
                table_rules.push(i);
            }
            if let Some(w) = views.iter().position(|w| w.schema == *schema && w.name == *table) {
                for (&(_, c), &rule) in carried.iter().filter(|((wv, _), _)| *wv == w) {
                    mark(&views[w].columns[c], rule);
                    table_rules.push(rule);
                }
            }
            // Whole-row references (`row_to_json(t)`, `t.*`) to a relation with masked columns.
            if let Some(&rule) = table_rules.iter().min() {
                mark(table, rule);
                mark("*", rule);
                for s in statements {
                    s.aliases.iter().filter(|(_, o)| o.name == *table).for_each(|(alias, _)| mark(alias, rule));
                }
            }
        }
        // Subquery and CTE columns computed from masked names are masked names in turn.
        loop {
            let before = masked.len();
            for t in statements.iter().flat_map(|s| &s.targets) {
                let Some(alias) = &t.alias else { continue };
                if let Some(rule) = t.refs.iter().filter_map(|r| masked.get(r.as_str()).copied()).min() {
                    mark_masked(&mut masked, alias, rule);
                }
            }
            if masked.len() == before {
                break;
            }
        }
        masked
    }
}

/// Notes a name as masked; of two rules, the one configured first counts.
fn mark_masked(masked: &mut HashMap<String, usize>, name: &str, rule: usize) {
    masked.entry(name.to_string()).and_modify(|r| *r = (*r).min(rule)).or_insert(rule);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MaskAction, MaskingSpec, TokenKey};
    use sluice_core::Identity;
    use std::sync::Arc;

    fn view(name: &str, reads: &[&str], columns: &[&str], definition: &str) -> View {
        View {
            schema: "public".into(),
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            reads: reads.iter().map(|r| ("public".to_string(), r.to_string())).collect(),
            definition: sluice_sql::analyze(definition),
            outputs: sluice_sql::output_refs(definition),
        }
    }

    fn function(name: &str, definition: &str) -> Function {
        Function { schema: "public".into(), name: name.into(), definition: sluice_sql::analyze(definition) }
    }

    fn masking() -> Arc<Masking> {
        let spec: MaskingSpec = toml::from_str(
            r#"
            [[columns]]
            name = "hr"
            columns = ["public.staff.diagnosis"]
            action = "redact"
            groups = ["agents"]
            [[columns]]
            name = "pay"
            columns = ["*.salary"]
            action = "null"
            "#,
        )
        .unwrap();
        Arc::new(crate::compile(&spec, TokenKey::new([1; 32])).unwrap())
    }

    #[test]
    fn view_columns_carry_the_rules_of_what_they_are_computed_from() {
        let m = masking();
        let views = [
            view(
                "staff_v",
                &["staff"],
                &["id", "d", "pay", "name"],
                "SELECT staff.id, upper(staff.diagnosis) AS d, staff.salary AS pay, staff.name FROM staff",
            ),
            view("over_v", &["staff_v"], &["dd", "id"], "SELECT (staff_v.d || 'x') AS dd, staff_v.id FROM staff_v"),
            view("whole", &["staff"], &["j"], "SELECT row_to_json(s.*) AS j FROM staff s"),
            view(
                "sub",
                &["staff"],
                &["x", "n"],
                "SELECT t.x, t.n FROM (SELECT substr(staff.diagnosis, 1, 3) AS x, staff.name AS n FROM staff) t",
            ),
            view("other_v", &["other"], &["diagnosis"], "SELECT other.diagnosis FROM other"),
            view("bad", &["staff"], &["a", "b"], "SELECT nonsense FROM"),
        ];
        let functions = vec![
            function(
                "staff_dx",
                "CREATE FUNCTION public.staff_dx() RETURNS SETOF text LANGUAGE sql AS $$ SELECT reverse(diagnosis) FROM staff $$",
            ),
            function(
                "via_view",
                "CREATE FUNCTION public.via_view() RETURNS SETOF text LANGUAGE sql AS $$ SELECT lower(d) FROM staff_v $$",
            ),
            function(
                "harmless",
                "CREATE FUNCTION public.harmless() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM staff $$",
            ),
        ];
        let names = ["staff_dx", "via_view", "harmless", "upper"].map(String::from).to_vec();
        let rules = m.catalog_rules(&views, functions, names);
        let agent = m
            .for_session(&Identity { name: "a".into(), groups: vec!["agents".into()], credential_id: "t".into() }, "c");
        let human = m.for_session(&Identity { name: "h".into(), groups: vec![], credential_id: "t".into() }, "c");
        let carried = |s: &crate::SessionMasking, v: &str, c: &str| {
            s.view_column(&rules, "public", v, c).map(|m| m.label.to_string())
        };
        assert_eq!(carried(&agent, "staff_v", "d").as_deref(), Some("hr"), "an expression over a masked column");
        assert_eq!(carried(&agent, "staff_v", "pay").as_deref(), Some("pay"), "a renamed masked column");
        assert_eq!(carried(&agent, "staff_v", "id"), None);
        assert_eq!(carried(&agent, "staff_v", "name"), None);
        assert_eq!(carried(&agent, "over_v", "dd").as_deref(), Some("hr"), "a view over the view");
        assert_eq!(carried(&agent, "over_v", "id"), None);
        assert_eq!(carried(&agent, "whole", "j").as_deref(), Some("hr"), "a whole-row reference");
        assert_eq!(carried(&agent, "sub", "x").as_deref(), Some("hr"), "through a subquery's column");
        assert_eq!(carried(&agent, "sub", "n"), None);
        assert_eq!(carried(&agent, "other_v", "diagnosis"), None, "another table's column of the same name");
        assert!(
            carried(&agent, "bad", "a").is_some() && carried(&agent, "bad", "b").is_some(),
            "unreadable: all of it"
        );
        assert_eq!(carried(&human, "staff_v", "d"), None, "hr is scoped to agents");
        assert_eq!(carried(&human, "staff_v", "pay").as_deref(), Some("pay"));
        let action = agent.view_column(&rules, "public", "staff_v", "pay").map(|m| m.action);
        assert_eq!(action, Some(MaskAction::Null));

        let problem = |s: &crate::SessionMasking, sql: &str| {
            s.catalog_problem(&rules, &sluice_sql::analyze(sql)).map(|p| p.reason)
        };
        assert!(problem(&agent, "SELECT lower(d) FROM staff_v").is_some());
        assert!(problem(&agent, "SELECT d, id FROM staff_v").is_none(), "plain: masked by rule");
        assert!(problem(&agent, "SELECT lower(name) FROM staff_v").is_none());
        assert!(problem(&human, "SELECT lower(d) FROM staff_v").is_none());
        let called = problem(&agent, "SELECT x FROM staff_dx() x").expect("a function reading a masked column");
        assert!(called.contains("public.staff_dx") && called.contains("diagnosis"), "{called}");
        assert!(problem(&agent, "SELECT public.via_view()").is_some(), "through a view's carried column");
        assert!(problem(&human, "SELECT staff_dx()").is_none(), "hr is scoped to agents");
        assert!(problem(&agent, "SELECT harmless()").is_none());
        assert!(problem(&agent, "SELECT other.staff_dx()").is_none(), "another schema's function of that name");
        assert_eq!(rules.functions.len(), 2, "only functions that read a masked column are kept");
        assert!(masking().catalog_rules(&[], Vec::new(), Vec::new()).is_empty());
        assert!(!rules.calls_unknown_function(&sluice_sql::analyze("SELECT upper(name), harmless() FROM t")));
        assert!(rules.calls_unknown_function(&sluice_sql::analyze("SELECT made_later()")));
        assert!(rules.knows("public", "other_v") && !rules.knows("public", "staff"));
    }
}
