//! State at rest readable by its owner only: the state directory is made 0700 and its files 0600
//! (review texts and recorded statements can hold customer data; the master key seals credentials),
//! and what other users could read is found so that `serve` can refuse to start, as ssh does with
//! a private key anyone can read.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` and its missing parents with mode 0700 (an existing directory is left as it is).
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates `file` empty with mode 0600 when it is missing. SQLite gives a database's journal, WAL
/// and shared-memory files the mode of the database file, so they are private too.
pub fn ensure_file(file: &Path) -> io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The directory itself and the files directly in it that users other than the owner may read,
/// write or (for the directory) enter, with their modes.
pub fn exposed(dir: &Path) -> io::Result<Vec<(PathBuf, u32)>> {
    let mut found = Vec::new();
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        found.push((dir.to_path_buf(), mode));
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            found.push((entry.path(), mode));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_sluice_creates_is_private_and_what_others_can_read_is_found() {
        let base = std::env::temp_dir().join(sluice_core::ids::new_id("sluice-private-test-"));
        let dir = base.join("state");
        ensure_dir(&dir).unwrap();
        ensure_file(&dir.join("sluice.db")).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.join("sluice.db")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(exposed(&dir).unwrap().is_empty());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("other"), b"x").unwrap();
        std::fs::set_permissions(dir.join("other"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let found: Vec<u32> = exposed(&dir).unwrap().into_iter().map(|(_, mode)| mode).collect();
        assert_eq!(found, vec![0o755, 0o644]);
        std::fs::remove_dir_all(base).unwrap();
    }
}
