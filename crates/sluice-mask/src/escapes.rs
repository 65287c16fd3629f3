//! Text spelled in escapes — percent-encoding (`ann%40example.com` in a link), HTML character
//! references (`ann&#64;example.com`), backslash escapes (`ann\u0040example.com` in JSON quoted
//! inside a string), a query string's `+` between digits — decoded for the detectors, with
//! where each decoded byte came from, so that a finding in the decoded text masks the escaped
//! bytes it was read from.

/// Levels of escaping undone (`%2540` is `%40` once decoded, `@` twice).
pub const LEVELS: usize = 3;

/// Bytes of context read on each side of an escape: a value spelled partly in escapes is read
/// whole when it is at most this long.
pub const CONTEXT: usize = 256;

/// The longest part read at once: a body full of escapes is read in parts this long that
/// overlap by twice `CONTEXT`, so that what is held to map findings back stays small.
pub const MAX_WINDOW: usize = 64 * 1024;

/// The parts of `text` around its escapes (merged where they overlap, cut where longer than
/// `MAX_WINDOW`), in order.
pub fn windows(text: &[u8]) -> Vec<(usize, usize)> {
    let mut merged: Vec<(usize, usize)> = Vec::new();
    let mut at: Vec<usize> = memchr::memchr3_iter(b'%', b'\\', b'&', text).collect();
    at.extend(memchr::memchr_iter(b'+', text));
    at.sort_unstable();
    for i in at {
        let Some((len, _)) = escape_at(text, i) else { continue };
        let (start, end) = (i.saturating_sub(CONTEXT), (i + len + CONTEXT).min(text.len()));
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => merged.push((start, end)),
        }
    }
    let mut out = Vec::with_capacity(merged.len());
    for (mut start, end) in merged {
        while end - start > MAX_WINDOW {
            out.push((start, start + MAX_WINDOW));
            start += MAX_WINDOW - 2 * CONTEXT;
        }
        out.push((start, end));
    }
    out
}

/// `text` with its escapes decoded once, and where each decoded byte's escape (or byte) starts
/// in `text`, with `text.len()` after the last; `None` when it has none.
pub fn decode(text: &[u8]) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    let (mut i, mut any) = (0, false);
    while i < text.len() {
        let escape = matches!(text[i], b'%' | b'\\' | b'&' | b'+').then(|| escape_at(text, i)).flatten();
        match escape {
            Some((len, unit)) => {
                for &b in unit.bytes() {
                    decoded.push(b);
                    origin.push(i);
                }
                i += len;
                any = true;
            }
            None => {
                decoded.push(text[i]);
                origin.push(i);
                i += 1;
            }
        }
    }
    origin.push(text.len());
    any.then_some((decoded, origin))
}

/// What one escape decodes to: a character's UTF-8 bytes, or one byte.
struct Unit {
    bytes: [u8; 4],
    len: usize,
}

impl Unit {
    fn byte(b: u8) -> Unit {
        Unit { bytes: [b, 0, 0, 0], len: 1 }
    }

