//! Verification of a stored log: its records, read back in order, against the chain they must form
//! and the signed checkpoints they must match. It stops at the first break and names the record.

use crate::chain::{Hash, link};
use crate::checkpoint::{Checkpoint, PublicKey};
use serde::Deserialize;
use std::fmt;

/// One record as the store holds it.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub seq: u64,
    pub encoded: String,
    pub hash: Hash,
}

/// Where and how the log stops being what was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    /// The first record that is not as written (or is missing).
    pub seq: u64,
    pub what: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.seq, self.what)
    }
}

/// What a verification that found no break covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The first and last records checked (`last` < `first` when there were none).
    pub first: u64,
    pub last: u64,
    /// Checkpoints whose signature and place in the chain were checked.
    pub checkpoints: usize,
    pub last_checkpoint: Option<u64>,
}

impl Verified {
    /// Records after the last checkpoint: they chain, but no signature covers them yet.
    pub fn unsigned(&self) -> u64 {
        self.last.saturating_sub(self.last_checkpoint.unwrap_or(0).max(self.first.saturating_sub(1)))
    }
}

/// The fields every record starts with.
#[derive(Deserialize)]
struct Head {
    v: u32,
    instance: String,
    seq: u64,
}

/// `key K` or `keys K1, K2` (by id), for messages.
pub fn describe_keys(keys: &[PublicKey]) -> String {
    let ids: Vec<String> = keys.iter().map(PublicKey::key_id).collect();
    format!("key{} {}", if ids.len() == 1 { "" } else { "s" }, ids.join(", "))
}

/// Checks records fed in sequence order against the chain and the checkpoints.
pub struct Verifier {
    instance: String,
    checkpoints: std::vec::IntoIter<Checkpoint>,
    next_checkpoint: Option<Checkpoint>,
    checked_checkpoints: usize,
    last_checkpoint: Option<u64>,
    first: u64,
    expected: u64,
    head: Hash,
}

impl Verifier {
    /// Verification of `instance`'s log from record `from` (1 for the whole log), whose
    /// predecessor hashed to `head_before` (`GENESIS` from record 1). Every checkpoint's signature
    /// (by the one of `keys` it names: a rotated key's checkpoints by the key of their time) and
    /// its link to the one before are checked here, before any record.
    pub fn new(
        instance: &str,
        keys: &[PublicKey],
        mut checkpoints: Vec<Checkpoint>,
        from: u64,
        head_before: Hash,
    ) -> Result<Verifier, Break> {
        checkpoints.sort_by_key(|c| c.seq);
        let mut previous: Option<u64> = None;
        for checkpoint in &checkpoints {
            let at = checkpoint.seq;
            let Some(key) = keys.iter().find(|k| k.key_id() == checkpoint.key_id) else {
                let what = format!(
                    "its checkpoint was signed by key {}, not by the verifying {}",
                    checkpoint.key_id,
                    describe_keys(keys)
                );
                return Err(Break { seq: at, what });
            };
            if !key.verifies(instance, checkpoint) {
                let what = "its checkpoint's signature does not match what the checkpoint states: the checkpoint \
                            was altered or forged";
                return Err(Break { seq: at, what: what.into() });
            }
            let expected_previous = previous.unwrap_or(0);
            // Verifying from the middle: the first checkpoint's predecessor may lie before `from`.
            let checked = previous.is_some() || from <= 1;
            if checked && checkpoint.previous != expected_previous {
                let what = match checkpoint.previous > expected_previous {
                    true => format!(
                        "its checkpoint follows a checkpoint at record {}, which is missing: a checkpoint was deleted",
                        checkpoint.previous
                    ),
                    false => format!(
                        "its checkpoint follows the one at record {}, not the one at record {expected_previous}: \
                         a checkpoint was inserted",
                        checkpoint.previous
                    ),
                };
                return Err(Break { seq: at, what });
            }
            previous = Some(at);
        }
        let mut checkpoints = checkpoints.into_iter();
        let mut next_checkpoint = checkpoints.next();
        while next_checkpoint.as_ref().is_some_and(|c| c.seq < from) {
            next_checkpoint = checkpoints.next();
        }
        Ok(Verifier {
            instance: instance.to_string(),
            checkpoints,
            next_checkpoint,
            checked_checkpoints: 0,
            last_checkpoint: None,
            first: from.max(1),
            expected: from.max(1),
            head: head_before,
        })
    }

