//! The SSH adapter: agents reach hosts with `ssh -p PORT agent+target@sluice 'command'`. sluice
//! terminates the agent's SSH session (its own host key, generated once and kept), authenticates
//! the agent by its sluice token, reads each `exec` request's command line with a shell parser
//! (`sluice-shell`, in worker processes), asks the engine, and runs what is allowed on the target
//! in its own session — the host's key pinned, the held credential never shown — masking the
//! output on its way back. File transfers (SFTP, scp, rsync, git) are decided per file operation,
//! interactive shells and forwarding by rules of their own.

mod forward;
mod output;
mod reply;
mod session;
mod sftp;
mod shell;
mod target;
mod terminal;
mod transfers;
mod upstream;

pub use session::REFUSED_STATUS;
pub use target::{HostKeyPin, SshConnectionOptions, SshTarget};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use russh::{MethodKind, MethodSet};
use sluice_gate::Gate;
use sluice_runtime::{Accepted, Adapter, Limits, Runtime};
use sluice_shell::IsolatedReader;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The listener's settings (`[ssh]`).
pub struct SshListenerConfig {
    /// sluice's own host key.
    pub host_key: PrivateKey,
    /// Reads command lines apart from the gateway's process.
    pub reader: Arc<IsolatedReader>,
    /// How long a client has to authenticate.
    pub auth_timeout: Duration,
    pub max_auth_attempts: usize,
    pub limits: Limits,
    /// Where a review is looked at (the API's base URL), for refusals.
    pub api_url: Option<String>,
}

/// The SHA-256 fingerprint (`SHA256:…`) of a public key in OpenSSH's one-line form
/// (`ssh-ed25519 AAAA… comment`), as `sluice identity add-key` registers it.
pub fn public_key_fingerprint(openssh: &str) -> Result<String, String> {
    let key = russh::keys::PublicKey::from_openssh(openssh.trim()).map_err(|e| e.to_string())?;
    Ok(key.fingerprint(russh::keys::HashAlg::Sha256).to_string())
}

/// sluice's host key, generated on first use and kept (0600) at `path`.
pub fn host_key(path: &Path) -> Result<PrivateKey, String> {
    if path.exists() {
        return PrivateKey::read_openssh_file(path).map_err(|e| format!("{}: {e}", path.display()));
    }
    let key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519).map_err(|e| e.to_string())?;
    key.write_openssh_file(path, LineEnding::LF).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key)
}

pub struct SshAdapter<G: Gate> {
    gate: Arc<G>,
    config: Arc<SshListenerConfig>,
    server: Arc<russh::server::Config>,
}

impl<G: Gate> SshAdapter<G> {
    pub fn new(gate: Arc<G>, config: SshListenerConfig) -> SshAdapter<G> {
        let server = russh::server::Config {
            keys: vec![config.host_key.clone()],
            methods: MethodSet::from(
                &[MethodKind::PublicKey, MethodKind::Password, MethodKind::KeyboardInteractive][..],
            ),
            auth_rejection_time: Duration::from_secs(1),
            // OpenSSH asks with the "none" method first: answering it at once costs nothing.
            auth_rejection_time_initial: Some(Duration::ZERO),
            max_auth_attempts: config.max_auth_attempts,
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            nodelay: true,
            ..russh::server::Config::default()
        };
        SshAdapter { gate, config: Arc::new(config), server: Arc::new(server) }
    }
}

impl<G: Gate> Adapter for SshAdapter<G> {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn title(&self) -> &'static str {
        "SSH"
    }

    fn serve(self: Arc<Self>, listener: TcpListener, runtime: Runtime) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let limits = self.config.limits;
            runtime
                .accept("ssh", listener, limits, move |accepted: Accepted| {
                    let adapter = Arc::clone(&self);
                    async move { adapter.connection(accepted).await }
                })
                .await;
        })
    }
}

impl<G: Gate> SshAdapter<G> {
    /// One client: it has `auth_timeout` from its first byte to authenticate, and until then its
    /// place among unauthenticated clients may go to a newer one; then its session runs until
    /// it ends or sluice stops.
    async fn connection(&self, accepted: Accepted) {
        let Accepted { tcp, peer, ticket, mut stop, slots } = accepted;
        let Some(_slot) = slots.take() else {
            return tracing::warn!(%peer, "SSH connection refused: max_connections reached");
        };
        let _ = tcp.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + self.config.auth_timeout;
        let (authenticated, mut told) = tokio::sync::watch::channel(false);
        let handler =
            session::Connection::new(Arc::clone(&self.gate), Arc::clone(&self.config), peer.to_string(), authenticated);
        let handshake = russh::server::run_stream(Arc::clone(&self.server), tcp, handler);
        let running = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "ssh handshake failed"),
            Err(_) => return tracing::debug!(%peer, "ssh handshake timed out"),
        };
        // The session runs in a task of russh's own: it ends when told to, not when dropped.
        let handle = running.handle();
        let let_go = |reason: &'static str| async move {
            let _ = handle.disconnect(russh::Disconnect::ByApplication, reason.into(), "en".into()).await;
        };
        tokio::pin!(running);
        tokio::select! {
            done = &mut running => return ended(peer, done),
            _ = stop.signalled() => return let_go("sluice is shutting down").await,
            _ = ticket.evicted() => {
                tracing::debug!(%peer, "ssh client evicted before authenticating");
                return let_go("too many clients are authenticating; try again").await;
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(%peer, "ssh client did not authenticate in time");
                return let_go("authentication took too long").await;
            }
            authenticated = async { told.wait_for(|done| *done).await.is_ok() } => if !authenticated {
                return;
            },
        }
        drop(ticket);
        tokio::select! {
            done = &mut running => ended(peer, done),
            _ = stop.signalled() => {
                let_go("sluice is shutting down").await;
                let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
            }
        }
    }
}

fn ended(peer: std::net::SocketAddr, done: Result<(), russh::Error>) {
    if let Err(e) = done {
        tracing::debug!(%peer, error = %e, "ssh connection ended");
    }
}
