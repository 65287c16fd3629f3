//! A bounded cache of classifications by statement text, so a repeated statement costs a hash
//! lookup instead of a parse. Numeric literals are folded out of the key when the text has no
//! quotes, comments or non-ASCII (then a number can only be a number), so `… WHERE id = 7` and
//! `… WHERE id = 8` share one entry: a number's value never changes what a statement does. It can
//! change whether the grammar accepts it (`ALTER INDEX i ALTER COLUMN 0` is a syntax error, column 1
//! is not), so a text the parser rejects is kept under its own text, never under the folded key.

use crate::classify::analyze;
use parking_lot::Mutex;
use sluice_core::sql::{SharedAnalysis, SqlAnalysis};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Keys are statement texts: hashed with foldhash (seeded per process), several times cheaper
/// than the default SipHash on a short text.
type Entries = HashMap<Box<str>, SharedAnalysis, foldhash::fast::RandomState>;

pub struct Classifier {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl Classifier {
    /// A cache of at most `capacity` texts (emptied when full, see `insert_bounded`).
    pub fn new(capacity: usize) -> Self {
        Classifier { entries: Mutex::new(Entries::default()), capacity: capacity.max(1) }
    }

    pub fn classify(&self, text: &str) -> SharedAnalysis {
        self.classify_keyed(text, cache_key(text))
    }

    fn classify_keyed(&self, text: &str, key: Cow<'_, str>) -> SharedAnalysis {
        if let Some(hit) = self.entries.lock().get(key.as_ref()) {
            return Arc::clone(hit);
        }
        let analysis = Arc::new(analyze(text));
        insert_bounded(&mut self.entries.lock(), entry_key(text, key, &analysis), &analysis, self.capacity);
        analysis
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Texts a session keeps its own classifications of.
const SESSION_ENTRIES: usize = 256;

/// A session's own copies of the classifications it used lately, in front of the shared
/// `Classifier`: a statement the session repeats then takes no lock and touches no memory that
/// sessions on other cores write (a shared entry's reference count is such memory).
#[derive(Default)]
pub struct SessionClassifier {
    entries: Entries,
    /// Where a folded key is built: one buffer for the session, not an allocation per statement.
    folded: String,
}

impl SessionClassifier {
    pub fn classify(&mut self, shared: &Classifier, text: &str) -> SharedAnalysis {
        let key = if fold_literals(text, &mut self.folded) { self.folded.as_str() } else { text };
        if let Some(hit) = self.entries.get(key) {
            return Arc::clone(hit);
        }
        let own = Arc::new(SqlAnalysis::clone(&shared.classify_keyed(text, Cow::Borrowed(key))));
        insert_bounded(&mut self.entries, entry_key(text, Cow::Borrowed(key), &own), &own, SESSION_ENTRIES);
        own
    }
}

/// Where an analysis of `text` is kept: under the folded `key`, unless the parser rejected the
/// text — another value in the same place may be accepted, so the rejection is kept for this text
/// alone.
fn entry_key<'a>(text: &'a str, key: Cow<'a, str>, analysis: &SqlAnalysis) -> Cow<'a, str> {
    match analysis {
        SqlAnalysis::Unparseable { .. } => Cow::Borrowed(text),
        SqlAnalysis::Parsed { .. } => key,
    }
}

/// Inserts, emptying the map first when it is full: statements that repeat come back at once, and
/// no per-entry bookkeeping is paid on the hot path.
fn insert_bounded(entries: &mut Entries, key: Cow<'_, str>, analysis: &SharedAnalysis, capacity: usize) {
    if entries.len() >= capacity {
        entries.clear();
    }
    entries.insert(key.into(), Arc::clone(analysis));
}

/// What a byte means to `cache_key`.
const PLAIN: u8 = 0;
const DIGIT: u8 = 1;
/// Could start a comment (`--`, `/*`).
const DASH_OR_SLASH: u8 = 2;
/// Makes folding unsafe: quotes, dollar signs, backslashes, non-ASCII.
const UNSAFE: u8 = 3;

static BYTE_CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'0'..=b'9' => DIGIT,
            b'-' | b'/' => DASH_OR_SLASH,
            b'\'' | b'"' | b'$' | b'\\' | 0x80..=0xff => UNSAFE,
            _ => PLAIN,
        };
        b += 1;
    }
    table
};

