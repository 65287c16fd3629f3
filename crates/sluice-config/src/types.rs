//! The configuration types. Every key has a default except what cannot be guessed (a connection's
//! upstream); docs/configuration.md documents each one.

use crate::{AccessConfig, ApiConfig, ApprovalsConfig};
use serde::{Deserialize, Serialize};
use sluice_core::mask_spec::MaskingSpec;
use sluice_core::policy::{Effect, PolicySpec, Preset};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub postgres: PostgresListener,
    /// The HTTP listener (docs/http.md).
    #[serde(default)]
    pub http: HttpListener,
    /// The SSH listener (docs/ssh.md).
    #[serde(default)]
    pub ssh: SshListener,
    #[serde(default)]
    pub recording: RecordingConfig,
    /// The audit log's integrity: its signing key and how often checkpoints are signed
    /// (docs/audit.md).
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// SQL policy: rules, the default effect, extra side-effect functions (docs/policy.md).
    #[serde(default)]
    pub policy: PolicySpec,
    /// Masking of secrets and personal data in results (docs/masking.md).
    #[serde(default)]
    pub masking: MaskingSpec,
    /// The REST API (reviews and access grants; later the console).
    #[serde(default)]
    pub api: ApiConfig,
    /// Where reviews are announced (docs/approvals.md).
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// Named policies a just-in-time access grant switches to.
    #[serde(default)]
    pub access: AccessConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record every statement (text, timing, rows, outcome). Sessions and authentication attempts
    /// are always recorded; turning this off is meant for measuring what recording costs.
    pub statements: bool,
    /// How long events may gather before they are written together (milliseconds). Shorter makes
    /// recordings visible sooner; longer costs the store fewer commits.
    pub flush_interval_ms: u64,
    /// An action that can change state is forwarded only once its decision is durable in the audit
    /// log (docs/audit.md). Turning this off records changes in batches like reads, so a gateway
    /// killed at the wrong moment may lose the record of a change; it is meant for measuring what
    /// the guarantee costs.
    pub changes_before_forwarding: bool,
    /// The first rows of each statement's result kept with its record, as the client got them
    /// (masked by the detectors, and by the column rules in force for that session), for
    /// `sessions replay` and the exports. 0 (the default) keeps none.
    pub result_rows: usize,
    /// Bytes of those rows' values kept per statement, at most (a value is cut where it ends).
    pub result_max_bytes: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            statements: true,
            flush_interval_ms: 100,
            changes_before_forwarding: true,
            result_rows: 0,
            result_max_bytes: 1024,
        }
    }
}

/// The audit log's signed checkpoints and its exports.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The Ed25519 key (a PKCS#8 file) checkpoints are signed with; `sluice serve` creates it
    /// (mode 0600) when it does not exist. Default: `audit-signing.key` in the state directory.
    pub signing_key_file: Option<PathBuf>,
    /// A checkpoint is signed once this many records were appended since the last one...
    pub checkpoint_every: u64,
    /// ...or once this many seconds passed since it, if records were appended; and always when
    /// sluice stops.
    pub checkpoint_interval_s: u64,
    /// Where the log is exported, each sink at its own pace (docs/audit.md).
    pub sinks: Vec<crate::SinkConfig>,
    /// How long records are kept (docs/audit.md).
    pub retention: RetentionConfig,
}

/// The oldest records are removed once either limit is passed (and only once every sink has
/// delivered them); what remains starts from a signed anchor and still verifies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Records older than this many days are removed (0: kept whatever their age).
    pub max_age_days: u64,
    /// The log keeps at most this many records (0: no limit).
    pub max_records: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key_file: None,
            checkpoint_every: 1000,
            checkpoint_interval_s: 60,
            sinks: Vec::new(),
            retention: RetentionConfig::default(),
        }
    }
}

impl AuditConfig {
    pub fn signing_key_path(&self, server: &ServerConfig) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| server.state_dir.join("audit-signing.key"))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where sluice keeps its state: the SQLite store, the generated TLS certificate, the master key.
    pub state_dir: PathBuf,
    /// The master key that seals stored credentials: a file holding 64 hex digits. When neither this
    /// file exists nor `SLUICE_MASTER_KEY` is set, `sluice serve` creates it (mode 0600).
    pub master_key_file: Option<PathBuf>,
    /// `text` or `json` log lines on stderr.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `sluice_pg=debug,info`.
    pub log_level: String,
    /// Threads that run client sessions, each a single-threaded runtime; 0 means one per CPU.
    pub worker_threads: usize,
    /// Start even when other users can read the state directory or its files (only warn).
    pub allow_readable_state: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            state_dir: PathBuf::from(".sluice"),
            master_key_file: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            worker_threads: 0,
            allow_readable_state: false,
        }
    }
}

