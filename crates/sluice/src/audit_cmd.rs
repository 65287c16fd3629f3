//! `sluice audit`: the administrative trail, the verification of the hash-chained log against its
//! signed checkpoints, and the key those checkpoints are signed with (created by `serve`).

use crate::commands::open_store;
use crate::display::{print_list, timestamp};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sluice_audit::{CheckpointSigner, GENESIS, PublicKey, Verifier, describe_keys};
use sluice_config::Config;
use sluice_store::AuditExportStore;
use sluice_store::vault::write_private;
use sluice_store_sqlite::Signing;
use std::path::Path;
use std::time::Duration;

/// Records read per query while verifying.
const PAGE: u64 = 10_000;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recent administrative events, newest first: tokens minted and revoked, credentials set
    /// and deleted, API calls refused for their token.
    Admin {
        /// Print JSON (timestamps in RFC 3339, UTC, with microseconds).
        #[arg(long)]
        json: bool,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Check the audit log's hash chain and signed checkpoints; exit status 1 naming the first
    /// record that was modified, deleted, inserted or reordered.
    Verify {
        /// Start at this record (its predecessor's stored hash is trusted); default: the first.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// A public key checkpoints may be signed with (64 hex digits, as `sluice audit
        /// public-key` prints it); repeat it for the keys of earlier rotations. Default: the key
        /// of `[audit] signing_key_file` and the keys it replaced (`rotate-key`). Keep a copy away
        /// from the gateway's host to detect a thief who replaced both log and key.
        #[arg(long = "public-key", value_name = "HEX")]
        public_keys: Vec<String>,
    },
    /// Print the public key of the audit signing key (to keep with whoever verifies).
    PublicKey,
    /// Replace the audit signing key with a new one. The old key is kept beside it
    /// (`<key file>.retired-<key id>`) so that `verify` still checks the checkpoints it signed;
    /// restart `sluice serve` to sign with the new one.
    RotateKey,
}

pub async fn run(config_path: &Path, cmd: AuditCommand) -> Result<()> {
    let (config, store) = open_store(config_path).await?;
    let done = match cmd {
        AuditCommand::Admin { json, limit } => {
            print_list(&store.admin_events(limit).await?, json, &["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"], |e| {
                let detail = e.detail.clone().unwrap_or_else(|| "-".into());
                vec![timestamp(e.at), e.actor.clone(), e.action.clone(), e.subject.clone(), detail]
            })
        }
        AuditCommand::PublicKey => signing_key(&config, false).map(|k| println!("{}", k.public_key().to_hex())),
        AuditCommand::RotateKey => rotate_key(&config),
        AuditCommand::Verify { from, public_keys } => verify(&config, &store, from, public_keys).await,
    };
    store.close().await;
    done
}