/// The text with every unsigned decimal literal replaced by `0`, or the text itself when folding
/// could be unsafe (quotes, dollar signs, backslashes, comments, non-ASCII, or a number run into a
/// letter such as `1e5`).
pub fn cache_key(text: &str) -> Cow<'_, str> {
    let mut folded = String::new();
    if fold_literals(text, &mut folded) { Cow::Owned(folded) } else { Cow::Borrowed(text) }
}

/// Writes into `out` the text with every unsigned decimal literal replaced by `0` and returns
/// true, or returns false when there is nothing to fold or folding could be unsafe (see
/// `cache_key`); `out` is then left in no particular state.
fn fold_literals(text: &str, out: &mut String) -> bool {
    // One pass with a table lookup per byte: this runs for every simple-protocol statement, most
    // of which it leaves as they are.
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.';
    out.clear();
    let mut folded = false;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match BYTE_CLASS[usize::from(b)] {
            PLAIN => {
                i += 1;
                continue;
            }
            UNSAFE => return false,
            DASH_OR_SLASH => {
                if matches!((b, bytes.get(i + 1)), (b'-', Some(b'-')) | (b'/', Some(b'*'))) {
                    return false;
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        if i > 0 && word(bytes[i - 1]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < bytes.len() && word(bytes[i]) {
            return false;
        }
        out.push_str(&text[copied..start]);
        out.push('0');
        copied = i;
        folded = true;
    }
    if folded {
        out.push_str(&text[copied..]);
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::{Classifier, SessionClassifier, cache_key};
    use sluice_core::sql::SqlAnalysis;
    use std::sync::Arc;

    #[test]
    fn a_session_classifies_through_copies_of_its_own() {
        let shared = Classifier::new(10);
        let mut session = SessionClassifier::default();
        let first = session.classify(&shared, "SELECT * FROM t WHERE id = 1");
        let again = session.classify(&shared, "SELECT * FROM t WHERE id = 2");
        assert!(Arc::ptr_eq(&first, &again), "folded literals share the session's entry");
        let from_shared = shared.classify("SELECT * FROM t WHERE id = 3");
        assert!(!Arc::ptr_eq(&first, &from_shared), "the session's entry is its own copy");
        assert_eq!(*first, *from_shared);
        assert_eq!(shared.len(), 1, "the shared cache classified the text once");
        let other = session.classify(&shared, "SELECT * FROM u");
        assert_ne!(*other, *first);
    }

    #[test]
    fn a_number_the_grammar_rejects_does_not_refuse_the_same_text_with_another() {
        let zero = "ALTER INDEX i ALTER COLUMN 0 SET STATISTICS 1000";
        let one = "ALTER INDEX i ALTER COLUMN 1 SET STATISTICS 1000";
        assert_eq!(cache_key(zero), cache_key(one), "both fold to one key");
        let parsed = |a: &SqlAnalysis| matches!(a, SqlAnalysis::Parsed { .. });
        // Through a session's cache and through the shared one alone.
        for through_session in [true, false] {
            let shared = Classifier::new(10);
            let mut session = SessionClassifier::default();
            let mut classify =
                |text: &str| if through_session { session.classify(&shared, text) } else { shared.classify(text) };
            assert!(!parsed(&classify(zero)), "column 0 is a syntax error");
            assert!(parsed(&classify(one)), "column 1 is not, although column 0 was seen first");
            // The other way round is harmless: the accepted analysis stands for the rejected text
            // too (same kinds, same objects), and the server rejects that text with its own error.
            assert!(parsed(&classify(zero)));
        }
    }

    #[test]
    fn numbers_fold_only_where_they_are_plainly_numbers() {
        assert_eq!(cache_key("SELECT * FROM t WHERE id = 12345;"), "SELECT * FROM t WHERE id = 0;");
        assert_eq!(cache_key("SELECT 1.5, -2, t1.c FROM t1"), "SELECT 0, -0, t1.c FROM t1");
        assert_eq!(cache_key("SELECT 1::int"), "SELECT 0::int");
        // Left alone: literals, comments, exponents, parameters.
        for text in [
            "SELECT '1'",
            "SELECT 1 -- 2",
            "SELECT /* 1 */ 1",
            "SELECT 1e5",
            "SELECT $1",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT 1, 'x'",
            "SELECT 1 AS \"n\"",
            "SELECT 2 /* late comment */",
            "SELECT 3 --",
            "SELECT 4, E'\\n'",
            "SELECT 5, 'é'",
            "SELECT 6, $$x$$",
        ] {
            assert_eq!(cache_key(text), text);
        }
    }
}
