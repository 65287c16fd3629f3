//! An SSH connection's options (`protocol = "ssh"`), checked, and what every session on it shares
//! once prepared: where the host is, who sluice logs in as, and the host key it must present.

use russh::keys::{HashAlg, PublicKey};
use serde::Deserialize;
use std::time::Duration;

/// The keys of `[connections.NAME]` for `protocol = "ssh"`. The held credential (the connection's
/// `password`: `stored`, `env:VAR` or `file:PATH`) is a private key in OpenSSH or PEM form, or a
/// password.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConnectionOptions {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The user sluice logs in as on the host.
    pub user: String,
    /// The host's public key, pinned: a `known_hosts` line (`host ssh-ed25519 AAAA…`), a public
    /// key (`ssh-ed25519 AAAA…`) or its fingerprint (`SHA256:…`, as `ssh-keygen -l` prints it).
    pub host_key: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
}

fn default_port() -> u16 {
    22
}
fn default_connect_timeout() -> u64 {
    5000
}

/// The host key a target must present.
#[derive(Clone, Debug)]
pub enum HostKeyPin {
    Key(Box<PublicKey>),
    /// `SHA256:…`
    Fingerprint(String),
}

impl HostKeyPin {
    pub fn parse(text: &str) -> Result<HostKeyPin, String> {
        let text = text.trim();
        if let Some(print) = text.strip_prefix("SHA256:") {
            if print.is_empty() || !print.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
                return Err(format!("host_key: {text:?} is not a SHA256 fingerprint"));
            }
            return Ok(HostKeyPin::Fingerprint(format!("SHA256:{}", print.trim_end_matches('='))));
        }
        // A public key, or a known_hosts line: its first field names hosts, not a key type.
        let key = match text.split_whitespace().next() {
            Some(first) if first.starts_with("ssh-") || first.starts_with("ecdsa-") => text,
            Some(_) => text.split_once(char::is_whitespace).map_or("", |(_, rest)| rest.trim()),
            None => "",
        };
        PublicKey::from_openssh(key)
            .map(|k| HostKeyPin::Key(Box::new(k)))
            .map_err(|e| format!("host_key: not a known_hosts line, a public key or a SHA256 fingerprint ({e})"))
    }

    /// Whether `key` is the pinned one.
    pub fn accepts(&self, key: &PublicKey) -> bool {
        match self {
            HostKeyPin::Key(pinned) => pinned.key_data() == key.key_data(),
            HostKeyPin::Fingerprint(print) => {
                key.fingerprint(HashAlg::Sha256).to_string().trim_end_matches('=') == print.as_str()
            }
        }
    }
}

impl SshConnectionOptions {
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host: give the host sluice connects to".into());
        }
        if self.user.trim().is_empty() {
            return Err("user: give the user sluice logs in as".into());
        }
        HostKeyPin::parse(&self.host_key).map(|_| ())
    }

    /// One line for an operator.
    pub fn summary(&self, name: &str) -> String {
        format!("ssh {}@{}:{} (agents: ssh -p PORT AGENT+{name}@sluice)", self.user, self.host, self.port)
    }
}

/// A prepared SSH target.
#[derive(Debug)]
pub struct SshTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub host_key: HostKeyPin,
    pub connect_timeout: Duration,
}

impl SshTarget {
    pub fn prepare(name: &str, options: &SshConnectionOptions) -> Result<SshTarget, String> {
        options.check()?;
        Ok(SshTarget {
            name: name.to_string(),
            host: options.host.clone(),
            port: options.port,
            user: options.user.clone(),
            host_key: HostKeyPin::parse(&options.host_key)?,
            connect_timeout: Duration::from_millis(options.connect_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::{Algorithm, PrivateKey};

    #[test]
    fn a_host_key_is_pinned_by_line_key_or_fingerprint() {
        let key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519).unwrap();
        let other = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519).unwrap();
        let public = key.public_key().to_openssh().unwrap();
        let print = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        for pin in [format!("[web1]:22,10.0.0.5 {public}"), public.clone(), print.clone()] {
            let pin = HostKeyPin::parse(&pin).unwrap();
            assert!(pin.accepts(key.public_key()));
            assert!(!pin.accepts(other.public_key()));
        }
        assert!(HostKeyPin::parse("web1 ssh-ed25519 nonsense").is_err());
        assert!(HostKeyPin::parse("SHA256:").is_err());
        assert!(HostKeyPin::parse("").is_err());
    }
}
