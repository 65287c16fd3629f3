//! The audit log's integrity, independent of where it is stored: each record's canonical bytes,
//! the hash chain that commits every record to the one before it, checkpoints of the chain signed
//! with Ed25519, and the verification that finds the first record that was modified, deleted,
//! inserted or reordered. The store keeps the bytes and hashes this crate makes (docs/audit.md).

pub mod chain;
pub mod checkpoint;
mod encode;
pub mod verify;

pub use chain::{Chain, GENESIS, Hash, Linked, encode, link};
pub use checkpoint::{Anchor, Checkpoint, CheckpointError, CheckpointSigner, PublicKey};
pub use verify::{Break, StoredRecord, Verified, Verifier, describe_keys};

/// The version of the canonical encoding, written into every record (`"v"`).
pub const FORMAT_VERSION: u32 = 1;
