//! Credentials named beside their value rather than before it: a key called `value` whose
//! sibling in the same JSON object or YAML mapping is a string naming a credential, as
//! Kubernetes writes environment variables (`{"name": "DB_PASSWORD", "value": "…"}`,
//! `- name: DB_PASSWORD` over `  value: …`) and AWS writes parameters and tags
//! (`{"Name": "/prod/db/password", "Type": "SecureString", "Value": "…"}`).

use crate::detect::{NAME, name_end, names_credential};

/// How many sibling pairs are read on either side of `value` (AWS puts `Type` between).
const SIBLINGS: usize = 4;

/// The longest sibling string or line read.
const MAX_SIBLING: usize = 256;

/// Whether the separator at `sep` ends a key `value` (any case) a sibling of which names a
/// credential.
pub(crate) fn named_beside(hay: &[u8], sep: usize) -> bool {
    match value_key(hay, sep) {
        Some(Key::Quoted(start)) => json_before(hay, start) || json_after(hay, sep),
        Some(Key::Bare(start)) => hay[sep] == b':' && yaml(hay, start, sep),
        None => false,
    }
}

enum Key {
    /// A JSON key: where its opening quote is.
    Quoted(usize),
    /// A YAML key: where it starts.
    Bare(usize),
}

/// The key `value` that ends at the separator `sep` (past blanks), if that is what ends there.
fn value_key(hay: &[u8], sep: usize) -> Option<Key> {
    let (end, quote) = name_end(hay, sep);
    let start = end.checked_sub(5)?;
    if !hay[start..end].eq_ignore_ascii_case(b"value") {
        return None;
    }
    match quote {
        Some(q) => (start > 0 && hay[start - 1] == q).then_some(Key::Quoted(start - 1)),
        None => (start == 0 || !NAME[hay[start - 1] as usize]).then_some(Key::Bare(start)),
    }
}

