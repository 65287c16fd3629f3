//! Running instances: `serve` leaves a small file naming its configuration and API address, so that
//! the CLI finds a running sluice without `--config` when there is exactly one.
//!
//! The files live in `$XDG_STATE_HOME/sluice/instances` (default `~/.local/state/sluice/instances`),
//! one per process, named by its pid. A file whose process is gone (or whose pid now belongs to
//! another process) is stale and ignored; `serve` removes its own when it stops.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Instance {
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22): tells a live
    /// instance from an unrelated process that reused its pid.
    pub started: u64,
    /// The configuration file, absolute.
    pub config: PathBuf,
    /// The REST API's real address (`http://host:port`), when the API is on.
    pub api: Option<String>,
    pub postgres: Option<String>,
}

fn directory() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(state) => PathBuf::from(state),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".local/state"),
    };
    Some(base.join("sluice").join("instances"))
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// This process's entry; the file goes away when it is dropped.
pub struct Registration(PathBuf);

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Registers this process as a running instance of `config`.
pub fn register(config: &Path, api: Option<String>, postgres: Option<String>) -> Result<Registration> {
    let dir = directory().context("neither XDG_STATE_HOME nor HOME is set")?;
    sluice_store::private::ensure_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pid = std::process::id();
    let instance = Instance {
        pid,
        started: start_time(pid).unwrap_or_default(),
        config: std::path::absolute(config)?,
        api,
        postgres,
    };
    let path = dir.join(format!("{pid}.json"));
    sluice_store::vault::write_private(&path, &serde_json::to_vec_pretty(&instance)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Registration(path))
}

/// The instances running now, oldest pid first.
pub fn running() -> Vec<Instance> {
    let Some(dir) = directory() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut live: Vec<Instance> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| serde_json::from_slice::<Instance>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|i| start_time(i.pid).is_some_and(|t| t == i.started))
        .collect();
    live.sort_by_key(|i| i.pid);
    live
}

/// The running instance of `config`, if there is one.
pub fn of_config(config: &Path) -> Option<Instance> {
    let wanted = std::path::absolute(config).ok()?;
    let wanted = wanted.canonicalize().unwrap_or(wanted);
    running().into_iter().find(|i| i.config.canonicalize().unwrap_or_else(|_| i.config.clone()) == wanted)
}

/// The configuration file a command works on: `--config`/`SLUICE_CONFIG` when given, else
/// `./sluice.toml` when it exists, else the one running instance's (for every command but `serve`).
pub fn resolve_config(given: Option<PathBuf>, may_discover: bool) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let local = PathBuf::from("sluice.toml");
    if local.exists() || !may_discover {
        return Ok(local);
    }
    match running().as_slice() {
        [] => bail!("no sluice.toml here and no running sluice found\nhint: pass --config FILE (or set SLUICE_CONFIG)"),
        [one] => Ok(one.config.clone()),
        several => {
            let names: Vec<String> =
                several.iter().map(|i| format!("{} (pid {})", i.config.display(), i.pid)).collect();
            bail!(
                "no sluice.toml here and {} sluice instances are running: {}\nhint: pass --config with one of them",
                several.len(),
                names.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_a_dead_pid_has_none() {
        assert!(start_time(std::process::id()).is_some());
        assert!(start_time(u32::MAX).is_none());
    }
}
