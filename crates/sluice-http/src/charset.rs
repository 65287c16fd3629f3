//! Text the detectors cannot read: the detectors look for ASCII (digits, `@`, key prefixes), so a
//! body whose encoding does not keep ASCII as ASCII — UTF-16 or UTF-32 (known by a byte-order
//! mark, or by the NULs beside ASCII characters that JSON readers guess the encoding from), or a
//! declared charset such as UTF-7 or EBCDIC — would carry a card number past them. Such a
//! response is refused; such a request body is not taken for "not JSON".

/// Charsets in which every ASCII character is written as its ASCII byte, so what the detectors
/// find is what a client decodes. Patterns end in `*` for a family; names are compared in lower
/// case with `_` read as `-`. Only single-byte charsets are: in a double-byte one (Shift_JIS,
/// GBK, Big5, EUC) an ASCII letter may be the second byte of a character, so the detectors read a
/// letter where the client reads a kana or a hanzi, and a card number after it for part of a word.
/// The stateful ISO-2022 ones are refused too: an escape sequence that changes nothing (`ESC ( B`
/// inside ASCII) can split a card number for the detectors and not for the client.
const ASCII_COMPATIBLE: &[&str] = &[
    "utf-8",
    "utf8",
    "us-ascii",
    "ascii",
    "ansi-x3.4-1968",
    "binary",
    "iso-8859-*",
    "iso8859-*",
    "latin1",
    "latin-1",
    "windows-125*",
    "cp125*",
    "x-cp125*",
    "koi8-r",
    "koi8-u",
    "tis-620",
    "cp874",
    "windows-874",
    "macintosh",
    "macroman",
    "x-mac-roman",
    "x-mac-ce",
    "x-mac-cyrillic",
    "x-mac-greek",
    "x-mac-icelandic",
    "x-mac-turkish",
];

/// The charset a Content-Type declares, when it is one the detectors cannot read.
/// Every `charset` parameter counts (a client may read any of them).
pub fn declared_unreadable(content_type: &[u8]) -> Option<String> {
    let content_type = String::from_utf8_lossy(content_type);
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let charset = value.trim().trim_matches('"').to_ascii_lowercase();
        let name = charset.replace('_', "-");
        let known = ASCII_COMPATIBLE.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(family) => name.starts_with(family),
            None => name == *pattern,
        });
        (!known).then_some(charset)
    })
}

pub use sluice_mask::unreadable::wide;

/// Whether a body in another encoding than UTF-8 (a UTF-8 byte-order mark before it, or UTF-16 or
/// UTF-32) begins as a JSON object or array does: a server may read it as JSON (Python's
/// `json.loads` takes all of these), though sluice reads only UTF-8 JSON.
pub fn json_in_another_encoding(body: &[u8]) -> bool {
    if let Some(rest) = body.strip_prefix(b"\xEF\xBB\xBF") {
        return crate::request::looks_like_json(rest);
    }
    if wide(body).is_none() {
        return false;
    }
    let narrow: Vec<u8> = body.iter().take(64).copied().filter(|&b| !matches!(b, 0 | 0xFE | 0xFF)).collect();
    crate::request::looks_like_json(&narrow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn charsets_that_keep_ascii_pass_and_others_are_named() {
        assert_eq!(declared_unreadable(b"application/json"), None);
        assert_eq!(declared_unreadable(b"text/plain; charset=UTF-8"), None);
        assert_eq!(declared_unreadable(b"text/html; charset=\"iso-8859-15\""), None);
        assert_eq!(declared_unreadable(b"text/plain; charset=Shift_JIS").as_deref(), Some("shift_jis"));
        assert_eq!(declared_unreadable(b"text/plain; charset=gbk").as_deref(), Some("gbk"));
        assert_eq!(declared_unreadable(b"text/plain; charset=windows-1252"), None);
        assert_eq!(declared_unreadable(b"text/plain; charset=utf-8; charset=utf-7").as_deref(), Some("utf-7"));
        assert_eq!(declared_unreadable(b"application/json; charset=utf-16").as_deref(), Some("utf-16"));
        assert_eq!(declared_unreadable(b"text/plain;CHARSET=UTF-7").as_deref(), Some("utf-7"));
        assert_eq!(declared_unreadable(b"text/plain; charset=ibm037").as_deref(), Some("ibm037"));
        assert_eq!(declared_unreadable(b"text/plain; charset=ISO-2022-JP").as_deref(), Some("iso-2022-jp"));
    }

    #[test]
    fn json_behind_a_mark_or_in_utf16_is_known_for_json() {
        assert!(json_in_another_encoding(b"\xEF\xBB\xBF{\"force\": true}"));
        assert!(json_in_another_encoding(&utf16le(" {\"force\": true}")));
        assert!(json_in_another_encoding(&[b"\xFF\xFE".as_slice(), &utf16le("[1]")].concat()));
        assert!(!json_in_another_encoding(b"{\"force\": true}"), "UTF-8 JSON is read as it is");
        assert!(!json_in_another_encoding(&utf16le("hello")));
    }
}
