//! What only the database server can tell about the objects a SQL statement reaches — which of its
//! views and functions carry a masked column, which of its functions may have side effects — for
//! the checks the engine makes after policy. The adapter answers from the server's catalog; the
//! engine asks only where the answer can change its verdict, so a statement the policy refuses
//! costs no catalog read.

use sluice_core::sql::{ObjectName, SqlAnalysis};
use sluice_mask::CatalogRules;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// An answer from the server, or why it could not be had (the engine then refuses: what it could
/// not check is not allowed).
pub type ServerAnswer<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

pub trait SqlServer: Sync {
    /// What the session's column rules reach through the database's views and functions (read
    /// afresh where `analysis` names one the last reading does not know), or `None` when the
    /// database holds no column a rule in scope covers: then there is nothing to check.
    fn reached<'a>(&'a self, analysis: &'a SqlAnalysis) -> ServerAnswer<'a, Option<Arc<CatalogRules>>>;

    /// The first of `called` (user-defined functions) that the server says may have effects beyond
    /// reading (PostgreSQL: marked VOLATILE), if any.
    fn may_write<'a>(&'a self, called: &'a [&'a ObjectName]) -> ServerAnswer<'a, Option<ObjectName>>;
}

impl std::fmt::Debug for dyn SqlServer + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlServer")
    }
}
