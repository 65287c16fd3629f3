//! Service tokens: `slu_<id>_<secret>`. The id is public (it names the token in listings and audit
//! records); the secret has 256 bits of entropy, so a single SHA-256 is a sufficient verifier and the
//! store keeps only that digest.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "slu_";

/// A freshly minted token: the clear text is shown once, the digest is stored.
pub struct MintedToken {
    pub id: String,
    pub clear: String,
    pub digest: String,
}

pub fn mint() -> MintedToken {
    let mut rng = rand::rng();
    let id_bytes: [u8; 6] = rng.random();
    let secret_bytes: [u8; 32] = rng.random();
    let id = hex::encode(id_bytes);
    let secret = hex::encode(secret_bytes);
    MintedToken { clear: format!("{PREFIX}{id}_{secret}"), digest: digest(&secret), id }
}

/// Splits a presented token into (id, secret); `None` when it is not shaped like one of ours.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexish = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(id, 12) && hexish(secret, 64)).then_some((id, secret))
}

/// How a public key registered to an identity is kept in place of a token's digest: its
/// SHA-256 fingerprint (`SHA256:…`), marked so that no token can ever verify against it.
pub fn key_digest(fingerprint: &str) -> String {
    format!("ssh-key {fingerprint}")
}

/// Whether a stored digest is a registered public key's.
pub fn is_key_digest(stored_digest: &str) -> bool {
    stored_digest.starts_with("ssh-key ")
}

/// A fresh id for a credential other than a token (a registered key): shaped like a token's.
pub fn new_id() -> String {
    let id_bytes: [u8; 6] = rand::rng().random();
    hex::encode(id_bytes)
}

pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented secret with a stored digest in constant time.
pub fn verify(secret: &str, stored_digest: &str) -> bool {
    digest(secret).as_bytes().ct_eq(stored_digest.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_token_parses_and_verifies() {
        let t = mint();
        let (id, secret) = parse(&t.clear).expect("shape");
        assert_eq!(id, t.id);
        assert!(verify(secret, &t.digest));
        assert!(!verify("00", &t.digest));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in ["", "slu_", "slu_abc_def", "xyz_000000000000_00", "slu_zzzzzzzzzzzz_"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
