//! `sluice serve`: load the configuration, open the store, start the listeners, reload on SIGHUP,
//! and shut down cleanly on SIGINT/SIGTERM with every recorded event written.

use crate::display::announce;
use crate::instance;
use crate::targets::Targets;
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use sluice_approvals::{Approvals, Notifier};
use sluice_audit::CheckpointSigner;
use sluice_config::{ClientTls, Config, LogFormat};
use sluice_core::AuditSink;
use sluice_engine::{Engine, MASK_TOKEN_PURPOSE, Parts};
use sluice_export::Exports;
use sluice_http::{HttpAdapter, HttpListenerConfig, Oversize};
use sluice_pg::{ListenerConfig, PgAdapter, tls};
use sluice_runtime::{Adapter, Limits, Runtime, Workers};
use sluice_shell::IsolatedReader;
use sluice_ssh::{SshAdapter, SshListenerConfig};
use sluice_store::vault::{MasterKey, write_private};
use sluice_store::{AuditExportStore, ReviewStore};
use sluice_store_sqlite::{Recorder, Removed, Retention, SqliteStore};
use sluice_web::Api;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

const DRAIN: Duration = Duration::from_secs(10);
const GRANT_REFRESH: Duration = Duration::from_secs(5);
/// How often retention looks for audit records to remove (and once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(600);
const TOKEN_REFRESH: Duration = Duration::from_secs(2);