impl ServerConfig {
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("sluice.db")
    }
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file.clone().unwrap_or_else(|| self.state_dir.join("master.key"))
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresListener {
    /// Whether the PostgreSQL listener runs at all.
    pub enabled: bool,
    pub listen: String,
    /// TLS towards clients: `disable` (plaintext only), `allow` (TLS offered, plaintext accepted),
    /// `require` (plaintext refused).
    pub tls: ClientTls,
    /// PEM certificate chain and key; when absent a self-signed pair is generated in `state_dir` at
    /// first start and reused after.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The largest message a client may send (bytes); larger ones end the session with an error.
    pub max_message_bytes: u32,
    /// How long to wait for an upstream to accept a connection and authenticate.
    pub connect_timeout_secs: u64,
    /// How long a client has to finish TLS, startup and authentication.
    pub handshake_timeout_secs: u64,
    /// The most authenticated client sessions served at once; further ones are refused with
    /// SQLSTATE 53300. Clients still authenticating do not count.
    pub max_sessions: usize,
    /// The most clients authenticating at once; when full, the oldest idle handshake of the
    /// address holding the most is closed to admit a new one (see `sluice_pg`'s admission).
    pub max_unauthenticated: usize,
    /// The most clients authenticating at once from one address (its oldest is closed beyond).
    pub max_unauthenticated_per_source: usize,
}

impl Default for PostgresListener {
    fn default() -> Self {
        PostgresListener {
            enabled: true,
            listen: "127.0.0.1:6432".into(),
            tls: ClientTls::Allow,
            tls_cert: None,
            tls_key: None,
            max_message_bytes: 64 * 1024 * 1024,
            connect_timeout_secs: 10,
            handshake_timeout_secs: 10,
            max_sessions: 1000,
            max_unauthenticated: 512,
            max_unauthenticated_per_source: 128,
        }
    }
}

/// The listener agents reach HTTP connections on. It runs when at least one connection has
/// `protocol = "http"` at start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpListener {
    pub enabled: bool,
    pub listen: String,
    /// `disable` (clear text; meant for a loopback address) or `require` (TLS only, with
    /// `tls_cert`/`tls_key`, or the generated certificate the PostgreSQL listener uses).
    pub tls: ClientTls,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The largest request body read; larger ones get 413.
    pub max_request_body_bytes: usize,
    /// The largest response body (decoded) passed on, and the largest event of a stream; a larger
    /// body is refused with 502 (or cut, see `oversize`), never passed unmasked.
    pub max_response_body_bytes: usize,
    /// What becomes of a whole response body over `max_response_body_bytes`: `refuse` (502) or
    /// `truncate` (its beginning, cut at a line's end; JSON is refused all the same).
    pub oversize: Oversize,
    /// The most bytes of bodies held at once across all clients (request bodies, whole response
    /// bodies, a stream's held events); a body that would take more is refused with 503.
    pub max_buffered_bytes: usize,
    /// How long a client has to finish TLS and to send a request head once it has begun, and a
    /// new connection to make its first authenticated request.
    pub header_timeout_secs: u64,
    /// How long an HTTP/1 connection may wait for its next request while nothing is in flight
    /// (as nginx's `keepalive_timeout`, 75 s by default).
    pub idle_timeout_secs: u64,
    /// How long a client may leave sluice's writes to it waiting without taking a byte (as
    /// nginx's `send_timeout`, 60 s by default): a client that stops reading is let go.
    pub send_timeout_secs: u64,
    /// Authenticated client connections served at once.
    pub max_connections: usize,
    /// Connections that have not yet made an authenticated request, in all and from one
    /// address: when full, the oldest idle one is closed to admit a new one.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
}

impl Default for HttpListener {
    fn default() -> Self {
        HttpListener {
            enabled: true,
            listen: "127.0.0.1:6434".into(),
            tls: ClientTls::Disable,
            tls_cert: None,
            tls_key: None,
            max_request_body_bytes: 10 * 1024 * 1024,
            max_response_body_bytes: 32 * 1024 * 1024,
            oversize: Oversize::Refuse,
            max_buffered_bytes: 1024 * 1024 * 1024,
            header_timeout_secs: 10,
            idle_timeout_secs: 75,
            send_timeout_secs: 60,
            max_connections: 1000,
            max_unauthenticated: 512,
            max_unauthenticated_per_source: 128,
        }
    }
}

