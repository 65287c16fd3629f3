//! A command's output masked line by line as it streams: what could be the start of a secret
//! split between two packets is held until its line ends (or the stream does), so that the
//! detectors always see whole lines. A line longer than the cap is masked and passed on in parts.
//! The last lines passed on are read again before the next, unmasked, as context: a value may
//! be named on a line above its own (YAML's `- name: DB_PASSWORD` over `  value: …`).

use sluice_gate::Obligations;
use sluice_mask::SessionMasking;

/// The longest part of a line held back.
const MAX_HELD: usize = 64 * 1024;

/// How much of what was passed on is read again as context, at most: a few lines.
const CONTEXT_LINES: usize = 6;
const MAX_CONTEXT: usize = 1024;

pub struct LineMasker {
    masking: Option<SessionMasking>,
    held: Vec<u8>,
    /// The last lines passed on, as they came (before masking).
    context: Vec<u8>,
}

impl LineMasker {
    pub fn new(obligations: &Obligations) -> LineMasker {
        LineMasker { masking: obligations.masking.clone(), held: Vec::new(), context: Vec::new() }
    }

    /// What of `data` may be passed on now, masked.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let Some(masking) = &self.masking else { return data.to_vec() };
        self.held.extend_from_slice(data);
        let cut = match memchr_last_newline(&self.held) {
            Some(i) => i + 1,
            None if self.held.len() > MAX_HELD => self.held.len(),
            None => return Vec::new(),
        };
        let ready: Vec<u8> = self.held.drain(..cut).collect();
        let out = mask(masking, &self.context, &ready);
        self.remember(&ready);
        out
    }

    /// Keeps the last lines of `passed` (with what came before them) as the next context.
    fn remember(&mut self, passed: &[u8]) {
        if passed.len() >= MAX_CONTEXT {
            self.context.clear();
        }
        self.context.extend_from_slice(&passed[passed.len().saturating_sub(MAX_CONTEXT)..]);
        let mut keep = self.context.len().saturating_sub(MAX_CONTEXT);
        let body = self.context.strip_suffix(b"\n").unwrap_or(&self.context);
        let mut newlines = body.iter().enumerate().rev().filter(|&(_, &c)| c == b'\n');
        if let Some((start, _)) = newlines.nth(CONTEXT_LINES - 1) {
            keep = keep.max(start + 1);
        }
        self.context.drain(..keep);
    }

    /// Whether part of a line is held, waiting for its end.
    pub fn holds(&self) -> bool {
        !self.held.is_empty()
    }

    /// What is left when the stream ends (or pauses), masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        let out = match &self.masking {
            Some(masking) => mask(masking, &self.context, &rest),
            None => return rest,
        };
        self.remember(&rest);
        out
    }
}

fn memchr_last_newline(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|&b| b == b'\n')
}

fn mask(masking: &SessionMasking, context: &[u8], text: &[u8]) -> Vec<u8> {
    let content = masking.masking().content();
    content.mask_after(context, text, &mut Vec::new()).unwrap_or_else(|| text.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;
    use sluice_mask::{MaskingSpec, TokenKey};
    use std::sync::Arc;

    /// A command's obligations with every built-in detector on.
    fn masked() -> Obligations {
        let masking = Arc::new(sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([3; 32])).unwrap());
        let who = Identity { name: "a".into(), groups: vec![], credential_id: "t".into() };
        Obligations { masking: Some(masking.for_session(&who, "web1")), read_only: false }
    }

    #[test]
    fn a_secret_split_between_packets_is_masked_whole() {
        let obligations = masked();
        let mut out = LineMasker::new(&obligations);
        let mut seen = Vec::new();
        for piece in ["user: ann@exa", "mple.com\ncard 4111 1111 ", "1111 1111\nlast ", "line dave@example.com"] {
            seen.extend(out.push(piece.as_bytes()));
        }
        seen.extend(out.finish());
        let seen = String::from_utf8(seen).unwrap();
        assert_eq!(seen, "user: [redacted:email]\ncard [redacted:credit-card]\nlast line [redacted:email]");
    }

    #[test]
    fn a_value_named_lines_above_in_an_earlier_packet_is_masked() {
        let obligations = masked();
        let mut out = LineMasker::new(&obligations);
        let mut seen = Vec::new();
        let pieces = ["env:\n", "- name: DB_PASSWORD\n", "  value: hK9mQ2vL7pXw\n", "- name: HOME\n  value: /h\n"];
        for piece in pieces {
            seen.extend(out.push(piece.as_bytes()));
        }
        seen.extend(out.finish());
        let seen = String::from_utf8(seen).unwrap();
        assert_eq!(seen, "env:\n- name: DB_PASSWORD\n  value: [redacted:credential]\n- name: HOME\n  value: /h\n");
        // Only the last lines are kept: a name far above is not read (nor the text kept).
        let mut out = LineMasker::new(&obligations);
        out.push(b"- name: DB_PASSWORD\n");
        for _ in 0..CONTEXT_LINES {
            out.push(b"  x: 1\n");
        }
        assert!(out.context.len() <= MAX_CONTEXT && !out.context.starts_with(b"- name"));
    }
}
