//! Wiring: each configured connection becomes the target of the adapter for its protocol.

use sluice_config::{ConnectionConfig, UpstreamTls};
use sluice_core::Protocol;
use sluice_engine::TargetPreparer;
use sluice_gate::Target;
use sluice_pg::{PgTarget, PgTargetOptions, UpstreamTlsMode};
use std::sync::Arc;

/// The adapters sluice has, as the engine prepares targets for them.
pub struct Targets;

impl TargetPreparer for Targets {
    fn prepare(&self, name: &str, conn: &ConnectionConfig) -> Result<Target, String> {
        match conn.protocol.as_str() {
            "postgres" => {
                let options = PgTargetOptions {
                    host: &conn.host,
                    port: conn.port,
                    database: conn.database_or(name),
                    user: &conn.user,
                    tls: match conn.tls {
                        UpstreamTls::Disable => UpstreamTlsMode::Disable,
                        UpstreamTls::Prefer => UpstreamTlsMode::Prefer,
                        UpstreamTls::Require => UpstreamTlsMode::Require,
                        UpstreamTls::VerifyCa => UpstreamTlsMode::VerifyCa,
                        UpstreamTls::VerifyFull => UpstreamTlsMode::VerifyFull,
                    },
                    ca_file: conn.ca_file.as_deref(),
                    tls_server_name: conn.tls_server_name.as_deref(),
                    search_path: &conn.search_path_setting(),
                };
                let target = PgTarget::prepare(options).map_err(|e| format!("upstream TLS: {e}"))?;
                Ok(Target::new(name, Protocol::Postgres, Arc::new(target)))
            }
            other => Err(format!("protocol {other:?} is not one sluice serves (it serves: postgres)")),
        }
    }
}
