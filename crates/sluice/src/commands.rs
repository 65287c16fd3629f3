//! The management commands: tokens, credentials, recorded sessions and authentication attempts,
//! and configuration checks. They work on the same state store as a running gateway.

use crate::display::{duration, one_line, out, print_json, print_json_line, print_list, table, timestamp};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sluice_config::{Config, PasswordSource};
use sluice_core::audit::now_us;
use sluice_core::span::Span;
use sluice_core::token;
use sluice_core::{AdminAction, Principal};
use sluice_engine::TargetPreparer;
use sluice_store::vault::MasterKey;
use sluice_store::{CredentialVault, TokenRow, TokenStore};
use sluice_store_sqlite::{SessionFilter, SessionRow, SqliteStore};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `sessions list --follow` looks for new sessions.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a token; prints it, alone, on stdout. Only its digest is stored.
    Create {
        #[command(flatten)]
        of: CredentialArgs,
    },
    /// List tokens (never their secrets).
    List {
        /// Print JSON (timestamps in RFC 3339, UTC, with microseconds).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id: new sessions are refused and open ones end within 2 seconds.
    Revoke {
        /// The token's id (as `token list` shows it), or the whole token.
        id: String,
    },
    /// Check a token read from standard input (never from the command line, where other users
    /// can see it): prints whose it is and whether it can be used; exit status 1 if not.
    Verify,
}

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// Read a connection's upstream password from stdin and store it sealed.
    Set {
        /// The connection's name in the configuration (`[connections.NAME]`).
        #[arg(long)]
        connection: String,
    },
    /// Remove a connection's stored password.
    Delete {
        /// The connection's name in the configuration (`[connections.NAME]`).
        #[arg(long)]
        connection: String,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Recent sessions, newest first.
    List {
        /// Print JSON (timestamps in RFC 3339, UTC, with microseconds); with --follow, one object
        /// per line.
        #[arg(long)]
        json: bool,
        /// At most this many sessions.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only sessions started within this span (e.g. 30m, 2h, 7d) or since this RFC 3339 time.
        #[arg(long, value_name = "SPAN|TIME")]
        since: Option<String>,
        /// Only sessions of this identity.
        #[arg(long)]
        identity: Option<String>,
        /// Only sessions on this connection.
        #[arg(long)]
        connection: Option<String>,
        /// Only sessions with at least one statement decided so.
        #[arg(long, value_parser = ["allow", "review", "deny"])]
        verdict: Option<String>,
        /// After the listing, keep printing sessions as they start, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// One session with every statement in it.
    Show {
        /// The session's id, as `sessions list` shows it.
        id: String,
        /// Print JSON (timestamps in RFC 3339, UTC, with microseconds).
        #[arg(long)]
        json: bool,
    },
    /// A session played back from the audit log: its actions with verdicts, rules, timings,
    /// errors and the first rows of each result (masked), and the reviews it asked for.
    Replay {
        /// The session's id, as `sessions list` shows it.
        id: String,
        /// Print the session and its audit records as JSON (with each record's offset from the
        /// session's start and its chain hash).
        #[arg(long, conflicts_with = "speed")]
        json: bool,
        /// Play it back at N times the recorded pace (2 is twice as fast); without it, print it
        /// at once.
        #[arg(long, value_name = "N")]
        speed: Option<f64>,
        /// While playing, the longest pause between two events, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
        idle_limit: f64,
        /// Play the session's interactive terminal (an SSH shell) instead: its output, masked, as
        /// the client saw it, escape sequences and all (at the recorded pace with --speed).
        #[arg(long, conflicts_with = "json")]
        terminal: bool,
        /// Write the session's interactive terminal as an asciicast v2 file (for asciinema and
        /// its web player) to standard output.
        #[arg(long, conflicts_with_all = ["json", "terminal", "speed"])]
        cast: bool,
    },
    /// An HTTP session's exchanges as a HAR 1.2 file (for browsers' developer tools and HTTP
    /// debugging proxies), from the audit log.
    Export {
        /// The session's id, as `sessions list` shows it.
        id: String,
        /// Write HAR (the one format there is so far).
        #[arg(long, required = true)]
        har: bool,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Recent authentication attempts, newest first.
    List {
        /// Print JSON (timestamps in RFC 3339, UTC, with microseconds).
        #[arg(long)]
        json: bool,
        /// At most this many attempts.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub async fn open_store(config_path: &Path) -> Result<(Config, SqliteStore)> {
    let config = crate::targets::load_config(config_path)?;
    let store = SqliteStore::open(&config.server.store_path()).await?;
    Ok((config, store))
}

/// A credential of an identity as the store keeps it (a token's digest, or a registered key's).
fn credential_row(id: String, digest: String, of: CredentialArgs) -> Result<TokenRow> {
    let CredentialArgs { identity, groups, ttl, description } = of;
    if identity.is_empty() || identity.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("an identity is a non-empty name without spaces");
    }
    let now = now_us();
    let expires_at = match ttl {
        Some(ttl) => {
            let span = Span::parse(&ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            if span.0.is_zero() {
                bail!("--ttl must be longer than 0s");
            }
            Some(now + span.as_us())
        }
        None => None,
    };
    let groups = groups.into_iter().map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect();
    Ok(TokenRow {
        id,
        identity,
        groups,
        digest,
        description,
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    })
}

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Register an SSH public key to an identity: the agent then logs in to sluice's SSH listener
    /// with the key instead of its token. Listed, revoked and expired like a token (`token list`,
    /// `token revoke ID`).
    AddKey {
        /// The public key file (`id_ed25519.pub`), or `-` for standard input.
        key: PathBuf,
        #[command(flatten)]
        of: CredentialArgs,
    },
}

/// Whose a credential (a token, a registered key) is, and for how long.
#[derive(clap::Args)]
pub struct CredentialArgs {
    /// The identity it proves (the user name agents connect with).
    #[arg(long)]
    identity: String,
    /// Groups of the identity, comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Lifetime such as 30d, 12h or 45m; without it, it works until revoked.
    #[arg(long)]
    ttl: Option<String>,
    /// A note for the listing (who it is for).
    #[arg(long)]
    description: Option<String>,
}

pub async fn identity(config_path: &Path, cmd: IdentityCommand) -> Result<()> {
    let (_, store) = open_store(config_path).await?;
    match cmd {
        IdentityCommand::AddKey { key, of } => {
            let text = match key.as_os_str() == "-" {
                true => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    text
                }
                false => std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?,
            };
            if text.contains("PRIVATE KEY") {
                bail!("{} is a private key: give the public one (the .pub file)", key.display());
            }
            let fingerprint = sluice_ssh::public_key_fingerprint(&text)
                .map_err(|e| anyhow::anyhow!("{} is not an OpenSSH public key: {e}", key.display()))?;
            let digest = token::key_digest(&fingerprint);
            if let Some(held) = store
                .tokens()
                .await?
                .into_iter()
                .find(|t| t.digest == digest && t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now_us()))
            {
                bail!(
                    "the key {fingerprint} is already registered to {} (id {}); revoke that first",
                    held.identity,
                    held.id
                );
            }
            let row = credential_row(token::new_id(), digest, of)?;
            store.insert_token(&row).await?;
            let detail = format!("ssh key {fingerprint} for {} ({})", row.identity, row.groups.join(","));
            record_admin(&store, AdminAction::TokenMinted, &row.id, Some(detail)).await?;
            eprintln!("key {fingerprint} registered to {} as id {}", row.identity, row.id);
        }
    }
    Ok(())
}

