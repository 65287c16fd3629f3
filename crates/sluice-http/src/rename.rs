//! Requests that may have the upstream return a field marked sensitive under a name of the
//! caller's choosing. Masking finds such a field's value by its name (a key, or a pointer's
//! tokens), and selection languages can rename it in endless ways (PostgREST's `pw:password`,
//! `password.max()` or `->>`; SQL's `password pw`, `upper(password) as pw`; OData's `compute`;
//! Directus's `alias[pw]=password`; MongoDB's `{"pw": "$password"}`). So the check is the other
//! way round: where a selection may be written — the query string, and SQL anywhere — a sensitive
//! name may appear only as a bare item of a list, which every such language returns under its
//! own name; anything else is refused. (GraphQL documents are read exactly, in `graphql`.)

use crate::mask::Sensitive;
use sluice_core::http::HttpAction;

/// The first field marked sensitive (or on the way to one) that the request names where it may
/// be renamed, if any.
pub fn renamed_field(sensitive: &Sensitive, action: &HttpAction, body: &[u8]) -> Option<String> {
    let names = sensitive.field_names();
    if names.is_empty() {
        return None;
    }
    let mut found = None;
    // A selection is written in the query string: every name and value there is read strictly.
    for (name, value) in &action.query {
        found = found.or_else(|| aliased(names, name, value)).or_else(|| unkept(names, name.as_bytes(), true));
        found = found.or_else(|| unkept(names, value.as_bytes(), true));
    }
    // In a body, prose may name the field anywhere; only SQL (a text with SELECT in it), an
    // alias map, and a MongoDB field path are read.
    for (name, value) in &action.body.form {
        found = found.or_else(|| aliased(names, name, value));
        found = found.or_else(|| unkept(names, name.as_bytes(), false));
        found = found.or_else(|| unkept(names, value.as_bytes(), false));
    }
    match &action.body.json {
        Some(json) => found = found.or_else(|| in_json(names, json, false)),
        None if action.body.form.is_empty() => found = found.or_else(|| unkept(names, body, false)),
        None => {}
    }
    found.map(str::to_string)
}

/// Directus names the alias in the parameter (`alias[pw]=password`, `alias.pw=password`).
fn aliased<'a>(names: &'a [String], parameter: &str, value: &str) -> Option<&'a str> {
    let parameter = parameter.to_ascii_lowercase();
    let aliasing = parameter == "alias" || parameter.starts_with("alias[") || parameter.starts_with("alias.");
    aliasing.then(|| names_one(names, value)).flatten()
}

/// The name `text` is, whole (blanks and a `$` of a MongoDB field path aside).
fn names_one<'a>(names: &'a [String], text: &str) -> Option<&'a str> {
    let text = text.trim().trim_start_matches('$');
    names.iter().find(|n| n.eq_ignore_ascii_case(text)).map(String::as_str)
}

/// A JSON body: SQL in its strings, a `$field` path (MongoDB's `$project`), and the values of an
/// `alias` object (Directus).
fn in_json<'a>(names: &'a [String], value: &serde_json::Value, under_alias: bool) -> Option<&'a str> {
    match value {
        serde_json::Value::String(s) => {
            let path = s.starts_with('$').then(|| names_one(names, s)).flatten();
            let alias = under_alias.then(|| names_one(names, s)).flatten();
            path.or(alias).or_else(|| unkept(names, s.as_bytes(), false))
        }
        serde_json::Value::Array(items) => items.iter().find_map(|v| in_json(names, v, under_alias)),
        serde_json::Value::Object(fields) => {
            fields.iter().find_map(|(k, v)| in_json(names, v, under_alias || k.eq_ignore_ascii_case("alias")))
        }
        _ => None,
    }
}

/// The first of `names` that `text` mentions other than as a bare list item — in a query string
/// (`strict`) always, elsewhere only in SQL (a text with `SELECT` or `RETURNING` in it).
fn unkept<'a>(names: &'a [String], text: &[u8], strict: bool) -> Option<&'a str> {
    if text.len() < 3 {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    // What returns columns: a query, and a change's RETURNING list.
    let sql = has_word(&lower, b"select") || has_word(&lower, b"returning");
    if !strict && !sql {
        return None;
    }
    names
        .iter()
        .find(|name| {
            memchr::memmem::find_iter(&lower, name.as_bytes())
                .any(|at| whole_word(&lower, at, name.len()) && !kept(&lower, at, at + name.len(), sql))
        })
        .map(String::as_str)
}

/// Letters, digits, `_`, `$` and any byte of a non-ASCII character: what continues a name.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Whether `text[at..at + len]` is a word of its own.
fn whole_word(text: &[u8], at: usize, len: usize) -> bool {
    let joined_before = at > 0 && is_word(text[at - 1]);
    let joined_after = text.get(at + len).is_some_and(|&b| is_word(b));
    !joined_before && !joined_after
}

fn has_word(text: &[u8], word: &[u8]) -> bool {
    memchr::memmem::find_iter(text, word).any(|at| whole_word(text, at, word.len()))
}

