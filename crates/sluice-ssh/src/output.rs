//! A command's output masked line by line as it streams: what could be the start of a secret
//! split between two packets is held until its line ends (or the stream does), so that the
//! detectors always see whole lines. A line longer than the cap is masked and passed on in parts.

use sluice_gate::Obligations;
use sluice_mask::SessionMasking;

/// The longest part of a line held back.
const MAX_HELD: usize = 64 * 1024;

pub struct LineMasker {
    masking: Option<SessionMasking>,
    held: Vec<u8>,
}

impl LineMasker {
    pub fn new(obligations: &Obligations) -> LineMasker {
        LineMasker { masking: obligations.masking.clone(), held: Vec::new() }
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
        mask(masking, &ready)
    }

    /// Whether part of a line is held, waiting for its end.
    pub fn holds(&self) -> bool {
        !self.held.is_empty()
    }

    /// What is left when the stream ends (or pauses), masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        match &self.masking {
            Some(masking) => mask(masking, &rest),
            None => rest,
        }
    }
}

fn memchr_last_newline(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|&b| b == b'\n')
}

fn mask(masking: &SessionMasking, text: &[u8]) -> Vec<u8> {
    let content = masking.masking().content();
    content.mask_line(text, &mut Vec::new()).unwrap_or_else(|| text.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;
    use sluice_mask::{MaskingSpec, TokenKey};
    use std::sync::Arc;

    #[test]
    fn a_secret_split_between_packets_is_masked_whole() {
        let masking = Arc::new(sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([3; 32])).unwrap());
        let who = Identity { name: "a".into(), groups: vec![], credential_id: "t".into() };
        let obligations = Obligations { masking: Some(masking.for_session(&who, "web1")), read_only: false };
        let mut out = LineMasker::new(&obligations);
        let mut seen = Vec::new();
        for piece in ["user: ann@exa", "mple.com\ncard 4111 1111 ", "1111 1111\nlast ", "line dave@example.com"] {
            seen.extend(out.push(piece.as_bytes()));
        }
        seen.extend(out.finish());
        let seen = String::from_utf8(seen).unwrap();
        assert_eq!(seen, "user: [redacted:email]\ncard [redacted:credit-card]\nlast line [redacted:email]");
    }
}
