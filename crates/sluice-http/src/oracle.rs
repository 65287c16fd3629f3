//! Requests that would have the upstream tell a field masked by its name through what it selects
//! by it. A filter on the field (`?ssn=eq.123`, `filter[ssn]=…`, `ssn__startswith=1`,
//! `or=(ssn.like.1*)`, a GraphQL query's `where: {ssn: …}`) answers whether its value is what the
//! caller guessed, and a few hundred guesses read it whole: masking hides the value, and this
//! keeps it from being asked about. Ordering by it (`order=ssn.desc`) is let through: an order
//! alone compares values among themselves, never to the caller's guess.

use crate::mask::Sensitive;
use sluice_core::http::{GraphqlKind, HttpAction, fold_name};

/// Operators after a column that order rather than filter (PostgREST's `ssn.desc.nullslast`).
const ORDERS: [&str; 4] = ["asc", "desc", "nullsfirst", "nullslast"];

/// The first field masked by its name that the request filters by, if any: in its query
/// string's names or values, or in a GraphQL query's or subscription's arguments and variables
/// (a mutation's arguments are what it writes).
pub fn filtered_field(sensitive: &Sensitive, action: &HttpAction) -> Option<String> {
    let names: Vec<&str> = sensitive.value_names().collect();
    if names.is_empty() {
        return None;
    }
    let in_query = action.query.iter().find_map(|(name, value)| {
        readings(name)
            .into_iter()
            .find_map(|name| in_parameter_name(&names, &name))
            .or_else(|| readings(value).into_iter().find_map(|value| filtered_in_value(&names, &value)))
    });
    let graphql = action.body.graphql.as_ref().filter(|op| op.kind != GraphqlKind::Mutation);
    let in_graphql = graphql.and_then(|op| {
        let variables = action.body.json.as_deref().and_then(|json| json.get("variables")).cloned();
        let in_url = action.query.iter().filter(|(n, _)| n == "variables");
        let in_url = in_url.filter_map(|(_, v)| serde_json::from_str::<serde_json::Value>(v).ok());
        let mut keys = op.argument_names.clone();
        for value in variables.into_iter().chain(in_url) {
            object_keys(&value, &mut keys);
        }
        keys.iter().find_map(|key| named(&names, key))
    });
    in_query.or(in_graphql).map(str::to_string)
}

/// A name or value of the query string as decoded, and decoded once more when it still holds an
/// escape (a server that decodes twice reads that), in lower case and folded.
fn readings(text: &str) -> Vec<String> {
    let once = fold_name(text);
    let twice = once.contains('%').then(|| fold_name(&percent_encoding::percent_decode_str(&once).decode_utf8_lossy()));
    std::iter::once(once).chain(twice).collect()
}

/// The sensitive name that `key` is (folded), if any.
fn named<'a>(names: &[&'a str], key: &str) -> Option<&'a str> {
    let key = fold_name(key);
    names.iter().find(|n| **n == key).copied()
}

/// A parameter's name is a filter's column wherever the field is one of its words:
/// `ssn`, `filter[ssn]`, `filters[ssn][$eq]`, `where.ssn`, `ssn__startswith` (Django's lookups).
fn in_parameter_name<'a>(names: &[&'a str], parameter: &str) -> Option<&'a str> {
    let words = parameter.split("__").flat_map(|part| part.split(|c: char| !is_word(c)));
    words.filter(|w| !w.is_empty()).find_map(|word| names.iter().find(|n| **n == word).copied())
}

/// In a value, the field followed by operators that filter (`ssn.eq.1`, `ssn.like.1*`,
/// `not.and=(ssn.gte.5)`), as PostgREST's logical filters write them.
fn filtered_in_value<'a>(names: &[&'a str], value: &str) -> Option<&'a str> {
    names
        .iter()
        .find(|name| {
            value.match_indices(**name).any(|(at, _)| {
                let before = value[..at].chars().next_back();
                let end = at + name.len();
                if before.is_some_and(is_word) || value[end..].starts_with(is_word) {
                    return false;
                }
                // The operators: `.word` steps after the column.
                let mut ops =
                    value[end..].split('.').skip(1).map(|op| op.split(|c: char| !is_word(c)).next().unwrap_or(""));
                value[end..].starts_with('.') && ops.any(|op| !op.is_empty() && !ORDERS.contains(&op))
            })
        })
        .copied()
}

/// Letters, digits, `_`, `$` and any non-ASCII character: what continues a name.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Every key of every object in `value`, at any depth.
fn object_keys(value: &serde_json::Value, keys: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                keys.push(key.clone());
                object_keys(inner, keys);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| object_keys(item, keys)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::http::GraphqlOperation;

    fn filtered(target: &str) -> Option<String> {
        let sensitive = Sensitive::new(vec!["ssn".into()], vec![vec!["customer".into(), "card".into()]]);
        filtered_field(&sensitive, &HttpAction::new("GET", target).unwrap())
    }

    #[test]
    fn a_filter_on_a_masked_field_is_found_wherever_the_query_string_puts_it() {
        for target in [
            "/c?ssn=eq.123",
            "/c?SSN=1",
            "/c?filter[ssn]=1",
            "/c?filters[ssn][$eq]=1",
            "/c?where.ssn=1",
            "/c?ssn__startswith=1",
            "/c?or=(id.eq.1,ssn.like.1*)",
            "/c?and=(ssn.gte.5)",
            "/c?card=1",
            "/c?q=%2573sn.eq.1",
            "/c?%2573sn=1",
        ] {
            assert!(filtered(target).is_some(), "{target}");
        }
        for target in [
            "/c?select=id,ssn",
            "/c?order=ssn.desc.nullslast",
            "/c?sort=-ssn",
            "/c?ssn_hash_version=2",
            "/c?customer=1",
            "/c?lessn=1&ssns=2",
            "/c?q=ssn",
        ] {
            assert_eq!(filtered(target), None, "{target}");
        }
    }

    #[test]
    fn a_graphql_read_filtering_by_a_masked_field_is_found_and_a_write_is_not() {
        let sensitive = Sensitive::new(vec!["ssn".into()], vec![]);
        let mut action = HttpAction::new("POST", "/graphql").unwrap();
        let op = |kind, arguments: &[&str]| GraphqlOperation {
            kind,
            name: None,
            fields: vec!["users".into()],
            renamed: vec![],
            argument_names: arguments.iter().map(|a| a.to_string()).collect(),
            on_endpoint: true,
        };
        action.body.graphql = Some(op(GraphqlKind::Query, &["where", "SSN"]));
        assert_eq!(filtered_field(&sensitive, &action).as_deref(), Some("ssn"));
        action.body.graphql = Some(op(GraphqlKind::Mutation, &["ssn"]));
        assert_eq!(filtered_field(&sensitive, &action), None);
        action.body.graphql = Some(op(GraphqlKind::Query, &["where"]));
        assert_eq!(filtered_field(&sensitive, &action), None);
        action.body.json = Some(std::sync::Arc::new(serde_json::json!({"variables": {"w": [{"ssn": {"_eq": "1"}}]}})));
        assert_eq!(filtered_field(&sensitive, &action).as_deref(), Some("ssn"));
    }
}
