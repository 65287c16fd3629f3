//! Where in a statement PostgreSQL's parser stops: the error position a client shows under a
//! syntax error (psql's `LINE 1: … ^`, a driver's `position`), for statements sluice refuses as
//! unparseable without sending them to the server.
//!
//! libpg_query knows the position but its Rust crate exposes only the message, and sluice forbids
//! `unsafe`. The parser is deterministic over tokens, so the position is found by parsing prefixes:
//! the first token whose inclusion produces the same error as the whole text is where the parser
//! failed. Only refusals pay for this (a few parses, by bisection).

/// The 1-based character position of the parse error in `text`, as PostgreSQL reports it; `None`
/// when the text parses (the error came from a body inside it) or the position cannot be told.
pub fn error_position(text: &str) -> Option<u32> {
    let message = parse_error(text)?;
    let byte = if message.ends_with("at end of input") {
        text.len()
    } else {
        let tokens = pg_query::scan(text).ok()?.tokens;
        let ends: Vec<usize> = tokens.iter().map(|t| usize::try_from(t.end).unwrap_or(usize::MAX)).collect();
        // The smallest k such that text up to the end of token k fails with the same message.
        let (mut low, mut high) = (0, ends.len());
        while low < high {
            let mid = (low + high) / 2;
            let same = text.get(..ends[mid]).and_then(parse_error).is_some_and(|m| m == message);
            if same { high = mid } else { low = mid + 1 }
        }
        usize::try_from(tokens.get(low)?.start).ok()?
    };
    let chars = text.get(..byte)?.chars().count();
    u32::try_from(chars + 1).ok()
}

fn parse_error(text: &str) -> Option<String> {
    match std::panic::catch_unwind(|| pg_query::parse(text, 0)) {
        Ok(Err(pg_query::Error::Parse(message))) => Some(message),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::error_position;

    #[test]
    fn the_position_is_where_postgresql_puts_its_caret() {
        // Positions as PostgreSQL 15 reports them for the same texts (psql's `LINE 1: … ^`).
        assert_eq!(error_position("SELEC 1"), Some(1));
        assert_eq!(error_position("SELECT 1 FROM FROM t"), Some(15));
        assert_eq!(error_position("SELECT * FROM t WHERE"), Some(22));
        assert_eq!(error_position("SELECT 'é', 'ü' FROM FROM"), Some(22));
        assert_eq!(error_position("SELECT 1; SELECT 2 2"), Some(20));
    }

    #[test]
    fn a_text_that_parses_has_no_position() {
        assert_eq!(error_position("SELECT 1"), None);
    }
}
