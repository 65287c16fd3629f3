//! `[[audit.sinks]]`: where the audit log is exported (a file or stdout, syslog, an HTTP
//! endpoint), in which schema, and what happens when a sink falls too far behind.

use serde::{Deserialize, Deserializer};
use std::path::PathBuf;

/// One export of the audit log. The settings every sink has are read first; what is left must be
/// exactly the settings of its `kind`, so a setting of another kind is an error, not ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    /// Names the sink in logs and metrics, and keys its place in the log (its cursor) in the
    /// store: renaming a sink starts it again from the oldest record kept.
    pub name: String,
    pub format: ExportFormat,
    /// How many records the sink may fall behind the log before `on_backlog_full` applies.
    pub max_backlog: u64,
    pub on_backlog_full: BacklogFull,
    pub kind: SinkKind,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Elastic Common Schema documents (docs/audit.md maps every event kind).
    #[default]
    Ecs,
    /// The chained record exactly as stored, with its hash: a receiver can verify the chain.
    Sluice,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BacklogFull {
    /// Skip the oldest records the sink has not received (they stay in the log).
    #[default]
    DropOldest,
    /// Refuse new sessions until the sink has caught up below its cap.
    RefuseSessions,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkKind {
    File(FileSink),
    Stdout(StdoutSink),
    Syslog(SyslogSink),
    Http(HttpSink),
}

impl SinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Stdout(_) => "stdout",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Http(_) => "http",
        }
    }
}

/// JSON lines appended to a file, rotated by size and by age.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    pub path: PathBuf,
    /// Rotate once the file holds this many bytes (0: never by size).
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// Rotate once the file is this many seconds old (0: never by age).
    #[serde(default)]
    pub rotate_interval_s: u64,
    /// Rotated files kept (the oldest beyond are deleted).
    #[serde(default = "default_keep")]
    pub keep: usize,
}

/// JSON lines on standard output (for a container's log collector).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSink {}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    /// RFC 5426: a datagram a record.
    Udp,
    /// RFC 6587, octet counting.
    Tcp,
    /// RFC 5425: octet counting over TLS.
    Tls,
}

/// RFC 5424 messages to a syslog receiver.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    /// `host:port` of the receiver.
    pub address: String,
    pub transport: SyslogTransport,
    /// The RFC 5424 facility: a name (`audit`, `auth`, `authpriv`, `local0`…`local7`, …).
    #[serde(default = "default_facility")]
    pub facility: String,
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Messages are cut to this size (the statement's text is shortened, and the document says
    /// so); rsyslog's default limit is 8 KiB.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// TLS: the CA certificates (PEM) the receiver's certificate must chain to; default: the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// TLS: the name the receiver's certificate must carry; default: the host of `address`.
    pub server_name: Option<String>,
}

/// Batches of JSON lines POSTed to an HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    pub url: String,
    /// Sent as `Authorization: Bearer <the file's content>`.
    pub bearer_token_file: Option<PathBuf>,
    /// Records per request, at most.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// How long a partial batch may wait for more records (milliseconds).
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// A request not answered within this is failed and retried.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// The CA certificates (PEM) an https receiver's certificate must chain to; default: the
    /// system's.
    pub ca_file: Option<PathBuf>,
}

fn default_rotate_bytes() -> u64 {
    100 << 20
}
fn default_keep() -> usize {
    10
}
fn default_facility() -> String {
    "audit".into()
}
fn default_app_name() -> String {
    "sluice".into()
}
fn default_max_message_bytes() -> usize {
    8192
}
fn default_batch_max() -> usize {
    500
}
fn default_batch_wait_ms() -> u64 {
    1000
}
fn default_timeout_s() -> u64 {
    10
}
pub const DEFAULT_MAX_BACKLOG: u64 = 1_000_000;

/// The RFC 5424 facility codes by name.
pub const SYSLOG_FACILITIES: [(&str, u8); 24] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("audit", 13),
    ("alert", 14),
    ("clock", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let mut common = |key: &str| table.remove(key);
        let name = match common("name") {
            Some(toml::Value::String(name)) => name,
            Some(_) => return Err(D::Error::custom("`name` is a string")),
            None => return Err(D::Error::custom("every sink needs a `name`")),
        };
        fn setting<T: serde::de::DeserializeOwned, E: Error>(
            value: Option<toml::Value>,
            key: &str,
        ) -> Result<Option<T>, E> {
            value.map(|v| v.try_into().map_err(|e| E::custom(format!("{key}: {e}")))).transpose()
        }
        let in_sink = |e: D::Error| D::Error::custom(format!("sink {name:?}: {e}"));
        let format = setting(common("format"), "format").map_err(in_sink)?.unwrap_or_default();
        let max_backlog =
            setting(common("max_backlog"), "max_backlog").map_err(in_sink)?.unwrap_or(DEFAULT_MAX_BACKLOG);
        let on_backlog_full =
            setting(common("on_backlog_full"), "on_backlog_full").map_err(in_sink)?.unwrap_or_default();
        let kind = toml::Value::Table(table).try_into().map_err(|e| D::Error::custom(format!("sink {name:?}: {e}")))?;
        Ok(SinkConfig { name, format, max_backlog, on_backlog_full, kind })
    }
}
