//! The credential sluice holds for a target, read where the configuration says it is: an
//! environment variable, a file, or sealed in the state store. Never logged, never shown.

use sluice_config::{ConnectionConfig, PasswordSource};
use sluice_core::Secret;
use sluice_store::Store;
use sluice_store::vault::MasterKey;

/// The held credential of connection `name`; the error says, for an operator, why there is none.
pub(crate) async fn resolve(
    store: &Store,
    key: &MasterKey,
    name: &str,
    conn: &ConnectionConfig,
) -> Result<Option<Secret>, String> {
    match conn.password_source()? {
        PasswordSource::None => Ok(None),
        PasswordSource::Env(var) => std::env::var(&var)
            .map(|v| Some(Secret::new(v)))
            .map_err(|_| format!("its password variable {var} is not set in sluice's environment")),
        PasswordSource::File(path) => std::fs::read_to_string(&path)
            .map(|v| Some(Secret::new(v.trim_end_matches(['\n', '\r']))))
            .map_err(|e| format!("its password file {} cannot be read: {e}", path.display())),
        PasswordSource::Stored => {
            let sealed = store.credential(name).await.map_err(|e| e.to_string())?;
            let (nonce, sealed) =
                sealed.ok_or_else(|| "no password is stored for it (run `sluice credential set`)".to_string())?;
            let clear = key.open(name, &nonce, &sealed).map_err(|e| e.to_string())?;
            String::from_utf8(clear)
                .map(|v| Some(Secret::new(v)))
                .map_err(|_| "its stored password is not UTF-8".into())
        }
    }
}
