//! An HTTP connection's options (`protocol = "http"`), checked, and what every session on it
//! shares once prepared: the upstream's base URL, the pooled client with its TLS settings, how the
//! held credential is presented, and what of a response is always masked.

use crate::archive::Archives;
use crate::continuity::StreamPaths;
use crate::mask::Sensitive;
use crate::oauth::TokenCache;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The keys of `[connections.NAME]` for `protocol = "http"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectionOptions {
    /// The upstream's base URL (`https://billing.internal:8443/api`): a request for `/v1/x` on
    /// this connection goes to `https://billing.internal:8443/api/v1/x`.
    pub url: String,
    /// The path prefix agents reach it under on sluice's listener; default `/<connection name>`.
    pub prefix: Option<String>,
    /// Host names agents may reach it by instead (`billing.sluice.internal`): the whole path is
    /// then the upstream's.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How the held credential is presented: `bearer` (default), `basic` (with `username`),
    /// `header` (the value in the header named by `header`), `oauth2` (client credentials:
    /// `token_url`, `client_id`, `scopes`; the held credential is the client secret), `none`.
    #[serde(default = "default_auth")]
    pub auth: String,
    pub username: Option<String>,
    pub header: Option<String>,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// CA certificates (PEM) the upstream's certificate must chain to; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// The name the upstream's certificate must carry, when not the URL's host.
    pub server_name: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// How long the upstream has to answer with a status line.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Paths (of the upstream) that take GraphQL: their operations are parsed and matched.
    #[serde(default = "default_graphql_paths")]
    pub graphql_paths: Vec<String>,
    /// JSON keys whose values are masked in responses whatever they hold (any depth, any case).
    #[serde(default)]
    pub sensitive_keys: Vec<String>,
    /// JSON pointers masked in responses (`*` stands for any one key or index: `/data/*/card`).
    #[serde(default)]
    pub sensitive_pointers: Vec<String>,
    /// JSON pointers whose strings continue one another from event to event of a stream (a
    /// language model's text deltas): read joined, so that a secret split across events is found.
    #[serde(default = "default_stream_text")]
    pub stream_text: Vec<String>,
    /// What becomes of a response that is an archive, a compressed file or a PDF where anything
    /// is masked: `refuse` (502; the default: its text cannot be read to mask it) or `pass`
    /// (unopened, so unmasked).
    #[serde(default)]
    pub archives: Archives,
}

/// Where the streaming APIs agents call most put their text deltas: OpenAI's chat (content,
/// reasoning, refusal, tool-call arguments), completions and responses, Anthropic (text,
/// thinking, a tool call's JSON), Gemini, Ollama (content, thinking), Hugging Face's text
/// generation. A model's tool-call arguments and reasoning hold what it read as much as its
/// answer does.
pub(crate) fn default_stream_text() -> Vec<String> {
    [
        "/choices/*/delta/content",
        "/choices/*/delta/reasoning_content",
        "/choices/*/delta/reasoning",
        "/choices/*/delta/refusal",
        "/choices/*/delta/tool_calls/*/function/arguments",
        "/choices/*/delta/function_call/arguments",
        "/choices/*/text",
        "/delta",
        "/delta/text",
        "/delta/thinking",
        "/delta/partial_json",
        "/candidates/*/content/parts/*/text",
        "/message/content",
        "/message/thinking",
        "/response",
        "/thinking",
        "/token/text",
    ]
    .map(String::from)
    .to_vec()
}

fn default_auth() -> String {
    "bearer".into()
}
fn default_connect_timeout() -> u64 {
    5000
}
fn default_timeout() -> u64 {
    30
}
fn default_graphql_paths() -> Vec<String> {
    vec!["/graphql".into()]
}

/// How the held credential goes upstream.
#[derive(Clone, Debug)]
pub enum Presentation {
    None,
    Bearer,
    Basic { username: String },
    Header { name: hyper::header::HeaderName },
    OAuth2(Arc<TokenCache>),
}

