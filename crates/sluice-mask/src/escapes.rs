//! Text spelled so that it reads differently from how it shows — percent-encoding
//! (`ann%40example.com` in a link), HTML character references (`ann&#64;example.com`),
//! backslash escapes (`ann\u0040example.com` in JSON quoted inside a string), a query string's
//! `+` between digits, and characters shown as others or as nothing (a no-break space, a
//! fullwidth or Arabic-Indic digit, a zero-width space, a combining mark, a terminal's colour
//! codes, a backspace overstrike) — read as the detectors read plain ASCII, with where each byte
//! read came from, so that a finding in the reading masks the bytes it was read from.

/// Levels of escaping undone (`%2540` is `%40` once decoded, `@` twice); a reading stops
/// earlier where nothing is left to decode.
pub const LEVELS: usize = 8;

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
    // An overstrike starts at the character before its backspace.
    for i in memchr::memchr3_iter(ESC, BACKSPACE, 0, text) {
        at.push(i);
        if text[i] == BACKSPACE && i > 0 {
            at.push(i - 1);
        }
    }
    if !text.is_ascii() {
        at.extend(text.iter().enumerate().filter(|&(_, &b)| LEAD[usize::from(b)]).map(|(i, _)| i));
    }
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

/// One reading of a part of a text: what its escapes spell at one level of decoding, and where
/// each byte of it came from.
pub struct Reading<'a> {
    /// What the part reads as.
    pub text: &'a [u8],
    origin: &'a [usize],
    /// The part of the whole text read, `start..end`.
    pub start: usize,
    pub end: usize,
}

impl Reading<'_> {
    /// The bytes of the whole text that `text[from..to]` was read from: from where the first
    /// one's escape starts to where the escape after the last starts (a span found inside one
    /// escape's bytes is that escape whole).
    pub fn source(&self, from: usize, to: usize) -> (usize, usize) {
        let (start, mut end) = (self.origin[from], self.origin[to]);
        if end <= start {
            end = self.origin[to..].iter().copied().find(|&o| o > start).unwrap_or(self.end);
        }
        (start, end)
    }
}

/// Each reading of `text` around its escapes: every part `windows` gives, decoded once, twice,
/// … while escapes are left, up to `LEVELS` times, in order.
pub fn readings(text: &[u8], mut each: impl FnMut(&Reading)) {
    for (start, end) in windows(text) {
        let mut part = std::borrow::Cow::Borrowed(&text[start..end]);
        let mut origin: Vec<usize> = (start..=end).collect();
        for _ in 0..LEVELS {
            let Some((decoded, from)) = decode(&part) else { break };
            origin = from.iter().map(|&i| origin[i]).collect();
            each(&Reading { text: &decoded, origin: &origin, start, end });
            part = std::borrow::Cow::Owned(decoded);
        }
    }
}