pub async fn run(config_path: &Path) -> Result<()> {
    let config = crate::targets::load_config(config_path)?;
    init_logging(&config);
    // Watched before anything is announced: a SIGTERM sent as soon as the listeners are up stops
    // sluice cleanly instead of killing it.
    let signals = Signals::watch();
    let store = Arc::new(SqliteStore::open(&config.server.store_path()).await?);
    check_state_is_private(&config)?;
    let key = MasterKey::load(&config.server.master_key_path(), true)?;
    let masking = Arc::new(sluice_engine::compile::masking(&config, key.derive(MASK_TOKEN_PURPOSE))?);
    let live_masking = Arc::new(ArcSwap::new(Arc::clone(&masking)));
    // Recorded statements are masked like results (by the detectors, which apply to every session),
    // with the rules of the latest reload.
    let recorded_text = Arc::clone(&live_masking);
    let (recorder, recorder_task) = Recorder::spawn(
        &store,
        Duration::from_millis(config.recording.flush_interval_ms),
        Box::new(move |text| recorded_text.load().mask_text(text)),
        Some(crate::audit_cmd::signing(&config)?),
    )
    .context("cannot start the audit recorder")?;
    // After the recorder chained what a killed run journaled, so the log keeps the order of events.
    let orphaned = store.orphaned_sessions().await?;
    if !orphaned.is_empty() {
        tracing::warn!(orphaned = orphaned.len(), "closing sessions left open by a previous run");
        let ends = orphaned.into_iter().map(|(id, principal)| sluice_engine::orphaned_session_end(principal, &id));
        store.record_all(ends.collect()).await?;
    }
    // The API is bound first so that links in notifications carry its real port.
    let api_listener = match config.api.enabled {
        false => None,
        true => Some(
            TcpListener::bind(&config.api.listen)
                .await
                .with_context(|| format!("cannot listen on {} for the API", config.api.listen))?,
        ),
    };
    let base_url = match (&config.api.public_url, &api_listener) {
        (None, Some(listener)) => format!("http://{}", listener.local_addr()?),
        _ => config.api.base_url(),
    };
    let notifier = Notifier::new(config.approvals.webhooks.clone(), base_url.clone(), Arc::clone(&masking));
    let audit: Arc<dyn AuditSink> = Arc::new(recorder);
    let approvals = Arc::new(
        Approvals::new(
            store.clone() as Arc<dyn ReviewStore>,
            sluice_engine::compile::access(
                &config,
                &sluice_engine::compile::connection_policies(&config, &crate::targets::Targets)?,
            )?,
            notifier,
            Arc::clone(&audit),
        )
        .await?,
    );
    let parts = Parts {
        tokens: store.clone(),
        vault: store.clone(),
        audit: Arc::clone(&audit),
        key,
        masking: live_masking,
        approvals: Arc::clone(&approvals),
        targets: Arc::new(Targets),
    };
    let gateway = Arc::new(Engine::new(&config, parts)?);
    gateway.record_configuration(
        &config_path.display().to_string(),
        false,
        format!("{}; loaded at start", file_digest(config_path)),
    );

    // Exports read the log the recorder writes; a full backlog may have new sessions refused.
    let refusing = Arc::downgrade(&gateway);
    let exports = Arc::new(
        Exports::start(
            store.clone() as Arc<dyn AuditExportStore>,
            &config.audit.sinks,
            Arc::new(move |reason| {
                if let Some(gateway) = refusing.upgrade() {
                    gateway.refuse_new_sessions(reason);
                }
            }),
        )
        .map_err(anyhow::Error::msg)?,
    );

    let workers = Workers::start(config.server.worker_threads).context("cannot start the session workers")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let runtime = Runtime::new(workers.handles(), stop_rx.clone(), DRAIN);
    let mut listeners = Vec::new();
    let mut postgres_addr = None;
    let api_base = api_listener.as_ref().map(|_| base_url.clone());
    for (adapter, listen) in adapters(&config, &gateway, api_base)? {
        let name = adapter.name();
        let listener =
            TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen} for {name}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, targets = config.connections.len(), "{} listener ready", adapter.title());
        // A line on stdout that scripts and tests wait for (the port is real even when 0 was asked).
        announce(format_args!("sluice: {name} listening on {addr}"));
        if name == "postgres" {
            postgres_addr = Some(addr.to_string());
        }
        listeners.push(tokio::spawn(adapter.serve(listener, runtime.clone())));
    }

    // Grants decided by another instance sharing the store, and grants that ran out, are picked
    // up within GRANT_REFRESH.
    let refresher = {
        let (approvals, mut stop_rx) = (Arc::clone(&approvals), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(GRANT_REFRESH) => {}
                    _ = stop_rx.wait_for(|stop| *stop) => return,
                }
                if let Err(e) = approvals.refresh_grants().await {
                    tracing::warn!(error = %e, "could not reload access grants from the store");
                }
            }
        })
    };
    // Revoked and expired tokens, here or by another instance, end their sessions' use within
    // TOKEN_REFRESH (their next statement is refused).
    let token_watch = {
        let (gateway, mut stop_rx) = (Arc::clone(&gateway), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = gateway.refresh_unusable_tokens().await {
                    tracing::warn!(error = %e, "could not read revoked and expired tokens from the store");
                }
                tokio::select! {
                    _ = tokio::time::sleep(TOKEN_REFRESH) => {}
                    _ = stop_rx.wait_for(|stop| *stop) => return,
                }
            }
        })
    };
    let retention = {
        let signer = Arc::new(crate::audit_cmd::signing_key(&config, true)?);
        let (config, store, gateway, mut stop_rx) =
            (config.clone(), Arc::clone(&store), Arc::clone(&gateway), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                retain(&config, &store, &signer, &gateway).await;
                tokio::select! {
                    _ = tokio::time::sleep(RETENTION_EVERY) => {}
                    _ = stop_rx.wait_for(|stop| *stop) => return,
                }
            }
        })
    };
    let mut api_task = None;
    let mut api_url = None;
    if let Some(listener) = api_listener {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "REST API ready");
        api_url = Some(format!("http://{addr}"));
        announce(format_args!("sluice: api listening on http://{addr}"));
        let exports = Arc::clone(&exports);
        let api = Arc::new(Api {
            tokens: store.clone(),
            approvals: Arc::clone(&approvals),
            engine: Arc::clone(&gateway),
            metrics: Arc::new(move || exports.prometheus()),
        });
        let mut stop_rx = stop_rx.clone();
        api_task = Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = sluice_web::serve(listener, api, stopped).await {
                tracing::error!(error = %e, "the API stopped");
            }
        }));
    }

    // The CLI finds this instance without --config (instance.rs); not being able to say so is no
    // reason to stop serving.
    let _registration = instance::register(config_path, api_url, postgres_addr)
        .inspect_err(|e| tracing::warn!(error = %e, "could not register this instance for the CLI"))
        .ok();
    serve_until_stopped(signals, config_path, &config, &gateway).await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for listener in listeners {
        let _ = listener.await;
    }
    refresher.abort();
    token_watch.abort();
    retention.abort();
    let _ = (refresher.await, token_watch.await, retention.await);
    if let Some(task) = api_task {
        let _ = tokio::time::timeout(DRAIN, task).await;
    }
    workers.stop();
    // The recorder finishes once every handle on it is gone: the engine's, approvals' and ours.
    drop(gateway);
    drop(approvals);
    drop(audit);
    if tokio::time::timeout(DRAIN, recorder_task.finish()).await.is_err() {
        tracing::error!("the recorder did not finish writing within {DRAIN:?}");
    }
    // Then the exports deliver what the log holds (what they cannot, the next start sends).
    exports.finish().await;
    store.close().await;
    Ok(())
}

