//! What a protocol adapter sees of sluice, and all it may depend on besides the parsing and masking
//! libraries: the actions it reduces requests to, the verdicts it applies, the grant a session opens
//! with, and the traits the engine implements. No bytes of any protocol live here.

pub mod action;
pub mod grant;
pub mod outcome;
pub mod server;
pub mod session;

pub use action::{Action, KubeAction, SqlAction, SqlLanguage, ToolAction};
pub use grant::{Obligations, SessionGrant, Target};
pub use outcome::{ActionDetail, Outcome};
pub use server::{ServerAnswer, SqlServer};
pub use session::{ClientInfo, Gate, OpenError, OpenRequest, Presented, SessionGate, SessionLog, Standing};
pub use sluice_core::advice::{Explanation, Permissions};
pub use sluice_core::exec::{self, ExecAction};
pub use sluice_core::http::{self, BodySummary, GraphqlKind, GraphqlOperation, HttpAction, HttpTargetError};
pub use sluice_core::{AuthOutcome, Decision, Hold, Identity, Protocol, Refusal, RefusalCause, Secret};
