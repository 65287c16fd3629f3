//! What a mask does to what it covers: a labelled placeholder, the last few characters kept, a
//! keyed deterministic token (equal values stay joinable; the key never leaves sluice), or NULL.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sluice_core::mask_spec::ActionName;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskAction {
    /// `[redacted:<label>]`.
    Redact,
    /// Every letter and digit but the last `keep_last` becomes `*`; separators stay.
    Partial { keep_last: usize },
    /// `tok_` and 16 hex digits of HMAC-SHA-256 under the token key.
    Token,
    /// The whole value becomes NULL (in text, where NULL cannot be, a redaction).
    Null,
}

impl MaskAction {
    /// What it does, in a few words (`partial (last 4 kept)`).
    pub fn describe(self) -> String {
        match self {
            MaskAction::Redact => "redact".into(),
            MaskAction::Partial { keep_last } => format!("partial (last {keep_last} kept)"),
            MaskAction::Token => "token".into(),
            MaskAction::Null => "null".into(),
        }
    }
}

/// The action a configured action name stands for (`keep_last` for `partial`).
pub fn action_for(name: ActionName, keep_last: usize) -> MaskAction {
    match name {
        ActionName::Redact => MaskAction::Redact,
        ActionName::Partial => MaskAction::Partial { keep_last },
        ActionName::Token => MaskAction::Token,
        ActionName::Null => MaskAction::Null,
    }
}

/// The secret behind deterministic tokens.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        TokenKey(bytes)
    }

    fn token(&self, value: &[u8], out: &mut Vec<u8>) {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        out.extend_from_slice(b"tok_");
        out.extend_from_slice(hex::encode(&digest[..8]).as_bytes());
    }
}

/// Writes what replaces `matched`. Returns false for `Null`, which the caller applies to the value.
pub fn render(action: MaskAction, label: &str, matched: &[u8], key: &TokenKey, out: &mut Vec<u8>) -> bool {
    match action {
        MaskAction::Redact => redaction(label, out),
        MaskAction::Partial { keep_last } => partial(matched, keep_last, out),
        MaskAction::Token => key.token(matched, out),
        MaskAction::Null => return false,
    }
    true
}

pub fn redaction(label: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"[redacted:");
    out.extend(label.bytes().filter(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b']')));
    out.push(b']');
}

/// Keeps the last `keep` letters or digits and the separators a reader needs to recognise the shape
/// (` -.@_`); everything else, escapes and quotes included, becomes `*`. The output is plain ASCII
/// apart from the kept characters, so it is safe inside JSON strings and array literals.
fn partial(matched: &[u8], keep: usize, out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(matched);
    let total = text.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            if seen > total.saturating_sub(keep) {
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            out.push(b'*');
        } else if matches!(c, ' ' | '-' | '.' | '@' | '_') {
            out.push(c as u8);
        } else {
            out.push(b'*');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(action: MaskAction, matched: &str) -> Option<String> {
        let mut out = Vec::new();
        render(action, "credit-card", matched.as_bytes(), &TokenKey::new([7; 32]), &mut out)
            .then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn actions() {
        assert_eq!(run(MaskAction::Redact, "4111").as_deref(), Some("[redacted:credit-card]"));
        assert_eq!(
            run(MaskAction::Partial { keep_last: 4 }, "4111-1111-1111-1234").as_deref(),
            Some("****-****-****-1234")
        );
        assert_eq!(run(MaskAction::Partial { keep_last: 0 }, "a\\\"b").as_deref(), Some("****"));
        assert_eq!(run(MaskAction::Null, "x"), None);
        let a = run(MaskAction::Token, "jane@example.com").unwrap();
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("tok_"));
        assert_eq!(run(MaskAction::Token, "jane@example.com").unwrap(), a, "deterministic");
        assert_ne!(run(MaskAction::Token, "john@example.com").unwrap(), a);
        let mut other = Vec::new();
        render(MaskAction::Token, "x", b"jane@example.com", &TokenKey::new([8; 32]), &mut other);
        assert_ne!(other, a.as_bytes(), "keyed");
    }
}
