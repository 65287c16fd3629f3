//! The protocol-free primitives of masking one value: placeholders in place inside strings, JSON
//! and text arrays, or NULL where a placeholder would not parse, and masking a line of text. How a
//! protocol's types and binary formats map onto these is the adapter's (for PostgreSQL:
//! `sluice-pg`'s `value` module). A value is never passed through in clear because its type is
//! unfamiliar.

use crate::action::{MaskAction, TokenKey, redaction, render};
use crate::detect::{Finding, Scanner};
use std::sync::Arc;

/// What happened to a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Masked {
    /// Nothing found: send the original bytes.
    Clear,
    /// Send what was written to `out`.
    Replaced,
    /// Send NULL.
    Null,
}

/// A whole-value mask from a column rule.
#[derive(Clone, Debug)]
pub struct ColumnMask {
    pub label: Arc<str>,
    pub action: MaskAction,
}

/// Runs the detectors over a value. `actions[d]` is detector `d`'s action.
pub struct ContentMasker<'a> {
    pub scanner: &'a Scanner,
    pub actions: &'a [MaskAction],
    pub key: &'a TokenKey,
}

impl ContentMasker<'_> {
    /// Text masked where NULL cannot stand (an error message, a recorded statement, a COPY line):
    /// findings whose action is NULL are redacted instead. `None` when nothing was found.
    pub fn mask_line(&self, text: &[u8], findings: &mut Vec<Finding>) -> Option<Vec<u8>> {
        self.mask_after(&[], text, findings)
    }

    /// `text` masked as `mask_line` does, read after `context` (what came just before it, passed
    /// on already): a value may be named lines above it (`- name: DB_PASSWORD` over
    /// `  value: …`). Only what lies in `text` is masked and returned.
    pub fn mask_after(&self, context: &[u8], text: &[u8], findings: &mut Vec<Finding>) -> Option<Vec<u8>> {
        let whole = match context.is_empty() {
            true => std::borrow::Cow::Borrowed(text),
            false => std::borrow::Cow::Owned([context, text].concat()),
        };
        findings.clear();
        self.scanner.scan(&whole, findings);
        let from = context.len();
        // Findings come in order: none reaches into `text` unless the last does.
        if findings.last().is_none_or(|f| f.end <= from) {
            return None;
        }
        let mut out = Vec::with_capacity(text.len());
        let mut at = from;
        for f in findings.iter().filter(|f| f.end > from) {
            let start = f.start.max(from);
            out.extend_from_slice(&whole[at..start]);
            self.replacement(f.detector, &whole[start..f.end], &mut out);
            at = f.end;
        }
        out.extend_from_slice(&whole[at..]);
        Some(out)
    }

    pub fn mask_text(&self, text: &str, findings: &mut Vec<Finding>) -> Option<String> {
        self.mask_line(text.as_bytes(), findings).map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    /// What stands for `matched`, found by `detector`, in a text: its action's rendering, or the
    /// redaction label where the action needs a NULL no text can hold.
    pub fn replacement(&self, detector: usize, matched: &[u8], out: &mut Vec<u8>) {
        let label = self.scanner.name(detector);
        if !render(self.action(detector), label, matched, self.key, out) {
            redaction(label, out);
        }
    }

    /// Whether what stands for a finding of `detector` is the same whatever was matched (a
    /// redaction label), so that it may be rendered once for many.
    pub fn replaces_alike(&self, detector: usize) -> bool {
        matches!(self.action(detector), MaskAction::Redact | MaskAction::Null)
    }

    fn action(&self, detector: usize) -> MaskAction {
        self.actions.get(detector).copied().unwrap_or(MaskAction::Null)
    }

    /// NULL when anything is found: for a value no placeholder can stand in.
    pub fn null_if_found(&self, value: &[u8], findings: &mut Vec<Finding>) -> Masked {
        findings.clear();
        self.scanner.scan(value, findings);
        if findings.is_empty() { Masked::Clear } else { Masked::Null }
    }

    /// Findings replaced by their placeholders in place, written to `out`, where `layout` allows;
    /// NULL where a finding cannot be replaced without breaking the value.
    pub fn in_place(&self, value: &[u8], findings: &mut Vec<Finding>, out: &mut Vec<u8>, layout: Layout) -> Masked {
        findings.clear();
        self.scanner.scan(value, findings);
        if findings.is_empty() {
            return Masked::Clear;
        }
        let mut strings = JsonStrings::default();
        let mut at = 0;
        for f in findings.iter() {
            let matched = &value[f.start..f.end];
            let quote = match layout {
                Layout::Plain => false,
                // A finding that crosses an element or a string's end cannot be replaced in place.
                Layout::Array if matched.iter().any(|b| matches!(b, b'"' | b',' | b'{' | b'}' | b'\\')) => {
                    return Masked::Null;
                }
                Layout::Array => false,
                Layout::Json if matched.contains(&b'"') => return Masked::Null,
                Layout::Json => !strings.inside_at(value, f.start),
            };
            out.extend_from_slice(&value[at..f.start]);
            if quote {
                out.push(b'"');
            }
            let label = self.scanner.name(f.detector);
            if !render(self.action(f.detector), label, matched, self.key, out) {
                return Masked::Null;
            }
            if quote {
                out.push(b'"');
            }
            at = f.end;
        }
        out.extend_from_slice(&value[at..]);
        Masked::Replaced
    }
}