/// `text` with its escapes decoded once, and where each decoded byte's escape (or byte) starts
/// in `text`, with `text.len()` after the last; `None` when it has none.
pub fn decode(text: &[u8]) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    let (mut i, mut any) = (0, false);
    while i < text.len() {
        let starts = STARTS[usize::from(text[i])] || text.get(i + 1) == Some(&BACKSPACE);
        match starts.then(|| escape_at(text, i)).flatten() {
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

const ESC: u8 = 0x1B;
const BACKSPACE: u8 = 0x08;

/// The first bytes of the UTF-8 of every character `read_as` reads as another (a unit test
/// holds the two together): a text without them has no such character.
const LEAD: [bool; 256] =
    marked([false; 256], &[0xC2, 0xCC, 0xCD, 0xD8, 0xD9, 0xDB, 0xDF, 0xE0, 0xE1, 0xE2, 0xE3, 0xEA, 0xEF, 0xF0, 0xF3]);

/// The bytes an escape may start with (an overstrike starts with any character: it is known by
/// the backspace after it).
const STARTS: [bool; 256] = marked(LEAD, &[b'%', b'\\', b'&', b'+', ESC, BACKSPACE, 0]);

/// `table` with `bytes` marked.
const fn marked(mut table: [bool; 256], bytes: &[u8]) -> [bool; 256] {
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = true;
        i += 1;
    }
    table
}

/// How many bytes the UTF-8 character a byte starts is long, if it starts one.
fn utf8_width(lead: u8) -> Option<usize> {
    match lead {
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

/// The character that starts at `text[i]` (not ASCII), and its length in bytes.
pub(crate) fn char_at(text: &[u8], i: usize) -> Option<(char, usize)> {
    let width = utf8_width(*text.get(i)?)?;
    let c = std::str::from_utf8(text.get(i..i + width)?).ok()?.chars().next()?;
    Some((c, width))
}

/// What one escape decodes to: a character's UTF-8 bytes, one byte, or nothing.
struct Unit {
    bytes: [u8; 4],
    len: usize,
}

impl Unit {
    const NOTHING: Unit = Unit { bytes: [0; 4], len: 0 };

    fn byte(b: u8) -> Unit {
        Unit { bytes: [b, 0, 0, 0], len: 1 }
    }

    /// A character as the detectors read it (`read_as`), else as itself.
    fn char(c: char) -> Unit {
        read_as(c).unwrap_or_else(|| {
            let mut bytes = [0; 4];
            let len = c.encode_utf8(&mut bytes).len();
            Unit { bytes, len }
        })
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// How the detectors read a character shown as another or as nothing: a space or a dash of
/// another width as the ASCII one (`4111&#160;1111…` is a card number), a digit of another
/// script or style as its ASCII digit, a fullwidth or mathematical letter as its ASCII letter,
/// and a character that shows nothing (zero-width, a direction mark, a combining mark, a
/// variation selector, a tag) as nothing. `None` for one read as itself.
fn read_as(c: char) -> Option<Unit> {
    let code = u32::from(c);
    let ascii = match code {
        0xA0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => b' ',
        0x2010..=0x2015 | 0x2212 | 0xFE58 | 0xFE63 => b'-',
        0xFE6B => b'@',
        0xFF01..=0xFF5E => (code - 0xFEE0) as u8,
        // Bold, italic, script, fraktur, double-struck, sans-serif and monospace letters: each
        // style is 26 capitals and 26 small letters.
        0x1D400..=0x1D6A3 => match ((code - 0x1D400) % 52) as u8 {
            k @ 0..26 => b'A' + k,
            k => b'a' + k - 26,
        },
        0x1D7CE..=0x1D7FF => b'0' + ((code - 0x1D7CE) % 10) as u8,
        _ if shows_nothing(code) => return Some(Unit::NOTHING),
        _ => {
            let zero = DIGIT_ZEROS[DIGIT_ZEROS.partition_point(|&z| z <= code).checked_sub(1)?];
            b'0' + u8::try_from(code - zero).ok().filter(|&d| d < 10)?
        }
    };
    Some(Unit::byte(ascii))
}

/// Characters that show nothing, or nothing of their own.
fn shows_nothing(code: u32) -> bool {
    matches!(
        code,
        // Soft hyphen, combining grapheme joiner, Arabic letter mark, Hangul fillers, Khmer
        // inherent vowels, Mongolian selectors and vowel separator.
        0xAD | 0x34F | 0x61C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x3164 | 0xFFA0
        // Zero-width spaces and joiners, direction marks, embeddings and isolates, word
        // joiner, invisible operators.
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF
        // Combining marks (an underline or a slash drawn through a digit).
        | 0x300..=0x36F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F
        // Variation selectors and tags.
        | 0xFE00..=0xFE0F | 0xE0000..=0xE0FFF
    )
}

/// The zero of each script's ten decimal digits other than ASCII, fullwidth and mathematical
/// (Arabic-Indic, the Indic scripts, Thai, Tibetan, Myanmar, Khmer, Mongolian, …, Adlam), in
/// order: every decimal digit Unicode 14 knows.
const DIGIT_ZEROS: [u32; 59] = [
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50,
    0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50,
    0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0,
    0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60,
    0x16AC0, 0x16B50, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The escape starting at `i`, if one does: its length and what it decodes to.
fn escape_at(text: &[u8], i: usize) -> Option<(usize, Unit)> {
    let rest = &text[i..];
    if rest.get(1) == Some(&BACKSPACE)
        && let Some(struck) = overstrike(rest)
    {
        return Some(struck);
    }
    match *rest.first()? {
        b'%' => percent(rest),
        b'\\' => backslash(rest),
        b'&' => reference(rest),
        // A query string's space between digits (`ssn=078+05+1120`); elsewhere a plus is
        // itself more often than a space.
        b'+' => {
            let digit_before = i.checked_sub(1).is_some_and(|b| text[b].is_ascii_digit());
            (digit_before && rest.get(1).is_some_and(u8::is_ascii_digit)).then(|| (1, Unit::byte(b' ')))
        }
        ESC => control_sequence(rest).map(|len| (len, Unit::NOTHING)),
        // A lone backspace or NUL shows nothing.
        BACKSPACE | 0 => Some((1, Unit::NOTHING)),
        lead if LEAD[usize::from(lead)] => {
            let (c, width) = char_at(rest, 0)?;
            Some((width, read_as(c)?))
        }
        _ => None,
    }
}

/// A terminal's control sequence (ECMA-48), which shows nothing: a colour or cursor movement
/// (`ESC [ 31 m`), a title or hyperlink ended by BEL or `ESC \`, a character-set choice
/// (`ESC ( B`), or a two-byte one; its length.
fn control_sequence(rest: &[u8]) -> Option<usize> {
    match *rest.get(1)? {
        b'[' => {
            let end = 2 + rest.iter().skip(2).take(64).position(|b| !(0x20..=0x3F).contains(b))?;
            (0x40..=0x7E).contains(rest.get(end)?).then_some(end + 1)
        }
        b']' | b'P' | b'X' | b'^' | b'_' => {
            let body = rest.get(2..)?.iter().take(CONTEXT);
            let end =
                2 + body.enumerate().position(|(k, &b)| b == 0x07 || b == ESC && rest.get(k + 3) == Some(&b'\\'))?;
            Some(if rest[end] == 0x07 { end + 1 } else { end + 2 })
        }
        0x20..=0x2F => {
            let end = 2 + rest.iter().skip(2).take(8).position(|b| !(0x20..=0x2F).contains(b))?;
            (0x30..=0x7E).contains(rest.get(end)?).then_some(end + 1)
        }
        0x30..=0x7E => Some(2),
        _ => None,
    }
}

/// A character struck over others with backspaces, as `man` and `nroff` print bold (`0\b0`) and
/// underlined (`_\b0`) text: read as the last one struck.
fn overstrike(rest: &[u8]) -> Option<(usize, Unit)> {
    let mut end = 0;
    while rest.get(end + 1) == Some(&BACKSPACE) && rest.get(end + 2).is_some_and(u8::is_ascii_graphic) {
        end += 2;
    }
    (end > 0 && rest[0].is_ascii_graphic()).then(|| (end + 1, Unit::byte(rest[end])))
}

/// `%XX`; a character whose UTF-8 bytes are all escaped as one unit, so that it is read as a
/// character (`%E2%80%89`, a thin space, as a space).
fn percent(rest: &[u8]) -> Option<(usize, Unit)> {
    let byte = |at: usize| -> Option<u8> {
        let escape = rest.get(at..at + 3).filter(|e| e[0] == b'%')?;
        Some(hex(&escape[1..])? as u8)
    };
    let first = byte(0)?;
    let Some(width) = utf8_width(first) else { return Some((3, Unit::byte(first))) };
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
/// that joins the parts of an address, a number or an assignment; and whether browsers read
/// the name without its `;`.
const NAMED: &[(&[u8], u8, bool)] = &[
    (b"amp", b'&', true),
    (b"lt", b'<', true),
    (b"gt", b'>', true),
    (b"quot", b'"', true),
    (b"apos", b'\'', false),
    (b"commat", b'@', false),
    (b"period", b'.', false),
    (b"hyphen", b'-', false),
    (b"dash", b'-', false),
    (b"colon", b':', false),
    (b"equals", b'=', false),
    (b"lowbar", b'_', false),
    (b"sol", b'/', false),
    (b"plus", b'+', false),
    (b"nbsp", b' ', true),
];

/// `&#64;`, `&#x40;`, `&commat;`; as browsers read them, a numeric reference and the names
/// HTML has always known (`&amp`, `&lt`, `&gt`, `&quot`, `&nbsp`) also without their `;`.
fn reference(rest: &[u8]) -> Option<(usize, Unit)> {
    if rest.get(1) == Some(&b'#') {
        let hex_digits = matches!(rest.get(2), Some(b'x' | b'X'));
        let from = if hex_digits { 3 } else { 2 };
        let digits = rest[from..]
            .iter()
            .take(8)
            .take_while(|b| if hex_digits { b.is_ascii_hexdigit() } else { b.is_ascii_digit() });
        let end = from + digits.count();
        let digits = std::str::from_utf8(&rest[from..end]).ok()?;
        let code = u32::from_str_radix(digits, if hex_digits { 16 } else { 10 }).ok()?;
        let len = if rest.get(end) == Some(&b';') { end + 1 } else { end };
        return Some((len, Unit::char(char::from_u32(code)?)));
    }
    let name_end = 1 + rest[1..].iter().take(8).take_while(|b| b.is_ascii_alphabetic()).count();
    let named = |name: &[u8]| NAMED.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name));
    if rest.get(name_end) == Some(&b';')
        && let Some((_, byte, _)) = named(&rest[1..name_end])
    {
        return Some((name_end + 1, Unit::byte(*byte)));
    }
    // Without the `;`, the longest of the old names the letters begin with (`&ampx` is `&x`).
    (2..=name_end).rev().find_map(|end| match named(&rest[1..end]) {
        Some((_, byte, true)) => Some((end, Unit::byte(*byte))),
        _ => None,
    })
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
    fn characters_shown_as_others_read_as_ascii() {
        assert_eq!(once("０７８−０５−１１２０"), "078-05-1120");
        assert_eq!(once("٠٧٨-٠٥-١١٢٠ ۰۷۸ ०७८ ๐๗๘"), "078-05-1120 078 078 078");
        assert_eq!(once("4111\u{a0}1111\u{2009}1111\u{2011}1111"), "4111 1111 1111-1111");
        assert_eq!(once("𝐚𝐧𝐧＠𝕖𝕩.𝚌𝚘𝚖 𝟎𝟕𝟖 ﹫ 𞥐𞥗𞥘"), "ann@ex.com 078 @ 078");
    }

    #[test]
    fn characters_that_show_nothing_read_as_nothing() {
        assert_eq!(once("ann\u{200b}@exa\u{ad}mple\u{2060}.com\u{feff}"), "ann@example.com");
        assert_eq!(once("0\u{332}7\u{332}8\u{336} \u{202e}x\u{202c} 1\u{fe0f}\u{e0041}"), "078 x 1");
        assert_eq!(once("ann&#8203;@x &#x200D;y %E2%80%8Bz"), "ann@x y z");
        assert_eq!(once("0\u{0}7\u{0}8"), "078");
    }

    #[test]
    fn a_terminals_codes_read_as_what_it_shows() {
        assert_eq!(once("\x1b[01;31m\x1b[K078-05-1120\x1b[m\x1b[K"), "078-05-1120");
        assert_eq!(once("\x1b]8;;http://x\x1b\\see\x1b]8;;\x07 \x1b(B\x1b=ok"), "see ok");
        assert_eq!(once("0\x080 7\x087 _\x088 -\x08-\x08-"), "0 7 8 -");
        // An unfinished sequence stays its bytes.
        assert!(decode(b"\x1b[31").is_none());
    }

    #[test]
    fn references_without_their_semicolon_read_as_browsers_read_them() {
        assert_eq!(once("ann&#64example&#x2E;com &ampx &LT &nbsp1"), "ann@example.com &x <  1");
        assert!(decode(b"&commat x &# &#x; &#xZZ").is_none());
    }

    #[test]
    fn text_that_shows_as_it_is_has_nothing_to_decode() {
        assert!(
            decode("café, naïve, 日本語, “quotes” – 3–4 … ©".as_bytes())
                .is_some_and(|(d, _)| d == "café, naïve, 日本語, “quotes” - 3-4 … ©".as_bytes())
        );
        assert!(decode("café, naïve, 日本語, “quotes” … ©, Ελληνικά, עברית".as_bytes()).is_none());
    }

    #[test]
    fn every_character_read_as_another_starts_with_a_lead_byte() {
        assert!(DIGIT_ZEROS.windows(2).all(|z| z[0] + 10 <= z[1]), "in order, for the binary search");
        for c in (0..=0x10FFFF).filter_map(char::from_u32).filter(|c| !c.is_ascii()) {
            if read_as(c).is_some() {
                let mut utf8 = [0; 4];
                c.encode_utf8(&mut utf8);
                assert!(LEAD[usize::from(utf8[0])], "{c:?} (U+{:04X})", u32::from(c));
            }
        }
    }

    #[test]
    fn each_decoded_byte_knows_where_it_came_from() {
        let (decoded, origin) = decode(b"a%40b&#46;c").unwrap();
        assert_eq!(decoded, b"a@b.c");
        assert_eq!(origin, vec![0, 1, 4, 5, 10, 11]);
        let (decoded, origin) = decode("a\u{200b}b\x1b[0mc".as_bytes()).unwrap();
        assert_eq!(decoded, b"abc");
        assert_eq!(origin, vec![0, 4, 9, 10]);
    }

    #[test]
    fn windows_surround_escapes_and_merge() {
        let text = [vec![b'x'; 1000], b"%40".to_vec(), vec![b'y'; 100], b"%40".to_vec(), vec![b'z'; 1000]].concat();
        assert_eq!(windows(&text), vec![(1000 - CONTEXT, 1000 + 3 + 100 + 3 + CONTEXT)]);
        assert!(windows(b"no escapes: 50% & more").is_empty());
        assert!(windows("nor here: café, “quotes”, 日本語".as_bytes()).is_empty());
        assert_eq!(windows("x\u{200b}y".as_bytes()), vec![(0, 5)]);
        assert_eq!(windows(b"ab 0\x080"), vec![(0, 6)]);
        let full = b"%41".repeat(MAX_WINDOW);
        let parts = windows(&full);
        assert!(parts.iter().all(|(s, e)| e - s <= MAX_WINDOW), "{parts:?}");
        assert!(parts.windows(2).all(|p| p[0].1 - p[1].0 == 2 * CONTEXT), "{parts:?}");
        assert_eq!((parts[0].0, parts.last().unwrap().1), (0, full.len()));
    }
}
