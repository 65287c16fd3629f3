//! The SFTP subsystem (what `sftp`, and `scp` since OpenSSH 9, speak): sluice opens the host's
//! own SFTP server in its session there, and reads each of the client's requests on its way:
//! every operation on a path (open for reading or writing, list, stat, remove, rename, mkdir,
//! rmdir, setstat, link) is decided by policy and recorded; operations on a handle follow the
//! decision its open had; extensions sluice does not know are refused (and not advertised).
//! File contents pass as they are: they are files, not text to mask.

mod wire;

use crate::reply;
use crate::session::{Input, Opened, Run, STANDING_EVERY, ToClient, decide, ended};
use crate::transfers;
use crate::upstream;
use bytes::{Bytes, BytesMut};
use russh::server::Handle;
use russh::{ChannelId, ChannelMsg};
use sluice_core::exec::{ExecAction, ExecRequest, FileAccess, FileOp, Transfer, normalize_path};
use sluice_gate::SessionGate;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use wire::Request;

/// sluice's own answers waiting to be written to the client (then the client's requests wait).
const ANSWERS_QUEUE: usize = 64;

/// At most this many opens waiting for the host's answer (a client that sends more is told to
/// wait for its answers first).
const MAX_PENDING_OPENS: usize = 4096;

/// What the two directions share: opens waiting for their handle, and the handles opened.
#[derive(Default)]
struct Handles {
    /// Request id of an open the host has not answered → its path.
    pending: HashMap<u32, String>,
    /// Handle → the path it was opened on.
    open: HashMap<Bytes, String>,
}

type Shared = Arc<parking_lot::Mutex<Handles>>;

/// Serves one `sftp` subsystem request. `Ok` with the host's exit status when it ended.
pub(crate) async fn serve<S: SessionGate>(
    opened: &Opened<S>,
    config: &crate::SshListenerConfig,
    handle: &Handle,
    to_client: ToClient,
    mut input: mpsc::Receiver<Input>,
    run: &mut Run,
) -> Result<Option<u32>, String> {
    let channel = to_client.id();
    let name = opened.target.name.clone();
    let upstream =
        upstream::connect(&opened.target, opened.grant.credential.as_ref()).await.map_err(|e| e.to_string())?;
    let host_said = |e: &str| format!("{name}: the SFTP server {e}");
    // sluice's own channel first: where relative paths lead, and where symbolic links do.
    let mut resolver = Resolver::open(&upstream).await.map_err(|e| host_said(&e))?;
    let home = resolver.realpath(".").await.ok_or_else(|| host_said("did not say where its home directory is"))?;
    let remote = upstream.channel_open_session().await.map_err(|e| format!("{name}: {e}"))?;
    remote.request_subsystem(true, "sftp").await.map_err(|e| format!("{name}: {e}"))?;
    let (mut from_host, to_host) = remote.split();
    let mut buf = BytesMut::new();
    to_host.data_bytes(wire::init()).await.map_err(|e| host_said(&e.to_string()))?;
    let version = host_packet(&mut from_host, &mut buf).await.ok_or_else(|| host_said("did not answer"))?;
    let extensions: Vec<(String, Bytes)> = wire::version_extensions(&version)
        .into_iter()
        .filter(|(name, _)| wire::EXTENSIONS.contains(&name.as_str()))
        .collect();

    let mut from_client = BytesMut::new();
    let client_init = loop {
        match input.recv().await {
            Some(Input::Data(data)) => from_client.extend_from_slice(&data),
            Some(Input::Resize { .. }) => {}
            Some(Input::Eof) | None => return Ok(None),
        }
        if let Some(packet) = wire::next_packet(&mut from_client, wire::MAX_CLIENT_PACKET).map_err(|e| e.to_string())? {
            break packet;
        }
    };
    if wire::header(&client_init).map(|h| h.0) != Some(wire::INIT) {
        return Err("the client did not begin SFTP with INIT".into());
    }
    to_client.data_bytes(wire::version(&extensions)).await.map_err(|_| "the client went away".to_string())?;

    let shared: Shared = Arc::default();
    // sluice's own answers go to the client by the task that passes the host's, between whole
    // packets.
    let (answers, answered) = mpsc::channel(ANSWERS_QUEUE);
    let mut host_side = tokio::spawn(pass_to_client(from_host, to_client, answered, Arc::clone(&shared)));
    let mut relay = Relay { opened, config, handle, channel, home, resolver, shared, to_host, answers, run };
    let mut check = tokio::time::interval(STANDING_EVERY);
    check.tick().await;
    let mut client_done = false;
    loop {
        tokio::select! {
            _ = check.tick() => if let Some(why) = ended(opened).await {
                host_side.abort();
                return Err(format!("the SFTP session was stopped: {why}"));
            },
            ended = &mut host_side => {
                let (status, bytes) = ended.map_err(|_| "the SFTP relay failed".to_string())?;
                relay.run.output_bytes += bytes;
                return Ok(status.or(Some(0)));
            },
            piece = input.recv(), if !client_done => match piece {
                Some(Input::Data(data)) => {
                    relay.run.input_bytes += data.len() as u64;
                    from_client.extend_from_slice(&data);
                    loop {
                        match wire::next_packet(&mut from_client, wire::MAX_CLIENT_PACKET) {
                            Ok(Some(packet)) => relay.request(packet).await?,
                            Ok(None) => break,
                            Err(e) => {
                                host_side.abort();
                                return Err(e.to_string());
                            }
                        }
                    }
                }
                Some(Input::Resize { .. }) => {}
                Some(Input::Eof) | None => {
                    client_done = true;
                    let _ = relay.to_host.eof().await;
                }
            },
        }
    }
}

