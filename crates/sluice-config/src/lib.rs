//! sluice's configuration file: TOML types with their defaults, loading (relative paths are taken
//! from the config file's own directory) and validation that names the offending key.
#![forbid(unsafe_code)]

mod approvals;
mod types;
mod load;

pub use load::{load, parse, ConfigError};
pub use approvals::*;
pub use types::*;