/// Removes the audit log's oldest records as `[audit.retention]` says, never one a sink has not
/// delivered yet, and records that it did.
async fn retain(config: &Config, store: &SqliteStore, signer: &Arc<CheckpointSigner>, gateway: &Engine) {
    let limits = &config.audit.retention;
    if limits.max_age_days == 0 && limits.max_records == 0 {
        return;
    }
    let mut delivered_through = u64::MAX;
    for sink in &config.audit.sinks {
        match store.export_cursor(&sink.name).await {
            Ok(cursor) => delivered_through = delivered_through.min(cursor),
            Err(e) => return tracing::warn!(error = %e, "cannot read the audit exports' cursors; retention waits"),
        }
    }
    let retention = Retention {
        max_age_us: (limits.max_age_days > 0).then(|| (limits.max_age_days as i64).saturating_mul(86_400_000_000)),
        max_records: (limits.max_records > 0).then_some(limits.max_records),
        delivered_through,
    };
    match store.remove_old_records(retention, Arc::clone(signer), sluice_core::audit::now_us()).await {
        Ok(Some(Removed { first, through })) => {
            tracing::info!(first, through, "retention removed the oldest audit records");
            gateway.record_audit_removal(format!(
                "records {first}..={through} removed (max_age_days {}, max_records {}); the chain goes on from the \
                 signed anchor at record {through}",
                limits.max_age_days, limits.max_records
            ));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "retention could not remove old audit records; it tries again later"),
    }
}

