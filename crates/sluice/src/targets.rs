//! Wiring: each configured connection becomes the target of the adapter for its protocol, which
//! checks its options.

use sluice_config::ConnectionConfig;
use sluice_core::Protocol;
use sluice_engine::{TargetFacts, TargetPreparer};
use sluice_gate::Target;
use sluice_http::{HttpConnectionOptions, HttpTarget};
use sluice_pg::{PgConnectionOptions, PgTarget, PostgresSql};
use sluice_ssh::{SshConnectionOptions, SshTarget};
use std::sync::Arc;

/// The adapters sluice has, as the engine prepares targets for them.
pub struct Targets;

/// The protocols sluice serves, as `protocol = "…"` names them.
const PROTOCOLS: &str = "postgres, http, ssh";

impl TargetPreparer for Targets {
    fn describe(&self, name: &str, conn: &ConnectionConfig) -> Result<TargetFacts, String> {
        match conn.protocol.as_str() {
            "postgres" => {
                let options = pg_options(conn)?;
                Ok(TargetFacts {
                    protocol: Protocol::Postgres,
                    sql_search_path: options.schemas(),
                    summary: options.summary(name),
                })
            }
            "http" => {
                let options: HttpConnectionOptions = conn.options_as()?;
                options.check(name)?;
                Ok(TargetFacts {
                    protocol: Protocol::Http,
                    sql_search_path: Vec::new(),
                    summary: options.summary(name),
                })
            }
            "ssh" => {
                let options: SshConnectionOptions = conn.options_as()?;
                options.check()?;
                Ok(TargetFacts { protocol: Protocol::Ssh, sql_search_path: Vec::new(), summary: options.summary(name) })
            }
            other => Err(unserved(other)),
        }
    }

    fn prepare(&self, name: &str, conn: &ConnectionConfig) -> Result<Target, String> {
        match conn.protocol.as_str() {
            "postgres" => {
                let target = PgTarget::prepare(name, &pg_options(conn)?)?;
                Ok(Target::new(name, Protocol::Postgres, Arc::new(target)).with_sql(Arc::new(PostgresSql)))
            }
            "http" => {
                let target = HttpTarget::prepare(name, &conn.options_as()?)?;
                Ok(Target::new(name, Protocol::Http, Arc::new(target)))
            }
            "ssh" => {
                let target = SshTarget::prepare(name, &conn.options_as()?)?;
                Ok(Target::new(name, Protocol::Ssh, Arc::new(Arc::new(target))))
            }
            other => Err(unserved(other)),
        }
    }
}

fn unserved(protocol: &str) -> String {
    format!("protocol: {protocol:?} is not one sluice serves (it serves: {PROTOCOLS})")
}

/// The PostgreSQL options of a connection, as the adapter reads and checks them.
fn pg_options(conn: &ConnectionConfig) -> Result<PgConnectionOptions, String> {
    let options: PgConnectionOptions = conn.options_as()?;
    options.check()?;
    Ok(options)
}

/// Reads the configuration file and checks everything in it, each connection's options by its
/// adapter.
pub fn load_config(path: &std::path::Path) -> Result<sluice_config::Config, sluice_config::ConfigError> {
    sluice_engine::compile::load(path, &Targets)
}
