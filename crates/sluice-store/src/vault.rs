//! Sealing held credentials under the master key: XChaCha20-Poly1305 with a random nonce per seal
//! and the connection name as associated data, so a sealed password cannot be moved to another
//! connection's row.

use crate::StoreError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;
use std::path::Path;

pub struct MasterKey {
    cipher: XChaCha20Poly1305,
    /// The key itself, only ever used to derive keys for other purposes.
    raw: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_hex(text: &str) -> Result<Self, StoreError> {
        let bytes =
            hex::decode(text.trim()).map_err(|_| StoreError::Vault("the master key must be 64 hex digits".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::Vault("the master key must be 64 hex digits (32 bytes)".into()))?;
        Ok(MasterKey { cipher: XChaCha20Poly1305::new(&key.into()), raw: key })
    }

    /// A key for another purpose (HMAC-SHA-256 of the purpose under the master key), so that no
    /// second secret has to be kept: e.g. the key of masking tokens.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.raw).expect("HMAC takes any key length");
        mac.update(b"sluice/");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Reads the key from `SLUICE_MASTER_KEY`, else from `path`; creates `path` (mode 0600) with a
    /// fresh key when `create` is set and neither exists.
    pub fn load(path: &Path, create: bool) -> Result<Self, StoreError> {
        if let Ok(text) = std::env::var("SLUICE_MASTER_KEY") {
            return Self::from_hex(&text);
        }
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key: [u8; 32] = rand::rng().random();
                if let Some(dir) = path.parent() {
                    crate::private::ensure_dir(dir)?;
                }
                write_private(path, hex::encode(key).as_bytes())?;
                Self::from_hex(&hex::encode(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Vault(format!(
                "no master key: set SLUICE_MASTER_KEY or create {} (sluice serve creates it on first start)",
                path.display()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let nonce_bytes: [u8; 24] = rand::rng().random();
        let nonce = XNonce::from(nonce_bytes);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: context.as_bytes() })
            .map_err(|_| StoreError::Vault("sealing failed".into()))?;
        Ok((nonce_bytes.to_vec(), sealed))
    }

    pub fn open(&self, context: &str, nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce: [u8; 24] =
            nonce.try_into().map_err(|_| StoreError::Vault("stored credential is corrupt (nonce)".into()))?;
        self.cipher.decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: context.as_bytes() }).map_err(|_| {
            StoreError::Vault(format!(
                "stored credential for {context:?} cannot be opened: wrong master key or tampered row"
            ))
        })
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_hex(&"11".repeat(32)).unwrap()
    }

    #[test]
    fn seal_and_open_round_trip() {
        let (nonce, sealed) = key().seal("shop", b"pw").unwrap();
        assert!(!sealed.windows(2).any(|w| w == b"pw"));
        assert_eq!(key().open("shop", &nonce, &sealed).unwrap(), b"pw");
    }

    #[test]
    fn sealed_value_is_bound_to_its_connection_and_key() {
        let (nonce, sealed) = key().seal("shop", b"pw").unwrap();
        assert!(key().open("billing", &nonce, &sealed).is_err());
        let other = MasterKey::from_hex(&"22".repeat(32)).unwrap();
        assert!(other.open("shop", &nonce, &sealed).is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_master_key() {
        assert_eq!(key().derive("mask-token"), key().derive("mask-token"));
        assert_ne!(key().derive("mask-token"), key().derive("other"));
        assert_ne!(MasterKey::from_hex(&"22".repeat(32)).unwrap().derive("mask-token"), key().derive("mask-token"));
    }

    #[test]
    fn bad_key_text_is_an_error() {
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
