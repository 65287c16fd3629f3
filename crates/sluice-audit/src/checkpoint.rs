//! Signed checkpoints: now and then the recorder signs, with the instance's Ed25519 key, the
//! sequence number and hash the chain has reached, and the checkpoint before it. Whoever rewrites
//! the log wholesale, recomputing every hash, still cannot sign, so the rewrite shows at the first
//! checkpoint it covers; one who deletes a checkpoint breaks the link of the next.

use crate::chain::Hash;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A signed statement that record `seq` of `instance` hashed to `hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: Hash,
    /// The sequence number of the checkpoint before this one (0 for the first).
    pub previous: u64,
    pub at_us: i64,
    /// Which key signed it: the first 16 hex digits of the SHA-256 of its public key.
    pub key_id: String,
    pub signature: Vec<u8>,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("the audit signing key cannot be read: {0}")]
    BadKey(String),
    #[error("an audit signing key could not be generated")]
    Generate,
    #[error("an audit verifying key must be 64 hex digits (the output of `sluice audit public-key`)")]
    BadPublicKey,
}

/// The bytes a checkpoint's signature covers.
fn message(instance: &str, seq: u64, hash: &Hash, previous: u64, at_us: i64) -> Vec<u8> {
    format!(
        "sluice-audit-checkpoint/1\ninstance={instance}\nseq={seq}\nhash={}\nprevious={previous}\nat_us={at_us}\n",
        hex::encode(hash)
    )
    .into_bytes()
}

/// A signed statement that retention removed the records of `instance` up to `seq`, the last of
/// them hashing to `hash`: where the chain of what remains starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Hash,
    pub at_us: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// The bytes an anchor's signature covers.
fn anchor_message(instance: &str, seq: u64, hash: &Hash, at_us: i64) -> Vec<u8> {
    format!("sluice-audit-anchor/1\ninstance={instance}\nseq={seq}\nhash={}\nat_us={at_us}\n", hex::encode(hash))
        .into_bytes()
}

/// An Ed25519 public key that checkpoints are verified with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<PublicKey, CheckpointError> {
        let bytes = hex::decode(text.trim()).map_err(|_| CheckpointError::BadPublicKey)?;
        Ok(PublicKey(bytes.try_into().map_err(|_| CheckpointError::BadPublicKey)?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    /// Whether `checkpoint` is this key's signature over what it states about `instance`.
    pub fn verifies(&self, instance: &str, checkpoint: &Checkpoint) -> bool {
        let Checkpoint { seq, hash, previous, at_us, signature, .. } = checkpoint;
        let signed = message(instance, *seq, hash, *previous, *at_us);
        UnparsedPublicKey::new(&ED25519, self.0).verify(&signed, signature).is_ok()
    }

    /// Whether `anchor` is this key's signature over what it states about `instance`.
    pub fn verifies_anchor(&self, instance: &str, anchor: &Anchor) -> bool {
        let signed = anchor_message(instance, anchor.seq, &anchor.hash, anchor.at_us);
        UnparsedPublicKey::new(&ED25519, self.0).verify(&signed, &anchor.signature).is_ok()
    }
}

/// The instance's signing key.
pub struct CheckpointSigner {
    key: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner").field("key_id", &self.public.key_id()).finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A key from its PKCS#8 document (as `generate` makes and the key file holds).
    pub fn from_pkcs8(document: &[u8]) -> Result<CheckpointSigner, CheckpointError> {
        let key = Ed25519KeyPair::from_pkcs8(document).map_err(|e| CheckpointError::BadKey(e.to_string()))?;
        let public = PublicKey(key.public_key().as_ref().try_into().map_err(|_| CheckpointError::Generate)?);
        Ok(CheckpointSigner { key, public })
    }

    /// A new key, as the PKCS#8 document to keep.
    pub fn generate() -> Result<Vec<u8>, CheckpointError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| CheckpointError::Generate)?;
        Ok(document.as_ref().to_vec())
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, instance: &str, seq: u64, hash: Hash, previous: u64, at_us: i64) -> Checkpoint {
        let signature = self.key.sign(&message(instance, seq, &hash, previous, at_us)).as_ref().to_vec();
        Checkpoint { seq, hash, previous, at_us, key_id: self.public.key_id(), signature }
    }

    pub fn sign_anchor(&self, instance: &str, seq: u64, hash: Hash, at_us: i64) -> Anchor {
        let signature = self.key.sign(&anchor_message(instance, seq, &hash, at_us)).as_ref().to_vec();
        Anchor { seq, hash, at_us, key_id: self.public.key_id(), signature }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_only_as_signed() {
        let signer = CheckpointSigner::from_pkcs8(&CheckpointSigner::generate().unwrap()).unwrap();
        let checkpoint = signer.sign("i_a", 10, [7; 32], 0, 5);
        let key = PublicKey::from_hex(&signer.public_key().to_hex()).unwrap();
        assert!(key.verifies("i_a", &checkpoint));
        assert_eq!(checkpoint.key_id, key.key_id());
        assert!(!key.verifies("i_b", &checkpoint), "another instance");
        for altered in [
            Checkpoint { seq: 11, ..checkpoint.clone() },
            Checkpoint { hash: [8; 32], ..checkpoint.clone() },
            Checkpoint { previous: 1, ..checkpoint.clone() },
            Checkpoint { at_us: 6, ..checkpoint.clone() },
        ] {
            assert!(!key.verifies("i_a", &altered), "{altered:?}");
        }
        let other = CheckpointSigner::from_pkcs8(&CheckpointSigner::generate().unwrap()).unwrap();
        assert!(!other.public_key().verifies("i_a", &checkpoint));
        assert!(CheckpointSigner::from_pkcs8(b"not a key").is_err());
        let anchor = signer.sign_anchor("i_a", 10, [7; 32], 5);
        assert!(key.verifies_anchor("i_a", &anchor));
        assert!(!key.verifies_anchor("i_b", &anchor));
        assert!(!key.verifies_anchor("i_a", &Anchor { seq: 9, ..anchor.clone() }));
        assert!(!key.verifies_anchor("i_a", &Anchor { hash: [1; 32], ..anchor.clone() }));
        assert!(
            !key.verifies(
                "i_a",
                &Checkpoint {
                    seq: 10,
                    hash: [7; 32],
                    previous: 0,
                    at_us: 5,
                    key_id: anchor.key_id.clone(),
                    signature: anchor.signature.clone()
                }
            ),
            "an anchor's signature is no checkpoint's"
        );
        assert!(PublicKey::from_hex("abcd").is_err());
    }
}
