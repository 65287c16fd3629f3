//! What a caller asks to do, protocol by protocol, and what the gateway decided about it.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
        }
    }
}

/// A request reduced to what policy needs to know. The statement text is borrowed from the wire buffer
/// so that deciding costs no copy.
#[derive(Clone, Debug)]
pub struct Action<'a> {
    pub protocol: Protocol,
    pub kind: ActionKind<'a>,
}

#[derive(Clone, Debug)]
pub enum ActionKind<'a> {
    /// Opening a session on a connection.
    Connect,
    /// One SQL message as the client sent it (a simple Query, or the text of a Parse).
    Statement { text: &'a str },
}

/// The gateway's answer to an Action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Refusal),
}

/// Why something was refused, written for the agent that must decide what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that decided (a policy rule name, or a built-in check such as `connect`).
    pub rule: String,
    pub reason: String,
    /// What matched.
    pub detail: Option<String>,
    /// The next step.
    pub hint: Option<String>,
}
