//! `sluice audit`: the administrative trail, the verification of the hash-chained log against its
//! signed checkpoints, and the key those checkpoints are signed with (created by `serve`).

use crate::commands::open_store;
use crate::display::{print_list, timestamp};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sluice_audit::{Anchor, Checkpoint, CheckpointSigner, GENESIS, PublicKey, Verifier, describe_keys};
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
    /// Replace the audit signing key with a new one (with `sluice serve` stopped). The old private
    /// key is deleted; its public key is kept beside the new one (`<key file>.retired-<key id>.pub`)
    /// with the last record it signed for, so that `verify` checks what it signed and nothing
    /// later.
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
        AuditCommand::RotateKey => rotate_key(config_path, &config, &store).await,
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
    let keys = verifying_keys(config, &public_keys)?;
    let instance = store.audit_instance().await?;
    // Retention removed the records up to the latest anchor: what remains chains from its hash.
    let anchors = store.audit_anchors().await?;
    let checkpoints = store.audit_checkpoints().await?;
    check_signers(&instance, &keys, &anchors, &checkpoints)?;
    let keys: Vec<PublicKey> = keys.into_iter().map(|(key, _)| key).collect();
    let anchor = anchors.last();
    let removed_through = anchor.map_or(0, |a| a.seq);
    if from != 1 && from <= removed_through {
        bail!("records up to {removed_through} were removed by retention; verify from {} on", removed_through + 1);
    }
    let from = from.max(removed_through + 1);
    let (first, head) = store.audit_bounds().await?;
    // Retention always keeps the newest record: an anchor with nothing after it hides a deletion.
    if removed_through > 0 && head <= removed_through {
        bail!(
            "the audit log is not as it was written: record {}: missing: retention removed records up to \
             {removed_through} and always keeps the newest, but no record follows: they were deleted",
            removed_through + 1
        );
    }
    // Records missing from the front, with no anchor to say retention removed them.
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

/// The keys to verify with, each with the last record it may sign for (`None`: any): those given,
/// or the key file's and the retired ones beside it.
fn verifying_keys(config: &Config, given: &[String]) -> Result<Vec<(PublicKey, Option<u64>)>> {
    if !given.is_empty() {
        return given.iter().map(|hex| Ok((PublicKey::from_hex(hex)?, None))).collect();
    }
    let mut keys = vec![(signing_key(config, false)?.public_key().clone(), None)];
    keys.extend(retired_keys(config)?.into_iter().map(|(key, through)| (key, Some(through))));
    Ok(keys)
}

/// Every anchor is signed by one of `keys`, and no retired key signed anything after it was
/// retired (checkpoints' own signatures are the verifier's to check, in order).
fn check_signers(
    instance: &str,
    keys: &[(PublicKey, Option<u64>)],
    anchors: &[Anchor],
    checkpoints: &[Checkpoint],
) -> Result<()> {
    let key_of = |key_id: &str| keys.iter().find(|(key, _)| key.key_id() == key_id);
    let signed = anchors
        .iter()
        .map(|a| (a.seq, &a.key_id, "retention anchor"))
        .chain(checkpoints.iter().map(|c| (c.seq, &c.key_id, "checkpoint")));
    for (seq, key_id, what) in signed {
        if let Some((_, Some(through))) = key_of(key_id)
            && seq > *through
        {
            bail!(
                "the audit log is not as it was written: record {seq}: its {what} is signed by key {key_id}, which \
                 was retired at record {through}: it was forged with the old key"
            );
        }
    }
    for anchor in anchors {
        if !key_of(&anchor.key_id).is_some_and(|(key, _)| key.verifies_anchor(instance, anchor)) {
            let all: Vec<PublicKey> = keys.iter().map(|(key, _)| key.clone()).collect();
            bail!(
                "the audit log is not as it was written: record {}: its retention anchor is not signed by the \
                 verifying {}: the anchor was altered or forged",
                anchor.seq,
                describe_keys(&all)
            );
        }
    }
    Ok(())
}

/// The keys `rotate-key` retired, each with the last record it signed for: public keys only,
/// in files beside the current key.
fn retired_keys(config: &Config) -> Result<Vec<(PublicKey, u64)>> {
    let path = config.audit.signing_key_path(&config.server);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(Vec::new()) };
    let prefix = format!("{}.retired-", name.to_string_lossy());
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if !(file.starts_with(&prefix) && file.ends_with(".pub")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).with_context(|| format!("cannot read {file}"))?;
        let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
        let (Some(public), Some(through)) = (field("public_key="), field("valid_through=")) else {
            bail!("{} is not a retired audit key (public_key= and valid_through= lines)", entry.path().display());
        };
        let through = through.parse().with_context(|| format!("valid_through in {file}"))?;
        keys.push((PublicKey::from_hex(public).with_context(|| format!("in {file}"))?, through));
    }
    Ok(keys)
}

/// Replaces the signing key: the old private key is deleted, its public key kept with the last
/// record it signed for.
async fn rotate_key(config_path: &Path, config: &Config, store: &sluice_store_sqlite::SqliteStore) -> Result<()> {
    if let Some(running) = crate::instance::of_config(config_path) {
        bail!(
            "sluice serve (pid {}) is running with this configuration and signs with the current key: stop it, \
             rotate, and start it again",
            running.pid
        );
    }
    let path = config.audit.signing_key_path(&config.server);
    let old = signing_key(config, false)?;
    let (_, through) = store.audit_bounds().await?;
    let old_id = old.public_key().key_id();
    let retired =
        path.with_file_name(format!("{}.retired-{old_id}.pub", path.file_name().unwrap_or_default().to_string_lossy()));
    let note = format!(
        "# sluice audit signing key {old_id}, retired at record {through}: it verifies checkpoints and anchors up to \
         there, and nothing later\npublic_key={}\nvalid_through={through}\n",
        old.public_key().to_hex()
    );
    write_private(&retired, note.as_bytes()).with_context(|| format!("cannot write {}", retired.display()))?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove the old key {}", path.display()))?;
    let new = signing_key(config, true)?;
    println!(
        "audit signing key rotated: key {} replaces key {old_id} (retired at record {through})",
        new.public_key().key_id()
    );
    println!("new public key (keep it with the old one, away from this host): {}", new.public_key().to_hex());
    println!("the old key's private half is deleted; its public half stays in {}", retired.display());
    Ok(())
}

/// How the recorder signs checkpoints, as `[audit]` says.
pub fn signing(config: &Config) -> Result<Signing> {
    let audit = &config.audit;
    let signer = signing_key(config, true)?;
    Ok(Signing::new(signer, audit.checkpoint_every, Duration::from_secs(audit.checkpoint_interval_s)))
}
