//! Requests that ask the upstream to return a field marked sensitive under a name of the
//! caller's choosing. Masking finds such a field's value by its name (a key, or a pointer's
//! tokens), so a renamed one would leave unmasked: PostgREST's `select=pw:password`, SQL's and
//! OData's `password as pw`, Directus's `alias[pw]=password` (GraphQL aliases are read from the
//! parsed document, in `graphql`). Where a request's parameters or body spell such a renaming,
//! it is refused.

use crate::mask::Sensitive;
use sluice_core::http::HttpAction;

/// The first field marked sensitive (or on the way to one) that the request renames, if any:
/// read in the query's names and values, the form's and the JSON body's values, and the text of
/// a body that is neither.
pub fn renamed_field(sensitive: &Sensitive, action: &HttpAction, body: &[u8]) -> Option<String> {
    let names = sensitive.field_names();
    if names.is_empty() {
        return None;
    }
    let pairs = action.query.iter().chain(&action.body.form);
    // Directus names the alias in the parameter (`alias[pw]=password`, `alias.pw=password`).
    let by_parameter = pairs.clone().find_map(|(name, value)| {
        let name = name.to_ascii_lowercase();
        let aliasing = name.starts_with("alias[") || name.starts_with("alias.");
        let value = value.trim().to_ascii_lowercase();
        aliasing.then(|| names.iter().find(|n| **n == value)).flatten()
    });
    if let Some(name) = by_parameter {
        return Some(name.clone());
    }
    let mut texts: Vec<&[u8]> = pairs.map(|(_, v)| v.as_bytes()).collect();
    match &action.body.json {
        Some(json) => strings(json, &mut texts),
        None if action.body.form.is_empty() => texts.push(body),
        None => {}
    }
    texts.into_iter().find_map(|text| renamed_in(names, text)).map(str::to_string)
}

/// Every string value of a JSON document.
fn strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a [u8]>) {
    match value {
        serde_json::Value::String(s) => out.push(s.as_bytes()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The first of `names` (lower case) that `text` renames.
fn renamed_in<'a>(names: &'a [String], text: &[u8]) -> Option<&'a str> {
    if text.len() < 3 {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    names
        .iter()
        .find(|name| memchr::memmem::find_iter(&lower, name.as_bytes()).any(|at| renames(&lower, at, name.len())))
        .map(String::as_str)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the name at `at..at + len` of `text` (lower case) is renamed there: `alias:name`
/// (PostgREST, GraphQL; the alias may be quoted), or `name as alias` followed by what ends a
/// column (`,`, `)`, `;`, `from`) — not prose ("the password as soon as …").
fn renames(text: &[u8], at: usize, len: usize) -> bool {
    let end = at + len;
    if (at > 0 && is_word(text[at - 1])) || text.get(end).is_some_and(|&b| is_word(b)) {
        return false;
    }
    let blank = |b: &u8| b.is_ascii_whitespace();
    let before = text[..at].iter().rposition(|b| !blank(b));
    if let Some(colon) = before.filter(|&i| text[i] == b':') {
        let alias_end = text[..colon].iter().rposition(|b| !blank(b));
        // Not a cast's `::`, nor a URL's scheme.
        if alias_end.is_some_and(|i| is_word(text[i]) || text[i] == b'"') {
            return true;
        }
    }
    let rest = &text[end..];
    let gap = rest.iter().take_while(|b| blank(b)).count();
    let Some(after_as) = rest[gap..].strip_prefix(b"as").filter(|_| gap > 0) else { return false };
    let gap = after_as.iter().take_while(|b| blank(b)).count();
    let alias = &after_as[gap..];
    let quoted = alias.first().is_some_and(|b| matches!(b, b'"' | b'`' | b'['));
    let alias_len = if quoted {
        alias[1..].iter().position(|b| matches!(b, b'"' | b'`' | b']')).map_or(alias.len(), |i| i + 2)
    } else {
        alias.iter().take_while(|&&b| is_word(b)).count()
    };
    if gap == 0 || alias_len == 0 {
        return false;
    }
    let tail = &alias[alias_len..];
    let tail = &tail[tail.iter().take_while(|b| blank(b)).count()..];
    tail.first().is_some_and(|b| matches!(b, b',' | b')' | b';'))
        || tail.strip_prefix(b"from").is_some_and(|t| t.first().is_none_or(|&b| !is_word(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(text: &str) -> Option<&'static str> {
        static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let names = NAMES.get_or_init(|| vec!["password".into(), "profile".into()]);
        renamed_in(names, text.as_bytes())
    }

    #[test]
    fn renamings_of_a_sensitive_field_are_found_in_every_dialect() {
        for text in [
            "id,pw:password",
            "id, pw : password::text",
            "id,\"my pw\":password",
            "id,p:profile(email)",
            "select password as pw from users",
            "SELECT Password AS \"pw\" FROM users",
            "compute(password as pw)",
            "password as pw, id",
            "query { user { pw: password } }",
        ] {
            assert!(renamed(text).is_some(), "{text}");
        }
    }

    #[test]
    fn the_name_kept_or_named_in_prose_is_not_a_renaming() {
        for text in [
            "id,password",
            "password::text",
            "password_reset:true",
            "https://password.example/",
            "id,passwords:pw",
            "reset the password as soon as possible",
            "the password as given",
            "mypassword as pw",
            "title:passwordless",
        ] {
            assert_eq!(renamed(text), None, "{text}");
        }
    }
}
