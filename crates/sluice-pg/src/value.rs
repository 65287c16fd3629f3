//! PostgreSQL values as masking sees them: which types can hold what detectors look for (by type
//! OID), and how a value of each type is masked in its text and binary formats (jsonb's version
//! byte, arrays and records read element by element, int8 and numeric read as digits). The
//! protocol-free primitives are `sluice_mask::ContentMasker`'s.

use sluice_mask::action::render;
use sluice_mask::{ColumnMask, ContentMasker, Finding, Layout, Masked, TokenKey};

/// How a PostgreSQL type is scanned and masked. Known by type OID (pg_type.h); every OID not
/// listed here — user types, domains, composites, arrays of non-text — is `Opaque`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeClass {
    /// Cannot hold what detectors look for (booleans, short integers, dates, UUIDs…).
    Skip,
    /// A string: placeholders go in place.
    Text,
    /// An array of strings in text form: placeholders in place unless a finding crosses elements.
    TextArray,
    Json,
    /// jsonb: binary form carries a version byte before the JSON text.
    Jsonb,
    Bytea,
    Int8,
    Numeric,
    /// Scanned as it comes; any finding makes the value NULL.
    Opaque,
}

pub fn type_class(oid: u32) -> TypeClass {
    match oid {
        16 | 21 | 23 | 26 | 27 | 28 | 29 | 700 | 701 | 1082 | 1083 | 1114 | 1184 | 1186 | 1266 | 2950 | 869 | 650
        | 829 | 774 | 3220 | 5069 | 24 | 2202 | 2203 | 2204 | 2205 | 2206 | 3734 | 3769 | 4089 | 4096 | 1000 | 1005
        | 1007 | 1028 | 1021 | 1022 | 1182 | 1115 | 1185 | 2951 => TypeClass::Skip,
        25 | 1043 | 1042 | 19 | 705 | 142 => TypeClass::Text,
        1009 | 1015 | 1014 | 1003 => TypeClass::TextArray,
        114 => TypeClass::Json,
        3802 => TypeClass::Jsonb,
        17 => TypeClass::Bytea,
        20 => TypeClass::Int8,
        1700 => TypeClass::Numeric,
        _ => TypeClass::Opaque,
    }
}

/// Applies a column rule to a whole value. Only strings and JSON can carry a placeholder; every
/// other type becomes NULL.
pub fn mask_whole(
    class: TypeClass,
    binary: bool,
    value: &[u8],
    mask: &ColumnMask,
    key: &TokenKey,
    out: &mut Vec<u8>,
) -> Masked {
    out.clear();
    match class {
        TypeClass::Text => {
            if render(mask.action, &mask.label, value, key, out) {
                Masked::Replaced
            } else {
                Masked::Null
            }
        }
        TypeClass::Json | TypeClass::Jsonb => {
            let body = if class == TypeClass::Jsonb && binary { value.get(1..).unwrap_or_default() } else { value };
            if class == TypeClass::Jsonb && binary {
                out.push(1);
            }
            out.push(b'"');
            if !render(mask.action, &mask.label, body, key, out) {
                out.clear();
                return Masked::Null;
            }
            out.push(b'"');
            Masked::Replaced
        }
        _ => Masked::Null,
    }
}

/// Masks a value of type class `class` (in binary format when `binary`) with the detectors of
/// `content`; what replaces it is written to `out`.
pub fn mask_value(
    content: &ContentMasker<'_>,
    class: TypeClass,
    binary: bool,
    value: &[u8],
    findings: &mut Vec<Finding>,
    out: &mut Vec<u8>,
) -> Masked {
    out.clear();
    match class {
        TypeClass::Skip => Masked::Clear,
        TypeClass::Text => content.in_place(value, findings, out, Layout::Plain),
        TypeClass::TextArray if binary => binary_text_array(content, value, findings, out),
        TypeClass::TextArray => content.in_place(value, findings, out, Layout::Array),
        TypeClass::Json => content.in_place(value, findings, out, Layout::Json),
        TypeClass::Jsonb if binary => {
            let Some((&version, body)) = value.split_first() else { return Masked::Clear };
            out.push(version);
            let masked = content.in_place(body, findings, out, Layout::Json);
            if masked == Masked::Clear {
                out.clear();
            }
            masked
        }
        TypeClass::Jsonb => content.in_place(value, findings, out, Layout::Json),
        TypeClass::Bytea if !binary => match decode_bytea_hex(value) {
            Some(raw) => content.null_if_found(&raw, findings),
            // The escape output format: its printable bytes are the data.
            None => content.null_if_found(value, findings),
        },
        TypeClass::Int8 if binary => match <[u8; 8]>::try_from(value) {
            Ok(b) => content.null_if_found(i64::from_be_bytes(b).to_string().as_bytes(), findings),
            Err(_) => Masked::Null,
        },
        TypeClass::Numeric if binary => match numeric_integer_digits(value) {
            Some(digits) => content.null_if_found(digits.as_bytes(), findings),
            None => Masked::Null,
        },
        TypeClass::Opaque if binary => binary_opaque(content, value, findings),
        TypeClass::Bytea | TypeClass::Int8 | TypeClass::Numeric | TypeClass::Opaque => {
            content.null_if_found(value, findings)
        }
    }
}

