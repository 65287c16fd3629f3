//! The PostgreSQL adapter: speaks the wire protocol to clients and servers, authenticates callers
//! through the engine (`sluice_gate::Gate`), opens upstream sessions with held credentials, and relays traffic frame by
//! frame, decoding only what the gateway needs to see.

pub mod cancel;
mod catalog;
pub mod codec;
pub mod error;
pub mod listener;
pub mod mask;
mod relay;
mod scram;
mod session;
mod startup;
mod stream;
mod target;
pub mod tls;
pub mod upstream;
pub mod value;

pub use error::PgError;

/// The maps a session keeps per message (statement and portal names, result shapes): foldhash,
/// several times cheaper than SipHash on short keys, and seeded per process.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub use listener::{ListenerConfig, PgAdapter, ServerTls};
pub use target::{PgConnectionOptions, PgTarget, PostgresSql};
pub use upstream::{PgEndpoint, UpstreamTlsMode};
