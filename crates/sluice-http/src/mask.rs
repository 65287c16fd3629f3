//! Cleaning of responses: the held credential replaced wherever the upstream repeats it; JSON
//! walked value by value (every string and number through the detectors, keys too; values under
//! a sensitive key or pointer replaced whatever they hold), any other body scanned as text. A
//! body sluice cannot decode to read it is not passed on.

use crate::forward::OnWire;
use serde_json::Value;
use sluice_mask::value::ContentMasker;
use sluice_mask::{Finding, SessionMasking};
use std::sync::Arc;

/// A target's JSON keys and pointers whose values are masked whatever they hold.
#[derive(Debug, Default)]
pub struct Sensitive {
    /// Keys in lower case.
    pub keys: Vec<String>,
    /// Pointers as their reference tokens (`*`: any).
    pub pointers: Vec<Vec<String>>,
}

/// What a response is cleaned with: owned, so a stream carries it along.
pub struct BodyMasker {
    masking: Option<SessionMasking>,
    sensitive: Arc<Sensitive>,
    on_wire: OnWire,
}

impl BodyMasker {
    pub fn new(masking: Option<SessionMasking>, sensitive: Arc<Sensitive>, on_wire: OnWire) -> BodyMasker {
        BodyMasker { masking, sensitive, on_wire }
    }

    fn content(&self) -> Option<ContentMasker<'_>> {
        self.masking.as_ref().map(|m| m.masking().content())
    }

    fn active(&self) -> bool {
        self.content().is_some_and(|c| !c.scanner.is_empty())
            || !self.sensitive.keys.is_empty()
            || !self.sensitive.pointers.is_empty()
    }

    /// A body as the client may have it: the credential replaced, then masked (as JSON or as
    /// text); `None` when nothing had to change.
    pub fn clean(&self, body: &[u8]) -> Option<Vec<u8>> {
        let scrubbed = self.on_wire.scrub(body);
        if !self.active() {
            return scrubbed;
        }
        self.mask(scrubbed.as_deref().unwrap_or(body)).or(scrubbed)
    }

    /// A text (a header value, an event's field) as the client may have it: the credential
    /// replaced, the detectors' findings masked; `None` when nothing had to change.
    pub fn clean_text(&self, text: &[u8]) -> Option<Vec<u8>> {
        let scrubbed = self.on_wire.scrub(text);
        self.mask_text(scrubbed.as_deref().unwrap_or(text)).or(scrubbed)
    }

    /// The body masked, or `None` when nothing in it had to change. A body is walked as JSON
    /// when it is JSON, whatever type it is declared (a client would read it so).
    fn mask(&self, body: &[u8]) -> Option<Vec<u8>> {
        if crate::request::looks_like_json(body)
            && let Ok(mut value) = serde_json::from_slice::<Value>(body)
        {
            let mut path = Vec::new();
            let mut findings = Vec::new();
            return self
                .walk(&mut value, &mut path, &mut findings)
                .then(|| serde_json::to_vec(&value).unwrap_or_default());
        }
        // Not JSON (or not valid JSON): scanned as text, which masks what the detectors find
        // wherever it is.
        self.mask_text(body)
    }

    /// Text masked by the detectors; `None` when they found nothing (or there are none).
    fn mask_text(&self, text: &[u8]) -> Option<Vec<u8>> {
        self.content()?.mask_line(text, &mut Vec::new())
    }

    /// Masks `value` in place; whether anything changed.
    fn walk(&self, value: &mut Value, path: &mut Vec<String>, findings: &mut Vec<Finding>) -> bool {
        if self.sensitive_here(path) {
            let label = path.last().map_or("value", String::as_str);
            let mut out = Vec::new();
            sluice_mask::action::redaction(label, &mut out);
            *value = Value::String(String::from_utf8_lossy(&out).into_owned());
            return true;
        }
        let content = self.content();
        match value {
            Value::String(s) => match content.as_ref().and_then(|c| c.mask_text(s, findings)) {
                Some(masked) => {
                    *s = masked;
                    true
                }
                None => false,
            },
            Value::Number(n) => {
                // A card or account number sent as a JSON number is still one.
                let text = n.to_string();
                match content.as_ref().and_then(|c| c.mask_text(&text, findings)) {
                    Some(masked) => {
                        *value = Value::String(masked);
                        true
                    }
                    None => false,
                }
            }
            Value::Array(items) => {
                let mut changed = false;
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(i.to_string());
                    changed |= self.walk(item, path, findings);
                    path.pop();
                }
                changed
            }
            Value::Object(map) => {
                let mut changed = false;
                // Keys can carry personal data too (an e-mail address as a key).
                if let Some(content) = content.as_ref()
                    && map.keys().any(|k| content.mask_text(k, findings).is_some())
                {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        let k = content.mask_text(&k, findings).unwrap_or(k);
                        map.insert(k, v);
                    }
                    changed = true;
                }
                for (key, item) in map.iter_mut() {
                    path.push(key.clone());
                    changed |= self.walk(item, path, findings);
                    path.pop();
                }
                changed
            }
            Value::Null | Value::Bool(_) => false,
        }
    }

    fn sensitive_here(&self, path: &[String]) -> bool {
        let key = path.last().is_some_and(|k| self.sensitive.keys.iter().any(|s| s.eq_ignore_ascii_case(k)));
        key || self
            .sensitive
            .pointers
            .iter()
            .any(|p| p.len() == path.len() && p.iter().zip(path).all(|(token, step)| token == "*" || token == step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_keys_and_pointers_are_masked_whatever_they_hold() {
        let sensitive = Sensitive {
            keys: vec!["password".to_string()],
            pointers: vec![vec!["data".to_string(), "*".to_string(), "card".to_string()]],
        };
        let masker = BodyMasker::new(None, Arc::new(sensitive), OnWire::default());
        assert!(masker.active());
        let body = br#"{"user":{"Password":"hunter2","name":"x"},"data":[{"card":1234,"id":1}],"card":"kept"}"#;
        let masked: Value = serde_json::from_slice(&masker.mask(body).unwrap()).unwrap();
        assert_eq!(masked["user"]["Password"], "[redacted:Password]");
        assert_eq!(masked["user"]["name"], "x");
        assert_eq!(masked["data"][0]["card"], "[redacted:card]");
        assert_eq!(masked["data"][0]["id"], 1);
        assert_eq!(masked["card"], "kept");
        assert_eq!(masker.mask(br#"{"a":1}"#), None);
        // Declared or not, JSON is walked; what is not JSON is left to the detectors.
        assert!(masker.mask(b" [{\"password\": 1}]").is_some());
        assert_eq!(masker.mask(b"password: 1"), None);
    }
}
