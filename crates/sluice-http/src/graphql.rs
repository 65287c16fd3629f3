//! The GraphQL operation a request to a GraphQL endpoint carries, read with a real GraphQL parser:
//! its kind and the fields of its top-level selection, through fragments. What cannot be read as
//! exactly one operation (a syntax error, several operations, a batch, a persisted query sent by
//! hash only) is refused: sluice does not guess what the server will run. Off a GraphQL endpoint,
//! a request's `query` parameter, JSON `query` string or `application/graphql` body that is a
//! GraphQL document is read the same way (`off_endpoint`): a server may answer GraphQL on a path
//! the operator did not declare.

use apollo_parser::cst::CstNode;
use apollo_parser::{Parser, cst};
use sluice_core::http::{GraphqlKind, GraphqlOperation};
use std::collections::HashMap;

/// Limits that keep a hostile document cheap to read.
const RECURSION_LIMIT: usize = 64;
const TOKEN_LIMIT: usize = 50_000;
/// Fragments followed from the top-level selection, at most.
const MAX_SPREADS: usize = 256;

/// Where the operation's text came from, as the request carried it.
pub enum Carrier<'a> {
    /// `?query=…` (a GET).
    Query(&'a str),
    /// A JSON body `{"query": …, "operationName": …, "variables": …}`.
    Json(&'a serde_json::Value),
    /// An `application/graphql` body.
    Document(&'a str),
}

/// The operation, or why it cannot be read.
pub fn operation(carrier: Carrier<'_>) -> Result<GraphqlOperation, String> {
    let text = match carrier {
        Carrier::Query(text) | Carrier::Document(text) => text,
        Carrier::Json(serde_json::Value::Array(_)) => {
            return Err(
                "a batch of GraphQL operations (a JSON array) is refused; send one operation per request".into()
            );
        }
        Carrier::Json(body) => match body.get("query") {
            Some(serde_json::Value::String(text)) => text.as_str(),
            _ if body.pointer("/extensions/persistedQuery").is_some() => {
                return Err("a persisted query sent by its hash alone cannot be checked; send the query text".into());
            }
            _ => return Err("the body has no \"query\" string".into()),
        },
    };
    parse(text)
}

/// What could carry a GraphQL document in a request to a path not declared GraphQL.
pub struct OffEndpoint<'a> {
    /// The values of the query string's `query` parameters.
    pub query: Vec<&'a str>,
    /// The body read as JSON.
    pub json: Option<&'a serde_json::Value>,
    /// The body, when declared `application/graphql`.
    pub document: Option<&'a str>,
}

/// The operation a request off a GraphQL endpoint carries: `None` when none of its carriers is a
/// GraphQL document (most are not: a search string, a REST body's field); else the operation,
/// read as on an endpoint, or why it cannot be (several, a batch, a document in two places).
pub fn off_endpoint<'a>(carriers: OffEndpoint<'a>) -> Option<Result<GraphqlOperation, String>> {
    let in_json = |value: &'a serde_json::Value| value.get("query").and_then(serde_json::Value::as_str);
    let batch = match carriers.json {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(in_json).any(is_document),
        _ => false,
    };
    let texts: Vec<&str> = carriers
        .query
        .into_iter()
        .chain(carriers.json.and_then(in_json))
        .chain(carriers.document)
        .filter(|text| is_document(text))
        .collect();
    let read = match (texts.as_slice(), batch) {
        ([], false) => return None,
        (_, true) => {
            Err("the body is a batch of GraphQL operations (a JSON array); send one operation per request".into())
        }
        ([text], false) => parse(text),
        (_, false) => {
            Err("GraphQL documents are in more than one place of the request, and servers differ on which they run"
                .into())
        }
    };
    Some(read.map(|op| GraphqlOperation { on_endpoint: false, ..op }))
}

/// Whether `text` is a GraphQL document by its syntax (what it asks is not looked at).
fn is_document(text: &str) -> bool {
    syntax(text).is_ok()
}

fn syntax(text: &str) -> Result<apollo_parser::SyntaxTree, String> {
    let tree = Parser::new(text).recursion_limit(RECURSION_LIMIT).token_limit(TOKEN_LIMIT).parse();
    match tree.errors().next() {
        Some(error) => Err(format!("the GraphQL document does not parse: {} (at {})", error.message(), error.index())),
        None => Ok(tree),
    }
}