pub async fn token(config_path: &Path, cmd: TokenCommand) -> Result<()> {
    let (_, store) = open_store(config_path).await?;
    match cmd {
        TokenCommand::Create { of } => {
            let minted = token::mint();
            let row = credential_row(minted.id.clone(), minted.digest.clone(), of)?;
            store.insert_token(&row).await?;
            let detail = format!("for {} ({})", row.identity, row.groups.join(","));
            record_admin(&store, AdminAction::TokenMinted, &row.id, Some(detail)).await?;
            eprintln!("token {} created for {}; it is shown only once", row.id, row.identity);
            out!("{}", minted.clear);
        }
        TokenCommand::List { json } => {
            let header =
                ["ID", "KIND", "IDENTITY", "GROUPS", "STATE", "CREATED", "EXPIRES", "LAST USED", "DESCRIPTION"];
            print_list(&store.tokens().await?, json, &header, |t| {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= now_us()) {
                    "expired"
                } else {
                    "active"
                };
                vec![
                    t.id.clone(),
                    match token::is_key_digest(&t.digest) {
                        true => t.digest.trim_start_matches("ssh-key ").to_string(),
                        false => "token".into(),
                    },
                    t.identity.clone(),
                    t.groups.join(","),
                    state.into(),
                    timestamp(t.created_at),
                    t.expires_at.map(timestamp).unwrap_or_else(|| "never".into()),
                    t.last_used_at.map(timestamp).unwrap_or_else(|| "-".into()),
                    t.description.clone().unwrap_or_default(),
                ]
            })?;
        }
        TokenCommand::Revoke { id } => {
            let id = token::parse(&id).map(|(id, _)| id.to_string()).unwrap_or(id);
            if !store.revoke_token(&id, now_us()).await? {
                bail!("no token with id {id}");
            }
            record_admin(&store, AdminAction::TokenRevoked, &id, None).await?;
            eprintln!("token {id} revoked");
        }
        TokenCommand::Verify => {
            let mut presented = String::new();
            std::io::stdin().read_to_string(&mut presented)?;
            match store.identify(presented.trim()).await {
                Ok(who) => {
                    let groups = if who.groups.is_empty() { "no groups".into() } else { who.groups.join(",") };
                    out!("token {}: active, identity {} ({groups})", who.credential_id, who.name);
                }
                Err((outcome, id)) => {
                    store.close().await;
                    bail!("token {}: {}", id.as_deref().unwrap_or("(unknown)"), outcome.as_str());
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

/// Records what the command line did to sluice, as the operating-system user who ran it.
async fn record_admin(store: &SqliteStore, action: AdminAction, subject: &str, detail: Option<String>) -> Result<()> {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let record = sluice_engine::admin_record(Principal::new(format!("cli:{user}"), None), action, subject, detail);
    store.record(record).await.context("cannot record the change in the audit trail")
}

pub async fn credential(config_path: &Path, cmd: CredentialCommand) -> Result<()> {
    let (config, store) = open_store(config_path).await?;
    match cmd {
        CredentialCommand::Set { connection } => {
            let conn = config
                .connections
                .get(&connection)
                .with_context(|| format!("no connection {connection:?} in {}", config_path.display()))?;
            if conn.password_source().ok() != Some(PasswordSource::Stored) {
                eprintln!("note: connection {connection} takes its password from {:?}, not the store", conn.password);
            }
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let password = input.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                bail!("no password on stdin");
            }
            let key = MasterKey::load(&config.server.master_key_path(), true)?;
            let (nonce, sealed) = key.seal(&connection, password.as_bytes())?;
            store.put_credential(&connection, &nonce, &sealed, now_us()).await?;
            record_admin(&store, AdminAction::CredentialSet, &connection, None).await?;
            eprintln!("password for {connection} stored, sealed under the master key");
        }
        CredentialCommand::Delete { connection } => {
            if !store.delete_credential(&connection).await? {
                bail!("no stored password for {connection}");
            }
            record_admin(&store, AdminAction::CredentialDeleted, &connection, None).await?;
            eprintln!("stored password for {connection} deleted");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn sessions(config_path: &Path, cmd: SessionsCommand) -> Result<()> {
    let (config, store) = open_store(config_path).await?;
    match cmd {
        SessionsCommand::List { json, limit, since, identity, connection, verdict, follow } => {
            let since_us = since.as_deref().map(since_to_us).transpose()?;
            let mut filter = SessionFilter { since_us, after_us: None, identity, connection, verdict, limit };
            let sessions = store.sessions(&filter).await?;
            match (json, follow) {
                (true, false) => print_json(&sessions)?,
                (true, true) => sessions.iter().rev().try_for_each(print_json_line)?,
                (false, _) => print_sessions(&sessions, true),
            }
            if follow {
                // Newest first from the store; printed oldest first as they arrive.
                filter.after_us = sessions.iter().map(|s| s.started_at).max().or(Some(now_us()));
                filter.limit = 1_000;
                // One listener for the whole loop: a new one each turn would miss a SIGINT that
                // came while the store was read or a line printed, and the command would not stop.
                let interrupted = tokio::signal::ctrl_c();
                tokio::pin!(interrupted);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(FOLLOW_POLL) => {}
                        _ = &mut interrupted => break,
                    }
                    let new = store.sessions(&filter).await?;
                    if let Some(latest) = new.iter().map(|s| s.started_at).max() {
                        filter.after_us = Some(latest);
                    }
                    if json {
                        new.iter().rev().try_for_each(print_json_line)?;
                    } else if !new.is_empty() {
                        print_sessions(&new.into_iter().rev().collect::<Vec<_>>(), false);
                    }
                }
            }
        }
        SessionsCommand::Export { id, har: _, output } => {
            crate::har::export(&store, &config, &id, output.as_deref()).await?;
        }
        SessionsCommand::Replay { id, json, speed, idle_limit, terminal, cast } => {
            let idle_limit = Duration::try_from_secs_f64(idle_limit)
                .map_err(|_| anyhow::anyhow!("--idle-limit must be a number of seconds, 0 or more"))?;
            let playback = crate::replay::Playback { json, speed, idle_limit };
            match (terminal, cast) {
                (false, false) => crate::replay::replay(&store, &id, playback).await?,
                (_, cast) => crate::replay::terminal(&store, &id, playback, cast).await?,
            }
        }
        SessionsCommand::Show { id, json } => {
            let Some((session, statements)) = store.session(&id).await? else {
                bail!("no session {id}");
            };
            if json {
                print_json(&serde_json::json!({ "session": session, "statements": statements }))?;
            } else {
                out!("session     {}", session.id);
                out!("identity    {} (token {})", session.identity, session.credential_id);
                out!("connection  {} ({})", session.connection, session.protocol);
                out!(
                    "client      {}{}{}",
                    session.client_addr,
                    if session.client_tls { ", TLS" } else { ", plaintext" },
                    session.application_name.as_deref().map(|a| format!(", {}", one_line(a, 80))).unwrap_or_default()
                );
                out!("started     {}", timestamp(session.started_at));
                match session.ended_at {
                    Some(at) => {
                        out!(
                            "ended       {} ({})",
                            timestamp(at),
                            one_line(session.end_reason.as_deref().unwrap_or(""), 200)
                        )
                    }
                    None => out!("ended       (still open)"),
                }
                out!();
                let rows: Vec<Vec<String>> = statements
                    .iter()
                    .map(|s| {
                        let outcome = match (&s.refused_by, &s.error_code) {
                            (Some(rule), _) => format!("refused by {rule}"),
                            (None, Some(code)) => {
                                format!("error {code}: {}", one_line(s.error_message.as_deref().unwrap_or(""), 200))
                            }
                            (None, None) => {
                                one_line(&s.tag.clone().or_else(|| s.error_message.clone()).unwrap_or_default(), 200)
                            }
                        };
                        vec![
                            s.seq.to_string(),
                            timestamp(s.started_at),
                            s.path.clone(),
                            duration(s.duration_us),
                            s.rows.to_string(),
                            outcome,
                            one_line(&s.text, 100),
                        ]
                    })
                    .collect();
                table(&["#", "AT", "PATH", "TOOK", "ROWS", "OUTCOME", "STATEMENT"], &rows);
            }
        }
    }
    store.close().await;
    Ok(())
}

pub async fn auth(config_path: &Path, cmd: AuthCommand) -> Result<()> {
    let (_, store) = open_store(config_path).await?;
    let AuthCommand::List { json, limit } = cmd;
    let header = ["AT", "PROTOCOL", "USER", "CONNECTION", "CLIENT", "OUTCOME", "TOKEN"];
    print_list(&store.auth_events(limit).await?, json, &header, |e| {
        vec![
            timestamp(e.at),
            e.protocol.clone(),
            e.user.clone(),
            e.connection.clone(),
            e.client_addr.clone(),
            e.outcome.clone(),
            e.credential_id.clone().unwrap_or_else(|| "-".into()),
        ]
    })?;
    store.close().await;
    Ok(())
}

/// `sluice check`: the file is valid (policy and masking compile too) and what it sets, in a few
/// lines or as JSON.
pub fn check(config_path: &Path, json: bool) -> Result<()> {
    let config = crate::targets::load_config(config_path)?;
    let summary = summary(&config);
    if json {
        let doc = serde_json::json!({ "config": config_path, "valid": true, "summary": summary });
        out!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    out!("{}: valid", config_path.display());
    let none = ["none".to_string()];
    let section = |title: &str, lines: &[String]| {
        let lines = if lines.is_empty() { &none[..] } else { lines };
        for (i, line) in lines.iter().enumerate() {
            out!("  {:<16} {line}", if i == 0 { title } else { "" });
        }
    };
    let s = &summary;
    section("state", &[format!("{} (store sluice.db)", config.server.state_dir.display())]);
    let mut listeners = Vec::new();
    if config.postgres.enabled {
        listeners.push(format!(
            "postgres {} (client TLS {})",
            config.postgres.listen,
            s["postgres"]["tls"].as_str().unwrap_or("")
        ));
    }
    if config.api.enabled {
        listeners.push(format!("api {}", config.api.listen));
    }
    section("listeners", &listeners);
    let connections: Vec<String> = config
        .connections
        .iter()
        .map(|(name, c)| {
            let who = match (c.allow_identities.is_empty(), c.allow_groups.is_empty()) {
                (true, true) => "every identity".to_string(),
                _ => [
                    c.allow_identities.join(","),
                    c.allow_groups.iter().map(|g| format!("group {g}")).collect::<Vec<_>>().join(","),
                ]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(", "),
            };
            let preset = c.policy.map(|p| format!(", preset {}", p.as_str())).unwrap_or_default();
            let upstream = s["connections"][name]["upstream"].as_str().unwrap_or("");
            format!("{name}: {upstream} (password {}{preset}; for {who})", c.password)
        })
        .collect();
    section("connections", &connections);
    let mut rules = vec![format!("default {}, {} rules", config.policy.default, config.policy.rules.len())];
    rules.extend(config.policy.rules.iter().map(|r| {
        let effect = r.effect.map(|e| e.as_str()).unwrap_or("allow");
        format!("{}: {effect}{}", r.name, r.reason.as_deref().map(|why| format!(" ({why})")).unwrap_or_default())
    }));
    section("policy", &rules);
    let m = &config.masking;
    let mut masking = vec![match m.enabled {
        true => {
            format!("on: {} detectors, action {}", m.detectors.len(), s["masking"]["action"].as_str().unwrap_or(""))
        }
        false => "off".into(),
    }];
    masking.extend(m.columns.iter().map(|c| format!("columns {}: {}", c.name, c.columns.join(", "))));
    section("masking", &masking);
    let access: Vec<String> =
        config.access.policies.iter().map(|a| format!("{} (up to {})", a.name, a.max_duration)).collect();
    section("access policies", &access);
    section("webhooks", &[config.approvals.webhooks.len().to_string()]);
    Ok(())
}

/// What a configuration sets, as plain data (no secrets: a password is shown as its source).
fn summary(config: &Config) -> serde_json::Value {
    use serde_json::json;
    let connections: serde_json::Map<String, serde_json::Value> = config
        .connections
        .iter()
        .map(|(name, c)| {
            let upstream = crate::targets::Targets.describe(name, c).map(|f| f.summary).unwrap_or_default();
            let mut value = json!({
                "protocol": c.protocol,
                "upstream": upstream,
                "password": c.password,
                "allow_identities": c.allow_identities,
                "allow_groups": c.allow_groups,
                "preset": c.policy,
                "default": c.default,
            });
            // The protocol's own options, as written (host, user, tls, … for PostgreSQL).
            if let (Some(value), Ok(serde_json::Value::Object(options))) =
                (value.as_object_mut(), serde_json::to_value(&c.options))
            {
                for (key, option) in options {
                    value.entry(key).or_insert(option);
                }
            }
            (name.clone(), value)
        })
        .collect();
    let rules: Vec<serde_json::Value> = config
        .policy
        .rules
        .iter()
        .map(|r| json!({ "name": r.name, "effect": r.effect.unwrap_or(sluice_core::policy::Effect::Allow), "kinds": r.kinds, "objects": r.objects, "reason": r.reason }))
        .collect();
    json!({
        "state_dir": config.server.state_dir,
        "postgres": config.postgres.enabled.then(|| json!({ "listen": config.postgres.listen, "tls": config.postgres.tls, "max_sessions": config.postgres.max_sessions })),
        "api": config.api.enabled.then(|| json!({ "listen": config.api.listen, "public_url": config.api.public_url })),
        "connections": connections,
        "policy": { "default": config.policy.default, "rules": rules },
        "masking": {
            "enabled": config.masking.enabled,
            "detectors": config.masking.detectors,
            "action": config.masking.action,
            "column_rules": config.masking.columns.iter().map(|c| json!({ "name": c.name, "columns": c.columns, "action": c.action })).collect::<Vec<_>>(),
        },
        "access_policies": config.access.policies.iter().map(|a| &a.name).collect::<Vec<_>>(),
        "webhooks": config.approvals.webhooks.len(),
    })
}

fn print_sessions(sessions: &[SessionRow], header: bool) {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.identity.clone(),
                s.connection.clone(),
                s.client_addr.clone(),
                timestamp(s.started_at),
                s.ended_at.map(|e| duration(e - s.started_at)).unwrap_or_else(|| "open".into()),
                s.statements.to_string(),
                s.end_reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let columns = ["ID", "IDENTITY", "CONNECTION", "CLIENT", "STARTED", "LASTED", "STATEMENTS", "END"];
    if header {
        table(&columns, &rows);
    } else {
        // Following: the same columns, without a header line for each batch.
        for row in rows {
            out!("{}", row.join("  "));
        }
    }
}

/// `--since`: a span back from now (`30m`, `2h`, `7d`) or an RFC 3339 time.
fn since_to_us(since: &str) -> Result<i64> {
    if let Ok(span) = Span::parse(since) {
        return Ok(now_us() - span.as_us());
    }
    let at = time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--since {since:?}: neither a span such as 2h nor an RFC 3339 time"))?;
    Ok((at.unix_timestamp_nanos() / 1000) as i64)
}