/// Refuses to serve when other users can read or change the state directory or its files (review
/// texts, recordings, the master key), unless `server.allow_readable_state` says to only warn.
fn check_state_is_private(config: &Config) -> Result<()> {
    let dir = &config.server.state_dir;
    let exposed = sluice_store::private::exposed(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if exposed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = exposed.iter().map(|(path, mode)| format!("{} (mode {mode:o})", path.display())).collect();
    if config.server.allow_readable_state {
        tracing::warn!(paths = %list.join(", "), "other users can read sluice's state; server.allow_readable_state is set");
        return Ok(());
    }
    anyhow::bail!(
        "other users can read sluice's state: {}\nhint: chmod 700 {} and chmod 600 the files in it (or set \
         server.allow_readable_state = true to only warn)",
        list.join(", "),
        dir.display()
    )
}

/// The adapters the configuration enables, each with the address it listens on.
fn adapters(config: &Config, engine: &Arc<Engine>, api_url: Option<String>) -> Result<Vec<(Arc<dyn Adapter>, String)>> {
    let mut adapters: Vec<(Arc<dyn Adapter>, String)> = Vec::new();
    if config.postgres.enabled {
        let pg = PgAdapter::new(Arc::clone(engine), pg_listener_config(config)?);
        adapters.push((Arc::new(pg), config.postgres.listen.clone()));
    }
    if config.http.enabled && config.connections.values().any(|c| c.protocol == "http") {
        let http = HttpAdapter::new(Arc::clone(engine), http_listener_config(config, api_url.clone())?);
        adapters.push((Arc::new(http), config.http.listen.clone()));
    }
    if config.ssh.enabled && config.connections.values().any(|c| c.protocol == "ssh") {
        let ssh = SshAdapter::new(Arc::clone(engine), ssh_listener_config(config, api_url)?);
        adapters.push((Arc::new(ssh), config.ssh.listen.clone()));
    }
    Ok(adapters)
}

fn ssh_listener_config(config: &Config, api_url: Option<String>) -> Result<SshListenerConfig> {
    let ssh = &config.ssh;
    let path = ssh.host_key.clone().unwrap_or_else(|| config.server.state_dir.join("ssh_host_ed25519_key"));
    let host_key = sluice_ssh::host_key(&path).map_err(|e| anyhow::anyhow!("ssh host key: {e}"))?;
    let sluice = std::env::current_exe().context("cannot find sluice's own program to read command lines with")?;
    let reader = IsolatedReader::new(
        sluice,
        vec!["internal".into(), "read-shell".into()],
        Duration::from_millis(ssh.read_timeout_ms),
    );
    Ok(SshListenerConfig {
        host_key,
        reader: Arc::new(reader),
        auth_timeout: Duration::from_secs(ssh.auth_timeout_secs),
        max_auth_attempts: ssh.max_auth_attempts,
        limits: Limits {
            max_sessions: ssh.max_connections,
            max_unauthenticated: ssh.max_unauthenticated,
            max_unauthenticated_per_source: ssh.max_unauthenticated_per_source,
        },
        api_url,
    })
}

fn http_listener_config(config: &Config, api_url: Option<String>) -> Result<HttpListenerConfig> {
    let http = &config.http;
    Ok(HttpListenerConfig {
        tls: client_tls(config, http.tls, &http.tls_cert, &http.tls_key)?,
        max_request_body: http.max_request_body_bytes,
        max_response_body: http.max_response_body_bytes,
        budget: sluice_http::Budget::new(http.max_buffered_bytes),
        oversize: match http.oversize {
            sluice_config::Oversize::Refuse => Oversize::Refuse,
            sluice_config::Oversize::Truncate => Oversize::Truncate,
        },
        header_timeout: Duration::from_secs(http.header_timeout_secs),
        idle_timeout: Duration::from_secs(http.idle_timeout_secs),
        send_timeout: Duration::from_secs(http.send_timeout_secs),
        limits: Limits {
            max_sessions: http.max_connections,
            max_unauthenticated: http.max_unauthenticated,
            max_unauthenticated_per_source: http.max_unauthenticated_per_source,
        },
        api_url,
    })
}

fn pg_listener_config(config: &Config) -> Result<ListenerConfig> {
    let pg = &config.postgres;
    Ok(ListenerConfig {
        tls: client_tls(config, pg.tls, &pg.tls_cert, &pg.tls_key)?,
        require_tls: pg.tls == ClientTls::Require,
        max_message_bytes: pg.max_message_bytes as usize,
        connect_timeout: Duration::from_secs(pg.connect_timeout_secs),
        handshake_timeout: Duration::from_secs(pg.handshake_timeout_secs),
        max_sessions: pg.max_sessions,
        max_unauthenticated: pg.max_unauthenticated,
        max_unauthenticated_per_source: pg.max_unauthenticated_per_source,
    })
}

/// A listener's TLS towards clients: its own certificate and key, or the generated pair.
fn client_tls(
    config: &Config,
    mode: ClientTls,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
) -> Result<Option<Arc<rustls::ServerConfig>>> {
    if mode == ClientTls::Disable {
        return Ok(None);
    }
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => ensure_self_signed(&config.server.state_dir)?,
    };
    Ok(Some(tls::server_config(&cert, &key)?))
}

