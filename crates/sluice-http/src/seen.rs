//! Response header values a connection's session already had cleaned, kept so that what an
//! upstream repeats on every answer (`Server`, `Content-Type`, `Cache-Control`, `ETag`) is not
//! read by the detectors again: a small request's headers cost more to scan than its body.

use crate::forward::{self, OnWire};
use crate::mask::{BodyMasker, Sensitive};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// How many values are kept: more than an answer's headers, few enough to search in passing.
const KEPT: usize = 24;
/// Longer values (rare: a `Link` list, a `Content-Security-Policy`) are cleaned each time.
const LONGEST_KEPT: usize = 256;

/// A value cleaned once, and what the client got for it.
struct Cleaned {
    name: HeaderName,
    value: HeaderValue,
    sent: HeaderValue,
}

/// The values a session's masker cleaned, valid while the same masker rules: the session (its
/// detectors and masking) and the target's sensitive keys and held credential.
#[derive(Default)]
pub struct SeenHeaders {
    rules: Option<(Arc<str>, Arc<Sensitive>, Arc<OnWire>)>,
    kept: Vec<Cleaned>,
    next: usize,
}

impl SeenHeaders {
    /// Cleans an answer's headers in place for the client: a header named for a credential or
    /// a sensitive key is masked whatever its value looks like (a token may be a bare UUID no
    /// detector knows), one that is the held credential says so, the rest go through the
    /// detectors (or are taken from what the same value gave before).
    pub fn clean(&mut self, session: &Arc<str>, masker: &BodyMasker, headers: &mut HeaderMap) {
        let (sensitive, on_wire) = masker.rules();
        let same = self
            .rules
            .as_ref()
            .is_some_and(|(s, k, w)| s == session && Arc::ptr_eq(k, sensitive) && Arc::ptr_eq(w, on_wire));
        if !same {
            self.rules = Some((Arc::clone(session), Arc::clone(sensitive), Arc::clone(on_wire)));
            self.kept.clear();
            self.next = 0;
        }
        for (name, value) in headers.iter_mut() {
            if let Some(seen) = self.kept.iter().find(|c| c.name == name && c.value == *value) {
                *value = seen.sent.clone();
                continue;
            }
            let original = value.clone();
            let named = forward::names_credential(name) || sensitive.names_header(name.as_str());
            match masker.clean_text(value.as_bytes()) {
                Some(clean) if !named || clean == forward::SCRUBBED => {
                    *value = HeaderValue::from_bytes(&clean).unwrap_or(HeaderValue::from_static("[redacted]"));
                }
                _ if named => *value = HeaderValue::from_static("[redacted:credential]"),
                _ => {}
            }
            if original.len() <= LONGEST_KEPT {
                self.keep(Cleaned { name: name.clone(), value: original, sent: value.clone() });
            }
        }
    }

    /// Keeps a value in place of the one of its name (a new `Date` each second), else of the
    /// oldest kept.
    fn keep(&mut self, cleaned: Cleaned) {
        if let Some(same_name) = self.kept.iter_mut().find(|c| c.name == cleaned.name) {
            *same_name = cleaned;
        } else if self.kept.len() < KEPT {
            self.kept.push(cleaned);
        } else {
            self.kept[self.next] = cleaned;
            self.next = (self.next + 1) % KEPT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("nginx"));
        headers.insert("x-echo", HeaderValue::from_static("Bearer s3cret-token"));
        headers.insert("x-auth-token", HeaderValue::from_static("0f8c2a77"));
        headers
    }

    fn cleaned(seen: &mut SeenHeaders, session: &Arc<str>, masker: &BodyMasker) -> Vec<String> {
        let mut headers = answer();
        seen.clean(session, masker, &mut headers);
        headers.iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?"))).collect()
    }

    #[test]
    fn a_value_seen_again_is_given_what_it_gave_and_other_rules_start_afresh() {
        let wire = || Arc::new(OnWire::new(vec!["s3cret-token".into()], "Bearer s3cret-token".into()).unwrap());
        let sensitive = Arc::new(Sensitive::new(Vec::new(), Vec::new()));
        let masker = BodyMasker::new(None, Arc::clone(&sensitive), wire());
        let (one, two): (Arc<str>, Arc<str>) = (Arc::from("one"), Arc::from("two"));
        let mut seen = SeenHeaders::default();
        let first = cleaned(&mut seen, &one, &masker);
        assert_eq!(
            first,
            ["server: nginx", "x-echo: [redacted:held-credential]", "x-auth-token: [redacted:credential]"]
        );
        assert_eq!(seen.kept.len(), 3);
        assert_eq!(cleaned(&mut seen, &one, &masker), first);
        // Another session, or another held credential (rotated), is not answered from the old one's.
        cleaned(&mut seen, &two, &masker);
        assert!(seen.rules.as_ref().is_some_and(|(s, _, _)| *s == two));
        let rotated = BodyMasker::new(None, sensitive, Arc::new(OnWire::default()));
        let after = cleaned(&mut seen, &two, &rotated);
        assert_eq!(after, ["server: nginx", "x-echo: Bearer s3cret-token", "x-auth-token: [redacted:credential]"]);
    }

    #[test]
    fn a_new_value_takes_its_names_place() {
        let masker = BodyMasker::new(None, Arc::new(Sensitive::new(Vec::new(), Vec::new())), Arc::default());
        let session: Arc<str> = Arc::from("one");
        let mut seen = SeenHeaders::default();
        for second in 0..(KEPT * 2) {
            let mut headers = HeaderMap::new();
            headers.insert("date", HeaderValue::from_str(&format!("Sat, 05 Dec 2026 15:22:{second:02} GMT")).unwrap());
            seen.clean(&session, &masker, &mut headers);
        }
        assert_eq!(seen.kept.len(), 1);
    }
}
