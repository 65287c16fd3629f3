//! The credential sluice holds for a target, read where the configuration says it is: an
//! environment variable, a file, or sealed in the state store. Never logged, never shown.

use sluice_config::{ConnectionConfig, PasswordSource};
use sluice_core::Secret;
use sluice_store::CredentialVault;
use sluice_store::vault::MasterKey;

/// Why a target has no held credential now, for an operator.
pub(crate) enum CredentialError {
    /// The vault could not be read: a store failure, not a misconfiguration.
    Store(String),
    /// The configuration names a credential that is not there (or cannot be opened).
    Missing(String),
}

/// The held credential of connection `name`.
pub(crate) async fn resolve(
    vault: &dyn CredentialVault,
    key: &MasterKey,
    name: &str,
    conn: &ConnectionConfig,
) -> Result<Option<Secret>, CredentialError> {
    use CredentialError::Missing;
    match conn.password_source().map_err(Missing)? {
        PasswordSource::None => Ok(None),
        PasswordSource::Env(var) => std::env::var(&var)
            .map(|v| Some(Secret::new(v)))
            .map_err(|_| Missing(format!("its password variable {var} is not set in sluice's environment"))),
        PasswordSource::File(path) => std::fs::read_to_string(&path)
            .map(|v| Some(Secret::new(v.trim_end_matches(['\n', '\r']))))
            .map_err(|e| Missing(format!("its password file {} cannot be read: {e}", path.display()))),
        PasswordSource::Stored => {
            let sealed = vault.credential(name).await.map_err(|e| CredentialError::Store(e.to_string()))?;
            let (nonce, sealed) =
                sealed.ok_or_else(|| Missing("no password is stored for it (run `sluice credential set`)".into()))?;
            let clear = key.open(name, &nonce, &sealed).map_err(|e| Missing(e.to_string()))?;
            String::from_utf8(clear)
                .map(|v| Some(Secret::new(v)))
                .map_err(|_| Missing("its stored password is not UTF-8".into()))
        }
    }
}
