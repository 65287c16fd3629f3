//! Reading a statement written for `standard_conforming_strings = off`: libpg_query lexes with it
//! on, so before analysis each backslash escape of a quote inside a plain string literal is
//! rewritten to the standard form of the same length. Token boundaries and every offset stay
//! where the server sees them; escapes other than `\'` keep their characters (the literal's value
//! may then read differently, which only matters where policy depends on it, and there the
//! setting stays pinned).

/// The text as the standard lexer should see it, or `None` when it already reads the same.
pub fn with_standard_strings(text: &str) -> Option<String> {
    if !text.contains('\\') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = block_comment_end(bytes, i),
            b'"' => i = closing(bytes, i + 1, b'"'),
            b'$' if starts_token(bytes, i) => i = dollar_quote_end(bytes, i),
            b'\'' => {
                let prefix = i.checked_sub(1).map(|p| bytes[p].to_ascii_lowercase());
                let standalone_prefix = i < 2 || !is_ident_byte(bytes[i - 2]);
                match prefix {
                    // E'…' lexes the same either way; B'…', X'…' and U&'…' have no escapes.
                    Some(b'e' | b'b' | b'x') if standalone_prefix => i = escaped_string_end(bytes, i + 1),
                    Some(b'&') => i = closing(bytes, i + 1, b'\''),
                    _ => {
                        let (end, rewrote) = rewrite_plain_string(bytes, i + 1, &mut out);
                        changed |= rewrote;
                        i = end;
                    }
                }
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were exchanged for ASCII bytes, so the text is still UTF-8.
    changed.then(|| String::from_utf8(out).ok()).flatten()
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn starts_token(bytes: &[u8], i: usize) -> bool {
    i == 0 || !is_ident_byte(bytes[i - 1])
}

/// The index after the quote that closes a literal whose body starts at `i`, doubled quotes
/// being part of the body.
fn closing(bytes: &[u8], mut i: usize, quote: u8) -> usize {
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

/// The end of an E'…' literal: a backslash escapes the byte after it.
fn escaped_string_end(bytes: &[u8], mut i: usize) -> usize {
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

/// A plain literal under backslash escapes: `\'` becomes `''` in `out`; returns the index after
/// the closing quote and whether anything changed.
fn rewrite_plain_string(bytes: &[u8], mut i: usize, out: &mut [u8]) -> (usize, bool) {
    let mut changed = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'\'') => {
                out[i] = b'\'';
                changed = true;
                i += 2;
            }
            b'\\' => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return (i + 1, changed),
            _ => i += 1,
        }
    }
    (bytes.len(), changed)
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
    let tag_len = bytes[i + 1..].iter().take_while(|&&b| b != b'$' && (b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)).count();
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

    #[test]
    fn an_escaped_quote_in_a_plain_literal_becomes_a_doubled_one() {
        let text = r"SELECT 'a\'b' AS x, 'c\\' AS y";
        let standard = with_standard_strings(text).expect("rewritten");
        assert_eq!(standard, r"SELECT 'a''b' AS x, 'c\\' AS y");
        assert_eq!(standard.len(), text.len());
        assert!(matches!(crate::analyze(&standard), sluice_core::sql::SqlAnalysis::Parsed { .. }));
    }

    #[test]
    fn escape_strings_identifiers_comments_and_dollar_quotes_are_left_alone() {
        for text in [
            r"SELECT E'a\'b', 'plain'",
            r#"SELECT "a\" FROM t"#,
            r"SELECT 1 -- it\'s a comment",
            r"SELECT $q$ it\'s $q$",
            r"SELECT 'no backslash'",
            r"/* a \' */ SELECT 1",
        ] {
            assert_eq!(with_standard_strings(text), None, "{text}");
        }
    }

    #[test]
    fn a_name_ending_in_e_does_not_make_an_escape_string() {
        // `somee` is a name; the literal after it is plain.
        assert_eq!(with_standard_strings(r"SELECT 1 AS somee'\'x'").as_deref(), Some(r"SELECT 1 AS somee'''x'"));
    }
}