/// A text array in binary form, masked element by element in place (an element a NULL action
/// applies to becomes a NULL element). Each element is scanned on its own: scanned whole, the
/// 4-byte length before an element can read as a digit or letter glued to what it holds.
fn binary_text_array(
    content: &ContentMasker<'_>,
    value: &[u8],
    findings: &mut Vec<Finding>,
    out: &mut Vec<u8>,
) -> Masked {
    let Some((header, elements)) = binary_array(value) else { return content.null_if_found(value, findings) };
    out.extend_from_slice(&value[..header]);
    let mut changed = false;
    for element in elements {
        let Some((start, end)) = element else {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            continue;
        };
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        let masked = content.in_place(&value[start..end], findings, out, Layout::Plain);
        if masked == Masked::Clear {
            out.extend_from_slice(&value[start..end]);
        }
        match masked {
            Masked::Clear | Masked::Replaced => {
                let Ok(len) = i32::try_from(out.len() - at - 4) else { return Masked::Null };
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                changed |= masked == Masked::Replaced;
            }
            Masked::Null => {
                out.truncate(at);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                // The array now has a NULL element: say so in its flags.
                out[4..8].copy_from_slice(&1i32.to_be_bytes());
                changed = true;
            }
        }
    }
    if changed {
        Masked::Replaced
    } else {
        out.clear();
        Masked::Clear
    }
}

/// A binary value of a type sluice does not know: NULL when anything is found in it.
fn binary_opaque(content: &ContentMasker<'_>, value: &[u8], findings: &mut Vec<Finding>) -> Masked {
    if finds_in_binary(content, value, findings) { Masked::Null } else { Masked::Clear }
}

/// Whether anything is found in a binary value, read whole or, if it reads as an array or a
/// record (composite), in any element or field on its own.
pub fn finds_in_binary(content: &ContentMasker<'_>, value: &[u8], findings: &mut Vec<Finding>) -> bool {
    let mut found = |part: &[u8]| content.null_if_found(part, findings) == Masked::Null;
    if found(value) {
        return true;
    }
    let mut any_part = false;
    for_each_part(value, 0, &mut |part| any_part = any_part || found(part));
    any_part
}

/// How deep arrays of records of arrays… are opened.
const MAX_NESTING: usize = 4;

/// Calls `f` with every element of `value` if it reads exactly as a binary array, or every field
/// if it reads exactly as a binary record, and so on inside those.
fn for_each_part(value: &[u8], depth: usize, f: &mut impl FnMut(&[u8])) {
    if depth >= MAX_NESTING {
        return;
    }
    let parts = binary_array(value).map(|(_, elements)| elements).or_else(|| binary_record(value));
    for (start, end) in parts.into_iter().flatten().flatten() {
        f(&value[start..end]);
        for_each_part(&value[start..end], depth + 1, f);
    }
}

/// The byte range of each element or field of a binary array or record (`None` for NULL).
type Parts = Vec<Option<(usize, usize)>>;

/// A binary array (`array_send`): the length of what precedes the elements, and each element's
/// byte range. `None` unless the value is exactly that.
fn binary_array(value: &[u8]) -> Option<(usize, Parts)> {
    let ndim = usize::try_from(be_i32(value, 0)?).ok().filter(|&n| n <= 6)?;
    if !(0..=1).contains(&be_i32(value, 4)?) {
        return None;
    }
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for d in 0..ndim {
        count = count.checked_mul(usize::try_from(be_i32(value, 12 + 8 * d)?).ok()?)?;
    }
    let header = 12 + 8 * ndim;
    Some((header, length_prefixed(value, header, count, 0)?))
}

