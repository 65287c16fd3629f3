//! sluice's configuration file: TOML types with their defaults, loading (relative paths are taken
//! from the config file's own directory) and validation that names the offending key.

mod approvals;
mod load;
mod sinks;
mod types;

pub use approvals::*;
pub use load::{ConfigError, load, parse};
pub use sinks::*;
pub use types::*;