impl HttpConnectionOptions {
    /// Checks the options without reading files or the network.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let uri: Uri = self.url.parse().map_err(|e| format!("url: {:?} is not a URL: {e}", self.url))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(format!("url: {:?} must start with http:// or https://", self.url)),
        }
        if uri.host().is_none() {
            return Err(format!("url: {:?} has no host", self.url));
        }
        if uri.query().is_some() {
            return Err("url: a base URL cannot have a query".into());
        }
        let prefix = self.prefix_or(name);
        let prefix = prefix.as_str();
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
            return Err(format!(
                "prefix: {prefix:?} must start with '/', name at least one segment, and not end with '/'"
            ));
        }
        sluice_core::http::normalise_path(prefix)
            .ok()
            .filter(|n| n == prefix)
            .ok_or_else(|| format!("prefix: {prefix:?} must be a plain path (no '.', '..', '//' or escapes)"))?;
        for host in &self.hosts {
            if host.is_empty() || host.contains([':', '/', ' ']) {
                return Err(format!("hosts: {host:?} must be a host name without a port"));
            }
        }
        match self.auth.as_str() {
            "none" | "bearer" => {}
            "basic" if self.username.is_some() => {}
            "basic" => return Err("auth = \"basic\" needs username".into()),
            "header" => {
                let header = self.header.as_deref().ok_or("auth = \"header\" needs header (its name)")?;
                let name = hyper::header::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("header: {header:?} is not a header name"))?;
                if crate::forward::is_hop_by_hop(&name) || name == hyper::header::HOST {
                    return Err(format!("header: {header:?} cannot carry a credential"));
                }
            }
            "oauth2" => {
                let url = self.token_url.as_deref().ok_or("auth = \"oauth2\" needs token_url")?;
                let token_uri: Uri = url.parse().map_err(|e| format!("token_url: {url:?} is not a URL: {e}"))?;
                if !matches!(token_uri.scheme_str(), Some("http" | "https")) {
                    return Err("token_url must start with http:// or https://".into());
                }
                if self.client_id.is_none() {
                    return Err("auth = \"oauth2\" needs client_id".into());
                }
            }
            other => return Err(format!("auth: {other:?} must be none, bearer, basic, header or oauth2")),
        }
        if self.timeout_s == 0 || self.connect_timeout_ms == 0 {
            return Err("timeout_s and connect_timeout_ms must be more than 0".into());
        }
        for path in &self.graphql_paths {
            if !path.starts_with('/') {
                return Err(format!("graphql_paths: {path:?} must start with '/'"));
            }
        }
        for (key, pointers) in [("sensitive_pointers", &self.sensitive_pointers), ("stream_text", &self.stream_text)] {
            if let Some(pointer) = pointers.iter().find(|p| !p.starts_with('/')) {
                return Err(format!("{key}: {pointer:?} must start with '/'"));
            }
        }
        Ok(())
    }

    /// The path prefix agents use: as configured, or `/<connection name>`.
    fn prefix_or(&self, name: &str) -> String {
        self.prefix.clone().unwrap_or_else(|| format!("/{name}"))
    }

    /// One line for an operator.
    pub fn summary(&self, name: &str) -> String {
        let prefix = self.prefix_or(name);
        let hosts = if self.hosts.is_empty() { String::new() } else { format!(" or host {}", self.hosts.join(", ")) };
        format!("http {} (agents: {prefix}/…{hosts}; credential: {})", self.url, self.auth)
    }
}

/// A prepared HTTP target.
pub struct HttpTarget {
    pub name: String,
    pub prefix: String,
    pub hosts: Vec<String>,
    pub scheme: hyper::http::uri::Scheme,
    pub authority: hyper::http::uri::Authority,
    /// The base URL's path, without a trailing '/'.
    pub base_path: String,
    pub presentation: Presentation,
    /// The client the OAuth 2 token cache fetches with; requests use `client()`.
    pub client: UpstreamClient,
    connector: HttpsConnector<HttpConnector>,
    /// Which prepared target this is, for the per-thread pools.
    id: u64,
    pub timeout: Duration,
    pub graphql_paths: Vec<String>,
    pub sensitive: Arc<Sensitive>,
    /// The pointers whose strings a stream's events continue (`stream_text`).
    pub stream_text: Arc<StreamPaths>,
    pub archives: Archives,
    /// What of the credential last went on the wire, by the digest of what it was built from:
    /// the same for every request until the credential (or an OAuth 2 token) changes.
    pub(crate) on_wire: crate::forward::OnWireCache,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget").field("name", &self.name).field("authority", &self.authority).finish()
    }
}