/// A binary record (`record_send`): each field's byte range (`None` for NULL), or `None` unless
/// the value is exactly that.
fn binary_record(value: &[u8]) -> Option<Parts> {
    let count = usize::try_from(be_i32(value, 0)?).ok().filter(|&c| c <= 1664)?;
    // Each field's type OID comes before its length.
    length_prefixed(value, 4, count, 4)
}

/// `count` values from `at` on, each `skip` bytes, a 4-byte length (-1: NULL) and its bytes: their
/// byte ranges, or `None` unless they end exactly where the value does.
fn length_prefixed(value: &[u8], mut at: usize, count: usize, skip: usize) -> Option<Parts> {
    let mut ranges = Vec::with_capacity(count.min(value.len() / 4));
    for _ in 0..count {
        let len = be_i32(value, at + skip)?;
        at += skip + 4;
        if len < 0 {
            ranges.push(None);
            continue;
        }
        let end = at.checked_add(usize::try_from(len).ok()?).filter(|&e| e <= value.len())?;
        ranges.push(Some((at, end)));
        at = end;
    }
    (at == value.len()).then_some(ranges)
}

fn be_i32(value: &[u8], at: usize) -> Option<i32> {
    value.get(at..at.checked_add(4)?).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// `\x4142…` (bytea_output = hex) as raw bytes.
fn decode_bytea_hex(text: &[u8]) -> Option<Vec<u8>> {
    hex::decode(text.strip_prefix(b"\\x")?).ok()
}

/// The integer part of a binary numeric (the digits a card number would be), as decimal text.
fn numeric_integer_digits(value: &[u8]) -> Option<String> {
    let header = value.get(..8)?;
    let ndigits = i16::from_be_bytes([header[0], header[1]]);
    let weight = i16::from_be_bytes([header[2], header[3]]);
    let groups = value.get(8..8 + 2 * usize::try_from(ndigits).ok()?)?;
    let group = |k: i32| -> u16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| groups.get(2 * k..2 * k + 2))
            .map_or(0, |g| u16::from_be_bytes([g[0], g[1]]))
    };
    let mut text = String::new();
    for k in 0..=i32::from(weight) {
        let g = group(k);
        if text.is_empty() {
            if g != 0 {
                text.push_str(&g.to_string());
            }
        } else {
            text.push_str(&format!("{g:04}"));
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_mask::detect::{Builtin, DetectorKind, Scanner};
    use sluice_mask::{MaskAction, TokenKey};
    use std::sync::Arc;

    fn masker_parts() -> (Scanner, Vec<MaskAction>, TokenKey) {
        let list: Vec<_> = Builtin::ALL.iter().map(|b| (b.name().to_string(), DetectorKind::Builtin(*b))).collect();
        let actions = vec![MaskAction::Redact; list.len()];
        (Scanner::new(&list).unwrap(), actions, TokenKey::new([1; 32]))
    }

    fn run(class: TypeClass, binary: bool, value: &[u8]) -> (Masked, Vec<u8>) {
        let (scanner, actions, key) = masker_parts();
        let m = ContentMasker { scanner: &scanner, actions: &actions, key: &key };
        let mut out = Vec::new();
        let masked = mask_value(&m, class, binary, value, &mut Vec::new(), &mut out);
        (masked, out)
    }

    #[test]
    fn strings_json_and_arrays_in_place() {
        let (m, out) = run(TypeClass::Text, false, b"mail jane@example.com now");
        assert_eq!((m, out.as_slice()), (Masked::Replaced, &b"mail [redacted:email] now"[..]));
        let (m, out) = run(TypeClass::Json, false, br#"{"card": 4111111111111111, "note": "ssn 123-45-6789"}"#);
        assert_eq!(m, Masked::Replaced);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"card": "[redacted:credit-card]", "note": "ssn [redacted:ssn]"}"#
        );
        let (m, out) = run(TypeClass::Jsonb, true, b"\x01{\"e\": \"a@b.io\"}");
        assert_eq!((m, out.as_slice()), (Masked::Replaced, &b"\x01{\"e\": \"[redacted:email]\"}"[..]));
        let (m, out) = run(TypeClass::TextArray, false, b"{a@b.io,\"x y\"}");
        assert_eq!((m, out.as_slice()), (Masked::Replaced, &b"{[redacted:email],\"x y\"}"[..]));
        assert_eq!(run(TypeClass::Text, false, b"nothing here 42").0, Masked::Clear);
    }

    #[test]
    fn other_types_become_null_when_anything_is_found() {
        assert_eq!(run(TypeClass::Int8, false, b"4111111111111111").0, Masked::Null);
        assert_eq!(run(TypeClass::Int8, true, &4111111111111111i64.to_be_bytes()).0, Masked::Null);
        assert_eq!(run(TypeClass::Int8, true, &42i64.to_be_bytes()).0, Masked::Clear);
        assert_eq!(run(TypeClass::Bytea, false, b"\\x6a616e65406578616d706c652e636f6d").0, Masked::Null);
        assert_eq!(run(TypeClass::Opaque, false, b"(1,jane@example.com)").0, Masked::Null);
        assert_eq!(run(TypeClass::TextArray, true, b"....jane@example.com").0, Masked::Null);
        assert_eq!(run(TypeClass::Skip, false, b"4111111111111111").0, Masked::Clear);
        // 4111111111111111 as a binary numeric: base-10000 groups 4111 1111 1111 1111, weight 3.
        let mut numeric = vec![0, 4, 0, 3, 0, 0, 0, 0];
        for g in [4111u16, 1111, 1111, 1111] {
            numeric.extend_from_slice(&g.to_be_bytes());
        }
        assert_eq!(numeric_integer_digits(&numeric).as_deref(), Some("4111111111111111"));
        assert_eq!(run(TypeClass::Numeric, true, &numeric).0, Masked::Null);
        assert_eq!(run(TypeClass::Numeric, true, &[0, 9]).0, Masked::Null, "malformed: never in clear");
    }

    /// A binary array of text (`array_send`): one dimension, lower bound 1.
    fn text_array(elements: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&i32::from(elements.contains(&None)).to_be_bytes());
        b.extend_from_slice(&25u32.to_be_bytes());
        b.extend_from_slice(&(elements.len() as i32).to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        for e in elements {
            match e {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(e) => {
                    b.extend_from_slice(&(e.len() as i32).to_be_bytes());
                    b.extend_from_slice(e);
                }
            }
        }
        b
    }

    #[test]
    fn binary_arrays_and_records_are_read_element_by_element() {
        // 49 bytes: the length's last byte is '1', glued to the card number when scanned whole.
        let card = format!("4111 1111 1111 1111 {}", "x".repeat(29));
        assert_eq!(card.len(), 49);
        let array = text_array(&[Some(b"fine"), None, Some(card.as_bytes())]);
        let (m, out) = run(TypeClass::TextArray, true, &array);
        assert_eq!(m, Masked::Replaced);
        let masked = format!("[redacted:credit-card] {}", "x".repeat(29));
        assert_eq!(out, text_array(&[Some(b"fine"), None, Some(masked.as_bytes())]));
        assert_eq!(run(TypeClass::TextArray, true, &text_array(&[Some(b"a"), Some(b"b")])).0, Masked::Clear);

        // The same inside a record (an anonymous ROW, a composite): its field becomes NULL whole.
        let mut record = Vec::new();
        record.extend_from_slice(&2i32.to_be_bytes());
        record.extend_from_slice(&23u32.to_be_bytes());
        record.extend_from_slice(&4i32.to_be_bytes());
        record.extend_from_slice(&7i32.to_be_bytes());
        record.extend_from_slice(&1009u32.to_be_bytes());
        record.extend_from_slice(&(array.len() as i32).to_be_bytes());
        record.extend_from_slice(&array);
        assert_eq!(run(TypeClass::Opaque, true, &record).0, Masked::Null, "a card inside an array inside a record");
        let clean = text_array(&[Some(b"fine")]);
        assert_eq!(run(TypeClass::Opaque, true, &clean).0, Masked::Clear);
        assert!(binary_array(&array[..array.len() - 1]).is_none(), "truncated: not an array");
        assert!(binary_record(b"\0\0\0\x01abc").is_none());
    }

    #[test]
    fn whole_value_masks_stay_type_correct() {
        let key = TokenKey::new([1; 32]);
        let mask = &ColumnMask { label: Arc::from("ssn"), action: MaskAction::Partial { keep_last: 4 } };
        let mut out = Vec::new();
        assert_eq!(mask_whole(TypeClass::Text, false, b"123-45-6789", mask, &key, &mut out), Masked::Replaced);
        assert_eq!(out, b"***-**-6789");
        assert_eq!(mask_whole(TypeClass::Jsonb, true, b"\x01{}", mask, &key, &mut out), Masked::Replaced);
        assert_eq!(out, b"\x01\"**\"");
        assert_eq!(mask_whole(TypeClass::Int8, false, b"123456789", mask, &key, &mut out), Masked::Null);
        assert_eq!(mask_whole(TypeClass::Skip, false, b"2020-01-01", mask, &key, &mut out), Masked::Null);
    }
}
