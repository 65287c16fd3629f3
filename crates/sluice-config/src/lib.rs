//! sluice's configuration file: TOML types with their defaults, loading (relative paths are taken
//! from the config file's own directory) and validation that names the offending key.
#![forbid(unsafe_code)]

mod types;
mod load;

pub use load::{load, parse, ConfigError};
pub use types::*;
