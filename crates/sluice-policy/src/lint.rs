//! The "can never apply" linter: rules that decide nothing, and rules that contradict or shadow
//! each other.

use crate::Policy;
use sluice_core::glob::glob_match;
use sluice_core::policy::{Effect, PolicySpec, RuleProtocol, RuleSpec};

impl Policy {
    /// Problems an operator should fix: rules that can never decide anything, and rules that
    /// contradict each other. `connections` are the configured connections with the kind of
    /// request each serves.
    pub fn check(spec: &PolicySpec, connections: &[(String, RuleProtocol)]) -> Vec<String> {
        let mut findings = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            match rule.applies_to() {
                Err(problem) => findings.push(format!("rule {:?}: {problem}", rule.name)),
                Ok(Some(protocol))
                    if !connections.iter().any(|(name, serves)| {
                        *serves == protocol
                            && (rule.connections.is_empty() || rule.connections.iter().any(|c| glob_match(c, name)))
                    }) =>
                {
                    findings.push(format!(
                        "rule {:?} can never apply: it is about {} requests, and no connection it covers serves them",
                        rule.name,
                        protocol.as_str()
                    ));
                }
                Ok(_) => {}
            }
            if !seen.insert(rule.name.as_str()) {
                findings
                    .push(format!("rule {:?}: another rule has the same name; refusals would be ambiguous", rule.name));
            }
            for c in &rule.connections {
                if !connections.iter().any(|(name, _)| glob_match(c, name)) {
                    findings.push(format!(
                        "rule {:?}: connections pattern {c:?} matches no configured connection",
                        rule.name
                    ));
                }
            }
            for earlier in &spec.rules[..i] {
                if covers(earlier, rule) && covers(rule, earlier) && earlier.effect != rule.effect {
                    findings.push(format!(
                        "rules {:?} and {:?} match the same statements with different effects; {} wins",
                        earlier.name,
                        rule.name,
                        earlier.effect.max(rule.effect).map_or("the preset", |e| e.as_str())
                    ));
                }
            }
            if rule.effect.is_some_and(|e| e < Effect::Deny)
                && let Some(shadow) = spec.rules.iter().find(|d| {
                    d.preset.is_none() && d.effect > rule.effect && !std::ptr::eq(*d, rule) && covers(d, rule)
                })
            {
                findings.push(format!(
                    "rule {:?} is unreachable: rule {:?} ({}) matches everything it matches",
                    rule.name,
                    shadow.name,
                    shadow.effect.map_or("?", Effect::as_str)
                ));
            }
        }
        findings
    }
}

/// Whether two rules ask the same of an HTTP request.
fn same_http_keys(a: &RuleSpec, b: &RuleSpec) -> bool {
    a.methods == b.methods
        && a.paths == b.paths
        && a.query == b.query
        && a.headers == b.headers
        && a.content_types == b.content_types
        && a.json == b.json
        && a.graphql == b.graphql
        && a.websocket == b.websocket
}

/// Whether rule `a` matches at least everything rule `b` matches (a conservative test: list
/// patterns must be equal or absent).
fn covers(a: &RuleSpec, b: &RuleSpec) -> bool {
    fn wider(a: &[String], b: &[String]) -> bool {
        a.is_empty() || (!b.is_empty() && b.iter().all(|x| a.iter().any(|p| glob_match(p, x))))
    }
    let kinds = a.kinds.is_empty() || (!b.kinds.is_empty() && b.kinds.iter().all(|k| a.kinds.contains(k)));
    // Callers: an empty pair of lists means everyone; otherwise every identity and group pattern
    // of `b` must be covered by one of `a`'s (an empty list of `a` then covers nothing).
    let subset = |a: &[String], b: &[String]| b.iter().all(|x| a.iter().any(|p| glob_match(p, x)));
    let everyone = |r: &RuleSpec| r.identities.is_empty() && r.groups.is_empty();
    let callers = everyone(a) || (!everyone(b) && subset(&a.identities, &b.identities) && subset(&a.groups, &b.groups));
    a.applies_to().ok() == b.applies_to().ok()
        && a.preset.is_none()
        && b.preset.is_none()
        && wider(&a.connections, &b.connections)
        && callers
        && kinds
        && wider(&a.objects, &b.objects)
        && (a.http_keys().is_empty() || same_http_keys(a, b))
        && a.functions.is_empty() == b.functions.is_empty()
        && wider(&a.functions, &b.functions)
        && a.when.iter().all(|c| b.when.contains(c))
}