async fn verify(
    config: &Config,
    store: &sluice_store_sqlite::SqliteStore,
    from: u64,
    public_keys: Vec<String>,
) -> Result<()> {
    let keys = match public_keys.is_empty() {
        false => public_keys.iter().map(|hex| PublicKey::from_hex(hex)).collect::<Result<Vec<_>, _>>()?,
        true => {
            let mut keys = vec![signing_key(config, false)?.public_key().clone()];
            keys.extend(retired_keys(config)?);
            keys
        }
    };
    let instance = store.audit_instance().await?;
    // Retention removed the records up to the latest anchor: what remains chains from its hash.
    let anchors = store.audit_anchors().await?;
    for anchor in &anchors {
        let key = keys.iter().find(|k| k.key_id() == anchor.key_id);
        if !key.is_some_and(|key| key.verifies_anchor(&instance, anchor)) {
            bail!(
                "the audit log is not as it was written: record {}: its retention anchor is not signed by the \
                 verifying {}: the anchor was altered or forged",
                anchor.seq,
                describe_keys(&keys)
            );
        }
    }
    let anchor = anchors.last();
    let removed_through = anchor.map_or(0, |a| a.seq);
    if from != 1 && from <= removed_through {
        bail!("records up to {removed_through} were removed by retention; verify from {} on", removed_through + 1);
    }
    let from = from.max(removed_through + 1);
    // Records missing from the front, with no anchor to say retention removed them.
    let first = store.audit_first().await?;
    if first > from {
        bail!(
            "the audit log is not as it was written: record {from}: missing: the log starts at record {first}, and no \
             retention anchor covers records {from}..={}: they were deleted",
            first - 1
        );
    }
    let head_before = match (from, anchor) {
        (1, _) => GENESIS,
        (n, Some(anchor)) if n == anchor.seq + 1 => anchor.hash,
        (n, _) => store.audit_hash(n - 1).await?.with_context(|| format!("the log has no record {}", n - 1))?,
    };
    let checkpoints = store.audit_checkpoints().await?;
    let broken = |b: sluice_audit::Break| anyhow::anyhow!("the audit log is not as it was written: {b}");
    let mut verifier = Verifier::new(&instance, &keys, checkpoints, from, head_before).map_err(broken)?;
    let mut next = from;
    loop {
        let page = store.audit_records(next, PAGE).await?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for record in &page {
            verifier.feed(record).map_err(broken)?;
        }
    }
    let verified = verifier.finish().map_err(broken)?;
    if verified.last < verified.first {
        println!("audit log of instance {instance}: no records from {from} on");
        return Ok(());
    }
    println!(
        "audit log of instance {instance}: records {}..={} verified; {} signed checkpoint(s) ({}), the last at \
         record {}",
        verified.first,
        verified.last,
        verified.checkpoints,
        describe_keys(&keys),
        verified.last_checkpoint.map_or_else(|| "-".into(), |s| s.to_string()),
    );
    if let Some(anchor) = anchor {
        println!(
            "records 1..={} were removed by retention on {}; the chain goes on from their signed anchor",
            anchor.seq,
            timestamp(anchor.at_us)
        );
    }
    if verified.unsigned() > 0 {
        println!(
            "{} record(s) after the last checkpoint chain correctly but are not signed yet (a checkpoint is signed \
             every [audit] checkpoint_every records or checkpoint_interval_s seconds, and when sluice stops)",
            verified.unsigned()
        );
    }
    Ok(())
}

/// The audit signing key; `serve` (`create`) makes it when it does not exist yet.
pub fn signing_key(config: &Config, create: bool) -> Result<CheckpointSigner> {
    let path = config.audit.signing_key_path(&config.server);
    match std::fs::read(&path) {
        Ok(document) => CheckpointSigner::from_pkcs8(&document).with_context(|| format!("in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let document = CheckpointSigner::generate()?;
            if let Some(dir) = path.parent() {
                sluice_store::private::ensure_dir(dir)?;
            }
            write_private(&path, &document).with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the audit signing key");
            Ok(CheckpointSigner::from_pkcs8(&document)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("there is no audit signing key at {} (sluice serve creates it; or pass --public-key)", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The public keys of the signing keys `rotate-key` replaced, kept beside the current one.
fn retired_keys(config: &Config) -> Result<Vec<PublicKey>> {
    let path = config.audit.signing_key_path(&config.server);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(Vec::new()) };
    let prefix = format!("{}.retired-", name.to_string_lossy());
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let document =
                std::fs::read(entry.path()).with_context(|| format!("cannot read {}", entry.path().display()))?;
            let key =
                CheckpointSigner::from_pkcs8(&document).with_context(|| format!("in {}", entry.path().display()))?;
            keys.push(key.public_key().clone());
        }
    }
    Ok(keys)
}

/// Replaces the signing key, keeping the old one beside it for verification.
fn rotate_key(config: &Config) -> Result<()> {
    let path = config.audit.signing_key_path(&config.server);
    let old = signing_key(config, false)?;
    let retired = path.with_file_name(format!(
        "{}.retired-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        old.public_key().key_id()
    ));
    std::fs::rename(&path, &retired).with_context(|| format!("cannot move {} aside", path.display()))?;
    let new = signing_key(config, true)?;
    println!("audit signing key rotated: key {} replaces key {}", new.public_key().key_id(), old.public_key().key_id());
    println!("new public key (keep it with the old one, away from this host): {}", new.public_key().to_hex());
    println!(
        "restart `sluice serve` to sign with it; `audit verify` checks the old checkpoints with {}",
        retired.display()
    );
    Ok(())
}

/// How the recorder signs checkpoints, as `[audit]` says.
pub fn signing(config: &Config) -> Result<Signing> {
    let audit = &config.audit;
    let signer = signing_key(config, true)?;
    Ok(Signing::new(signer, audit.checkpoint_every, Duration::from_secs(audit.checkpoint_interval_s)))
}
