//! What every protocol adapter runs on: the accept loop, the budgets of clients still
//! authenticating and of sessions, per-core workers that sessions live on, and the drain at
//! shutdown. An adapter supplies only what one connection does (`Adapter`).

mod admission;
mod stop;
mod workers;

pub use admission::{Admission, Ticket};
pub use stop::{Stop, Stops};
pub use workers::Workers;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// One protocol sluice serves: bytes on accepted connections in, sessions through the engine.
pub trait Adapter: Send + Sync + 'static {
    /// The protocol's name, as the configuration and the logs call it (`postgres`).
    fn name(&self) -> &'static str;

    /// The protocol's name for people (`PostgreSQL`), in logs.
    fn title(&self) -> &'static str;

    /// Serves clients from `listener` until the runtime shuts down, then drains its sessions
    /// (usually `runtime.accept(…)` with the adapter's limits and its per-connection handler).
    fn serve(self: Arc<Self>, listener: TcpListener, runtime: Runtime) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// What adapters run on; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    workers: Arc<[Handle]>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
}

/// An adapter's budgets.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Authenticated sessions at once.
    pub max_sessions: usize,
    /// Clients authenticating at once, in all and from one address (see `Admission`).
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
}

/// A connection just accepted, on the worker it will live on.
pub struct Accepted {
    pub tcp: TcpStream,
    pub peer: SocketAddr,
    /// Its place in the budget of clients still authenticating; a newer client may evict it
    /// (`Ticket::evicted`). Drop it once the client has authenticated.
    pub ticket: Ticket,
    /// Resolves at shutdown: the session ends, telling its client why.
    pub stop: Stop,
    pub slots: SessionSlots,
}

/// The adapter's `max_sessions` places, which only authenticated clients take.
pub struct SessionSlots(Arc<Semaphore>);

impl SessionSlots {
    /// A place, held for as long as the permit lives; `None` when every place is taken.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.0).try_acquire_owned().ok()
    }
}

impl Runtime {
    /// Sessions are spread over `workers` (none: they run on the calling runtime); `shutdown`
    /// turning true stops every adapter, which then waits up to `drain` for its sessions.
    pub fn new(workers: Vec<Handle>, shutdown: watch::Receiver<bool>, drain: Duration) -> Runtime {
        Runtime { workers: workers.into(), shutdown, drain }
    }

    /// Accepts clients from `listener` and runs `handle` on each, until shutdown; then signals
    /// every session and waits (up to the drain) for them to end.
    ///
    /// Sessions are spread round-robin over the workers (single-threaded runtimes, one per core)
    /// and stay on theirs for life: a session's two directions then wake each other without
    /// crossing threads, which measurably lowers CPU per request.
    pub async fn accept<F, Fut>(&self, name: &str, listener: TcpListener, limits: Limits, handle: F)
    where
        F: Fn(Accepted) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let slots = Arc::new(Semaphore::new(limits.max_sessions));
        let admission = Arc::new(Admission::new(limits.max_unauthenticated, limits.max_unauthenticated_per_source));
        let stops = Stops::default();
        let mut shutdown = self.shutdown.clone();
        let mut next_worker = 0usize;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown_signalled(&mut shutdown) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::error!(adapter = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // A socket belongs to the reactor that registered it: hand it over as a std socket and
            // register it again on the worker.
            let std_tcp = match tcp.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(adapter = name, %peer, error = %e, "could not hand a client to a worker");
                    continue;
                }
            };
            let worker = if self.workers.is_empty() {
                Handle::current()
            } else {
                next_worker = (next_worker + 1) % self.workers.len();
                self.workers[next_worker].clone()
            };
            let (ticket, stop, slots, handle) =
                (admission.admit(peer.ip()), stops.register(), SessionSlots(Arc::clone(&slots)), Arc::clone(&handle));
            worker.spawn(async move {
                match TcpStream::from_std(std_tcp) {
                    Ok(tcp) => handle(Accepted { tcp, peer, ticket, stop, slots }).await,
                    Err(e) => tracing::warn!(%peer, error = %e, "could not register a client on its worker"),
                }
            });
        }
        tracing::info!(adapter = name, "stopped accepting; waiting for sessions to end");
        stops.signal_all();
        let all = u32::try_from(limits.max_sessions).unwrap_or(u32::MAX);
        if tokio::time::timeout(self.drain, slots.acquire_many(all)).await.is_err() {
            tracing::warn!(adapter = name, "some sessions did not end within {:?}", self.drain);
        }
    }
}

/// Resolves once shutdown is signalled (never, if the sender is gone without signalling).
async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
