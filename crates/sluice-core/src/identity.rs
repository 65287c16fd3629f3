//! The authenticated caller: a name and the groups it belongs to, as established by a token (later
//! also by an OIDC JWT).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
    /// The credential that proved it (a token id), for the audit trail; never the secret itself.
    pub credential_id: String,
}

impl Identity {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}
