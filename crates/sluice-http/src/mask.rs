//! Cleaning of responses: the held credential replaced wherever the upstream repeats it; JSON
//! walked token by token (every string and number through the detectors, keys too; values under
//! a sensitive key or pointer replaced whatever they hold), any other body scanned as text. A
//! body sluice cannot decode to read it is not passed on.

use crate::forward::OnWire;
use jiter::Peek;
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
    pub fn clean(&self, body: &[u8]) -> Result<Option<Vec<u8>>, Unwalkable> {
        let scrubbed = self.on_wire.scrub(body);
        if !self.active() {
            return Ok(scrubbed);
        }
        Ok(self.mask(scrubbed.as_deref().unwrap_or(body))?.or(scrubbed))
    }

    /// A text (a header value, an event's field) as the client may have it: the credential
    /// replaced, the detectors' findings masked; `None` when nothing had to change.
    pub fn clean_text(&self, text: &[u8]) -> Option<Vec<u8>> {
        let scrubbed = self.on_wire.scrub(text);
        self.mask_text(scrubbed.as_deref().unwrap_or(text)).or(scrubbed)
    }

    /// The body masked, or `None` when nothing in it had to change. A body is walked as JSON
    /// when it is JSON, whatever type it is declared (a client would read it so).
    fn mask(&self, body: &[u8]) -> Result<Option<Vec<u8>>, Unwalkable> {
        if !crate::request::looks_like_json(body) {
            return Ok(self.mask_text(body));
        }
        let content = self.content();
        let mut hits = Vec::new();
        if let Some(content) = &content {
            content.scanner.scan(body, &mut hits);
        }
        let by_key = !self.sensitive.keys.is_empty() || !self.sensitive.pointers.is_empty();
        let escapes = memchr::memchr(b'\\', body).is_some();
        // Without escapes a string's text is its bytes, so what the detectors find in the whole
        // body is where they can find anything in a string: nothing there, nothing anywhere.
        if !by_key && !escapes && hits.is_empty() {
            return Ok(None);
        }
        let mut walk = JsonWalk {
            body,
            content,
            sensitive: &self.sensitive,
            hits,
            next_hit: 0,
            escapes,
            path: Vec::new(),
            edits: Vec::new(),
            findings: Vec::new(),
        };
        let mut jiter = jiter::Jiter::new(body);
        let walked = jiter
            .peek()
            .map_err(|e| e.to_string())
            .and_then(|peek| walk.value(&mut jiter, peek, None, 0))
            .and_then(|()| jiter.finish().map_err(|e| e.to_string()));
        match walked {
            Ok(()) => Ok(walk.apply()),
            // Not JSON after all: the detectors find what they find in it as text; but keys
            // marked sensitive cannot be found in what cannot be read.
            Err(why) if by_key => Err(Unwalkable(why)),
            Err(_) => Ok(self.mask_text(body)),
        }
    }

    fn mask_text(&self, text: &[u8]) -> Option<Vec<u8>> {
        self.content()?.mask_line(text, &mut Vec::new())
    }
}

/// A body that starts as JSON but cannot be read as JSON, where keys are marked sensitive.
#[derive(Debug, thiserror::Error)]
#[error("the response looks like JSON but cannot be read as JSON ({0}), so its sensitive keys cannot be found")]
pub struct Unwalkable(String);

/// JSON nested deeper than this is not walked (and so not passed on where keys are sensitive).
const MAX_DEPTH: usize = 128;

/// One JSON body walked token by token, without building it: every string (keys too) and number
/// that the detectors may have something in is read as a JSON reader reads it and masked; values
/// under a sensitive key or pointer are replaced whole. The body goes out as it came, but for the
/// tokens replaced.
struct JsonWalk<'a> {
    body: &'a [u8],
    content: Option<ContentMasker<'a>>,
    sensitive: &'a Sensitive,
    /// What the detectors found in the whole body, in order.
    hits: Vec<Finding>,
    next_hit: usize,
    /// Whether the body has escapes anywhere (then a string's bytes are not its text).
    escapes: bool,
    /// The keys and indexes down to the value being walked, when pointers are set.
    path: Vec<String>,
    /// Spans of the body to replace, in order, with what replaces them.
    edits: Vec<(usize, usize, Vec<u8>)>,
    findings: Vec<Finding>,
}