/// Reads one whole packet from the host (during sluice's own handshake).
async fn host_packet(from_host: &mut russh::ChannelReadHalf, buf: &mut BytesMut) -> Option<Bytes> {
    loop {
        if let Ok(Some(packet)) = wire::next_packet(buf, wire::MAX_HOST_PACKET) {
            return Some(packet);
        }
        match from_host.wait().await? {
            ChannelMsg::Data { data } => buf.extend_from_slice(&data),
            ChannelMsg::Close | ChannelMsg::Eof => return None,
            _ => {}
        }
    }
}

/// Reads a transfer run as a command (scp, rsync, git) where the host will take it: its relative
/// paths made absolute from the home directory of sluice's login, and each path added as the host
/// resolves it (symbolic links followed, a `..` after one going up from where it leads), asked
/// of the host's SFTP server. Where the host has none, the home directory is asked of its login
/// shell, and the paths are not certain: no allowing rule with `files` matches them.
pub(crate) async fn prepare_transfer(
    upstream: &upstream::Upstream,
    target: &str,
    transfer: &mut Transfer,
) -> Result<(), String> {
    let mut resolver = Resolver::open(upstream).await.ok();
    let home = match resolver.as_mut() {
        Some(resolver) => resolver.realpath(".").await,
        None => None,
    };
    let home = match home {
        Some(home) => home,
        None => upstream::home(upstream, target).await.map_err(|e| e.to_string())?,
    };
    let raws = transfers::resolve(transfer, &home);
    let mut resolved = Vec::new();
    for (file, raw) in transfer.files.iter_mut().zip(&raws) {
        let (Some(raw), true) = (raw, file.literal) else { continue };
        match resolver.as_mut() {
            Some(resolver) => resolved.extend(resolver.resolved(file, raw).await),
            None => file.literal = false,
        }
    }
    transfer.files.extend(resolved);
    Ok(())
}

/// sluice's own SFTP channel to the host, beside the client's: it asks the host where a path
/// leads once its symbolic links are followed (REALPATH, which OpenSSH's server answers for a
/// path whose last part does not exist yet too).
struct Resolver {
    from: russh::ChannelReadHalf,
    to: russh::ChannelWriteHalf<russh::client::Msg>,
    buf: BytesMut,
    next_id: u32,
}

