//! Reading a statement written for `standard_conforming_strings = off`. libpg_query lexes with it
//! on; with it off, the server reads a plain literal (`'…'`, `N'…'`) the way it reads an escape
//! string (`E'…'`): a backslash escapes the next character, `\'` included. So before analysis,
//! each plain literal that holds a backslash is made an escape string (`E` put before it, or
//! `N` turned into `E`): libpg_query then reads its end and its value exactly as the server does.
//! The text grows by a byte per such literal; offsets into it are not the client's.

/// The text as libpg_query should read it under `standard_conforming_strings = off`, or `None`
/// when it reads the same either way (no plain literal holds a backslash).
pub fn with_standard_strings(text: &str) -> Option<String> {
    if !text.contains('\\') {
        return None;
    }
    let bytes = text.as_bytes();
    // Where `E` goes in (or `N` becomes `E`), and whether a space must separate it from a name.
    let mut edits: Vec<(usize, Edit)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = block_comment_end(bytes, i),
            b'"' => i = quoted_end(bytes, i + 1, b'"'),
            b'$' if starts_token(bytes, i) => i = dollar_quote_end(bytes, i),
            b'\'' => {
                let prefix = i.checked_sub(1).map(|p| bytes[p].to_ascii_lowercase());
                let prefix_starts_token = i >= 1 && starts_token(bytes, i - 1);
                let end = match prefix {
                    // A bit string ends at the next quote, a U&'…' string at a quote not doubled.
                    Some(b'b' | b'x') if prefix_starts_token => {
                        bytes[i + 1..].iter().position(|&b| b == b'\'').map_or(bytes.len(), |n| i + n + 2)
                    }
                    Some(b'&') => quoted_end(bytes, i + 1, b'\''),
                    _ => escape_string_end(bytes, i + 1),
                };
                match prefix {
                    // Escape strings read the same either way; B'…' and X'…' have no escapes;
                    // U&'…' under backslash escapes is an error the server raises itself.
                    Some(b'e' | b'b' | b'x') if prefix_starts_token => {}
                    Some(b'&') => {}
                    Some(b'n') if prefix_starts_token && bytes[i..end].contains(&b'\\') => {
                        edits.push((i - 1, Edit::NationalToEscape));
                    }
                    _ if bytes[i..end].contains(&b'\\') => {
                        // `date'…'` (a typed literal) keeps its type name apart from the `E`.
                        let after_name = i >= 1 && is_ident_byte(bytes[i - 1]);
                        edits.push((i, if after_name { Edit::SpaceAndE } else { Edit::E }));
                    }
                    _ => {}
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 2 * edits.len());
    let mut from = 0;
    for (at, edit) in edits {
        match edit {
            Edit::E => {
                out.push_str(&text[from..at]);
                out.push('E');
                from = at;
            }
            Edit::SpaceAndE => {
                out.push_str(&text[from..at]);
                out.push_str(" E");
                from = at;
            }
            Edit::NationalToEscape => {
                out.push_str(&text[from..at]);
                out.push('E');
                from = at + 1;
            }
        }
    }
    out.push_str(&text[from..]);
    Some(out)
}

#[derive(Clone, Copy)]
enum Edit {
    E,
    SpaceAndE,
    NationalToEscape,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn starts_token(bytes: &[u8], i: usize) -> bool {
    i == 0 || !is_ident_byte(bytes[i - 1])
}

/// The index after the `quote` that closes a quoted name or U&'…' string whose body starts at
/// `i` (a doubled quote is part of it).
fn quoted_end(bytes: &[u8], mut i: usize, quote: u8) -> usize {
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The index after the quote that closes a literal whose body starts at `i`, read with backslash
/// escapes (as the server reads escape strings, and plain ones with the setting off).
fn escape_string_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn block_comment_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end of `$tag$…$tag$` starting at `i`, or just past the `$` when it opens no quote (a
/// parameter such as `$1`).
fn dollar_quote_end(bytes: &[u8], i: usize) -> usize {
    let tag_len = bytes[i + 1..].iter().take_while(|&&b| b != b'$' && is_ident_byte(b)).count();
    let close = i + 1 + tag_len;
    if bytes.get(close) != Some(&b'$') || bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return i + 1;
    }
    let tag = &bytes[i..=close];
    match bytes[close + 1..].windows(tag.len()).position(|w| w == tag) {
        Some(at) => close + 1 + at + tag.len(),
        None => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::sql::SqlAnalysis;

    fn ops(text: &str) -> Vec<String> {
        match crate::analyze(text) {
            SqlAnalysis::Parsed { statements } => statements
                .iter()
                .flat_map(|s| &s.operations)
                .map(|o| format!("{} {}", o.kind, o.object.as_ref().map_or("-".into(), |n| n.to_string())))
                .collect(),
            SqlAnalysis::Unparseable { message } => vec![format!("unparseable: {message}")],
        }
    }

    #[test]
    fn a_plain_literal_with_a_backslash_becomes_an_escape_string() {
        assert_eq!(with_standard_strings(r"SELECT 'a\'b' AS x").as_deref(), Some(r"SELECT E'a\'b' AS x"));
        assert_eq!(with_standard_strings(r"SELECT N'a\'b'").as_deref(), Some(r"SELECT E'a\'b'"));
        assert_eq!(with_standard_strings(r"SELECT date'2020\-01-01'").as_deref(), Some(r"SELECT date E'2020\-01-01'"));
    }

    #[test]
    fn what_the_server_runs_with_the_setting_off_is_what_is_found() {
        // Standard lexing ends the literal at `\'` and hides the DELETE in a second literal;
        // with backslash escapes the first literal runs on and the DELETE is a statement.
        let text = r"SELECT 'x\''; DELETE FROM orders; --'";
        assert!(!ops(text).contains(&"delete orders".to_string()), "{:?}", ops(text));
        let off = with_standard_strings(text).expect("rewritten");
        assert!(ops(&off).contains(&"delete orders".to_string()), "{:?}", ops(&off));
        // And a value read through: query_to_xml's SQL, with an escaped quote in it.
        let text = r"SELECT query_to_xml('DELETE FROM orders WHERE note = \'x\'', true, true, '')";
        let off = with_standard_strings(text).expect("rewritten");
        assert!(ops(&off).contains(&"delete orders".to_string()), "{:?}", ops(&off));
    }

    #[test]
    fn escape_strings_names_comments_and_dollar_quotes_are_left_alone() {
        for text in [
            r"SELECT E'a\'b', 'plain'",
            r#"SELECT "a\" FROM t"#,
            r"SELECT 1 -- it\'s a comment",
            r"SELECT $q$ it\'s $q$",
            r"SELECT 'no backslash'",
            r"/* a \' */ SELECT 1",
            r"SELECT B'101', X'1F'",
        ] {
            assert_eq!(with_standard_strings(text), None, "{text}");
        }
    }
}
