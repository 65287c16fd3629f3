//! The `sluice` command: serve the gateway, manage its tokens, credentials and recordings, and
//! explain its policy.

mod audit_cmd;
mod commands;
mod display;
mod har;
mod instance;
mod mask_cmd;
mod policy_cmd;
mod replay;
mod review_cmd;
mod serve;
mod targets;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "sluice", version, about = "A policy gateway in the data path between AI agents and infrastructure")]
struct Cli {
    /// The configuration file. Default: ./sluice.toml if it exists, else the configuration of the
    /// one sluice running as this user (every command but `serve`).
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Mint, list and revoke the tokens agents authenticate with.
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Identities' other credentials: SSH public keys.
    #[command(subcommand)]
    Identity(commands::IdentityCommand),
    /// Store a connection's upstream password, sealed under the master key.
    #[command(subcommand)]
    Credential(commands::CredentialCommand),
    /// Recorded sessions and their statements.
    #[command(subcommand)]
    Sessions(commands::SessionsCommand),
    /// Recorded authentication attempts, successful or not.
    #[command(subcommand)]
    Auth(commands::AuthCommand),
    /// The audit log: sluice's administrative trail, and verifying the hash chain.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Explain what SQL policy decides on a statement, or check the policy for mistakes.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Try the masking detectors on a text.
    #[command(subcommand)]
    Mask(mask_cmd::MaskCommand),
    /// Reviews of held or refused statements: list, show, approve, deny (via a running sluice).
    #[command(subcommand)]
    Review(review_cmd::ReviewCommand),
    /// Just-in-time access: request, list and revoke time-boxed grants (via a running sluice).
    #[command(subcommand)]
    Access(review_cmd::AccessCommand),
    /// Check a configuration file and print a summary of what it sets (exit status 1 if invalid).
    Check {
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// sluice's own workers (not for people): `read-shell` reads command lines apart from the
    /// gateway's process.
    #[command(hide = true)]
    Internal {
        #[arg(value_parser = ["read-shell"])]
        job: String,
    },
}

/// Exit statuses beyond 0 (success) and 2 (a usage error, from clap): see docs/configuration.md.
pub const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line (the causes joined), then any hint lines, and never a backtrace: the
            // message is for a person or an agent reading a terminal, not for a debugger.
            let text = format!("{e:#}");
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            eprintln!("sluice: error: {first}");
            for line in rest.lines().filter(|l| !l.trim().is_empty()) {
                eprintln!("sluice: {line}");
            }
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Internal { .. } = cli.command {
        // Before anything else: a worker needs no configuration, runtime or TLS.
        sluice_shell::worker_main()?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = instance::resolve_config(cli.config, !matches!(cli.command, Command::Serve))?;
    // One TLS implementation for everything that speaks TLS without choosing (the webhook and
    // API clients); the PostgreSQL paths pass theirs explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Sessions run on their own per-core workers (see workers.rs); this runtime only accepts,
    // records and answers management commands.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let config = config.as_path();
    runtime.block_on(async move {
        let done = match cli.command {
            Command::Serve => serve::run(config).await,
            Command::Token(cmd) => commands::token(config, cmd).await,
            Command::Identity(cmd) => commands::identity(config, cmd).await,
            Command::Credential(cmd) => commands::credential(config, cmd).await,
            Command::Sessions(cmd) => commands::sessions(config, cmd).await,
            Command::Auth(cmd) => commands::auth(config, cmd).await,
            Command::Audit(cmd) => audit_cmd::run(config, cmd).await,
            Command::Policy(cmd) => return policy_cmd::run(config, cmd),
            Command::Mask(cmd) => mask_cmd::run(config, cmd),
            Command::Review(cmd) => review_cmd::review(config, cmd).await,
            Command::Access(cmd) => review_cmd::access(config, cmd).await,
            Command::Check { json } => commands::check(config, json),
            Command::Internal { .. } => Ok(()),
        };
        done.map(|()| ExitCode::SUCCESS)
    })
}