fn blanks_back(hay: &[u8], mut i: usize) -> usize {
    while i > 0 && hay[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    i
}

fn blanks(hay: &[u8], mut i: usize) -> usize {
    while hay.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Whether the backslashes just before `i` are an odd number (the byte at `i` is escaped).
fn escaped(hay: &[u8], i: usize) -> bool {
    hay[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

/// A JSON string that ends (its closing quote included) at `end`: where its opening quote is.
fn string_back(hay: &[u8], end: usize) -> Option<usize> {
    if end == 0 || hay[end - 1] != b'"' {
        return None;
    }
    let floor = end.saturating_sub(MAX_SIBLING);
    let mut close = end - 1;
    loop {
        let open = floor + memchr::memrchr(b'"', &hay[floor..close])?;
        if !escaped(hay, open) {
            return Some(open);
        }
        close = open;
    }
}

/// A JSON string that starts (its opening quote) at `start`: where it ends, past its closing quote.
fn string_after(hay: &[u8], start: usize) -> Option<usize> {
    let ceiling = hay.len().min(start + MAX_SIBLING);
    let mut from = start + 1;
    loop {
        let close = from + memchr::memchr(b'"', hay.get(from..ceiling)?)?;
        if !escaped(hay, close) {
            return Some(close + 1);
        }
        from = close + 1;
    }
}

/// A number, `true`, `false` or `null`'s bytes.
fn bare(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')
}

/// A JSON scalar (a string, a number, `true`, `false`, `null`) that ends at `end`: where it
/// starts, and whether it is a string.
fn scalar_back(hay: &[u8], end: usize) -> Option<(usize, bool)> {
    if let Some(open) = string_back(hay, end) {
        return Some((open, true));
    }
    let start = end - hay[..end].iter().rev().take(MAX_SIBLING).take_while(|&&c| bare(c)).count();
    (start < end).then_some((start, false))
}

/// A JSON scalar that starts at `start`: where it ends, and whether it is a string.
fn scalar_after(hay: &[u8], start: usize) -> Option<(usize, bool)> {
    if hay.get(start) == Some(&b'"') {
        return string_after(hay, start).map(|end| (end, true));
    }
    let end = start + hay[start..].iter().take(MAX_SIBLING).take_while(|&&c| bare(c)).count();
    (start < end).then_some((end, false))
}

/// The key of the JSON value that starts at `value`: where the key's opening quote is.
fn key_back(hay: &[u8], value: usize) -> Option<usize> {
    let colon = blanks_back(hay, value);
    if colon == 0 || hay[colon - 1] != b':' {
        return None;
    }
    string_back(hay, blanks_back(hay, colon - 1))
}

/// The pairs before the key at `key` in its object: whether one holds a string naming a
/// credential.
fn json_before(hay: &[u8], mut key: usize) -> bool {
    for _ in 0..SIBLINGS {
        let comma = blanks_back(hay, key);
        if comma == 0 || hay[comma - 1] != b',' {
            return false;
        }
        let end = blanks_back(hay, comma - 1);
        let Some((start, string)) = scalar_back(hay, end) else { return false };
        let Some(key_start) = key_back(hay, start) else { return false };
        if string && names_credential(hay, end) {
            return true;
        }
        key = key_start;
    }
    false
}

/// The pairs after the value of the key `value` (whose separator is at `sep`) in its object:
/// whether one holds a string naming a credential.
fn json_after(hay: &[u8], sep: usize) -> bool {
    let Some((mut at, _)) = scalar_after(hay, blanks(hay, sep + 1)) else { return false };
    for _ in 0..SIBLINGS {
        let comma = blanks(hay, at);
        if hay.get(comma) != Some(&b',') {
            return false;
        }
        let key = blanks(hay, comma + 1);
        if hay.get(key) != Some(&b'"') {
            return false;
        }
        let Some(key_end) = string_after(hay, key) else { return false };
        let colon = blanks(hay, key_end);
        if hay.get(colon) != Some(&b':') {
            return false;
        }
        let Some((end, string)) = scalar_after(hay, blanks(hay, colon + 1)) else { return false };
        if string && names_credential(hay, end) {
            return true;
        }
        at = end;
    }
    false
}

/// One line of YAML as a mapping's pair: the column its key starts at, whether it opens a list
/// item (`- key: …`), and where its text ends (before `\r`).
struct Line {
    column: usize,
    item: bool,
    end: usize,
    pair: bool,
}

fn line(hay: &[u8], start: usize, end: usize) -> Line {
    let end = if end > start && hay[end - 1] == b'\r' { end - 1 } else { end };
    let text = &hay[start..end];
    let mut column = text.iter().take_while(|&&c| c == b' ').count();
    let item = text[column..].starts_with(b"- ");
    if item {
        column += 2 + text[column + 2..].iter().take_while(|&&c| c == b' ').count();
    }
    let key = text[column..].iter().take_while(|&&c| NAME[c as usize]).count();
    let pair = key > 0 && text[column + key..].starts_with(b": ");
    Line { column, item, end, pair }
}

/// A YAML key `value` starting at `start`, its `:` at `sep`: whether a sibling pair on the lines
/// around it (the same column of the same mapping) holds a scalar naming a credential.
fn yaml(hay: &[u8], start: usize, sep: usize) -> bool {
    let line_start = memchr::memrchr(b'\n', &hay[..start]).map_or(0, |i| i + 1);
    let line_end = memchr::memchr(b'\n', &hay[sep..]).map_or(hay.len(), |i| sep + i);
    let this = line(hay, line_start, line_end);
    if this.column != start - line_start {
        return false;
    }
    let names = |l: &Line| l.pair && l.column == this.column && names_credential(hay, l.end);
    // The lines above, back to the list item that opens the mapping.
    let mut above = line_start;
    for _ in 0..SIBLINGS {
        if this.item || above == 0 {
            break;
        }
        let end = above - 1;
        let begin = memchr::memrchr(b'\n', &hay[end.saturating_sub(MAX_SIBLING)..end])
            .map_or(end.saturating_sub(MAX_SIBLING), |i| end.saturating_sub(MAX_SIBLING) + i + 1);
        let l = line(hay, begin, end);
        if names(&l) {
            return true;
        }
        if l.column != this.column || l.item {
            break;
        }
        above = begin;
    }
    // The lines below, up to the mapping's end.
    let mut below = line_end;
    for _ in 0..SIBLINGS {
        if below >= hay.len() {
            break;
        }
        let begin = below + 1;
        let ceiling = hay.len().min(begin + MAX_SIBLING);
        let end = memchr::memchr(b'\n', &hay[begin..ceiling]).map_or(ceiling, |i| begin + i);
        let l = line(hay, begin, end);
        if l.item || l.column != this.column {
            break;
        }
        if names(&l) {
            return true;
        }
        below = end;
    }
    false
}