impl HttpTarget {
    pub fn prepare(name: &str, options: &HttpConnectionOptions) -> Result<HttpTarget, String> {
        options.check(name)?;
        let uri: Uri = options.url.parse().map_err(|e| format!("url: {e}"))?;
        let scheme = uri.scheme().cloned().ok_or("url: no scheme")?;
        let authority = uri.authority().cloned().ok_or("url: no host")?;
        if authority.as_str().contains('@') {
            return Err(
                "url: a user name or password in the URL would be shown wherever the URL is (records, exports); hold the credential with auth and password".into(),
            );
        }
        let connector = upstream_connector(options)?;
        let client = pooled(connector.clone());
        let presentation = match options.auth.as_str() {
            "bearer" => Presentation::Bearer,
            "basic" => Presentation::Basic { username: options.username.clone().unwrap_or_default() },
            "header" => Presentation::Header {
                name: hyper::header::HeaderName::from_bytes(options.header.as_deref().unwrap_or("").as_bytes())
                    .map_err(|e| format!("header: {e}"))?,
            },
            "oauth2" => Presentation::OAuth2(Arc::new(TokenCache::new(
                options.token_url.clone().unwrap_or_default(),
                options.client_id.clone().unwrap_or_default(),
                options.scopes.join(" "),
                client.clone(),
            ))),
            _ => Presentation::None,
        };
        Ok(HttpTarget {
            name: name.to_string(),
            prefix: options.prefix_or(name),
            hosts: options.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            presentation,
            client,
            connector,
            id: NEXT_TARGET_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            timeout: Duration::from_secs(options.timeout_s),
            graphql_paths: options.graphql_paths.clone(),
            sensitive: Arc::new(Sensitive::new(options.sensitive_keys.clone(), tokens(&options.sensitive_pointers))),
            stream_text: Arc::new(tokens(&options.stream_text)),
            archives: options.archives,
            on_wire: Default::default(),
        })
    }
}

/// JSON pointers as their reference tokens.
fn tokens(pointers: &[String]) -> Vec<Vec<String>> {
    pointers.iter().map(|p| sluice_core::http::pointer_tokens(p).collect()).collect()
}

static NEXT_TARGET_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// Each session worker's own pooled clients, by target: a pooled connection's task runs on
    /// the thread that opened it, so a pool shared between workers would hand requests across
    /// threads (a wake-up each way, every request).
    static CLIENTS: std::cell::RefCell<Vec<(u64, UpstreamClient)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Targets a worker keeps clients for; past it (after many reloads) the list starts again.
const CLIENTS_PER_THREAD: usize = 256;

impl HttpTarget {
    /// Whether `path` is a GraphQL endpoint of the target, as routers read it: compared without
    /// case (Express and ASP.NET serve /GraphQL at /graphql), below it (Apollo's and
    /// express-graphql's middleware, mounted with `app.use`, answer /graphql/x) and with a format
    /// suffix (Rails routes /graphql.json to /graphql).
    pub fn is_graphql_path(&self, path: &str) -> bool {
        let path = path.to_ascii_lowercase();
        let unsuffixed = match path.rsplit_once('.') {
            Some((stem, suffix)) if !suffix.contains('/') => stem,
            _ => path.as_str(),
        };
        self.graphql_paths.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            path == p || unsuffixed == p || path.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// This thread's pooled client to the upstream.
    pub fn client(&self) -> UpstreamClient {
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some((_, client)) = clients.iter().find(|(id, _)| *id == self.id) {
                return client.clone();
            }
            if clients.len() >= CLIENTS_PER_THREAD {
                clients.clear();
            }
            let client = pooled(self.connector.clone());
            clients.push((self.id, client.clone()));
            client
        })
    }
}

fn pooled(connector: HttpsConnector<HttpConnector>) -> UpstreamClient {
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector)
}

/// The connector to one upstream: HTTP/1.1 or HTTP/2 (by ALPN) over TLS, HTTP/1.1 in clear.
fn upstream_connector(options: &HttpConnectionOptions) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: rustls::pki_types::CertificateDer<'static> =
                    cert.map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file: {} holds no certificate", path.display()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_millis(options.connect_timeout_ms)));
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    let builder = match &options.server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| format!("server_name: {name:?} is not a host name"))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_all_versions().wrap_connector(http))
}
