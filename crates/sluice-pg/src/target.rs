//! A PostgreSQL target: its options as `[connections.NAME]` gives them (checked here, by the
//! adapter, not by the configuration crate), and what is prepared from them once per reload.

use crate::upstream::{PgEndpoint, UpstreamTls, UpstreamTlsMode};
use serde::Deserialize;
use sluice_core::Secret;
use sluice_core::sql::SqlAnalysis;
use sluice_gate::SqlLanguage;
use std::path::PathBuf;

/// The PostgreSQL options of a connection; every other key of `[connections.NAME]` is sluice's
/// own (protocol, password, who may use it, policy preset and default).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConnectionOptions {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The upstream database; defaults to the connection's name.
    pub database: Option<String>,
    pub user: String,
    /// TLS towards the upstream, with libpq's meanings: `disable`, `prefer`, `require` (encrypted,
    /// not verified), `verify-ca`, `verify-full`.
    #[serde(default)]
    pub tls: UpstreamTlsMode,
    /// PEM bundle of CAs trusted for `verify-ca` / `verify-full` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// The name checked against the upstream certificate; defaults to `host`.
    pub tls_server_name: Option<String>,
    /// The upstream session's search_path, pinned at connect; unqualified names in statements are
    /// matched against these schemas (and pg_catalog, pg_temp). `$user` is the upstream user.
    #[serde(default = "default_search_path")]
    pub search_path: Vec<String>,
}

fn default_port() -> u16 {
    5432
}

fn default_search_path() -> Vec<String> {
    vec!["$user".into(), "public".into()]
}

impl PgConnectionOptions {
    /// Checks what the types alone do not; the error names the key at fault.
    pub fn check(&self) -> Result<(), String> {
        if self.host.is_empty() {
            return Err("host: must not be empty".into());
        }
        if self.user.is_empty() {
            return Err("user: must not be empty".into());
        }
        if self.search_path.is_empty() || self.search_path.iter().any(|s| s.is_empty()) {
            return Err("search_path: list at least one schema, none empty".into());
        }
        Ok(())
    }

    /// The database sessions on connection `name` open.
    pub fn database_or<'a>(&'a self, name: &'a str) -> &'a str {
        self.database.as_deref().unwrap_or(name)
    }

    /// The schemas unqualified names resolve to, `$user` replaced by the upstream user: what the
    /// SQL policy matches unqualified names against.
    pub fn schemas(&self) -> Vec<String> {
        self.search_path.iter().map(|s| if s == "$user" { self.user.clone() } else { s.clone() }).collect()
    }

    /// The search_path as a setting value: plain lower-case names as they are, others quoted.
    pub fn search_path_setting(&self) -> String {
        let plain = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        self.search_path
            .iter()
            .map(|s| if plain(s) { s.clone() } else { format!("\"{}\"", s.replace('"', "\"\"")) })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line for an operator: `user@host:port/database (upstream TLS mode)`.
    pub fn summary(&self, name: &str) -> String {
        let (user, host, port, database) = (&self.user, &self.host, self.port, self.database_or(name));
        format!("{user}@{host}:{port}/{database} (upstream TLS {})", self.tls.as_str())
    }
}

/// A PostgreSQL target prepared once per reload (its TLS client configuration built): what every
/// session on it needs besides the grant.
#[derive(Clone, Debug)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub tls: UpstreamTls,
    /// The search_path pinned in every session, as a setting value.
    pub search_path: String,
}

impl PgTarget {
    /// Checks connection `name`'s options and builds its TLS client configuration.
    pub fn prepare(name: &str, options: &PgConnectionOptions) -> Result<PgTarget, String> {
        use crate::tls::{Verification, client_config};
        options.check()?;
        let verification = match options.tls {
            UpstreamTlsMode::Disable => None,
            UpstreamTlsMode::Prefer | UpstreamTlsMode::Require => Some(Verification::None),
            UpstreamTlsMode::VerifyCa => Some(Verification::Chain),
            UpstreamTlsMode::VerifyFull => Some(Verification::Full),
        };
        let config = verification
            .map(|v| client_config(v, options.ca_file.as_deref()))
            .transpose()
            .map_err(|e| format!("upstream TLS: {e}"))?;
        let server_name = options.tls_server_name.clone().unwrap_or_else(|| options.host.clone());
        Ok(PgTarget {
            host: options.host.clone(),
            port: options.port,
            database: options.database_or(name).to_string(),
            user: options.user.clone(),
            tls: UpstreamTls { mode: options.tls, config, server_name },
            search_path: options.search_path_setting(),
        })
    }

    /// The endpoint of one session: this target, the credential sluice holds for it (`password`),
    /// the settings sluice pins, and the grant's obligations.
    pub fn endpoint(&self, password: Option<Secret>, obligations: sluice_gate::Obligations) -> PgEndpoint {
        let mut settings = vec![
            ("standard_conforming_strings".to_string(), "on".to_string()),
            // Statements are parsed as UTF-8: the server must read them the same way.
            ("client_encoding".to_string(), "UTF8".to_string()),
            ("search_path".to_string(), self.search_path.clone()),
        ];
        if obligations.read_only {
            settings.push(("default_transaction_read_only".into(), "on".into()));
        }
        PgEndpoint {
            host: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
            user: self.user.clone(),
            password,
            tls: self.tls.clone(),
            settings,
            masking: obligations.masking,
        }
    }
}

/// PostgreSQL's SQL, as the engine asks for it (see `SqlLanguage`): PostgreSQL's own grammar,
/// through libpg_query.
pub struct PostgresSql;

impl SqlLanguage for PostgresSql {
    fn analyze(&self, text: &str) -> SqlAnalysis {
        sluice_sql::analyze(text)
    }

    fn canonical(&self, text: &str) -> String {
        sluice_sql::canonical(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(text: &str) -> Result<PgConnectionOptions, String> {
        let options: PgConnectionOptions = toml::from_str(text).map_err(|e| e.message().to_string())?;
        options.check().map(|()| options)
    }

    #[test]
    fn defaults_and_the_search_path_as_policy_and_setting_see_it() {
        let o = options("host = 'db'\nuser = 'app'").unwrap();
        assert_eq!((o.port, o.tls, o.database_or("shop")), (5432, UpstreamTlsMode::Prefer, "shop"));
        assert_eq!(o.schemas(), ["app", "public"]);
        assert_eq!(o.search_path_setting(), "\"$user\", public");
        assert_eq!(o.summary("shop"), "app@db:5432/shop (upstream TLS prefer)");
    }

    #[test]
    fn unknown_keys_and_empty_values_are_refused_by_name() {
        let typo = options("host = 'db'\nuser = 'app'\nsearchpath = ['x']").unwrap_err();
        assert!(typo.contains("unknown field `searchpath`"), "{typo}");
        assert!(options("host = ''\nuser = 'app'").unwrap_err().starts_with("host:"));
        assert!(options("host = 'db'\nuser = 'app'\nsearch_path = []").unwrap_err().starts_with("search_path:"));
        assert!(options("host = 'db'\nuser = 'app'\ntls = 'maybe'").unwrap_err().contains("unknown variant"));
    }
}