/// How the text of a value is laid out, which says where a placeholder may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A plain string: anywhere.
    Plain,
    /// An array in text form (`{a,"b c"}`): unless a finding crosses an element.
    Array,
    /// JSON text: inside strings, or as a string of its own where a number or literal stood.
    Json,
}

/// Whether a position of a JSON text lies inside a string; findings come in order, so the scan
/// carries on from the last position asked about.
#[derive(Default)]
struct JsonStrings {
    pos: usize,
    inside: bool,
    escaped: bool,
}

impl JsonStrings {
    fn inside_at(&mut self, json: &[u8], at: usize) -> bool {
        while self.pos < at {
            let c = json[self.pos];
            if self.escaped {
                self.escaped = false;
            } else if self.inside && c == b'\\' {
                self.escaped = true;
            } else if c == b'"' {
                self.inside = !self.inside;
            }
            self.pos += 1;
        }
        self.inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Builtin, DetectorKind};

    fn in_place(layout: Layout, value: &[u8]) -> (Masked, Vec<u8>) {
        let list: Vec<_> = Builtin::ALL.iter().map(|b| (b.name().to_string(), DetectorKind::Builtin(*b))).collect();
        let (scanner, actions, key) =
            (Scanner::new(&list).unwrap(), vec![MaskAction::Redact; list.len()], TokenKey::new([1; 32]));
        let m = ContentMasker { scanner: &scanner, actions: &actions, key: &key };
        let mut out = Vec::new();
        (m.in_place(value, &mut Vec::new(), &mut out, layout), out)
    }

    #[test]
    fn placeholders_go_where_the_layout_keeps_the_value_well_formed() {
        let (m, out) = in_place(Layout::Plain, b"mail jane@example.com now");
        assert_eq!((m, out.as_slice()), (Masked::Replaced, &b"mail [redacted:email] now"[..]));
        let (m, out) = in_place(Layout::Json, br#"{"card": 4111111111111111, "note": "ssn 123-45-6789"}"#);
        assert_eq!(m, Masked::Replaced);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"card": "[redacted:credit-card]", "note": "ssn [redacted:ssn]"}"#
        );
        let (m, out) = in_place(Layout::Array, b"{a@b.io,\"x y\"}");
        assert_eq!((m, out.as_slice()), (Masked::Replaced, &b"{[redacted:email],\"x y\"}"[..]));
        assert_eq!(in_place(Layout::Plain, b"nothing here 42").0, Masked::Clear);
    }
}
