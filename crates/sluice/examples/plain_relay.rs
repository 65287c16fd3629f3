//! The benchmark's floor: a TCP relay on sluice's runtime layout that only copies bytes.
//!
//! One accept loop, one single-threaded tokio runtime per CPU for the connections (as sluice's
//! session workers), `TCP_NODELAY` on both sides, and tokio's own `copy_bidirectional` in between:
//! no parsing, no policy, no recording. `bench/run.py` puts it beside pgbouncer and sluice so every
//! run shows what a tokio relay costs on that machine before any of sluice's work.
//!
//! Usage: `plain_relay LISTEN_ADDR UPSTREAM_ADDR`; prints `listening` once it accepts.

#[path = "common/workers.rs"]
mod workers;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: plain_relay LISTEN_ADDR UPSTREAM_ADDR");
    };
    let workers = workers::start()?;
    let acceptor = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    acceptor.block_on(async move {
        let listener = TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        println!("listening");
        for next in (0..workers.len()).cycle() {
            let (client, _) = listener.accept().await?;
            let client = client.into_std()?;
            let upstream = upstream.clone();
            workers[next].spawn(async move {
                if let Err(e) = relay(client, &upstream).await {
                    eprintln!("plain_relay: {e:#}");
                }
            });
        }
        Ok(())
    })
}

async fn relay(client: std::net::TcpStream, upstream: &str) -> Result<()> {
    let mut client = TcpStream::from_std(client)?;
    let mut server = TcpStream::connect(upstream).await.with_context(|| format!("cannot reach {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, 64 * 1024, 64 * 1024).await?;
    Ok(())
}
