//! The canonical encoding of a record and the chain over them: `h_n = SHA-256(h_{n-1} ‖ e_n)`,
//! where `e_n` is record n's canonical bytes and `h_0` is 32 zero bytes.

use sha2::{Digest, Sha256};
use sluice_core::AuditRecord;

pub type Hash = [u8; 32];

/// What the first record of a chain links to.
pub const GENESIS: Hash = [0; 32];

/// Record `seq` of `instance` in its canonical form: compact JSON (no whitespace) with the format
/// version, the instance and the sequence number, then the envelope, the event under a key of its
/// own (so that no event field can ever shadow an envelope field); fields in the order
/// docs/audit.md lists; strings escaped only where JSON requires it (`"`, `\`, control
/// characters), exactly as `serde_json` writes the same values. The bytes are stored as they are,
/// so verification never encodes again.
pub fn encode(instance: &str, seq: u64, record: &AuditRecord) -> String {
    crate::encode::record(instance, seq, record)
}

/// The hash that commits to `encoded` and, through `prev`, to everything before it.
pub fn link(prev: &Hash, encoded: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(encoded);
    hasher.finalize().into()
}

/// The head of one instance's chain: the next sequence number and the hash to link it to.
#[derive(Clone, Debug)]
pub struct Chain {
    instance: String,
    next_seq: u64,
    head: Hash,
}

/// A record appended to the chain.
#[derive(Clone, Debug)]
pub struct Linked {
    pub seq: u64,
    pub encoded: String,
    pub hash: Hash,
}

impl Chain {
    /// The chain after its record `last_seq` (0 and `GENESIS` for an empty log), which hashed to
    /// `head`.
    pub fn resume(instance: impl Into<String>, last_seq: u64, head: Hash) -> Chain {
        Chain { instance: instance.into(), next_seq: last_seq + 1, head }
    }

    pub fn append(&mut self, record: &AuditRecord) -> Linked {
        let seq = self.next_seq;
        let encoded = encode(&self.instance, seq, record);
        let hash = link(&self.head, encoded.as_bytes());
        self.next_seq += 1;
        self.head = hash;
        Linked { seq, encoded, hash }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The last record's sequence number (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn head(&self) -> Hash {
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{AuditEvent, Principal};

    fn ended(reason: &str) -> AuditRecord {
        AuditRecord {
            at_us: 1_700_000_000_000_000,
            principal: Principal::new("agent", Some("t1".into())),
            session: Some("s_1".into()),
            event: AuditEvent::SessionEnded { reason: reason.into() },
        }
    }

    #[test]
    fn a_record_is_encoded_as_documented_with_version_instance_and_sequence_first() {
        assert_eq!(
            encode("i_a", 7, &ended("client terminated")),
            r#"{"v":1,"instance":"i_a","seq":7,"at_us":1700000000000000,"principal":{"name":"agent","credential_id":"t1"},"session":"s_1","event":{"kind":"session_ended","reason":"client terminated"}}"#
        );
    }

    #[test]
    fn each_hash_commits_to_the_record_and_every_record_before_it() {
        let mut chain = Chain::resume("i_a", 0, GENESIS);
        let first = chain.append(&ended("one"));
        let second = chain.append(&ended("two"));
        assert_eq!((first.seq, second.seq, chain.last_seq()), (1, 2, 2));
        assert_eq!(first.hash, link(&GENESIS, first.encoded.as_bytes()));
        assert_eq!(second.hash, link(&first.hash, second.encoded.as_bytes()));
        // The same record after a different predecessor hashes differently.
        let mut other = Chain::resume("i_a", 1, link(&GENESIS, b"something else"));
        assert_ne!(other.append(&ended("two")).hash, second.hash);
        // SHA-256 of 32 zero bytes followed by "x", as any SHA-256 tool computes it (Python's
        // hashlib.sha256(bytes(32) + b"x")).
        assert_eq!(
            hex::encode(link(&GENESIS, b"x")),
            "fdded6faced1af47fdaaac589602f58e0e040a882627806c42ddcc38da604cf0"
        );
    }
}
