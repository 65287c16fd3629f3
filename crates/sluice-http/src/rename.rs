//! Requests whose query string may have the upstream return a field marked sensitive under a
//! name of the caller's choosing. Masking finds such a field's value by its name (a key, or a
//! pointer's tokens), and the parameters REST APIs shape responses with can rename it in many
//! ways (PostgREST's `pw:password`, `password.max()`, `x:data->>password`; OData's
//! `compute(tolower(password) as pw)`; Directus's `alias[pw]=password`). So the check is the
//! other way round: in the query string a sensitive name may appear only where it keeps its
//! name — an item of a list, a path, a filter's or an order's column — and anything else is
//! refused. (GraphQL documents are read exactly, in `graphql`. Query languages in bodies — SQL,
//! Cypher, aggregation pipelines — compute any column under any name: no reading of names can
//! follow them; docs/http.md says so.)

use crate::mask::Sensitive;
use sluice_core::http::HttpAction;

/// The first field marked sensitive (or on the way to one) that the request's query string names
/// where it may be renamed, if any.
pub fn renamed_field(sensitive: &Sensitive, action: &HttpAction) -> Option<String> {
    let names = sensitive.field_names();
    if names.is_empty() {
        return None;
    }
    action
        .query
        .iter()
        .find_map(|(name, value)| {
            aliased(names, name, value).or_else(|| unkept(names, name)).or_else(|| unkept(names, value))
        })
        .map(str::to_string)
}

/// Directus names the alias in the parameter (`alias[pw]=password`, `alias.pw=password`).
fn aliased<'a>(names: &'a [String], parameter: &str, value: &str) -> Option<&'a str> {
    let parameter = parameter.to_ascii_lowercase();
    let aliasing = parameter == "alias" || parameter.starts_with("alias[") || parameter.starts_with("alias.");
    let value = value.trim();
    let last = value.rsplit(['.', '/']).next().unwrap_or(value);
    aliasing
        .then(|| names.iter().find(|n| n.eq_ignore_ascii_case(value) || n.eq_ignore_ascii_case(last)))
        .flatten()
        .map(String::as_str)
}

/// The first of `names` that a query string's name or value mentions where it may not keep its
/// name; read as decoded, and decoded once more when it still holds an escape (a server that
/// decodes twice would read that).
fn unkept<'a>(names: &'a [String], text: &str) -> Option<&'a str> {
    if text.len() < 3 {
        return None;
    }
    let once = text.to_ascii_lowercase();
    let twice = once.contains('%').then(|| percent_encoding::percent_decode_str(&once).collect::<Vec<u8>>());
    let readings = [Some(once.as_bytes()), twice.as_deref()];
    names
        .iter()
        .find(|name| {
            readings.iter().flatten().any(|text| {
                memchr::memmem::find_iter(text, name.as_bytes())
                    .any(|at| whole_word(text, at, name.len()) && !kept(text, at, at + name.len()))
            })
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

/// Whether the name at `start..end` (a whole word) of `text` (lower case) keeps its name:
/// - before it, the start, or what begins an item, a path step or a column reference: `,` `(`
///   `/` `=` `[` `-` (a descending sort), maybe with a qualifier (`u.password`) and quotes;
/// - after it, the end, or what ends one: `,` `)` `(` (an embedded resource, `profile(email)`)
///   `]` `/` (a path's next step) `-` (a slug: `password-reset`), maybe with quotes, a cast (`::text`), or operators (`.desc`, `.is.null`,
///   `.eq.x`) — but not a call (`.max()`), an arrow, a colon, an `as`, or any other word;
/// - and every group it is in ends as an item does (`tolower(password) as pw` renames).
fn kept(text: &[u8], start: usize, end: usize) -> bool {
    let blank = |b: &u8| b.is_ascii_whitespace();
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
    let opens = matches!(before.last(), None | Some(b',' | b'(' | b'/' | b'=' | b'[' | b'-'));
    let mut right = end;
    if text.get(right) == Some(&b'"') && left < start {
        right += 1;
    }
    if text[right..].starts_with(b"::") {
        right += 2 + text[right + 2..].iter().take_while(|&&b| is_word(b)).count();
    }
    // Operators: `.word` steps not followed by a call.
    while text.get(right) == Some(&b'.') {
        let word = text[right + 1..].iter().take_while(|&&b| is_word(b) || b == b'*' || b == b'%').count();
        if word == 0 || text.get(right + 1 + word) == Some(&b'(') {
            return false;
        }
        right += 1 + word;
    }
    let after = &text[right..];
    let after = &after[after.iter().take_while(|b| blank(b)).count()..];
    let closes = match after.first() {
        None | Some(b',' | b'(' | b')' | b']') => true,
        // A path's next step (not a comment's `/*`), or a slug going on (`password-reset`; not
        // an arrow's `->`).
        Some(b'/' | b'-') => after.get(1).is_none_or(|&b| is_word(b)),
        Some(_) => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["password".into(), "profile".into()]
    }

    fn query(text: &str) -> Option<String> {
        unkept(&names(), text).map(str::to_string)
    }

    #[test]
    fn a_sensitive_name_in_a_query_string_passes_only_where_it_keeps_its_name() {
        for kept in [
            "password",
            "id,password",
            "id, password ,email",
            "id,profile(email,password)",
            "\"password\"",
            "id,password::text",
            "u.password",
            "passwords,mypassword,password_hash",
            "password.desc",
            "-password",
            "(password.is.null,id.eq.1)",
            "password.eq.x",
            "/account/password",
            "/password-reset?next=forgot-password",
            "profile($select=password)",
            "profile/password",
            "100%",
        ] {
            assert_eq!(query(kept), None, "{kept}");
        }
        for renamed in [
            "id,pw:password",
            "pw$:password",
            "pé:password",
            "id,pw:\"password\"",
            "x:data->>password",
            "password->>x",
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
            "id,pw:%70assword",
        ] {
            let expected = if renamed.contains("profile") { "profile" } else { "password" };
            assert_eq!(query(renamed).as_deref(), Some(expected), "{renamed}");
        }
    }

    #[test]
    fn an_alias_parameter_naming_a_sensitive_field_is_a_renaming() {
        let names = names();
        assert_eq!(aliased(&names, "alias[pw]", "password"), Some("password"));
        assert_eq!(aliased(&names, "alias[pw]", "profile.password"), Some("password"));
        assert_eq!(aliased(&names, "fields", "password"), None);
    }
}