    /// The next record of the log.
    pub fn feed(&mut self, record: &StoredRecord) -> Result<(), Break> {
        let seq = self.expected;
        if record.seq != seq {
            let what = match record.seq > seq {
                true => format!("missing: the log goes on at record {}, so records were deleted", record.seq),
                false => format!("found again after record {}: the log is out of order", seq - 1),
            };
            return Err(Break { seq, what });
        }
        let head: Head = serde_json::from_str(&record.encoded)
            .map_err(|e| Break { seq, what: format!("its content is not a record ({e}): it was modified") })?;
        if head.v != crate::FORMAT_VERSION {
            return Err(Break { seq, what: format!("written in format {}, which this sluice cannot verify", head.v) });
        }
        if head.instance != self.instance {
            let what = format!("it belongs to instance {:?}, not {:?}: it was copied in", head.instance, self.instance);
            return Err(Break { seq, what });
        }
        if head.seq != seq {
            let what = format!("it holds the content of record {}: records were moved or reordered", head.seq);
            return Err(Break { seq, what });
        }
        let computed = link(&self.head, record.encoded.as_bytes());
        if computed != record.hash {
            let what = "its content and the record before it do not hash to its stored hash: this record was \
                        modified, or inserted, or the one before it was rewritten along with its hash";
            return Err(Break { seq, what: what.into() });
        }
        self.head = computed;
        self.expected += 1;
        if let Some(checkpoint) = self.next_checkpoint.take_if(|c| c.seq == seq) {
            if checkpoint.hash != computed {
                let what = format!(
                    "a checkpoint signed the log up to here as {}, but it hashes to {}: the log up to this record \
                     was rewritten",
                    hex::encode(checkpoint.hash),
                    hex::encode(computed)
                );
                return Err(Break { seq, what });
            }
            self.checked_checkpoints += 1;
            self.last_checkpoint = Some(seq);
            self.next_checkpoint = self.checkpoints.next();
        }
        Ok(())
    }