/// The listener agents reach SSH connections on. It runs when at least one connection has
/// `protocol = "ssh"` at start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshListener {
    pub enabled: bool,
    pub listen: String,
    /// sluice's own host key (Ed25519, OpenSSH format), generated on first start; default
    /// `ssh_host_ed25519_key` in the state directory.
    pub host_key: Option<PathBuf>,
    /// How long a client has to finish the handshake and authenticate.
    pub auth_timeout_secs: u64,
    /// Authentication attempts before the connection is closed.
    pub max_auth_attempts: usize,
    /// Clients not yet authenticated, in all and from one address.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
    /// Client connections served at once.
    pub max_connections: usize,
    /// How long reading one command line may take before it is refused.
    pub read_timeout_ms: u64,
}

impl Default for SshListener {
    fn default() -> Self {
        SshListener {
            enabled: true,
            listen: "127.0.0.1:2222".into(),
            host_key: None,
            auth_timeout_secs: 20,
            max_auth_attempts: 3,
            max_unauthenticated: 64,
            max_unauthenticated_per_source: 8,
            max_connections: 1000,
            read_timeout_ms: 2000,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    Refuse,
    Truncate,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientTls {
    Disable,
    Allow,
    Require,
}

/// A target sluice serves: sluice's own keys here, the protocol's options (host, user, TLS… for
/// PostgreSQL) in `options`, which the protocol's adapter checks (a key it does not know is an
/// error there, naming the key).
#[derive(Clone, Debug, Deserialize)]
pub struct ConnectionConfig {
    /// Which adapter serves it: `postgres` (the default).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Where the upstream password comes from: `env:VAR`, `file:PATH`, `stored` (sealed in the state
    /// store by `sluice credential set`), or `none` (the server trusts the user). A literal password
    /// is refused: it would end up in backups and diffs of this file.
    #[serde(default = "default_password_ref")]
    pub password: String,
    /// Who may open sessions on this connection. Both empty: every authenticated identity.
    #[serde(default)]
    pub allow_identities: Vec<String>,
    #[serde(default)]
    pub allow_groups: Vec<String>,
    /// A policy preset for everyone on this connection: `read-only`, `no-ddl` (SQL) or `no-admin`
    /// (HTTP).
    pub policy: Option<Preset>,
    /// The effect when no rule matches, overriding `policy.default` for this connection.
    pub default: Option<Effect>,
    /// The protocol's own options, for its adapter to check and use. A path in an option whose
    /// name ends in `_file` is relative to the configuration file.
    #[serde(flatten)]
    pub options: toml::Table,
}

/// The keys of a connection that are sluice's own, whatever its protocol.
pub(crate) const CONNECTION_KEYS: [&str; 6] =
    ["protocol", "password", "allow_identities", "allow_groups", "policy", "default"];

fn default_protocol() -> String {
    "postgres".into()
}
fn default_password_ref() -> String {
    "stored".into()
}

/// Where a held credential lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    Env(String),
    File(PathBuf),
    Stored,
    None,
}

impl ConnectionConfig {
    /// The protocol's options read as its adapter's type (which refuses keys it does not know);
    /// the error is serde's, naming the key.
    pub fn options_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        toml::Value::Table(self.options.clone()).try_into().map_err(|e: toml::de::Error| {
            let message = e.message().trim_end();
            match message.starts_with("unknown field") {
                true => format!("{message}, or one of sluice's own: {}", CONNECTION_KEYS.join(", ")),
                false => message.to_string(),
            }
        })
    }

    pub fn password_source(&self) -> Result<PasswordSource, String> {
        let value = self.password.trim();
        if let Some(var) = value.strip_prefix("env:") {
            if var.is_empty() {
                return Err("`env:` needs a variable name".into());
            }
            return Ok(PasswordSource::Env(var.to_string()));
        }
        if let Some(path) = value.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path".into());
            }
            return Ok(PasswordSource::File(PathBuf::from(path)));
        }
        match value {
            "stored" => Ok(PasswordSource::Stored),
            "none" => Ok(PasswordSource::None),
            _ => Err("must be `env:VAR`, `file:PATH`, `stored` or `none`; a literal password is not accepted \
                      (store it with `sluice credential set`)"
                .into()),
        }
    }

    pub fn permits(&self, identity: &str, groups: &[String]) -> bool {
        if self.allow_identities.is_empty() && self.allow_groups.is_empty() {
            return true;
        }
        self.allow_identities.iter().any(|i| i == identity) || groups.iter().any(|g| self.allow_groups.contains(g))
    }
}