fn parse(text: &str) -> Result<GraphqlOperation, String> {
    let tree = syntax(text)?;
    let document = tree.document();
    let mut operations = Vec::new();
    let mut fragments = HashMap::new();
    for definition in document.definitions() {
        match definition {
            cst::Definition::OperationDefinition(op) => operations.push(op),
            cst::Definition::FragmentDefinition(fragment) => {
                let name = fragment.fragment_name().and_then(|n| n.name()).map(|n| n.text().to_string());
                let (Some(name), Some(set)) = (name, fragment.selection_set()) else {
                    return Err("a fragment without a name or selection".into());
                };
                if fragments.insert(name.clone(), set).is_some() {
                    return Err(format!("the fragment {name} is defined twice"));
                }
            }
            _ => return Err("the document defines types or schema; only operations and fragments are sent".into()),
        }
    }
    let op = match operations.as_slice() {
        [op] => op,
        [] => return Err("the document has no operation".into()),
        _ => return Err("the document holds several operations; send one operation per request".into()),
    };
    let kind = match op.operation_type() {
        None => GraphqlKind::Query,
        Some(t) if t.mutation_token().is_some() => GraphqlKind::Mutation,
        Some(t) if t.subscription_token().is_some() => GraphqlKind::Subscription,
        Some(_) => GraphqlKind::Query,
    };
    let set = op.selection_set().ok_or("the operation has no selection")?;
    let mut fields = Vec::new();
    let mut spreads = 0;
    collect(&set, &fragments, &mut fields, &mut spreads, 0)?;
    if fields.is_empty() {
        return Err("the operation selects no field".into());
    }
    // Every field an alias renames, at any depth: the response names it by the alias, where
    // keys marked sensitive would not find it.
    let mut renamed: Vec<String> = document
        .syntax()
        .descendants()
        .filter_map(cst::Field::cast)
        .filter_map(|field| {
            let name = field.name()?.text().to_string();
            let alias = field.alias()?.name()?.text().to_string();
            (alias != name).then_some(name)
        })
        .collect();
    renamed.sort();
    renamed.dedup();
    let arguments = document.syntax().descendants().filter_map(|node| match cst::Argument::cast(node.clone()) {
        Some(argument) => argument.name(),
        None => cst::ObjectField::cast(node)?.name(),
    });
    let mut argument_names: Vec<String> = arguments.map(|name| name.text().to_string()).collect();
    argument_names.sort();
    argument_names.dedup();
    Ok(GraphqlOperation {
        kind,
        name: op.name().map(|n| n.text().to_string()),
        fields,
        renamed,
        argument_names,
        on_endpoint: true,
    })
}

/// The fields of a selection set, through inline fragments and fragment spreads.
fn collect(
    set: &cst::SelectionSet,
    fragments: &HashMap<String, cst::SelectionSet>,
    fields: &mut Vec<String>,
    spreads: &mut usize,
    depth: usize,
) -> Result<(), String> {
    if depth > RECURSION_LIMIT {
        return Err("fragments nest too deeply".into());
    }
    for selection in set.selections() {
        match selection {
            cst::Selection::Field(field) => {
                let name = field.name().ok_or("a field without a name")?.text().to_string();
                if !fields.contains(&name) {
                    fields.push(name);
                }
            }
            cst::Selection::InlineFragment(inline) => {
                let inner = inline.selection_set().ok_or("an inline fragment without a selection")?;
                collect(&inner, fragments, fields, spreads, depth + 1)?;
            }
            cst::Selection::FragmentSpread(spread) => {
                *spreads += 1;
                if *spreads > MAX_SPREADS {
                    return Err("too many fragment spreads".into());
                }
                let name = spread.fragment_name().and_then(|n| n.name()).ok_or("a spread without a name")?;
                let name = name.text().to_string();
                let inner = fragments.get(&name).ok_or_else(|| format!("the fragment {name} is not defined"))?;
                collect(inner, fragments, fields, spreads, depth + 1)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<GraphqlOperation, String> {
        operation(Carrier::Document(text))
    }

    #[test]
    fn fields_an_alias_renames_are_named_at_any_depth() {
        let op =
            read("{ users { id pw: password card: ssn same: same } ...F } fragment F on Query { c: customers { id } }")
                .unwrap();
        assert_eq!(op.renamed, ["customers", "password", "ssn"]);
        let op =
            read("query($w: F = {ssn: {eq: \"1\"}}) { users(where: $w, first: 2) { id posts(by: {card: 1}) { id } } }")
                .unwrap();
        assert_eq!(op.argument_names, ["by", "card", "eq", "first", "ssn", "where"]);
        assert!(read("{ users { id password } }").unwrap().renamed.is_empty());
    }

    #[test]
    fn kinds_and_top_level_fields_through_fragments_and_aliases() {
        let op = read("{ invoices { id } me { name } }").unwrap();
        assert_eq!((op.kind, op.fields), (GraphqlKind::Query, vec!["invoices".to_string(), "me".to_string()]));
        let op = read(
            "mutation Wipe { ok: __typename ...F ... on Mutation { renameUser(id: 1) } }
             fragment F on Mutation { x: deleteUser(id: 1) { id } }",
        )
        .unwrap();
        assert_eq!(op.kind, GraphqlKind::Mutation);
        assert_eq!(op.name.as_deref(), Some("Wipe"));
        assert_eq!(op.fields, ["__typename", "deleteUser", "renameUser"]);
        assert_eq!(read("subscription { ticks }").unwrap().kind, GraphqlKind::Subscription);
    }

    #[test]
    fn what_is_not_exactly_one_readable_operation_is_refused() {
        for (text, why) in [
            ("{ invoices { id }", "does not parse"),
            ("query A { a } mutation B { b }", "several operations"),
            ("fragment F on Q { a }", "no operation"),
            ("{ ...Missing }", "not defined"),
            ("type Q { a: Int } { a }", "defines types"),
            ("{ ...F } fragment F on Q { ...F }", "nest too deeply"),
        ] {
            let err = read(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let batch = serde_json::json!([{"query": "{ a }"}]);
        assert!(operation(Carrier::Json(&batch)).unwrap_err().contains("batch"));
        let persisted = serde_json::json!({"extensions": {"persistedQuery": {"sha256Hash": "ab"}}});
        assert!(operation(Carrier::Json(&persisted)).unwrap_err().contains("hash alone"));
    }
}