impl Resolver {
    async fn open(upstream: &upstream::Upstream) -> Result<Resolver, String> {
        let channel = upstream.channel_open_session().await.map_err(|e| e.to_string())?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| e.to_string())?;
        let (from, to) = channel.split();
        let mut resolver = Resolver { from, to, buf: BytesMut::new(), next_id: 0 };
        resolver.to.data_bytes(wire::init()).await.map_err(|e| e.to_string())?;
        host_packet(&mut resolver.from, &mut resolver.buf).await.ok_or("did not answer")?;
        Ok(resolver)
    }

    /// `access` where the host resolves it (`raw`: its path as the host will take it), when that
    /// is another path than the one it is decided for.
    async fn resolved(&mut self, access: &FileAccess, raw: &str) -> Option<FileAccess> {
        let real = self.realpath(raw).await.filter(|real| *real != access.path)?;
        Some(FileAccess { path: real, ..access.clone() })
    }

    /// Where `path` leads; `None` when the host cannot say (a directory on the way is missing).
    async fn realpath(&mut self, path: &str) -> Option<String> {
        self.next_id = self.next_id.wrapping_add(1);
        self.to.data_bytes(wire::realpath(self.next_id, path)).await.ok()?;
        let answer = host_packet(&mut self.from, &mut self.buf).await?;
        wire::first_name(&answer).filter(|p| p.starts_with('/'))
    }
}

/// The host's answers passed to the client as they come, the handles it gives noted on the way,
/// and sluice's own answers (refusals) between them — a host's packet is never cut by one of
/// sluice's, since the scanner knows where each ends. The host's exit status when it ends, and
/// the bytes passed.
async fn pass_to_client(
    mut from_host: russh::ChannelReadHalf,
    to_client: ToClient,
    mut answers: mpsc::Receiver<Bytes>,
    shared: Shared,
) -> (Option<u32>, u64) {
    let mut scanner = Scanner::default();
    let (mut status, mut bytes, mut answering) = (None, 0u64, true);
    loop {
        tokio::select! {
            answer = answers.recv(), if answering && scanner.between_packets() => match answer {
                Some(answer) => if to_client.data_bytes(answer).await.is_err() {
                    break;
                },
                None => answering = false,
            },
            message = from_host.wait() => match message {
                Some(ChannelMsg::Data { data }) => {
                    for (kind, id, packet) in scanner.feed(&data) {
                        let mut handles = shared.lock();
                        let Some(path) = handles.pending.remove(&id) else { continue };
                        if let Some(opened) = (kind == wire::HANDLE).then(|| wire::handle_of(&packet)).flatten() {
                            handles.open.insert(opened, path);
                        }
                    }
                    bytes += data.len() as u64;
                    if to_client.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext }) => {
                    let _ = to_client.extended_data_bytes(ext, data).await;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::Close | ChannelMsg::Eof) | None => break,
                Some(_) => {}
            },
        }
    }
    (status, bytes)
}

/// Finds the host's HANDLE and STATUS answers in its stream without copying the rest (file
/// contents) aside.
#[derive(Default)]
struct Scanner {
    /// The packet being read: its first bytes (length, type, id), or all of it when kept.
    head: Vec<u8>,
    /// Bytes of the current packet still to pass over.
    skip: usize,
}

/// HANDLE and STATUS answers are kept whole; no longer than this.
const KEPT_ANSWER: usize = 64 * 1024;

impl Scanner {
    /// Whether what was fed so far ends with a whole packet.
    fn between_packets(&self) -> bool {
        self.head.is_empty() && self.skip == 0
    }