/// The generated certificate and key in the state directory, created on first start.
fn ensure_self_signed(state_dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = state_dir.join("tls-cert.pem");
    let key = state_dir.join("tls-key.pem");
    if !cert.exists() || !key.exists() {
        sluice_store::private::ensure_dir(state_dir)?;
        let (cert_pem, key_pem) = tls::self_signed_pem()?;
        write_private(&key, key_pem.as_bytes())?;
        write_private(&cert, cert_pem.as_bytes())?;
        tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate for client connections");
    }
    Ok((cert, key))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.server.log_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.server.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// SIGTERM and SIGHUP, watched from the start (`None` if they cannot be).
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn watch() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            (Ok(term), Ok(hup)) => Signals(Some((term, hup))),
            _ => Signals(None),
        }
    }
}

/// Runs until SIGINT or SIGTERM; each SIGHUP reloads the configuration file.
async fn serve_until_stopped(signals: Signals, config_path: &Path, running: &Config, gateway: &Engine) {
    let Signals(Some((mut term, mut hup))) = signals else {
        tracing::warn!("cannot watch SIGTERM/SIGHUP; stopping on Ctrl-C only");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    // One listener for the whole run: a new one each turn would miss a SIGINT that came while
    // a reload ran.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => return,
            _ = term.recv() => return,
            _ = hup.recv() => reload(config_path, running, gateway),
        }
    }
}

/// The audit trail's account of the configuration file as it is now: its SHA-256.
fn file_digest(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    match std::fs::read(path) {
        Ok(bytes) => format!("sha256 {}", hex::encode(Sha256::digest(bytes))),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// A reload replaces connections, policy and masking all at once, or changes nothing: a file that
/// does not load or compile is refused with its error and the running configuration stays. Either
/// way the audit log says so.
fn reload(config_path: &Path, running: &Config, gateway: &Engine) {
    let path = config_path.display().to_string();
    let config = match crate::targets::load_config(config_path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload refused: the configuration file is invalid; nothing changed");
            gateway.record_configuration(&path, true, format!("{}; {e:#}", file_digest(config_path)));
            return;
        }
    };
    if let Err(e) = gateway.reload(&config) {
        tracing::error!(error = %format!("{e:#}"), "reload refused: the configuration does not compile; nothing changed");
        gateway.record_configuration(&path, true, format!("{}; {e:#}", file_digest(config_path)));
        return;
    }
    gateway.record_configuration(&path, false, format!("{}; reloaded", file_digest(config_path)));
    let fixed = restart_only_changes(running, &config);
    if !fixed.is_empty() {
        tracing::warn!(settings = %fixed.join(", "), "these settings changed in the file but take effect only at a restart");
    }
    tracing::info!(
        connections = config.connections.len(),
        rules = config.policy.rules.len(),
        column_rules = config.masking.columns.len(),
        "configuration reloaded"
    );
}

/// Settings a reload cannot apply (sockets, the state directory, the API, workers, recording
/// cadence, access policies and webhooks), named when the file changed them.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut note = |differs: bool, name: &'static str| {
        if differs {
            changed.push(name);
        }
    };
    note(running.server.state_dir != new.server.state_dir, "server.state_dir");
    note(running.server.worker_threads != new.server.worker_threads, "server.worker_threads");
    note(running.postgres.listen != new.postgres.listen, "postgres.listen");
    note(running.postgres.enabled != new.postgres.enabled, "postgres.enabled");
    note(running.postgres.tls != new.postgres.tls, "postgres.tls");
    note(running.postgres.max_sessions != new.postgres.max_sessions, "postgres.max_sessions");
    note(running.http.listen != new.http.listen || running.http.tls != new.http.tls, "http");
    note(running.api.listen != new.api.listen || running.api.enabled != new.api.enabled, "api");
    note(running.recording.flush_interval_ms != new.recording.flush_interval_ms, "recording.flush_interval_ms");
    note(running.access.policies.len() != new.access.policies.len(), "access.policies");
    note(running.approvals.webhooks.len() != new.approvals.webhooks.len(), "approvals.webhooks");
    note(running.audit.sinks != new.audit.sinks, "audit.sinks");
    note(running.audit.retention != new.audit.retention, "audit.retention");
    let signing =
        |c: &Config| (c.audit.signing_key_path(&c.server), c.audit.checkpoint_every, c.audit.checkpoint_interval_s);
    note(signing(running) != signing(new), "audit (signing key and checkpoints)");
    changed
}
