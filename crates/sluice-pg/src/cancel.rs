//! Cancel keys. Each client session gets a BackendKeyData minted by sluice; a CancelRequest that
//! presents it is translated into a cancel of the upstream backend it maps to. Clients never see
//! upstream process ids or secrets.

use crate::upstream::PgEndpoint;
use parking_lot::Mutex;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct UpstreamKey {
    pub endpoint: Arc<PgEndpoint>,
    pub pid: i32,
    pub secret: i32,
    /// Wakes the session when it holds a statement for a review: a cancel withdraws it.
    pub hold: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, (i32, UpstreamKey)>>,
}

impl CancelRegistry {
    /// Registers an upstream key and returns the (pid, secret) to give the client; the entry lives
    /// until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, key: UpstreamKey) -> CancelGuard {
        let mut rng = rand::rng();
        let secret: i32 = rng.random();
        let mut entries = self.entries.lock();
        let pid = loop {
            let candidate = rng.random_range(1..i32::MAX);
            if !entries.contains_key(&candidate) {
                break candidate;
            }
        };
        entries.insert(pid, (secret, key));
        CancelGuard { registry: Arc::clone(self), pid, secret }
    }

    /// The upstream key for a client's cancel request, if pid and secret both match.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<UpstreamKey> {
        let entries = self.entries.lock();
        entries.get(&pid).filter(|(s, _)| *s == secret).map(|(_, key)| key.clone())
    }
}

pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: i32,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let mut entries = self.registry.entries.lock();
        entries.remove(&self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{UpstreamTls, UpstreamTlsMode};

    fn key() -> UpstreamKey {
        UpstreamKey {
            endpoint: Arc::new(PgEndpoint {
                host: "h".into(),
                port: 1,
                database: "d".into(),
                user: "u".into(),
                password: None,
                tls: UpstreamTls { mode: UpstreamTlsMode::Disable, config: None, server_name: "h".into() },
                settings: Vec::new(),
                masking: None,
            }),
            pid: 42,
            secret: 7,
            hold: Arc::default(),
        }
    }

    #[test]
    fn lookup_needs_the_secret_and_ends_with_the_guard() {
        let registry = Arc::new(CancelRegistry::default());
        let guard = registry.register(key());
        assert_eq!(registry.lookup(guard.pid, guard.secret).map(|k| k.pid), Some(42));
        assert!(registry.lookup(guard.pid, guard.secret.wrapping_add(1)).is_none());
        let (pid, secret) = (guard.pid, guard.secret);
        drop(guard);
        assert!(registry.lookup(pid, secret).is_none());
    }
}