    fn feed(&mut self, mut data: &[u8]) -> Vec<(u8, u32, Bytes)> {
        let mut found = Vec::new();
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let total = match self.head.len() >= 4 {
                true => 4 + u32::from_be_bytes([self.head[0], self.head[1], self.head[2], self.head[3]]) as usize,
                false => 4,
            };
            // First the length, then the type and id, then (for a kept answer) the rest.
            let header = total.min(9);
            let kind = self.head.get(4).copied();
            let kept = self.head.len() >= header
                && (9..=KEPT_ANSWER).contains(&total)
                && matches!(kind, Some(wire::HANDLE | wire::STATUS));
            let want = match (self.head.len() < header, kept) {
                (true, _) => header - self.head.len(),
                (false, true) => total - self.head.len(),
                (false, false) => {
                    self.skip = total - self.head.len();
                    self.head.clear();
                    continue;
                }
            };
            let n = want.min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
            if kept && self.head.len() == total {
                let packet = Bytes::from(std::mem::take(&mut self.head));
                if let Some((kind, id)) = wire::header(&packet) {
                    found.push((kind, id, packet));
                }
            }
        }
        found
    }
}

/// The client's side: each request decided and passed to the host, or answered by sluice.
struct Relay<'a, S: SessionGate> {
    opened: &'a Opened<S>,
    config: &'a crate::SshListenerConfig,
    handle: &'a Handle,
    channel: ChannelId,
    home: String,
    resolver: Resolver,
    shared: Shared,
    to_host: russh::ChannelWriteHalf<russh::client::Msg>,
    /// sluice's own answers, for the task that writes to the client.
    answers: mpsc::Sender<Bytes>,
    run: &'a mut Run,
}

