//! The PostgreSQL listener: accepts clients (authenticated sessions and handshakes each have their
//! own budget: see `admission`), and on shutdown
//! stops accepting, tells every session, and waits for them to finish recording.

use crate::admission::Admission;
use crate::cancel::CancelRegistry;
use crate::catalog::Catalog;
use crate::session;
use crate::stop::Stops;
use sluice_gate::Gate;
use sluice_sql::Classifier;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, watch};

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
    /// Clients authenticating at once, in all and from one address (see `admission`).
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
}

pub type ServerTls = Arc<rustls::ServerConfig>;

pub(crate) struct Shared<G> {
    pub gate: Arc<G>,
    /// One per authenticated session (`max_sessions`).
    pub slots: Arc<Semaphore>,
    /// Clients still authenticating.
    pub admission: Arc<Admission>,
    pub config: ListenerConfig,
    pub cancel: Arc<CancelRegistry>,
    /// Classifications by statement text, shared by every session.
    pub classifier: Classifier,
    /// Table and column names by OID per upstream database, for masking rules.
    pub catalog: Catalog,
}

/// Distinct statement texts whose classification is kept.
const CLASSIFICATION_CACHE_ENTRIES: usize = 10_000;

/// Resolves once shutdown is signalled (never, if the sender is gone without signalling).
async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves clients from `listener` until `shutdown` turns true, then waits (up to `drain`) for the
/// open sessions to end.
///
/// Sessions are spread round-robin over `workers` (single-threaded runtimes, one per core) and stay
/// on theirs for life: a session's two directions then wake each other without crossing threads,
/// which measurably lowers CPU per query. With no workers, sessions run on the calling runtime.
pub async fn serve<G: Gate>(
    listener: TcpListener,
    config: ListenerConfig,
    gate: Arc<G>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    workers: &[Handle],
) {
    let mut next_worker = 0usize;
    let max_sessions = config.max_sessions;
    let slots = Arc::new(Semaphore::new(max_sessions));
    let shared = Arc::new(Shared {
        gate,
        slots: Arc::clone(&slots),
        admission: Arc::new(Admission::new(config.max_unauthenticated, config.max_unauthenticated_per_source)),
        config,
        cancel: Arc::new(CancelRegistry::default()),
        classifier: Classifier::new(CLASSIFICATION_CACHE_ENTRIES),
        catalog: Catalog::default(),
    });
    let stops = Stops::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown_signalled(&mut shutdown) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let stop = stops.register();
        // A socket belongs to the reactor that registered it: hand it over as a std socket and
        // register it again on the worker.
        let std_tcp = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "could not hand a client to a worker");
                continue;
            }
        };
        let worker = if workers.is_empty() {
            Handle::current()
        } else {
            next_worker = (next_worker + 1) % workers.len();
            workers[next_worker].clone()
        };
        worker.spawn(async move {
            match TcpStream::from_std(std_tcp) {
                Ok(tcp) => session::run(tcp, peer, shared, stop).await,
                Err(e) => tracing::warn!(%peer, error = %e, "could not register a client on its worker"),
            }
        });
    }
    tracing::info!("PostgreSQL listener stopped accepting; waiting for sessions to end");
    stops.signal_all();
    let all = u32::try_from(max_sessions).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("some sessions did not end within {drain:?}");
    }
}
