//! The PostgreSQL adapter as the runtime runs it: its listener settings, and what every session of
//! it shares (the gate, the cancel keys, the classification cache, the catalog).

use crate::cancel::CancelRegistry;
use crate::catalog::Catalog;
use crate::session;
use sluice_gate::Gate;
use sluice_runtime::{Adapter, Limits, Runtime};
use sluice_sql::Classifier;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct ListenerConfig {
    /// TLS offered to clients; `None` answers SSLRequest with `N`.
    pub tls: Option<ServerTls>,
    /// Refuse clients that did not negotiate TLS.
    pub require_tls: bool,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    /// How long a client has to authenticate.
    pub handshake_timeout: Duration,
    pub max_sessions: usize,
    /// Clients authenticating at once, in all and from one address (see `sluice_runtime::Admission`).
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
}

pub type ServerTls = Arc<rustls::ServerConfig>;

pub(crate) struct Shared<G> {
    pub gate: Arc<G>,
    pub config: ListenerConfig,
    pub cancel: Arc<CancelRegistry>,
    /// Classifications by statement text, shared by every session.
    pub classifier: Classifier,
    /// Table and column names by OID per upstream database, for masking rules.
    pub catalog: Catalog,
}

/// Distinct statement texts whose classification is kept.
const CLASSIFICATION_CACHE_ENTRIES: usize = 10_000;

/// The PostgreSQL adapter: sessions of clients that speak the PostgreSQL protocol, decided by `G`.
pub struct PgAdapter<G> {
    shared: Arc<Shared<G>>,
}

impl<G: Gate> PgAdapter<G> {
    pub fn new(gate: Arc<G>, config: ListenerConfig) -> PgAdapter<G> {
        let shared = Shared {
            gate,
            config,
            cancel: Arc::new(CancelRegistry::default()),
            classifier: Classifier::new(CLASSIFICATION_CACHE_ENTRIES),
            catalog: Catalog::default(),
        };
        PgAdapter { shared: Arc::new(shared) }
    }
}

impl<G: Gate> Adapter for PgAdapter<G> {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn title(&self) -> &'static str {
        "PostgreSQL"
    }

    fn serve(self: Arc<Self>, listener: TcpListener, runtime: Runtime) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let config = &self.shared.config;
            let limits = Limits {
                max_sessions: config.max_sessions,
                max_unauthenticated: config.max_unauthenticated,
                max_unauthenticated_per_source: config.max_unauthenticated_per_source,
            };
            let shared = Arc::clone(&self.shared);
            let handle = move |accepted| session::run(accepted, Arc::clone(&shared));
            runtime.accept(self.name(), listener, limits, handle).await;
        })
    }
}