impl<S: SessionGate> Relay<'_, S> {
    async fn request(&mut self, packet: Bytes) -> Result<(), String> {
        let Some((kind, id)) = wire::header(&packet) else { return Ok(()) };
        let request = match wire::request(&packet) {
            Ok(request) => request,
            Err(e) => return self.answer(id, wire::FX_BAD_MESSAGE, &e.to_string()).await,
        };
        // Each path as the host's server will take it (relative ones lead from the home
        // directory), and as policy reads it (`.` and `..` resolved).
        let home = self.home.clone();
        let absolute = move |p: &str| match p.starts_with('/') {
            true => p.to_string(),
            false => format!("{home}/{p}"),
        };
        let one = |op, p: &str| {
            let raw = absolute(p);
            vec![(FileAccess { op, path: normalize_path("/", &raw), tree: false, literal: true }, raw)]
        };
        let mut opens = None;
        let found = match request {
            Request::Open { path: p, reads, writes } => {
                let mut files = Vec::new();
                if reads || !writes {
                    files.extend(one(FileOp::Read, &p));
                }
                if writes {
                    files.extend(one(FileOp::Write, &p));
                }
                opens = Some(absolute(&p));
                files
            }
            Request::OpenDir { path: p } => {
                opens = Some(absolute(&p));
                one(FileOp::List, &p)
            }
            Request::Inspect { path: p } => one(FileOp::Read, &p),
            Request::Setstat { path: p } => one(FileOp::Setstat, &p),
            Request::Remove { path: p } => one(FileOp::Remove, &p),
            Request::Mkdir { path: p } => one(FileOp::Mkdir, &p),
            Request::Rmdir { path: p } => one(FileOp::Rmdir, &p),
            Request::Rename { from, to } => [one(FileOp::Rename, &from), one(FileOp::Rename, &to)].concat(),
            Request::Link { link, target } => [one(FileOp::Link, &link), one(FileOp::Link, &target)].concat(),
            Request::OnHandle { handle, setstat } => {
                let known = self.shared.lock().open.get(&handle).cloned();
                let Some(opened_on) = known else {
                    return self.answer(id, wire::FX_FAILURE, "sluice: no such handle was opened through sluice").await;
                };
                if kind == wire::CLOSE {
                    self.shared.lock().open.remove(&handle);
                }
                match setstat {
                    true => one(FileOp::Setstat, &opened_on),
                    false => return self.forward(packet).await,
                }
            }
            Request::Copy { from, to } => {
                let known = {
                    let handles = &self.shared.lock().open;
                    handles.contains_key(&from) && handles.contains_key(&to)
                };
                if !known {
                    return self.answer(id, wire::FX_FAILURE, "sluice: no such handle was opened through sluice").await;
                }
                return self.forward(packet).await;
            }
            Request::Harmless => return self.forward(packet).await,
            Request::Unsupported(what) => {
                let message = format!("sluice: {what} is not passed on by sluice");
                let _ = self.handle.extended_data(self.channel, 1, format!("{message}\n").into_bytes()).await;
                return self.answer(id, wire::FX_OP_UNSUPPORTED, &message).await;
            }
        };
        // A path is decided as written and where the host resolves it — its symbolic links
        // followed, a `..` after a link going up from the link's target (each must be allowed): a
        // link inside an allowed directory opens no other.
        let mut files = Vec::with_capacity(found.len() * 2);
        for (access, raw) in found {
            files.extend(self.resolver.resolved(&access, &raw).await);
            files.push(access);
        }
        let summary: Vec<String> = files.iter().map(FileAccess::summary).collect();
        let action = ExecAction {
            line: format!("sftp {}", summary.join(", ")),
            request: ExecRequest::Subsystem("sftp".into()),
            commands: Vec::new(),
            opaque: None,
            transfer: Some(Transfer { program: "sftp".into(), files }),
        };
        let decision = decide(self.opened, self.handle, self.channel, &action).await.ok_or("the session has ended")?;
        Run::start(self.opened).finish(
            &self.opened.log,
            &action.line,
            (decision.effect(), decision.rule()),
            None,
            None,
        );
        if !decision.allows() {
            let text = reply::refused(&decision, self.config);
            let _ = self.handle.extended_data(self.channel, 1, text.clone().into_bytes()).await;
            let first = text.lines().next().unwrap_or("sluice: refused").to_string();
            return self.answer(id, wire::FX_PERMISSION_DENIED, &first).await;
        }
        if let Some(path) = opens {
            let room = {
                let mut handles = self.shared.lock();
                let room = handles.pending.len() < MAX_PENDING_OPENS;
                if room {
                    handles.pending.insert(id, path);
                }
                room
            };
            if !room {
                return self
                    .answer(id, wire::FX_FAILURE, "sluice: too many opens waiting; wait for their answers")
                    .await;
            }
        }
        self.forward(packet).await
    }

    async fn forward(&mut self, packet: Bytes) -> Result<(), String> {
        self.to_host.data_bytes(packet).await.map_err(|e| format!("{}: {e}", self.opened.target.name))
    }

    async fn answer(&mut self, id: u32, code: u32, message: &str) -> Result<(), String> {
        self.answers.send(wire::status(id, code, message)).await.map_err(|_| "the client went away".into())
    }
}

#[cfg(test)]
mod tests {
    use super::Scanner;

    #[test]
    fn the_scanner_keeps_handles_and_statuses_and_passes_over_data() {
        let mut stream = Vec::new();
        let data = [&[0, 0, 0, 13, 103, 0, 0, 0, 9][..], &[0, 0, 0, 4], b"abcd"].concat();
        let handle = [&[0, 0, 0, 10, 102, 0, 0, 0, 7][..], &[0, 0, 0, 1], b"h"].concat();
        stream.extend_from_slice(&data);
        stream.extend_from_slice(&handle);
        stream.extend_from_slice(&data);
        for cut in 0..stream.len() {
            let mut scanner = Scanner::default();
            let mut found = scanner.feed(&stream[..cut]);
            found.extend(scanner.feed(&stream[cut..]));
            assert_eq!(found.len(), 1, "cut at {cut}");
            assert_eq!((found[0].0, found[0].1, &found[0].2[..]), (102, 7, &handle[..]));
        }
    }
}