/// Whether the name at `start..end` (whole) of `text` (lower case) is a bare item of a list,
/// which keeps its name: after the start, `,` or `(` (in SQL also `select`, `distinct`,
/// `returning`), maybe
/// qualified (`u.password`) and quoted; before the end, `,`, `(` (an embedded resource, as
/// PostgREST's `profile(email)`) or `)` (in SQL also `from`), maybe quoted and cast
/// (`password::text`). In SQL, never inside parentheses: a function's argument or a subquery's
/// column is returned under the name the outer query gives it.
fn kept(text: &[u8], start: usize, end: usize, sql: bool) -> bool {
    let blank = |b: &u8| b.is_ascii_whitespace();
    if sql {
        let opened = memchr::memchr_iter(b'(', &text[..start]).count();
        if opened > memchr::memchr_iter(b')', &text[..start]).count() {
            return false;
        }
    }
    // Left: a quote, then a qualifier (`word.`), then what opens an item.
    let mut left = start;
    if left > 0 && text[left - 1] == b'"' {
        left -= 1;
    }
    while left > 1 && text[left - 1] == b'.' && is_word(text[left - 2]) {
        left -= 1;
        while left > 0 && is_word(text[left - 1]) {
            left -= 1;
        }
    }
    let before = &text[..left];
    let before = &before[..before.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1)];
    let opens = match before.last() {
        None | Some(b',' | b'(') => true,
        Some(_) => sql && [&b"select"[..], b"distinct", b"returning"].iter().any(|w| ends_with_word(before, w)),
    };
    // Right: a quote (closing the one on the left), a cast, then what closes an item.
    let mut right = end;
    if text.get(right) == Some(&b'"') && left < start {
        right += 1;
    }
    if text[right..].starts_with(b"::") {
        right += 2 + text[right + 2..].iter().take_while(|&&b| is_word(b)).count();
    }
    let after = &text[right..];
    let after = &after[after.iter().take_while(|b| blank(b)).count()..];
    let closes = match after.first() {
        None | Some(b',' | b'(' | b')') => true,
        Some(_) => sql && starts_with_word(after, b"from"),
    };
    opens && closes && groups_end_as_items(text, right)
}

/// Whether every group that is open at `from` (`tolower(password`, `profile(email,password`)
/// ends as an item does — `profile(…)` is an embedded resource, `tolower(…) as pw` renames.
fn groups_end_as_items(text: &[u8], from: usize) -> bool {
    let mut depth = 0usize;
    for (i, &b) in text.iter().enumerate().skip(from) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b')' => {
                let next = text[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                if !matches!(next, None | Some(b',' | b')')) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

fn ends_with_word(text: &[u8], word: &[u8]) -> bool {
    text.ends_with(word) && !(text.len() > word.len() && is_word(text[text.len() - word.len() - 1]))
}

fn starts_with_word(text: &[u8], word: &[u8]) -> bool {
    text.starts_with(word) && !text.get(word.len()).is_some_and(|&b| is_word(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["password".into(), "profile".into()]
    }

    fn query(text: &str) -> Option<String> {
        unkept(&names(), text.as_bytes(), true).map(str::to_string)
    }

    fn body(text: &str) -> Option<String> {
        unkept(&names(), text.as_bytes(), false).map(str::to_string)
    }

    #[test]
    fn a_sensitive_name_in_a_query_string_passes_only_as_a_bare_item() {
        for kept in [
            "password",
            "id,password",
            "id, password ,email",
            "id,profile(email,password)",
            "\"password\"",
            "id,password::text",
            "u.password",
            "passwords,mypassword,password_hash",
        ] {
            assert_eq!(query(kept), None, "{kept}");
        }
        for renamed in [
            "id,pw:password",
            "pw$:password",
            "pé:password",
            "id,pw:\"password\"",
            "x:data->>password",
            "password.max()",
            "...profile(email)",
            "compute(password as pw)",
            "compute(tolower(password) as pw)",
            "aggregate(password with max as pw)",
            "password as pw",
            "password/**/as pw",
            "password\u{b}pw",
            "{\"pw\":\"password\"}",
            "tag:password",
            "password reset",
            "id,password pw",
        ] {
            assert_eq!(
                query(renamed).as_deref(),
                Some(if renamed.contains("profile") { "profile" } else { "password" }),
                "{renamed}"
            );
        }
    }

    #[test]
    fn sql_keeps_a_name_only_as_a_bare_column_and_prose_is_not_read() {
        for kept in [
            "select id, password from users",
            "SELECT password FROM users",
            "select distinct u.password from users u",
            "delete from users where id = 1 returning id, password",
            "select \"password\", id from users",
            "Keep the password as is, thanks",
            "input type: password",
            "I set the password as admin; then left",
        ] {
            assert_eq!(body(kept), None, "{kept}");
        }
        for renamed in [
            "select password pw from users",
            "select password as pw from users",
            "SELECT `password` AS pw FROM users",
            "select [password] as pw from users",
            "select password::text as pw from users",
            "select upper(password) as pw from users",
            "select password||'' as pw from users",
            "select (select password from users limit 1) as pw",
            "select password as 'pw' from users",
            "select password --x\nas pw from users",
            "select cast(password as text) from users",
            "select id from users where password = 'x'",
            "update users set n = 1 returning password as pw",
        ] {
            assert_eq!(body(renamed).as_deref(), Some("password"), "{renamed}");
        }
    }

    #[test]
    fn json_bodies_are_read_for_sql_field_paths_and_alias_maps() {
        let names = names();
        let json = |text: &str| in_json(&names, &serde_json::from_str(text).unwrap(), false);
        assert_eq!(json(r#"{"$project": {"pw": "$password"}}"#), Some("password"));
        assert_eq!(json(r#"{"query": {"alias": {"pw": "password"}}}"#), Some("password"));
        assert_eq!(json(r#"{"sql": "select password as pw from users"}"#), Some("password"));
        assert_eq!(json(r#"{"comment": "forgot my password", "password": "x"}"#), None);
        assert_eq!(aliased(&names, "alias[pw]", "password"), Some("password"));
        assert_eq!(aliased(&names, "fields", "password"), None);
    }
}
