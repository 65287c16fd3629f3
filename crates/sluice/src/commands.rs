//! The management commands: tokens, credentials, recorded sessions and authentication attempts,
//! and configuration checks. They work on the same state store as a running gateway.

use crate::display::{duration, table, timestamp};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sluice_config::{Config, PasswordSource};
use sluice_core::audit::now_us;
use sluice_core::span::Span;
use sluice_core::token;
use sluice_store::vault::MasterKey;
use sluice_store::{Store, TokenRow};
use std::io::Read;
use std::path::Path;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a token; prints it, alone, on stdout. Only its digest is stored.
    Create {
        /// The identity the token proves (the user name agents connect with).
        #[arg(long)]
        identity: String,
        /// Groups of the identity, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime such as 30d, 12h or 45m; without it the token lives until revoked.
        #[arg(long)]
        ttl: Option<String>,
        /// A note for the listing (who it is for).
        #[arg(long)]
        description: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; sessions it opens from now on are refused.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// Read a connection's upstream password from stdin and store it sealed.
    Set {
        #[arg(long)]
        connection: String,
    },
    /// Remove a connection's stored password.
    Delete {
        #[arg(long)]
        connection: String,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Recent sessions, newest first.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One session with every statement in it.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Recent authentication attempts, newest first.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

async fn open_store(config_path: &Path) -> Result<(Config, Store)> {
    let config = sluice_config::load(config_path)?;
    let store = Store::open(&config.server.store_path()).await?;
    Ok((config, store))
}

pub async fn token(config_path: &Path, cmd: TokenCommand) -> Result<()> {
    let (_, store) = open_store(config_path).await?;
    match cmd {
        TokenCommand::Create { identity, groups, ttl, description } => {
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
            let minted = token::mint();
            let groups: Vec<String> =
                groups.into_iter().map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect();
            let row = TokenRow {
                id: minted.id.clone(),
                identity,
                groups,
                digest: String::new(),
                description,
                created_at: now,
                expires_at,
                revoked_at: None,
                last_used_at: None,
            };
            store.insert_token(&row, &minted.digest).await?;
            eprintln!("token {} created for {}; it is shown only once", row.id, row.identity);
            println!("{}", minted.clear);
        }
        TokenCommand::List { json } => {
            let tokens = store.tokens().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        let state = if t.revoked_at.is_some() {
                            "revoked"
                        } else if t.expires_at.is_some_and(|e| e <= now_us()) {
                            "expired"
                        } else {
                            "active"
                        };
                        vec![
                            t.id.clone(),
                            t.identity.clone(),
                            t.groups.join(","),
                            state.into(),
                            timestamp(t.created_at),
                            t.expires_at.map(timestamp).unwrap_or_else(|| "never".into()),
                            t.last_used_at.map(timestamp).unwrap_or_else(|| "-".into()),
                            t.description.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(&["ID", "IDENTITY", "GROUPS", "STATE", "CREATED", "EXPIRES", "LAST USED", "DESCRIPTION"], &rows);
            }
        }
        TokenCommand::Revoke { id } => {
            let id = token::parse(&id).map(|(id, _)| id.to_string()).unwrap_or(id);
            if !store.revoke_token(&id, now_us()).await? {
                bail!("no token with id {id}");
            }
            eprintln!("token {id} revoked");
        }
    }
    store.close().await;
    Ok(())
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
            eprintln!("password for {connection} stored, sealed under the master key");
        }
        CredentialCommand::Delete { connection } => {
            if !store.delete_credential(&connection).await? {
                bail!("no stored password for {connection}");
            }
            eprintln!("stored password for {connection} deleted");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn sessions(config_path: &Path, cmd: SessionsCommand) -> Result<()> {
    let (_, store) = open_store(config_path).await?;
    match cmd {
        SessionsCommand::List { json, limit } => {
            let sessions = store.sessions(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
            } else {
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
                table(&["ID", "IDENTITY", "CONNECTION", "CLIENT", "STARTED", "LASTED", "STATEMENTS", "END"], &rows);
            }
        }
        SessionsCommand::Show { id, json } => {
            let Some((session, statements)) = store.session(&id).await? else {
                bail!("no session {id}");
            };
            if json {
                let value = serde_json::json!({ "session": session, "statements": statements });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("session     {}", session.id);
                println!("identity    {} (token {})", session.identity, session.credential_id);
                println!("connection  {} ({})", session.connection, session.protocol);
                println!(
                    "client      {}{}{}",
                    session.client_addr,
                    if session.client_tls { ", TLS" } else { ", plaintext" },
                    session.application_name.as_deref().map(|a| format!(", {a}")).unwrap_or_default()
                );
                println!("started     {}", timestamp(session.started_at));
                match session.ended_at {
                    Some(at) => {
                        println!("ended       {} ({})", timestamp(at), session.end_reason.as_deref().unwrap_or(""))
                    }
                    None => println!("ended       (still open)"),
                }
                println!();
                let rows: Vec<Vec<String>> = statements
                    .iter()
                    .map(|s| {
                        let outcome = match (&s.refused_by, &s.error_code) {
                            (Some(rule), _) => format!("refused by {rule}"),
                            (None, Some(code)) => {
                                format!("error {code}: {}", s.error_message.as_deref().unwrap_or(""))
                            }
                            (None, None) => s.tag.clone().or_else(|| s.error_message.clone()).unwrap_or_default(),
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
    let events = store.auth_events(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    timestamp(e.at),
                    e.protocol.clone(),
                    e.user.clone(),
                    e.connection.clone(),
                    e.client_addr.clone(),
                    e.outcome.clone(),
                    e.credential_id.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(&["AT", "PROTOCOL", "USER", "CONNECTION", "CLIENT", "OUTCOME", "TOKEN"], &rows);
    }
    store.close().await;
    Ok(())
}

pub fn check(config_path: &Path) -> Result<()> {
    let config = sluice_config::load(config_path)?;
    println!("{}: valid", config_path.display());
    println!("state directory: {}", config.server.state_dir.display());
    if config.postgres.enabled {
        println!("postgres listener: {} (client TLS {:?})", config.postgres.listen, config.postgres.tls);
    }
    for (name, conn) in &config.connections {
        println!(
            "connection {name}: {}@{}:{}/{} (upstream TLS {:?}, password {})",
            conn.user,
            conn.host,
            conn.port,
            conn.database_or(name),
            conn.tls,
            conn.password
        );
    }
    Ok(())
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max { flat } else { format!("{}…", flat.chars().take(max - 1).collect::<String>()) }
}