    /// A character as the detectors read it: a space or a dash of another width as the ASCII
    /// one, a fullwidth form as its ASCII letter (`4111&#160;1111…` is a card number).
    fn char(c: char) -> Unit {
        let c = match u32::from(c) {
            0xA0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => ' ',
            0x2010..=0x2015 | 0x2212 | 0xFE63 => '-',
            code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        let mut bytes = [0; 4];
        let len = c.encode_utf8(&mut bytes).len();
        Unit { bytes, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The escape starting at `i`, if one does: its length and what it decodes to.
fn escape_at(text: &[u8], i: usize) -> Option<(usize, Unit)> {
    let rest = &text[i..];
    match rest.first()? {
        b'%' => percent(rest),
        b'\\' => backslash(rest),
        b'&' => reference(rest),
        // A query string's space between digits (`ssn=078+05+1120`); elsewhere a plus is
        // itself more often than a space.
        b'+' => {
            let digit_before = i.checked_sub(1).is_some_and(|b| text[b].is_ascii_digit());
            (digit_before && rest.get(1).is_some_and(u8::is_ascii_digit)).then(|| (1, Unit::byte(b' ')))
        }
        _ => None,
    }
}

/// `%XX`; a character whose UTF-8 bytes are all escaped as one unit, so that it is read as a
/// character (`%E2%80%89`, a thin space, as a space).
fn percent(rest: &[u8]) -> Option<(usize, Unit)> {
    let byte = |at: usize| -> Option<u8> {
        let escape = rest.get(at..at + 3).filter(|e| e[0] == b'%')?;
        Some(hex(&escape[1..])? as u8)
    };
    let first = byte(0)?;
    let width = match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Some((3, Unit::byte(first))),
    };
    let bytes: Option<Vec<u8>> = (0..width).map(|k| byte(3 * k)).collect();
    match bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|t| t.chars().next()) {
        Some(c) => Some((3 * width, Unit::char(c))),
        None => Some((3, Unit::byte(first))),
    }
}

/// `\uXXXX` (a surrogate pair as two), `\xXX`, and the one-letter escapes of JSON and C.
fn backslash(rest: &[u8]) -> Option<(usize, Unit)> {
    Some(match rest.get(1)? {
        b'u' => {
            let unit = hex(rest.get(2..6)?)?;
            if (0xD800..0xDC00).contains(&unit) {
                // A high surrogate counts only with its low one after it.
                let low = rest.get(6..12).filter(|r| r.starts_with(b"\\u")).and_then(|r| hex(&r[2..]))?;
                let c = char::decode_utf16([unit as u16, low as u16]).next()?.ok()?;
                return Some((12, Unit::char(c)));
            }
            (6, Unit::char(char::from_u32(unit)?))
        }
        b'x' => (4, Unit::byte(hex(rest.get(2..4)?)? as u8)),
        b'n' => (2, Unit::byte(b'\n')),
        b'r' => (2, Unit::byte(b'\r')),
        b't' => (2, Unit::byte(b'\t')),
        &c @ (b'\\' | b'"' | b'\'' | b'/') => (2, Unit::byte(c)),
        _ => return None,
    })
}

/// Named characters a value may be spelled with in HTML: the markup's own and the punctuation
/// that joins the parts of an address, a number or an assignment.
const NAMED: &[(&[u8], u8)] = &[
    (b"amp", b'&'),
    (b"lt", b'<'),
    (b"gt", b'>'),
    (b"quot", b'"'),
    (b"apos", b'\''),
    (b"commat", b'@'),
    (b"period", b'.'),
    (b"hyphen", b'-'),
    (b"dash", b'-'),
    (b"colon", b':'),
    (b"equals", b'='),
    (b"lowbar", b'_'),
    (b"sol", b'/'),
    (b"plus", b'+'),
    (b"nbsp", b' '),
];

/// `&#64;`, `&#x40;`, `&commat;`.
fn reference(rest: &[u8]) -> Option<(usize, Unit)> {
    let end = rest.iter().take(10).position(|&b| b == b';')?;
    let name = &rest[1..end];
    let unit = match name {
        [b'#', b'x' | b'X', digits @ ..] if !digits.is_empty() => Unit::char(char::from_u32(hex(digits)?)?),
        [b'#', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            Unit::char(char::from_u32(std::str::from_utf8(digits).ok()?.parse().ok()?)?)
        }
        _ => Unit::byte(NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?.1),
    };
    Some((end + 1, unit))
}

/// Hex digits as a number (at most eight).
fn hex(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| Some(n << 4 | (d as char).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn once(text: &str) -> String {
        String::from_utf8(decode(text.as_bytes()).expect("escapes").0).unwrap()
    }

    #[test]
    fn each_kind_of_escape_decodes() {
        assert_eq!(once("ann%40example.com"), "ann@example.com");
        assert_eq!(once("ann&#64;x&#x2E;com &commat; &AMP;"), "ann@x.com @ &");
        assert_eq!(once(r#"ann\u0040x\x2Ecom \"q\" \/ \n"#), "ann@x.com \"q\" / \n");
        assert_eq!(once(r"\ud83d\ude00"), "😀");
        assert_eq!(once("%2540"), "%40");
        assert_eq!(once("ssn=078+05+1120&q=a+b"), "ssn=078 05 1120&q=a+b");
        assert_eq!(once("4111%E2%80%891111%C2%A01111 caf%C3%A9"), "4111 1111 1111 café");
        // An incomplete character stays its bytes.
        assert_eq!(decode(b"%E2%80 x").unwrap().0, b"\xE2\x80 x");
        assert_eq!(once("4111&#160;1111&#x2011;1111\\u00a01111 &#xFF20;"), "4111 1111-1111 1111 @");
        assert!(decode(b"50% off, R&D, C:\\ok, &unknown; \\ud83d alone, %zz").is_none());
    }

    #[test]
    fn each_decoded_byte_knows_where_it_came_from() {
        let (decoded, origin) = decode(b"a%40b&#46;c").unwrap();
        assert_eq!(decoded, b"a@b.c");
        assert_eq!(origin, vec![0, 1, 4, 5, 10, 11]);
    }

    #[test]
    fn windows_surround_escapes_and_merge() {
        let text = [vec![b'x'; 1000], b"%40".to_vec(), vec![b'y'; 100], b"%40".to_vec(), vec![b'z'; 1000]].concat();
        assert_eq!(windows(&text), vec![(1000 - CONTEXT, 1000 + 3 + 100 + 3 + CONTEXT)]);
        assert!(windows(b"no escapes: 50% & more").is_empty());
        let full = b"%41".repeat(MAX_WINDOW);
        let parts = windows(&full);
        assert!(parts.iter().all(|(s, e)| e - s <= MAX_WINDOW), "{parts:?}");
        assert!(parts.windows(2).all(|p| p[0].1 - p[1].0 == 2 * CONTEXT), "{parts:?}");
        assert_eq!((parts[0].0, parts.last().unwrap().1), (0, full.len()));
    }
}
