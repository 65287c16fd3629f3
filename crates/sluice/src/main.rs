//! The `sluice` command: serve the gateway, manage its tokens, credentials and recordings, and
//! explain its policy.

mod commands;
mod display;
mod gateway;
mod mask_cmd;
mod policy_cmd;
mod review_cmd;
mod serve;
mod workers;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "sluice", version, about = "A policy gateway in the data path between AI agents and infrastructure")]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "SLUICE_CONFIG", default_value = "sluice.toml")]
    config: PathBuf,
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
    /// Store a connection's upstream password, sealed under the master key.
    #[command(subcommand)]
    Credential(commands::CredentialCommand),
    /// Recorded sessions and their statements.
    #[command(subcommand)]
    Sessions(commands::SessionsCommand),
    /// Recorded authentication attempts, successful or not.
    #[command(subcommand)]
    Auth(commands::AuthCommand),
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
    /// Check a configuration file and print what it resolves to.
    Check,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // One TLS implementation for everything that speaks TLS without choosing (the webhook and
    // API clients); the PostgreSQL paths pass theirs explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Sessions run on their own per-core workers (see workers.rs); this runtime only accepts,
    // records and answers management commands.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(&cli.config).await,
            Command::Token(cmd) => commands::token(&cli.config, cmd).await,
            Command::Credential(cmd) => commands::credential(&cli.config, cmd).await,
            Command::Sessions(cmd) => commands::sessions(&cli.config, cmd).await,
            Command::Auth(cmd) => commands::auth(&cli.config, cmd).await,
            Command::Policy(cmd) => policy_cmd::run(&cli.config, cmd),
            Command::Mask(cmd) => mask_cmd::run(&cli.config, cmd),
            Command::Review(cmd) => review_cmd::review(&cli.config, cmd).await,
            Command::Access(cmd) => review_cmd::access(&cli.config, cmd).await,
            Command::Check => commands::check(&cli.config),
        }
    })
}
