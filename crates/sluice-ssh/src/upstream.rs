//! sluice's own SSH session to a target: the host must present its pinned key, and sluice logs in
//! with the held credential (a private key, or a password), which the agent never sees.

use crate::target::SshTarget;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, client};
use sluice_core::Secret;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {target} at {addr}: {reason}")]
    Unreachable { target: String, addr: String, reason: String },
    #[error(
        "{target} at {addr} presented host key {presented}, which is not the one pinned for it; \
         the session was not opened (if the host's key changed, an operator updates host_key)"
    )]
    HostKeyMismatch { target: String, addr: String, presented: String },
    #[error("{target} refused sluice's credential for {user}; tell an operator")]
    Refused { target: String, user: String },
    #[error("{target}: {0}", target = .1)]
    Protocol(String, String),
}

pub struct Pinned {
    target: Arc<SshTarget>,
    /// The key a host presented that was not the pinned one.
    mismatch: Arc<parking_lot::Mutex<Option<String>>>,
    /// Where connections to what the host listens on for the client (`ssh -R`) are passed.
    back: Option<russh::server::Handle>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = key.public_key();
        let accepted = self.target.host_key.accepts(&key);
        if !accepted {
            *self.mismatch.lock() = Some(key.fingerprint(russh::keys::HashAlg::Sha256).to_string());
        }
        Ok(accepted)
    }

    /// A connection to a port the host listens on for the client: passed back to the client as
    /// SSH's forwarded-tcpip channel, bytes both ways.
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let Some(back) = self.back.clone() else {
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        reply.accept().await;
        let (address, origin) = (connected_address.to_string(), originator_address.to_string());
        tokio::spawn(async move {
            let Ok(to_client) =
                back.channel_open_forwarded_tcpip(address, connected_port, origin, originator_port).await
            else {
                return;
            };
            crate::forward::pass(channel, to_client).await;
        });
        Ok(())
    }
}

pub type Upstream = client::Handle<Pinned>;

/// Connects and logs in.
pub async fn connect(target: &Arc<SshTarget>, credential: Option<&Secret>) -> Result<Upstream, UpstreamError> {
    connect_with(target, credential, None).await
}

/// Connects and logs in, passing connections to what the host listens on for the client
/// (`ssh -R`) back through `back`, the client's connection.
pub async fn connect_with(
    target: &Arc<SshTarget>,
    credential: Option<&Secret>,
    back: Option<russh::server::Handle>,
) -> Result<Upstream, UpstreamError> {
    let addr = format!("{}:{}", target.host, target.port);
    let name = target.name.clone();
    let config = Arc::new(client::Config { inactivity_timeout: None, nodelay: true, ..client::Config::default() });
    let mismatch = Arc::new(parking_lot::Mutex::new(None));
    let handler = Pinned { target: Arc::clone(target), mismatch: Arc::clone(&mismatch), back };
    let stream = tokio::time::timeout(target.connect_timeout, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| UpstreamError::Unreachable {
            target: name.clone(),
            addr: addr.clone(),
            reason: format!("no answer within {} ms", target.connect_timeout.as_millis()),
        })?
        .map_err(|e| UpstreamError::Unreachable { target: name.clone(), addr: addr.clone(), reason: e.to_string() })?;
    let _ = stream.set_nodelay(true);
    let mut handle = match client::connect_stream(config, stream, handler).await {
        Ok(handle) => handle,
        Err(e) => {
            return Err(match mismatch.lock().take() {
                Some(presented) => UpstreamError::HostKeyMismatch { target: name, addr, presented },
                None => UpstreamError::Protocol(e.to_string(), name),
            });
        }
    };
    let user = target.user.clone();
    let refused = || UpstreamError::Refused { target: name.clone(), user: user.clone() };
    let protocol = |e: russh::Error| UpstreamError::Protocol(e.to_string(), name.clone());
    let Some(credential) = credential else { return Err(refused()) };
    let secret = credential.expose();
    let accepted = match PrivateKey::from_openssh(secret.trim()) {
        Ok(key) => {
            let hash = handle.best_supported_rsa_hash().await.map_err(protocol)?.flatten();
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            handle.authenticate_publickey(&user, key).await.map_err(protocol)?.success()
        }
        Err(_) => handle.authenticate_password(&user, secret).await.map_err(protocol)?.success(),
    };
    if !accepted {
        return Err(refused());
    }
    Ok(handle)
}

/// The home directory sluice's login on the host starts in (where relative paths lead), asked of
/// its login shell.
pub async fn home(upstream: &Upstream, target: &str) -> Result<String, UpstreamError> {
    let protocol = |e: String| UpstreamError::Protocol(e, target.to_string());
    let mut channel = upstream.channel_open_session().await.map_err(|e| protocol(e.to_string()))?;
    channel.exec(true, "pwd").await.map_err(|e| protocol(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(message) = channel.wait().await {
        match message {
            russh::ChannelMsg::Data { data } if out.len() < 4096 => out.extend_from_slice(&data),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&out);
    match text.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim) {
        Some(home) if home.starts_with('/') => Ok(home.to_string()),
        _ => Err(protocol(format!("could not learn the home directory of sluice's login (pwd said {text:?})"))),
    }
}
