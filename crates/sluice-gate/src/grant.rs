//! What opening a session gives an adapter: who, on which target, with which held credential, and
//! what it must do to the responses. The adapter builds its own upstream endpoint from it.

use crate::action::SqlLanguage;
use sluice_core::{Identity, Protocol, Secret};
use sluice_mask::SessionMasking;
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A session the engine agreed to open.
#[derive(Debug)]
pub struct SessionGrant {
    pub principal: Identity,
    pub target: Target,
    /// The credential sluice holds for the target (`None` when the upstream needs none).
    pub credential: Option<Secret>,
    pub obligations: Obligations,
}

/// A configured target, with the options its adapter prepared from the configuration (checked,
/// and with anything costly to build, such as a TLS client configuration, built once per reload).
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub protocol: Protocol,
    options: Arc<dyn Any + Send + Sync>,
    sql: Option<Arc<dyn SqlLanguage>>,
}

impl Target {
    pub fn new(name: impl Into<String>, protocol: Protocol, options: Arc<dyn Any + Send + Sync>) -> Target {
        Target { name: name.into(), protocol, options, sql: None }
    }

    /// A target whose requests are SQL, in the dialect `language` reads.
    pub fn with_sql(self, language: Arc<dyn SqlLanguage>) -> Target {
        Target { sql: Some(language), ..self }
    }

    /// The SQL dialect of the target; `None` when its requests are not SQL.
    pub fn sql(&self) -> Option<&Arc<dyn SqlLanguage>> {
        self.sql.as_ref()
    }

    /// The options as the adapter prepared them; `None` when they are of another adapter's type.
    pub fn options<T: Any>(&self) -> Option<&T> {
        self.options.downcast_ref()
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("name", &self.name).field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

/// What the adapter must do to every response of the session.
#[derive(Clone, Debug, Default)]
pub struct Obligations {
    /// Masking of results (and of what is recorded); `None` when nothing is to be masked.
    pub masking: Option<SessionMasking>,
    /// The upstream session must be opened read-only where the protocol has such a mode (a
    /// read-only preset applies and no access grant lifts it).
    pub read_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_hands_its_options_only_to_the_type_that_made_them() {
        let target = Target::new("shop", Protocol::Postgres, Arc::new(5432u16));
        assert_eq!(target.options::<u16>(), Some(&5432));
        assert_eq!(target.options::<String>(), None);
        assert!(format!("{target:?}").contains("shop"));
    }
}
