//! Who and where a rule applies: connection, identity and group globs, shared by policy rules and
//! masking rules so that both read a scope the same way.

use crate::Identity;
use crate::glob::glob_match;

#[derive(Clone, Debug, Default)]
pub struct RuleScope {
    /// Connection name globs; every connection when empty.
    pub connections: Vec<String>,
    /// Identity name and group globs: a caller matching either is in scope; everyone when both
    /// are empty.
    pub identities: Vec<String>,
    pub groups: Vec<String>,
}

impl RuleScope {
    pub fn contains(&self, identity: &Identity, connection: &str) -> bool {
        let connection_ok = self.connections.is_empty() || self.connections.iter().any(|c| glob_match(c, connection));
        connection_ok && self.covers_caller(identity)
    }

    /// Whether `identity` is in scope on some connection.
    pub fn covers_caller(&self, identity: &Identity) -> bool {
        (self.identities.is_empty() && self.groups.is_empty())
            || self.identities.iter().any(|i| glob_match(i, &identity.name))
            || self.groups.iter().any(|g| identity.groups.iter().any(|have| glob_match(g, have)))
    }
}
