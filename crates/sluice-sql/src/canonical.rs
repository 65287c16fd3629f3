//! A statement as PostgreSQL's lexer reads it, for binding an approval to "the same statement":
//! the same tokens in the same order, whatever the whitespace, comments, trailing semicolons or the
//! case of keywords and unquoted identifiers (which the server folds to lower case). Literals and
//! quoted identifiers are kept exactly, so `id = 1` and `id = 2` stay different statements.

use pg_query::protobuf::{KeywordKind, Token};

/// The canonical text of `text`; the text itself when the lexer rejects it.
pub fn canonical(text: &str) -> String {
    let Ok(scanned) = std::panic::catch_unwind(|| pg_query::scan(text)) else { return text.to_string() };
    let Ok(scanned) = scanned else { return text.to_string() };
    let mut words: Vec<String> = Vec::with_capacity(scanned.tokens.len());
    for token in &scanned.tokens {
        let kind = token.token;
        if kind == Token::SqlComment as i32 || kind == Token::CComment as i32 {
            continue;
        }
        let (Ok(start), Ok(end)) = (usize::try_from(token.start), usize::try_from(token.end)) else {
            return text.to_string();
        };
        let Some(word) = text.get(start..end) else { return text.to_string() };
        let folds = token.keyword_kind != KeywordKind::NoKeyword as i32
            || (kind == Token::Ident as i32 && !word.starts_with('"') && !word.to_ascii_lowercase().starts_with("u&"));
        words.push(if folds { word.to_ascii_lowercase() } else { word.to_string() });
    }
    while words.last().is_some_and(|w| w == ";") {
        words.pop();
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn spacing_comments_semicolons_and_case_do_not_make_another_statement() {
        let same = [
            "TRUNCATE events",
            "TRUNCATE events;",
            "  truncate\n\tEVENTS ;; ",
            "TRUNCATE /* why */ events -- because\n;",
        ];
        for text in same {
            assert_eq!(canonical(text), "truncate events", "{text:?}");
        }
    }

    #[test]
    fn literals_quoted_names_and_order_make_another_statement() {
        let base = canonical("DELETE FROM t WHERE id = 1");
        for other in [
            "DELETE FROM t WHERE id = 2",
            "DELETE FROM \"T\" WHERE id = 1",
            "DELETE FROM t WHERE id = '1'",
            "DELETE FROM t WHERE 1 = id",
            "DELETE FROM t WHERE id = 1; SELECT 1",
        ] {
            assert_ne!(canonical(other), base, "{other:?}");
        }
        assert_ne!(canonical("SELECT 'A'"), canonical("SELECT 'a'"));
        assert_ne!(canonical("SELECT $$A$$"), canonical("SELECT $$a$$"));
    }
}
