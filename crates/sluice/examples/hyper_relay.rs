//! The HTTP benchmark's second floor: a reverse proxy on hyper (sluice's HTTP library) and
//! sluice's runtime layout that only forwards.
//!
//! One accept loop, one single-threaded tokio runtime per CPU for the connections (as sluice's
//! session workers), each with its own pooled hyper client (as sluice keeps a pool per worker),
//! HTTP/1.1 with keep-alive on both sides. A request's path prefix is swapped for the upstream's,
//! the client's `Authorization` replaced by the held one (as the nginx peer does), and the
//! response streamed back as it comes: no policy, no masking, no recording. `bench/http_bench.py`
//! runs it beside nginx and sluice, so a run shows what hyper itself costs per request on that
//! machine before any of sluice's work.
//!
//! Usage: `hyper_relay LISTEN_ADDR UPSTREAM_BASE_URL PREFIX TOKEN`
//! (`hyper_relay 127.0.0.1:7000 http://127.0.0.1:8000/api /billing secret`); prints `listening`
//! once it accepts.

#[path = "common/workers.rs"]
mod workers;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HOST, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Incoming>;
type Reply = Response<Either<Incoming, BoxBody<Bytes, hyper::Error>>>;

struct Route {
    base: Uri,
    prefix: String,
    authorization: HeaderValue,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(base), Some(prefix), Some(token)) = (args.next(), args.next(), args.next(), args.next())
    else {
        anyhow::bail!("usage: hyper_relay LISTEN_ADDR UPSTREAM_BASE_URL PREFIX TOKEN");
    };
    let route = Arc::new(Route {
        base: base.parse().context("the upstream base URL")?,
        prefix,
        authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
    });
    let workers = workers::start()?;
    // One pool per worker, built on it: a request never crosses to the other worker's thread.
    let pools: Vec<Upstream> = workers
        .iter()
        .map(|worker| {
            let _entered = worker.enter();
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new()).build(connector)
        })
        .collect();
    let acceptor = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    acceptor.block_on(async move {
        let listener = TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        println!("listening");
        for next in (0..workers.len()).cycle() {
            let (client, _) = listener.accept().await?;
            let client = client.into_std()?;
            let (route, pool) = (Arc::clone(&route), pools[next].clone());
            workers[next].spawn(async move {
                let Ok(client) = tokio::net::TcpStream::from_std(client) else { return };
                let _ = client.set_nodelay(true);
                let service = hyper::service::service_fn(move |req| {
                    let (route, pool) = (Arc::clone(&route), pool.clone());
                    async move { Ok::<_, std::convert::Infallible>(forward(&route, &pool, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(client), service)
                    .await;
            });
        }
        Ok(())
    })
}

async fn forward(route: &Route, pool: &Upstream, mut req: Request<Incoming>) -> Reply {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(rest) = path.strip_prefix(route.prefix.as_str()) else {
        return status(StatusCode::NOT_FOUND);
    };
    let base_path = route.base.path().trim_end_matches('/');
    let uri = Uri::builder()
        .scheme(route.base.scheme_str().unwrap_or("http"))
        .authority(route.base.authority().map_or("", |a| a.as_str()))
        .path_and_query(format!("{base_path}{rest}"))
        .build();
    let Ok(uri) = uri else { return status(StatusCode::BAD_REQUEST) };
    *req.uri_mut() = uri;
    req.headers_mut().remove(HOST);
    req.headers_mut().insert(AUTHORIZATION, route.authorization.clone());
    match pool.request(req).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(code: StatusCode) -> Reply {
    let mut reply = Response::new(Either::Right(Full::new(Bytes::new()).map_err(|never| match never {}).boxed()));
    *reply.status_mut() = code;
    reply
}