impl JsonWalk<'_> {
    /// Walks the value `jiter` is at; `replace`: the label to replace it whole with.
    fn value(
        &mut self,
        jiter: &mut jiter::Jiter,
        peek: Peek,
        replace: Option<&str>,
        depth: usize,
    ) -> Result<(), String> {
        let start = jiter.current_index();
        if let Some(label) = replace {
            jiter.known_skip(peek).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            sluice_mask::action::redaction(label, &mut out);
            self.edits.push((start, jiter.current_index(), json_string(&out)));
            return Ok(());
        }
        if matches!(peek, Peek::Array | Peek::Object) && depth >= MAX_DEPTH {
            return Err("it is nested too deeply".into());
        }
        match peek {
            Peek::String => {
                jiter.known_skip(peek).map_err(|e| e.to_string())?;
                let end = jiter.current_index();
                if self.may_hold_findings(start, end) {
                    let text = string_text(&self.body[start..end])?;
                    if let Some(content) = &self.content
                        && let Some(masked) = content.mask_text(&text, &mut self.findings)
                    {
                        self.edits.push((start, end, json_string(masked.as_bytes())));
                    }
                }
            }
            Peek::Array => {
                let mut next = jiter.known_array().map_err(|e| e.to_string())?;
                let mut index = 0usize;
                while let Some(peek) = next {
                    let label = match self.sensitive.pointers.is_empty() {
                        true => None,
                        false => Some(index.to_string()),
                    };
                    if let Some(label) = &label {
                        self.path.push(label.clone());
                    }
                    let replace = label.as_deref().filter(|_| self.pointer_here());
                    self.value(jiter, peek, replace, depth + 1)?;
                    if label.is_some() {
                        self.path.pop();
                    }
                    next = jiter.array_step().map_err(|e| e.to_string())?;
                    index += 1;
                }
            }
            Peek::Object => {
                let body = self.body;
                // Keys as their bytes in the body (read as text only where they have escapes).
                let span_of = |raw: &[u8]| -> Result<(usize, usize), String> {
                    let at = (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
                    match at >= 1 && at + raw.len() < body.len() {
                        true => Ok((at - 1, at + raw.len() + 1)),
                        false => Err("a key is not where it was read".into()),
                    }
                };
                let mut key = jiter.next_object_bytes().map_err(|e| e.to_string())?.map(span_of).transpose()?;
                while let Some((key_start, key_end)) = key {
                    let name = string_text(&body[key_start..key_end])?;
                    // Keys can carry personal data too (an e-mail address as a key).
                    if self.may_hold_findings(key_start, key_end)
                        && let Some(content) = &self.content
                        && let Some(masked) = content.mask_text(&name, &mut self.findings)
                    {
                        self.edits.push((key_start, key_end, json_string(masked.as_bytes())));
                    }
                    let keep_path = !self.sensitive.pointers.is_empty();
                    if keep_path {
                        self.path.push(name.to_string());
                    }
                    let sensitive = self.sensitive.keys.iter().any(|k| k.eq_ignore_ascii_case(&name))
                        || (keep_path && self.pointer_here());
                    let peek = jiter.peek().map_err(|e| e.to_string())?;
                    self.value(jiter, peek, sensitive.then_some(&*name), depth + 1)?;
                    if keep_path {
                        self.path.pop();
                    }
                    key = jiter.next_key_bytes().map_err(|e| e.to_string())?.map(span_of).transpose()?;
                }
            }
            _ if peek.is_num() => {
                // A card or account number sent as a JSON number is still one.
                jiter.known_skip(peek).map_err(|e| e.to_string())?;
                let end = jiter.current_index();
                if self.may_hold_findings(start, end)
                    && let Some(content) = &self.content
                    && let Some(masked) = content.mask_line(&self.body[start..end], &mut self.findings)
                {
                    self.edits.push((start, end, json_string(&masked)));
                }
            }
            _ => jiter.known_skip(peek).map_err(|e| e.to_string())?,
        }
        Ok(())
    }

    /// Whether the token at `start..end` has to be read: it has escapes, or a finding of the
    /// whole body touches it. Tokens come in order.
    fn may_hold_findings(&mut self, start: usize, end: usize) -> bool {
        if self.content.is_none() {
            return false;
        }
        while self.hits.get(self.next_hit).is_some_and(|h| h.end <= start) {
            self.next_hit += 1;
        }
        self.hits.get(self.next_hit).is_some_and(|h| h.start < end)
            || (self.escapes && memchr::memchr(b'\\', &self.body[start..end]).is_some())
    }

    fn pointer_here(&self) -> bool {
        let path = &self.path;
        self.sensitive
            .pointers
            .iter()
            .any(|p| p.len() == path.len() && p.iter().zip(path).all(|(token, step)| token == "*" || token == step))
    }

    /// The body with the edits made; `None` when there are none.
    fn apply(self) -> Option<Vec<u8>> {
        if self.edits.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(self.body.len() + self.edits.len() * 16);
        let mut at = 0;
        for (start, end, with) in &self.edits {
            out.extend_from_slice(&self.body[at..*start]);
            out.extend_from_slice(with);
            at = *end;
        }
        out.extend_from_slice(&self.body[at..]);
        Some(out)
    }
}

