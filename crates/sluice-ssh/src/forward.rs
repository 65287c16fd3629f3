//! Forwarding (`ssh -L`, `ssh -W`, `ProxyJump`): a TCP connection from the host to a `host:port`
//! a rule names, opened in sluice's own session to the host and passed as bytes both ways (it is
//! the client's own protocol inside, which sluice does not read) — recorded with its bytes, ended
//! when the session's standing ends.

use crate::session::{Opened, Run, STANDING_EVERY, ended};
use crate::upstream;
use russh::Channel;
use russh::server::Msg;
use sluice_core::Decision;
use sluice_gate::SessionGate;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

pub(crate) async fn run<S: SessionGate>(
    opened: Arc<Opened<S>>,
    client: Channel<Msg>,
    (host, port): (String, u32),
    (originator, originator_port): (String, u32),
    mut run: Run,
    decision: Decision,
) {
    let line = format!("(forward to {host}:{port})");
    let error = match relay(&opened, client, (&host, port), (&originator, originator_port), &mut run).await {
        Ok(()) => None,
        Err(e) => {
            tracing::debug!(to = %format!("{host}:{port}"), error = %e, "forward ended");
            Some(e)
        }
    };
    run.finish(&opened.log, &line, (decision.effect(), decision.rule()), None, error);
}

async fn relay<S: SessionGate>(
    opened: &Opened<S>,
    client: Channel<Msg>,
    (host, port): (&str, u32),
    (originator, originator_port): (&str, u32),
    run: &mut Run,
) -> Result<(), String> {
    let name = &opened.target.name;
    let upstream =
        upstream::connect(&opened.target, opened.grant.credential.as_ref()).await.map_err(|e| e.to_string())?;
    let remote = upstream
        .channel_open_direct_tcpip(host, port, originator, originator_port)
        .await
        .map_err(|e| format!("{name} could not connect to {host}:{port}: {e}"))?;
    let (mut up, mut down) = both_ways(client, remote);
    let (mut up_bytes, mut down_bytes) = (None, None);
    let mut check = tokio::time::interval(STANDING_EVERY);
    let outcome = loop {
        if up_bytes.is_some() && down_bytes.is_some() {
            break Ok(());
        }
        tokio::select! {
            _ = check.tick() => if let Some(why) = ended(opened).await {
                up.abort();
                down.abort();
                break Err(format!("the forward was stopped: {why}"));
            },
            copied = &mut up, if up_bytes.is_none() => up_bytes = Some(copied.unwrap_or(0)),
            copied = &mut down, if down_bytes.is_none() => down_bytes = Some(copied.unwrap_or(0)),
        }
    };
    let (up, down) = (up_bytes.unwrap_or(0), down_bytes.unwrap_or(0));
    run.input_bytes = up;
    run.output_bytes = down;
    let _ = upstream.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    outcome
}

type Copying = tokio::task::JoinHandle<u64>;

/// Copies a client's channel and the host's both ways, each direction in a task of its own (one
/// side slow to take bytes never keeps the other's from being read); each task ends with the
/// bytes it passed. Dropping the tasks does not stop them: abort them.
fn both_ways(client: Channel<Msg>, host: Channel<russh::client::Msg>) -> (Copying, Copying) {
    let (mut from_client, mut to_client) = tokio::io::split(client.into_stream());
    let (mut from_host, mut to_host) = tokio::io::split(host.into_stream());
    let up = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut from_client, &mut to_host).await.unwrap_or(0);
        let _ = to_host.shutdown().await;
        copied
    });
    let down = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut from_host, &mut to_client).await.unwrap_or(0);
        let _ = to_client.shutdown().await;
        copied
    });
    (up, down)
}

/// A connection to what the host listens on for the client (`ssh -R`), passed until both sides
/// are done.
pub(crate) async fn pass(from_host: Channel<russh::client::Msg>, to_client: Channel<Msg>) {
    let (up, down) = both_ways(to_client, from_host);
    let _ = tokio::join!(up, down);
}
