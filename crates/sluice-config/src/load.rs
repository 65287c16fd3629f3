//! Reading, resolving and validating a config file.

use crate::{Config, PasswordSource, SinkConfig, SinkKind};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

/// Loads a config file; relative paths inside it are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut config = parse(&text, path)?;
    resolve_paths(&mut config, &base);
    Ok(config)
}

/// Parses and validates config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let config: Config =
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.into(), message: e.to_string() })?;
    validate(&config, origin)?;
    Ok(config)
}

fn resolve_paths(config: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    fix(&mut config.server.state_dir);
    config.server.master_key_file.as_mut().map(fix);
    config.audit.signing_key_file.as_mut().map(fix);
    config.postgres.tls_cert.as_mut().map(fix);
    for sink in &mut config.audit.sinks {
        match &mut sink.kind {
            SinkKind::File(file) => fix(&mut file.path),
            SinkKind::Syslog(syslog) => _ = syslog.ca_file.as_mut().map(fix),
            SinkKind::Http(http) => {
                http.ca_file.as_mut().map(fix);
                http.bearer_token_file.as_mut().map(fix);
            }
            SinkKind::Stdout(_) => {}
        }
    }
    config.postgres.tls_key.as_mut().map(fix);
    for conn in config.connections.values_mut() {
        // Every protocol's file options (`ca_file`, later key files) are relative to this file.
        for (key, value) in conn.options.iter_mut() {
            if let (true, toml::Value::String(path)) = (key.ends_with("_file"), &mut *value)
                && Path::new(path.as_str()).is_relative()
            {
                *path = base.join(&*path).display().to_string();
            }
        }
        if let Ok(PasswordSource::File(p)) = conn.password_source()
            && p.is_relative()
        {
            conn.password = format!("file:{}", base.join(p).display());
        }
    }
}