/// The text of a JSON string token (with its quotes), as a JSON reader reads it.
fn string_text(token: &[u8]) -> Result<std::borrow::Cow<'_, str>, String> {
    let inner = token.get(1..token.len().saturating_sub(1)).unwrap_or_default();
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).map(std::borrow::Cow::Borrowed).map_err(|e| e.to_string());
    }
    let mut reader = jiter::Jiter::new(token);
    reader.next_str().map(|s| std::borrow::Cow::Owned(s.to_string())).map_err(|e| e.to_string())
}

/// `text` as a JSON string (quoted, escaped).
fn json_string(text: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&String::from_utf8_lossy(text)).unwrap_or_else(|_| b"\"[redacted]\"".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;
    use sluice_mask::{MaskingSpec, TokenKey};

    fn masker(keys: &[&str], pointers: &[&[&str]], detectors: bool) -> BodyMasker {
        let sensitive = Sensitive {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            pointers: pointers.iter().map(|p| p.iter().map(|t| t.to_string()).collect()).collect(),
        };
        let masking = detectors.then(|| {
            let masking = Arc::new(sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([5; 32])).unwrap());
            masking.for_session(&Identity { name: "a".into(), groups: vec![], credential_id: "t".into() }, "c")
        });
        BodyMasker::new(masking, Arc::new(sensitive), OnWire::default())
    }

    fn clean(masker: &BodyMasker, body: &str) -> Option<String> {
        masker.clean(body.as_bytes()).unwrap().map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn sensitive_keys_and_pointers_are_masked_whatever_they_hold() {
        let masker = masker(&["password"], &[&["data", "*", "card"]], false);
        let body =
            r#"{"user":{"Password":{"old":"a","new":"b"},"name":"x"},"data":[{"card":1234,"id":1}],"card":"kept"}"#;
        assert_eq!(
            clean(&masker, body).unwrap(),
            r#"{"user":{"Password":"[redacted:Password]","name":"x"},"data":[{"card":"[redacted:card]","id":1}],"card":"kept"}"#
        );
        assert_eq!(clean(&masker, r#"{"a":1}"#), None);
        // Declared or not, JSON is walked; what is not JSON is left to the detectors.
        assert_eq!(clean(&masker, " [{\"password\": 1}]").unwrap(), " [{\"password\": \"[redacted:password]\"}]");
        assert_eq!(clean(&masker, "password: 1"), None);
        // What starts as JSON but is not (nested too deeply, or with more after it) cannot be
        // searched for its sensitive keys: it is not passed on.
        assert!(masker.clean(format!("{}{}", "[".repeat(200), "]".repeat(200)).as_bytes()).is_err());
        assert!(masker.clean(br#"{"a":1} {"password":"x"}"#).is_err());
    }

    #[test]
    fn strings_keys_and_numbers_are_read_as_a_json_reader_reads_them() {
        let masker = masker(&[], &[], true);
        // Escapes are read: an address spelled with \u0040 is still one, and so is a key.
        let body = r#"{"a":"ann\u0040example.com","bob@example.com":1,"n":4111111111111111,"s":"fine \"quoted\""}"#;
        assert_eq!(
            clean(&masker, body).unwrap(),
            r#"{"a":"[redacted:email]","[redacted:email]":1,"n":"[redacted:credit-card]","s":"fine \"quoted\""}"#
        );
        // The body goes out as it came (spacing, key order, duplicates) but for what was masked.
        let body = "{ \"x\" : [ 1, 2 ],\n  \"x\": \"mail carol@example.com\" }";
        assert_eq!(clean(&masker, body).unwrap(), "{ \"x\" : [ 1, 2 ],\n  \"x\": \"mail [redacted:email]\" }");
        assert_eq!(clean(&masker, r#"{"plain": "nothing here", "n": 42}"#), None);
        // A text that is not JSON is scanned as text.
        assert_eq!(clean(&masker, "{not json carol@example.com").unwrap(), "{not json [redacted:email]");
    }
}
