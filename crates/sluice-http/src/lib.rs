//! The HTTP adapter: agents call internal HTTP APIs through sluice with their usual clients. Each
//! request is read into an `HttpAction` (path normalised, JSON and GraphQL bodies parsed), decided
//! by the engine, sent upstream with the held credential in place of the agent's token, and its
//! response masked before it leaves (whole, or event by event for streams). HTTP/1.1 and HTTP/2 (by ALPN, or prior knowledge in clear)
//! towards clients; pooled connections upstream.

mod archive;
mod budget;
mod charset;
mod continuity;
mod decode;
mod forward;
mod framing;
mod graphql;
mod idle;
mod location;
mod mask;
mod multipart;
mod oauth;
mod oracle;
mod rename;
mod reply;
mod request;
mod response;
mod seen;
mod service;
mod stall;
mod streams;
mod target;
mod websocket;

pub use archive::Archives;
pub use budget::Budget;
pub use response::Oversize;
pub use target::{HttpConnectionOptions, HttpTarget};

use sluice_gate::Gate;
use sluice_runtime::{Accepted, Adapter, Limits, Runtime};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The listener's settings (`[http]`).
pub struct HttpListenerConfig {
    /// TLS towards clients (ALPN h2 and http/1.1 are set here); `None`: clear text.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The largest request body read (larger ones get 413).
    pub max_request_body: usize,
    /// The largest response body passed on (decoded), and the largest event of a stream.
    pub max_response_body: usize,
    /// What becomes of a whole body over `max_response_body`.
    pub oversize: Oversize,
    /// The bytes of bodies held at once across all connections (`http.max_buffered_bytes`).
    pub budget: Budget,
    /// How long a client has to send a request head once begun (and to finish TLS).
    pub header_timeout: Duration,
    /// How long an HTTP/1 connection may wait for its next request with nothing in flight.
    pub idle_timeout: Duration,
    /// How long a client may leave a write to it waiting without taking a byte.
    pub send_timeout: Duration,
    pub limits: Limits,
    /// Where a review is looked at (the API's base URL), for refusals.
    pub api_url: Option<String>,
}

pub struct HttpAdapter<G: Gate> {
    gate: Arc<G>,
    config: Arc<HttpListenerConfig>,
}

impl<G: Gate> HttpAdapter<G> {
    pub fn new(gate: Arc<G>, mut config: HttpListenerConfig) -> HttpAdapter<G> {
        if let Some(tls) = config.tls.take() {
            let mut tls = (*tls).clone();
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config.tls = Some(Arc::new(tls));
        }
        HttpAdapter { gate, config: Arc::new(config) }
    }
}

impl<G: Gate> Adapter for HttpAdapter<G> {
    fn name(&self) -> &'static str {
        "http"
    }

    fn title(&self) -> &'static str {
        "HTTP"
    }

    fn serve(self: Arc<Self>, listener: TcpListener, runtime: Runtime) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let limits = self.config.limits;
            runtime
                .accept("http", listener, limits, move |accepted: Accepted| {
                    let (gate, config) = (Arc::clone(&self.gate), Arc::clone(&self.config));
                    service::serve_connection(gate, config, accepted)
                })
                .await;
        })
    }
}