fn validate(config: &Config, origin: &Path) -> Result<(), ConfigError> {
    let invalid = |key: String, message: String| ConfigError::Invalid { path: origin.into(), key, message };
    let pg = &config.postgres;
    if pg.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(invalid("postgres.listen".into(), format!("{:?} is not an address:port", pg.listen)));
    }
    if pg.tls_cert.is_some() != pg.tls_key.is_some() {
        return Err(invalid("postgres.tls_cert".into(), "tls_cert and tls_key go together".into()));
    }
    if pg.max_message_bytes < 1024 {
        return Err(invalid("postgres.max_message_bytes".into(), "must be at least 1024".into()));
    }
    if pg.max_sessions == 0 {
        return Err(invalid("postgres.max_sessions".into(), "must be at least 1".into()));
    }
    if pg.max_unauthenticated == 0 || pg.max_unauthenticated_per_source == 0 {
        return Err(invalid("postgres.max_unauthenticated".into(), "the handshake budgets must be at least 1".into()));
    }
    let http = &config.http;
    if http.max_connections == 0 || http.max_unauthenticated == 0 || http.max_unauthenticated_per_source == 0 {
        return Err(invalid(
            "http.max_connections".into(),
            "max_connections, max_unauthenticated and max_unauthenticated_per_source must be at least 1".into(),
        ));
    }
    if http.header_timeout_secs == 0 || http.idle_timeout_secs == 0 || http.send_timeout_secs == 0 {
        return Err(invalid(
            "http.header_timeout_secs".into(),
            "header_timeout_secs, idle_timeout_secs and send_timeout_secs must be at least 1: with 0 no client could keep a connection"
                .into(),
        ));
    }
    if http.max_buffered_bytes < http.max_request_body_bytes.max(http.max_response_body_bytes) {
        return Err(invalid(
            "http.max_buffered_bytes".into(),
            "must be at least max_request_body_bytes and max_response_body_bytes: a body the caps allow fits alone"
                .into(),
        ));
    }
    for (name, conn) in &config.connections {
        let key = |k: &str| format!("connections.{name}.{k}");
        if !is_name(name) {
            return Err(invalid(
                format!("connections.{name}"),
                "a connection name uses letters, digits, `_` and `-`".into(),
            ));
        }
        conn.password_source().map_err(|m| invalid(key("password"), m))?;
    }
    let mut names = std::collections::HashSet::new();
    for access in &config.access.policies {
        if access.name.trim().is_empty() || !names.insert(access.name.as_str()) {
            return Err(invalid(
                "access.policies".into(),
                format!("every access policy needs a name of its own ({:?})", access.name),
            ));
        }
    }
    if config.api.enabled && config.api.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(invalid("api.listen".into(), format!("{:?} is not an address:port", config.api.listen)));
    }
    let mut sinks = std::collections::HashSet::new();
    for (i, sink) in config.audit.sinks.iter().enumerate() {
        if !sinks.insert(sink.name.as_str()) {
            return Err(invalid(format!("audit.sinks[{i}].name"), format!("{:?} names two sinks", sink.name)));
        }
        validate_sink(sink).map_err(|(key, message)| invalid(format!("audit.sinks[{i}].{key}"), message))?;
    }
    for (i, hook) in config.approvals.webhooks.iter().enumerate() {
        if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
            return Err(invalid(format!("approvals.webhooks[{i}].url"), "must be an http:// or https:// URL".into()));
        }
        if let Some(e) = hook.events.iter().find(|e| !crate::WEBHOOK_EVENTS.contains(&e.as_str())) {
            return Err(invalid(
                format!("approvals.webhooks[{i}].events"),
                format!("{e:?} is not one of {}", crate::WEBHOOK_EVENTS.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A name of the configuration's own (a connection's, a sink's): letters, digits, `_` and `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether an `http://` URL names this machine (its traffic never leaves it).
fn loopback_url(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or_default();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A sink's settings that its type cannot check: the setting at fault and what is wrong.
fn validate_sink(sink: &SinkConfig) -> Result<(), (&'static str, String)> {
    if !is_name(&sink.name) {
        return Err(("name", "a sink name uses letters, digits, `_` and `-`".into()));
    }
    if sink.max_backlog == 0 {
        return Err(("max_backlog", "must be at least 1".into()));
    }
    match &sink.kind {
        SinkKind::Syslog(syslog) => {
            if !crate::SYSLOG_FACILITIES.iter().any(|(name, _)| *name == syslog.facility) {
                let names: Vec<&str> = crate::SYSLOG_FACILITIES.iter().map(|(name, _)| *name).collect();
                return Err(("facility", format!("{:?} is not one of {}", syslog.facility, names.join(", "))));
            }
            if syslog
                .address
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(("address", format!("{:?} is not host:port", syslog.address)));
            }
            if syslog.max_message_bytes < 1024 {
                return Err(("max_message_bytes", "must be at least 1024".into()));
            }
            if syslog.app_name.is_empty()
                || syslog.app_name.len() > 48
                || !syslog.app_name.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(("app_name", "1 to 48 printable ASCII characters, no spaces (RFC 5424)".into()));
            }
        }
        SinkKind::Http(http) => {
            if !(http.url.starts_with("http://") || http.url.starts_with("https://")) {
                return Err(("url", "must be an http:// or https:// URL".into()));
            }
            if http.bearer_token_file.is_some() && !http.url.starts_with("https://") && !loopback_url(&http.url) {
                return Err((
                    "bearer_token_file",
                    "a bearer token is sent over https://, or over http:// to this machine only (127.0.0.1, [::1], \
                     localhost)"
                        .into(),
                ));
            }
            if http.batch_max == 0 {
                return Err(("batch_max", "must be at least 1".into()));
            }
            if http.timeout_s == 0 {
                return Err(("timeout_s", "must be at least 1".into()));
            }
        }
        SinkKind::File(_) | SinkKind::Stdout(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientTls;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse_str(
            r#"
            [connections.shop]
            host = "127.0.0.1"
            user = "app"
            password = "env:SHOP_PW"
            "#,
        )
        .unwrap();
        assert_eq!(c.postgres.listen, "127.0.0.1:6432");
        assert_eq!(c.postgres.tls, ClientTls::Allow);
        let shop = &c.connections["shop"];
        assert_eq!(shop.protocol, "postgres");
        assert_eq!(shop.password_source().unwrap(), PasswordSource::Env("SHOP_PW".into()));
        // The protocol's own options are left for its adapter to check.
        assert_eq!(shop.options["host"].as_str(), Some("127.0.0.1"));
        assert_eq!(shop.options["user"].as_str(), Some("app"));
        assert!(!shop.options.contains_key("password"));
    }

    #[test]
    fn file_options_of_every_protocol_are_relative_to_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sluice.toml");
        let text = "[connections.shop]\nhost = \"h\"\nuser = \"u\"\nca_file = \"ca.pem\"\nkey_file = \"/abs/k\"\n\
                    note = \"ca.pem\"\npassword = \"file:pw\"\n";
        std::fs::write(&path, text).unwrap();
        let config = load(&path).unwrap();
        let shop = &config.connections["shop"];
        assert_eq!(shop.options["ca_file"].as_str(), Some(dir.join("ca.pem").to_str().unwrap()));
        assert_eq!(shop.options["key_file"].as_str(), Some("/abs/k"));
        assert_eq!(shop.options["note"].as_str(), Some("ca.pem"), "only *_file options are paths");
        assert_eq!(shop.password_source().unwrap(), PasswordSource::File(dir.join("pw")));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sluices_own_connection_keys_are_never_handed_to_the_adapter() {
        let text = r#"
            [connections.shop]
            protocol = "postgres"
            password = "none"
            allow_identities = ["a"]
            allow_groups = ["g"]
            policy = "read-only"
            default = "deny"
            host = "h"
            "#;
        // Every key the adapter's "unknown field" errors list as sluice's own is set above …
        for key in crate::types::CONNECTION_KEYS {
            assert!(text.contains(&format!("\n            {key} = ")), "{key} is not exercised");
        }
        // … and none of them reaches the adapter's options.
        let c = parse_str(text).unwrap();
        assert_eq!(c.connections["shop"].options.keys().collect::<Vec<_>>(), ["host"]);
    }

    #[test]
    fn literal_passwords_are_refused_with_the_key_named() {
        let err = parse_str(
            r#"
            [connections.shop]
            host = "h"
            user = "u"
            password = "s3cret"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("connections.shop.password"), "{err}");
        assert!(!err.contains("s3cret"), "the error must not echo the value: {err}");
    }

    #[test]
    fn unknown_keys_and_bad_addresses_are_errors() {
        assert!(parse_str("[postgres]\nlisten = \"nowhere\"").is_err());
        assert!(parse_str("[postgres]\nlisen = \"127.0.0.1:1\"").is_err());
        assert!(parse_str("[connections.\"a b\"]\nhost=\"h\"\nuser=\"u\"").is_err());
    }

    #[test]
    fn the_http_budget_holds_at_least_one_body_of_each_cap() {
        let base = "[connections.api]\nprotocol = \"http\"\nurl = \"http://127.0.0.1:9\"\n[http]\n";
        let e = parse_str(&format!("{base}max_buffered_bytes = 1000\nmax_request_body_bytes = 2000\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.max_buffered_bytes"), "{e}");
        let c = parse_str(&format!(
            "{base}max_buffered_bytes = 2000\nmax_request_body_bytes = 2000\nmax_response_body_bytes = 1000\n"
        ))
        .unwrap();
        assert_eq!(c.http.max_buffered_bytes, 2000);
        assert_eq!(parse_str(base).unwrap().http.max_buffered_bytes, 1 << 30);
    }

    #[test]
    fn the_http_timeouts_are_at_least_a_second() {
        let base = "[http]\n";
        for zero in ["header_timeout_secs = 0", "idle_timeout_secs = 0", "send_timeout_secs = 0"] {
            let e = parse_str(&format!("{base}{zero}\n")).unwrap_err().to_string();
            assert!(e.contains("at least 1"), "{e}");
        }
        assert_eq!(parse_str(base).unwrap().http.idle_timeout_secs, 75);
        assert_eq!(parse_str(base).unwrap().http.send_timeout_secs, 60);
    }

    #[test]
    fn access_policy_names_and_webhooks_are_checked() {
        let base = "[connections.shop]\nhost = \"h\"\nuser = \"u\"\n";
        let err = |extra: &str| parse_str(&format!("{base}{extra}")).unwrap_err().to_string();
        let e = err("[[access.policies]]\nname = \"a\"\n[[access.policies]]\nname = \"a\"\n");
        assert!(e.contains("access.policies"), "{e}");
        let e = err("[approvals]\nwebhooks = [{ url = \"ftp://x\" }]\n");
        assert!(e.contains("approvals.webhooks[0].url"), "{e}");
    }

    #[test]
    fn access_lists() {
        let c = parse_str(
            r#"
            [connections.shop]
            host = "h"
            user = "u"
            allow_groups = ["agents"]
            "#,
        )
        .unwrap();
        let shop = &c.connections["shop"];
        assert!(shop.permits("x", &["agents".into()]));
        assert!(!shop.permits("x", &["other".into()]));
    }

    #[test]
    fn audit_sinks_take_their_own_kinds_settings_and_nothing_else() {
        let err = |text: &str| parse_str(text).unwrap_err().to_string();
        let c = parse_str(
            r#"
            [[audit.sinks]]
            name = "siem"
            kind = "http"
            url = "https://siem.example/ingest"
            on_backlog_full = "refuse_sessions"

            [[audit.sinks]]
            name = "archive"
            kind = "file"
            path = "audit.jsonl"
            format = "sluice"

            [[audit.sinks]]
            name = "rsyslog"
            kind = "syslog"
            transport = "tls"
            address = "logs.example:6514"
            "#,
        )
        .unwrap();
        let [siem, archive, rsyslog] = &c.audit.sinks[..] else { panic!("{:?}", c.audit.sinks) };
        assert_eq!((siem.on_backlog_full, siem.max_backlog), (crate::BacklogFull::RefuseSessions, 1_000_000));
        let crate::SinkKind::Http(http) = &siem.kind else { panic!("{siem:?}") };
        assert_eq!((http.batch_max, http.batch_wait_ms, http.timeout_s), (500, 1000, 10));
        assert_eq!(archive.format, crate::ExportFormat::Sluice);
        let crate::SinkKind::Syslog(syslog) = &rsyslog.kind else { panic!("{rsyslog:?}") };
        assert_eq!((syslog.facility.as_str(), syslog.max_message_bytes), ("audit", 8192));

        let sink = |body: &str| err(&format!("[[audit.sinks]]\n{body}\n"));
        let e = sink("name = \"f\"\nkind = \"file\"\npath = \"a\"\nurl = \"http://x\"");
        assert!(e.contains("unknown field `url`"), "{e}");
        let e = sink("kind = \"stdout\"");
        assert!(e.contains("every sink needs a `name`"), "{e}");
        let e = sink("name = \"s\"\nkind = \"kafka\"");
        assert!(e.contains("sink \"s\"") && e.contains("kafka"), "{e}");
        let e = sink("name = \"s\"\nkind = \"syslog\"\ntransport = \"udp\"\naddress = \"nohost\"");
        assert!(e.contains("audit.sinks[0].address"), "{e}");
        let e = sink("name = \"s\"\nkind = \"syslog\"\ntransport = \"udp\"\naddress = \"h:514\"\nfacility = \"mail2\"");
        assert!(e.contains("audit.sinks[0].facility"), "{e}");
        let e = sink("name = \"s\"\nkind = \"stdout\"\non_backlog_full = \"panic\"");
        assert!(e.contains("on_backlog_full"), "{e}");
        let e =
            err("[[audit.sinks]]\nname = \"s\"\nkind = \"stdout\"\n[[audit.sinks]]\nname = \"s\"\nkind = \"stdout\"\n");
        assert!(e.contains("names two sinks"), "{e}");
    }
}