    /// The end of the log: a checkpoint signed beyond it means its tail was cut off.
    pub fn finish(self) -> Result<Verified, Break> {
        let last = self.expected - 1;
        if let Some(checkpoint) = self.next_checkpoint {
            let what = format!(
                "missing: the log ends at record {last}, but a checkpoint was signed at record {}, so records \
                 {}..={} were deleted",
                checkpoint.seq,
                last + 1,
                checkpoint.seq
            );
            return Err(Break { seq: last + 1, what });
        }
        Ok(Verified {
            first: self.first,
            last,
            checkpoints: self.checked_checkpoints,
            last_checkpoint: self.last_checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Chain, GENESIS};
    use crate::checkpoint::CheckpointSigner;
    use sluice_core::{AuditEvent, AuditRecord, Principal};

    struct Log {
        records: Vec<StoredRecord>,
        checkpoints: Vec<Checkpoint>,
        signer: CheckpointSigner,
    }

    /// Ten records with checkpoints signed at records 4 and 8.
    fn log() -> Log {
        let signer = CheckpointSigner::from_pkcs8(&CheckpointSigner::generate().unwrap()).unwrap();
        let mut chain = Chain::resume("i_a", 0, GENESIS);
        let (mut records, mut checkpoints) = (Vec::new(), Vec::new());
        for n in 1..=10 {
            let record = AuditRecord {
                at_us: n,
                principal: Principal::new("agent", None),
                session: None,
                event: AuditEvent::SessionEnded { reason: format!("reason {n}") },
            };
            let linked = chain.append(&record);
            records.push(StoredRecord { seq: linked.seq, encoded: linked.encoded, hash: linked.hash });
            if n % 4 == 0 {
                let previous = checkpoints.last().map_or(0, |c: &Checkpoint| c.seq);
                checkpoints.push(signer.sign("i_a", linked.seq, linked.hash, previous, n));
            }
        }
        Log { records, checkpoints, signer }
    }

    fn verify(log: &Log) -> Result<Verified, Break> {
        let key = log.signer.public_key();
        let mut verifier = Verifier::new("i_a", std::slice::from_ref(key), log.checkpoints.clone(), 1, GENESIS)?;
        for record in &log.records {
            verifier.feed(record)?;
        }
        verifier.finish()
    }

    fn rechain(records: &mut [StoredRecord]) {
        let mut head = GENESIS;
        for record in records {
            record.hash = link(&head, record.encoded.as_bytes());
            head = record.hash;
        }
    }

    #[test]
    fn an_untouched_log_verifies_with_its_checkpoints() {
        let verified = verify(&log()).unwrap();
        assert_eq!(verified, Verified { first: 1, last: 10, checkpoints: 2, last_checkpoint: Some(8) });
        assert_eq!(verified.unsigned(), 2);
    }

    #[test]
    fn a_modified_record_is_named() {
        let mut log = log();
        log.records[4].encoded = log.records[4].encoded.replace("reason 5", "reason 6");
        assert_eq!(verify(&log).unwrap_err().seq, 5);
    }

    #[test]
    fn a_deleted_record_is_named() {
        let mut log = log();
        log.records.remove(2);
        let broken = verify(&log).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.what.contains("deleted"), "{broken}");
    }

    #[test]
    fn swapped_records_are_named() {
        let mut log = log();
        log.records.swap(5, 6);
        let (a, b) = (log.records[5].seq, log.records[6].seq);
        log.records[5].seq = b;
        log.records[6].seq = a;
        let broken = verify(&log).unwrap_err();
        assert_eq!(broken.seq, 6);
        assert!(broken.what.contains("reordered"), "{broken}");
    }

    #[test]
    fn a_record_inserted_with_its_hash_breaks_the_chain_at_the_next_one() {
        let mut log = log();
        // Renumbered from record 3 on, with a record that links to record 2 put in its place.
        let mut forged = log.records[2].clone();
        forged.encoded = forged.encoded.replace("reason 3", "forged");
        forged.hash = link(&log.records[1].hash, forged.encoded.as_bytes());
        for record in &mut log.records[2..] {
            record.seq += 1;
        }
        log.records.insert(2, forged);
        let broken = verify(&log).unwrap_err();
        assert_eq!(broken.seq, 4);
    }

    #[test]
    fn a_log_rewritten_wholesale_with_its_hashes_recomputed_fails_at_the_first_checkpoint() {
        let mut log = log();
        log.records[1].encoded = log.records[1].encoded.replace("reason 2", "nothing happened");
        rechain(&mut log.records);
        let broken = verify(&log).unwrap_err();
        assert_eq!(broken.seq, 4);
        assert!(broken.what.contains("rewritten"), "{broken}");
    }

    #[test]
    fn a_tail_cut_after_a_checkpoint_is_found() {
        let mut log = log();
        log.records.truncate(6);
        let broken = verify(&log).unwrap_err();
        assert_eq!(broken.seq, 7);
        assert!(broken.what.contains("7..=8"), "{broken}");
        // Cut after the last checkpoint: the chain holds; what is unsigned is said.
        let mut log = self::log();
        log.records.truncate(9);
        assert_eq!(verify(&log).unwrap().unsigned(), 1);
    }

    #[test]
    fn deleted_forged_or_foreign_checkpoints_are_found() {
        let mut log = log();
        log.checkpoints.remove(0);
        assert!(verify(&log).unwrap_err().what.contains("checkpoint was deleted"));
        let mut log = self::log();
        log.checkpoints[1].hash = [0; 32];
        assert!(verify(&log).unwrap_err().what.contains("altered or forged"));
        let mut log = self::log();
        let stranger = CheckpointSigner::from_pkcs8(&CheckpointSigner::generate().unwrap()).unwrap();
        log.checkpoints[1] = stranger.sign("i_a", 8, log.records[7].hash, 4, 8);
        assert!(verify(&log).unwrap_err().what.contains("not by the verifying key"));
        // A rotated key: its checkpoints verify with the keys of their time.
        let keys = [log.signer.public_key().clone(), stranger.public_key().clone()];
        let mut verifier = Verifier::new("i_a", &keys, log.checkpoints.clone(), 1, GENESIS).unwrap();
        for record in &log.records {
            verifier.feed(record).unwrap();
        }
        assert_eq!(verifier.finish().unwrap().checkpoints, log.checkpoints.len());
    }

    #[test]
    fn verification_from_the_middle_trusts_the_record_before_it() {
        let log = log();
        let key = log.signer.public_key();
        let mut verifier =
            Verifier::new("i_a", std::slice::from_ref(key), log.checkpoints.clone(), 6, log.records[4].hash).unwrap();
        for record in &log.records[5..] {
            verifier.feed(record).unwrap();
        }
        assert_eq!(
            verifier.finish().unwrap(),
            Verified { first: 6, last: 10, checkpoints: 1, last_checkpoint: Some(8) }
        );
    }
}
