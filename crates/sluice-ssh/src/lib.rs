//! The SSH adapter: agents reach hosts with `ssh -p PORT agent+target@sluice 'command'`. sluice
//! terminates the agent's SSH session (its own host key, generated once and kept), authenticates
//! the agent by its sluice token, reads each `exec` request's command line with a shell parser
//! (`sluice-shell`, in worker processes), asks the engine, and runs what is allowed on the target
//! in its own session — the host's key pinned, the held credential never shown — masking the
//! output on its way back. Shells, subsystems and forwarding are refused for now.

mod output;
mod reply;
mod session;
mod target;
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
            methods: MethodSet::from(&[MethodKind::Password, MethodKind::KeyboardInteractive][..]),
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
    async fn connection(&self, accepted: Accepted) {
        let Accepted { tcp, peer, ticket, mut stop, slots: _ } = accepted;
        let _ = tcp.set_nodelay(true);
        let handler =
            session::Connection::new(Arc::clone(&self.gate), Arc::clone(&self.config), peer.to_string(), ticket);
        let running = match tokio::time::timeout(
            self.config.auth_timeout,
            russh::server::run_stream(Arc::clone(&self.server), tcp, handler),
        )
        .await
        {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "ssh handshake failed"),
            Err(_) => return tracing::debug!(%peer, "ssh handshake timed out"),
        };
        tokio::select! {
            done = running => if let Err(e) = done {
                tracing::debug!(%peer, error = %e, "ssh connection ended");
            },
            _ = stop.signalled() => {}
        }
    }
}
